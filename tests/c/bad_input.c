/* bad_input: every exported function of tern.h given bad input.
 *
 * NULL pointers, invalid UTF-8, empty strings, bad URLs and methods, header names and
 * values with CR/LF, out-of-range enums and flags, and handles used after their
 * ownership passed to tern. Each call must return the code its header documentation
 * names, with an error object whose code matches and whose message is not empty,
 * leave its out-parameters untouched, and never crash (valgrind watches for invalid
 * reads and leaks). Calls that consume nothing are made twice: with an error
 * out-parameter and with NULL there.
 *
 * Needs TERN_TEST_HTTP (a request or two is really sent) and TERN_TEST_CA.
 * tests/c/run.sh checks that every function declared in tern.h appears in this file.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tern.h"

#define TEST_NAME "bad_input"
#include "check.h"

static struct hold hold;

/* Out-parameters must stay untouched on failure: they start as this. */
#define UNTOUCHED ((void *)(uintptr_t)0x5a5a5a5a)

/* A borrowed body's release, and a request's callbacks, count their calls. */
static atomic_int body_released;
static void body_release(void *user_data) {
    (void)user_data;
    atomic_fetch_add(&body_released, 1);
}

static atomic_int completed, released;
static _Atomic tern_code last_code;
static void on_complete(void *user_data, tern_response *resp) {
    (void)user_data;
    atomic_store(&last_code, tern_response_code(resp));
    tern_response_free(resp);
    atomic_fetch_add(&completed, 1);
}
static void on_release(void *user_data) {
    (void)user_data;
    atomic_fetch_add(&released, 1);
}
static uint32_t on_headers_cb(void *u, const tern_response *h) {
    (void)u, (void)h;
    return 0;
}

static const char *url_hello;
static char *url_join(const char *base, const char *path) {
    size_t n = strlen(base) + strlen(path) + 1;
    char *s = malloc(n);
    if (s == NULL) abort();
    snprintf(s, n, "%s%s", base, path);
    return s;
}

/* A request to /hello, or abort: the tests below need one. */
static tern_request *new_request(void) {
    tern_request *req = NULL;
    if (tern_request_new("GET", url_hello, &req, NULL) != TERN_CODE_OK) {
        fprintf(stderr, "bad_input: cannot make a request for %s\n", url_hello);
        exit(1);
    }
    return req;
}

/* A request with a borrowed body, so that consumption can be observed. */
static tern_request *new_request_with_borrowed_body(void) {
    static const uint8_t body[] = "borrowed";
    tern_request *req = new_request();
    if (tern_request_set_body_borrowed(req, body, sizeof body - 1, body_release, NULL, NULL) !=
        TERN_CODE_OK) {
        fprintf(stderr, "bad_input: set_body_borrowed failed\n");
        exit(1);
    }
    return req;
}

/* ------------------------------------------------------------------- errors --- */

static void log_ignore(void *user_data, tern_log_level level, const char *target,
                       const char *message) {
    (void)user_data;
    (void)level;
    (void)target;
    (void)message;
}

static void test_error_and_version(void) {
    /* tern_error_*: NULL is documented for each. */
    EXPECT_CODE(TERN_CODE_NULL_ARGUMENT, tern_error_code(NULL));
    CHECK(tern_error_message(NULL) == NULL);
    tern_error_free(NULL);

    /* A real error object: code, message, free. */
    tern_error *err = NULL;
    tern_request *req = (tern_request *)UNTOUCHED;
    CHECK(tern_request_new("GET", "ftp://example.org/", &req, &err) ==
          TERN_CODE_UNSUPPORTED_SCHEME);
    CHECK(req == (tern_request *)UNTOUCHED);
    CHECK(err != NULL);
    CHECK(tern_error_code(err) == TERN_CODE_UNSUPPORTED_SCHEME);
    CHECK(tern_error_message(err) != NULL && strstr(tern_error_message(err), "ftp") != NULL);
    tern_error_free(err);

    /* tern_version, tern_version_check, tern_code_name. */
    const char *v = tern_version();
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", TERN_VERSION_MAJOR, TERN_VERSION_MINOR,
             TERN_VERSION_PATCH);
    CHECK(v != NULL && strcmp(v, want) == 0);
    EXPECT_CODE(TERN_CODE_OK, tern_version_check(TERN_VERSION_MAJOR, TERN_VERSION_MINOR));
    EXPECT_CODE(TERN_CODE_UNSUPPORTED, tern_version_check(TERN_VERSION_MAJOR + 1, 0));
    EXPECT_CODE(TERN_CODE_UNSUPPORTED, tern_version_check(TERN_VERSION_MAJOR, TERN_VERSION_MINOR + 1));
    EXPECT_CODE(TERN_CODE_UNSUPPORTED, tern_version_check(UINT32_MAX, UINT32_MAX));
    if (TERN_VERSION_MAJOR == 0 && TERN_VERSION_MINOR > 0) {
        /* 0.x: the minor versions must be equal, an older header is refused too. */
        EXPECT_CODE(TERN_CODE_UNSUPPORTED, tern_version_check(0, TERN_VERSION_MINOR - 1));
    }
    CHECK(strcmp(tern_code_name(12345), "UNKNOWN") == 0);
    CHECK(strcmp(tern_code_name(UINT32_MAX), "UNKNOWN") == 0);
    CHECK(strcmp(tern_code_name(99), "UNKNOWN") == 0);
    CHECK(strcmp(tern_code_name(TERN_CODE_INVALID_HEADER), "INVALID_HEADER") == 0);

    /* tern_set_log_callback: a level that is no tern_log_level is refused; a NULL
     * callback or TERN_LOG_LEVEL_OFF turns logging off. */
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_set_log_callback(6, log_ignore, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_set_log_callback(UINT32_MAX, NULL, NULL, E));
    EXPECT(TERN_CODE_OK, tern_set_log_callback(TERN_LOG_LEVEL_DEBUG, NULL, NULL, E));
    EXPECT(TERN_CODE_OK, tern_set_log_callback(TERN_LOG_LEVEL_OFF, log_ignore, NULL, E));
}

