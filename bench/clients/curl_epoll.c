/* curl_epoll: libcurl's multi interface driven by curl_multi_socket_action and epoll,
 * the event-driven way (CURLMOPT_SOCKETFUNCTION, CURLMOPT_TIMERFUNCTION), on one thread.
 *
 *   curl_epoll --url URL --requests N --concurrency C [--cacert FILE] [--no-reuse]
 *              [--http2] [--stream] [--version]
 *
 * See curl_common.h for the settings; one line of result (common.h).
 */
#include <sys/epoll.h>
#include <unistd.h>

#include "curl_common.h"

static int epfd = -1;
static double deadline = -1; /* from CURLMOPT_TIMERFUNCTION (bench_now() time); -1 = none */

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
    (void)e;
    (void)userp;
    struct epoll_event ev = {0};
    ev.data.fd = s;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
    /* socketp is non-NULL once the socket is known (curl_multi_assign below). */
    if (socketp == NULL) {
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST) {
            epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev);
        }
        curl_multi_assign((CURLM *)userp, s, (void *)1);
    } else if (epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT) {
        epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev);
    }
    return 0;
}

static int on_timer(CURLM *m, long ms, void *userp) {
    (void)m;
    (void)userp;
    deadline = ms < 0 ? -1 : bench_now() + (double)ms / 1000.0;
    return 0;
}

int main(int argc, char **argv) {
    static struct crun r;
    crun_init(&r, argc, argv);
    crun_setup(&r);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        perror("epoll_create1");
        return 1;
    }
    curl_multi_setopt(r.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(r.multi, CURLMOPT_SOCKETDATA, r.multi);
    curl_multi_setopt(r.multi, CURLMOPT_TIMERFUNCTION, on_timer);

    long base_rss = bench_rss_kib();
    double start = bench_now();
    int running = 0;
    crun_fill(&r); /* adding handles sets a 0 ms timer: the loop kicks them off */
    enum { MAX_EVENTS = 1024 };
    static struct epoll_event events[MAX_EVENTS];
    while (r.done < r.o.requests) {
        int wait = 1000;
        if (deadline >= 0) {
            double left = deadline - bench_now();
            wait = left <= 0 ? 0 : (int)(left * 1000.0) + 1;
        }
        int n = epoll_wait(epfd, events, MAX_EVENTS, wait);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int flags = 0;
            if (events[i].events & (EPOLLIN | EPOLLHUP)) flags |= CURL_CSELECT_IN;
            if (events[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
            if (events[i].events & EPOLLERR) flags |= CURL_CSELECT_ERR;
            curl_multi_socket_action(r.multi, events[i].data.fd, flags, &running);
        }
        crun_collect(&r);
        /* The timer: expired, or set to 0 ms by handles just added. */
        if (deadline >= 0 && bench_now() >= deadline) {
            deadline = -1;
            curl_multi_socket_action(r.multi, CURL_SOCKET_TIMEOUT, 0, &running);
            crun_collect(&r);
        }
    }
    double seconds = bench_now() - start;
    int status = bench_result("curl_epoll", &r.o, r.ok, r.failed, r.bytes, seconds, base_rss,
                              r.first_error);
    crun_cleanup(&r);
    close(epfd);
    return status;
}
