/* bad_input_embedding: the embedding functions of tern.h given bad input, and held to
 * their documentation.
 *
 * Queued delivery (tern_session_options_set_delivery, tern_session_poll,
 * tern_session_fd), streaming (on_headers, on_data, on_progress, on_upload_ready,
 * tern_session_resume), request bodies from a read callback or pushed by the caller
 * (tern_request_set_body_reader, tern_request_set_body_stream, tern_session_write,
 * tern_session_end_body) and the progress interval. Each call given NULL, unknown ids,
 * out-of-range values or the wrong kind of session or request must return the code its
 * header comment names, with an error object of that code and a message, leave its
 * out-parameters untouched, and never crash or leak (valgrind watches). Around that,
 * the documented behaviour the codes stand for: a paused request reads nothing until
 * resumed, a full upload buffer refuses with WOULD_BLOCK, a reader's release runs
 * exactly once (and never when the setter failed), queued callbacks run only inside
 * tern_session_poll on the polling thread.
 *
 * Needs TERN_TEST_HTTP (with /hello, /bytes/1m and /echo). tests/c/run.sh checks that
 * every function in tern.h is called in bad_input.c or here.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tern.h"

#define TEST_NAME "bad_input_embedding"
#include "check.h"

static struct hold hold;

/* Out-parameters must stay untouched on failure: they start as this. */
#define UNTOUCHED_ID ((uint64_t)0x5a5a5a5a5a5a5a5aULL)
#define UNTOUCHED_SIZE ((size_t)0x5a5a5a5a)
#define UNTOUCHED_U32 ((uint32_t)0x5a5a5a5a)
#define UNTOUCHED_FD (-7)

static pthread_t main_thread;
static char url_hello[256], url_1m[256], url_echo[256];

static tern_request *request(const char *method, const char *url) {
    tern_request *req = NULL;
    if (tern_request_new(method, url, &req, NULL) != TERN_CODE_OK) {
        fprintf(stderr, "bad_input_embedding: cannot make a request for %s\n", url);
        exit(1);
    }
    return req;
}

static tern_runtime *rt;

/* A session: `queued` selects TERN_DELIVERY_QUEUED; `per_host` > 0 limits
 * connections per host. */
static tern_session *new_session(bool queued, uint32_t per_host) {
    tern_session_options *o = NULL;
    tern_session *s = NULL;
    tern_error *err = NULL;
    if (tern_session_options_new(&o, &err) != TERN_CODE_OK ||
        tern_session_options_set_delivery(
            o, queued ? TERN_DELIVERY_QUEUED : TERN_DELIVERY_RUNTIME_THREAD, &err) != TERN_CODE_OK ||
        tern_session_options_set_connection_limits(o, 0, per_host, &err) != TERN_CODE_OK ||
        tern_session_new(rt, o, &s, &err) != TERN_CODE_OK) {
        fprintf(stderr, "bad_input_embedding: session: %s\n", tern_error_message(err));
        exit(1);
    }
    tern_session_options_free(o);
    return s;
}

/* ---------------------------------------------------------------- callbacks --- */

/* One request's user_data: what its callbacks saw, and what they should do. */
struct ctx {
    /* Set before send. */
    const tern_session *session;
    uint32_t headers_action;     /* what on_headers returns */
    uint32_t data_action;        /* what the first on_data returns */
    bool resume_inside_data;     /* the first on_data resumes its own request */
    const tern_session *poll_from_callback; /* on_complete polls this session */
    /* Seen. */
    atomic_int headers, data_calls, progress, ready, completes, releases;
    atomic_ullong data_bytes;
    atomic_ullong head_id;       /* tern_response_id of the head */
    atomic_uint status;
    _Atomic tern_code code;
    atomic_size_t body_len;      /* the response's kept body */
    atomic_int on_main;          /* callbacks on the main thread */
    atomic_int off_main;         /* callbacks on another thread */
    atomic_int out_of_order;     /* a callback after on_complete, release before it */
    atomic_int inside_resume_code;
    atomic_int poll_code;        /* tern_session_poll from on_complete */
    char body[64];               /* the first bytes of the kept body */
    char message[256];           /* tern_response_message */
};

static void seen(struct ctx *c) {
    if (pthread_equal(pthread_self(), main_thread)) {
        atomic_fetch_add(&c->on_main, 1);
    } else {
        atomic_fetch_add(&c->off_main, 1);
    }
}

