/* download: stream a URL to a file, with progress, and optionally a pause.
 *
 *   download [-c CA_FILE] [--pause-after BYTES --pause-ms MS] [--interval MS] URL FILE
 *
 *   -c CA_FILE            also trust the CA certificates in this PEM file
 *   --pause-after BYTES   once BYTES have arrived, on_data returns TERN_ACTION_PAUSE:
 *                         tern stops reading from the socket (the server's sends then
 *                         block on the TCP window) ...
 *   --pause-ms MS         ... and the main thread resumes the request with
 *                         tern_session_resume after MS milliseconds (default 1000)
 *   --interval MS         at most one progress line per MS (default 200)
 *
 * The body is never held in memory: on_data receives it chunk by chunk (on a tern
 * runtime thread) and writes each chunk to FILE; tern keeps no body in the response.
 * on_headers refuses a non-2xx response (TERN_ACTION_CANCEL), so an error page is
 * never saved. on_progress prints a progress line on stderr, at most once per
 * interval (tern_session_options_set_progress_interval_ms). The main thread only
 * waits, on a condition variable, for the pause and for the end.
 *
 * At the end it prints the response, the progress counts and what the pause did, then
 * one summary line (bytes, time, OK or FAILED). It checks that no chunk arrived while the request was paused, that the request stayed paused
 * for MS, and that the byte counts agree. Exit status: 0 when the whole body was
 * written and every check held; 1 otherwise; 2 on bad usage. Compare the file with
 * `sha256sum FILE` (tests/c/run.sh does).
 *
 * Plain C11 with POSIX threads.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */

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

/* Shared by the main thread and the callbacks; every field is guarded by `lock`,
 * except `out`, which only the callbacks use until the request is released. */
struct download {
    pthread_mutex_t lock;
    pthread_cond_t changed;   /* signalled on pause and on release */

    FILE *out;
    const char *path;
    bool write_failed;
    int write_errno;

    uint64_t written;         /* body bytes written to `out` */
    uint64_t chunks;          /* on_data calls */
    uint64_t pause_after;     /* 0 = never pause */
    bool pause_done;          /* the one pause was asked for */
    bool paused;              /* on_data returned PAUSE and no resume was made yet */
    uint64_t paused_at_bytes;
    double paused_at;         /* when on_data asked for the pause */
    uint64_t chunks_while_paused;

    uint16_t status;          /* from on_headers */
    uint32_t version;
    bool refused_status;      /* on_headers canceled a non-2xx response */

    uint64_t progress_calls;
    uint64_t received;        /* the last on_progress: bytes on the wire ... */
    uint64_t expected;        /* ... and the Content-Length (0 = unknown) */
    bool tty;                 /* stderr is a terminal: one line, redrawn */

