/* poll_loop: many requests driven from the program's own poll(2) loop, every callback
 * on the main thread.
 *
 *   poll_loop [-n COUNT] [-c CA_FILE] [-l PER_HOST] [-w WORKERS] [-t SECONDS] [URL...]
 *
 *   -n COUNT     requests in all (default 1000), all sent at once; the URLs are used
 *                in turn
 *   -c CA_FILE   also trust the CA certificates in this PEM file
 *   -l PER_HOST  at most this many connections per host (default 0 = no limit);
 *                requests beyond it wait in tern, still in flight
 *   -w WORKERS   tern runtime worker threads (default 0 = one per CPU)
 *   -t SECONDS   give up after this long (default 120)
 *   URL...       default: $TERN_TEST_HTTP/hello and $TERN_TEST_HTTPS/hello, with
 *                -c $TERN_TEST_CA (the test servers of scripts/testenv.sh)
 *
 * The session is made with TERN_DELIVERY_QUEUED: tern's runtime threads do the
 * networking, but instead of calling back on those threads they queue the callbacks
 * and make a descriptor (tern_session_fd) readable. The program is single-threaded
 * as far as it can tell: it sends every request, then waits in its own poll(2) on
 * that descriptor (with a time-out, as a game's frame loop or a GUI's event loop
 * would) and, when it is readable, calls tern_session_poll, which runs up to 64
 * queued callbacks on this thread and returns.
 *
 * It checks what the embedding contract promises, for every request: each callback
 * (on_headers, on_progress, on_complete, release) ran on the main thread, inside
 * tern_session_poll (so none ran inside send or before the first poll); on_complete
 * and release ran exactly once each, release after on_complete; on_headers at most
 * once and before on_complete, and on_progress before it. It prints one summary line
 * and exits 0 only when every request completed with TERN_CODE_OK and a 2xx status
 * and every check held; 1 otherwise; 2 on bad usage.
 *
 * Plain C11 with POSIX; no thread of its own (pthread_self only names the main one).
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
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "tern.h"

/* Per request: what its callbacks saw. Written by its callbacks only, which tern runs
 * one at a time per request; atomics because a callback on the wrong thread (the very
 * thing checked) must not also be a data race. */
struct request_state {
    uint64_t id;              /* from tern_session_send */
    atomic_int headers;       /* on_headers calls */
    atomic_int progress;      /* on_progress calls */
    atomic_int completes;     /* on_complete calls */
    atomic_int releases;      /* release calls */
    atomic_bool out_of_order; /* a callback after on_complete, or release before it */
    _Atomic tern_code code;
    atomic_uint status;
    atomic_uint version;
};

static pthread_t main_thread;
static atomic_bool in_poll;          /* the main thread is inside tern_session_poll */
static atomic_long callbacks_run;    /* every callback of every request */
static atomic_long wrong_thread;     /* callbacks not on the main thread */
static atomic_long outside_poll;     /* callbacks not inside tern_session_poll */
static atomic_long released_total;   /* release calls, all requests */

/* Every callback starts here: is this the main thread, inside tern_session_poll? */
static void note_callback(void) {
    atomic_fetch_add(&callbacks_run, 1);
    if (!pthread_equal(pthread_self(), main_thread)) atomic_fetch_add(&wrong_thread, 1);
    if (!atomic_load(&in_poll)) atomic_fetch_add(&outside_poll, 1);
}

static uint32_t on_headers(void *user_data, const tern_response *head) {
    struct request_state *r = (struct request_state *)user_data;
    note_callback();
    if (atomic_load(&r->completes) != 0 || atomic_load(&r->headers) != 0) {
        atomic_store(&r->out_of_order, true);
    }
    atomic_fetch_add(&r->headers, 1);
    atomic_store(&r->status, tern_response_status(head));
    return TERN_ACTION_CONTINUE;
}

static void on_progress(void *user_data, uint64_t sent, uint64_t to_send, uint64_t received,
                        uint64_t expected) {
    struct request_state *r = (struct request_state *)user_data;
    (void)sent, (void)to_send, (void)received, (void)expected;
    note_callback();
    if (atomic_load(&r->completes) != 0) atomic_store(&r->out_of_order, true);
    atomic_fetch_add(&r->progress, 1);
}

