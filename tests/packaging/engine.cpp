// engine: what a game engine (or any long-lived C++ host) needs from libtern.a,
// linked statically with only -ltern and the system libraries tern.pc lists in
// Libs.private (tests/packaging/run.sh builds it so).
//
//   engine cycles N HTTP_BASE [HTTPS_BASE CA_FILE] [--rss-limit-kib KIB]
//       N cycles of tern_runtime_new / session / requests / free in one process, in
//       four kinds (a blocking GET; callbacks waited for; requests in flight when the
//       runtime is freed; HTTPS when given). Every accepted request must complete and
//       be released exactly once. With --rss-limit-kib, the resident set may grow at
//       most KIB between the end of the first quarter of the cycles and the end.
//       Prints "cycles: OK: N cycles ...".
//
//   engine signals HTTP_BASE HTTPS_PORT CA_FILE
//       The host owns the signals: SIGPIPE is set to SIG_DFL (a SIGPIPE kills the
//       process) and SIGINT and SIGUSR1 handlers are installed before
//       tern_runtime_new. Then large request bodies go to local listeners that close
//       or reset the connection while tern is writing: plain HTTP/1.1 (accept and
//       close at once; read 64 KiB and reset) and TLS, HTTP/2 (a relay to the HTTPS
//       server's /echo, which reads the whole body, on HTTPS_PORT, that resets after
//       256 KiB). Every request must fail
//       with an error code, the process must survive, the dispositions and the main
//       thread's signal mask must be as the host left them, and both handlers must
//       still run. Prints "signals: OK ...".
//
// Exit status: 0 when every check passed, 1 otherwise, 2 on bad usage.
#include <tern.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

int failures = 0;

#define CHECK(cond, ...)                                                            \
    do {                                                                            \
        if (!(cond)) {                                                              \
            ++failures;                                                             \
            std::fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            std::fprintf(stderr, __VA_ARGS__);                                      \
            std::fputc('\n', stderr);                                               \
        }                                                                           \
    } while (0)

const char *msg(tern_error *err) { return err ? tern_error_message(err) : ""; }

