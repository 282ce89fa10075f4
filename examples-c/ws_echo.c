/* ws_echo: a WebSocket client on a tern session: connect, send text and binary
 * messages, receive their echoes, close with a code and a reason.
 *
 *   ws_echo [-q] [-c CA_FILE] [-C CERT -K KEY] [-n COUNT] [-p SUBPROTOCOL] [-t SECONDS] [URL]
 *
 *   -q            queued delivery: every callback runs on this thread, inside
 *                 tern_session_poll, driven by poll(2) on tern_session_fd (the shape of
 *                 a game's frame loop or a GUI's event loop); without it, callbacks run
 *                 on tern's runtime threads and main waits on a condition variable
 *   -c CA_FILE    also trust the CA certificates in this PEM file (for wss://)
 *   -C, -K        a client certificate and its key (PEM files), for servers that
 *                 require one (mutual TLS)
 *   -n COUNT      messages to send (default 10), one at a time: alternately the text
 *                 "message i: h\xc3\xa9llo" (UTF-8) and the 3 bytes 00 i ff as a binary
 *                 message; 0 only opens and closes
 *   -p PROTOCOL   offer this subprotocol (Sec-WebSocket-Protocol); the server's choice
 *                 is printed
 *   -t SECONDS    give up after this long (default 30)
 *   URL           ws:// or wss://; default $TERN_TEST_WS/echo, with -c $TERN_TEST_CA
 *                 (the test servers of scripts/testenv.sh)
 *
 * The exchange, all of it from the callbacks: on_open prints the 101 head and sends
 * the first message through the `ws` it is given (a borrowed handle: callbacks may
 * send and close with it, never free it). on_message checks that the echo equals what
 * was sent, kind included, and sends the next one; after the last echo it calls
 * tern_ws_close(ws, 1000, "bye"). on_close reports how the socket ended: the close
 * code and reason, whether both close frames were exchanged (clean), or why it failed
 * (tern's code and message, and for a refused upgrade the HTTP status and body).
 * release runs last, once. A message that arrives while no echo is awaited (a server
 * greeting, such as the subprotocol route of the test server sends: use -n 0 there)
 * is printed and not counted.
 *
 * Prints "ws_echo: OK: N sent, N echoed, subprotocol S, close 1000 clean" and exits 0,
 * or "ws_echo: FAILED: ..." and exits 1; 2 on bad usage.
 *
 * Examples (after `. target/testenv/env.sh`):
 *   ws_echo                                        10 messages over ws://
 *   ws_echo -q -c "$TERN_TEST_CA" "$TERN_TEST_WSS/echo"
 *   ws_echo -n 0 -p chat.v1 "$TERN_TEST_WS/subprotocol"
 *   ws_echo "$TERN_TEST_WS/reject"                 a refused upgrade (403): exits 1
 *
 * Plain C11 with POSIX and pthreads.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, getopt, poll */

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tern.h"

/* What the callbacks share with main. tern runs the callbacks of one socket one at a
 * time and in order, so only main's reads need care: the counters are atomics (main
 * may print them on a time-out), and the outcome fields are written by on_close
 * before release, which publishes them under `mu`. */
