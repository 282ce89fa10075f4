/* concurrent: many requests at once through one tern_session, with callbacks.
 *
 *   concurrent [-n COUNT] [-j MAX_IN_FLIGHT] [-w WORKERS] [-c CA_FILE] URL...
 *
 *   -n COUNT          requests in all (default: one per URL); the URLs are used in
 *                     turn, so `-n 1000 URL` fetches URL 1000 times
 *   -j MAX_IN_FLIGHT  most requests in flight at once (default 100; 0 = no limit)
 *   -w WORKERS        tern runtime worker threads (default 0 = one per CPU)
 *   -c CA_FILE        also trust the CA certificates in this PEM file
 *
 * The main thread sends requests with tern_session_send, which returns at once; each
 * request's on_complete callback runs later on a tern runtime thread, records the
 * outcome under a mutex and signals a condition variable. The main thread waits on it
 * to keep at most MAX_IN_FLIGHT requests in flight, and then until every request has
 * completed. At the end it prints the count of each outcome (tern_code), of each HTTP
 * status and HTTP version, the body bytes received, latency percentiles, the wall time
 * and the rate.
 *
 * Exit status: 0 when every request completed with TERN_CODE_OK and a 2xx status;
 * 1 when any did not; 2 on bad usage.
 *
 * Plain C11 with POSIX threads; it also compiles as C++20 (tests/c/run.sh checks).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, strdup, getopt */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tern.h"

/* tern_code values are below this (the 900s are the last range). */
#define MAX_CODE 1000
/* HTTP status codes are 100..599; anything else is counted as "other". */
#define MAX_STATUS 600

/* State shared by the main thread and the callbacks; every field below `lock` is
 * guarded by it. */
struct run {
    pthread_mutex_t lock;
    pthread_cond_t changed;   /* signalled whenever a request is released */

    size_t in_flight;         /* accepted by tern_session_send, not yet released */
    size_t done;              /* released (on_complete and release have both run) */
    size_t ok_2xx;            /* completed with TERN_CODE_OK and a 2xx status */
    size_t codes[MAX_CODE];   /* outcomes, by tern_code (refusals by send included) */
    size_t codes_other;       /* a code >= MAX_CODE (should never happen) */
    char *first_message[MAX_CODE]; /* the first error message seen for each code */
    size_t statuses[MAX_STATUS];
    size_t statuses_other;
    size_t versions[4];       /* HTTP/1.0, HTTP/1.1, HTTP/2, other */
    uint64_t body_bytes;
    uint64_t *latency_us;     /* TERN_TIMING_TOTAL of each completed request */
    size_t latency_count;
};

/* Per-request user_data: allocated before tern_session_send, freed by `release` (or
 * by the caller when send refuses the request, since the caller still owns it then). */