long rss_kib() {
    long pages_total = 0, pages_resident = 0;
    FILE *f = std::fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (std::fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = -1;
    std::fclose(f);
    return pages_resident * (sysconf(_SC_PAGESIZE) / 1024);
}

// --- requests with callbacks, each counted -------------------------------------------

struct Tracker;

struct Slot {
    Tracker *tracker;
    int completed = 0;
    int released = 0;
    tern_code code = TERN_CODE_INTERNAL;
    uint16_t status = 0;
    size_t body_len = 0;
};

struct Tracker {
    std::mutex lock;
    std::condition_variable changed;
    std::vector<std::unique_ptr<Slot>> slots;
    size_t accepted = 0;
    size_t released = 0;

    Slot *add() {
        std::lock_guard<std::mutex> g(lock);
        slots.push_back(std::make_unique<Slot>());
        slots.back()->tracker = this;
        return slots.back().get();
    }
    // Waits until every accepted request has been released (at most `secs`).
    bool wait_all(int secs) {
        std::unique_lock<std::mutex> g(lock);
        return changed.wait_for(g, std::chrono::seconds(secs),
                                [this] { return released >= accepted; });
    }
};

extern "C" void on_complete(void *user_data, tern_response *resp) {
    Slot *s = static_cast<Slot *>(user_data);
    const uint8_t *body = nullptr;
    size_t len = 0;
    tern_response_body(resp, &body, &len);
    {
        std::lock_guard<std::mutex> g(s->tracker->lock);
        s->completed++;
        s->code = tern_response_code(resp);
        s->status = tern_response_status(resp);
        s->body_len = len;
    }
    tern_response_free(resp);
}

extern "C" void on_release(void *user_data) {
    Slot *s = static_cast<Slot *>(user_data);
    Tracker *t = s->tracker;
    std::lock_guard<std::mutex> g(t->lock);
    s->released++;
    t->released++;
    t->changed.notify_all();
}

tern_callbacks make_callbacks() {
    tern_callbacks cb;
    std::memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.on_complete = on_complete;
    cb.release = on_release;
    return cb;
}

// Sends one request; true when tern accepted it.
bool send_request(tern_session *s, Tracker &t, const char *method, const std::string &url,
          const std::vector<uint8_t> *body = nullptr) {
    tern_request *rq = nullptr;
    tern_error *err = nullptr;
    tern_code c = tern_request_new(method, url.c_str(), &rq, &err);
    CHECK(c == TERN_CODE_OK, "tern_request_new(%s): %s", url.c_str(), msg(err));
    tern_error_free(err);
    err = nullptr;
    if (c != TERN_CODE_OK) return false;
    if (body) {
        c = tern_request_set_body(rq, body->data(), body->size(), &err);
        CHECK(c == TERN_CODE_OK, "tern_request_set_body: %s", msg(err));
        tern_error_free(err);
        err = nullptr;
    }
    tern_callbacks cb = make_callbacks();
    Slot *slot = t.add();
    uint64_t id = 0;
    c = tern_session_send(s, rq, &cb, slot, &id, &err);
    CHECK(c == TERN_CODE_OK, "tern_session_send(%s): %s: %s", url.c_str(), tern_code_name(c),
          msg(err));
    tern_error_free(err);
    if (c != TERN_CODE_OK) return false;
    std::lock_guard<std::mutex> g(t.lock);
    t.accepted++;
    return true;
}

// Every slot completed and released exactly once.
void check_exactly_once(Tracker &t, const char *what) {
    std::lock_guard<std::mutex> g(t.lock);
    for (auto &s : t.slots) {
        CHECK(s->completed == 1 && s->released == 1, "%s: completed %d times, released %d times",
              what, s->completed, s->released);
    }
}

// A blocking GET; returns the code (and the status, body length).
tern_code perform(tern_session *s, const std::string &url, uint16_t *status, size_t *len,
                  const std::vector<uint8_t> *body = nullptr) {
    tern_request *rq = nullptr;
    tern_error *err = nullptr;
    tern_code c = tern_request_new(body ? "POST" : "GET", url.c_str(), &rq, &err);
    CHECK(c == TERN_CODE_OK, "tern_request_new: %s", msg(err));
    tern_error_free(err);
    if (c != TERN_CODE_OK) return c;
    if (body) tern_request_set_body(rq, body->data(), body->size(), nullptr);
    tern_response *resp = nullptr;
    err = nullptr;
    c = tern_session_perform(s, rq, &resp, &err);
    CHECK(c == TERN_CODE_OK, "tern_session_perform: %s: %s", tern_code_name(c), msg(err));
    tern_error_free(err);
    if (c != TERN_CODE_OK) return c;
    c = tern_response_code(resp);
    if (status) *status = tern_response_status(resp);
    const uint8_t *data = nullptr;
    size_t n = 0;
    tern_response_body(resp, &data, &n);
    if (len) *len = n;
    tern_response_free(resp);
    return c;
}

tern_session *new_session(tern_runtime *rt, const char *ca) {
    tern_session_options *o = nullptr;
    tern_error *err = nullptr;
    tern_code c = tern_session_options_new(&o, &err);
    CHECK(c == TERN_CODE_OK, "tern_session_options_new: %s", msg(err));
    tern_error_free(err);
    err = nullptr;
    if (ca) {
        c = tern_session_options_add_ca_file(o, ca, &err);
        CHECK(c == TERN_CODE_OK, "add_ca_file(%s): %s", ca, msg(err));
        tern_error_free(err);
        err = nullptr;
    }
    tern_session *s = nullptr;
    c = tern_session_new(rt, o, &s, &err);
    CHECK(c == TERN_CODE_OK, "tern_session_new: %s", msg(err));
    tern_error_free(err);
    tern_session_options_free(o);
    return s;
}

// --- cycles --------------------------------------------------------------------------

int run_cycles(long n, const std::string &http, const char *https, const char *ca,
               long rss_limit_kib) {
    const long checkpoint = n / 4;
    long rss_at_checkpoint = -1, rss_max_after = -1;
    size_t shutdown_codes = 0, ok_codes = 0;
    for (long i = 0; i < n && failures < 20; i++) {
        tern_runtime *rt = nullptr;
        tern_error *err = nullptr;
        tern_code c = tern_runtime_new(nullptr, &rt, &err);
        CHECK(c == TERN_CODE_OK, "cycle %ld: tern_runtime_new: %s", i, msg(err));
        tern_error_free(err);
        if (c != TERN_CODE_OK) break;
        tern_session *s = new_session(rt, https ? ca : nullptr);
        int kind = static_cast<int>(i % 4);
        if (kind == 3 && !https) kind = 0;
        if (kind == 0 || kind == 3) {
            // A blocking request, then session and runtime freed.
            uint16_t status = 0;
            size_t len = 0;
            std::string url = kind == 0 ? http + "/hello" : std::string(https) + "/hello";
            c = perform(s, url, &status, &len);
            CHECK(c == TERN_CODE_OK && status == 200 && len == 13,
                  "cycle %ld: GET %s: %s, status %u, %zu bytes", i, url.c_str(),
                  tern_code_name(c), status, len);
            tern_session_free(s);
            tern_runtime_free(rt);
        } else {
            Tracker t;
            for (int k = 0; k < 4; k++) send_request(s, t, "GET", http + "/hello");
            if (kind == 1) {
                // Callbacks waited for, then the session freed before the runtime.
                CHECK(t.wait_all(30), "cycle %ld: requests not released in 30 s", i);
                tern_session_free(s);
                tern_runtime_free(rt);
            } else {
                // The runtime freed with the requests in flight: they complete (OK or
                // SHUTDOWN) and are released, exactly once; the session freed after.
                tern_runtime_free(rt);
                CHECK(t.wait_all(30), "cycle %ld: requests not released in 30 s", i);
                tern_session_free(s);
            }
            check_exactly_once(t, "cycle");
            std::lock_guard<std::mutex> g(t.lock);
            for (auto &slot : t.slots) {
                if (slot->code == TERN_CODE_OK) {
                    if (kind == 2) ok_codes++;
                    CHECK(slot->status == 200 && slot->body_len == 13,
                          "cycle %ld: status %u, %zu bytes", i, slot->status, slot->body_len);
                } else if (slot->code == TERN_CODE_SHUTDOWN && kind == 2) {
                    shutdown_codes++;
                } else {
                    CHECK(false, "cycle %ld (kind %d): %s", i, kind, tern_code_name(slot->code));
                }
            }
        }
        if (i + 1 == checkpoint) rss_at_checkpoint = rss_kib();
        if (i + 1 > checkpoint && (i + 1) % 100 == 0) {
            long r = rss_kib();
            if (r > rss_max_after) rss_max_after = r;
        }
        if ((i + 1) % 500 == 0 || i + 1 == n) {
            std::printf("rss: after cycle %ld: %ld KiB\n", i + 1, rss_kib());
            std::fflush(stdout);
        }
    }
    long end = rss_kib();
    if (end > rss_max_after) rss_max_after = end;
    if (rss_limit_kib >= 0 && rss_at_checkpoint > 0) {
        CHECK(rss_max_after - rss_at_checkpoint <= rss_limit_kib,
              "RSS grew by %ld KiB from cycle %ld (%ld KiB) to the end (max %ld KiB); limit %ld",
              rss_max_after - rss_at_checkpoint, checkpoint, rss_at_checkpoint, rss_max_after,
              rss_limit_kib);
    }
    std::printf("requests in flight at tern_runtime_free: %zu completed OK, %zu SHUTDOWN\n", ok_codes,
                shutdown_codes);
    if (failures) {
        std::printf("cycles: FAILED (%d failures)\n", failures);
        return 1;
    }
    std::printf("cycles: OK: %ld cycles; RSS %ld KiB at cycle %ld, at most %ld KiB after\n", n,
                rss_at_checkpoint, checkpoint, rss_max_after);
    return 0;
}

// --- signals -------------------------------------------------------------------------

volatile sig_atomic_t got_sigint = 0, got_sigusr1 = 0;
extern "C" void on_sigint(int) { got_sigint = got_sigint + 1; }
extern "C" void on_sigusr1(int) { got_sigusr1 = got_sigusr1 + 1; }

void set_handler(int sig, void (*fn)(int)) {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(sig, &sa, nullptr) == 0, "sigaction(%d): %s", sig, std::strerror(errno));
}

