/* callbacks: the exactly-once rules of tern_session_send, checked from C.
 *
 *  1. 200 concurrent requests (http/1.1 and h2 over TLS) through one session:
 *     on_complete runs exactly once per request and release exactly once, after it;
 *     neither runs inside tern_session_send (a thread-local flag is set around every
 *     send), both run on the runtime's threads (named by tern_runtime_config), and
 *     each response carries the id send returned.
 *  2. Cancel of in-flight requests (to a local listener that never answers): each
 *     completes once with CANCELED; a second cancel is NOT_FOUND.
 *  3. From inside on_complete: send works, cancel works, and the blocking perform
 *     returns WOULD_DEADLOCK (and consumes its request).
 *  4. Graceful close: the requests in flight complete OK, later sends are refused with
 *     SHUTDOWN and run no callback.
 *  5. Abort close, and runtime free with requests in flight: each completes once with
 *     SHUTDOWN (for runtime free, before tern_runtime_free returns).
 *  6. tern_session_free with requests in flight: they still complete.
 *  7. Queued delivery, a poll made from on_data (after tern_session_cancel of that
 *     request, or tern_session_free from on_data): neither that request's on_data nor
 *     its on_complete nor its release runs inside the running on_data; they run
 *     after it, once, in order. A 16-byte tern_callbacks (an older caller's) is
 *     accepted and nothing past it is read.
 *
 * Needs TERN_TEST_HTTP, TERN_TEST_HTTPS and TERN_TEST_CA.
 */
#define _GNU_SOURCE /* pthread_getname_np */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

#define TEST_NAME "callbacks"
#include "check.h"

static struct hold hold;

#define THREAD_NAME "tern-cbtest"

/* Set on a thread while it is inside tern_session_send. */
static _Thread_local bool in_send;
static pthread_t main_thread;

/* Every request's state; owned by the test, lent to tern as user_data. */
struct ctx {
    atomic_int completes;          /* on_complete calls */
    atomic_int releases;           /* release calls */
    _Atomic tern_code code;
    _Atomic uint16_t status;
    _Atomic uint64_t response_id;  /* tern_response_id in on_complete */
    uint64_t send_id;              /* what tern_session_send wrote to id_out */
    atomic_bool inside_send;       /* a callback ran inside tern_session_send */
    atomic_bool wrong_thread;      /* a callback ran on a thread that is not tern's */
    atomic_bool release_first;     /* release ran before on_complete */
    /* Section 3: what on_complete does re-entrantly. */
    int reenter;
};

/* Counts releases (the last callback of each request) for the main thread. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int released_total;
static atomic_int completes_total;

/* Waits (up to 120 s: valgrind is slow) until `want` releases have run in all. */
static bool wait_released(int want) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 120;
    pthread_mutex_lock(&lock);
    int rc = 0;
    while (released_total < want && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&changed, &lock, &deadline);
    bool ok = released_total >= want;
    if (!ok) fprintf(stderr, "callbacks: timed out: %d of %d released\n", released_total, want);
    pthread_mutex_unlock(&lock);
    return ok;
}

static int released_now(void) {
    pthread_mutex_lock(&lock);
    int n = released_total;
    pthread_mutex_unlock(&lock);
    return n;
}

static bool on_tern_thread(void) {
    char name[32] = "";
    if (pthread_equal(pthread_self(), main_thread)) return false;
    if (pthread_getname_np(pthread_self(), name, sizeof name) != 0) return false;
    return strncmp(name, THREAD_NAME, strlen(THREAD_NAME)) == 0;
}

static tern_session *session; /* for the re-entrant calls of section 3 */
static const char *http, *https;
static char hello_http[256], hello_https[256];

static tern_request *request(const char *url) {
    tern_request *req = NULL;
    tern_error *err = NULL;
    if (tern_request_new("GET", url, &req, &err) != TERN_CODE_OK) {
        fprintf(stderr, "callbacks: request %s: %s\n", url, tern_error_message(err));
        exit(1);
    }
    return req;
}

/* ------------------------------------------------------------- callbacks --- */

static atomic_int body_released;
static void body_release(void *user_data) {
    (void)user_data;
    atomic_fetch_add(&body_released, 1);
}

static struct ctx reentrant_child;  /* sent from inside a callback */
static struct ctx reentrant_victim; /* canceled from inside a callback */
static atomic_int reentrant_perform_code = -1;
static atomic_int reentrant_send_code = -1;
static atomic_int reentrant_cancel_code = -1;
static tern_code send_ctx(const tern_session *s, const char *url, struct ctx *c);