struct request_ctx {
    struct run *run;
    size_t index;             /* which request this is (0-based) */
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Locking errors mean memory corruption or a programming error: stop at once. */
static void lock(struct run *run) {
    int rc = pthread_mutex_lock(&run->lock);
    if (rc != 0) {
        fprintf(stderr, "pthread_mutex_lock: %s\n", strerror(rc));
        abort();
    }
}

static void unlock(struct run *run) {
    int rc = pthread_mutex_unlock(&run->lock);
    if (rc != 0) {
        fprintf(stderr, "pthread_mutex_unlock: %s\n", strerror(rc));
        abort();
    }
}

static void wait_changed(struct run *run) {
    int rc = pthread_cond_wait(&run->changed, &run->lock);
    if (rc != 0) {
        fprintf(stderr, "pthread_cond_wait: %s\n", strerror(rc));
        abort();
    }
}

/* Counts an outcome; called with the lock held. `message` may be NULL. */
static void count_code(struct run *run, tern_code code, const char *message) {
    if (code >= MAX_CODE) {
        run->codes_other++;
        return;
    }
    run->codes[code]++;
    if (code != TERN_CODE_OK && run->first_message[code] == NULL && message != NULL) {
        run->first_message[code] = strdup(message); /* NULL on ENOMEM: just not shown */
    }
}

/* on_complete: runs exactly once per accepted request, on a tern runtime thread. It
 * owns `response` and must free it (here, before returning). It must not block for
 * long: it runs on one of the threads that drive every request. */
static void on_complete(void *user_data, tern_response *response) {
    struct request_ctx *ctx = (struct request_ctx *)user_data;
    struct run *run = ctx->run;

    /* Read everything we need from the response before taking the lock. */
    tern_code code = tern_response_code(response);
    uint16_t status = tern_response_status(response);
    uint32_t version = tern_response_version(response);
    uint64_t latency = tern_response_timing_us(response, TERN_TIMING_TOTAL);
    const uint8_t *body = NULL;
    size_t body_len = 0;
    if (code == TERN_CODE_OK && tern_response_body(response, &body, &body_len) != TERN_CODE_OK) {
        body_len = 0;
    }

    lock(run);
    count_code(run, code, tern_response_message(response));
    if (code == TERN_CODE_OK) {
        if (status < MAX_STATUS) {
            run->statuses[status]++;
        } else {
            run->statuses_other++;
        }
        run->versions[version == 10 ? 0 : version == 11 ? 1 : version == 20 ? 2 : 3]++;
        if (status >= 200 && status <= 299) run->ok_2xx++;
        run->body_bytes += body_len;
        run->latency_us[run->latency_count++] = latency;
    }
    unlock(run);

    tern_response_free(response);
}

/* release: runs exactly once per accepted request, after on_complete. The request's
 * user_data is ours again: free it, and tell the main thread a slot is free. */
static void release(void *user_data) {
    struct request_ctx *ctx = (struct request_ctx *)user_data;
    struct run *run = ctx->run;
    free(ctx);

    lock(run);
    run->in_flight--;
    run->done++;
    int rc = pthread_cond_signal(&run->changed);
    unlock(run);
    if (rc != 0) {
        fprintf(stderr, "pthread_cond_signal: %s\n", strerror(rc));
        abort();
    }
}

/* Makes and sends request number `index`. Returns true when tern accepted it; when it
 * did not, the outcome has been counted and the context freed. */
static bool send_one(const tern_session *session, struct run *run, const char *url,
                     size_t index) {
    static const tern_callbacks callbacks = {
        .struct_size = sizeof(tern_callbacks),
        .on_complete = on_complete,
        .on_headers = NULL, /* optional: the head, the body in chunks, progress */
        .on_data = NULL,
        .on_progress = NULL,
        .on_upload_ready = NULL,
        .release = release,
    };

    tern_error *err = NULL;
    tern_request *req = NULL;
    tern_code code = tern_request_new("GET", url, &req, &err);
    if (code != TERN_CODE_OK) {
        lock(run);
        count_code(run, code, tern_error_message(err));
        run->done++;
        unlock(run);
        tern_error_free(err);
        return false;
    }

    struct request_ctx *ctx = (struct request_ctx *)malloc(sizeof *ctx);
    if (ctx == NULL) {
        tern_request_free(req);
        lock(run);
        count_code(run, TERN_CODE_INTERNAL, "out of memory");
        run->done++;
        unlock(run);
        return false;
    }
    ctx->run = run;
    ctx->index = index;

    /* Count the request as in flight before sending: its release may run on another
     * thread before tern_session_send even returns. */
    lock(run);
    run->in_flight++;
    unlock(run);

    /* tern_session_send consumes `req` whatever it returns. */
    code = tern_session_send(session, req, &callbacks, ctx, NULL, &err);
    if (code != TERN_CODE_OK) {
        /* Refused: no callback will run, and ctx is still ours. */
        free(ctx);
        lock(run);
        run->in_flight--;
        count_code(run, code, tern_error_message(err));
        run->done++;
        unlock(run);
        tern_error_free(err);
        return false;
    }
    return true;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile (0..100) of sorted values, nearest rank. */
static uint64_t percentile(const uint64_t *sorted, size_t n, unsigned p) {
    if (n == 0) return 0;
    size_t rank = (n * p + 99) / 100; /* ceil(n * p / 100), 1-based */
    if (rank == 0) rank = 1;
    return sorted[rank - 1];
}

static void print_report(struct run *run, size_t count, double seconds) {
    printf("requests:  %zu\n", count);

    printf("outcomes: ");
    for (size_t c = 0; c < MAX_CODE; c++) {
        if (run->codes[c] > 0) printf(" %s %zu", tern_code_name((uint32_t)c), run->codes[c]);
    }
    if (run->codes_other > 0) printf(" (unknown) %zu", run->codes_other);
    printf("\n");

    printf("statuses: ");
    bool any = false;
    for (size_t s = 0; s < MAX_STATUS; s++) {
        if (run->statuses[s] > 0) {
            printf(" %zu: %zu", s, run->statuses[s]);
            any = true;
        }
    }
    if (run->statuses_other > 0) {
        printf(" other: %zu", run->statuses_other);
        any = true;
    }
    printf("%s\n", any ? "" : " (none)");

    static const char *const version_names[4] = {"HTTP/1.0", "HTTP/1.1", "HTTP/2", "other"};
    printf("versions: ");
    any = false;
    for (size_t v = 0; v < 4; v++) {
        if (run->versions[v] > 0) {
            printf(" %s %zu", version_names[v], run->versions[v]);
            any = true;
        }
    }
    printf("%s\n", any ? "" : " (none)");

    printf("body:      %" PRIu64 " bytes\n", run->body_bytes);

    if (run->latency_count > 0) {
        qsort(run->latency_us, run->latency_count, sizeof run->latency_us[0], compare_u64);
        size_t n = run->latency_count;
        printf("latency:   p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms\n",
               (double)percentile(run->latency_us, n, 50) / 1000.0,
               (double)percentile(run->latency_us, n, 90) / 1000.0,
               (double)percentile(run->latency_us, n, 99) / 1000.0,
               (double)run->latency_us[n - 1] / 1000.0);
    }

    printf("wall time: %.3f s\n", seconds);
    printf("rate:      %.0f requests/s\n", seconds > 0 ? (double)count / seconds : 0.0);

    for (size_t c = 0; c < MAX_CODE; c++) {
        if (run->first_message[c] != NULL) {
            printf("first %s: %s\n", tern_code_name((uint32_t)c), run->first_message[c]);
        }
    }
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [-n COUNT] [-j MAX_IN_FLIGHT] [-w WORKERS] [-c CA_FILE] URL...\n",
            argv0);
}

/* Parses a non-negative decimal number; false when `s` is not one. */
static bool parse_size(const char *s, size_t *out) {
    if (*s == '\0' || *s == '-') return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > SIZE_MAX) return false;
    *out = (size_t)v;
    return true;
}