static void on_complete(void *user_data, tern_response *response) {
    struct request_state *r = (struct request_state *)user_data;
    note_callback();
    if (atomic_load(&r->completes) != 0 || atomic_load(&r->releases) != 0) {
        atomic_store(&r->out_of_order, true);
    }
    atomic_store(&r->code, tern_response_code(response));
    atomic_store(&r->status, tern_response_status(response));
    atomic_store(&r->version, tern_response_version(response));
    atomic_fetch_add(&r->completes, 1);
    tern_response_free(response);
}

static void release(void *user_data) {
    struct request_state *r = (struct request_state *)user_data;
    note_callback();
    if (atomic_load(&r->completes) != 1 || atomic_load(&r->releases) != 0) {
        atomic_store(&r->out_of_order, true);
    }
    atomic_fetch_add(&r->releases, 1);
    atomic_fetch_add(&released_total, 1);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, tern_code code, tern_error *err) {
    fprintf(stderr, "poll_loop: %s: %s: %s\n", what, tern_code_name(code),
            err ? tern_error_message(err) : "");
    tern_error_free(err);
    return 1;
}

static bool parse_size(const char *s, size_t *out) {
    if (*s == '\0' || *s == '-') return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > SIZE_MAX) return false;
    *out = (size_t)v;
    return true;
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [-n COUNT] [-c CA_FILE] [-l PER_HOST] [-w WORKERS] [-t SECONDS] "
            "[URL...]\n",
            argv0);
}

/* Every connection is a descriptor: allow as many as the hard limit does. */
static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The session: queued delivery, so callbacks wait for tern_session_poll. */
static int new_session(const tern_runtime *rt, const char *ca_file, size_t per_host,
                       tern_session **out) {
    tern_error *err = NULL;
    tern_session_options *opts = NULL;
    tern_code code = tern_session_options_new(&opts, &err);
    if (code != TERN_CODE_OK) return fail("tern_session_options_new", code, err);
    code = tern_session_options_set_delivery(opts, TERN_DELIVERY_QUEUED, &err);
    if (code == TERN_CODE_OK && ca_file != NULL) {
        code = tern_session_options_add_ca_file(opts, ca_file, &err);
    }
    if (code == TERN_CODE_OK && per_host > 0) {
        code = tern_session_options_set_connection_limits(opts, 0, (uint32_t)per_host, &err);
    }
    if (code == TERN_CODE_OK) code = tern_session_new(rt, opts, out, &err);
    tern_session_options_free(opts);
    if (code != TERN_CODE_OK) return fail("session", code, err);
    return 0;
}

/* Sends request `i`; false (with a message) when tern refused it. */
static bool send_one(const tern_session *session, const char *url, struct request_state *r) {
    static const tern_callbacks callbacks = {
        .struct_size = sizeof(tern_callbacks),
        .on_complete = on_complete,
        .on_headers = on_headers,
        .on_data = NULL, /* the body is kept in the response */
        .on_progress = on_progress,
        .on_upload_ready = NULL,
        .release = release,
    };
    tern_error *err = NULL;
    tern_request *req = NULL;
    tern_code code = tern_request_new("GET", url, &req, &err);
    if (code == TERN_CODE_OK) code = tern_session_send(session, req, &callbacks, r, &r->id, &err);
    if (code != TERN_CODE_OK) {
        fail(url, code, err);
        return false;
    }
    return true;
}

/* The event loop: waits on the session's descriptor (and would wait on the program's
 * own descriptors too), runs queued callbacks when it is readable, and does the
 * program's own work on every turn, here counting frames. Returns false on time-out. */
