/* response: what a tern_response reports, checked against the local nginx and a small
 * raw HTTP/1.1 server in this process.
 *
 * Status, HTTP version, headers by index and by name (case-insensitive, repeated
 * values in order), the body of /bytes/1m byte for byte (against the file nginx
 * serves), gzip decoding, POST bodies, effective URL and redirect count after
 * /redirect/3, the redirect limits, remote address, timings (non-zero and ordered on
 * a new connection, zero set-up phases on a reused one), URL credentials sent but
 * never shown, tern_code_name for every code, and tern_version.
 *
 * Needs TERN_TEST_HTTP, TERN_TEST_HTTPS, TERN_TEST_CA and TERN_TESTENV_DIR.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tern.h"

#define TEST_NAME "response"
#include "check.h"

/* Compares a (pointer, length) with a C string. */
#define CHECK_BYTES(ptr, len, str)                                                     \
    do {                                                                               \
        checks++;                                                                      \
        const char *want_ = (str);                                                     \
        if ((ptr) == NULL || (len) != strlen(want_) || memcmp((ptr), want_, (len)) != 0) { \
            failures++;                                                                \
            fprintf(stderr, "%s:%d: %s is \"%.*s\", want \"%s\"\n", __FILE__, __LINE__, #ptr, \
                    (ptr) ? (int)(len) : 6, (ptr) ? (const char *)(ptr) : "(NULL)", want_); \
        }                                                                              \
    } while (0)

#define CHECK_STR(got, want)                                                           \
    do {                                                                               \
        checks++;                                                                      \
        const char *got_ = (got), *want_ = (want);                                     \
        if (got_ == NULL || strcmp(got_, want_) != 0) {                                \
            failures++;                                                                \
            fprintf(stderr, "%s:%d: %s is \"%s\", want \"%s\"\n", __FILE__, __LINE__, #got, \
                    got_ ? got_ : "(NULL)", want_);                                    \
        }                                                                              \
    } while (0)

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s == NULL) abort();
    snprintf(s, n, "%s%s", a, b);
    return s;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL) abort();
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    fclose(f);
    *len = n;
    return buf;
}

static tern_runtime *rt;
static tern_session *session;
static const char *http, *https;

/* Performs a request (consumed); the response is never NULL. Notes an error code on
 * stderr (some checks expect one). */
static tern_response *perform(const tern_session *s, tern_request *req) {
    tern_response *resp = NULL;
    tern_error *err = NULL;
    tern_code c = tern_session_perform(s, req, &resp, &err);
    if (c != TERN_CODE_OK) {
        fprintf(stderr, "response: perform refused: %s: %s\n", tern_code_name(c),
                tern_error_message(err));
        exit(1);
    }
    if (tern_response_code(resp) != TERN_CODE_OK) {
        fprintf(stderr, "response: note: %s: %s: %s\n", tern_response_effective_url(resp),
                tern_code_name(tern_response_code(resp)), tern_response_message(resp));
    }
    return resp;
}

static tern_request *request(const char *method, const char *url) {
    tern_request *req = NULL;
    tern_error *err = NULL;
    if (tern_request_new(method, url, &req, &err) != TERN_CODE_OK) {
        fprintf(stderr, "response: request %s: %s\n", url, tern_error_message(err));
        exit(1);
    }
    return req;
}

static tern_response *get(const char *base, const char *path) {
    char *url = join(base, path);
    tern_response *r = perform(session, request("GET", url));
    free(url);
    return r;
}

/* header_get(name, nth) as a C string in a static buffer, or NULL when not found. */
static const char *header(const tern_response *r, const char *name, size_t nth) {
    static char buf[256];
    const uint8_t *v = NULL;
    size_t len = 0;
    if (tern_response_header_get(r, name, nth, &v, &len, NULL) != TERN_CODE_OK) return NULL;
    snprintf(buf, sizeof buf, "%.*s", (int)len, (const char *)v);
    return buf;
}

/* ------------------------------------------------------- a raw HTTP server --- */

/* Answers each connection's first request with a fixed response chosen by path,
 * then closes it. Runs until the listening socket is shut down. */
static int raw_fd = -1;
static char raw_base[64];
static pthread_t raw_thread;

