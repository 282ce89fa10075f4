/* tern_queued: tern from C, queued delivery (TERN_DELIVERY_QUEUED): every callback runs
 * on the caller's own thread inside tern_session_poll, woken by poll(2) on the
 * session's descriptor (tern_session_fd), as a frame loop or an event loop would.
 *
 *   tern_queued --url URL --requests N --concurrency C [--cacert FILE] [--no-reuse]
 *               [--http2] [--stream]
 *
 * The first C requests are sent, then each on_complete (on this thread) sends the next
 * (see tern_common.h). One line of result (common.h).
 */
#include <poll.h>

#include "tern_common.h"

int main(int argc, char **argv) {
    static struct run r;
    if (run_init(&r, argc, argv) != 0) return 1;

    tern_error *err = NULL;
    tern_runtime *rt = NULL;
    tern_code code = tern_runtime_new(NULL, &rt, &err);
    if (code != TERN_CODE_OK) return tern_fail("tern_runtime_new", code, err);
    tern_session *session = NULL;
    if (bench_session(rt, &r.o, 1, &session) != 0) return 1;
    r.session = session;
    int fd = -1;
    code = tern_session_fd(session, &fd, &err);
    if (code != TERN_CODE_OK) return tern_fail("tern_session_fd", code, err);

    long base_rss = bench_rss_kib();
    double start = bench_now();
    for (long i = 0; i < r.o.concurrency; i++) pump(&r);
    /* Callbacks run only here, on this thread: no lock is needed to read `finished`,
     * but run_finish_one takes it anyway (shared with tern_cb). */
    while (atomic_load(&r.done) < r.o.requests) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, 1000);
        if (n < 0 && errno != EINTR) {
            perror("poll");
            return 1;
        }
        code = tern_session_poll(session, 0, 0, NULL, &err);
        if (code != TERN_CODE_OK) return tern_fail("tern_session_poll", code, err);
    }
    double seconds = bench_now() - start;

    int status = bench_result("tern_queued", &r.o, atomic_load(&r.ok),
                              atomic_load(&r.failed), atomic_load(&r.bytes), seconds,
                              base_rss, r.first_error);
    tern_session_free(session);
    tern_runtime_free(rt);
    return status;
}