void (*current_handler(int sig))(int) {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sigaction(sig, nullptr, &sa);
    return sa.sa_handler;
}

// A listener on 127.0.0.1 (an ephemeral port) whose connections a thread handles.
struct Listener {
    int fd = -1;
    int port = 0;
    std::atomic<bool> stop{false};
    std::atomic<int> accepted{0};
    std::thread thread;

    bool open() {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return false;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a;
        std::memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) return false;
        if (listen(fd, 64) != 0) return false;
        socklen_t len = sizeof a;
        getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
        port = ntohs(a.sin_port);
        return true;
    }
    std::vector<std::thread> handlers; // used by `thread` only, joined by finish()

    // Runs handle(conn) on a thread of its own for each connection, until stop.
    template <typename F> void start(F handle) {
        thread = std::thread([this, handle] {
            while (!stop.load()) {
                pollfd p = {fd, POLLIN, 0};
                if (poll(&p, 1, 50) <= 0) continue;
                int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
                if (c < 0) continue;
                accepted++;
                handlers.emplace_back(handle, c);
            }
            for (auto &h : handlers) h.join();
        });
    }
    void finish() {
        stop = true;
        if (thread.joinable()) thread.join();
        if (fd >= 0) close(fd);
    }
};

// Closes with a reset (RST) rather than a FIN.
void close_with_reset(int fd) {
    linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

// Reads up to `n` bytes (or until EOF/error/2 s of silence).
size_t drain(int fd, size_t n) {
    std::vector<char> buf(65536);
    size_t got = 0;
    while (got < n) {
        pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 2000) <= 0) break;
        ssize_t r = read(fd, buf.data(), std::min(buf.size(), n - got));
        if (r <= 0) break;
        got += static_cast<size_t>(r);
    }
    return got;
}