struct echo_state {
    tern_ws *ws; /* the caller's handle: written by tern_session_ws_connect before any
                    callback can run */
    int count;   /* messages to send */
    bool verbose;
    atomic_int sent, echoed, unsolicited;
    atomic_bool mismatch, send_failed, opened, released;
    /* Written by on_close. */
    tern_code code;
    char message[512];
    uint16_t close_code;
    uint32_t clean;
    char reason[124];
    uint16_t refused_status; /* a refused upgrade's HTTP status, else 0 */
    char subprotocol[64];
    /* Direct delivery: release signals main. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* Message i: even ones text (UTF-8), odd ones 3 binary bytes (0xff is not UTF-8). */
static size_t make_message(int i, uint8_t *buf, size_t cap, uint32_t *kind) {
    if (i % 2 == 0) {
        *kind = TERN_WS_MESSAGE_TEXT;
        int n = snprintf((char *)buf, cap, "message %d: h\xc3\xa9llo", i);
        return n < 0 ? 0 : (size_t)n;
    }
    *kind = TERN_WS_MESSAGE_BINARY;
    buf[0] = 0x00;
    buf[1] = (uint8_t)i;
    buf[2] = 0xff;
    return 3;
}

/* Sends message `i` through `ws` (the borrowed handle of a callback). */
static bool send_message(struct echo_state *st, const tern_ws *ws, int i) {
    uint8_t buf[64];
    uint32_t kind;
    size_t len = make_message(i, buf, sizeof buf, &kind);
    tern_error *err = NULL;
    tern_code code = kind == TERN_WS_MESSAGE_TEXT
                         ? tern_ws_send_text(ws, (const char *)buf, len, &err)
                         : tern_ws_send_binary(ws, buf, len, &err);
    if (code != TERN_CODE_OK) {
        printf("send %d: %s: %s\n", i, tern_code_name(code), err ? tern_error_message(err) : "");
        tern_error_free(err);
        atomic_store(&st->send_failed, true);
        /* 1011: this end cannot go on. */
        (void)tern_ws_close(ws, 1011, "send failed", NULL);
        return false;
    }
    atomic_fetch_add(&st->sent, 1);
    return true;
}

static void on_open(void *user_data, const tern_ws *ws, const tern_response *head) {
    struct echo_state *st = (struct echo_state *)user_data;
    atomic_store(&st->opened, true);
    const char *proto = tern_ws_subprotocol(ws); /* NULL when the server chose none */
    if (proto != NULL) snprintf(st->subprotocol, sizeof st->subprotocol, "%s", proto);
    printf("open: HTTP %u from %s, subprotocol %s\n", (unsigned)tern_response_status(head),
           tern_response_remote_addr(head), proto ? proto : "none");
    /* A ping: the server's pong is handled by tern, not passed to the program. */
    (void)tern_ws_send_ping(ws, (const uint8_t *)"hi", 2, NULL);
    if (st->count == 0) {
        (void)tern_ws_close(ws, 1000, "bye", NULL);
    } else {
        (void)send_message(st, ws, 0);
    }
}

static void on_message(void *user_data, const tern_ws *ws, uint32_t kind, const uint8_t *data,
                       size_t len) {
    struct echo_state *st = (struct echo_state *)user_data;
    int i = atomic_load(&st->echoed);
    const char *kind_name = kind == TERN_WS_MESSAGE_TEXT ? "text" : "binary";
    if (i >= atomic_load(&st->sent)) {
        /* Nothing awaited: a message the server sent of its own accord. */
        atomic_fetch_add(&st->unsolicited, 1);
        if (kind == TERN_WS_MESSAGE_TEXT) {
            printf("server sent: text \"%.*s\"\n", (int)(len > 200 ? 200 : len), (const char *)data);
        } else {
            printf("server sent: binary, %zu bytes\n", len);
        }
        return;
    }
    uint8_t want[64];
    uint32_t want_kind;
    size_t want_len = make_message(i, want, sizeof want, &want_kind);
    if (kind != want_kind || len != want_len || memcmp(data, want, len) != 0) {
        printf("echo %d: %s, %zu bytes: not what was sent\n", i, kind_name, len);
        atomic_store(&st->mismatch, true);
        /* An application-defined close code (4000-4999) with a reason. */
        (void)tern_ws_close(ws, 4000, "echo mismatch", NULL);
        return;
    }
    atomic_fetch_add(&st->echoed, 1);
    if (st->verbose) {
        if (kind == TERN_WS_MESSAGE_TEXT) {
            printf("echo %d: text \"%.*s\"\n", i, (int)len, (const char *)data);
        } else {
            printf("echo %d: binary, %zu bytes\n", i, len);
        }
    }
    if (i + 1 < st->count) {
        (void)send_message(st, ws, i + 1);
    } else {
        /* All echoed: the closing handshake. on_close follows once the server has
         * answered (or after the close time-out). */
        tern_error *err = NULL;
        tern_code code = tern_ws_close(ws, 1000, "bye", &err);
        if (code != TERN_CODE_OK) {
            printf("close: %s: %s\n", tern_code_name(code), err ? tern_error_message(err) : "");
            tern_error_free(err);
        }
    }
}

static void on_close(void *user_data, const tern_ws *ws, const tern_ws_close_info *info) {
    struct echo_state *st = (struct echo_state *)user_data;
    (void)ws;
    st->code = info->code;
    snprintf(st->message, sizeof st->message, "%s", info->message ? info->message : "");
    st->close_code = info->close_code;
    st->clean = info->clean;
    size_t rlen = info->reason_len < sizeof st->reason ? info->reason_len : sizeof st->reason - 1;
    if (rlen > 0) memcpy(st->reason, info->reason, rlen);
    st->reason[rlen] = '\0';
    printf("close: %s, close code %u, reason \"%s\", %s\n", tern_code_name(info->code),
           (unsigned)info->close_code, st->reason, info->clean ? "clean" : "not clean");
    if (info->code != TERN_CODE_OK) printf("  %s\n", st->message);
    /* A refused upgrade: the server's answer instead of 101, with its body. */
    if (info->response != NULL && tern_response_status(info->response) != 101) {
        const uint8_t *body = NULL;
        size_t body_len = 0;
        st->refused_status = tern_response_status(info->response);
        (void)tern_response_body(info->response, &body, &body_len);
        if (body_len > 200) body_len = 200;
        while (body_len > 0 && (body[body_len - 1] == '\n' || body[body_len - 1] == '\r')) body_len--;
        printf("  refused: HTTP %u, body \"%.*s\"\n", (unsigned)st->refused_status, (int)body_len,
               body ? (const char *)body : "");
    }
}

static void release(void *user_data) {
    struct echo_state *st = (struct echo_state *)user_data;
    pthread_mutex_lock(&st->mu);
    atomic_store(&st->released, true);
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, tern_code code, tern_error *err) {
    printf("ws_echo: FAILED: %s: %s: %s\n", what, tern_code_name(code),
           err ? tern_error_message(err) : "");
    tern_error_free(err);
    return 1;
}

/* Direct delivery: wait on the condition variable until release ran. */
static bool wait_released(struct echo_state *st, double deadline) {
    pthread_mutex_lock(&st->mu);
    while (!atomic_load(&st->released)) {
        double left = deadline - now_seconds();
        if (left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double ms = left > 0.1 ? 100 : left * 1000;
        ts.tv_nsec += (long)(ms * 1e6);
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&st->cv, &st->mu, &ts);
    }
    bool done = atomic_load(&st->released);
    pthread_mutex_unlock(&st->mu);
    return done;
}

/* Queued delivery: the program's own event loop. It waits on the session's descriptor
 * (and would on its own descriptors too) in 100 ms frames, and runs what is queued
 * when the descriptor is readable. */
static bool event_loop(const tern_session *session, int fd, struct echo_state *st,
                       double deadline) {
    while (!atomic_load(&st->released)) {
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        int n = poll(&p, 1, 100);
        if (n < 0 && errno != EINTR) {
            perror("ws_echo: poll");
            return false;
        }
        if (n > 0 && (p.revents & POLLIN)) {
            tern_error *err = NULL;
            tern_code code = tern_session_poll(session, 0, 64, NULL, &err);
            if (code != TERN_CODE_OK) {
                fail("tern_session_poll", code, err);
                return false;
            }
        }
        if (now_seconds() > deadline) return false;
    }
    return true;
}

static bool parse_count(const char *s, long max, long *out) {
    if (*s == '\0' || *s == '-') return false;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) return false;
    *out = v;
    return true;
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [-q] [-c CA_FILE] [-C CERT -K KEY] [-n COUNT] [-p SUBPROTOCOL] "
            "[-t SECONDS] [URL]\n",
            argv0);
}

