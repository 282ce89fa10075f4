/* Shared by curl_epoll.c and curl_poll.c: one libcurl multi handle, easy handles made
 * on demand and reused, at most C transfers in the multi at a time.
 *
 * Settings: CURLOPT_CAINFO with --cacert (replacing the system's CAs); HTTP/1.1, or with
 * --http2 HTTP/2 over TLS (CURL_HTTP_VERSION_2TLS) with CURLOPT_PIPEWAIT so transfers
 * wait for the one connection to multiplex on, and CURLMOPT_MAX_CONCURRENT_STREAMS =
 * C (libcurl's default is 100); at most C connections per host, a connection cache of
 * C; --no-reuse sets CURLOPT_FORBID_REUSE (the connection closes after its transfer).
 * A body is kept in a buffer that grows by doubling (freed when the transfer is
 * done), or with --stream only counted. Everything else is libcurl's default.
 */
#ifndef BENCH_CURL_COMMON_H
#define BENCH_CURL_COMMON_H

#include <curl/curl.h>

#include "common.h"

struct transfer {
    CURL *easy;
    struct transfer *next_free;
    char *buf;
    size_t len, cap;
    uint64_t streamed;
};

struct crun {
    struct bench_opts o;
    CURLM *multi;
    struct transfer *free_list;
    long started, done, ok, failed, in_multi;
    uint64_t bytes;
    char first_error[300];
};

static void crun_error(struct crun *r, const char *fmt, const char *a, long b) {
    if (r->first_error[0] == '\0') snprintf(r->first_error, sizeof r->first_error, fmt, a, b);
}

static size_t write_keep(char *data, size_t size, size_t n, void *user) {
    struct transfer *t = (struct transfer *)user;
    size_t len = size * n;
    if (t->len + len > t->cap) {
        size_t cap = t->cap ? t->cap : 16384;
        while (cap < t->len + len) cap *= 2;
        char *p = (char *)realloc(t->buf, cap);
        if (p == NULL) return 0; /* libcurl fails the transfer: CURLE_WRITE_ERROR */
        t->buf = p;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, data, len);
    t->len += len;
    return len;
}

static size_t write_count(char *data, size_t size, size_t n, void *user) {
    (void)data;
    struct transfer *t = (struct transfer *)user;
    t->streamed += size * n;
    return size * n;
}

static void crun_setup(struct crun *r) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "curl_global_init failed\n");
        exit(1);
    }
    r->multi = curl_multi_init();
    curl_multi_setopt(r->multi, CURLMOPT_MAX_HOST_CONNECTIONS, r->o.concurrency);
    curl_multi_setopt(r->multi, CURLMOPT_MAXCONNECTS, r->o.concurrency);
    if (r->o.http2) {
        curl_multi_setopt(r->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
        curl_multi_setopt(r->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, r->o.concurrency);
    } else {
        curl_multi_setopt(r->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    }
}

static struct transfer *transfer_new(struct crun *r) {
    struct transfer *t = (struct transfer *)calloc(1, sizeof *t);
    if (t == NULL || (t->easy = curl_easy_init()) == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    CURL *e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, r->o.url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, r->o.stream ? write_count : write_keep);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    if (r->o.cacert) curl_easy_setopt(e, CURLOPT_CAINFO, r->o.cacert);
    if (r->o.http2) {
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    }
    if (r->o.no_reuse) curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    return t;
}

/* Adds transfers until C are in the multi or all N have started. */
static void crun_fill(struct crun *r) {
    while (r->in_multi < r->o.concurrency && r->started < r->o.requests) {
        struct transfer *t = r->free_list;
        if (t) {
            r->free_list = t->next_free;
        } else {
            t = transfer_new(r);
        }
        t->len = 0;
        t->streamed = 0;
        CURLMcode mc = curl_multi_add_handle(r->multi, t->easy);
        if (mc != CURLM_OK) {
            fprintf(stderr, "curl_multi_add_handle: %s\n", curl_multi_strerror(mc));
            exit(1);
        }
        r->started++;
        r->in_multi++;
    }
}

/* Takes every finished transfer out of the multi, counts it, and refills. */
static void crun_collect(struct crun *r) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(r->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL *e = msg->easy_handle;
        CURLcode res = msg->data.result;
        struct transfer *t = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&t);
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (res == CURLE_OK && status == 200) {
            r->ok++;
            r->bytes += r->o.stream ? t->streamed : t->len;
        } else {
            r->failed++;
            crun_error(r, "%s status %ld", curl_easy_strerror(res), status);
        }
        free(t->buf); /* the body is handed over and dropped, as tern's response is */
        t->buf = NULL;
        t->cap = 0;
        curl_multi_remove_handle(r->multi, e);
        r->in_multi--;
        r->done++;
        t->next_free = r->free_list;
        r->free_list = t;
    }
    crun_fill(r);
}

static void crun_cleanup(struct crun *r) {
    while (r->free_list) {
        struct transfer *t = r->free_list;
        r->free_list = t->next_free;
        curl_easy_cleanup(t->easy);
        free(t);
    }
    curl_multi_cleanup(r->multi);
    curl_global_cleanup();
}

static void crun_init(struct crun *r, int argc, char **argv) {
    memset(r, 0, sizeof *r);
    bench_parse(argc, argv, &r->o);
    if (r->o.version) {
        printf("%s\n", curl_version());
        exit(0);
    }
}

#endif