/* ----------------------------------------------------------------- options --- */

static void test_options(void) {
    tern_session_options *o = (tern_session_options *)UNTOUCHED;
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_new(NULL, E));
    EXPECT1(TERN_CODE_OK, tern_session_options_new(&o, E));
    CHECK(o != (tern_session_options *)UNTOUCHED && o != NULL);
    tern_session_options_free(NULL);

    const char *bad_utf8 = "\xff\xfe\xc3\x28";
    const char *ca = need_env("TERN_TEST_CA");

    /* Headers: NULL, bad UTF-8 name, bad names and values. */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_header(NULL, "x-a", "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_header(o, NULL, "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_header(o, "x-a", NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_add_header(o, bad_utf8, "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_session_options_add_header(o, "", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_session_options_add_header(o, "x a", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_session_options_add_header(o, "x-a:", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_session_options_add_header(o, "x-a\r\nx-b", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_session_options_add_header(o, "x-a", "1\r\nx-b: 2", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_session_options_add_header(o, "x-a", "1\n", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_session_options_add_header(o, "x-a", "\r", E));
    EXPECT(TERN_CODE_OK, tern_session_options_add_header(o, "x-a", "", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_header(NULL, "x-a", "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_header(o, NULL, "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_header(o, "x-a", NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_header(o, bad_utf8, "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_session_options_set_header(o, "", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_session_options_set_header(o, "user agent", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_session_options_set_header(o, "user-agent", "a\r\nb", E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_header(o, "User-Agent", "bad-input-test", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_proxy_header(NULL, "x-p", "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_proxy_header(o, NULL, "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_proxy_header(o, "x-p", NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_add_proxy_header(o, bad_utf8, "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_session_options_add_proxy_header(o, "", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_session_options_add_proxy_header(o, "x-p", "1\r\n", E));
    EXPECT(TERN_CODE_OK, tern_session_options_add_proxy_header(o, "x-p", "1", E));

    /* Enums and flags: every out-of-range value is INVALID_ARGUMENT. */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_timeout_ms(NULL, TERN_TIMEOUT_TOTAL, 1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_timeout_ms(o, 3, 1000, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_timeout_ms(o, UINT32_MAX, 1000, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_timeout_ms(o, TERN_TIMEOUT_READ, 0, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_timeout_ms(o, TERN_TIMEOUT_TOTAL, UINT64_MAX, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_timeout_ms(o, TERN_TIMEOUT_TOTAL, 60000, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_pool(NULL, 1000, 4, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_pool(o, UINT64_MAX, UINT32_MAX, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_pool(o, 30000, 32, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_redirects(NULL, 1, 10, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_redirects(o, 2, 10, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_redirects(o, UINT32_MAX, 10, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_redirects(o, 1, 10, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_danger_allow_https_downgrade(NULL, 0, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_danger_allow_https_downgrade(o, 2, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_danger_allow_https_downgrade(o, 0, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_max_body_size(NULL, 1, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_max_body_size(o, 0, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_max_header_size(NULL, 8192, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_max_header_size(o, 0, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_max_header_size(o, 8191, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_max_header_size(o, 8192, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_max_header_size(o, 102400, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_http_version(NULL, TERN_HTTP_VERSION_AUTO, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_http_version(o, 3, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_http_version(o, 11, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_http_version(o, 20, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_http_version(o, TERN_HTTP_VERSION_AUTO, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_decompress(NULL, 1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_decompress(o, 2, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_decompress(o, 1, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_system_roots(NULL, 1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_system_roots(o, 7, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_system_roots(o, 1, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_trust_env(NULL, 0, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_trust_env(o, 2, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_trust_env(o, 0, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_danger_accept_invalid_certs(NULL, 0, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_danger_accept_invalid_certs(o, 2, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_danger_accept_invalid_certs(o, 0, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_danger_accept_invalid_hostnames(NULL, 0, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_danger_accept_invalid_hostnames(o, 2, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_danger_accept_invalid_hostnames(o, 0, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_tls_versions(NULL, 0, 0, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_tls_versions(o, 11, 0, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_tls_versions(o, 0, 14, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_tls_versions(o, 1, 3, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_tls_versions(o, TERN_TLS_VERSION_TLS13, TERN_TLS_VERSION_TLS12, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_tls_versions(o, TERN_TLS_VERSION_TLS12, TERN_TLS_VERSION_TLS13, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_tls_versions(o, TERN_TLS_VERSION_DEFAULT, TERN_TLS_VERSION_DEFAULT, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_sni(NULL, 1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_sni(o, 2, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_sni(o, 1, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_ip_family(NULL, TERN_IP_FAMILY_ANY, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_ip_family(o, 1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_ip_family(o, 5, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_ip_family(o, UINT32_MAX, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_ip_family(o, TERN_IP_FAMILY_V4, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_ip_family(o, TERN_IP_FAMILY_ANY, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_dns_cache_ttl_ms(NULL, 0, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_dns_cache_ttl_ms(o, UINT64_MAX, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_dns_cache_ttl_ms(o, 60000, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_connection_limits(NULL, 0, 0, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_connection_limits(o, 0, 0, E));

    /* CA certificates: files, directories and PEM bytes without a certificate. */
    char tmpdir[] = "/tmp/tern-bad-input-XXXXXX";
    CHECK(mkdtemp(tmpdir) != NULL);
    char *not_pem = url_join(tmpdir, "/not.pem");
    FILE *f = fopen(not_pem, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs("this is not a certificate\n", f);
        fclose(f);
    }
    char *missing = url_join(tmpdir, "/missing.pem");
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_ca_file(NULL, ca, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_ca_file(o, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_add_ca_file(o, bad_utf8, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_add_ca_file(o, "", E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_add_ca_file(o, missing, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_add_ca_file(o, not_pem, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_add_ca_file(o, tmpdir, E));
    EXPECT(TERN_CODE_OK, tern_session_options_add_ca_file(o, ca, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_ca_dir(NULL, tmpdir, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_ca_dir(o, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_add_ca_dir(o, bad_utf8, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_add_ca_dir(o, "", E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_add_ca_dir(o, missing, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_add_ca_dir(o, tmpdir, E)); /* no cert */
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_add_ca_dir(o, ca, E));     /* a file */
    static const uint8_t garbage[] = "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n";
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_ca_pem(NULL, garbage, sizeof garbage, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_ca_pem(o, NULL, 10, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_add_ca_pem(o, NULL, 0, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_add_ca_pem(o, garbage, sizeof garbage - 1, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_add_ca_pem(o, (const uint8_t *)"\0\xff", 2, E));

    /* Client certificates. */
    const char *cert = need_env("TERN_TEST_CLIENT_CERT");
    const char *key = need_env("TERN_TEST_CLIENT_KEY");
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_client_cert_file(NULL, cert, key, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_client_cert_file(o, NULL, key, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_client_cert_file(o, cert, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_client_cert_file(o, bad_utf8, key, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_client_cert_file(o, cert, bad_utf8, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_set_client_cert_file(o, missing, key, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_set_client_cert_file(o, cert, missing, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_set_client_cert_file(o, cert, cert, E)); /* no key */
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_set_client_cert_file(o, not_pem, key, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_set_client_cert_file(o, "", "", E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_client_cert_file(o, cert, key, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_client_cert_pem(NULL, garbage, 5, garbage, 5, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_client_cert_pem(o, NULL, 5, garbage, 5, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_client_cert_pem(o, garbage, 5, NULL, 5, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_set_client_cert_pem(o, NULL, 0, NULL, 0, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_session_options_set_client_cert_pem(o, garbage, sizeof garbage, garbage, sizeof garbage, E));

    /* Proxy settings. */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_proxy(NULL, "http://127.0.0.1:3128", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_proxy(o, bad_utf8, E));
    EXPECT(TERN_CODE_INVALID_URL, tern_session_options_set_proxy(o, "not a url", E));
    EXPECT(TERN_CODE_INVALID_URL, tern_session_options_set_proxy(o, "http://", E));
    EXPECT(TERN_CODE_UNSUPPORTED_SCHEME, tern_session_options_set_proxy(o, "ftp://127.0.0.1:21", E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_proxy(o, "http://127.0.0.1:3128", E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_proxy(o, "", E));   /* removes it */
    EXPECT(TERN_CODE_OK, tern_session_options_set_proxy(o, NULL, E)); /* removes it */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_proxy_credentials(NULL, "u", "p", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_proxy_credentials(o, "u", NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_proxy_credentials(o, bad_utf8, "p", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_proxy_credentials(o, "u", bad_utf8, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_proxy_credentials(o, "u", "p", E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_proxy_credentials(o, NULL, NULL, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_no_proxy(NULL, "localhost", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_no_proxy(o, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_no_proxy(o, bad_utf8, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_no_proxy(o, "localhost,.test,10.0.0.0/8", E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_no_proxy(o, "", E));

    /* DNS. */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_nameservers(NULL, "127.0.0.1", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_nameservers(o, bad_utf8, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_nameservers(o, "not-an-address", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_nameservers(o, "127.0.0.1:99999", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_nameservers(o, "127.0.0.1,dns.example", E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_nameservers(o, "127.0.0.1:5353,[::1]:53", E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_nameservers(o, "", E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_nameservers(o, NULL, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_resolve(NULL, "a.test:80:127.0.0.1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_add_resolve(o, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_add_resolve(o, bad_utf8, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_add_resolve(o, "", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_add_resolve(o, "a.test", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_add_resolve(o, "a.test:80", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_add_resolve(o, "a.test:http:127.0.0.1", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_add_resolve(o, "a.test:70000:127.0.0.1", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_add_resolve(o, "a.test:80:not-an-ip", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_add_resolve(o, ":80:127.0.0.1", E));
    EXPECT(TERN_CODE_OK, tern_session_options_add_resolve(o, "a.test:80:127.0.0.1,[::1]", E));

    tern_session_options_free(o);
    unlink(not_pem);
    rmdir(tmpdir);
    free(not_pem);
    free(missing);
}

/* ----------------------------------------------------------------- requests --- */

static void test_requests(void) {
    const char *bad_utf8 = "\xff\xfe";
    tern_request *req = (tern_request *)UNTOUCHED;

    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_new(NULL, url_hello, &req, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_new("GET", NULL, &req, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_new("GET", url_hello, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_new(bad_utf8, url_hello, &req, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_new("GET", "http://\xc3\x28.test/", &req, E));
    EXPECT(TERN_CODE_INVALID_METHOD, tern_request_new("", url_hello, &req, E));
    EXPECT(TERN_CODE_INVALID_METHOD, tern_request_new("GE T", url_hello, &req, E));
    EXPECT(TERN_CODE_INVALID_METHOD, tern_request_new("GET\r\n", url_hello, &req, E));
    EXPECT(TERN_CODE_INVALID_METHOD, tern_request_new("GET /x HTTP/1.1\r\nHost: a\r\n\r\n", url_hello, &req, E));
    EXPECT(TERN_CODE_INVALID_METHOD, tern_request_new("(GET)", url_hello, &req, E));
    EXPECT(TERN_CODE_INVALID_URL, tern_request_new("GET", "", &req, E));
    EXPECT(TERN_CODE_INVALID_URL, tern_request_new("GET", "not a url", &req, E));
    EXPECT(TERN_CODE_INVALID_URL, tern_request_new("GET", "/relative/path", &req, E));
    EXPECT(TERN_CODE_INVALID_URL, tern_request_new("GET", "http://", &req, E));
    EXPECT(TERN_CODE_INVALID_URL, tern_request_new("GET", "http://exa mple.test/", &req, E));
    EXPECT(TERN_CODE_INVALID_URL, tern_request_new("GET", "http://[::1/", &req, E));
    EXPECT(TERN_CODE_INVALID_URL, tern_request_new("GET", "http://127.0.0.1:99999/", &req, E));
    EXPECT(TERN_CODE_UNSUPPORTED_SCHEME, tern_request_new("GET", "ftp://example.test/", &req, E));
    EXPECT(TERN_CODE_UNSUPPORTED_SCHEME, tern_request_new("GET", "file:///etc/passwd", &req, E));
    EXPECT(TERN_CODE_UNSUPPORTED_SCHEME, tern_request_new("GET", "ws://example.test/", &req, E));
    CHECK(req == (tern_request *)UNTOUCHED);
    tern_request_free(NULL);

    /* Valid corner cases: a custom method, an upper-case scheme. */
    EXPECT1(TERN_CODE_OK, tern_request_new("PROPFIND", url_hello, &req, E));
    tern_request_free(req);
    EXPECT1(TERN_CODE_OK, tern_request_new("GET", "HTTP://127.0.0.1:18080/hello", &req, E));
    tern_request_free(req);

    req = new_request();
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_add_header(NULL, "x-a", "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_add_header(req, NULL, "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_add_header(req, "x-a", NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_add_header(req, bad_utf8, "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_request_add_header(req, "", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_request_add_header(req, "x:a", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_request_add_header(req, "x\ra", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_request_add_header(req, "x-a", "1\r\nInjected: yes", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_request_add_header(req, "x-a", "1\rx", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_request_add_header(req, "x-a", "1\nx", E));
    EXPECT(TERN_CODE_OK, tern_request_add_header(req, "X-A", "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_header(NULL, "x-a", "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_header(req, NULL, "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_header(req, "x-a", NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_header(req, bad_utf8, "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_request_set_header(req, "", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_request_set_header(req, "x a", "1", E));
    EXPECT(TERN_CODE_INVALID_HEADER, tern_request_set_header(req, "x-a", "\r\n", E));
    EXPECT(TERN_CODE_OK, tern_request_set_header(req, "x-a", "2", E));

    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_body(NULL, (const uint8_t *)"x", 1, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_body(req, NULL, 1, E));
    EXPECT(TERN_CODE_OK, tern_request_set_body(req, NULL, 0, E));
    EXPECT(TERN_CODE_OK, tern_request_set_body(req, (const uint8_t *)"abc", 3, E));

    /* A refused borrowed body is never released; an accepted one exactly once, when it
     * is replaced or its request is freed. */
    atomic_store(&body_released, 0);
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_body_borrowed(NULL, (const uint8_t *)"x", 1, body_release, NULL, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_body_borrowed(req, NULL, 1, body_release, NULL, E));
    CHECK(atomic_load(&body_released) == 0);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_borrowed(req, (const uint8_t *)"abc", 3, body_release, NULL, E));
    CHECK(atomic_load(&body_released) == 0);
    EXPECT1(TERN_CODE_OK, tern_request_set_body(req, (const uint8_t *)"x", 1, E)); /* replaces */
    CHECK(atomic_load(&body_released) == 1);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_borrowed(req, NULL, 0, body_release, NULL, E));
    EXPECT1(TERN_CODE_OK, tern_request_set_body_borrowed(req, (const uint8_t *)"x", 1, NULL, NULL, E));
    CHECK(atomic_load(&body_released) == 2);

    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_timeout_ms(NULL, TERN_TIMEOUT_TOTAL, 1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_timeout_ms(req, 3, 1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_timeout_ms(req, UINT32_MAX, 1, E));
    EXPECT(TERN_CODE_OK, tern_request_set_timeout_ms(req, TERN_TIMEOUT_CONNECT, 5000, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_redirects(NULL, 1, 1, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_redirects(req, 2, 1, E));
    EXPECT(TERN_CODE_OK, tern_request_set_redirects(req, 0, 0, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_http_version(NULL, 0, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_http_version(req, 3, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_http_version(req, UINT32_MAX, E));
    EXPECT(TERN_CODE_OK, tern_request_set_http_version(req, TERN_HTTP_VERSION_HTTP1, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_proxy(NULL, "http://127.0.0.1:3128", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_request_set_proxy(req, bad_utf8, E));
    EXPECT(TERN_CODE_INVALID_URL, tern_request_set_proxy(req, "::::", E));
    EXPECT(TERN_CODE_UNSUPPORTED_SCHEME, tern_request_set_proxy(req, "gopher://127.0.0.1:70", E));
    EXPECT(TERN_CODE_OK, tern_request_set_proxy(req, "socks5h://127.0.0.1:1080", E));
    EXPECT(TERN_CODE_OK, tern_request_set_proxy(req, "", E));
    EXPECT(TERN_CODE_OK, tern_request_set_proxy(req, NULL, E));

    atomic_store(&body_released, 0);
    EXPECT1(TERN_CODE_OK, tern_request_set_body_borrowed(req, (const uint8_t *)"abc", 3, body_release, NULL, E));
    tern_request_free(req); /* releases the borrowed body */
    CHECK(atomic_load(&body_released) == 1);
}

/* ------------------------------------------------------- runtime and session --- */

static void test_runtime_and_session(void) {
    tern_runtime *rt = (tern_runtime *)UNTOUCHED;
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_runtime_new(NULL, NULL, E));
    tern_runtime_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = 0;
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_runtime_new(&cfg, &rt, E));
    cfg.struct_size = 1;
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_runtime_new(&cfg, &rt, E));
    cfg.struct_size = sizeof cfg;
    cfg.thread_name = "\xff\xfe";
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_runtime_new(&cfg, &rt, E));
    CHECK(rt == (tern_runtime *)UNTOUCHED);
    tern_runtime_free(NULL);

    /* A caller built against an older header, whose struct ends before thread_name:
     * the field is not read, whatever it holds. */
    cfg.struct_size = offsetof(tern_runtime_config, thread_name);
    cfg.worker_threads = 2;
    EXPECT1(TERN_CODE_OK, tern_runtime_new(&cfg, &rt, E));
    tern_runtime_free(rt);

    cfg.struct_size = sizeof cfg;
    cfg.worker_threads = 2;
    cfg.thread_name = "bad-input";
    EXPECT1(TERN_CODE_OK, tern_runtime_new(&cfg, &rt, E));

    tern_session_options *o = NULL;
    EXPECT1(TERN_CODE_OK, tern_session_options_new(&o, E));
    tern_session *s = (tern_session *)UNTOUCHED;
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_new(NULL, o, &s, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_new(rt, NULL, &s, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_new(rt, o, NULL, E));
    CHECK(s == (tern_session *)UNTOUCHED);
    EXPECT1(TERN_CODE_OK, tern_session_new(rt, o, &s, E));
    tern_session_options_free(o);
    tern_session_free(NULL);

    tern_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.on_complete = on_complete;
    cb.release = on_release;
    uint64_t id = 42;
    atomic_store(&completed, 0);
    atomic_store(&released, 0);

    /* tern_session_send: every refusal consumes the request (its borrowed body is
     * released) and runs no callback; id_out is untouched. */
    atomic_store(&body_released, 0);
    EXPECT1(TERN_CODE_NULL_ARGUMENT, tern_session_send(NULL, new_request_with_borrowed_body(), &cb, NULL, &id, E));
    EXPECT1(TERN_CODE_NULL_ARGUMENT, tern_session_send(s, NULL, &cb, NULL, &id, E));
    EXPECT1(TERN_CODE_NULL_ARGUMENT, tern_session_send(s, new_request_with_borrowed_body(), NULL, NULL, &id, E));
    tern_callbacks bad = cb;
    bad.on_complete = NULL;
    EXPECT1(TERN_CODE_NULL_ARGUMENT, tern_session_send(s, new_request_with_borrowed_body(), &bad, NULL, &id, E));
    bad = cb;
    bad.struct_size = 0;
    EXPECT1(TERN_CODE_INVALID_ARGUMENT, tern_session_send(s, new_request_with_borrowed_body(), &bad, NULL, &id, E));
    bad.struct_size = sizeof(size_t);
    EXPECT1(TERN_CODE_INVALID_ARGUMENT, tern_session_send(s, new_request_with_borrowed_body(), &bad, NULL, &id, E));
    /* The same refusals with err = NULL. */
    EXPECT_CODE(TERN_CODE_NULL_ARGUMENT, tern_session_send(NULL, new_request_with_borrowed_body(), &cb, NULL, &id, NULL));
    bad = cb;
    bad.struct_size = 0;
    EXPECT_CODE(TERN_CODE_INVALID_ARGUMENT, tern_session_send(s, new_request_with_borrowed_body(), &bad, NULL, &id, NULL));
    CHECK(atomic_load(&body_released) == 7);
    CHECK(id == 42);
    sleep_ms(100);
    CHECK(atomic_load(&completed) == 0 && atomic_load(&released) == 0);

    /* An older caller's struct that ends after on_complete: the reserved fields and
     * release lie beyond struct_size and must not be read, whatever they hold. */
    bad = cb;
    bad.struct_size = offsetof(tern_callbacks, on_headers);
    bad.on_headers = on_headers_cb;
    bad.release = on_release;
    EXPECT1(TERN_CODE_OK, tern_session_send(s, new_request(), &bad, NULL, &id, E));
    CHECK(id != 42);
    CHECK(wait_for(&completed, 1));
    sleep_ms(100);
    CHECK(atomic_load(&released) == 0);
    CHECK(atomic_load(&last_code) == TERN_CODE_OK);

    /* tern_session_perform: refusals consume the request; *out stays untouched. */
    tern_response *resp = (tern_response *)UNTOUCHED;
    atomic_store(&body_released, 0);
    EXPECT1(TERN_CODE_NULL_ARGUMENT, tern_session_perform(NULL, new_request_with_borrowed_body(), &resp, E));
    EXPECT1(TERN_CODE_NULL_ARGUMENT, tern_session_perform(s, NULL, &resp, E));
    EXPECT1(TERN_CODE_NULL_ARGUMENT, tern_session_perform(s, new_request_with_borrowed_body(), NULL, E));
    EXPECT_CODE(TERN_CODE_NULL_ARGUMENT, tern_session_perform(s, new_request_with_borrowed_body(), NULL, NULL));
    CHECK(atomic_load(&body_released) == 3);
    CHECK(resp == (tern_response *)UNTOUCHED);

    /* tern_session_cancel: NULL, unknown ids, twice. */
    EXPECT_CODE(TERN_CODE_NULL_ARGUMENT, tern_session_cancel(NULL, 1));
    EXPECT_CODE(TERN_CODE_NOT_FOUND, tern_session_cancel(s, 0));
    EXPECT_CODE(TERN_CODE_NOT_FOUND, tern_session_cancel(s, UINT64_MAX));
    EXPECT_CODE(TERN_CODE_NOT_FOUND, tern_session_cancel(s, id)); /* completed above */
    hold = hold_start();
    tern_request *held = NULL;
    EXPECT1(TERN_CODE_OK, tern_request_new("GET", hold.url, &held, E));
    EXPECT1(TERN_CODE_OK, tern_session_send(s, held, &cb, NULL, &id, E));
    EXPECT_CODE(TERN_CODE_OK, tern_session_cancel(s, id));
    CHECK(wait_for(&released, 1));
    CHECK(atomic_load(&last_code) == TERN_CODE_CANCELED);
    EXPECT_CODE(TERN_CODE_NOT_FOUND, tern_session_cancel(s, id)); /* a second cancel */
    CHECK(atomic_load(&completed) == 2 && atomic_load(&released) == 1);

    /* tern_session_close: NULL, an unknown mode, twice; then sends are refused with
     * SHUTDOWN (request consumed, no callback, user_data not released). */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_close(NULL, TERN_CLOSE_GRACEFUL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_close(s, 2, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_close(s, UINT32_MAX, E));
    EXPECT1(TERN_CODE_OK, tern_session_close(s, TERN_CLOSE_GRACEFUL, E));
    EXPECT1(TERN_CODE_OK, tern_session_close(s, TERN_CLOSE_GRACEFUL, E));
    EXPECT1(TERN_CODE_OK, tern_session_close(s, TERN_CLOSE_ABORT, E));
    atomic_store(&body_released, 0);
    id = 42;
    EXPECT1(TERN_CODE_SHUTDOWN, tern_session_send(s, new_request_with_borrowed_body(), &cb, NULL, &id, E));
    EXPECT1(TERN_CODE_SHUTDOWN, tern_session_perform(s, new_request_with_borrowed_body(), &resp, E));
    CHECK(atomic_load(&body_released) == 2);
    CHECK(id == 42 && resp == (tern_response *)UNTOUCHED);
    sleep_ms(100);
    CHECK(atomic_load(&completed) == 2 && atomic_load(&released) == 1);
    tern_session_free(s);

    /* A session whose runtime was freed refuses with SHUTDOWN. */
    EXPECT1(TERN_CODE_OK, tern_session_options_new(&o, E));
    EXPECT1(TERN_CODE_OK, tern_session_new(rt, o, &s, E));
    tern_session_options_free(o);
    tern_runtime_free(rt);
    atomic_store(&body_released, 0);
    EXPECT1(TERN_CODE_SHUTDOWN, tern_session_send(s, new_request_with_borrowed_body(), &cb, NULL, &id, E));
    EXPECT1(TERN_CODE_SHUTDOWN, tern_session_perform(s, new_request_with_borrowed_body(), &resp, E));
    CHECK(atomic_load(&body_released) == 2);
    EXPECT1(TERN_CODE_OK, tern_session_close(s, TERN_CLOSE_GRACEFUL, E));
    tern_session_free(s);
    close(hold.fd);
    CHECK(atomic_load(&completed) == 2 && atomic_load(&released) == 1);
}

/* ---------------------------------------------------------------- responses --- */

static void test_responses(void) {
    /* NULL responses: each getter's documented value. */
    tern_response_free(NULL);
    CHECK(tern_response_id(NULL) == 0);
    EXPECT_CODE(TERN_CODE_NULL_ARGUMENT, tern_response_code(NULL));
    CHECK(tern_response_message(NULL) == NULL);
    CHECK(tern_response_status(NULL) == 0);
    CHECK(tern_response_version(NULL) == 0);
    CHECK(tern_response_header_count(NULL) == 0);
    const char *name = (const char *)UNTOUCHED;
    size_t name_len = 7, value_len = 7;
    const uint8_t *value = (const uint8_t *)UNTOUCHED;
    EXPECT_CODE(TERN_CODE_NULL_ARGUMENT, tern_response_header_at(NULL, 0, &name, &name_len, &value, &value_len));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_response_header_get(NULL, "date", 0, &value, &value_len, E));
    EXPECT_CODE(TERN_CODE_NULL_ARGUMENT, tern_response_body(NULL, &value, &value_len));
    CHECK(tern_response_effective_url(NULL) == NULL);
    CHECK(tern_response_redirect_count(NULL) == 0);
    CHECK(tern_response_remote_addr(NULL) == NULL);
    CHECK(tern_response_timing_us(NULL, TERN_TIMING_TOTAL) == 0);
    CHECK(name == (const char *)UNTOUCHED && value == (const uint8_t *)UNTOUCHED);
    CHECK(name_len == 7 && value_len == 7);

    /* A real response, then bad arguments against it. */
    tern_runtime *rt = NULL;
    tern_session_options *o = NULL;
    tern_session *s = NULL;
    tern_response *resp = NULL;
    EXPECT1(TERN_CODE_OK, tern_runtime_new(NULL, &rt, E));
    EXPECT1(TERN_CODE_OK, tern_session_options_new(&o, E));
    EXPECT1(TERN_CODE_OK, tern_session_new(rt, o, &s, E));
    tern_session_options_free(o);
    EXPECT1(TERN_CODE_OK, tern_session_perform(s, new_request(), &resp, E));
    CHECK(resp != NULL);
    if (resp != NULL) {
        CHECK(tern_response_code(resp) == TERN_CODE_OK);
        CHECK(tern_response_status(resp) == 200);
        size_t n = tern_response_header_count(resp);
        CHECK(n > 0);
        EXPECT_CODE(TERN_CODE_NOT_FOUND, tern_response_header_at(resp, n, &name, &name_len, &value, &value_len));
        EXPECT_CODE(TERN_CODE_NOT_FOUND, tern_response_header_at(resp, SIZE_MAX, &name, &name_len, &value, &value_len));
        CHECK(name == (const char *)UNTOUCHED && value == (const uint8_t *)UNTOUCHED);
        /* Every out-pointer of header_at may be NULL. */
        EXPECT_CODE(TERN_CODE_OK, tern_response_header_at(resp, 0, NULL, NULL, NULL, NULL));
        EXPECT_CODE(TERN_CODE_OK, tern_response_header_at(resp, 0, &name, NULL, NULL, &value_len));
        EXPECT(TERN_CODE_NULL_ARGUMENT, tern_response_header_get(resp, NULL, 0, &value, &value_len, E));
        EXPECT(TERN_CODE_NULL_ARGUMENT, tern_response_header_get(resp, "date", 0, NULL, &value_len, E));
        EXPECT(TERN_CODE_NULL_ARGUMENT, tern_response_header_get(resp, "date", 0, &value, NULL, E));
        EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_response_header_get(resp, "\xff", 0, &value, &value_len, E));
        value = (const uint8_t *)UNTOUCHED;
        /* NOT_FOUND is not a failure of the call's arguments: no error object is
         * promised, so only the code is checked here. */
        CHECK(tern_response_header_get(resp, "x-no-such-header", 0, &value, &value_len, NULL) == TERN_CODE_NOT_FOUND);
        CHECK(tern_response_header_get(resp, "", 0, &value, &value_len, NULL) == TERN_CODE_NOT_FOUND);
        CHECK(tern_response_header_get(resp, "date", SIZE_MAX, &value, &value_len, NULL) == TERN_CODE_NOT_FOUND);
        CHECK(value == (const uint8_t *)UNTOUCHED);
        EXPECT_CODE(TERN_CODE_NULL_ARGUMENT, tern_response_body(resp, NULL, &value_len));
        EXPECT_CODE(TERN_CODE_NULL_ARGUMENT, tern_response_body(resp, &value, NULL));
        CHECK(tern_response_timing_us(resp, 5) == 0);
        CHECK(tern_response_timing_us(resp, UINT32_MAX) == 0);
        CHECK(tern_response_timing_us(resp, TERN_TIMING_TOTAL) > 0);
        tern_response_free(resp);
    }

    /* A request that fails still gives a response, with a message and no status. */
    tern_request *req = NULL;
    EXPECT1(TERN_CODE_OK, tern_request_new("GET", "http://127.0.0.1:1/", &req, E));
    resp = NULL;
    EXPECT1(TERN_CODE_OK, tern_session_perform(s, req, &resp, E));
    if (resp != NULL) {
        CHECK(tern_response_code(resp) == TERN_CODE_CONNECTION_REFUSED);
        CHECK(tern_response_status(resp) == 0 && tern_response_version(resp) == 0);
        CHECK(tern_response_header_count(resp) == 0);
        const char *m = tern_response_message(resp);
        CHECK(m != NULL && m[0] != '\0');
        const uint8_t *body = NULL;
        size_t len = 99;
        CHECK(tern_response_body(resp, &body, &len) == TERN_CODE_OK && body != NULL && len == 0);
        tern_response_free(resp);
    }
    tern_session_free(s);
    tern_runtime_free(rt);
}

/* ------------------------------------------------------- forms and cookies --- */

static const char *url_echo;

static void test_forms_and_cookies(void) {
    const char *bad_utf8 = "\xff\xfe";

    /* A small file to attach, removed at the end. */
    char path[] = "/tmp/tern-bad-input-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "file-bytes", 10) == 10);
    close(fd);

    tern_form *f = (tern_form *)UNTOUCHED;
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_form_new(TERN_FORM_KIND_MULTIPART, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_form_new(2, &f, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_form_new(UINT32_MAX, &f, E));
    CHECK(f == (tern_form *)UNTOUCHED);
    tern_form_free(NULL);

    /* A urlencoded form takes text fields only. */
    tern_form *u = NULL;
    EXPECT1(TERN_CODE_OK, tern_form_new(TERN_FORM_KIND_URLENCODED, &u, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_form_add_field(NULL, "a", "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_form_add_field(u, NULL, "1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_form_add_field(u, "a", NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_form_add_field(u, bad_utf8, "1", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_form_add_field(u, "a", bad_utf8, E));
    EXPECT(TERN_CODE_OK, tern_form_add_field(u, "a b", "c&d", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_form_add_bytes(u, "b", (const uint8_t *)"x", 1, NULL, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_form_add_file(u, "f", path, NULL, NULL, E));

    tern_form *m = NULL;
    EXPECT1(TERN_CODE_OK, tern_form_new(TERN_FORM_KIND_MULTIPART, &m, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_form_add_bytes(NULL, "b", (const uint8_t *)"x", 1, NULL, NULL, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_form_add_bytes(m, NULL, (const uint8_t *)"x", 1, NULL, NULL, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_form_add_bytes(m, "b", NULL, 1, NULL, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_form_add_bytes(m, "b", (const uint8_t *)"x", 1, bad_utf8, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_form_add_bytes(m, "b", (const uint8_t *)"x", 1, NULL, bad_utf8, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_form_add_bytes(m, "b", (const uint8_t *)"x", 1, NULL, "text/plain\r\nX-Injected: 1", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_form_add_bytes(m, "b", (const uint8_t *)"x", 1, NULL, "", E));
    EXPECT(TERN_CODE_OK, tern_form_add_bytes(m, "empty", NULL, 0, NULL, NULL, E));
    EXPECT(TERN_CODE_OK, tern_form_add_bytes(m, "b", (const uint8_t *)"xyz", 3, "b.json", "application/json", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_form_add_file(NULL, "f", path, NULL, NULL, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_form_add_file(m, NULL, path, NULL, NULL, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_form_add_file(m, "f", NULL, NULL, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_form_add_file(m, "f", path, NULL, "a\nb", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_form_add_file(m, "f", bad_utf8, NULL, NULL, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_form_add_file(m, "f", "/nonexistent/tern-bad-input", NULL, NULL, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_form_add_file(m, "f", "/tmp", NULL, NULL, E));
    EXPECT(TERN_CODE_INVALID_FILE, tern_form_add_file(m, "f", "", NULL, NULL, E));
    EXPECT(TERN_CODE_OK, tern_form_add_field(m, "field", "value", E));
    EXPECT1(TERN_CODE_OK, tern_form_add_file(m, "f", path, NULL, NULL, E));

    tern_request *req = new_request();
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_form(NULL, m, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_request_set_form(req, NULL, E));
    EXPECT(TERN_CODE_OK, tern_request_set_form(req, u, E));
    EXPECT(TERN_CODE_OK, tern_request_set_form(req, m, E));
    tern_request_free(req); /* closes the files the form opened */

    /* The file is gone when the form is attached: INVALID_FILE. */
    tern_form *gone = NULL;
    EXPECT1(TERN_CODE_OK, tern_form_new(TERN_FORM_KIND_MULTIPART, &gone, E));
    EXPECT1(TERN_CODE_OK, tern_form_add_file(gone, "f", path, "renamed.txt", "text/plain", E));

    /* Cookies: options, then the jar's functions without and with a jar. */
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_options_set_cookie_jar(NULL, 1, E));
    tern_session_options *o = NULL;
    EXPECT1(TERN_CODE_OK, tern_session_options_new(&o, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_cookie_jar(o, 2, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_options_set_cookie_jar(o, UINT32_MAX, E));
    tern_runtime *rt = NULL;
    EXPECT1(TERN_CODE_OK, tern_runtime_new(NULL, &rt, E));
    tern_session *plain = NULL, *s = NULL;
    EXPECT1(TERN_CODE_OK, tern_session_new(rt, o, &plain, E));
    EXPECT(TERN_CODE_OK, tern_session_options_set_cookie_jar(o, 1, E));
    EXPECT1(TERN_CODE_OK, tern_session_new(rt, o, &s, E));
    tern_session_options_free(o);

    char *out = (char *)UNTOUCHED;
    EXPECT(TERN_CODE_INVALID_STATE, tern_session_add_cookie(plain, url_hello, "a=1", E));
    EXPECT(TERN_CODE_INVALID_STATE, tern_session_get_cookies(plain, url_hello, &out, E));
    EXPECT(TERN_CODE_INVALID_STATE, tern_session_clear_cookies(plain, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_add_cookie(NULL, url_hello, "a=1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_add_cookie(s, NULL, "a=1", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_add_cookie(s, url_hello, NULL, E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_add_cookie(s, bad_utf8, "a=1", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_add_cookie(s, url_hello, bad_utf8, E));
    EXPECT(TERN_CODE_INVALID_URL, tern_session_add_cookie(s, "not a url", "a=1", E));
    EXPECT(TERN_CODE_UNSUPPORTED_SCHEME, tern_session_add_cookie(s, "ftp://example.test/", "a=1", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_add_cookie(s, url_hello, "no-equals-sign", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_add_cookie(s, url_hello, "a=1\r\nX-Injected: 1", E));
    EXPECT(TERN_CODE_INVALID_ARGUMENT, tern_session_add_cookie(s, url_hello, "a=1; Domain=example.org", E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_get_cookies(NULL, url_hello, &out, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_get_cookies(s, NULL, &out, E));
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_get_cookies(s, url_hello, NULL, E));
    EXPECT(TERN_CODE_INVALID_URL, tern_session_get_cookies(s, "http://", &out, E));
    CHECK(out == (char *)UNTOUCHED);
    EXPECT(TERN_CODE_NULL_ARGUMENT, tern_session_clear_cookies(NULL, E));

    EXPECT1(TERN_CODE_OK, tern_session_get_cookies(s, url_hello, &out, E));
    CHECK(out != NULL && out != (char *)UNTOUCHED && strcmp(out, "") == 0);
    tern_string_free(out);
    EXPECT(TERN_CODE_OK, tern_session_add_cookie(s, url_hello, "a=1; Path=/", E));
    EXPECT(TERN_CODE_OK, tern_session_add_cookie(s, url_hello, "gone=1; Max-Age=0", E));
    out = NULL;
    EXPECT1(TERN_CODE_OK, tern_session_get_cookies(s, url_hello, &out, E));
    CHECK(out != NULL && strcmp(out, "a=1") == 0);
    tern_string_free(out);
    tern_string_free(NULL);

    /* A multipart upload really sent (the file streamed from disk), then the same
     * form after its file was removed. */
    req = NULL;
    EXPECT1(TERN_CODE_OK, tern_request_new("POST", url_echo, &req, E));
    EXPECT1(TERN_CODE_OK, tern_request_set_form(req, m, E));
    tern_response *resp = NULL;
    EXPECT1(TERN_CODE_OK, tern_session_perform(s, req, &resp, E));
    if (resp != NULL) {
        CHECK(tern_response_code(resp) == TERN_CODE_OK && tern_response_status(resp) == 200);
        const uint8_t *body = NULL;
        size_t len = 0;
        CHECK(tern_response_body(resp, &body, &len) == TERN_CODE_OK);
        CHECK(body != NULL && strstr((const char *)body, "\r\n\r\nfile-bytes\r\n") != NULL);
        tern_response_free(resp);
    }
    EXPECT(TERN_CODE_OK, tern_session_clear_cookies(s, E));
    unlink(path);
    req = new_request();
    EXPECT(TERN_CODE_INVALID_FILE, tern_request_set_form(req, gone, E));
    tern_request_free(req);

    tern_form_free(gone);
    tern_form_free(m);
    tern_form_free(u);
    tern_session_free(plain);
    tern_session_free(s);
    tern_runtime_free(rt);
}

int main(void) {
    const char *http = need_env("TERN_TEST_HTTP");
    char *hello = url_join(http, "/hello");
    url_hello = hello;

    test_error_and_version();
    test_options();
    test_requests();
    test_runtime_and_session();
    test_responses();
    char *echo = url_join(http, "/echo");
    url_echo = echo;
    test_forms_and_cookies();
    free(echo);

    free(hello);
    printf("bad_input: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
