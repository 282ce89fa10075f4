/* ws: the WebSocket functions of tern.h from C, against the Python `websockets` server
 * of scripts/testenv.sh (scripts/ws_echo_server.py), under valgrind.
 *
 *  1. Bad input: every tern_ws_* function and tern_session_ws_connect given NULL
 *     handles, NULL strings, non-UTF-8 strings, invalid text, close codes that may not
 *     be sent, over-long reasons and pings, unknown timeout kinds, managed headers and
 *     bad subprotocols returns the code its header comment names, with an error
 *     object of that code and a message; a refused connect runs no callback and leaves
 *     *ws_out untouched; a refused send or close leaves the socket open and working.
 *  2. Options on the wire (/headers): an extra header, the Origin, the offered
 *     subprotocols in order, no extension offered; a subprotocol the server picks
 *     (/subprotocol), and none picked (the open still succeeds).
 *  3. Echo over ws:// and wss:// (the testenv CA): text (non-ASCII, empty, with a NUL)
 *     and binary (empty, 125, 126, 65536 bytes, 1 MiB), in order and unchanged,
 *     sent while CONNECTING and while OPEN; the buffered amount drains to 0.
 *  4. Close: by the server (/close?code=4001&reason=bye; a reason holding a NUL keeps
 *     its bytes and length), by the caller with 1000 and
 *     a reason, with 3000, and without a code (the peer sees 1005); state CLOSING
 *     then CLOSED; sends after close are INVALID_STATE; a second close does nothing.
 *  5. Failures to open: a refused upgrade (/reject: WS_HANDSHAKE, HTTP 403 and its
 *     body), a refused TCP connection, the handshake time-out against a listener that
 *     never answers, a close or an abort while CONNECTING (CANCELED, 1006, not opened).
 *  6. Queued delivery: every callback runs on the polling thread inside
 *     tern_session_poll, none inside tern_session_ws_connect.
 *  7. 20 sockets: open, echo, then close / abort / tern_ws_free / nothing; then
 *     tern_runtime_free with 5 still open: each gets on_close exactly once (SHUTDOWN for
 *     the open ones, before tern_runtime_free returns) and release once, after it.
 *  8. Queued delivery, a poll made from on_message (after tern_ws_abort, or
 *     tern_session_free from on_message): neither that socket's next message nor its
 *     on_close nor its release runs inside that on_message; they run after it, once,
 *     in order. A tern_ws_callbacks of 16 bytes (an older caller's) is accepted and
 *     nothing past it is read.
 *
 * Every socket is checked for the callback order: on_open at most once and first,
 * on_message only after on_open, nothing after on_close, release once and last, and
 * no callback inside tern_session_ws_connect.
 *
 * Needs TERN_TEST_WS, TERN_TEST_WSS and TERN_TEST_CA.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
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

#define TEST_NAME "ws"
#include "check.h"

#define UNTOUCHED_WS ((tern_ws *)(uintptr_t)0x5a5a5a5a)
#define MAX_MSGS 64
#define WAIT_SECONDS 60 /* valgrind is slow */

static const char *ws_base, *wss_base, *ca_file;
static struct hold hold;
static pthread_t main_thread;
static _Thread_local bool in_connect; /* set around every tern_session_ws_connect */
static _Thread_local bool in_poll;    /* set around every tern_session_poll */

/* ------------------------------------------------------------ the recorder --- */

/* What one socket's callbacks saw. tern runs them one at a time; `mu` is for main. */
struct rec {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tern_ws *ws; /* the caller's handle, written by connect before any callback */
    bool queued; /* callbacks must run on the main thread, inside tern_session_poll */
    int opens, closes, releases, writables, nmsgs;
    bool disorder;       /* a callback out of the documented order */
    bool inside_connect; /* a callback ran inside tern_session_ws_connect */
    bool wrong_place;    /* queued: a callback off the main thread or outside poll */
    bool borrowed_differs; /* the borrowed ws had another id than the caller's */
    uint16_t open_status;
    char subprotocol[64];
    struct {
        uint32_t kind;
        size_t len;
        uint8_t *data;
    } msgs[MAX_MSGS];
    /* on_close */
    tern_code code;
    char message[512];
    uint16_t close_code;
    uint32_t clean, opened;
    char reason[128];
    size_t reason_len;
    bool reason_terminated; /* reason[reason_len] was NUL */
    uint32_t state_in_close;
    bool had_response;
    uint16_t response_status;
    char body[64];
};

static struct rec *rec_new(bool queued) {
    struct rec *r = (struct rec *)calloc(1, sizeof *r);
    if (r == NULL) abort();
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->ws = UNTOUCHED_WS;
    r->queued = queued;
    return r;
}