int connect_local(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a;
    std::memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// Relays a TLS connection to 127.0.0.1:upstream both ways until `limit` bytes came from
// the client, then resets both sides.
void relay_then_reset(int client, int upstream_port, size_t limit) {
    int up = connect_local(upstream_port);
    if (up < 0) {
        close(client);
        return;
    }
    std::vector<char> buf(65536);
    size_t from_client = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (from_client < limit && std::chrono::steady_clock::now() < deadline) {
        pollfd p[2] = {{client, POLLIN, 0}, {up, POLLIN, 0}};
        if (poll(p, 2, 200) <= 0) continue;
        bool done = false;
        for (int k = 0; k < 2 && !done; k++) {
            if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            int from = k == 0 ? client : up, to = k == 0 ? up : client;
            ssize_t r = read(from, buf.data(), buf.size());
            if (r <= 0) {
                done = true;
                break;
            }
            if (k == 0) from_client += static_cast<size_t>(r);
            size_t off = 0;
            while (off < static_cast<size_t>(r)) {
                ssize_t w = ::send(to, buf.data() + off, static_cast<size_t>(r) - off, MSG_NOSIGNAL);
                if (w <= 0) {
                    done = true;
                    break;
                }
                off += static_cast<size_t>(w);
            }
        }
        if (done) break;
    }
    close_with_reset(client);
    close_with_reset(up);
}

int run_signals(const std::string &http, int https_port, const char *ca) {
    // The host's signal set-up, before tern starts any thread.
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    CHECK(sigaction(SIGPIPE, &dfl, nullptr) == 0, "sigaction(SIGPIPE, SIG_DFL)");
    set_handler(SIGINT, on_sigint);
    set_handler(SIGUSR1, on_sigusr1);
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGPIPE);
    sigaddset(&unblock, SIGINT);
    sigaddset(&unblock, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &unblock, nullptr); // tern's threads inherit this

    // The listeners: accept and close at once; read 64 KiB then reset; TLS relay.
    Listener closer, resetter, tls;
    CHECK(closer.open() && resetter.open() && tls.open(), "listen: %s", std::strerror(errno));
    closer.start([](int c) { close(c); });
    resetter.start([](int c) {
        drain(c, 64 * 1024);
        close_with_reset(c);
    });
    tls.start([https_port](int c) { relay_then_reset(c, https_port, 256 * 1024); });

    tern_runtime *rt = nullptr;
    tern_error *err = nullptr;
    tern_code c = tern_runtime_new(nullptr, &rt, &err);
    CHECK(c == TERN_CODE_OK, "tern_runtime_new: %s", msg(err));
    tern_error_free(err);
    if (c != TERN_CODE_OK) return 1;
    tern_session *s = new_session(rt, ca);

    const std::vector<uint8_t> body(8u << 20, 'x'); // 8 MiB
    struct Target {
        const char *name;
        std::string url;
    };
    std::vector<Target> targets = {
        {"accept+close", "http://127.0.0.1:" + std::to_string(closer.port) + "/upload"},
        {"read 64 KiB+reset", "http://127.0.0.1:" + std::to_string(resetter.port) + "/upload"},
        {"TLS relay, reset after 256 KiB",
         "https://localhost:" + std::to_string(tls.port) + "/echo"},
    };
    const int rounds = 3, per_round = 6;
    std::map<std::string, int> outcomes;
    for (const Target &tg : targets) {
        for (int round = 0; round < rounds; round++) {
            Tracker t;
            for (int k = 0; k < per_round; k++) send_request(s, t, "POST", tg.url, &body);
            CHECK(t.wait_all(60), "%s: requests not released in 60 s", tg.name);
            check_exactly_once(t, tg.name);
            std::lock_guard<std::mutex> g(t.lock);
            for (auto &slot : t.slots) {
                CHECK(slot->code != TERN_CODE_OK, "%s: a request succeeded (status %u)", tg.name,
                      slot->status);
                outcomes[std::string(tg.name) + ": " + tern_code_name(slot->code)]++;
            }
        }
        // And one blocking request on this thread.
        tern_request *rq = nullptr;
        tern_request_new("POST", tg.url.c_str(), &rq, nullptr);
        tern_request_set_body(rq, body.data(), body.size(), nullptr);
        tern_response *resp = nullptr;
        c = tern_session_perform(s, rq, &resp, nullptr);
        CHECK(c == TERN_CODE_OK, "%s: perform refused: %s", tg.name, tern_code_name(c));
        if (c == TERN_CODE_OK) {
            CHECK(tern_response_code(resp) != TERN_CODE_OK, "%s: perform succeeded", tg.name);
            outcomes[std::string(tg.name) + ": " + tern_code_name(tern_response_code(resp))]++;
            tern_response_free(resp);
        }
    }
    std::printf("listeners accepted: %d, %d, %d connections\n", closer.accepted.load(),
                resetter.accepted.load(), tls.accepted.load());
    CHECK(closer.accepted > 0 && resetter.accepted > 0 && tls.accepted > 0,
          "a listener saw no connection");
    for (auto &kv : outcomes) std::printf("  %-52s %d\n", kv.first.c_str(), kv.second);

    // tern still works, and left the host's signal set-up alone.
    uint16_t status = 0;
    size_t len = 0;
    c = perform(s, http + "/hello", &status, &len);
    CHECK(c == TERN_CODE_OK && status == 200, "GET /hello after the resets: %s %u",
          tern_code_name(c), status);
    CHECK(current_handler(SIGPIPE) == SIG_DFL, "SIGPIPE is no longer SIG_DFL");
    CHECK(current_handler(SIGINT) == on_sigint, "the SIGINT handler was replaced");
    CHECK(current_handler(SIGUSR1) == on_sigusr1, "the SIGUSR1 handler was replaced");
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    CHECK(!sigismember(&mask, SIGPIPE) && !sigismember(&mask, SIGINT) &&
              !sigismember(&mask, SIGUSR1),
          "the main thread's signal mask changed");

    // The handlers run: thread-directed (raise) and process-directed (kill), with
    // tern's threads alive.
    raise(SIGUSR1);
    kill(getpid(), SIGINT);
    kill(getpid(), SIGUSR1);
    for (int k = 0; k < 200 && (got_sigint < 1 || got_sigusr1 < 2); k++) usleep(10000);
    CHECK(got_sigint == 1 && got_sigusr1 == 2, "handlers ran: SIGINT %d (want 1), SIGUSR1 %d (want 2)",
          static_cast<int>(got_sigint), static_cast<int>(got_sigusr1));

    tern_session_free(s);
    tern_runtime_free(rt);
    closer.finish();
    resetter.finish();
    tls.finish();
    CHECK(current_handler(SIGPIPE) == SIG_DFL, "SIGPIPE is no longer SIG_DFL after free");
    if (failures) {
        std::printf("signals: FAILED (%d failures)\n", failures);
        return 1;
    }
    std::printf("signals: OK: survived %d resets with SIGPIPE at SIG_DFL; host handlers ran\n",
                closer.accepted.load() + resetter.accepted.load() + tls.accepted.load());
    return 0;
}

