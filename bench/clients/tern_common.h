/* Shared by tern_cb.c and tern_queued.c: the session settings for a benchmark run,
 * and the request pump.
 *
 * Settings: only the CA file (and no system roots) when --cacert is given; HTTP/1.1
 * only, or HTTP/2 only with --http2; idle connections kept per host up to the
 * concurrency (the default, 32, would close connections above it and reopen them) and
 * at most `concurrency` connections per host; --no-reuse keeps no idle connection, so
 * each request opens its own. Everything else is tern's default (decoding on,
 * redirects followed, time-outs).
 *
 * The pump: the first C requests are sent by the caller; every on_complete sends the
 * next one (from the callback, which tern allows), so at most C are in flight and no
 * thread waits between requests. `user_data` is the run itself: no allocation per
 * request.
 */
#ifndef BENCH_TERN_COMMON_H
#define BENCH_TERN_COMMON_H

#include <pthread.h>
#include <stdatomic.h>

#include "common.h"
#include "tern.h"

struct run {
    struct bench_opts o;
    const tern_session *session;
    atomic_long next;      /* index of the next request to send */
    atomic_long done;      /* requests finished (completed or refused) */
    atomic_long ok;
    atomic_long failed;
    atomic_ullong bytes;
    pthread_mutex_t lock;  /* guards finished and first_error */
    pthread_cond_t finished_cv;
    int finished;
    char first_error[300];
};

static void run_error(struct run *r, const char *what, const char *message) {
    pthread_mutex_lock(&r->lock);
    if (r->first_error[0] == '\0') {
        snprintf(r->first_error, sizeof r->first_error, "%s: %s", what,
                 message ? message : "");
    }
    pthread_mutex_unlock(&r->lock);
}

static void run_finish_one(struct run *r) {
    if (atomic_fetch_add(&r->done, 1) + 1 == r->o.requests) {
        pthread_mutex_lock(&r->lock);
        r->finished = 1;
        pthread_cond_broadcast(&r->finished_cv);
        pthread_mutex_unlock(&r->lock);
    }
}

static uint32_t on_data(void *user_data, const uint8_t *data, size_t len) {
    (void)data;
    struct run *r = (struct run *)user_data;
    atomic_fetch_add_explicit(&r->bytes, len, memory_order_relaxed);
    return TERN_ACTION_CONTINUE;
}

static void pump(struct run *r);

static void on_complete(void *user_data, tern_response *resp) {
    struct run *r = (struct run *)user_data;
    tern_code code = tern_response_code(resp);
    uint16_t status = tern_response_status(resp);
    if (code == TERN_CODE_OK && status == 200) {
        if (!r->o.stream) {
            const uint8_t *body = NULL;
            size_t len = 0;
            tern_response_body(resp, &body, &len);
            atomic_fetch_add_explicit(&r->bytes, len, memory_order_relaxed);
        }
        atomic_fetch_add(&r->ok, 1);
    } else {
        atomic_fetch_add(&r->failed, 1);
        char what[64];
        snprintf(what, sizeof what, "%s status %u", tern_code_name(code), status);
        run_error(r, what, tern_response_message(resp));
    }
    tern_response_free(resp);
    pump(r);
    run_finish_one(r);
}

/* Sends the next request, if any is left. A refused one counts as failed and the
 * next is tried. */
static void pump(struct run *r) {
    static const tern_callbacks plain = {
        .struct_size = sizeof(tern_callbacks),
        .on_complete = on_complete,
    };
    static const tern_callbacks streaming = {
        .struct_size = sizeof(tern_callbacks),
        .on_complete = on_complete,
        .on_data = on_data,
    };
    for (;;) {
        long i = atomic_fetch_add(&r->next, 1);
        if (i >= r->o.requests) return;
        tern_error *err = NULL;
        tern_request *req = NULL;
        tern_code code = tern_request_new("GET", r->o.url, &req, &err);
        if (code == TERN_CODE_OK) {
            code = tern_session_send(r->session, req, r->o.stream ? &streaming : &plain, r,
                                     NULL, &err);
        }
        if (code == TERN_CODE_OK) return;
        atomic_fetch_add(&r->failed, 1);
        run_error(r, tern_code_name(code), err ? tern_error_message(err) : "");
        tern_error_free(err);
        run_finish_one(r);
    }
}

static int tern_fail(const char *what, tern_code code, tern_error *err) {
    fprintf(stderr, "%s: %s: %s\n", what, tern_code_name(code),
            err ? tern_error_message(err) : "");
    tern_error_free(err);
    return 1;
}

/* Makes the session for a run; `queued` selects TERN_DELIVERY_QUEUED. */
static int bench_session(const tern_runtime *rt, const struct bench_opts *o, int queued,
                         tern_session **out) {
    tern_error *err = NULL;
    tern_session_options *opts = NULL;
    tern_code code = tern_session_options_new(&opts, &err);
    if (code != TERN_CODE_OK) return tern_fail("tern_session_options_new", code, err);
#define OPT(call)                                                                    \
    do {                                                                             \
        code = (call);                                                               \
        if (code != TERN_CODE_OK) {                                                  \
            tern_session_options_free(opts);                                         \
            return tern_fail(#call, code, err);                                      \
        }                                                                            \
    } while (0)
    if (o->cacert) {
        OPT(tern_session_options_set_system_roots(opts, 0, &err));
        OPT(tern_session_options_add_ca_file(opts, o->cacert, &err));
    }
    OPT(tern_session_options_set_http_version(
        opts, o->http2 ? TERN_HTTP_VERSION_HTTP2_PRIOR_KNOWLEDGE : TERN_HTTP_VERSION_HTTP1,
        &err));
    OPT(tern_session_options_set_pool(opts, 30000, o->no_reuse ? 0 : (uint32_t)o->concurrency,
                                      &err));
    OPT(tern_session_options_set_connection_limits(opts, 0, (uint32_t)o->concurrency, &err));
    if (queued) OPT(tern_session_options_set_delivery(opts, TERN_DELIVERY_QUEUED, &err));
#undef OPT
    code = tern_session_new(rt, opts, out, &err);
    tern_session_options_free(opts);
    if (code != TERN_CODE_OK) return tern_fail("tern_session_new", code, err);
    return 0;
}

static int run_init(struct run *r, int argc, char **argv) {
    memset(r, 0, sizeof *r);
    bench_parse(argc, argv, &r->o);
    if (r->o.version) {
        printf("tern %s\n", tern_version());
        exit(0);
    }
    if (tern_version_check(TERN_VERSION_MAJOR, TERN_VERSION_MINOR) != TERN_CODE_OK) {
        fprintf(stderr, "libtern %s does not match tern.h\n", tern_version());
        return 1;
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->finished_cv, NULL);
    return 0;
}

#endif