static void rec_free(struct rec *r) {
    for (int i = 0; i < r->nmsgs && i < MAX_MSGS; i++) free(r->msgs[i].data);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Common checks at the start of every callback (ws is NULL for release); returns
 * with r->mu held. */
static void enter(struct rec *r, const tern_ws *ws) {
    pthread_mutex_lock(&r->mu);
    if (in_connect) r->inside_connect = true;
    if (r->queued && (!pthread_equal(pthread_self(), main_thread) || !in_poll)) {
        r->wrong_place = true;
    }
    if (ws != NULL && r->ws != UNTOUCHED_WS && r->ws != NULL && tern_ws_id(ws) != tern_ws_id(r->ws)) {
        r->borrowed_differs = true;
    }
    if ((ws != NULL && r->closes != 0) || r->releases != 0) r->disorder = true;
}

static void leave(struct rec *r) {
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void cb_open(void *ud, const tern_ws *ws, const tern_response *head) {
    struct rec *r = (struct rec *)ud;
    enter(r, ws);
    if (r->opens != 0 || r->nmsgs != 0) r->disorder = true;
    r->opens++;
    r->open_status = tern_response_status(head);
    const char *p = tern_ws_subprotocol(ws);
    snprintf(r->subprotocol, sizeof r->subprotocol, "%s", p ? p : "");
    leave(r);
}

static void cb_message(void *ud, const tern_ws *ws, uint32_t kind, const uint8_t *data,
                       size_t len) {
    struct rec *r = (struct rec *)ud;
    enter(r, ws);
    if (r->opens != 1) r->disorder = true;
    if (r->nmsgs < MAX_MSGS) {
        r->msgs[r->nmsgs].kind = kind;
        r->msgs[r->nmsgs].len = len;
        r->msgs[r->nmsgs].data = (uint8_t *)malloc(len + 1);
        if (r->msgs[r->nmsgs].data == NULL) abort();
        if (len > 0) memcpy(r->msgs[r->nmsgs].data, data, len);
    }
    r->nmsgs++;
    leave(r);
}

static void cb_writable(void *ud, const tern_ws *ws) {
    struct rec *r = (struct rec *)ud;
    enter(r, ws);
    r->writables++;
    leave(r);
}

static void cb_close(void *ud, const tern_ws *ws, const tern_ws_close_info *info) {
    struct rec *r = (struct rec *)ud;
    enter(r, ws);
    r->closes++;
    r->code = info->code;
    snprintf(r->message, sizeof r->message, "%s", info->message ? info->message : "(NULL)");
    r->close_code = info->close_code;
    r->clean = info->clean;
    r->opened = info->opened;
    size_t n = info->reason_len < sizeof r->reason ? info->reason_len : sizeof r->reason - 1;
    if (n > 0) memcpy(r->reason, info->reason, n);
    r->reason[n] = '\0';
    r->reason_len = info->reason_len;
    r->reason_terminated = info->reason != NULL && info->reason[info->reason_len] == '\0';
    r->state_in_close = tern_ws_state(ws);
    r->had_response = info->response != NULL;
    if (info->response != NULL) {
        const uint8_t *body = NULL;
        size_t body_len = 0;
        r->response_status = tern_response_status(info->response);
        if (tern_response_body(info->response, &body, &body_len) == TERN_CODE_OK && body) {
            size_t m = body_len < sizeof r->body ? body_len : sizeof r->body - 1;
            memcpy(r->body, body, m);
            r->body[m] = '\0';
        }
    }
    if (info->opened != (uint32_t)(r->opens != 0)) r->disorder = true;
    leave(r);
}

static void cb_release(void *ud) {
    struct rec *r = (struct rec *)ud;
    enter(r, NULL);
    if (r->closes != 1) r->disorder = true;
    r->releases++;
    leave(r);
}

static const tern_ws_callbacks all_callbacks = {
    .struct_size = sizeof(tern_ws_callbacks),
    .on_close = cb_close,
    .on_open = cb_open,
    .on_message = cb_message,
    .on_writable = cb_writable,
    .release = cb_release,
};

/* Waits until `*field` (an int of r) reaches `want`; false on time-out. */
static bool rec_wait(struct rec *r, const int *field, int want) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_SECONDS;
    pthread_mutex_lock(&r->mu);
    int rc = 0;
    while (*field < want && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&r->cv, &r->mu, &deadline);
    bool ok = *field >= want;
    pthread_mutex_unlock(&r->mu);
    if (!ok) fprintf(stderr, "ws: timed out waiting (%d of %d)\n", *field, want);
    return ok;
}

/* The checks every socket must pass once released. */
static void check_rec_order(struct rec *r, const char *what) {
    pthread_mutex_lock(&r->mu);
    bool ok = r->closes == 1 && r->releases == 1 && r->opens <= 1 && !r->disorder &&
              !r->inside_connect && !r->wrong_place && !r->borrowed_differs &&
              r->state_in_close == TERN_WS_READY_STATE_CLOSED;
    if (!ok) {
        fprintf(stderr,
                "ws: %s: opens %d closes %d releases %d disorder %d inside_connect %d "
                "wrong_place %d borrowed_differs %d state_in_close %u\n",
                what, r->opens, r->closes, r->releases, (int)r->disorder, (int)r->inside_connect,
                (int)r->wrong_place, (int)r->borrowed_differs, (unsigned)r->state_in_close);
    }
    pthread_mutex_unlock(&r->mu);
    CHECK(ok);
}

/* Checks the close outcome (after release). */
static void check_close(struct rec *r, const char *what, tern_code code, uint16_t close_code,
                        uint32_t clean, uint32_t opened) {
    check_rec_order(r, what);
    bool ok = r->code == code && r->close_code == close_code && r->clean == clean &&
              r->opened == opened && (code == TERN_CODE_OK || r->message[0] != '\0');
    if (!ok) {
        fprintf(stderr,
                "ws: %s: on_close %s (%s) close_code %u clean %u opened %u reason \"%s\"; "
                "want %s close_code %u clean %u opened %u\n",
                what, tern_code_name(r->code), r->message, (unsigned)r->close_code,
                (unsigned)r->clean, (unsigned)r->opened, r->reason, tern_code_name(code),
                (unsigned)close_code, (unsigned)clean, (unsigned)opened);
    }
    CHECK(ok);
}

/* ------------------------------------------------------------------ helpers --- */

static tern_runtime *new_runtime(void) {
    tern_runtime *rt = NULL;
    if (tern_runtime_new(NULL, &rt, NULL) != TERN_CODE_OK) {
        fprintf(stderr, "ws: cannot start a runtime\n");
        exit(1);
    }
    return rt;
}

static tern_session *new_session(const tern_runtime *rt, bool queued) {
    tern_session_options *o = NULL;
    tern_session *s = NULL;
    tern_code code = tern_session_options_new(&o, NULL);
    if (code == TERN_CODE_OK) code = tern_session_options_add_ca_file(o, ca_file, NULL);
    if (code == TERN_CODE_OK && queued) {
        code = tern_session_options_set_delivery(o, TERN_DELIVERY_QUEUED, NULL);
    }
    if (code == TERN_CODE_OK) code = tern_session_new(rt, o, &s, NULL);
    tern_session_options_free(o);
    if (code != TERN_CODE_OK) {
        fprintf(stderr, "ws: cannot make a session: %s\n", tern_code_name(code));
        exit(1);
    }
    return s;
}

static tern_ws_options *new_wsopts(void) {
    tern_ws_options *o = NULL;
    if (tern_ws_options_new(&o, NULL) != TERN_CODE_OK) {
        fprintf(stderr, "ws: tern_ws_options_new failed\n");
        exit(1);
    }
    return o;
}

static tern_code connect_ws(const tern_session *s, const char *url, const tern_ws_options *o,
                            struct rec *r) {
    tern_error *err = NULL;
    in_connect = true;
    tern_code code = tern_session_ws_connect(s, url, o, &all_callbacks, r, &r->ws, &err);
    in_connect = false;
    if (code != TERN_CODE_OK) {
        fprintf(stderr, "ws: connect %s: %s: %s\n", url, tern_code_name(code),
                err ? tern_error_message(err) : "");
    }
    tern_error_free(err);
    return code;
}

/* Connects (direct delivery) and checks that it was accepted. */
static struct rec *open_ws(const tern_session *s, const char *url, const tern_ws_options *o) {
    struct rec *r = rec_new(false);
    tern_code code = connect_ws(s, url, o, r);
    CHECK(code == TERN_CODE_OK);
    CHECK(r->ws != UNTOUCHED_WS && r->ws != NULL);
    if (code != TERN_CODE_OK) exit(1);
    return r;
}

static void url_of(char *buf, size_t cap, const char *base, const char *path) {
    snprintf(buf, cap, "%s%s", base, path);
}

/* Frees the caller's handle while callbacks may still run: the recorder stops
 * looking at it first. */
static void free_handle(struct rec *r) {
    pthread_mutex_lock(&r->mu);
    tern_ws *ws = r->ws;
    r->ws = NULL;
    pthread_mutex_unlock(&r->mu);
    tern_ws_free(ws);
}

static bool send_text(const tern_ws *ws, const char *data, size_t len) {
    tern_error *err = NULL;
    tern_code code = tern_ws_send_text(ws, data, len, &err);
    check_result(__FILE__, __LINE__, "tern_ws_send_text", code, err, true, TERN_CODE_OK);
    return code == TERN_CODE_OK;
}

static bool send_binary(const tern_ws *ws, const uint8_t *data, size_t len) {
    tern_error *err = NULL;
    tern_code code = tern_ws_send_binary(ws, data, len, &err);
    check_result(__FILE__, __LINE__, "tern_ws_send_binary", code, err, true, TERN_CODE_OK);
    return code == TERN_CODE_OK;
}

/* Sends a binary message; when the send queue is full (WOULD_BLOCK), waits for
 * on_writable and tries again. */
static bool send_binary_waiting(struct rec *r, const uint8_t *data, size_t len) {
    for (;;) {
        pthread_mutex_lock(&r->mu);
        int writables = r->writables;
        pthread_mutex_unlock(&r->mu);
        tern_error *err = NULL;
        tern_code code = tern_ws_send_binary(r->ws, data, len, &err);
        if (code != TERN_CODE_WOULD_BLOCK) {
            check_result(__FILE__, __LINE__, "tern_ws_send_binary", code, err, true, TERN_CODE_OK);
            return code == TERN_CODE_OK;
        }
        check_result(__FILE__, __LINE__, "tern_ws_send_binary (queue full)", code, err, true,
                     TERN_CODE_WOULD_BLOCK);
        /* (The buffered amount is not checked here: the writer may drain the queue to
         * 0 between the refusal and such a check.) */
        if (!rec_wait(r, &r->writables, writables + 1)) return false;
    }
}

static bool msg_is(struct rec *r, int i, uint32_t kind, const void *data, size_t len) {
    pthread_mutex_lock(&r->mu);
    bool ok = i < r->nmsgs && i < MAX_MSGS && r->msgs[i].kind == kind && r->msgs[i].len == len &&
              (len == 0 || memcmp(r->msgs[i].data, data, len) == 0);
    if (!ok) {
        fprintf(stderr, "ws: message %d: kind %u, %zu bytes; want kind %u, %zu bytes\n", i,
                i < r->nmsgs ? (unsigned)r->msgs[i].kind : 0u, i < r->nmsgs ? r->msgs[i].len : 0,
                (unsigned)kind, len);
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

/* Closes with 1000 and waits for release; the outcome must be a clean 1000. */
static void close_and_check(struct rec *r, const char *what) {
    EXPECT(TERN_CODE_OK, tern_ws_close(r->ws, 1000, "done", E));
    CHECK(rec_wait(r, &r->releases, 1));
    check_close(r, what, TERN_CODE_OK, 1000, 1, 1);
}

/* ---------------------------------------------------------- 1. bad input --- */

static void test_bad_options(void) {
    tern_ws_options *o = NULL;
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_new(NULL, E));
    tern_ws_options_free(NULL);
    o = new_wsopts();

    /* Headers: NULLs, bad names and values, and the names tern manages. */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_add_header(NULL, "x-a", "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_add_header(o, NULL, "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_add_header(o, "x-a", NULL, E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_ws_options_add_header(o, "bad name", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_ws_options_add_header(o, "", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_ws_options_add_header(o, "x-a", "1\r\nx-b: 2", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_options_add_header(o, "x-\xff", "1", E));
    static const char *const managed[] = {
        "Host", "Connection", "Upgrade", "Sec-WebSocket-Key", "sec-websocket-version",
        "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Content-Length",
        "Transfer-Encoding", "Expect",
    };
    for (size_t i = 0; i < sizeof managed / sizeof managed[0]; i++) {
        EXPECT(TERN_CODE_INVALID_HEADER, tern_ws_options_add_header(o, managed[i], "x", E));
    }
    EXPECT(TERN_CODE_OK, tern_ws_options_add_header(o, "X-Test", "1", E));

    /* Subprotocols: RFC 7230 tokens, no duplicates. */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_add_subprotocol(NULL, "chat", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_add_subprotocol(o, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_options_add_subprotocol(o, "", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_options_add_subprotocol(o, "a b", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_options_add_subprotocol(o, "a,b", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_options_add_subprotocol(o, "\xff", E));
    EXPECT1(TERN_CODE_OK, tern_ws_options_add_subprotocol(o, "chat.v1", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_options_add_subprotocol(o, "chat.v1", E));

    /* Origin (NULL clears it) and proxy. */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_set_origin(NULL, "http://a.test", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_ws_options_set_origin(o, "http://a.test\r\nx: 1", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_options_set_origin(o, "http://\xff.test", E));
    EXPECT(TERN_CODE_OK, tern_ws_options_set_origin(o, "http://a.test", E));
    EXPECT(TERN_CODE_OK, tern_ws_options_set_origin(o, NULL, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_set_proxy(NULL, "http://127.0.0.1:1", E));
    EXPECT(TERN_CODE_INVALID_URL, tern_ws_options_set_proxy(o, "http://[::1", E));
    EXPECT(TERN_CODE_UNSUPPORTED_SCHEME, tern_ws_options_set_proxy(o, "ftp://127.0.0.1:1", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_options_set_proxy(o, "http://\xff", E));
    EXPECT(TERN_CODE_OK, tern_ws_options_set_proxy(o, "", E));   /* direct */
    EXPECT(TERN_CODE_OK, tern_ws_options_set_proxy(o, NULL, E)); /* the session's */

    /* Time-outs: unknown kinds; the close time-out cannot be turned off. */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_set_timeout_ms(NULL, TERN_WS_TIMEOUT_CLOSE, 1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_options_set_timeout_ms(o, 99, 1000, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_options_set_timeout_ms(o, UINT32_MAX, 1000, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_options_set_timeout_ms(o, TERN_WS_TIMEOUT_CLOSE, 0, E));
    EXPECT(TERN_CODE_OK, tern_ws_options_set_timeout_ms(o, TERN_WS_TIMEOUT_RECEIVE, 0, E));
    EXPECT(TERN_CODE_OK, tern_ws_options_set_timeout_ms(o, TERN_WS_TIMEOUT_CONNECT, 5000, E));
    EXPECT(TERN_CODE_OK, tern_ws_options_set_timeout_ms(o, TERN_WS_TIMEOUT_HANDSHAKE, 5000, E));

    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_set_heartbeat_ms(NULL, 1000, E));
    EXPECT(TERN_CODE_OK, tern_ws_options_set_heartbeat_ms(o, 0, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_set_max_message_size(NULL, 1, E));
    EXPECT(TERN_CODE_OK, tern_ws_options_set_max_message_size(o, 0, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_set_max_frame_size(NULL, 1, E));
    EXPECT(TERN_CODE_OK, tern_ws_options_set_max_frame_size(o, 0, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_set_send_queue_size(NULL, 1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_options_set_send_queue_size(o, 0, E));
    EXPECT(TERN_CODE_OK, tern_ws_options_set_send_queue_size(o, 1, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_options_set_compression(NULL, 0, E));
    EXPECT(TERN_CODE_UNSUPPORTED, tern_ws_options_set_compression(o, 1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_options_set_compression(o, 2, E));
    EXPECT(TERN_CODE_OK, tern_ws_options_set_compression(o, 0, E));
    tern_ws_options_free(o);
}

/* A NULL socket handle everywhere: the codes and values the header names. */
static void test_null_handles(void) {
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_send_text(NULL, "a", 1, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_send_binary(NULL, (const uint8_t *)"a", 1, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_send_ping(NULL, NULL, 0, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_close(NULL, 1000, NULL, E));
    EXPECT_CODE(TERN_CODE_NULL_ARGUMENT, tern_ws_abort(NULL));
    CHECK(tern_ws_buffered_amount(NULL) == 0);
    CHECK(tern_ws_state(NULL) == TERN_WS_READY_STATE_CLOSED);
    CHECK(tern_ws_subprotocol(NULL) == NULL);
    CHECK(tern_ws_id(NULL) == 0);
    tern_ws_free(NULL);
}

static int refused_callbacks; /* callbacks of connects that were refused: must stay 0 */
static void refused_close(void *ud, const tern_ws *ws, const tern_ws_close_info *info) {
    (void)ud, (void)ws, (void)info;
    refused_callbacks++;
}
static void refused_release(void *ud) {
    (void)ud;
    refused_callbacks++;
}

/* Refused connects: no callback, no release, *ws_out untouched. */
static void test_bad_connect(const tern_runtime *rt) {
    tern_session *s = new_session(rt, false);
    char url[256];
    url_of(url, sizeof url, ws_base, "/echo");
    tern_ws_callbacks cb = {
        .struct_size = sizeof(tern_ws_callbacks),
        .on_close = refused_close,
        .release = refused_release,
    };
    tern_ws_callbacks no_close = cb;
    no_close.on_close = NULL;
    tern_ws_callbacks too_small = cb;
    too_small.struct_size = 1;
    tern_ws *ws = UNTOUCHED_WS;
    int ud = 0;
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_ws_connect(NULL, url, NULL, &cb, &ud, &ws, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_ws_connect(s, NULL, NULL, &cb, &ud, &ws, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_ws_connect(s, url, NULL, NULL, &ud, &ws, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_ws_connect(s, url, NULL, &no_close, &ud, &ws, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_ws_connect(s, url, NULL, &too_small, &ud, &ws, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_ws_connect(s, "ws://\xff/", NULL, &cb, &ud, &ws, E));
    EXPECT(TERN_CODE_INVALID_URL, tern_session_ws_connect(s, "not a url", NULL, &cb, &ud, &ws, E));
    EXPECT(TERN_CODE_INVALID_URL, tern_session_ws_connect(s, "ws://[::1/", NULL, &cb, &ud, &ws, E));
    EXPECT(TERN_CODE_UNSUPPORTED_SCHEME,
           tern_session_ws_connect(s, "ftp://127.0.0.1/", NULL, &cb, &ud, &ws, E));
    CHECK(ws == UNTOUCHED_WS);

    /* A closed session refuses with SHUTDOWN. */
    EXPECT(TERN_CODE_OK, tern_session_close(s, TERN_CLOSE_GRACEFUL, E));
    EXPECT(TERN_CODE_SHUTDOWN, tern_session_ws_connect(s, url, NULL, &cb, &ud, &ws, E));
    CHECK(ws == UNTOUCHED_WS);
    tern_session_free(s);
    sleep_ms(100);
    CHECK(refused_callbacks == 0);
}

/* Bad input to an open socket: refused with clear codes; the socket keeps working. */
static void test_bad_sends(const tern_session *s) {
    char url[256];
    url_of(url, sizeof url, ws_base, "/echo");
    struct rec *r = open_ws(s, url, NULL);
    const tern_ws *ws = r->ws;
    CHECK(rec_wait(r, &r->opens, 1));
    CHECK(tern_ws_state(ws) == TERN_WS_READY_STATE_OPEN);
    CHECK(tern_ws_id(ws) != 0);

    /* NULL data with a length (NULL with 0 is an empty message). */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_send_text(ws, NULL, 1, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_send_binary(ws, NULL, 1, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_ws_send_ping(ws, NULL, 1, E));

    /* Text that is not UTF-8: a lone 0xff, a truncated sequence, an over-long
     * encoding, a UTF-16 surrogate, a code point above U+10FFFF, and a valid prefix
     * followed by a bad byte. */
    static const char *const bad_text[] = {
        "\xff", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ok \xe2\x82",
    };
    for (size_t i = 0; i < sizeof bad_text / sizeof bad_text[0]; i++) {
        EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_send_text(ws, bad_text[i], strlen(bad_text[i]), E));
    }

    /* A ping over 125 bytes (a control frame's limit). */
    static const uint8_t big_ping[126];
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_send_ping(ws, big_ping, sizeof big_ping, E));
    EXPECT(TERN_CODE_OK, tern_ws_send_ping(ws, big_ping, 125, E));

    /* Close codes that may not be sent, reasons that are too long or not UTF-8. */
    static const uint32_t bad_codes[] = {1, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000,
                                         65535, 65536, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_close(ws, bad_codes[i], "x", E));
    }
    char reason[125];
    memset(reason, 'r', 124);
    reason[124] = '\0'; /* 124 bytes: one too many */
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_close(ws, 1000, reason, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_close(ws, 1000, "bad \xff reason", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_ws_close(ws, 0, "a reason needs a code", E));
    sleep_ms(50);
    CHECK(tern_ws_state(ws) == TERN_WS_READY_STATE_OPEN);

    /* Still open and working: text with a NUL byte, empty messages with NULL data,
     * then a close with a 123-byte reason. */
    CHECK(send_text(ws, "a\0b", 3));
    CHECK(send_text(ws, NULL, 0));
    CHECK(send_binary(ws, NULL, 0));
    CHECK(rec_wait(r, &r->nmsgs, 3));
    CHECK(msg_is(r, 0, TERN_WS_MESSAGE_TEXT, "a\0b", 3));
    CHECK(msg_is(r, 1, TERN_WS_MESSAGE_TEXT, "", 0));
    CHECK(msg_is(r, 2, TERN_WS_MESSAGE_BINARY, "", 0));
    reason[123] = '\0';
    EXPECT1(TERN_CODE_OK, tern_ws_close(ws, 1000, reason, E));
    CHECK(rec_wait(r, &r->releases, 1));
    check_close(r, "bad sends", TERN_CODE_OK, 1000, 1, 1);
    CHECK(strcmp(r->reason, reason) == 0);
    tern_ws_free(r->ws);
    rec_free(r);
}

/* ----------------------------------------------------------------- 3. echo --- */

static void test_echo(const tern_session *s, const char *base, const char *what) {
    char url[256];
    url_of(url, sizeof url, base, "/echo");
    struct rec *r = open_ws(s, url, NULL);
    const tern_ws *ws = r->ws;

    /* Sent while CONNECTING (queued until the open), then while OPEN. */
    static const char text[] = "h\xc3\xa9llo, w\xc3\xb6rld \xe2\x9c\x93 \xf0\x9f\x90\xa6";
    CHECK(send_text(ws, text, strlen(text)));
    CHECK(send_text(ws, "", 0));
    CHECK(rec_wait(r, &r->opens, 1));
    CHECK(r->open_status == 101);
    CHECK(tern_ws_subprotocol(ws) == NULL); /* none offered */
    static const size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 1048576};
    size_t n = sizeof sizes / sizeof sizes[0];
    uint8_t *big = (uint8_t *)malloc(1048576);
    if (big == NULL) abort();
    for (size_t i = 0; i < 1048576; i++) big[i] = (uint8_t)(i * 7 + (i >> 8));
    /* 1 MiB may not fit in the 1 MiB send queue while the smaller ones wait in it:
     * then WOULD_BLOCK, on_writable, and it is taken. */
    for (size_t i = 0; i < n; i++) CHECK(send_binary_waiting(r, big, sizes[i]));
    CHECK(rec_wait(r, &r->nmsgs, (int)(2 + n)));
    CHECK(msg_is(r, 0, TERN_WS_MESSAGE_TEXT, text, strlen(text)));
    CHECK(msg_is(r, 1, TERN_WS_MESSAGE_TEXT, "", 0));
    for (size_t i = 0; i < n; i++) CHECK(msg_is(r, (int)(2 + i), TERN_WS_MESSAGE_BINARY, big, sizes[i]));
    free(big);

    /* Everything was written: the buffered amount drains to 0. */
    for (int i = 0; i < 500 && tern_ws_buffered_amount(ws) != 0; i++) sleep_ms(10);
    CHECK(tern_ws_buffered_amount(ws) == 0);
    close_and_check(r, what);
    CHECK(strcmp(r->reason, "done") == 0);
    tern_ws_free(r->ws);
    rec_free(r);
}

/* ---------------------------------------------------- 2. options on the wire --- */

/* What the options put in the upgrade request (/headers answers with them as JSON
 * first), and a subprotocol the server picks (/subprotocol answers with its choice). */
static void test_options_sent(const tern_session *s) {
    char url[256];
    url_of(url, sizeof url, ws_base, "/headers");
    tern_ws_options *o = new_wsopts();
    EXPECT(TERN_CODE_OK, tern_ws_options_add_header(o, "X-Test", "ws-c-test", E));
    EXPECT(TERN_CODE_OK, tern_ws_options_set_origin(o, "http://origin.test", E));
    EXPECT1(TERN_CODE_OK, tern_ws_options_add_subprotocol(o, "x", E));
    EXPECT1(TERN_CODE_OK, tern_ws_options_add_subprotocol(o, "chat.v1", E));
    struct rec *r = open_ws(s, url, o);
    CHECK(rec_wait(r, &r->nmsgs, 1));
    pthread_mutex_lock(&r->mu);
    const char *json = r->nmsgs > 0 ? (const char *)r->msgs[0].data : "";
    if (r->nmsgs > 0) {
        /* Lower-cased: header names may arrive in any case. */
        r->msgs[0].data[r->msgs[0].len] = '\0';
        for (size_t i = 0; i < r->msgs[0].len; i++) {
            uint8_t c = r->msgs[0].data[i];
            if (c >= 'A' && c <= 'Z') r->msgs[0].data[i] = (uint8_t)(c - 'A' + 'a');
        }
    }
    bool ok = strstr(json, "[\"x-test\", \"ws-c-test\"]") != NULL &&
              strstr(json, "[\"origin\", \"http://origin.test\"]") != NULL &&
              strstr(json, "[\"sec-websocket-protocol\", \"x, chat.v1\"]") != NULL &&
              strstr(json, "sec-websocket-extensions") == NULL;
    if (!ok) fprintf(stderr, "ws: /headers sent: %s\n", json);
    pthread_mutex_unlock(&r->mu);
    CHECK(ok);
    /* The server chose none of the offered subprotocols: the open still succeeds. */
    CHECK(r->opens == 1 && r->subprotocol[0] == '\0');
    CHECK(tern_ws_subprotocol(r->ws) == NULL);
    close_and_check(r, "/headers");
    tern_ws_free(r->ws);
    rec_free(r);

    url_of(url, sizeof url, ws_base, "/subprotocol");
    r = open_ws(s, url, o);
    tern_ws_options_free(o);
    CHECK(rec_wait(r, &r->nmsgs, 1));
    CHECK(msg_is(r, 0, TERN_WS_MESSAGE_TEXT, "chat.v1", 7));
    CHECK(strcmp(r->subprotocol, "chat.v1") == 0);
    const char *p = tern_ws_subprotocol(r->ws);
    CHECK(p != NULL && strcmp(p, "chat.v1") == 0);
    close_and_check(r, "/subprotocol");
    tern_ws_free(r->ws);
    rec_free(r);
}

/* ---------------------------------------------------------------- 4. close --- */

static void test_close(const tern_session *s) {
    char url[256];

    /* The server closes with 4001 "bye": clean, OK, its code and reason. */
    url_of(url, sizeof url, ws_base, "/close?code=4001&reason=bye");
    struct rec *r = open_ws(s, url, NULL);
    CHECK(rec_wait(r, &r->releases, 1));
    check_close(r, "server close 4001", TERN_CODE_OK, 4001, 1, 1);
    CHECK(strcmp(r->reason, "bye") == 0);
    CHECK(tern_ws_state(r->ws) == TERN_WS_READY_STATE_CLOSED);
    EXPECT(TERN_CODE_INVALID_STATE, tern_ws_send_text(r->ws, "late", 4, E));
    tern_ws_free(r->ws);
    rec_free(r);

    /* A reason holding a NUL: passed as its bytes, reason_len its true length, then a
     * NUL. */
    url_of(url, sizeof url, ws_base, "/close?code=4002&reason=a%00b");
    r = open_ws(s, url, NULL);
    CHECK(rec_wait(r, &r->releases, 1));
    check_close(r, "server close with a NUL in the reason", TERN_CODE_OK, 4002, 1, 1);
    CHECK(r->reason_len == 3 && memcmp(r->reason, "a\0b", 3) == 0 && r->reason_terminated);
    tern_ws_free(r->ws);
    rec_free(r);

    /* An unknown route: the server closes with 1008. */
    url_of(url, sizeof url, ws_base, "/no-such-route");
    r = open_ws(s, url, NULL);
    CHECK(rec_wait(r, &r->releases, 1));
    check_close(r, "server close 1008", TERN_CODE_OK, 1008, 1, 1);
    tern_ws_free(r->ws);
    rec_free(r);

    /* The caller closes with 3000: CLOSING at once, sends refused, a second close is
     * a no-op; the server echoes 3000. */
    url_of(url, sizeof url, ws_base, "/echo");
    r = open_ws(s, url, NULL);
    CHECK(rec_wait(r, &r->opens, 1));
    EXPECT1(TERN_CODE_OK, tern_ws_close(r->ws, 3000, "app close", E));
    uint32_t st = tern_ws_state(r->ws);
    CHECK(st == TERN_WS_READY_STATE_CLOSING || st == TERN_WS_READY_STATE_CLOSED);
    EXPECT(TERN_CODE_INVALID_STATE, tern_ws_send_text(r->ws, "late", 4, E));
    EXPECT(TERN_CODE_INVALID_STATE, tern_ws_send_binary(r->ws, (const uint8_t *)"late", 4, E));
    EXPECT(TERN_CODE_OK, tern_ws_close(r->ws, 1000, NULL, E));
    CHECK(rec_wait(r, &r->releases, 1));
    check_close(r, "caller close 3000", TERN_CODE_OK, 3000, 1, 1);
    CHECK(strcmp(r->reason, "app close") == 0);
    CHECK(tern_ws_state(r->ws) == TERN_WS_READY_STATE_CLOSED);
    EXPECT(TERN_CODE_INVALID_STATE, tern_ws_send_ping(r->ws, NULL, 0, E));
    EXPECT_CODE(TERN_CODE_OK, tern_ws_abort(r->ws)); /* after on_close: nothing happens */
    tern_ws_free(r->ws);
    rec_free(r);

    /* A close frame without a code: the peer answers without one, seen as 1005. */
    r = open_ws(s, url, NULL);
    CHECK(rec_wait(r, &r->opens, 1));
    EXPECT1(TERN_CODE_OK, tern_ws_close(r->ws, 0, NULL, E));
    CHECK(rec_wait(r, &r->releases, 1));
    check_close(r, "caller close without code", TERN_CODE_OK, 1005, 1, 1);
    tern_ws_free(r->ws);
    rec_free(r);
}

/* ------------------------------------------------------ 5. failures to open --- */

static void test_open_failures(const tern_session *s) {
    char url[256];

    /* A refused upgrade: the server's 403 and body arrive in on_close. */
    url_of(url, sizeof url, ws_base, "/reject");
    struct rec *r = open_ws(s, url, NULL);
    CHECK(rec_wait(r, &r->releases, 1));
    check_close(r, "refused upgrade", TERN_CODE_WS_HANDSHAKE, 1006, 0, 0);
    CHECK(r->opens == 0 && r->nmsgs == 0);
    CHECK(r->had_response && r->response_status == 403);
    CHECK(strcmp(r->body, "forbidden\n") == 0);
    CHECK(tern_ws_subprotocol(r->ws) == NULL);
    tern_ws_free(r->ws);
    rec_free(r);

    /* Nobody listens: CONNECTION_REFUSED, no response. */
    r = open_ws(s, "ws://127.0.0.1:1/echo", NULL);
    CHECK(rec_wait(r, &r->releases, 1));
    check_close(r, "connection refused", TERN_CODE_CONNECTION_REFUSED, 1006, 0, 0);
    CHECK(!r->had_response);
    tern_ws_free(r->ws);
    rec_free(r);

    /* A listener that never answers the upgrade: the handshake time-out. */
    char hold_url[128];
    snprintf(hold_url, sizeof hold_url, "ws://%s", hold.url + strlen("http://"));
    tern_ws_options *o = new_wsopts();
    EXPECT(TERN_CODE_OK, tern_ws_options_set_timeout_ms(o, TERN_WS_TIMEOUT_HANDSHAKE, 300, E));
    r = open_ws(s, hold_url, o);
    tern_ws_options_free(o); /* copied by connect */
    CHECK(rec_wait(r, &r->releases, 1));
    check_close(r, "handshake time-out", TERN_CODE_TIMEOUT_READ, 1006, 0, 0);
    tern_ws_free(r->ws);
    rec_free(r);

    /* Close, abort and free while CONNECTING: CANCELED, 1006, never opened. Sends
     * made meanwhile were accepted and are dropped. */
    r = open_ws(s, hold_url, NULL);
    CHECK(tern_ws_state(r->ws) == TERN_WS_READY_STATE_CONNECTING);
    CHECK(tern_ws_subprotocol(r->ws) == NULL);
    CHECK(send_text(r->ws, "queued", 6));
    CHECK(tern_ws_buffered_amount(r->ws) == 6);
    EXPECT(TERN_CODE_INVALID_STATE, tern_ws_send_ping(r->ws, NULL, 0, E)); /* not open */
    EXPECT1(TERN_CODE_OK, tern_ws_close(r->ws, 1000, "never mind", E));
    CHECK(rec_wait(r, &r->releases, 1));
    check_close(r, "close while connecting", TERN_CODE_CANCELED, 1006, 0, 0);
    tern_ws_free(r->ws);
    rec_free(r);

    r = open_ws(s, hold_url, NULL);
    EXPECT_CODE(TERN_CODE_OK, tern_ws_abort(r->ws));
    CHECK(rec_wait(r, &r->releases, 1));
    check_close(r, "abort while connecting", TERN_CODE_CANCELED, 1006, 0, 0);
    tern_ws_free(r->ws);
    rec_free(r);

    r = open_ws(s, hold_url, NULL);
    free_handle(r);
    CHECK(rec_wait(r, &r->releases, 1));
    check_close(r, "free while connecting", TERN_CODE_CANCELED, 1006, 0, 0);
    rec_free(r);
}

/* ------------------------------------------------------- 6. queued delivery --- */

static void test_queued(const tern_runtime *rt) {
    tern_session *s = new_session(rt, true);
    int fd = -1;
    EXPECT(TERN_CODE_OK, tern_session_fd(s, &fd, E));
    char url[256];
    url_of(url, sizeof url, wss_base, "/echo");
    struct rec *r = rec_new(true);
    CHECK(connect_ws(s, url, NULL, r) == TERN_CODE_OK);
    CHECK(send_text(r->ws, "one", 3));
    CHECK(send_binary(r->ws, (const uint8_t *)"\x00\x01\x02", 3));
    /* Nothing runs until this thread polls, however long it waits. */
    sleep_ms(300);
    pthread_mutex_lock(&r->mu);
    CHECK(r->opens == 0 && r->nmsgs == 0 && r->closes == 0);
    pthread_mutex_unlock(&r->mu);

    bool close_sent = false;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        pthread_mutex_lock(&r->mu);
        int released = r->releases, nmsgs = r->nmsgs;
        pthread_mutex_unlock(&r->mu);
        if (released) break;
        if (nmsgs >= 2 && !close_sent) {
            EXPECT1(TERN_CODE_OK, tern_ws_close(r->ws, 1000, "done", E));
            close_sent = true;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        if (poll(&p, 1, 100) > 0) {
            in_poll = true;
            EXPECT1(TERN_CODE_OK, tern_session_poll(s, 0, 0, NULL, E));
            in_poll = false;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > WAIT_SECONDS) {
            fprintf(stderr, "ws: queued: timed out\n");
            CHECK(false);
            break;
        }
    }
    CHECK(msg_is(r, 0, TERN_WS_MESSAGE_TEXT, "one", 3));
    CHECK(msg_is(r, 1, TERN_WS_MESSAGE_BINARY, "\x00\x01\x02", 3));
    check_close(r, "queued", TERN_CODE_OK, 1000, 1, 1);
    tern_ws_free(r->ws);
    tern_session_free(s);
    rec_free(r);
}

/* ------------------------- 8. queued: a poll from on_message, short callbacks --- */

/* One socket whose on_message (the first) aborts it, or frees the whole session, and
 * polls again: the nested poll must not run that socket's next message, its on_close
 * or its release inside the running on_message. `token` is freed by release and
 * written by on_message after its nested poll: valgrind sees a use after free if
 * release ran inside. */
struct nested {
    tern_session *s;
    bool free_session; /* tern_session_free instead of abort + poll */
    int *token;
    int depth, messages, closes, releases;
    tern_code code;
    bool message_inside, close_inside, release_inside, disorder;
    int closes_seen_inside;
};

static void nested_message(void *ud, const tern_ws *ws, uint32_t kind, const uint8_t *data,
                           size_t len) {
    (void)kind, (void)data, (void)len;
    struct nested *n = (struct nested *)ud;
    if (n->depth != 0) n->message_inside = true;
    if (n->closes != 0 || n->releases != 0) n->disorder = true;
    n->depth++;
    if (n->messages++ == 0) {
        if (n->free_session) {
            /* Aborts, and runs every other callback before it returns. */
            tern_session_free(n->s);
            n->s = NULL;
        } else {
            EXPECT_CODE(TERN_CODE_OK, tern_ws_abort(ws));
            /* Long enough for the abort's on_close to be queued and polled. */
            for (int i = 0; i < 30; i++) {
                EXPECT1(TERN_CODE_OK, tern_session_poll(n->s, 10, 0, NULL, E));
            }
        }
        n->closes_seen_inside = n->closes;
        *n->token += 1; /* a use after free if release ran inside */
    }
    n->depth--;
}

static void nested_close(void *ud, const tern_ws *ws, const tern_ws_close_info *info) {
    (void)ws;
    struct nested *n = (struct nested *)ud;
    if (n->depth != 0) n->close_inside = true;
    if (n->releases != 0) n->disorder = true;
    n->closes++;
    n->code = info->code;
}

static void nested_release(void *ud) {
    struct nested *n = (struct nested *)ud;
    if (n->depth != 0) n->release_inside = true;
    if (n->closes != 1) n->disorder = true;
    n->releases++;
    free(n->token);
    n->token = NULL;
}

static void test_nested_poll(const tern_runtime *rt, bool free_session) {
    const char *what = free_session ? "nested: session free in on_message"
                                    : "nested: abort and poll in on_message";
    static struct nested n;
    memset(&n, 0, sizeof n);
    n.s = new_session(rt, true);
    n.free_session = free_session;
    n.token = (int *)calloc(1, sizeof *n.token);
    tern_ws_callbacks cb = {
        .struct_size = sizeof(tern_ws_callbacks),
        .on_close = nested_close,
        .on_message = nested_message,
        .release = nested_release,
    };
    char url[256];
    url_of(url, sizeof url, ws_base, "/echo");
    tern_ws *ws = NULL;
    EXPECT1(TERN_CODE_OK, tern_session_ws_connect(n.s, url, NULL, &cb, &n, &ws, E));
    /* Three echoes are queued before the first on_message runs. */
    CHECK(send_text(ws, "a", 1) && send_text(ws, "b", 1) && send_text(ws, "c", 1));
    tern_session *s = n.s;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (n.releases == 0) {
        if (n.messages == 0) sleep_ms(200); /* let the echoes queue up */
        in_poll = true;
        /* The session may be freed inside: poll only while it exists. */
        if (n.s != NULL) {
            EXPECT1(TERN_CODE_OK, tern_session_poll(s, 100, 0, NULL, E));
        }
        in_poll = false;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > WAIT_SECONDS) {
            fprintf(stderr, "ws: %s: timed out\n", what);
            CHECK(false);
            break;
        }
    }
    bool ok = n.messages >= 1 && n.closes == 1 && n.releases == 1 && n.closes_seen_inside == 0 &&
              !n.message_inside && !n.close_inside && !n.release_inside && !n.disorder &&
              n.code == (free_session ? TERN_CODE_SHUTDOWN : TERN_CODE_CANCELED);
    if (!ok) {
        fprintf(stderr,
                "ws: %s: messages %d closes %d releases %d closes_seen_inside %d "
                "message_inside %d close_inside %d release_inside %d disorder %d code %s\n",
                what, n.messages, n.closes, n.releases, n.closes_seen_inside,
                (int)n.message_inside, (int)n.close_inside, (int)n.release_inside,
                (int)n.disorder, tern_code_name(n.code));
    }
    CHECK(ok);
    tern_ws_free(ws);
    if (n.s != NULL) tern_session_free(n.s);
}

/* A caller built against an older header: a tern_ws_callbacks of 16 bytes (struct_size
 * and on_close only), allocated at exactly that size. tern must read nothing past it
 * (valgrind checks) and work with on_close alone. */
static int short_closes;
static void short_close(void *ud, const tern_ws *ws, const tern_ws_close_info *info) {
    (void)ud, (void)ws, (void)info;
    short_closes++;
}

static void test_short_callbacks(const tern_runtime *rt) {
    tern_session *s = new_session(rt, true);
    size_t size = offsetof(tern_ws_callbacks, on_close) + sizeof(void *);
    tern_ws_callbacks *cb = (tern_ws_callbacks *)malloc(size);
    memset(cb, 0, size);
    cb->struct_size = size;
    cb->on_close = short_close;
    char url[256];
    url_of(url, sizeof url, ws_base, "/echo");
    tern_ws *ws = NULL;
    EXPECT1(TERN_CODE_OK, tern_session_ws_connect(s, url, NULL, cb, NULL, &ws, E));
    free(cb); /* copied by the connect */
    CHECK(send_text(ws, "x", 1));
    EXPECT1(TERN_CODE_OK, tern_ws_close(ws, 1000, NULL, E));
    for (int i = 0; i < WAIT_SECONDS * 10 && short_closes == 0; i++) {
        in_poll = true;
        EXPECT1(TERN_CODE_OK, tern_session_poll(s, 100, 0, NULL, E));
        in_poll = false;
    }
    CHECK(short_closes == 1);
    tern_ws_free(ws);
    tern_session_free(s);
}

/* ----------------------------------------- 7. 20 sockets, then runtime free --- */

#define MANY 20

static void test_many_then_runtime_free(void) {
    tern_runtime *rt = new_runtime();
    tern_session *s = new_session(rt, false);
    char url[256];
    url_of(url, sizeof url, ws_base, "/echo");
    struct rec *r[MANY];
    for (int i = 0; i < MANY; i++) {
        r[i] = open_ws(s, url, NULL);
        char msg[32];
        int len = snprintf(msg, sizeof msg, "socket %d", i);
        CHECK(send_text(r[i]->ws, msg, (size_t)len));
    }
    for (int i = 0; i < MANY; i++) CHECK(rec_wait(r[i], &r[i]->nmsgs, 1));
    /* 0-4 closed, 5-9 aborted, 10-14 freed (closed with 1000), 15-19 left open. */
    for (int i = 0; i < 5; i++) EXPECT1(TERN_CODE_OK, tern_ws_close(r[i]->ws, 1000, "bye", E));
    for (int i = 5; i < 10; i++) EXPECT_CODE(TERN_CODE_OK, tern_ws_abort(r[i]->ws));
    for (int i = 10; i < 15; i++) free_handle(r[i]);
    for (int i = 0; i < 15; i++) CHECK(rec_wait(r[i], &r[i]->releases, 1));
    for (int i = 0; i < 5; i++) check_close(r[i], "many: closed", TERN_CODE_OK, 1000, 1, 1);
    for (int i = 5; i < 10; i++) check_close(r[i], "many: aborted", TERN_CODE_CANCELED, 1006, 0, 1);
    for (int i = 10; i < 15; i++) check_close(r[i], "many: freed", TERN_CODE_OK, 1000, 1, 1);

    /* The runtime goes while 5 are open: each ends with SHUTDOWN before it returns. */
    tern_runtime_free(rt);
    for (int i = 15; i < MANY; i++) {
        pthread_mutex_lock(&r[i]->mu);
        int releases = r[i]->releases;
        pthread_mutex_unlock(&r[i]->mu);
        CHECK(releases == 1);
        check_close(r[i], "many: runtime freed", TERN_CODE_SHUTDOWN, 1006, 0, 1);
        /* The handle outlives the runtime: sends are refused, nothing crashes. */
        tern_error *err = NULL;
        tern_code code = tern_ws_send_text(r[i]->ws, "x", 1, &err);
        CHECK(code == TERN_CODE_SHUTDOWN || code == TERN_CODE_INVALID_STATE);
        tern_error_free(err);
        CHECK(tern_ws_state(r[i]->ws) == TERN_WS_READY_STATE_CLOSED);
    }
    for (int i = 0; i < MANY; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "socket %d", i);
        CHECK(msg_is(r[i], 0, TERN_WS_MESSAGE_TEXT, msg, (size_t)len));
        tern_ws_free(r[i]->ws);
        rec_free(r[i]);
    }
    tern_session_free(s);
}

int main(void) {
    main_thread = pthread_self();
    ws_base = need_env("TERN_TEST_WS");
    wss_base = need_env("TERN_TEST_WSS");
    ca_file = need_env("TERN_TEST_CA");
    hold = hold_start();

    test_bad_options();
    test_null_handles();

    tern_runtime *rt = new_runtime();
    test_bad_connect(rt);
    tern_session *s = new_session(rt, false);
    test_bad_sends(s);
    test_echo(s, ws_base, "echo ws");
    test_echo(s, wss_base, "echo wss");
    test_options_sent(s);
    test_close(s);
    test_open_failures(s);
    test_queued(rt);
    test_nested_poll(rt, false);
    test_nested_poll(rt, true);
    test_short_callbacks(rt);
    tern_session_free(s);
    tern_runtime_free(rt);

    test_many_then_runtime_free();
    close(hold.fd);

    printf("ws: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