int usage() {
    std::fprintf(stderr,
                 "usage: engine cycles N HTTP_BASE [HTTPS_BASE CA_FILE] [--rss-limit-kib KIB]\n"
                 "       engine signals HTTP_BASE HTTPS_PORT CA_FILE\n");
    return 2;
}

} // namespace

int main(int argc, char **argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (tern_version_check(TERN_VERSION_MAJOR, TERN_VERSION_MINOR) != TERN_CODE_OK) {
        std::fprintf(stderr, "libtern %s does not match this header\n", tern_version());
        return 1;
    }
    if (argc < 2) return usage();
    std::string mode = argv[1];
    if (mode == "cycles") {
        std::vector<std::string> args(argv + 2, argv + argc);
        long limit = -1;
        for (size_t k = 0; k < args.size(); k++) {
            if (args[k] == "--rss-limit-kib" && k + 1 < args.size()) {
                limit = std::atol(args[k + 1].c_str());
                args.erase(args.begin() + static_cast<long>(k), args.begin() + static_cast<long>(k) + 2);
                break;
            }
        }
        if (args.size() != 2 && args.size() != 4) return usage();
        long n = std::atol(args[0].c_str());
        if (n < 4) return usage();
        return run_cycles(n, args[1], args.size() == 4 ? args[2].c_str() : nullptr,
                          args.size() == 4 ? args[3].c_str() : nullptr, limit);
    }
    if (mode == "signals" && argc == 5) return run_signals(argv[2], std::atoi(argv[3]), argv[4]);
    return usage();
}