static void on_complete(void *user_data, tern_response *resp) {
    struct ctx *c = user_data;
    if (in_send) atomic_store(&c->inside_send, true);
    if (!on_tern_thread()) atomic_store(&c->wrong_thread, true);
    if (atomic_load(&c->releases) != 0) atomic_store(&c->release_first, true);
    atomic_store(&c->code, tern_response_code(resp));
    atomic_store(&c->status, tern_response_status(resp));
    atomic_store(&c->response_id, tern_response_id(resp));

    if (c->reenter) {
        /* The blocking call would deadlock here: refused, request consumed. */
        tern_request *req = request(hello_http);
        static const uint8_t body[] = "x";
        tern_request_set_body_borrowed(req, body, 1, body_release, NULL, NULL);
        tern_response *out = NULL;
        atomic_store(&reentrant_perform_code, (int)tern_session_perform(session, req, &out, NULL));
        /* Sending and canceling are allowed. */
        atomic_store(&reentrant_send_code, (int)send_ctx(session, hello_http, &reentrant_child));
        atomic_store(&reentrant_cancel_code, (int)tern_session_cancel(session, reentrant_victim.send_id));
    }

    tern_response_free(resp);
    atomic_fetch_add(&completes_total, 1);
    atomic_fetch_add(&c->completes, 1);
}

static void on_release(void *user_data) {
    struct ctx *c = user_data;
    if (in_send) atomic_store(&c->inside_send, true);
    if (!on_tern_thread()) atomic_store(&c->wrong_thread, true);
    if (atomic_load(&c->completes) != 1) atomic_store(&c->release_first, true);
    atomic_fetch_add(&c->releases, 1);
    pthread_mutex_lock(&lock);
    released_total++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

static const tern_callbacks callbacks = {
    .struct_size = sizeof(tern_callbacks),
    .on_complete = on_complete,
    .release = on_release,
};

/* Sends one request with `c` as user_data, marking this thread as inside send. */
static tern_code send_ctx(const tern_session *s, const char *url, struct ctx *c) {
    tern_error *err = NULL;
    uint64_t id = 0;
    in_send = true;
    tern_code code = tern_session_send(s, request(url), &callbacks, c, &id, &err);
    in_send = false;
    if (code == TERN_CODE_OK) {
        c->send_id = id;
    } else {
        tern_error_free(err);
    }
    return code;
}

/* Checks that each ctx got exactly one on_complete and one release, in that order,
 * on a tern thread and never inside send; and that the outcome is `want`. */
static void check_once(struct ctx *cs, size_t n, tern_code want, const char *what) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        struct ctx *c = &cs[i];
        bool ok = atomic_load(&c->completes) == 1 && atomic_load(&c->releases) == 1 &&
                  !atomic_load(&c->inside_send) && !atomic_load(&c->wrong_thread) &&
                  !atomic_load(&c->release_first) && atomic_load(&c->code) == want &&
                  atomic_load(&c->response_id) == c->send_id && c->send_id != 0;
        if (!ok && bad++ < 5) {
            fprintf(stderr,
                    "callbacks: %s #%zu: completes %d, releases %d, inside send %d, wrong "
                    "thread %d, release first %d, code %s (want %s), id %llu/%llu\n",
                    what, i, atomic_load(&c->completes), atomic_load(&c->releases),
                    (int)atomic_load(&c->inside_send), (int)atomic_load(&c->wrong_thread),
                    (int)atomic_load(&c->release_first), tern_code_name(atomic_load(&c->code)),
                    tern_code_name(want), (unsigned long long)atomic_load(&c->response_id),
                    (unsigned long long)c->send_id);
        }
    }
    checks++;
    if (bad) {
        failures++;
        fprintf(stderr, "callbacks: %s: %zu of %zu requests broke the rules\n", what, bad, n);
    }
}

/* A session trusting the test CA, delivering as `delivery` (a tern_delivery). */
static tern_session *new_session(const tern_runtime *rt, uint32_t delivery) {
    tern_session_options *o = NULL;
    tern_session *s = NULL;
    tern_error *err = NULL;
    if (tern_session_options_new(&o, &err) != TERN_CODE_OK ||
        tern_session_options_add_ca_file(o, need_env("TERN_TEST_CA"), &err) != TERN_CODE_OK ||
        tern_session_options_set_delivery(o, delivery, &err) != TERN_CODE_OK ||
        tern_session_new(rt, o, &s, &err) != TERN_CODE_OK) {
        fprintf(stderr, "callbacks: session: %s\n", tern_error_message(err));
        exit(1);
    }
    tern_session_options_free(o);
    return s;
}

