/* forms_cookies: a session with a cookie jar and tern's log on stderr, a login-like
 * cookie exchange, then a multipart form (a field, bytes and a file) posted to an
 * echo endpoint.
 *
 *   forms_cookies BASE_URL FILE [-v]
 *
 * BASE_URL serves /cookies/set (sets cookies), /cookies/echo (answers with the
 * Cookie header it got) and /echo (answers with the request body): the test servers
 * of scripts/testenv.sh do ($TERN_TEST_HTTP). FILE is sent as a form part, streamed.
 * -v routes tern's DEBUG log to stderr through tern_set_log_callback (tern itself
 * never writes to stdout or stderr).
 *
 * Exit status: 0 when every exchange completed with 200, 1 otherwise, 2 on bad usage.
 */
#include <stdio.h>
#include <string.h>

#include "tern.h"

static int die(const char *what, tern_code code, tern_error *err) {
    fprintf(stderr, "%s: %s: %s\n", what, tern_code_name(code),
            err ? tern_error_message(err) : "");
    tern_error_free(err);
    return 1;
}

/* Runs on any thread, several at once: only a thread-safe write here. */
static void on_log(void *user_data, tern_log_level level, const char *target,
                   const char *message) {
    (void)user_data;
    fprintf(stderr, "[tern %u %s] %s\n", (unsigned)level, target, message);
}

/* One blocking exchange; prints the status and the body; 0 when the status is 200. */
static int exchange(tern_session *session, tern_request *req, const char *what) {
    tern_error *err = NULL;
    tern_response *resp = NULL;
    tern_code c = tern_session_perform(session, req, &resp, &err); /* consumes req */
    if (c != TERN_CODE_OK) return die(what, c, err);
    if (tern_response_code(resp) != TERN_CODE_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, tern_code_name(tern_response_code(resp)),
                tern_response_message(resp));
        tern_response_free(resp);
        return 1;
    }
    const uint8_t *body;
    size_t len;
    tern_response_body(resp, &body, &len);
    unsigned status = tern_response_status(resp);
    printf("%s: %u, %zu bytes\n%.*s\n", what, status, len, (int)(len > 4096 ? 4096 : len),
           (const char *)body);
    tern_response_free(resp);
    return status == 200 ? 0 : 1;
}

static int get(tern_session *session, const char *base, const char *path) {
    char url[2048];
    snprintf(url, sizeof url, "%s%s", base, path);
    tern_error *err = NULL;
    tern_request *req = NULL;
    tern_code c = tern_request_new("GET", url, &req, &err);
    if (c != TERN_CODE_OK) return die("request", c, err);
    return exchange(session, req, path);
}

static int post_form(tern_session *session, const char *base, const char *file) {
    tern_error *err = NULL;
    tern_form *form = NULL;
    tern_code c = tern_form_new(TERN_FORM_KIND_MULTIPART, &form, &err);
    if (c != TERN_CODE_OK) return die("form", c, err);
    static const uint8_t bytes[] = "{\"hello\": \"form\"}";
    if ((c = tern_form_add_field(form, "title", "a report", &err)) != TERN_CODE_OK ||
        (c = tern_form_add_bytes(form, "meta", bytes, sizeof bytes - 1, "meta.json", NULL,
                                 &err)) != TERN_CODE_OK ||
        (c = tern_form_add_file(form, "upload", file, NULL, "text/plain", &err)) != TERN_CODE_OK) {
        tern_form_free(form);
        return die("form part", c, err);
    }
    char url[2048];
    snprintf(url, sizeof url, "%s/echo", base);
    tern_request *req = NULL;
    if ((c = tern_request_new("POST", url, &req, &err)) != TERN_CODE_OK) {
        tern_form_free(form);
        return die("request", c, err);
    }
    c = tern_request_set_form(req, form, &err); /* copies the form */
    tern_form_free(form);
    if (c != TERN_CODE_OK) {
        tern_request_free(req);
        return die("set form", c, err);
    }
    return exchange(session, req, "POST /echo (multipart)");
}

int main(int argc, char **argv) {
    if (argc < 3 || (argc > 3 && strcmp(argv[3], "-v") != 0)) {
        fprintf(stderr, "usage: %s BASE_URL FILE [-v]\n", argv[0]);
        return 2;
    }
    const char *base = argv[1], *file = argv[2];
    tern_error *err = NULL;
    tern_code c;
    if (argc > 3 &&
        (c = tern_set_log_callback(TERN_LOG_LEVEL_DEBUG, on_log, NULL, &err)) != TERN_CODE_OK)
        return die("log callback", c, err);

    tern_runtime *rt = NULL;
    if ((c = tern_runtime_new(NULL, &rt, &err)) != TERN_CODE_OK) return die("runtime", c, err);
    tern_session_options *opts = NULL;
    tern_session_options_new(&opts, NULL);
    tern_session_options_set_cookie_jar(opts, 1, NULL);
    tern_session *session = NULL;
    c = tern_session_new(rt, opts, &session, &err);
    tern_session_options_free(opts);
    if (c != TERN_CODE_OK) {
        tern_runtime_free(rt);
        return die("session", c, err);
    }

    int status = 0;
    /* The jar keeps what /cookies/set sets and sends it back where it matches. */
    status |= get(session, base, "/cookies/set");
    char url[2048], *jar = NULL;
    snprintf(url, sizeof url, "%s/cookies/echo", base);
    if ((c = tern_session_get_cookies(session, url, &jar, &err)) != TERN_CODE_OK) {
        status |= die("get cookies", c, err);
    } else {
        printf("jar for /cookies/echo: %s\n", jar);
        tern_string_free(jar);
    }
    /* A cookie of the program's own, stored by the Set-Cookie rules. */
    if ((c = tern_session_add_cookie(session, url, "theme=dark; Path=/cookies", &err)) !=
        TERN_CODE_OK)
        status |= die("add cookie", c, err);
    status |= get(session, base, "/cookies/echo");
    status |= post_form(session, base, file);

    tern_session_free(session);
    tern_runtime_free(rt);
    if (argc > 3) tern_set_log_callback(TERN_LOG_LEVEL_OFF, NULL, NULL, NULL);
    return status;
}
