/* curl_poll: libcurl's multi interface driven by curl_multi_perform and
 * curl_multi_poll, the simple loop of libcurl's examples, on one thread.
 *
 *   curl_poll --url URL --requests N --concurrency C [--cacert FILE] [--no-reuse]
 *             [--http2] [--stream] [--version]
 *
 * See curl_common.h for the settings; one line of result (common.h).
 */
#include "curl_common.h"

int main(int argc, char **argv) {
    static struct crun r;
    crun_init(&r, argc, argv);
    crun_setup(&r);

    long base_rss = bench_rss_kib();
    double start = bench_now();
    int running = 0;
    crun_fill(&r);
    while (r.done < r.o.requests) {
        CURLMcode mc = curl_multi_perform(r.multi, &running);
        if (mc != CURLM_OK) {
            fprintf(stderr, "curl_multi_perform: %s\n", curl_multi_strerror(mc));
            return 1;
        }
        long before = r.done;
        crun_collect(&r);
        if (r.done != before) continue; /* new transfers were added: perform at once */
        if (r.done >= r.o.requests) break;
        mc = curl_multi_poll(r.multi, NULL, 0, 1000, NULL);
        if (mc != CURLM_OK) {
            fprintf(stderr, "curl_multi_poll: %s\n", curl_multi_strerror(mc));
            return 1;
        }
    }
    double seconds = bench_now() - start;
    int status = bench_result("curl_poll", &r.o, r.ok, r.failed, r.bytes, seconds, base_rss,
                              r.first_error);
    crun_cleanup(&r);
    return status;
}