static uint32_t cb_headers(void *u, const tern_response *head) {
    struct ctx *c = u;
    seen(c);
    if (atomic_load(&c->completes) || atomic_load(&c->headers)) atomic_fetch_add(&c->out_of_order, 1);
    atomic_store(&c->head_id, tern_response_id(head));
    atomic_store(&c->status, tern_response_status(head));
    atomic_fetch_add(&c->headers, 1);
    return c->headers_action;
}

static uint32_t cb_data(void *u, const uint8_t *data, size_t len) {
    struct ctx *c = u;
    seen(c);
    (void)data;
    if (atomic_load(&c->completes)) atomic_fetch_add(&c->out_of_order, 1);
    int n = atomic_fetch_add(&c->data_calls, 1);
    atomic_fetch_add(&c->data_bytes, (unsigned long long)len);
    if (n == 0 && c->resume_inside_data) {
        /* A resume made during the call counts for the pause it returns. */
        atomic_store(&c->inside_resume_code,
                     (int)tern_session_resume(c->session, atomic_load(&c->head_id)));
    }
    return n == 0 ? c->data_action : TERN_ACTION_CONTINUE;
}

static void cb_progress(void *u, uint64_t sent, uint64_t to_send, uint64_t received,
                        uint64_t expected) {
    struct ctx *c = u;
    (void)sent, (void)to_send, (void)received, (void)expected;
    seen(c);
    if (atomic_load(&c->completes)) atomic_fetch_add(&c->out_of_order, 1);
    atomic_fetch_add(&c->progress, 1);
}

static void cb_ready(void *u) {
    struct ctx *c = u;
    seen(c);
    atomic_fetch_add(&c->ready, 1);
}

static void cb_complete(void *u, tern_response *resp) {
    struct ctx *c = u;
    seen(c);
    if (atomic_load(&c->completes) || atomic_load(&c->releases)) atomic_fetch_add(&c->out_of_order, 1);
    atomic_store(&c->code, tern_response_code(resp));
    snprintf(c->message, sizeof c->message, "%s", tern_response_message(resp));
    if (atomic_load(&c->status) == 0) atomic_store(&c->status, tern_response_status(resp));
    const uint8_t *body = NULL;
    size_t len = 0;
    if (tern_response_body(resp, &body, &len) == TERN_CODE_OK) {
        atomic_store(&c->body_len, len);
        memcpy(c->body, body, len < sizeof c->body - 1 ? len : sizeof c->body - 1);
    }
    if (c->poll_from_callback != NULL) {
        tern_error *err = NULL;
        uint32_t ran = UNTOUCHED_U32;
        tern_code code = tern_session_poll(c->poll_from_callback, 0, 0, &ran, &err);
        if (code != TERN_CODE_OK && (err == NULL || tern_error_code(err) != code)) code = 999;
        if (ran != UNTOUCHED_U32) code = 998;
        atomic_store(&c->poll_code, (int)code);
        tern_error_free(err);
    }
    tern_response_free(resp);
    atomic_fetch_add(&c->completes, 1);
}

static void cb_release(void *u) {
    struct ctx *c = u;
    seen(c);
    if (atomic_load(&c->completes) != 1 || atomic_load(&c->releases)) atomic_fetch_add(&c->out_of_order, 1);
    atomic_fetch_add(&c->releases, 1);
}

/* Every callback set: accepted now (tern 0.1 refused them with UNSUPPORTED). */
static const tern_callbacks all_callbacks = {
    .struct_size = sizeof(tern_callbacks),
    .on_complete = cb_complete,
    .on_headers = cb_headers,
    .on_data = cb_data,
    .on_progress = cb_progress,
    .on_upload_ready = cb_ready,
    .release = cb_release,
};

/* The same without on_data: the body is kept in the response. */
static const tern_callbacks kept_body_callbacks = {
    .struct_size = sizeof(tern_callbacks),
    .on_complete = cb_complete,
    .on_headers = cb_headers,
    .on_progress = cb_progress,
    .on_upload_ready = cb_ready,
    .release = cb_release,
};

static uint64_t send_ctx(const tern_session *s, tern_request *req, const tern_callbacks *cb,
                         struct ctx *c) {
    uint64_t id = UNTOUCHED_ID;
    c->session = s;
    tern_error *err = NULL;
    tern_code code = tern_session_send(s, req, cb, c, &id, &err);
    if (code != TERN_CODE_OK) {
        fprintf(stderr, "bad_input_embedding: send: %s: %s\n", tern_code_name(code),
                tern_error_message(err));
        tern_error_free(err);
        failures++;
        return 0;
    }
    return id;
}

/* A body reader: counts its calls and releases; `mode` says what it returns. */
enum reader_mode { READ_HELLO, READ_ABORT, READ_PAUSE_FIRST };
struct reader {
    enum reader_mode mode;
    atomic_int calls, releases, paused, on_main, off_main;
    size_t offset;
};
static const char reader_text[] = "hello from a reader";

