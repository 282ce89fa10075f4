/* options: one GET through a session configured like a real deployment: a proxy,
 * a CA file, custom nameservers or static overrides, time-outs and connection limits.
 *
 *   options [--proxy URL] [--proxy-user USER:PASS] [--no-proxy LIST] [--env-proxy]
 *           [--ca FILE] [--cert FILE --key FILE] [--insecure]
 *           [--dns IP:PORT,...] [--resolve HOST:PORT:ADDR] [-4|-6]
 *           [--connect-timeout MS] [--read-timeout MS] [--timeout MS]
 *           [--limit TOTAL] [--limit-per-host N] URL
 *
 * Each flag maps to one tern_session_options_* call; see the README's options table
 * for the libcurl and aiohttp names. Exit status: 0 when the exchange completed (any
 * HTTP status), 1 on a tern error, 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tern.h"

/* Prints a failed setter's code and message, frees the error, returns 1. */
static int fail(const char *what, tern_code code, tern_error *err) {
    fprintf(stderr, "%s: %s: %s\n", what, tern_code_name(code),
            err ? tern_error_message(err) : "");
    tern_error_free(err);
    return 1;
}

static int usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--proxy URL] [--proxy-user USER:PASS] [--no-proxy LIST] [--env-proxy]\n"
            "          [--ca FILE] [--cert FILE --key FILE] [--insecure]\n"
            "          [--dns IP:PORT,...] [--resolve HOST:PORT:ADDR] [-4|-6]\n"
            "          [--connect-timeout MS] [--read-timeout MS] [--timeout MS]\n"
            "          [--limit TOTAL] [--limit-per-host N] URL\n",
            argv0);
    return 2;
}

/* Applies the command line to `opts`; returns 0, 1 (tern refused a value) or 2. */
static int configure(tern_session_options *opts, int argc, char **argv, const char **url) {
    const char *cert = NULL, *key = NULL;
    uint32_t limit = 0, per_host = 0;
    tern_error *err = NULL;
    tern_code c = TERN_CODE_OK;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes_value = 1;
        if (!strcmp(a, "--proxy") && v) {
            c = tern_session_options_set_proxy(opts, v, &err);
        } else if (!strcmp(a, "--proxy-user") && v) {
            const char *colon = strchr(v, ':');
            if (!colon) return 2;
            size_t n = (size_t)(colon - v);
            char *user = malloc(n + 1);
            if (!user) return 1;
            memcpy(user, v, n);
            user[n] = '\0';
            c = tern_session_options_set_proxy_credentials(opts, user, colon + 1, &err);
            free(user);
        } else if (!strcmp(a, "--no-proxy") && v) {
            c = tern_session_options_set_no_proxy(opts, v, &err);
        } else if (!strcmp(a, "--ca") && v) {
            c = tern_session_options_add_ca_file(opts, v, &err);
        } else if (!strcmp(a, "--cert") && v) {
            cert = v;
        } else if (!strcmp(a, "--key") && v) {
            key = v;
        } else if (!strcmp(a, "--dns") && v) {
            c = tern_session_options_set_nameservers(opts, v, &err);
        } else if (!strcmp(a, "--resolve") && v) {
            c = tern_session_options_add_resolve(opts, v, &err);
        } else if (!strcmp(a, "--connect-timeout") && v) {
            c = tern_session_options_set_timeout_ms(opts, TERN_TIMEOUT_CONNECT, strtoull(v, NULL, 10), &err);
        } else if (!strcmp(a, "--read-timeout") && v) {
            c = tern_session_options_set_timeout_ms(opts, TERN_TIMEOUT_READ, strtoull(v, NULL, 10), &err);
        } else if (!strcmp(a, "--timeout") && v) {
            c = tern_session_options_set_timeout_ms(opts, TERN_TIMEOUT_TOTAL, strtoull(v, NULL, 10), &err);
        } else if (!strcmp(a, "--limit") && v) {
            limit = (uint32_t)strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--limit-per-host") && v) {
            per_host = (uint32_t)strtoul(v, NULL, 10);
        } else {
            takes_value = 0;
            if (!strcmp(a, "--env-proxy")) {
                c = tern_session_options_set_trust_env(opts, 1, &err);
            } else if (!strcmp(a, "--insecure")) {
                c = tern_session_options_set_danger_accept_invalid_certs(opts, 1, &err);
            } else if (!strcmp(a, "-4")) {
                c = tern_session_options_set_ip_family(opts, TERN_IP_FAMILY_V4, &err);
            } else if (!strcmp(a, "-6")) {
                c = tern_session_options_set_ip_family(opts, TERN_IP_FAMILY_V6, &err);
            } else if (a[0] != '-' && !*url) {
                *url = a;
            } else {
                return 2;
            }
        }
        if (c != TERN_CODE_OK) return fail(a, c, err);
        i += takes_value;
    }
    if (!*url || (cert == NULL) != (key == NULL)) return 2;
    if (cert && (c = tern_session_options_set_client_cert_file(opts, cert, key, &err)) != TERN_CODE_OK)
        return fail("--cert/--key", c, err);
    if ((limit || per_host) &&
        (c = tern_session_options_set_connection_limits(opts, limit, per_host, &err)) != TERN_CODE_OK)
        return fail("--limit", c, err);
    return 0;
}

int main(int argc, char **argv) {
    tern_error *err = NULL;
    tern_session_options *opts = NULL;
    tern_code c = tern_session_options_new(&opts, &err);
    if (c != TERN_CODE_OK) return fail("options", c, err);

    const char *url = NULL;
    int rc = configure(opts, argc, argv, &url);
    if (rc != 0) {
        tern_session_options_free(opts);
        return rc == 2 ? usage(argv[0]) : rc;
    }

    tern_runtime *rt = NULL;
    if ((c = tern_runtime_new(NULL, &rt, &err)) != TERN_CODE_OK) {
        tern_session_options_free(opts);
        return fail("runtime", c, err);
    }
    tern_session *session = NULL;
    c = tern_session_new(rt, opts, &session, &err);
    tern_session_options_free(opts); /* the session copied what it needs */
    if (c != TERN_CODE_OK) {
        tern_runtime_free(rt);
        return fail("session", c, err);
    }

    tern_request *req = NULL;
    int status = 1;
    if ((c = tern_request_new("GET", url, &req, &err)) != TERN_CODE_OK) {
        status = fail("request", c, err);
    } else {
        tern_response *resp = NULL;
        c = tern_session_perform(session, req, &resp, &err); /* consumes req */
        if (c != TERN_CODE_OK) {
            status = fail("perform", c, err);
        } else {
            tern_code outcome = tern_response_code(resp);
            const uint8_t *body;
            size_t len;
            tern_response_body(resp, &body, &len);
            printf("%s %u from %s, %zu bytes: %s\n", tern_code_name(outcome),
                   (unsigned)tern_response_status(resp), tern_response_remote_addr(resp), len,
                   tern_response_message(resp));
            status = outcome == TERN_CODE_OK ? 0 : 1;
            tern_response_free(resp);
        }
    }
    tern_session_free(session);
    tern_runtime_free(rt);
    return status;
}