static const char RESP_DUP[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Length: 2\r\n"
    "X-Dup: one\r\n"
    "Set-Cookie: a=1\r\n"
    "x-dup: two\r\n"
    "Set-Cookie: b=2\r\n"
    "X-DUP: three\r\n"
    "Connection: close\r\n"
    "\r\n"
    "ok";

static const char RESP_ORDER[] =
    "HTTP/1.1 201 Created\r\n"
    "Zeta: 1\r\n"
    "Alpha: 2\r\n"
    "Mid-Name: 3\r\n"
    "Content-Length: 0\r\n"
    "Connection: close\r\n"
    "\r\n";

static void *raw_serve(void *arg) {
    (void)arg;
    for (;;) {
        int c = accept(raw_fd, NULL, NULL);
        if (c < 0) break; /* shut down */
        char req[4096];
        size_t n = 0;
        while (n < sizeof req - 1) {
            ssize_t k = read(c, req + n, sizeof req - 1 - n);
            if (k <= 0) break;
            n += (size_t)k;
            req[n] = '\0';
            if (strstr(req, "\r\n\r\n") != NULL) break;
        }
        req[n] = '\0';
        const char *resp = strstr(req, " /dup ") ? RESP_DUP : RESP_ORDER;
        size_t len = strlen(resp), off = 0;
        while (off < len) {
            ssize_t k = write(c, resp + off, len - off);
            if (k <= 0) break;
            off += (size_t)k;
        }
        close(c);
    }
    return NULL;
}

static void raw_start(void) {
    raw_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (raw_fd < 0 || bind(raw_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(raw_fd, 16) != 0 || getsockname(raw_fd, (struct sockaddr *)&a, &len) != 0 ||
        pthread_create(&raw_thread, NULL, raw_serve, NULL) != 0) {
        perror("response: raw server");
        exit(1);
    }
    snprintf(raw_base, sizeof raw_base, "http://127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
}

static void raw_stop(void) {
    shutdown(raw_fd, SHUT_RDWR);
    pthread_join(raw_thread, NULL);
    close(raw_fd);
}

/* -------------------------------------------------------------------- tests --- */

static void test_hello_http1(void) {
    tern_response *r = get(http, "/hello");
    CHECK(tern_response_code(r) == TERN_CODE_OK);
    CHECK_STR(tern_response_message(r), "");
    CHECK(tern_response_status(r) == 200);
    CHECK(tern_response_version(r) == 11);
    const uint8_t *body = NULL;
    size_t len = 0;
    CHECK(tern_response_body(r, &body, &len) == TERN_CODE_OK);
    CHECK_BYTES(body, len, "Hello, world!");
    CHECK(body != NULL && body[len] == '\0'); /* one NUL after the body */
    char *url = join(http, "/hello");
    CHECK_STR(tern_response_effective_url(r), url);
    free(url);
    CHECK(tern_response_redirect_count(r) == 0);
    CHECK_STR(tern_response_remote_addr(r), http + strlen("http://")); /* 127.0.0.1:port */

    /* Headers by index: lower-case names, and content-length among them. */
    size_t n = tern_response_header_count(r);
    CHECK(n >= 4); /* server, date, content-type, content-length at least */
    bool saw_length = false;
    for (size_t i = 0; i < n; i++) {
        const char *name = NULL;
        const uint8_t *value = NULL;
        size_t name_len = 0, value_len = 0;
        CHECK(tern_response_header_at(r, i, &name, &name_len, &value, &value_len) == TERN_CODE_OK);
        CHECK(name != NULL && name_len > 0 && value != NULL);
        for (size_t k = 0; name != NULL && k < name_len; k++) {
            CHECK(!isupper((unsigned char)name[k]) && name[k] != ':');
        }
        if (name_len == 14 && memcmp(name, "content-length", 14) == 0) {
            CHECK_BYTES(value, value_len, "13");
            saw_length = true;
        }
    }
    CHECK(saw_length);

    /* Headers by name: case-insensitive, the same bytes whatever the case. */
    const uint8_t *v1 = NULL, *v2 = NULL;
    size_t l1 = 0, l2 = 0;
    CHECK(tern_response_header_get(r, "content-length", 0, &v1, &l1, NULL) == TERN_CODE_OK);
    CHECK(tern_response_header_get(r, "CONTENT-Length", 0, &v2, &l2, NULL) == TERN_CODE_OK);
    CHECK(v1 != NULL && v1 == v2 && l1 == l2);
    CHECK_BYTES(v1, l1, "13");
    CHECK(tern_response_header_get(r, "Content-Length", 1, &v1, &l1, NULL) == TERN_CODE_NOT_FOUND);
    CHECK_STR(header(r, "Content-Type", 0), "text/plain");
    CHECK_STR(header(r, "SERVER", 0), "nginx");
    CHECK(header(r, "date", 0) != NULL);

    /* Timings of a new plain connection: no TLS, ordered, total covers everything. */
    uint64_t dns = tern_response_timing_us(r, TERN_TIMING_DNS);
    uint64_t conn = tern_response_timing_us(r, TERN_TIMING_CONNECT);
    uint64_t tls = tern_response_timing_us(r, TERN_TIMING_TLS);
    uint64_t ttfb = tern_response_timing_us(r, TERN_TIMING_TTFB);
    uint64_t total = tern_response_timing_us(r, TERN_TIMING_TOTAL);
    CHECK(conn > 0);
    CHECK(tls == 0);
    CHECK(ttfb > 0 && ttfb >= dns + conn);
    CHECK(total >= ttfb);
    tern_response_free(r);

    /* The next request reuses the idle connection: no set-up phases. */
    r = get(http, "/hello");
    CHECK(tern_response_code(r) == TERN_CODE_OK && tern_response_status(r) == 200);
    CHECK(tern_response_timing_us(r, TERN_TIMING_DNS) == 0);
    CHECK(tern_response_timing_us(r, TERN_TIMING_CONNECT) == 0);
    CHECK(tern_response_timing_us(r, TERN_TIMING_TLS) == 0);
    CHECK(tern_response_timing_us(r, TERN_TIMING_TTFB) > 0);
    CHECK(tern_response_timing_us(r, TERN_TIMING_TOTAL) >= tern_response_timing_us(r, TERN_TIMING_TTFB));
    tern_response_free(r);
}

static void test_hello_https_h2(void) {
    tern_response *r = get(https, "/hello");
    CHECK(tern_response_code(r) == TERN_CODE_OK);
    CHECK_STR(tern_response_message(r), "");
    CHECK(tern_response_status(r) == 200);
    CHECK(tern_response_version(r) == 20);
    const uint8_t *body = NULL;
    size_t len = 0;
    CHECK(tern_response_body(r, &body, &len) == TERN_CODE_OK);
    CHECK_BYTES(body, len, "Hello, world!");
    char *url = join(https, "/hello");
    CHECK_STR(tern_response_effective_url(r), url);
    free(url);
    /* https://localhost:PORT is served on 127.0.0.1:PORT. */
    const char *remote = tern_response_remote_addr(r);
    const char *port = strrchr(https, ':');
    CHECK(remote != NULL && strncmp(remote, "127.0.0.1", 9) == 0 && port != NULL &&
          strcmp(remote + 9, port) == 0);
    CHECK_STR(header(r, "content-length", 0), "13");

    /* A new TLS connection to a name: every phase took time, in order. */
    uint64_t dns = tern_response_timing_us(r, TERN_TIMING_DNS);
    uint64_t conn = tern_response_timing_us(r, TERN_TIMING_CONNECT);
    uint64_t tls = tern_response_timing_us(r, TERN_TIMING_TLS);
    uint64_t ttfb = tern_response_timing_us(r, TERN_TIMING_TTFB);
    uint64_t total = tern_response_timing_us(r, TERN_TIMING_TOTAL);
    CHECK(dns > 0);
    CHECK(conn > 0);
    CHECK(tls > 0);
    CHECK(ttfb >= dns + conn + tls);
    CHECK(total >= ttfb);
    if (!(ttfb >= dns + conn + tls)) {
        fprintf(stderr, "    dns %llu, connect %llu, tls %llu, ttfb %llu, total %llu\n",
                (unsigned long long)dns, (unsigned long long)conn, (unsigned long long)tls,
                (unsigned long long)ttfb, (unsigned long long)total);
    }
    tern_response_free(r);

    /* HTTP/2: the second request shares the connection. */
    r = get(https, "/status/404");
    CHECK(tern_response_code(r) == TERN_CODE_OK && tern_response_version(r) == 20);
    CHECK(tern_response_status(r) == 404);
    CHECK(tern_response_timing_us(r, TERN_TIMING_TLS) == 0);
    tern_response_free(r);
}

static void test_bytes_1m(void) {
    char *path = join(need_env("TERN_TESTENV_DIR"), "/www/bytes/1m");
    size_t want_len = 0;
    char *want = read_file(path, &want_len);
    free(path);
    CHECK(want_len == 1048576);

    const char *bases[] = {http, https};
    for (size_t i = 0; i < 2; i++) {
        tern_response *r = get(bases[i], "/bytes/1m");
        CHECK(tern_response_code(r) == TERN_CODE_OK && tern_response_status(r) == 200);
        const uint8_t *body = NULL;
        size_t len = 0;
        CHECK(tern_response_body(r, &body, &len) == TERN_CODE_OK);
        CHECK(len == 1048576);
        CHECK(body != NULL && len == want_len && memcmp(body, want, len) == 0);
        CHECK(body != NULL && body[len] == '\0');
        CHECK_STR(header(r, "content-length", 0), "1048576");
        CHECK_STR(header(r, "content-type", 0), "application/octet-stream");
        tern_response_free(r);
    }
    free(want);
}

static void test_redirects(void) {
    tern_response *r = get(http, "/redirect/3");
    CHECK(tern_response_code(r) == TERN_CODE_OK);
    CHECK(tern_response_status(r) == 200);
    CHECK(tern_response_redirect_count(r) == 3);
    char *url = join(http, "/hello");
    CHECK_STR(tern_response_effective_url(r), url);
    free(url);
    const uint8_t *body = NULL;
    size_t len = 0;
    CHECK(tern_response_body(r, &body, &len) == TERN_CODE_OK);
    CHECK_BYTES(body, len, "Hello, world!");
    tern_response_free(r);

    /* Over TLS as well. */
    r = get(https, "/redirect/3");
    CHECK(tern_response_code(r) == TERN_CODE_OK && tern_response_status(r) == 200);
    CHECK(tern_response_redirect_count(r) == 3);
    url = join(https, "/hello");
    CHECK_STR(tern_response_effective_url(r), url);
    free(url);
    tern_response_free(r);

    /* Not followed: the 302 itself. */
    url = join(http, "/redirect/3");
    tern_request *req = request("GET", url);
    CHECK(tern_request_set_redirects(req, 0, 10, NULL) == TERN_CODE_OK);
    r = perform(session, req);
    CHECK(tern_response_code(r) == TERN_CODE_OK);
    CHECK(tern_response_status(r) == 302);
    CHECK(tern_response_redirect_count(r) == 0);
    CHECK_STR(tern_response_effective_url(r), url);
    CHECK_STR(header(r, "location", 0), "/redirect/2");
    tern_response_free(r);

    /* A limit of 2 for 3 redirects. */
    req = request("GET", url);
    CHECK(tern_request_set_redirects(req, 1, 2, NULL) == TERN_CODE_OK);
    r = perform(session, req);
    CHECK(tern_response_code(r) == TERN_CODE_TOO_MANY_REDIRECTS);
    CHECK(tern_response_message(r) != NULL && tern_response_message(r)[0] != '\0');
    tern_response_free(r);
    free(url);
}

static void test_statuses_and_bodies(void) {
    static const unsigned statuses[] = {200, 201, 400, 401, 403, 404, 429, 500, 502, 503};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        char path[32], want[32];
        snprintf(path, sizeof path, "/status/%u", statuses[i]);
        snprintf(want, sizeof want, "status %u", statuses[i]);
        tern_response *r = get(http, path);
        CHECK(tern_response_code(r) == TERN_CODE_OK); /* a 404 or 500 is not an error */
        CHECK(tern_response_status(r) == statuses[i]);
        CHECK_STR(tern_response_message(r), "");
        const uint8_t *body = NULL;
        size_t len = 0;
        CHECK(tern_response_body(r, &body, &len) == TERN_CODE_OK);
        CHECK_BYTES(body, len, want);
        tern_response_free(r);
    }

    /* 204: an empty body is a valid pointer to a NUL, length 0. */
    tern_response *r = get(http, "/status/204");
    CHECK(tern_response_status(r) == 204);
    const uint8_t *body = NULL;
    size_t len = 99;
    CHECK(tern_response_body(r, &body, &len) == TERN_CODE_OK);
    CHECK(body != NULL && len == 0 && body[0] == '\0');
    tern_response_free(r);

    /* POST with a body, echoed back. */
    char *url = join(http, "/echo");
    tern_request *req = request("POST", url);
    static const char sent[] = "hello tern\0with a NUL";
    CHECK(tern_request_set_body(req, (const uint8_t *)sent, sizeof sent - 1, NULL) == TERN_CODE_OK);
    r = perform(session, req);
    CHECK(tern_response_status(r) == 200);
    CHECK(tern_response_body(r, &body, &len) == TERN_CODE_OK);
    CHECK(len == strlen("method=POST\n") + sizeof sent - 1);
    CHECK(body != NULL && len >= 12 && memcmp(body, "method=POST\n", 12) == 0 &&
          memcmp(body + 12, sent, sizeof sent - 1) == 0);
    tern_response_free(r);
    free(url);

    /* Request headers arrive; the default user agent is tern/<version>. */
    url = join(http, "/headers");
    req = request("GET", url);
    CHECK(tern_request_set_header(req, "X-Test", "value 1", NULL) == TERN_CODE_OK);
    r = perform(session, req);
    CHECK(tern_response_body(r, &body, &len) == TERN_CODE_OK);
    char ua[64];
    snprintf(ua, sizeof ua, "user-agent=tern/%s\n", tern_version());
    CHECK(body != NULL && strstr((const char *)body, "x-test=value 1\n") != NULL);
    CHECK(body != NULL && strstr((const char *)body, ua) != NULL);
    CHECK(body != NULL && strstr((const char *)body, "method=GET\n") != NULL);
    tern_response_free(r);
    free(url);
}

static void test_gzip(void) {
    char *path = join(need_env("TERN_TESTENV_DIR"), "/www/gzip/text");
    size_t want_len = 0;
    char *want = read_file(path, &want_len);
    free(path);

    /* Decoded by default: the plain text, without content-encoding. */
    tern_response *r = get(http, "/gzip/text");
    const uint8_t *body = NULL;
    size_t len = 0;
    CHECK(tern_response_status(r) == 200);
    CHECK(tern_response_body(r, &body, &len) == TERN_CODE_OK);
    CHECK(len == want_len && body != NULL && memcmp(body, want, len) == 0);
    CHECK(header(r, "content-encoding", 0) == NULL);
    CHECK(header(r, "content-length", 0) == NULL);
    CHECK_STR(header(r, "vary", 0), "Accept-Encoding");
    tern_response_free(r);

    /* Not decoded when the session says so: the gzip bytes and their header. */
    tern_session_options *o = NULL;
    tern_session *raw = NULL;
    CHECK(tern_session_options_new(&o, NULL) == TERN_CODE_OK);
    CHECK(tern_session_options_set_decompress(o, 0, NULL) == TERN_CODE_OK);
    CHECK(tern_session_new(rt, o, &raw, NULL) == TERN_CODE_OK);
    tern_session_options_free(o);
    char *url = join(http, "/gzip/text");
    tern_request *req = request("GET", url);
    CHECK(tern_request_set_header(req, "accept-encoding", "gzip", NULL) == TERN_CODE_OK);
    r = perform(raw, req);
    CHECK(tern_response_status(r) == 200);
    CHECK(tern_response_body(r, &body, &len) == TERN_CODE_OK);
    CHECK(len > 2 && len < want_len && body[0] == 0x1f && body[1] == 0x8b);
    CHECK_STR(header(r, "content-encoding", 0), "gzip");
    tern_response_free(r);
    tern_session_free(raw);
    free(url);
    free(want);
}

static void test_repeated_headers(void) {
    raw_start();
    char *url = join(raw_base, "/dup");
    tern_response *r = perform(session, request("GET", url));
    CHECK(tern_response_code(r) == TERN_CODE_OK && tern_response_status(r) == 200);
    CHECK_STR(tern_response_remote_addr(r), raw_base + strlen("http://"));

    /* By name: every value, in the order received, whatever the case asked. */
    CHECK_STR(header(r, "x-dup", 0), "one");
    CHECK_STR(header(r, "X-DUP", 1), "two");
    CHECK_STR(header(r, "X-Dup", 2), "three");
    CHECK(header(r, "x-dup", 3) == NULL);
    CHECK_STR(header(r, "set-cookie", 0), "a=1");
    CHECK_STR(header(r, "Set-Cookie", 1), "b=2");
    CHECK(header(r, "set-cookie", 2) == NULL);

    /* By index: each value counted once, names lower-cased, repeated ones in order. */
    CHECK(tern_response_header_count(r) == 7);
    const char *dup[3] = {"one", "two", "three"};
    size_t seen_dup = 0;
    for (size_t i = 0; i < tern_response_header_count(r); i++) {
        const char *name = NULL;
        const uint8_t *value = NULL;
        size_t nl = 0, vl = 0;
        CHECK(tern_response_header_at(r, i, &name, &nl, &value, &vl) == TERN_CODE_OK);
        if (name != NULL && nl == 5 && memcmp(name, "x-dup", 5) == 0 && seen_dup < 3) {
            CHECK_BYTES(value, vl, dup[seen_dup]);
            seen_dup++;
        }
    }
    CHECK(seen_dup == 3);

    /* By index, as documented: grouped by name, names in order of first appearance,
     * the values of one name in the order received. */
    static const char *const received[] = {"content-length", "x-dup", "x-dup", "x-dup",
                                           "set-cookie", "set-cookie", "connection"};
    bool in_order = tern_response_header_count(r) == 7;
    for (size_t i = 0; in_order && i < 7; i++) {
        const char *name = NULL;
        size_t nl = 0;
        in_order = tern_response_header_at(r, i, &name, &nl, NULL, NULL) == TERN_CODE_OK &&
                   nl == strlen(received[i]) && memcmp(name, received[i], nl) == 0;
    }
    CHECK(in_order);
    tern_response_free(r);
    free(url);

    /* Distinct names come by index in the order received. */
    url = join(raw_base, "/order");
    r = perform(session, request("GET", url));
    CHECK(tern_response_status(r) == 201);
    static const char *const order[] = {"zeta", "alpha", "mid-name", "content-length", "connection"};
    CHECK(tern_response_header_count(r) == 5);
    for (size_t i = 0; i < 5 && i < tern_response_header_count(r); i++) {
        const char *name = NULL;
        size_t nl = 0;
        CHECK(tern_response_header_at(r, i, &name, &nl, NULL, NULL) == TERN_CODE_OK);
        CHECK_BYTES(name, nl, order[i]);
    }
    tern_response_free(r);
    free(url);
    raw_stop();
}

/* URL user info: sent as Basic authorization, never shown in an effective URL or a
 * message. */
static void test_secrets(void) {
    const char *host = http + strlen("http://");
    char url[256];
    snprintf(url, sizeof url, "http://user:s3cret@%s/headers", host);
    tern_response *r = perform(session, request("GET", url));
    CHECK(tern_response_status(r) == 200);
    const uint8_t *body = NULL;
    size_t len = 0;
    CHECK(tern_response_body(r, &body, &len) == TERN_CODE_OK);
    CHECK(body != NULL && strstr((const char *)body, "authorization=Basic dXNlcjpzM2NyZXQ=\n") != NULL);
    const char *eff = tern_response_effective_url(r);
    CHECK(eff != NULL && strstr(eff, "s3cret") == NULL && strstr(eff, "/headers") != NULL);
    tern_response_free(r);

    snprintf(url, sizeof url, "http://user:s3cret@%s/redirect/1", host);
    r = perform(session, request("GET", url));
    CHECK(tern_response_status(r) == 200 && tern_response_redirect_count(r) == 1);
    eff = tern_response_effective_url(r);
    CHECK(eff != NULL && strstr(eff, "s3cret") == NULL && strstr(eff, "/hello") != NULL);
    tern_response_free(r);

    r = perform(session, request("GET", "http://user:s3cret@127.0.0.1:1/"));
    CHECK(tern_response_code(r) == TERN_CODE_CONNECTION_REFUSED);
    const char *msg = tern_response_message(r);
    eff = tern_response_effective_url(r);
    CHECK(msg != NULL && msg[0] != '\0' && strstr(msg, "s3cret") == NULL);
    CHECK(eff != NULL && strstr(eff, "s3cret") == NULL);
    tern_response_free(r);
}

#define CODE(name) {TERN_CODE_##name, #name}
static const struct {
    tern_code code;
    const char *name;
} codes[] = {
    CODE(OK), CODE(NULL_ARGUMENT), CODE(INVALID_ARGUMENT), CODE(INVALID_URL),
    CODE(UNSUPPORTED_SCHEME), CODE(INVALID_HEADER), CODE(INVALID_METHOD), CODE(INVALID_STATE),
    CODE(WOULD_DEADLOCK), CODE(FORKED), CODE(NOT_FOUND), CODE(UNSUPPORTED), CODE(INVALID_FILE), CODE(WOULD_BLOCK),
    CODE(DNS), CODE(DNS_NOT_FOUND), CODE(CONNECT), CODE(CONNECTION_REFUSED),
    CODE(CONNECTION_RESET), CODE(TLS), CODE(TLS_VERIFY), CODE(PROXY), CODE(PROXY_CONNECT),
    CODE(PROXY_AUTH), CODE(TIMEOUT_CONNECT), CODE(TIMEOUT_READ), CODE(TIMEOUT_TOTAL),
    CODE(TIMEOUT_HEARTBEAT), CODE(TIMEOUT_CLOSE), CODE(PROTOCOL), CODE(INCOMPLETE_BODY),
    CODE(HEADERS_TOO_LARGE), CODE(TOO_MANY_REDIRECTS),
    CODE(BODY_TOO_LARGE), CODE(REDIRECT_BODY_NOT_REPLAYABLE), CODE(INSECURE_REDIRECT),
    CODE(DECODING), CODE(CANCELED), CODE(SHUTDOWN), CODE(WS_HANDSHAKE), CODE(WS_PROTOCOL),
    CODE(WS_INVALID_UTF8), CODE(WS_MESSAGE_TOO_LARGE), CODE(WS_CLOSED_ABNORMALLY), CODE(INTERNAL),
};

static void test_code_names_and_version(void) {
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) CHECK_STR(tern_code_name(codes[i].code), codes[i].name);

    /* Every number below 1000 that has a name is in the table above, and every name
     * is upper-case and unique. */
    size_t named = 0;
    for (uint32_t c = 0; c < 1000; c++) {
        const char *name = tern_code_name(c);
        CHECK(name != NULL);
        if (name == NULL || strcmp(name, "UNKNOWN") == 0) continue;
        named++;
        bool known = false;
        for (size_t i = 0; i < n; i++) known = known || codes[i].code == c;
        if (!known) fprintf(stderr, "response: code %u (%s) is not in the table\n", c, name);
        CHECK(known);
        for (const char *p = name; *p; p++) CHECK(isupper((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_');
    }
    CHECK(named == n);
    CHECK_STR(tern_code_name(1000), "UNKNOWN");
    CHECK_STR(tern_code_name(UINT32_MAX), "UNKNOWN");

    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", TERN_VERSION_MAJOR, TERN_VERSION_MINOR, TERN_VERSION_PATCH);
    CHECK_STR(tern_version(), want);
    CHECK(tern_version() == tern_version()); /* static */
    CHECK(tern_version_check(TERN_VERSION_MAJOR, TERN_VERSION_MINOR) == TERN_CODE_OK);
}

int main(void) {
    http = need_env("TERN_TEST_HTTP");
    https = need_env("TERN_TEST_HTTPS");
    const char *ca = need_env("TERN_TEST_CA");

    tern_error *err = NULL;
    tern_session_options *o = NULL;
    if (tern_runtime_new(NULL, &rt, &err) != TERN_CODE_OK ||
        tern_session_options_new(&o, &err) != TERN_CODE_OK ||
        tern_session_options_add_ca_file(o, ca, &err) != TERN_CODE_OK ||
        tern_session_new(rt, o, &session, &err) != TERN_CODE_OK) {
        fprintf(stderr, "response: setup: %s\n", tern_error_message(err));
        return 1;
    }
    tern_session_options_free(o);

    test_hello_http1();
    test_hello_https_h2();
    test_bytes_1m();
    test_redirects();
    test_statuses_and_bodies();
    test_gzip();
    test_repeated_headers();
    test_secrets();
    test_code_names_and_version();

    tern_session_free(session);
    tern_runtime_free(rt);
    printf("response: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