static bool event_loop(const tern_session *session, int fd, size_t accepted, double deadline,
                       unsigned long *frames, unsigned long *wakeups, unsigned long *polls) {
    while ((size_t)atomic_load(&released_total) < accepted) {
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        int n = poll(&p, 1, 100 /* ms: one "frame" */);
        (*frames)++;
        if (n < 0 && errno != EINTR) {
            perror("poll_loop: poll");
            return false;
        }
        if (n > 0 && (p.revents & POLLIN)) {
            (*wakeups)++;
            /* Run what is queued now, at most 64 callbacks, without waiting: the
             * loop's other work is not held up by a burst of completions. */
            uint32_t ran = 0;
            tern_error *err = NULL;
            atomic_store(&in_poll, true);
            tern_code code = tern_session_poll(session, 0, 64, &ran, &err);
            atomic_store(&in_poll, false);
            (*polls)++;
            if (code != TERN_CODE_OK) {
                fail("tern_session_poll", code, err);
                return false;
            }
        } else if (n > 0) {
            fprintf(stderr, "poll_loop: descriptor %d: revents 0x%x\n", fd, (unsigned)p.revents);
            return false;
        }
        if (now_seconds() > deadline) {
            fprintf(stderr, "poll_loop: timed out: %ld of %zu requests released\n",
                    atomic_load(&released_total), accepted);
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv) {
    size_t count = 1000, per_host = 0, workers = 0, seconds = 120;
    const char *ca_file = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "n:c:l:w:t:h")) != -1) {
        switch (opt) {
        case 'n':
            if (!parse_size(optarg, &count) || count == 0) {
                fprintf(stderr, "-n: a positive number is needed, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'c':
            ca_file = optarg;
            break;
        case 'l':
            if (!parse_size(optarg, &per_host) || per_host > UINT32_MAX) {
                fprintf(stderr, "-l: a number is needed, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'w':
            if (!parse_size(optarg, &workers) || workers > 1024) {
                fprintf(stderr, "-w: a number from 0 to 1024 is needed, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 't':
            if (!parse_size(optarg, &seconds) || seconds == 0) {
                fprintf(stderr, "-t: a positive number is needed, not '%s'\n", optarg);
                return 2;
            }
            break;
        default:
            usage(argv[0]);
            return 2;
        }
    }

    /* The URLs: from the command line, else the test servers. */
    char *default_urls[2];
    size_t url_count = (size_t)(argc - optind);
    char **urls = argv + optind;
    const char *http = getenv("TERN_TEST_HTTP"), *https = getenv("TERN_TEST_HTTPS");
    if (url_count == 0) {
        if (http == NULL || https == NULL) {
            usage(argv[0]);
            fprintf(stderr, "(or set TERN_TEST_HTTP, TERN_TEST_HTTPS and TERN_TEST_CA)\n");
            return 2;
        }
        for (size_t i = 0; i < 2; i++) {
            const char *base = i == 0 ? http : https;
            size_t len = strlen(base) + sizeof "/hello";
            default_urls[i] = (char *)malloc(len);
            if (default_urls[i] == NULL) abort();
            snprintf(default_urls[i], len, "%s/hello", base);
        }
        urls = default_urls;
        url_count = 2;
        if (ca_file == NULL) ca_file = getenv("TERN_TEST_CA");
    }

    if (tern_version_check(TERN_VERSION_MAJOR, TERN_VERSION_MINOR) != TERN_CODE_OK) {
        fprintf(stderr, "libtern %s does not match this header (%d.%d)\n", tern_version(),
                TERN_VERSION_MAJOR, TERN_VERSION_MINOR);
        return 1;
    }
    main_thread = pthread_self();
    raise_fd_limit();

    struct request_state *reqs = (struct request_state *)calloc(count, sizeof *reqs);
    if (reqs == NULL) {
        fprintf(stderr, "poll_loop: out of memory\n");
        return 1;
    }

    tern_runtime_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    cfg.worker_threads = (uint32_t)workers;
    tern_runtime *rt = NULL;
    tern_session *session = NULL;
    tern_error *err = NULL;
    tern_code code = tern_runtime_new(&cfg, &rt, &err);
    if (code != TERN_CODE_OK) return fail("tern_runtime_new", code, err);
    if (new_session(rt, ca_file, per_host, &session) != 0) {
        tern_runtime_free(rt);
        return 1;
    }
    int fd = -1;
    code = tern_session_fd(session, &fd, &err);
    if (code != TERN_CODE_OK) {
        tern_session_free(session);
        tern_runtime_free(rt);
        return fail("tern_session_fd", code, err);
    }

    /* Send everything at once: all `count` requests are in flight together. */
    double start = now_seconds();
    size_t accepted = 0;
    for (size_t i = 0; i < count; i++) {
        if (send_one(session, urls[i % url_count], &reqs[i])) accepted++;
    }
    long before_poll = atomic_load(&callbacks_run);

    unsigned long frames = 0, wakeups = 0, polls = 0;
    bool finished = event_loop(session, fd, accepted, start + (double)seconds, &frames,
                               &wakeups, &polls);
    double elapsed = now_seconds() - start;

    /* A late duplicate would be queued now: poll a little longer (nothing may run). */
    long settled = atomic_load(&callbacks_run);
    for (int i = 0; finished && i < 3; i++) {
        atomic_store(&in_poll, true);
        (void)tern_session_poll(session, 50, 0, NULL, NULL);
        atomic_store(&in_poll, false);
    }
    long late = atomic_load(&callbacks_run) - settled;

    /* With queued delivery, freeing the session runs any remaining callbacks here
     * (after aborting what is still in flight): none when everything finished. */
    tern_session_free(session);
    tern_runtime_free(rt);

    /* The verdict, request by request. */
    size_t ok = 0, not_once = 0, disorder = 0, no_progress = 0, no_headers = 0;
    size_t statuses_2xx = 0, h1 = 0, h2 = 0;
    size_t first_bad = count;
    for (size_t i = 0; i < count; i++) {
        struct request_state *r = &reqs[i];
        if (r->id == 0) continue; /* refused by send: counted below */
        bool once = atomic_load(&r->completes) == 1 && atomic_load(&r->releases) == 1;
        bool good = atomic_load(&r->code) == TERN_CODE_OK;
        unsigned status = atomic_load(&r->status);
        if (!once) not_once++;
        if (atomic_load(&r->out_of_order)) disorder++;
        if (good && atomic_load(&r->headers) != 1) no_headers++;
        if (atomic_load(&r->progress) == 0) no_progress++;
        if (good && status >= 200 && status <= 299) statuses_2xx++;
        if (atomic_load(&r->version) == 11) h1++;
        if (atomic_load(&r->version) == 20) h2++;
        if (once && good && !atomic_load(&r->out_of_order)) {
            ok++;
        } else if (first_bad == count) {
            first_bad = i;
        }
    }
    bool all_ok = finished && accepted == count && ok == count && statuses_2xx == count &&
                  not_once == 0 && disorder == 0 && no_headers == 0 && no_progress == 0 &&
                  atomic_load(&wrong_thread) == 0 && atomic_load(&outside_poll) == 0 &&
                  before_poll == 0 && late == 0 &&
                  (size_t)atomic_load(&released_total) == accepted;

    printf("poll_loop: %s: %zu requests (%zu accepted), %zu OK with 2xx (HTTP/1.1 %zu, "
           "HTTP/2 %zu) in %.3f s; %ld callbacks, %ld not on the main thread, %ld outside "
           "tern_session_poll, %ld before the first poll, %ld late; complete+release not "
           "exactly once: %zu, out of order: %zu, no on_headers: %zu, no on_progress: %zu; "
           "loop: %lu frames, %lu wake-ups, %lu polls\n",
           all_ok ? "OK" : "FAILED", count, accepted, statuses_2xx, h1, h2, elapsed,
           atomic_load(&callbacks_run), atomic_load(&wrong_thread), atomic_load(&outside_poll),
           before_poll, late, not_once, disorder, no_headers, no_progress, frames, wakeups,
           polls);
    if (first_bad < count) {
        struct request_state *r = &reqs[first_bad];
        printf("first bad request #%zu (id %" PRIu64 "): code %s, status %u, headers %d, "
               "progress %d, completes %d, releases %d, out of order %d\n",
               first_bad, r->id, tern_code_name(atomic_load(&r->code)), atomic_load(&r->status),
               atomic_load(&r->headers), atomic_load(&r->progress), atomic_load(&r->completes),
               atomic_load(&r->releases), (int)atomic_load(&r->out_of_order));
    }

    free(reqs);
    if (urls == default_urls) {
        free(default_urls[0]);
        free(default_urls[1]);
    }
    return all_ok ? 0 : 1;
}
