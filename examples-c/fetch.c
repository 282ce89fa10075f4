/* fetch: one URL, blocking. Prints the status, headers, timings and body size.
 *
 *   fetch URL [CA_FILE]
 *
 * Exit status: 0 when the exchange completed (any HTTP status), 1 on a tern error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tern.h"

static int die(const char *what, tern_code code, tern_error *err) {
    fprintf(stderr, "%s: %s: %s\n", what, tern_code_name(code),
            err ? tern_error_message(err) : "");
    tern_error_free(err);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s URL [CA_FILE]\n", argv[0]);
        return 2;
    }
    if (tern_version_check(TERN_VERSION_MAJOR, TERN_VERSION_MINOR) != TERN_CODE_OK) {
        fprintf(stderr, "libtern %s does not match this header\n", tern_version());
        return 1;
    }

    tern_error *err = NULL;
    tern_runtime *rt = NULL;
    tern_code c = tern_runtime_new(NULL, &rt, &err);
    if (c != TERN_CODE_OK) return die("runtime", c, err);

    tern_session_options *opts = NULL;
    tern_session_options_new(&opts, NULL);
    if (argc > 2 && (c = tern_session_options_add_ca_file(opts, argv[2], &err)) != TERN_CODE_OK) {
        tern_session_options_free(opts);
        tern_runtime_free(rt);
        return die("CA file", c, err);
    }
    tern_session *session = NULL;
    c = tern_session_new(rt, opts, &session, &err);
    tern_session_options_free(opts);
    if (c != TERN_CODE_OK) {
        tern_runtime_free(rt);
        return die("session", c, err);
    }

    tern_request *req = NULL;
    int status = 1;
    c = tern_request_new("GET", argv[1], &req, &err);
    if (c != TERN_CODE_OK) {
        status = die("request", c, err);
    } else {
        tern_response *resp = NULL;
        c = tern_session_perform(session, req, &resp, &err); /* consumes req */
        if (c != TERN_CODE_OK) {
            status = die("perform", c, err);
        } else if (tern_response_code(resp) != TERN_CODE_OK) {
            fprintf(stderr, "error: %s: %s\n", tern_code_name(tern_response_code(resp)),
                    tern_response_message(resp));
            tern_response_free(resp);
        } else {
            unsigned v = tern_response_version(resp);
            printf("HTTP/%u.%u %u  (%s, %u redirects, from %s)\n", v / 10, v % 10,
                   (unsigned)tern_response_status(resp), tern_response_effective_url(resp),
                   tern_response_redirect_count(resp), tern_response_remote_addr(resp));
            for (size_t i = 0; i < tern_response_header_count(resp); i++) {
                const char *name;
                size_t name_len, value_len;
                const uint8_t *value;
                tern_response_header_at(resp, i, &name, &name_len, &value, &value_len);
                printf("%.*s: %.*s\n", (int)name_len, name, (int)value_len, (const char *)value);
            }
            const uint8_t *body;
            size_t len;
            tern_response_body(resp, &body, &len);
            printf("\nbody: %zu bytes\n", len);
            printf("timings (us): dns %llu, connect %llu, tls %llu, first byte %llu, total %llu\n",
                   (unsigned long long)tern_response_timing_us(resp, TERN_TIMING_DNS),
                   (unsigned long long)tern_response_timing_us(resp, TERN_TIMING_CONNECT),
                   (unsigned long long)tern_response_timing_us(resp, TERN_TIMING_TLS),
                   (unsigned long long)tern_response_timing_us(resp, TERN_TIMING_TTFB),
                   (unsigned long long)tern_response_timing_us(resp, TERN_TIMING_TOTAL));
            tern_response_free(resp);
            status = 0;
        }
    }
    tern_session_free(session);
    tern_runtime_free(rt);
    return status;
}