static tern_runtime *new_runtime(void) {
    tern_runtime_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    cfg.worker_threads = 2;
    cfg.thread_name = THREAD_NAME;
    tern_runtime *rt = NULL;
    tern_error *err = NULL;
    if (tern_runtime_new(&cfg, &rt, &err) != TERN_CODE_OK) {
        fprintf(stderr, "callbacks: runtime: %s\n", tern_error_message(err));
        exit(1);
    }
    return rt;
}

/* ---------------------------------------------------------------- sections --- */

#define CONCURRENT 200
#define CONCURRENT_TLS 40

static void test_concurrent(void) {
    static struct ctx cs[CONCURRENT];
    int base = released_now();
    for (size_t i = 0; i < CONCURRENT; i++) {
        const char *url = i % (CONCURRENT / CONCURRENT_TLS) == 0 ? hello_https : hello_http;
        CHECK(send_ctx(session, url, &cs[i]) == TERN_CODE_OK);
    }
    CHECK(wait_released(base + CONCURRENT));
    sleep_ms(200); /* any late, duplicate callback would show up now */
    check_once(cs, CONCURRENT, TERN_CODE_OK, "concurrent");
    size_t ok200 = 0;
    for (size_t i = 0; i < CONCURRENT; i++) ok200 += atomic_load(&cs[i].status) == 200;
    CHECK(ok200 == CONCURRENT);
    /* Ids are unique. */
    size_t dups = 0;
    for (size_t i = 0; i < CONCURRENT; i++)
        for (size_t j = i + 1; j < CONCURRENT; j++) dups += cs[i].send_id == cs[j].send_id;
    CHECK(dups == 0);
    CHECK(released_now() == base + CONCURRENT);
}

#define HELD 6

static void test_cancel(void) {
    static struct ctx cs[HELD];
    int base = released_now();
    for (size_t i = 0; i < HELD; i++) CHECK(send_ctx(session, hold.url, &cs[i]) == TERN_CODE_OK);
    /* Half are canceled at once, half once they are surely connected and waiting. */
    for (size_t i = 0; i < HELD / 2; i++) CHECK(tern_session_cancel(session, cs[i].send_id) == TERN_CODE_OK);
    CHECK(wait_released(base + HELD / 2));
    sleep_ms(300);
    CHECK(released_now() == base + HELD / 2); /* the others still wait */
    for (size_t i = HELD / 2; i < HELD; i++) {
        CHECK(atomic_load(&cs[i].completes) == 0);
        CHECK(tern_session_cancel(session, cs[i].send_id) == TERN_CODE_OK);
    }
    CHECK(wait_released(base + HELD));
    sleep_ms(100);
    check_once(cs, HELD, TERN_CODE_CANCELED, "cancel");
    for (size_t i = 0; i < HELD; i++) CHECK(tern_session_cancel(session, cs[i].send_id) == TERN_CODE_NOT_FOUND);
    CHECK(released_now() == base + HELD);
}

static void test_reentrant(void) {
    static struct ctx parent;
    int base = released_now();
    atomic_store(&body_released, 0);
    CHECK(send_ctx(session, hold.url, &reentrant_victim) == TERN_CODE_OK);
    parent.reenter = 1;
    CHECK(send_ctx(session, hello_http, &parent) == TERN_CODE_OK);
    /* parent, the child it sends, and the victim it cancels. */
    CHECK(wait_released(base + 3));
    sleep_ms(100);
    CHECK(atomic_load(&reentrant_perform_code) == TERN_CODE_WOULD_DEADLOCK);
    CHECK(atomic_load(&body_released) == 1); /* perform consumed its request */
    CHECK(atomic_load(&reentrant_send_code) == TERN_CODE_OK);
    CHECK(atomic_load(&reentrant_cancel_code) == TERN_CODE_OK);
    check_once(&parent, 1, TERN_CODE_OK, "re-entrant parent");
    check_once(&reentrant_child, 1, TERN_CODE_OK, "child sent from a callback");
    check_once(&reentrant_victim, 1, TERN_CODE_CANCELED, "canceled from a callback");
    CHECK(released_now() == base + 3);
}

#define CLOSING 20