static int fail(const char *what, tern_code code, tern_error *err) {
    fprintf(stderr, "%s: %s: %s\n", what, tern_code_name(code),
            err ? tern_error_message(err) : "");
    tern_error_free(err);
    return 1;
}

/* Makes the one session every request goes through: it holds the connection pool,
 * so HTTP/1.1 connections are reused and HTTP/2 requests share a connection.
 * Returns 0, or 1 after printing why it failed. */
static int new_session(const tern_runtime *rt, const char *ca_file, tern_session **out) {
    tern_error *err = NULL;
    tern_session_options *opts = NULL;
    tern_code code = tern_session_options_new(&opts, &err);
    if (code != TERN_CODE_OK) return fail("tern_session_options_new", code, err);
    if (ca_file != NULL) {
        code = tern_session_options_add_ca_file(opts, ca_file, &err);
        if (code != TERN_CODE_OK) {
            tern_session_options_free(opts);
            return fail("CA file", code, err);
        }
    }
    code = tern_session_new(rt, opts, out, &err);
    tern_session_options_free(opts); /* the session keeps its own copy */
    if (code != TERN_CODE_OK) return fail("tern_session_new", code, err);
    return 0;
}

/* Sends `count` requests, at most `max_in_flight` at a time, waits for all of them
 * and prints the report. Returns the exit status: 0 when all were OK with a 2xx. */