    bool completed;
    tern_code code;
    char message[512];
    double completed_at;
    bool released;
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(uint64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void lock(struct download *d) {
    if (pthread_mutex_lock(&d->lock) != 0) abort();
}
static void unlock(struct download *d) {
    if (pthread_mutex_unlock(&d->lock) != 0) abort();
}
static void signal_changed(struct download *d) {
    if (pthread_cond_broadcast(&d->changed) != 0) abort();
}

/* on_headers: the final response's head, before any body byte. */
static uint32_t on_headers(void *user_data, const tern_response *head) {
    struct download *d = (struct download *)user_data;
    uint16_t status = tern_response_status(head);
    lock(d);
    d->status = status;
    d->version = tern_response_version(head);
    d->refused_status = status < 200 || status > 299;
    unlock(d);
    return status >= 200 && status <= 299 ? TERN_ACTION_CONTINUE : TERN_ACTION_CANCEL;
}

/* on_data: one chunk of the body, valid during the call only. It runs on a runtime
 * thread; a write to a local file is quick enough to do here. */
static uint32_t on_data(void *user_data, const uint8_t *data, size_t len) {
    struct download *d = (struct download *)user_data;
    size_t n = fwrite(data, 1, len, d->out);
    int e = errno;

    lock(d);
    d->chunks++;
    if (d->paused) d->chunks_while_paused++; /* tern promised not to read: a bug */
    d->written += n;
    if (n != len) {
        d->write_failed = true;
        d->write_errno = e;
        unlock(d);
        return TERN_ACTION_CANCEL;
    }
    uint32_t action = TERN_ACTION_CONTINUE;
    if (d->pause_after > 0 && !d->pause_done && d->written >= d->pause_after) {
        d->pause_done = true;
        d->paused = true;
        d->paused_at_bytes = d->written;
        d->paused_at = now_seconds();
        signal_changed(d); /* the main thread resumes us later */
        action = TERN_ACTION_PAUSE;
    }
    unlock(d);
    return action;
}

static void print_progress(const struct download *d) {
    char total[32] = "?";
    if (d->expected > 0) snprintf(total, sizeof total, "%" PRIu64, d->expected);
    int percent = d->expected > 0 ? (int)(d->received * 100 / d->expected) : -1;
    fprintf(stderr, "%sprogress: %" PRIu64 " of %s bytes", d->tty ? "\r" : "", d->received,
            total);
    if (percent >= 0) fprintf(stderr, " (%d%%)", percent);
    fprintf(stderr, "%s", d->tty ? "   " : "\n");
}

/* on_progress: at most once per interval while bytes move, and once before
 * on_complete. Received counts bytes on the wire (before any decoding). */
static void on_progress(void *user_data, uint64_t sent, uint64_t to_send, uint64_t received,
                        uint64_t expected) {
    struct download *d = (struct download *)user_data;
    (void)sent, (void)to_send;
    lock(d);
    d->progress_calls++;
    d->received = received;
    d->expected = expected;
    print_progress(d);
    unlock(d);
}

static void on_complete(void *user_data, tern_response *response) {
    struct download *d = (struct download *)user_data;
    lock(d);
    d->completed = true;
    d->completed_at = now_seconds();
    d->code = tern_response_code(response);
    const char *msg = tern_response_message(response);
    snprintf(d->message, sizeof d->message, "%s", msg ? msg : "");
    if (d->status == 0) d->status = tern_response_status(response);
    if (d->tty && d->progress_calls > 0) fprintf(stderr, "\n");
    unlock(d);
    tern_response_free(response);
}

/* release: the last callback. After it, `d` is the main thread's alone. */
static void release(void *user_data) {
    struct download *d = (struct download *)user_data;
    lock(d);
    d->released = true;
    signal_changed(d);
    unlock(d);
}

static int fail(const char *what, tern_code code, tern_error *err) {
    fprintf(stderr, "download: %s: %s: %s\n", what, tern_code_name(code),
            err ? tern_error_message(err) : "");
    tern_error_free(err);
    return 1;
}

static bool parse_u64(const char *s, uint64_t *out) {
    if (s == NULL || *s == '\0' || *s == '-') return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') return false;
    *out = (uint64_t)v;
    return true;
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [-c CA_FILE] [--pause-after BYTES --pause-ms MS] [--interval MS] "
            "URL FILE\n",
            argv0);
}

int main(int argc, char **argv) {
    const char *ca_file = NULL, *url = NULL, *path = NULL;
    uint64_t pause_after = 0, pause_ms = 1000, interval_ms = 200;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-c") == 0 && v != NULL) {
            ca_file = v;
            i++;
        } else if (strcmp(a, "--pause-after") == 0) {
            if (!parse_u64(v, &pause_after) || pause_after == 0) {
                fprintf(stderr, "--pause-after: a positive byte count is needed\n");
                return 2;
            }
            i++;
        } else if (strcmp(a, "--pause-ms") == 0) {
            if (!parse_u64(v, &pause_ms) || pause_ms > 3600000) {
                fprintf(stderr, "--pause-ms: milliseconds (up to an hour) are needed\n");
                return 2;
            }
            i++;
        } else if (strcmp(a, "--interval") == 0) {
            if (!parse_u64(v, &interval_ms) || interval_ms == 0 || interval_ms > UINT32_MAX) {
                fprintf(stderr, "--interval: positive milliseconds are needed\n");
                return 2;
            }
            i++;
        } else if (a[0] == '-' && a[1] != '\0') {
            usage(argv[0]);
            return 2;
        } else if (url == NULL) {
            url = a;
        } else if (path == NULL) {
            path = a;
        } else {
            usage(argv[0]);
            return 2;
        }
    }
    if (url == NULL || path == NULL) {
        usage(argv[0]);
        return 2;
    }

    struct download d;
    memset(&d, 0, sizeof d);
    if (pthread_mutex_init(&d.lock, NULL) != 0 || pthread_cond_init(&d.changed, NULL) != 0) {
        return 1;
    }
    d.path = path;
    d.pause_after = pause_after;
    d.tty = isatty(STDERR_FILENO) == 1;
    d.out = fopen(path, "wb");
    if (d.out == NULL) {
        fprintf(stderr, "download: %s: %s\n", path, strerror(errno));
        return 1;
    }

    /* Runtime and session: callbacks on runtime threads (the default delivery), one
     * progress call per interval at most. */
    tern_error *err = NULL;
    tern_runtime *rt = NULL;
    tern_session_options *opts = NULL;
    tern_session *session = NULL;
    tern_code code = tern_runtime_new(NULL, &rt, &err);
    if (code != TERN_CODE_OK) return fail("tern_runtime_new", code, err);
    code = tern_session_options_new(&opts, &err);
    if (code == TERN_CODE_OK) {
        code = tern_session_options_set_progress_interval_ms(opts, (uint32_t)interval_ms, &err);
    }
    if (code == TERN_CODE_OK && ca_file != NULL) {
        code = tern_session_options_add_ca_file(opts, ca_file, &err);
    }
    if (code == TERN_CODE_OK) code = tern_session_new(rt, opts, &session, &err);
    tern_session_options_free(opts);
    if (code != TERN_CODE_OK) {
        tern_runtime_free(rt);
        return fail("session", code, err);
    }

    static const tern_callbacks callbacks = {
        .struct_size = sizeof(tern_callbacks),
        .on_complete = on_complete,
        .on_headers = on_headers,
        .on_data = on_data,
        .on_progress = on_progress,
        .on_upload_ready = NULL,
        .release = release,
    };
    double start = now_seconds();
    tern_request *req = NULL;
    uint64_t id = 0;
    code = tern_request_new("GET", url, &req, &err);
    if (code == TERN_CODE_OK) code = tern_session_send(session, req, &callbacks, &d, &id, &err);
    if (code != TERN_CODE_OK) {
        fail(url, code, err);
        tern_session_free(session);
        tern_runtime_free(rt);
        fclose(d.out);
        return 1;
    }

    /* Wait for the pause (then resume it after pause_ms) and for the end. */
    double resumed_at = 0;
    tern_code resume_code = TERN_CODE_OK;
    lock(&d);
    while (!d.released) {
        if (d.paused) {
            unlock(&d);
            sleep_ms(pause_ms);
            lock(&d);
            /* Cleared before the resume: a chunk after it is legitimate. */
            d.paused = false;
            unlock(&d);
            resumed_at = now_seconds();
            resume_code = tern_session_resume(session, id);
            lock(&d);
            continue;
        }
        if (pthread_cond_wait(&d.changed, &d.lock) != 0) abort();
    }
    unlock(&d);
    double seconds = now_seconds() - start;

    tern_session_free(session);
    tern_runtime_free(rt);
    bool close_failed = fclose(d.out) != 0;

    /* The report and the checks. */
    bool ok = d.completed && d.code == TERN_CODE_OK && !d.refused_status && !d.write_failed &&
              !close_failed;
    printf("response: %s, HTTP/%u.%u %u%s%s\n", tern_code_name(d.code), d.version / 10,
           d.version % 10, (unsigned)d.status, d.message[0] ? ": " : "", d.message);
    if (d.refused_status) printf("not saved: the status is not 2xx\n");
    if (d.write_failed) printf("write failed: %s: %s\n", path, strerror(d.write_errno));
    if (close_failed) printf("write failed: closing %s\n", path);

    printf("progress: %" PRIu64 " calls, last %" PRIu64 " of %" PRIu64 " bytes\n",
           d.progress_calls, d.received, d.expected);
    if (d.progress_calls == 0) {
        printf("check failed: on_progress never ran\n");
        ok = false;
    } else if (ok && d.expected > 0 && d.received != d.expected) {
        printf("check failed: the last on_progress says %" PRIu64 " of %" PRIu64 " bytes\n",
               d.received, d.expected);
        ok = false;
    }

    if (pause_after > 0) {
        if (d.pause_done) {
            double held = resumed_at - d.paused_at;
            printf("paused: at %" PRIu64 " bytes for %.0f ms (asked %" PRIu64
                   " ms); %" PRIu64 " chunks arrived while paused; resume: %s\n",
                   d.paused_at_bytes, held * 1000.0, pause_ms, d.chunks_while_paused,
                   tern_code_name(resume_code));
            if (d.chunks_while_paused > 0 || resume_code != TERN_CODE_OK ||
                held * 1000.0 + 1.0 < (double)pause_ms || d.completed_at < resumed_at) {
                printf("check failed: the pause did not hold\n");
                ok = false;
            }
        } else if (d.code == TERN_CODE_OK) {
            printf("paused: never (the body is shorter than %" PRIu64 " bytes)\n", pause_after);
        }
    }

    printf("download: %s: %" PRIu64 " bytes to %s in %.3f s (%.1f MB/s), %u chunks\n",
           ok ? "OK" : "FAILED", d.written, path, seconds,
           seconds > 0 ? (double)d.written / seconds / 1e6 : 0.0, (unsigned)d.chunks);

    pthread_cond_destroy(&d.changed);
    pthread_mutex_destroy(&d.lock);
    return ok ? 0 : 1;
}