static void test_graceful_close(tern_runtime *rt) {
    static struct ctx cs[CLOSING];
    static struct ctx refused;
    tern_session *s = new_session(rt, TERN_DELIVERY_RUNTIME_THREAD);
    int base = released_now();
    for (size_t i = 0; i < CLOSING; i++) CHECK(send_ctx(s, i % 2 ? hello_http : hello_https, &cs[i]) == TERN_CODE_OK);
    CHECK(tern_session_close(s, TERN_CLOSE_GRACEFUL, NULL) == TERN_CODE_OK);
    CHECK(send_ctx(s, hello_http, &refused) == TERN_CODE_SHUTDOWN);
    CHECK(wait_released(base + CLOSING));
    sleep_ms(100);
    check_once(cs, CLOSING, TERN_CODE_OK, "in flight at a graceful close");
    CHECK(atomic_load(&refused.completes) == 0 && atomic_load(&refused.releases) == 0);
    CHECK(released_now() == base + CLOSING);
    tern_session_free(s);
}

static void test_abort_close(tern_runtime *rt) {
    static struct ctx cs[HELD];
    tern_session *s = new_session(rt, TERN_DELIVERY_RUNTIME_THREAD);
    int base = released_now();
    for (size_t i = 0; i < HELD; i++) CHECK(send_ctx(s, hold.url, &cs[i]) == TERN_CODE_OK);
    sleep_ms(100);
    CHECK(released_now() == base);
    CHECK(tern_session_close(s, TERN_CLOSE_ABORT, NULL) == TERN_CODE_OK);
    CHECK(wait_released(base + HELD));
    sleep_ms(100);
    check_once(cs, HELD, TERN_CODE_SHUTDOWN, "in flight at an abort close");
    CHECK(tern_session_close(s, TERN_CLOSE_ABORT, NULL) == TERN_CODE_OK); /* harmless */
    tern_session_free(s);
    CHECK(released_now() == base + HELD);
}

static void test_runtime_free(void) {
    static struct ctx cs[HELD];
    static struct ctx refused;
    tern_runtime *rt = new_runtime();
    tern_session *s = new_session(rt, TERN_DELIVERY_RUNTIME_THREAD);
    int base = released_now();
    for (size_t i = 0; i < HELD; i++) CHECK(send_ctx(s, hold.url, &cs[i]) == TERN_CODE_OK);
    sleep_ms(100);
    tern_runtime_free(rt);
    /* Documented: it returns after the last completion ran. */
    CHECK(released_now() == base + HELD);
    check_once(cs, HELD, TERN_CODE_SHUTDOWN, "in flight at runtime free");
    CHECK(send_ctx(s, hello_http, &refused) == TERN_CODE_SHUTDOWN);
    tern_session_free(s);
    sleep_ms(100);
    CHECK(atomic_load(&refused.completes) == 0 && atomic_load(&refused.releases) == 0);
}

static void test_session_free_in_flight(tern_runtime *rt) {
    static struct ctx cs[CLOSING];
    tern_session *s = new_session(rt, TERN_DELIVERY_RUNTIME_THREAD);
    int base = released_now();
    for (size_t i = 0; i < CLOSING; i++) CHECK(send_ctx(s, i % 2 ? hello_http : hello_https, &cs[i]) == TERN_CODE_OK);
    tern_session_free(s); /* a graceful close: they still complete */
    CHECK(wait_released(base + CLOSING));
    sleep_ms(100);
    check_once(cs, CLOSING, TERN_CODE_OK, "in flight at session free");
}

/* 7. Queued delivery: on_data cancels its own request and polls again (or frees the
 * session, which aborts and polls). The nested poll must not run that request's
 * on_data, on_complete or release inside the running on_data: they run after it, once,
 * in order. `token` is freed by release and written by on_data after the nested poll
 * (valgrind sees a use after free if release ran inside). Then a 16-byte
 * tern_callbacks (an older caller's: struct_size and on_complete) is accepted and
 * nothing past it is read. */
struct nested {
    tern_session *s;
    bool free_session;
    uint64_t id;
    int *token;
    int depth, datas, completes, releases, completes_seen_inside;
    tern_code code;
    bool data_inside, complete_inside, release_inside, disorder;
};

static uint32_t nested_data(void *ud, const uint8_t *data, size_t len) {
    (void)data, (void)len;
    struct nested *n = (struct nested *)ud;
    if (n->depth != 0) n->data_inside = true;
    if (n->completes != 0 || n->releases != 0) n->disorder = true;
    n->depth++;
    if (n->datas++ == 0) {
        if (n->free_session) {
            tern_session_free(n->s);
            n->s = NULL;
        } else {
            CHECK(tern_session_cancel(n->s, n->id) == TERN_CODE_OK);
            for (int i = 0; i < 30; i++) CHECK(tern_session_poll(n->s, 10, 0, NULL, NULL) == TERN_CODE_OK);
        }
        n->completes_seen_inside = n->completes;
        *n->token += 1; /* a use after free if release ran inside */
    }
    n->depth--;
    return TERN_ACTION_CONTINUE;
}