static uint32_t reader_read(void *u, uint8_t *buf, size_t cap, size_t *written) {
    struct reader *r = u;
    if (pthread_equal(pthread_self(), main_thread)) {
        atomic_fetch_add(&r->on_main, 1);
    } else {
        atomic_fetch_add(&r->off_main, 1);
    }
    int n = atomic_fetch_add(&r->calls, 1);
    *written = 0;
    if (r->mode == READ_ABORT) return TERN_READ_STATUS_ABORT;
    if (r->mode == READ_PAUSE_FIRST && n == 0) {
        atomic_store(&r->paused, 1);
        return TERN_READ_STATUS_PAUSE;
    }
    size_t left = sizeof reader_text - 1 - r->offset;
    size_t take = left < cap ? left : cap;
    if (take > 4) take = 4; /* several calls */
    memcpy(buf, reader_text + r->offset, take);
    r->offset += take;
    *written = take;
    return r->offset == sizeof reader_text - 1 ? TERN_READ_STATUS_END : TERN_READ_STATUS_DATA;
}

static void reader_release(void *u) {
    struct reader *r = u;
    atomic_fetch_add(&r->releases, 1);
}

/* Runs a queued session's callbacks on this thread until c is released (or 60 s). */
static bool pump(const tern_session *qs, struct ctx *c) {
    for (int i = 0; i < 600 && atomic_load(&c->releases) == 0; i++) {
        if (tern_session_poll(qs, 100, 0, NULL, NULL) != TERN_CODE_OK) return false;
    }
    return atomic_load(&c->releases) == 1;
}

/* Each request's callbacks: complete and release exactly once, in order. */
static void check_once(struct ctx *c, tern_code want, const char *what) {
    bool ok = atomic_load(&c->completes) == 1 && atomic_load(&c->releases) == 1 &&
              atomic_load(&c->out_of_order) == 0 && atomic_load(&c->code) == want;
    checks++;
    if (!ok) {
        failures++;
        fprintf(stderr,
                "bad_input_embedding: %s: completes %d, releases %d, out of order %d, code %s "
                "(want %s): %s\n",
                what, atomic_load(&c->completes), atomic_load(&c->releases),
                atomic_load(&c->out_of_order), tern_code_name(atomic_load(&c->code)),
                tern_code_name(want), c->message);
    }
}

/* ------------------------------------------------------------------ options --- */