static int fetch_all(struct run *run, const tern_session *session, char **urls,
                     size_t url_count, size_t count, size_t max_in_flight) {
    double start = now_seconds();

    for (size_t i = 0; i < count; i++) {
        /* Wait for a free slot: release() signals when a request is done. */
        lock(run);
        while (run->in_flight >= max_in_flight) wait_changed(run);
        unlock(run);
        send_one(session, run, urls[i % url_count], i);
    }

    /* Wait until every request has been released (refused ones count as done). */
    lock(run);
    while (run->done < count) wait_changed(run);
    unlock(run);

    double seconds = now_seconds() - start;
    print_report(run, count, seconds);
    if (run->ok_2xx != count) {
        printf("FAILED: %zu of %zu requests did not complete OK with a 2xx status\n",
               count - run->ok_2xx, count);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    size_t count = 0, max_in_flight = 100, workers = 0;
    const char *ca_file = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "n:j:w:c:h")) != -1) {
        switch (opt) {
        case 'n':
            if (!parse_size(optarg, &count) || count == 0) {
                fprintf(stderr, "-n: a positive number is needed, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'j':
            if (!parse_size(optarg, &max_in_flight)) {
                fprintf(stderr, "-j: a number is needed, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'w':
            if (!parse_size(optarg, &workers) || workers > 1024) {
                fprintf(stderr, "-w: a number from 0 to 1024 is needed, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'c':
            ca_file = optarg;
            break;
        default:
            usage(argv[0]);
            return 2;
        }
    }
    size_t url_count = (size_t)(argc - optind);
    char **urls = argv + optind;
    if (url_count == 0) {
        usage(argv[0]);
        return 2;
    }
    if (count == 0) count = url_count;
    if (max_in_flight == 0) max_in_flight = count;

    if (tern_version_check(TERN_VERSION_MAJOR, TERN_VERSION_MINOR) != TERN_CODE_OK) {
        fprintf(stderr, "libtern %s does not match this header (%d.%d)\n", tern_version(),
                TERN_VERSION_MAJOR, TERN_VERSION_MINOR);
        return 1;
    }

    /* The shared state. calloc zeroes every counter and pointer. */
    struct run *run = (struct run *)calloc(1, sizeof *run);
    if (run == NULL) {
        perror("calloc");
        return 1;
    }
    run->latency_us = (uint64_t *)calloc(count, sizeof run->latency_us[0]);
    if (run->latency_us == NULL) {
        perror("calloc");
        free(run);
        return 1;
    }
    int rc = pthread_mutex_init(&run->lock, NULL);
    if (rc == 0) {
        rc = pthread_cond_init(&run->changed, NULL);
        if (rc != 0) pthread_mutex_destroy(&run->lock);
    }
    if (rc != 0) {
        fprintf(stderr, "pthread init: %s\n", strerror(rc));
        free(run->latency_us);
        free(run);
        return 1;
    }

    /* The runtime: tern's own threads, which run every request and callback. */
    tern_runtime_config config;
    memset(&config, 0, sizeof config);
    config.struct_size = sizeof(tern_runtime_config);
    config.worker_threads = (uint32_t)workers;
    config.thread_name = NULL; /* "tern-worker" */

    int status = 1;
    tern_error *err = NULL;
    tern_runtime *rt = NULL;
    tern_session *session = NULL;
    tern_code code = tern_runtime_new(&config, &rt, &err);
    if (code != TERN_CODE_OK) {
        status = fail("tern_runtime_new", code, err);
    } else if (new_session(rt, ca_file, &session) == 0) {
        status = fetch_all(run, session, urls, url_count, count, max_in_flight);
    }

    /* Every request has completed, so these do not wait for anything of ours. */
    tern_session_free(session);
    tern_runtime_free(rt);

    for (size_t c = 0; c < MAX_CODE; c++) free(run->first_message[c]);
    pthread_cond_destroy(&run->changed);
    pthread_mutex_destroy(&run->lock);
    free(run->latency_us);
    free(run);
    return status;
}