static void nested_complete(void *ud, tern_response *resp) {
    struct nested *n = (struct nested *)ud;
    if (n->depth != 0) n->complete_inside = true;
    if (n->releases != 0) n->disorder = true;
    n->completes++;
    n->code = tern_response_code(resp);
    tern_response_free(resp);
}

static void nested_release(void *ud) {
    struct nested *n = (struct nested *)ud;
    if (n->depth != 0) n->release_inside = true;
    if (n->completes != 1) n->disorder = true;
    n->releases++;
    free(n->token);
    n->token = NULL;
}

static void test_nested_poll(tern_runtime *rt, bool free_session) {
    const char *what = free_session ? "session free in on_data" : "cancel and poll in on_data";
    static struct nested n;
    memset(&n, 0, sizeof n);
    n.s = new_session(rt, TERN_DELIVERY_QUEUED);
    n.free_session = free_session;
    n.token = (int *)calloc(1, sizeof *n.token);
    tern_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.on_complete = nested_complete;
    cb.on_data = nested_data;
    cb.release = nested_release;
    char url[256];
    snprintf(url, sizeof url, "%s/bytes/1m", http);
    CHECK(tern_session_send(n.s, request(url), &cb, &n, &n.id, NULL) == TERN_CODE_OK);
    tern_session *s = n.s;
    for (int i = 0; i < 1200 && n.releases == 0 && n.s != NULL; i++) {
        CHECK(tern_session_poll(s, 100, 0, NULL, NULL) == TERN_CODE_OK);
    }
    bool ok = n.datas >= 1 && n.completes == 1 && n.releases == 1 && n.completes_seen_inside == 0 &&
              !n.data_inside && !n.complete_inside && !n.release_inside && !n.disorder &&
              n.code == (free_session ? TERN_CODE_SHUTDOWN : TERN_CODE_CANCELED);
    checks++;
    if (!ok) {
        failures++;
        fprintf(stderr,
                "callbacks: %s: datas %d completes %d releases %d completes_seen_inside %d "
                "data_inside %d complete_inside %d release_inside %d disorder %d code %s\n",
                what, n.datas, n.completes, n.releases, n.completes_seen_inside,
                (int)n.data_inside, (int)n.complete_inside, (int)n.release_inside,
                (int)n.disorder, tern_code_name(n.code));
    }
    if (n.s != NULL) tern_session_free(n.s);
}

static int short_completes;
static void short_complete(void *ud, tern_response *resp) {
    (void)ud;
    short_completes++;
    tern_response_free(resp);
}

static void test_short_callbacks(tern_runtime *rt) {
    tern_session *s = new_session(rt, TERN_DELIVERY_QUEUED);
    size_t size = offsetof(tern_callbacks, on_complete) + sizeof(void *);
    tern_callbacks *cb = (tern_callbacks *)malloc(size);
    memset(cb, 0, size);
    cb->struct_size = size;
    cb->on_complete = short_complete;
    CHECK(tern_session_send(s, request(hello_http), cb, NULL, NULL, NULL) == TERN_CODE_OK);
    free(cb); /* copied by the send */
    for (int i = 0; i < 1200 && short_completes == 0; i++) {
        CHECK(tern_session_poll(s, 100, 0, NULL, NULL) == TERN_CODE_OK);
    }
    CHECK(short_completes == 1);
    tern_session_free(s);
}

int main(void) {
    main_thread = pthread_self();
    http = need_env("TERN_TEST_HTTP");
    https = need_env("TERN_TEST_HTTPS");
    snprintf(hello_http, sizeof hello_http, "%s/hello", http);
    snprintf(hello_https, sizeof hello_https, "%s/hello", https);
    hold = hold_start();

    tern_runtime *rt = new_runtime();
    session = new_session(rt, TERN_DELIVERY_RUNTIME_THREAD);

    test_concurrent();
    test_cancel();
    test_reentrant();
    test_graceful_close(rt);
    test_abort_close(rt);
    test_runtime_free();
    test_session_free_in_flight(rt);
    test_nested_poll(rt, false);
    test_nested_poll(rt, true);
    test_short_callbacks(rt);

    tern_session_free(session);
    tern_runtime_free(rt);
    close(hold.fd);

    int total = atomic_load(&completes_total);
    int want = CONCURRENT + HELD + 3 + CLOSING + HELD + HELD + CLOSING;
    CHECK(total == want);
    CHECK(released_now() == want);
    printf("callbacks: %d checks, %d failed (%d requests completed once each)\n", checks,
           failures, total);
    return failures == 0 ? 0 : 1;
}