static void test_options(void) {
    tern_session_options *o = NULL;
    EXPECT1(TERN_CODE_OK, tern_session_options_new(&o, E));

    /* tern_session_options_set_delivery: NULL, values that are no tern_delivery. */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_delivery(NULL, TERN_DELIVERY_QUEUED, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_delivery(o, 2, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_delivery(o, 5, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_delivery(o, UINT32_MAX, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_delivery(o, TERN_DELIVERY_QUEUED, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_delivery(o, TERN_DELIVERY_RUNTIME_THREAD, E));

    /* tern_session_options_set_progress_interval_ms: NULL, 0 (at least 1). */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_progress_interval_ms(NULL, 100, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_progress_interval_ms(o, 0, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_progress_interval_ms(o, 1, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_progress_interval_ms(o, UINT32_MAX, E));

    /* The failed calls changed nothing: a session from these options is not queued. */
    tern_session *s = NULL;
    EXPECT1(TERN_CODE_OK, tern_session_new(rt, o, &s, E));
    int fd = UNTOUCHED_FD;
    EXPECT(TERN_CODE_INVALID_STATE, tern_session_fd(s, &fd, E));
    CHECK(fd == UNTOUCHED_FD);
    tern_session_free(s);
    tern_session_options_free(o);
}

/* --------------------------------------------------------- request bodies --- */

static void test_request_bodies(void) {
    struct reader r1, r2, r3;
    memset(&r1, 0, sizeof r1);
    memset(&r2, 0, sizeof r2);
    memset(&r3, 0, sizeof r3);
    tern_request *req = request("POST", url_echo);

    /* tern_request_set_body_reader: NULL request, NULL read, a length below -1. None
     * of them calls release: the caller still owns user_data. */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_body_reader(NULL, 5, reader_read, reader_release, &r1, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_body_reader(req, 5, NULL, reader_release, &r1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_body_reader(req, -2, reader_read, reader_release, &r1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_body_reader(req, INT64_MIN, reader_read, reader_release, &r1, E));
    CHECK(atomic_load(&r1.releases) == 0);

    /* Accepted, then replaced by another reader (the first is released once), then by
     * bytes (the second is released), then a third reader is released when the
     * request is freed unsent. No read ever runs. */
    EXPECT1(TERN_CODE_OK, tern_request_set_body_reader(req, -1, reader_read, reader_release, &r1, E));
    CHECK(atomic_load(&r1.releases) == 0);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_reader(req, 0, reader_read, reader_release, &r2, E));
    CHECK(atomic_load(&r1.releases) == 1);
    EXPECT1(TERN_CODE_OK, tern_request_set_body(req, (const uint8_t *)"x", 1, E));
    CHECK(atomic_load(&r2.releases) == 1);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_reader(req, INT64_MAX, reader_read, reader_release, &r3, E));
    CHECK(atomic_load(&r3.releases) == 0);
    /* A failed setter leaves the reader in place (not released). */
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_body_reader(req, -3, reader_read, reader_release, &r1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_body_stream(req, -3, E));
    CHECK(atomic_load(&r3.releases) == 0);
    tern_request_free(req);
    CHECK(atomic_load(&r1.releases) == 1 && atomic_load(&r2.releases) == 1 &&
          atomic_load(&r3.releases) == 1);
    CHECK(atomic_load(&r1.calls) + atomic_load(&r2.calls) + atomic_load(&r3.calls) == 0);

    /* A NULL release is allowed. */
    req = request("POST", url_echo);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_reader(req, 3, reader_read, NULL, NULL, E));
    tern_request_free(req);

    /* tern_request_set_body_stream: NULL, lengths below -1; -1, 0 and more are fine.
     * Replacing a reader with a stream releases the reader. */
    req = request("POST", url_echo);
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_body_stream(NULL, -1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_body_stream(req, -2, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_body_stream(req, -5, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_body_stream(req, INT64_MIN, E));
    memset(&r1, 0, sizeof r1);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_reader(req, 5, reader_read, reader_release, &r1, E));
    EXPECT(TERN_CODE_OK, tern_request_set_body_stream(req, -1, E));
    CHECK(atomic_load(&r1.releases) == 1);
    EXPECT(TERN_CODE_OK, tern_request_set_body_stream(req, 0, E));
    EXPECT(TERN_CODE_OK, tern_request_set_body_stream(req, 1 << 20, E));
    tern_request_free(req);
    CHECK(atomic_load(&r1.releases) == 1);
}

/* ---------------------------------------------- streaming callbacks, resume --- */

static void test_streaming(tern_session *s) {
    /* Every callback set is accepted; with on_data the body is not kept. */
    static struct ctx all;
    uint64_t id = send_ctx(s, request("GET", url_hello), &all_callbacks, &all);
    CHECK(id != 0 && id != UNTOUCHED_ID);
    CHECK(wait_for(&all.releases, 1));
    sleep_ms(50);
    check_once(&all, TERN_CODE_OK, "every callback set");
    CHECK(atomic_load(&all.headers) == 1 && atomic_load(&all.status) == 200);
    CHECK(atomic_load(&all.head_id) == id);
    CHECK(atomic_load(&all.data_bytes) == 13 && atomic_load(&all.data_calls) >= 1);
    CHECK(atomic_load(&all.body_len) == 0);
    CHECK(atomic_load(&all.progress) >= 1);
    CHECK(atomic_load(&all.ready) == 0); /* no pushed body */
    CHECK(atomic_load(&all.on_main) == 0); /* runtime threads */

    /* tern_session_resume: NULL, unknown ids, a completed request. */
    EXPECT_CODE(TERN_CODE_NULL_ARGUMENT, tern_session_resume(NULL, id));
    EXPECT_CODE(TERN_CODE_NOT_FOUND, tern_session_resume(s, 0));
    EXPECT_CODE(TERN_CODE_NOT_FOUND, tern_session_resume(s, UINT64_MAX));
    EXPECT_CODE(TERN_CODE_NOT_FOUND, tern_session_resume(s, id));

    /* on_headers cancels: CANCELED, and no body byte. */
    static struct ctx hcancel;
    hcancel.headers_action = TERN_ACTION_CANCEL;
    send_ctx(s, request("GET", url_1m), &all_callbacks, &hcancel);
    CHECK(wait_for(&hcancel.releases, 1));
    check_once(&hcancel, TERN_CODE_CANCELED, "on_headers CANCEL");
    CHECK(atomic_load(&hcancel.data_calls) == 0);

    /* on_headers pauses: no body until resumed. */
    static struct ctx hpause;
    hpause.headers_action = TERN_ACTION_PAUSE;
    id = send_ctx(s, request("GET", url_1m), &all_callbacks, &hpause);
    CHECK(wait_for(&hpause.headers, 1));
    sleep_ms(300);
    CHECK(atomic_load(&hpause.data_calls) == 0 && atomic_load(&hpause.completes) == 0);
    EXPECT_CODE(TERN_CODE_OK, tern_session_resume(s, id));
    CHECK(wait_for(&hpause.releases, 1));
    check_once(&hpause, TERN_CODE_OK, "on_headers PAUSE, resumed");
    CHECK(atomic_load(&hpause.data_bytes) == 1048576);

    /* on_data cancels. */
    static struct ctx dcancel;
    dcancel.data_action = TERN_ACTION_CANCEL;
    send_ctx(s, request("GET", url_1m), &all_callbacks, &dcancel);
    CHECK(wait_for(&dcancel.releases, 1));
    check_once(&dcancel, TERN_CODE_CANCELED, "on_data CANCEL");
    CHECK(atomic_load(&dcancel.data_calls) == 1);

    /* on_data pauses: nothing more arrives until tern_session_resume. */
    static struct ctx dpause;
    dpause.data_action = TERN_ACTION_PAUSE;
    id = send_ctx(s, request("GET", url_1m), &all_callbacks, &dpause);
    CHECK(wait_for(&dpause.data_calls, 1));
    sleep_ms(300);
    CHECK(atomic_load(&dpause.data_calls) == 1 && atomic_load(&dpause.completes) == 0);
    EXPECT_CODE(TERN_CODE_OK, tern_session_resume(s, id));
    EXPECT_CODE(TERN_CODE_OK, tern_session_resume(s, id)); /* a second one is harmless */
    CHECK(wait_for(&dpause.releases, 1));
    check_once(&dpause, TERN_CODE_OK, "on_data PAUSE, resumed");
    CHECK(atomic_load(&dpause.data_bytes) == 1048576);

    /* A resume made inside the very on_data that pauses counts: no stall. */
    static struct ctx dself;
    dself.data_action = TERN_ACTION_PAUSE;
    dself.resume_inside_data = true;
    atomic_store(&dself.inside_resume_code, -1);
    send_ctx(s, request("GET", url_1m), &all_callbacks, &dself);
    CHECK(wait_for(&dself.releases, 1));
    check_once(&dself, TERN_CODE_OK, "on_data PAUSE after its own resume");
    CHECK(atomic_load(&dself.inside_resume_code) == TERN_CODE_OK);
    CHECK(atomic_load(&dself.data_bytes) == 1048576);

    /* Resuming a request that is not paused is allowed (in flight: OK). */
    static struct ctx held;
    id = send_ctx(s, request("GET", hold.url), &all_callbacks, &held);
    EXPECT_CODE(TERN_CODE_OK, tern_session_resume(s, id));
    EXPECT_CODE(TERN_CODE_OK, tern_session_cancel(s, id));
    CHECK(wait_for(&held.releases, 1));
    check_once(&held, TERN_CODE_CANCELED, "resumed while not paused, canceled");
    EXPECT_CODE(TERN_CODE_NOT_FOUND, tern_session_resume(s, id));
}

/* ------------------------------------------------------------ body readers --- */

static void test_readers(tern_session *s) {
    /* A reader sends its bytes (several calls), then is released exactly once. */
    static struct ctx c1;
    static struct reader r1;
    tern_request *req = request("POST", url_echo);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_reader(req, (int64_t)(sizeof reader_text - 1), reader_read, reader_release, &r1, E));
    send_ctx(s, req, &kept_body_callbacks, &c1);
    CHECK(wait_for(&c1.releases, 1));
    check_once(&c1, TERN_CODE_OK, "reader, content-length");
    CHECK(strcmp(c1.body, "method=POST\nhello from a reader") == 0);
    CHECK(atomic_load(&r1.calls) >= 2);
    CHECK(wait_for(&r1.releases, 1));
    CHECK(atomic_load(&r1.on_main) == 0);

    /* A reader that aborts: CANCELED, released once. */
    static struct ctx c2;
    static struct reader r2 = {.mode = READ_ABORT};
    req = request("POST", url_echo);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_reader(req, -1, reader_read, reader_release, &r2, E));
    send_ctx(s, req, &kept_body_callbacks, &c2);
    CHECK(wait_for(&c2.releases, 1));
    check_once(&c2, TERN_CODE_CANCELED, "reader ABORT");
    CHECK(wait_for(&r2.releases, 1));

    /* A reader that pauses is asked again only after tern_session_resume. */
    static struct ctx c3;
    static struct reader r3 = {.mode = READ_PAUSE_FIRST};
    req = request("POST", url_echo);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_reader(req, -1, reader_read, reader_release, &r3, E));
    uint64_t id = send_ctx(s, req, &kept_body_callbacks, &c3);
    CHECK(wait_for(&r3.paused, 1));
    sleep_ms(300);
    CHECK(atomic_load(&r3.calls) == 1 && atomic_load(&c3.completes) == 0);
    EXPECT_CODE(TERN_CODE_OK, tern_session_resume(s, id));
    CHECK(wait_for(&c3.releases, 1));
    check_once(&c3, TERN_CODE_OK, "reader PAUSE, resumed (chunked)");
    CHECK(strcmp(c3.body, "method=POST\nhello from a reader") == 0);
    CHECK(wait_for(&r3.releases, 1));
    sleep_ms(50);
    CHECK(atomic_load(&r1.releases) == 1 && atomic_load(&r2.releases) == 1 &&
          atomic_load(&r3.releases) == 1);
}

/* ------------------------------------------------------------ pushed bodies --- */

static void test_push(tern_session *s) {
    static const uint8_t five[] = "hello";
    size_t accepted = UNTOUCHED_SIZE;

    /* Unknown ids, NULL session. */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_write(NULL, 1, five, 5, &accepted, E));
    EXPECT(TERN_CODE_NOT_FOUND, tern_session_write(s, 0, five, 5, &accepted, E));
    EXPECT(TERN_CODE_NOT_FOUND, tern_session_write(s, UINT64_MAX, five, 5, &accepted, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_end_body(NULL, 1, E));
    EXPECT(TERN_CODE_NOT_FOUND, tern_session_end_body(s, 0, E));
    EXPECT(TERN_CODE_NOT_FOUND, tern_session_end_body(s, UINT64_MAX, E));
    CHECK(accepted == UNTOUCHED_SIZE);

    /* A request in flight without a pushed body: INVALID_STATE. */
    static struct ctx plain;
    uint64_t id = send_ctx(s, request("GET", hold.url), &all_callbacks, &plain);
    EXPECT(TERN_CODE_INVALID_STATE, tern_session_write(s, id, five, 5, &accepted, E));
    EXPECT(TERN_CODE_INVALID_STATE, tern_session_end_body(s, id, E));
    CHECK(accepted == UNTOUCHED_SIZE);
    EXPECT_CODE(TERN_CODE_OK, tern_session_cancel(s, id));
    CHECK(wait_for(&plain.releases, 1));
    check_once(&plain, TERN_CODE_CANCELED, "held, no pushed body");

    /* A pushed body, chunked: written in two pieces (one empty), ended, echoed. */
    static struct ctx echo;
    tern_request *req = request("POST", url_echo);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_stream(req, -1, E));
    id = send_ctx(s, req, &kept_body_callbacks, &echo);
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_write(s, id, NULL, 5, &accepted, E));
    CHECK(accepted == UNTOUCHED_SIZE);
    EXPECT1(TERN_CODE_OK, tern_session_write(s, id, five, 2, &accepted, E));
    CHECK(accepted == 2);
    EXPECT1(TERN_CODE_OK, tern_session_write(s, id, five, 0, &accepted, E));
    CHECK(accepted == 0);
    EXPECT1(TERN_CODE_OK, tern_session_write(s, id, five + 2, 3, NULL, E)); /* accepted may be NULL */
    EXPECT1(TERN_CODE_OK, tern_session_end_body(s, id, E));
    accepted = UNTOUCHED_SIZE;
    /* After the end: INVALID_ARGUMENT while in flight (or NOT_FOUND once it completed). */
    tern_error *err = NULL;
    tern_code code = tern_session_write(s, id, five, 5, &accepted, &err);
    CHECK(code == TERN_CODE_INVALID_ARGUMENT || code == TERN_CODE_NOT_FOUND);
    CHECK(err != NULL && tern_error_code(err) == code);
    tern_error_free(err);
    CHECK(accepted == UNTOUCHED_SIZE);
    CHECK(wait_for(&echo.releases, 1));
    check_once(&echo, TERN_CODE_OK, "pushed body, chunked");
    CHECK(strcmp(echo.body, "method=POST\nhello") == 0);
    EXPECT(TERN_CODE_NOT_FOUND, tern_session_write(s, id, five, 5, &accepted, E));
    /* Ending a completed request's body is a no-op (its declared length may have been
     * reached before the caller got to it). */
    EXPECT(TERN_CODE_OK, tern_session_end_body(s, id, E));

    /* With a declared length. */
    static struct ctx sized;
    req = request("PUT", url_echo);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_stream(req, 5, E));
    id = send_ctx(s, req, &kept_body_callbacks, &sized);
    EXPECT1(TERN_CODE_OK, tern_session_write(s, id, five, 5, &accepted, E));
    CHECK(accepted == 5);
    EXPECT1(TERN_CODE_OK, tern_session_end_body(s, id, E));
    CHECK(wait_for(&sized.releases, 1));
    check_once(&sized, TERN_CODE_OK, "pushed body, content-length");
    CHECK(strcmp(sized.body, "method=PUT\nhello") == 0);
}

