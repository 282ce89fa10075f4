/* tern_cb: tern from C, callbacks on tern's runtime threads (TERN_DELIVERY_RUNTIME_THREAD).
 *
 *   tern_cb --url URL --requests N --concurrency C [--cacert FILE] [--no-reuse]
 *           [--http2] [--stream]
 *
 * The main thread sends the first C requests and sleeps on a condition variable;
 * each on_complete, on a runtime thread, sends the next request (see tern_common.h).
 * The runtime has its default worker threads (one per CPU). One line of result
 * (common.h).
 */
#include "tern_common.h"

int main(int argc, char **argv) {
    static struct run r;
    if (run_init(&r, argc, argv) != 0) return 1;

    tern_error *err = NULL;
    tern_runtime *rt = NULL;
    tern_code code = tern_runtime_new(NULL, &rt, &err);
    if (code != TERN_CODE_OK) return tern_fail("tern_runtime_new", code, err);
    tern_session *session = NULL;
    if (bench_session(rt, &r.o, 0, &session) != 0) return 1;
    r.session = session;

    long base_rss = bench_rss_kib();
    double start = bench_now();
    for (long i = 0; i < r.o.concurrency; i++) pump(&r);
    pthread_mutex_lock(&r.lock);
    while (!r.finished) pthread_cond_wait(&r.finished_cv, &r.lock);
    pthread_mutex_unlock(&r.lock);
    double seconds = bench_now() - start;

    int status = bench_result("tern_cb", &r.o, atomic_load(&r.ok), atomic_load(&r.failed),
                              atomic_load(&r.bytes), seconds, base_rss, r.first_error);
    tern_session_free(session);
    tern_runtime_free(rt);
    return status;
}
