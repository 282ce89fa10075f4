/* cxx_compat: tern.h used from C++ as well as C. tests/c/run.sh builds this file
 * twice, as C11 and as C++17 (g++ -x c++), links both against libtern and runs them.
 *
 * It includes the header twice (the include guard), passes enum constants where the
 * functions take uint32_t, sets up a tern_callbacks struct the way C++ code can (no
 * designated initializers before C++20), and runs one blocking and one callback
 * request: C++ linkage of the functions and of the callback pointers is exercised,
 * not only the compilation.
 *
 * Needs TERN_TEST_HTTP.
 */
#include "tern.h"
#include "tern.h" /* twice on purpose */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
#define LANGUAGE "C++"
/* Callbacks given to a C library are declared extern "C" in C++. */
extern "C" {
static void on_complete(void *user_data, tern_response *response);
static void on_release(void *user_data);
}
#else
#define LANGUAGE "C"
#endif

struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    int completes, releases;
    tern_code code;
    uint16_t status;
};

static void on_complete(void *user_data, tern_response *response) {
    struct waiter *w = (struct waiter *)user_data;
    pthread_mutex_lock(&w->lock);
    w->completes++;
    w->code = tern_response_code(response);
    w->status = tern_response_status(response);
    pthread_mutex_unlock(&w->lock);
    tern_response_free(response);
}

static void on_release(void *user_data) {
    struct waiter *w = (struct waiter *)user_data;
    pthread_mutex_lock(&w->lock);
    w->releases++;
    pthread_cond_signal(&w->done_cond);
    pthread_mutex_unlock(&w->lock);
}

static int fail(const char *what, tern_code code, tern_error *err) {
    fprintf(stderr, "cxx_compat (%s): %s: %s: %s\n", LANGUAGE, what, tern_code_name(code),
            err ? tern_error_message(err) : "");
    tern_error_free(err);
    return 1;
}

int main(void) {
    const char *base = getenv("TERN_TEST_HTTP");
    if (base == NULL) {
        fprintf(stderr, "cxx_compat: TERN_TEST_HTTP is not set\n");
        return 2;
    }
    char url[256];
    snprintf(url, sizeof url, "%s/hello", base);

    /* Constants of every enum pass where uint32_t is taken. */
    tern_code c = tern_version_check(TERN_VERSION_MAJOR, TERN_VERSION_MINOR);
    if (c != TERN_CODE_OK) return fail("version", c, NULL);

    tern_error *err = NULL;
    tern_runtime *rt = NULL;
    tern_runtime_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    cfg.worker_threads = 1;
    if ((c = tern_runtime_new(&cfg, &rt, &err)) != TERN_CODE_OK) return fail("runtime", c, err);

    tern_session_options *opts = NULL;
    tern_session *session = NULL;
    int status = 1;
    if ((c = tern_session_options_new(&opts, &err)) != TERN_CODE_OK ||
        (c = tern_session_options_set_timeout_ms(opts, TERN_TIMEOUT_TOTAL, 30000, &err)) != TERN_CODE_OK ||
        (c = tern_session_options_set_http_version(opts, TERN_HTTP_VERSION_AUTO, &err)) != TERN_CODE_OK ||
        (c = tern_session_options_set_tls_versions(opts, TERN_TLS_VERSION_DEFAULT, TERN_TLS_VERSION_TLS13, &err)) != TERN_CODE_OK ||
        (c = tern_session_options_set_ip_family(opts, TERN_IP_FAMILY_ANY, &err)) != TERN_CODE_OK ||
        (c = tern_session_new(rt, opts, &session, &err)) != TERN_CODE_OK) {
        tern_session_options_free(opts);
        tern_runtime_free(rt);
        return fail("session", c, err);
    }
    tern_session_options_free(opts);

    /* Blocking. */
    tern_request *req = NULL;
    tern_response *resp = NULL;
    if ((c = tern_request_new("GET", url, &req, &err)) != TERN_CODE_OK) {
        status = fail("request", c, err);
    } else if ((c = tern_session_perform(session, req, &resp, &err)) != TERN_CODE_OK) {
        status = fail("perform", c, err);
    } else {
        const uint8_t *body = NULL;
        size_t len = 0;
        tern_response_body(resp, &body, &len);
        int ok = tern_response_code(resp) == TERN_CODE_OK && tern_response_status(resp) == 200 &&
                 len == 13 && memcmp(body, "Hello, world!", 13) == 0 &&
                 tern_response_timing_us(resp, TERN_TIMING_TOTAL) > 0;
        tern_response_free(resp);

        /* With callbacks. */
        struct waiter w;
        memset(&w, 0, sizeof w);
        pthread_mutex_init(&w.lock, NULL);
        pthread_cond_init(&w.done_cond, NULL);
        tern_callbacks cb;
        memset(&cb, 0, sizeof cb);
        cb.struct_size = sizeof cb;
        cb.on_complete = on_complete;
        cb.release = on_release;
        uint64_t id = 0;
        if ((c = tern_request_new("GET", url, &req, &err)) != TERN_CODE_OK) {
            status = fail("request", c, err);
        } else if ((c = tern_session_send(session, req, &cb, &w, &id, &err)) != TERN_CODE_OK) {
            status = fail("send", c, err);
        } else {
            pthread_mutex_lock(&w.lock);
            while (w.releases == 0) pthread_cond_wait(&w.done_cond, &w.lock);
            ok = ok && id != 0 && w.completes == 1 && w.releases == 1 && w.code == TERN_CODE_OK &&
                 w.status == 200;
            pthread_mutex_unlock(&w.lock);
            status = ok ? 0 : 1;
            printf("cxx_compat (%s): %s\n", LANGUAGE, ok ? "ok" : "FAILED");
        }
        tern_session_close(session, TERN_CLOSE_GRACEFUL, NULL);
        tern_session_free(session);
        session = NULL;
        tern_runtime_free(rt); /* every callback has run: w can go */
        rt = NULL;
        pthread_cond_destroy(&w.done_cond);
        pthread_mutex_destroy(&w.lock);
    }
    tern_session_free(session);
    tern_runtime_free(rt);
    return status;
}