/* A full buffer: a request that waits for a connection (the only one allowed per
 * host is held) drains nothing, so its 256 KiB buffer fills and stays full. */
static void test_would_block(void) {
    tern_session *s = new_session(false, 1);
    static struct ctx holder, pushed;
    uint64_t hold_id = send_ctx(s, request("GET", hold.url), &all_callbacks, &holder);
    sleep_ms(100); /* the holder has the connection */
    tern_request *req = request("POST", hold.url);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_stream(req, -1, E));
    uint64_t id = send_ctx(s, req, &all_callbacks, &pushed);

    enum { BIG = 300 * 1024 };
    uint8_t *big = calloc(1, BIG);
    if (big == NULL) abort();
    size_t accepted = UNTOUCHED_SIZE;
    EXPECT1(TERN_CODE_OK, tern_session_write(s, id, big, BIG, &accepted, E));
    CHECK(accepted == 256 * 1024); /* taken in part: what fits */
    accepted = UNTOUCHED_SIZE;
    EXPECT(TERN_CODE_WOULD_BLOCK, tern_session_write(s, id, big, BIG, &accepted, E));
    EXPECT(TERN_CODE_WOULD_BLOCK, tern_session_write(s, id, big, 1, &accepted, E));
    CHECK(accepted == UNTOUCHED_SIZE);
    EXPECT1(TERN_CODE_OK, tern_session_write(s, id, big, 0, &accepted, E)); /* nothing: fits */
    CHECK(accepted == 0);
    sleep_ms(100);
    CHECK(atomic_load(&pushed.ready) == 0); /* nothing drained */
    EXPECT1(TERN_CODE_OK, tern_session_end_body(s, id, E));
    accepted = UNTOUCHED_SIZE;
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_write(s, id, big, 1, &accepted, E));
    CHECK(accepted == UNTOUCHED_SIZE);
    free(big);

    EXPECT_CODE(TERN_CODE_OK, tern_session_cancel(s, id));
    EXPECT_CODE(TERN_CODE_OK, tern_session_cancel(s, hold_id));
    CHECK(wait_for(&pushed.releases, 1) && wait_for(&holder.releases, 1));
    check_once(&pushed, TERN_CODE_CANCELED, "pushed body waiting for a connection");
    check_once(&holder, TERN_CODE_CANCELED, "held connection");
    EXPECT(TERN_CODE_NOT_FOUND, tern_session_write(s, id, (const uint8_t *)"x", 1, &accepted, E));
    EXPECT(TERN_CODE_OK, tern_session_end_body(s, id, E));
    tern_session_free(s);
}

