/* Shared by the benchmark clients: the command line, clocks, memory and CPU readings,
 * and the one-line result.
 *
 *   CLIENT --url URL --requests N --concurrency C [--cacert FILE] [--no-reuse]
 *          [--http2] [--stream] [--version]
 *
 *   --requests N     exactly N requests, all GET URL
 *   --concurrency C  at most C in flight at once (the first C are sent together)
 *   --cacert FILE    trust only the CA certificates in FILE (https)
 *   --no-reuse       a new connection (and a full TLS handshake) for every request
 *   --http2          HTTP/2 only (ALPN h2), every request on one connection if the
 *                    client can
 *   --stream         count the body's bytes as they arrive and drop them, instead of
 *                    keeping each body in memory until it is complete
 *
 * The result, on stdout, is one line of key=value pairs:
 *
 *   RESULT client=NAME requests=N ok=K failed=F bytes=B seconds=S user_s=U sys_s=Y
 *          maxrss_kib=M base_rss_kib=R [error="first error"]
 *
 * `ok` counts the requests that ended with status 200 and a complete body, `bytes` the
 * body bytes of all of them, `base_rss_kib` the resident set after set-up and before
 * the first request, `maxrss_kib` the peak (getrusage). Exit status 0 when ok == N,
 * 1 otherwise, 2 on bad usage.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

struct bench_opts {
    const char *url;
    long requests;
    long concurrency;
    const char *cacert;
    int no_reuse;
    int http2;
    int stream;
    int version;
};

static void bench_usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s --url URL --requests N --concurrency C [--cacert FILE] [--no-reuse]"
            " [--http2] [--stream] [--version]\n",
            argv0);
    exit(2);
}

static long bench_number(const char *argv0, const char *flag, const char *s) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v <= 0) {
        fprintf(stderr, "%s: %s needs a positive number, not '%s'\n", argv0, flag, s);
        exit(2);
    }
    return v;
}

static void bench_parse(int argc, char **argv, struct bench_opts *o) {
    memset(o, 0, sizeof *o);
    o->concurrency = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--url") == 0 && next) {
            o->url = next;
            i++;
        } else if (strcmp(a, "--requests") == 0 && next) {
            o->requests = bench_number(argv[0], a, next);
            i++;
        } else if (strcmp(a, "--concurrency") == 0 && next) {
            o->concurrency = bench_number(argv[0], a, next);
            i++;
        } else if (strcmp(a, "--cacert") == 0 && next) {
            o->cacert = next;
            i++;
        } else if (strcmp(a, "--no-reuse") == 0) {
            o->no_reuse = 1;
        } else if (strcmp(a, "--http2") == 0) {
            o->http2 = 1;
        } else if (strcmp(a, "--stream") == 0) {
            o->stream = 1;
        } else if (strcmp(a, "--version") == 0) {
            o->version = 1;
        } else {
            bench_usage(argv[0]);
        }
    }
    if (o->version) return;
    if (o->url == NULL || o->requests == 0) bench_usage(argv[0]);
    if (o->concurrency > o->requests) o->concurrency = o->requests;
}

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The current resident set (VmRSS) in KiB, or 0 when unreadable. */
static long bench_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return 0;
    char line[256];
    long kib = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

/* Prints the result line; returns the exit status. `error` may be NULL or "". */
static int bench_result(const char *client, const struct bench_opts *o, long ok, long failed,
                        uint64_t bytes, double seconds, long base_rss_kib,
                        const char *error) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("RESULT client=%s requests=%ld ok=%ld failed=%ld bytes=%" PRIu64
           " seconds=%.6f user_s=%.6f sys_s=%.6f maxrss_kib=%ld base_rss_kib=%ld",
           client, o->requests, ok, failed, bytes, seconds, user, sys, ru.ru_maxrss,
           base_rss_kib);
    if (error != NULL && error[0] != '\0') {
        printf(" error=\"");
        for (const char *p = error; *p; p++) putchar(*p == '"' || *p == '\n' ? '\'' : *p);
        printf("\"");
    }
    printf("\n");
    fflush(stdout);
    return ok == o->requests && failed == 0 ? 0 : 1;
}

#endif