int main(int argc, char **argv) {
    bool queued = false;
    const char *ca_file = NULL, *cert = NULL, *key = NULL, *subprotocol = NULL;
    long count = 10, seconds = 30;
    int opt;
    while ((opt = getopt(argc, argv, "qc:C:K:n:p:t:h")) != -1) {
        switch (opt) {
        case 'q':
            queued = true;
            break;
        case 'c':
            ca_file = optarg;
            break;
        case 'C':
            cert = optarg;
            break;
        case 'K':
            key = optarg;
            break;
        case 'n':
            if (!parse_count(optarg, 100000, &count)) {
                fprintf(stderr, "-n: a number from 0 to 100000 is needed, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'p':
            subprotocol = optarg;
            break;
        case 't':
            if (!parse_count(optarg, 86400, &seconds) || seconds == 0) {
                fprintf(stderr, "-t: a positive number is needed, not '%s'\n", optarg);
                return 2;
            }
            break;
        default:
            usage(argv[0]);
            return 2;
        }
    }
    if (argc - optind > 1 || (cert == NULL) != (key == NULL)) {
        usage(argv[0]);
        return 2;
    }

    /* The URL: from the command line, else the test server's echo route. */
    char default_url[512];
    const char *url = argv[optind];
    if (url == NULL) {
        const char *base = getenv("TERN_TEST_WS");
        if (base == NULL || base[0] == '\0') {
            usage(argv[0]);
            fprintf(stderr, "(or set TERN_TEST_WS: . target/testenv/env.sh)\n");
            return 2;
        }
        snprintf(default_url, sizeof default_url, "%s/echo", base);
        url = default_url;
        if (ca_file == NULL) ca_file = getenv("TERN_TEST_CA");
    }

    if (tern_version_check(TERN_VERSION_MAJOR, TERN_VERSION_MINOR) != TERN_CODE_OK) {
        fprintf(stderr, "libtern %s does not match this header (%d.%d)\n", tern_version(),
                TERN_VERSION_MAJOR, TERN_VERSION_MINOR);
        return 1;
    }

    static struct echo_state st; /* zeroed; outlives every callback */
    st.count = (int)count;
    st.verbose = count <= 20;
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);

    /* The runtime and the session: the session's TLS, proxy, DNS, cookie jar and
     * connect time-out apply to its WebSockets as to its requests. */
    tern_error *err = NULL;
    tern_runtime *rt = NULL;
    tern_code code = tern_runtime_new(NULL, &rt, &err);
    if (code != TERN_CODE_OK) return fail("tern_runtime_new", code, err);
    tern_session_options *opts = NULL;
    tern_session *session = NULL;
    code = tern_session_options_new(&opts, &err);
    if (code == TERN_CODE_OK && queued) {
        code = tern_session_options_set_delivery(opts, TERN_DELIVERY_QUEUED, &err);
    }
    if (code == TERN_CODE_OK && ca_file != NULL) {
        code = tern_session_options_add_ca_file(opts, ca_file, &err);
    }
    if (code == TERN_CODE_OK && cert != NULL) {
        code = tern_session_options_set_client_cert_file(opts, cert, key, &err);
    }
    if (code == TERN_CODE_OK) code = tern_session_options_set_cookie_jar(opts, 1, &err);
    if (code == TERN_CODE_OK) code = tern_session_new(rt, opts, &session, &err);
    tern_session_options_free(opts);
    if (code != TERN_CODE_OK) {
        tern_runtime_free(rt);
        return fail("session", code, err);
    }

    /* The WebSocket's own options: copied by connect, so freed right after it. */
    tern_ws_options *wsopts = NULL;
    code = tern_ws_options_new(&wsopts, &err);
    if (code == TERN_CODE_OK && subprotocol != NULL) {
        code = tern_ws_options_add_subprotocol(wsopts, subprotocol, &err);
    }
    if (code == TERN_CODE_OK) {
        /* The closing handshake waits at most 5 s for the server's close frame. */
        code = tern_ws_options_set_timeout_ms(wsopts, TERN_WS_TIMEOUT_CLOSE, 5000, &err);
    }
    if (code == TERN_CODE_OK) {
        /* A ping every 20 s when nothing arrives; no pong within 10 s fails the socket
         * with TIMEOUT_HEARTBEAT. */
        code = tern_ws_options_set_heartbeat_ms(wsopts, 20000, &err);
    }
    if (code != TERN_CODE_OK) {
        tern_ws_options_free(wsopts);
        tern_session_free(session);
        tern_runtime_free(rt);
        return fail("WebSocket options", code, err);
    }

    static const tern_ws_callbacks callbacks = {
        .struct_size = sizeof(tern_ws_callbacks),
        .on_close = on_close,
        .on_open = on_open,
        .on_message = on_message,
        .on_writable = NULL, /* one message in flight at a time: the queue never fills */
        .release = release,
    };
    printf("connecting to %s (%s delivery)\n", url, queued ? "queued" : "runtime-thread");
    double start = now_seconds(), deadline = start + (double)seconds;
    code = tern_session_ws_connect(session, url, wsopts, &callbacks, &st, &st.ws, &err);
    tern_ws_options_free(wsopts);
    if (code != TERN_CODE_OK) {
        /* Refused at once (a bad URL, a closed session): no callback runs. */
        tern_session_free(session);
        tern_runtime_free(rt);
        return fail(url, code, err);
    }

    int fd = -1;
    bool finished;
    if (queued) {
        code = tern_session_fd(session, &fd, &err);
        if (code != TERN_CODE_OK) {
            fail("tern_session_fd", code, err);
            finished = false;
        } else {
            finished = event_loop(session, fd, &st, deadline);
        }
    } else {
        finished = wait_released(&st, deadline);
    }
    if (!finished) {
        printf("timed out after %ld s: %d sent, %d echoed; aborting\n", seconds,
               atomic_load(&st.sent), atomic_load(&st.echoed));
        (void)tern_ws_abort(st.ws); /* on_close (CANCELED) and release still follow */
        if (queued && fd >= 0) {
            (void)event_loop(session, fd, &st, now_seconds() + 10);
        } else if (!queued) {
            (void)wait_released(&st, now_seconds() + 10);
        }
    }

    /* The caller's handle; then the session (with queued delivery this runs any
     * callback still waiting, here on this thread) and the runtime. */
    tern_ws_free(st.ws);
    tern_session_free(session);
    tern_runtime_free(rt);
    double elapsed = now_seconds() - start;

    int sent = atomic_load(&st.sent), echoed = atomic_load(&st.echoed);
    bool ok = finished && atomic_load(&st.released) && atomic_load(&st.opened) &&
              st.code == TERN_CODE_OK && st.clean && sent == st.count && echoed == st.count &&
              !atomic_load(&st.mismatch) && !atomic_load(&st.send_failed);
    if (ok) {
        printf("ws_echo: OK: %d sent, %d echoed, subprotocol %s, close %u %s in %.3f s\n", sent,
               echoed, st.subprotocol[0] ? st.subprotocol : "none", (unsigned)st.close_code,
               st.clean ? "clean" : "not clean", elapsed);
    } else if (st.code != TERN_CODE_OK) {
        printf("ws_echo: FAILED: %s: %s\n", tern_code_name(st.code), st.message);
    } else {
        printf("ws_echo: FAILED: %d of %d sent, %d echoed%s, close %u \"%s\" %s\n", sent,
               st.count, echoed, atomic_load(&st.mismatch) ? " (an echo did not match)" : "",
               (unsigned)st.close_code, st.reason, st.clean ? "clean" : "not clean");
    }
    pthread_cond_destroy(&st.cv);
    pthread_mutex_destroy(&st.mu);
    return ok ? 0 : 1;
}