/* ----------------------------------------------------------- queued delivery --- */

/* Is the descriptor readable now? */
static bool readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void test_queued(tern_session *direct) {
    tern_session *qs = new_session(true, 0);
    int fd = UNTOUCHED_FD;
    uint32_t ran = UNTOUCHED_U32;

    /* tern_session_fd and tern_session_poll: NULL, and a session that delivers on
     * runtime threads (INVALID_STATE); out-parameters untouched. */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_fd(NULL, &fd, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_fd(qs, NULL, E));
    EXPECT(TERN_CODE_INVALID_STATE, tern_session_fd(direct, &fd, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_poll(NULL, 0, 0, &ran, E));
    EXPECT(TERN_CODE_INVALID_STATE, tern_session_poll(direct, 0, 0, &ran, E));
    EXPECT(TERN_CODE_INVALID_STATE, tern_session_poll(direct, 10, 1, NULL, E));
    CHECK(fd == UNTOUCHED_FD && ran == UNTOUCHED_U32);

    EXPECT(TERN_CODE_OK, tern_session_fd(qs, &fd, E));
    CHECK(fd >= 0);
    int fd2 = UNTOUCHED_FD;
    EXPECT1(TERN_CODE_OK, tern_session_fd(qs, &fd2, E));
    CHECK(fd2 == fd); /* the same descriptor each time */
    CHECK(!readable(fd));
    /* Nothing queued: ran 0, at once or after the time-out; ran_out may be NULL. */
    EXPECT(TERN_CODE_OK, tern_session_poll(qs, 0, 0, &ran, E));
    CHECK(ran == 0);
    EXPECT(TERN_CODE_OK, tern_session_poll(qs, 0, 64, NULL, E));
    EXPECT1(TERN_CODE_OK, tern_session_poll(qs, 30, 1, &ran, E));
    CHECK(ran == 0);

    /* A request: its callbacks wait until this thread polls; the descriptor says so. */
    static struct ctx c;
    uint64_t id = send_ctx(qs, request("GET", url_hello), &all_callbacks, &c);
    CHECK(id != 0);
    for (int i = 0; i < 6000 && !readable(fd); i++) sleep_ms(10);
    CHECK(readable(fd));
    sleep_ms(200);
    CHECK(atomic_load(&c.headers) == 0 && atomic_load(&c.completes) == 0 &&
          atomic_load(&c.releases) == 0);
    /* One callback at a time when asked for one. */
    EXPECT1(TERN_CODE_OK, tern_session_poll(qs, 1000, 1, &ran, E));
    CHECK(ran == 1);
    CHECK(atomic_load(&c.headers) == 1);
    CHECK(pump(qs, &c));
    check_once(&c, TERN_CODE_OK, "queued");
    CHECK(atomic_load(&c.off_main) == 0 && atomic_load(&c.on_main) >= 4);
    CHECK(atomic_load(&c.data_bytes) == 13);
    EXPECT1(TERN_CODE_OK, tern_session_poll(qs, 0, 0, &ran, E));
    CHECK(ran == 0);
    CHECK(!readable(fd));

    /* A body reader with queued delivery runs inside tern_session_poll, here. */
    static struct ctx rc;
    static struct reader r;
    tern_request *req = request("POST", url_echo);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_reader(req, -1, reader_read, reader_release, &r, E));
    send_ctx(qs, req, &kept_body_callbacks, &rc);
    sleep_ms(200);
    CHECK(atomic_load(&r.calls) == 0);
    CHECK(pump(qs, &rc));
    check_once(&rc, TERN_CODE_OK, "queued, body reader");
    CHECK(strcmp(rc.body, "method=POST\nhello from a reader") == 0);
    CHECK(atomic_load(&r.calls) >= 2 && atomic_load(&r.off_main) == 0);
    CHECK(atomic_load(&rc.off_main) == 0);
    for (int i = 0; i < 100 && atomic_load(&r.releases) == 0; i++) tern_session_poll(qs, 10, 0, NULL, NULL);
    CHECK(atomic_load(&r.releases) == 1);

    /* tern_session_poll on a runtime thread (a callback of the direct session):
     * WOULD_DEADLOCK, with an error and ran_out untouched. */
    static struct ctx from_cb;
    from_cb.poll_from_callback = qs;
    atomic_store(&from_cb.poll_code, -1);
    send_ctx(direct, request("GET", url_hello), &kept_body_callbacks, &from_cb);
    CHECK(wait_for(&from_cb.releases, 1));
    check_once(&from_cb, TERN_CODE_OK, "polls from a runtime thread");
    CHECK(atomic_load(&from_cb.poll_code) == TERN_CODE_WOULD_DEADLOCK);

    /* Freeing a queued session with a request in flight: aborted, and its callbacks
     * run on this thread before tern_session_free returns. */
    static struct ctx held;
    send_ctx(qs, request("GET", hold.url), &all_callbacks, &held);
    sleep_ms(100);
    CHECK(atomic_load(&held.completes) == 0);
    tern_session_free(qs);
    check_once(&held, TERN_CODE_SHUTDOWN, "in flight when a queued session is freed");
    CHECK(atomic_load(&held.off_main) == 0);
}

int main(void) {
    main_thread = pthread_self();
    const char *http = need_env("TERN_TEST_HTTP");
    snprintf(url_hello, sizeof url_hello, "%s/hello", http);
    snprintf(url_1m, sizeof url_1m, "%s/bytes/1m", http);
    snprintf(url_echo, sizeof url_echo, "%s/echo", http);
    hold = hold_start();

    tern_error *err = NULL;
    if (tern_runtime_new(NULL, &rt, &err) != TERN_CODE_OK) {
        fprintf(stderr, "bad_input_embedding: runtime: %s\n", tern_error_message(err));
        return 1;
    }
    tern_session *s = new_session(false, 0);

    test_options();
    test_request_bodies();
    test_streaming(s);
    test_readers(s);
    test_push(s);
    test_would_block();
    test_queued(s);

    tern_session_free(s);
    tern_runtime_free(rt);
    close(hold.fd);
    printf("bad_input_embedding: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
