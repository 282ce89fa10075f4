/* tern_test: include/tern.hpp against the local test servers (tests/cpp/run.sh builds
 * it with g++ and clang++, -std=c++17 -Wall -Wextra -Werror -pedantic, under
 * AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer, with and without
 * exceptions, and runs it).
 *
 *   tern_test [NAME...]        (only the tests whose name contains one of NAME)
 *
 * Needs TERN_TEST_HTTP, TERN_TEST_HTTPS and TERN_TEST_CA (target/testenv/env.sh);
 * TERN_TEST_HTTPS_CLIENTCERT, TERN_TEST_CLIENT_CERT and TERN_TEST_CLIENT_KEY for
 * the client-certificate check. Prints PASS/FAIL per test, then
 * "tern_test: N passed, M failed"; exits 1 when any failed.
 */
#include "check.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

// ---------------------------------------------------------------------------------
// Checks: check.hpp (CHECK, CHECK_EQ, CHECK_OK, CHECK_ERR, env, eventually)

static const std::string H = env("TERN_TEST_HTTP");
static const std::string S = env("TERN_TEST_HTTPS");
static const std::string CA = env("TERN_TEST_CA");

static std::string read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream os;
    os << in.rdbuf();
    return os.str();
}

/* Deterministic bytes, all 256 values. */
static std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    std::uint32_t x = 2463534242u;
    for (std::size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s[i] = static_cast<char>(x & 0xff);
    }
    return s;
}

/* Counts down to zero; wait_for says whether it got there in time. */
class Latch {
public:
    explicit Latch(int n) : n_(n) {}
    void count_down() {
        std::lock_guard<std::mutex> g(m_);
        if (--n_ <= 0) cv_.notify_all();
    }
    bool wait_for(std::chrono::milliseconds limit = 20s) {
        std::unique_lock<std::mutex> g(m_);
        return cv_.wait_for(g, limit, [&] { return n_ <= 0; });
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    int n_;
};

/* A move-only object that counts its destruction, once (a moved-from one is empty):
 * captured by callables to prove each capture is destroyed exactly once. */
class Token {
public:
    explicit Token(std::atomic<int> *destroyed) noexcept : destroyed_(destroyed) {}
    Token(Token &&o) noexcept : destroyed_(std::exchange(o.destroyed_, nullptr)) {}
    Token &operator=(Token &&) = delete;
    Token(const Token &) = delete;
    ~Token() {
        if (destroyed_ != nullptr) ++*destroyed_;
    }
    bool alive() const noexcept { return destroyed_ != nullptr; }

private:
    std::atomic<int> *destroyed_;
};

/* A copyable object that counts its live instances (copies included). */
struct Probe {
    static std::atomic<int> live;
    Probe() noexcept { ++live; }
    Probe(const Probe &) noexcept { ++live; }
    Probe(Probe &&) noexcept { ++live; }
    ~Probe() { --live; }
};
std::atomic<int> Probe::live{0};

struct Env {
    tern::Runtime rt;
    tern::Session http;  // plain options
    tern::Session https; // trusts the test CA
};

static Env make_env() {
    Env e;
    e.rt = tern::Runtime::create(tern::RuntimeConfig{2, "tern-cpp-test"}).value();
    e.http = tern::Session::create(e.rt).value();
    e.https = tern::Session::create(e.rt, tern::SessionOptions().add_ca_file(CA)).value();
    return e;
}

// ---------------------------------------------------------------------------------
// Tests

static void test_get_http() {
    Env e = make_env();
    tern::Result<tern::Response> r = e.http.perform(tern::Request::get(H + "/hello"));
    CHECK_OK(r);
    if (!r) return;
    const tern::Response &resp = *r;
    CHECK_EQ(resp.code(), Code::Ok);
    CHECK(resp.ok());
    CHECK(resp.id() != 0);
    CHECK_EQ(resp.status(), 200);
    CHECK_EQ(resp.version(), 11u);
    CHECK_EQ(resp.body(), std::string_view("Hello, world!"));
    CHECK_EQ(resp.message(), std::string_view(""));
    CHECK_EQ(resp.header("content-type"), std::optional<std::string_view>("text/plain"));
    CHECK_EQ(resp.header("Content-Type"), std::optional<std::string_view>("text/plain"));
    CHECK_EQ(resp.header("content-type", 1), std::optional<std::string_view>());
    CHECK_EQ(resp.header("x-absent"), std::optional<std::string_view>());
    CHECK_EQ(resp.header(std::string_view("content-type\0x", 14)), std::optional<std::string_view>());
    CHECK_EQ(resp.effective_url(), H + "/hello");
    CHECK_EQ(resp.remote_addr(), H.substr(std::string("http://").size()));
    CHECK_EQ(resp.redirect_count(), 0u);
    CHECK(resp.timing(tern::Timing::Total) > 0us);
    CHECK(resp.timing(tern::Timing::Ttfb) <= resp.timing(tern::Timing::Total));

    // Every header, with structured bindings; names are lower case.
    std::size_t n = 0;
    bool saw_server = false;
    for (auto [name, value] : resp.headers()) {
        n++;
        CHECK(std::none_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; }));
        if (name == "server") saw_server = value == "nginx";
    }
    CHECK(saw_server);
    CHECK_EQ(n, resp.headers().size());
    CHECK(n >= 3);
    CHECK_EQ(std::distance(resp.headers().begin(), resp.headers().end()), static_cast<std::ptrdiff_t>(n));
    CHECK_EQ(resp.headers()[0].name, (*resp.headers().begin()).name);

    // A 404 is a completed exchange.
    auto r404 = e.http.perform(tern::Request::get(H + "/status/404"));
    CHECK_OK(r404);
    CHECK_EQ(r404->code(), Code::Ok);
    CHECK_EQ(r404->status(), 404);

    // Redirects: followed and counted; a lower limit fails.
    auto redir = e.http.perform(tern::Request::get(H + "/redirect/3"));
    CHECK_EQ(redir->redirect_count(), 3u);
    CHECK_EQ(redir->effective_url(), H + "/hello");
    auto too_many = e.http.perform(tern::Request::get(H + "/redirect/3").redirects(true, 1));
    CHECK_EQ(too_many->code(), Code::TooManyRedirects);
    auto not_followed = e.http.perform(tern::Request::get(H + "/redirect/3").redirects(false));
    CHECK_EQ(not_followed->status(), 302);

    // Request headers and methods reach the server.
    auto hdrs = e.http.perform(
        tern::Request("DELETE", H + "/headers").header("X-Test", "one").set_header("x-test", "two"));
    CHECK(hdrs->body().find("method=DELETE\n") != std::string_view::npos);
    CHECK(hdrs->body().find("x-test=two\n") != std::string_view::npos);
}

static void test_get_https_h2() {
    Env e = make_env();
    auto r = e.https.perform(tern::Request::get(S + "/hello"));
    CHECK_OK(r);
    CHECK_EQ(r->code(), Code::Ok);
    CHECK_EQ(r->version(), 20u);
    CHECK_EQ(r->body(), std::string_view("Hello, world!"));
    CHECK(r->timing(tern::Timing::Tls) > 0us);

    auto big = e.https.perform(tern::Request::get(S + "/bytes/1m"));
    CHECK_EQ(big->code(), Code::Ok);
    CHECK_EQ(big->version(), 20u);
    CHECK_EQ(big->body().size(), 1048576u);

    // HTTP/1.1 over TLS when asked.
    auto h1 = e.https.perform(tern::Request::get(S + "/hello").http_version(tern::HttpVersion::Http1));
    CHECK_EQ(h1->version(), 11u);
    CHECK_EQ(h1->status(), 200);
}

/* Many requests from several threads at once, each with a lambda capturing a move-only
 * Token (or a copyable Probe): on_complete runs exactly once per request, while its
 * capture is alive, and each capture is destroyed exactly once, after it. */
static void test_concurrent_lambdas() {
    Env e = make_env();
    constexpr int kThreads = 4, kPerThread = 100, kN = kThreads * kPerThread;
    struct Slot {
        std::atomic<int> completes{0};
        std::atomic<int> destroyed{0};
        std::atomic<int> destroyed_at_complete{-1};
        std::atomic<bool> ok{false};
        std::atomic<tern::RequestId> id{0}, seen_id{0};
    };
    std::vector<Slot> slots(kN);
    std::atomic<int> refused{0};
    Probe::live = 0;

    auto sender = [&](int t) {
        for (int k = 0; k < kPerThread; k++) {
            int i = t * kPerThread + k;
            const tern::Session &s = (i % 2 == 0) ? e.http : e.https;
            std::string url = ((i % 2 == 0) ? H : S) + "/hello";
            tern::Result<tern::RequestId> id = tern::RequestId{0};
            if (i % 4 == 3) {
                // A copyable lambda (a Probe copy per copy of the lambda).
                Probe probe;
                id = s.send(tern::Request::get(url), [&slots, i, probe](tern::Response r) {
                    (void)probe;
                    Slot &sl = slots[static_cast<std::size_t>(i)];
                    sl.destroyed_at_complete = sl.destroyed.load();
                    sl.seen_id = r.id();
                    sl.ok = r.ok() && r.status() == 200 && r.body() == "Hello, world!";
                    sl.completes++;
                });
            } else {
                Token token(&slots[static_cast<std::size_t>(i)].destroyed);
                id = s.send(
                    tern::Request::get(url),
                    tern::Handlers().on_complete([&slots, i, tok = std::move(token)](tern::Response r) {
                        Slot &sl = slots[static_cast<std::size_t>(i)];
                        sl.destroyed_at_complete = tok.alive() ? sl.destroyed.load() : -2;
                        sl.seen_id = r.id();
                        sl.ok = r.ok() && r.status() == 200 && r.body() == "Hello, world!";
                        sl.completes++;
                    }));
            }
            if (id) {
                slots[static_cast<std::size_t>(i)].id = *id;
            } else {
                refused++;
            }
        }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; t++) threads.emplace_back(sender, t);
    for (auto &th : threads) th.join();
    CHECK_EQ(refused.load(), 0);

    // Wait for every release: the Tokens' destructors, and every Probe gone.
    bool all = eventually([&] {
        for (int i = 0; i < kN; i++) {
            if (i % 4 != 3 && slots[static_cast<std::size_t>(i)].destroyed.load() == 0) return false;
            if (slots[static_cast<std::size_t>(i)].completes.load() == 0) return false;
        }
        return Probe::live.load() == 0;
    });
    CHECK(all);
    std::this_thread::sleep_for(50ms); // a second completion or release would show now
    int bad = 0;
    for (int i = 0; i < kN; i++) {
        Slot &sl = slots[static_cast<std::size_t>(i)];
        bool good = sl.completes == 1 && sl.ok && sl.seen_id == sl.id && sl.id != 0 &&
                    (i % 4 == 3 ? true : (sl.destroyed == 1 && sl.destroyed_at_complete == 0));
        if (!good && bad++ < 5) {
            report(__FILE__, __LINE__,
                   "request " + std::to_string(i) + ": completes " + std::to_string(sl.completes) + ", ok " +
                       std::to_string(sl.ok) + ", destroyed " + std::to_string(sl.destroyed) +
                       ", destroyed at complete " + std::to_string(sl.destroyed_at_complete));
        }
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(Probe::live.load(), 0);
}

/* on_headers, on_data with a pause, resume from the main thread, on_progress; the
 * streamed bytes equal the body a blocking request gets. */
static void test_stream_pause_resume() {
    Env e = make_env();
    auto whole = e.http.perform(tern::Request::get(H + "/bytes/1m"));
    CHECK_EQ(whole->body().size(), 1048576u);

    struct State {
        std::mutex m;
        std::condition_variable cv;
        std::string got;
        std::size_t chunks = 0, chunks_while_paused = 0;
        bool paused = false, paused_once = false, done = false;
        int progress_calls = 0;
        std::uint64_t progress_received = 0;
        std::uint16_t head_status = 0;
        std::optional<std::string> head_length;
        tern::Code code = Code::Internal;
        std::size_t kept_body = 99;
    } st;
    std::atomic<int> destroyed{0};

    auto id = e.http.send(tern::Request::get(H + "/bytes/1m"),
                          tern::Handlers()
                              .on_headers([&st](const tern::ResponseView &head) {
                                  std::lock_guard<std::mutex> g(st.m);
                                  st.head_status = head.status();
                                  if (auto len = head.header("content-length"))
                                      st.head_length = std::string(*len);
                                  return tern::Action::Continue;
                              })
                              .on_data([&st, tok = Token(&destroyed)](std::string_view chunk) {
                                  std::lock_guard<std::mutex> g(st.m);
                                  if (st.paused) st.chunks_while_paused++;
                                  st.chunks++;
                                  st.got.append(chunk);
                                  if (!st.paused_once && st.got.size() >= 65536) {
                                      st.paused_once = st.paused = true;
                                      st.cv.notify_all();
                                      return tern::Action::Pause;
                                  }
                                  return tern::Action::Continue;
                              })
                              .on_progress([&st](const tern::Progress &p) {
                                  std::lock_guard<std::mutex> g(st.m);
                                  st.progress_calls++;
                                  st.progress_received = p.received;
                              })
                              .on_complete([&st](tern::Response r) {
                                  std::lock_guard<std::mutex> g(st.m);
                                  st.code = r.code();
                                  st.kept_body = r.body().size();
                                  st.done = true;
                                  st.cv.notify_all();
                              }));
    CHECK_OK(id);
    if (!id) return;
    {
        std::unique_lock<std::mutex> g(st.m);
        CHECK(st.cv.wait_for(g, 10s, [&] { return st.paused; }));
    }
    std::this_thread::sleep_for(300ms);
    {
        std::lock_guard<std::mutex> g(st.m);
        CHECK_EQ(st.chunks_while_paused, 0u);
        CHECK(!st.done);
        st.paused = false; // before the resume: a chunk after it is legitimate
    }
    CHECK_OK(e.http.resume(*id));
    {
        std::unique_lock<std::mutex> g(st.m);
        CHECK(st.cv.wait_for(g, 20s, [&] { return st.done; }));
        CHECK_EQ(st.code, Code::Ok);
        CHECK_EQ(st.head_status, 200);
        CHECK_EQ(st.head_length, std::optional<std::string>("1048576"));
        CHECK_EQ(st.got.size(), 1048576u);
        CHECK(st.got == whole->body());
        CHECK_EQ(st.kept_body, 0u); // streamed: not kept
        CHECK(st.progress_calls >= 1);
        CHECK(st.progress_received >= 1048576u);
    }
    CHECK(eventually([&] { return destroyed.load() == 1; }));
    CHECK_ERR(e.http.resume(*id), Code::NotFound); // no longer in flight
    CHECK_EQ(destroyed.load(), 1);
}

/* A body from a reader lambda (known length and chunked), and moved/copied bodies. */
static void test_upload_reader() {
    Env e = make_env();
    const std::string data = pattern(300 * 1024 + 7);
    const std::string want = "method=POST\n" + data;
    for (std::int64_t length : {static_cast<std::int64_t>(data.size()), std::int64_t{-1}}) {
        std::atomic<int> destroyed{0};
        std::atomic<int> calls{0};
        auto reader = [copy = data, off = std::size_t{0}, tok = Token(&destroyed),
                       &calls](char *buf, std::size_t cap) mutable {
            calls++;
            std::size_t n = std::min(cap, copy.size() - off);
            std::memcpy(buf, copy.data() + off, n);
            off += n;
            return off == copy.size() ? tern::ReadResult::end(n) : tern::ReadResult::data(n);
        };
        tern::Request req = tern::Request::post(H + "/echo")
                                .header("content-type", "application/octet-stream")
                                .body_reader(std::move(reader), length);
        CHECK(req.ok());
        if (length >= 0) {
            auto r = e.http.perform(std::move(req));
            CHECK_OK(r);
            CHECK_EQ(r->code(), Code::Ok);
            CHECK_EQ(r->status(), 200);
            CHECK(r->body() == want);
            CHECK(!r->callback_exception());
        } else {
            Latch done(1);
            std::string body;
            auto id = e.https.send(
                tern::Request::post(S + "/echo")
                    .body_reader([&data, off = std::size_t{0}](char *buf, std::size_t cap) mutable {
                        std::size_t n = std::min(cap, data.size() - off);
                        std::memcpy(buf, data.data() + off, n);
                        off += n;
                        return off == data.size() ? tern::ReadResult::end(n) : tern::ReadResult::data(n);
                    }),
                [&](tern::Response r) {
                    CHECK_EQ(r.code(), Code::Ok);
                    CHECK_EQ(r.version(), 20u);
                    body = std::string(r.body());
                    done.count_down();
                });
            CHECK_OK(id);
            CHECK(done.wait_for());
            CHECK(body == want);
            // The first request's reader was never sent: freeing it destroys the lambda.
            req = tern::Request();
        }
        CHECK(eventually([&] { return destroyed.load() == 1; }));
        CHECK(calls.load() >= (length >= 0 ? 1 : 0));
        CHECK_EQ(destroyed.load(), 1);
    }

    // A reader that pauses until the main thread resumes the request.
    {
        std::atomic<int> state{0}; // 0: not asked yet, 1: paused, 2: resumed
        auto id = e.http.send(tern::Request::post(H + "/echo")
                                  .body_reader(
                                      [&state, done = false](char *buf, std::size_t cap) mutable {
                                          if (state.load() == 0) {
                                              state = 1;
                                              return tern::ReadResult::pause();
                                          }
                                          if (done || cap < 6) return tern::ReadResult::end(0);
                                          std::memcpy(buf, "resume", 6);
                                          done = true;
                                          return tern::ReadResult::data(6);
                                      },
                                      6),
                              [&state](tern::Response r) {
                                  CHECK_EQ(r.body(), std::string_view("method=POST\nresume"));
                                  state = 3;
                              });
        CHECK_OK(id);
        CHECK(eventually([&] { return state.load() == 1; }));
        std::this_thread::sleep_for(50ms);
        CHECK_EQ(state.load(), 1); // still paused
        state = 2;
        CHECK_OK(e.http.resume(*id));
        CHECK(eventually([&] { return state.load() == 3; }));
    }

    // Bodies: copied from a string_view or a literal, moved in (no copy), static.
    std::string owned = "moved string body";
    const char *owned_data = owned.data();
    auto moved = e.http.perform(tern::Request::post(H + "/echo").body(std::move(owned)));
    (void)owned_data;
    CHECK_EQ(moved->body(), std::string_view("method=POST\nmoved string body"));
    std::vector<std::uint8_t> bytes = {'v', 'e', 'c'};
    auto vec = e.http.perform(tern::Request::put(H + "/echo").body(std::move(bytes)));
    CHECK_EQ(vec->body(), std::string_view("method=PUT\nvec"));
    std::string_view view = "a view";
    auto copied = e.http.perform(tern::Request::post(H + "/echo").body(view));
    CHECK_EQ(copied->body(), std::string_view("method=POST\na view"));
    auto literal = e.http.perform(tern::Request::post(H + "/echo").body("a literal"));
    CHECK_EQ(literal->body(), std::string_view("method=POST\na literal"));
    static const char kStatic[] = "static bytes";
    auto stat = e.http.perform(tern::Request::post(H + "/echo").body_static(kStatic));
    CHECK_EQ(stat->body(), std::string_view("method=POST\nstatic bytes"));
}

/* A pushed body: write until WOULD_BLOCK, wait for on_upload_ready, end_body. */
static void test_upload_push() {
    Env e = make_env();
    const std::string data = pattern(1024 * 1024);
    struct State {
        std::mutex m;
        std::condition_variable cv;
        int ready = 0;
        bool done = false;
        tern::Response resp;
    } st;
    // Chunked: the body ends with end_body. (With a declared length it ends with its
    // last byte, and the request may be over, NOT_FOUND, by the time end_body comes.)
    auto id = e.http.send(tern::Request::post(H + "/echo").body_stream(),
                          tern::Handlers()
                              .on_upload_ready([&st] {
                                  std::lock_guard<std::mutex> g(st.m);
                                  st.ready++;
                                  st.cv.notify_all();
                              })
                              .on_complete([&st](tern::Response r) {
                                  std::lock_guard<std::mutex> g(st.m);
                                  st.resp = std::move(r);
                                  st.done = true;
                                  st.cv.notify_all();
                              }));
    CHECK_OK(id);
    if (!id) return;
    std::size_t off = 0;
    int would_block = 0;
    bool stuck = false;
    while (off < data.size() && !stuck) {
        int ready_before;
        {
            std::lock_guard<std::mutex> g(st.m);
            ready_before = st.ready;
        }
        std::size_t piece = std::min<std::size_t>(100000, data.size() - off);
        auto w = e.http.write(*id, std::string_view(data).substr(off, piece));
        if (w) {
            off += *w;
        } else if (w.code() == Code::WouldBlock) {
            would_block++;
            std::unique_lock<std::mutex> g(st.m);
            stuck = !st.cv.wait_for(g, 10s, [&] { return st.ready > ready_before || st.done; });
        } else {
            CHECK_OK(w);
            stuck = true;
        }
    }
    CHECK(!stuck);
    CHECK_OK(e.http.end_body(*id));
    std::unique_lock<std::mutex> g(st.m);
    CHECK(st.cv.wait_for(g, 20s, [&] { return st.done; }));
    CHECK_EQ(st.resp.code(), Code::Ok);
    CHECK(st.resp.body() == "method=POST\n" + data);
    CHECK(would_block == 0 || st.ready > 0);
    g.unlock();
    // Writing to a request that is gone fails; ending its body is a no-op.
    CHECK_ERR(e.http.write(*id, "x"), Code::NotFound);
    CHECK(e.http.end_body(*id).ok());
}

/* A refused send calls nothing and destroys the callables before it returns. */
static void test_refused_send() {
    Env e = make_env();
    std::atomic<int> destroyed{0}, called{0};
    auto counting = [&](Token tok) { return [&called, t = std::move(tok)](tern::Response) { called++; }; };

    // A request with a bad header: refused by the wrapper before tern sees it.
    auto bad =
        e.http.send(tern::Request::get(H + "/hello").header("X-Bad", "a\r\nb"), counting(Token(&destroyed)));
    CHECK_ERR(bad, Code::InvalidHeader);
    CHECK_EQ(destroyed.load(), 1);

    // A closed session: tern refuses (SHUTDOWN); every handler destroyed, none called.
    CHECK_OK(e.http.close(tern::Close::Graceful));
    auto closed = e.http.send(
        tern::Request::get(H + "/hello"),
        tern::Handlers()
            .on_complete(counting(Token(&destroyed)))
            .on_data([t = Token(&destroyed)](std::string_view) {})
            .on_headers([t = Token(&destroyed)](tern::ResponseView) { return tern::Action::Continue; })
            .on_progress([t = Token(&destroyed)](const tern::Progress &) {})
            .on_upload_ready([t = Token(&destroyed)] {}));
    CHECK_ERR(closed, Code::Shutdown);
    CHECK_EQ(destroyed.load(), 6);

    // The request's body reader is freed with it (tern consumes the request).
    std::atomic<int> reader_destroyed{0};
    auto with_reader = e.http.send(
        tern::Request::post(H + "/echo")
            .body_reader(
                [t = Token(&reader_destroyed)](char *, std::size_t) { return tern::ReadResult::end(0); }, 0),
        counting(Token(&destroyed)));
    CHECK_ERR(with_reader, Code::Shutdown);
    CHECK_EQ(destroyed.load(), 7);
    CHECK_EQ(reader_destroyed.load(), 1);

    // A moved-from session: NULL_ARGUMENT from tern.
    tern::Session moved = std::move(e.https);
    auto empty = e.https.send(tern::Request::get(S + "/hello"), counting(Token(&destroyed)));
    CHECK_ERR(empty, Code::NullArgument);
    CHECK_EQ(destroyed.load(), 8);

    // A perform on the closed session is refused too; the request is freed.
    CHECK_ERR(e.http.perform(tern::Request::get(H + "/hello")), Code::Shutdown);
    std::this_thread::sleep_for(50ms);
    CHECK_EQ(called.load(), 0);
}

/* Errors: refused calls as Result errors (code and message); failed exchanges as
 * responses with a code and message; sticky builder errors. */
static void test_errors() {
    Env e = make_env();
    CHECK_ERR(e.http.perform(tern::Request::get("not a url")), Code::InvalidUrl);
    CHECK_ERR(e.http.perform(tern::Request::get("ftp://127.0.0.1/")), Code::UnsupportedScheme);
    CHECK_ERR(e.http.perform(tern::Request("BAD METHOD", H + "/hello")), Code::InvalidMethod);
    CHECK_ERR(e.http.perform(tern::Request::get(std::string_view("http://a\0b/", 11))),
              Code::InvalidArgument);

    // The first error sticks; later setters do nothing.
    tern::Request req = tern::Request::get(H + "/hello");
    req.header("X-A", "1").header("Bad Name", "v").timeout(tern::Timeout::Total, -1ms).header("X-B", "2");
    CHECK(!req.ok());
    CHECK_EQ(req.error()->code(), Code::InvalidHeader);
    CHECK(!req.error()->message().empty());
    CHECK_ERR(e.http.perform(std::move(req)), Code::InvalidHeader);
    CHECK_ERR(e.http.perform(tern::Request::get(H).header("X-A", std::string_view("a\0b", 3))),
              Code::InvalidArgument);
    CHECK_ERR(e.http.perform(tern::Request::get(H).timeout(tern::Timeout::Total, -5ms)),
              Code::InvalidArgument);
    CHECK_ERR(e.http.perform(tern::Request::get(H).body_stream(-2)), Code::InvalidArgument);

    // Failed exchanges: a Response with the code and a message.
    auto refused = e.http.perform(tern::Request::get("http://127.0.0.1:1/"));
    CHECK_OK(refused);
    CHECK_EQ(refused->code(), Code::ConnectionRefused);
    CHECK(!refused->ok());
    CHECK(!refused->message().empty());
    CHECK_EQ(refused->status(), 0);
    CHECK_EQ(refused->error().code(), Code::ConnectionRefused);
    const tern::Error refused_error = refused->error();
    CHECK_EQ(refused_error.message(), std::string(refused->message()));
    CHECK_EQ(std::string(refused->error().name()), std::string("CONNECTION_REFUSED"));

    auto untrusted = e.http.perform(tern::Request::get(S + "/hello"));
    CHECK_EQ(untrusted->code(), Code::TlsVerify);
    CHECK(!untrusted->message().empty());

    auto slow = e.http.perform(tern::Request::get(H + "/bytes/16m").timeout(tern::Timeout::Total, 1ms));
    CHECK_EQ(slow->code(), Code::TimeoutTotal);

    // Options errors surface from Session::create.
    CHECK_ERR(tern::Session::create(e.rt, tern::SessionOptions().add_ca_file("/nonexistent/ca.pem")),
              Code::InvalidFile);
    CHECK_ERR(tern::Session::create(e.rt, tern::SessionOptions().max_header_size(10)), Code::InvalidArgument);
    CHECK_ERR(tern::Session::create(e.rt, tern::SessionOptions().proxy("gopher://x")),
              Code::UnsupportedScheme);
    auto opts = tern::SessionOptions()
                    .tls_versions(tern::TlsVersion::Tls13, tern::TlsVersion::Tls12)
                    .header("X-A", "1");
    CHECK(opts.error().has_value());
    CHECK_EQ(opts.error()->code(), Code::InvalidArgument);

    // Session calls on unknown ids, and the wrong delivery.
    CHECK_ERR(e.http.cancel(123456789), Code::NotFound);
    CHECK_ERR(e.http.resume(123456789), Code::NotFound);
    CHECK_ERR(e.http.write(123456789, "x"), Code::NotFound);
    CHECK_ERR(e.http.poll(), Code::InvalidState);
    CHECK_ERR(e.http.fd(), Code::InvalidState);
    CHECK_ERR(e.http.cookies(H + "/"), Code::InvalidState);
    CHECK_ERR(e.http.close(static_cast<tern::Close>(7)), Code::InvalidArgument);

    // Result accessors.
    tern::Result<int> good = 5;
    CHECK(good.ok());
    CHECK_EQ(good.value(), 5);
    CHECK_EQ(good.code(), Code::Ok);
    tern::Result<int> failed = tern::Error(Code::NotFound, "nothing");
    CHECK_EQ(failed.value_or(7), 7);
    CHECK_EQ(failed.error().to_string(), std::string("NOT_FOUND: nothing"));
#if TERN_HPP_EXCEPTIONS
    // The throwing layer: value() on an error throws tern::Exception.
    bool threw = false;
    try {
        tern::Session s =
            tern::Session::create(e.rt, tern::SessionOptions().add_ca_file("/nonexistent")).value();
        (void)s;
    } catch (const tern::Exception &ex) {
        threw = true;
        CHECK_EQ(ex.code(), Code::InvalidFile);
        CHECK(std::string(ex.what()).find("INVALID_FILE: ") == 0);
    }
    CHECK(threw);
    threw = false;
    try {
        e.http.cancel(42).value();
    } catch (const std::exception &ex) {
        threw = std::string(ex.what()).find("NOT_FOUND") != std::string::npos;
    }
    CHECK(threw);
#endif
    CHECK_OK(tern::check_version());
    CHECK(!tern::version().empty());
    CHECK_EQ(std::string(tern::code_name(Code::WouldBlock)), std::string("WOULD_BLOCK"));
}

/* Handles are move-only; a moved-from one is empty and fails cleanly. */
static void test_moving_handles() {
    tern::Result<tern::Runtime> made = tern::Runtime::create();
    CHECK_OK(made);
    tern::Runtime rt = std::move(made).value();
    tern::Runtime rt2 = std::move(rt);
    CHECK(!rt);
    CHECK(static_cast<bool>(rt2));
    CHECK_ERR(tern::Session::create(rt), Code::NullArgument);

    tern::Session s = tern::Session::create(rt2).value();
    tern::Session s2 = std::move(s);
    CHECK(!s);
    CHECK_ERR(s.perform(tern::Request::get(H + "/hello")), Code::NullArgument);
    CHECK_ERR(s.cancel(1), Code::NullArgument);
    CHECK_OK(s2.perform(tern::Request::get(H + "/hello")));

    tern::Request q = tern::Request::get(H + "/hello");
    tern::Request q2 = std::move(q);
    CHECK_ERR(s2.perform(std::move(q)), Code::NullArgument);
    auto r = s2.perform(std::move(q2));
    CHECK_EQ(r->status(), 200);

    // A Response's views stay valid when it moves.
    std::string_view body = r->body();
    tern::Response moved = std::move(*r);
    CHECK(!r->has_value());
    CHECK_EQ(r->code(), Code::NullArgument);
    CHECK_EQ(r->status(), 0);
    CHECK(r->body().empty());
    CHECK(r->message().empty());
    CHECK(r->effective_url().empty());
    CHECK_EQ(r->header("content-type"), std::optional<std::string_view>());
    CHECK(r->headers().empty());
    CHECK_EQ(body.data(), moved.body().data());
    CHECK_EQ(moved.body(), std::string_view("Hello, world!"));
    tern::Response other;
    other = std::move(moved);
    CHECK_EQ(other.body(), std::string_view("Hello, world!"));
    // release() hands the C handle over.
    tern_response *raw = other.release();
    CHECK_EQ(tern_response_status(raw), 200);
    tern_response_free(raw);

    // Moving a session over one with requests in flight frees the old one gracefully:
    // its requests still complete, exactly once.
    std::atomic<int> completes{0}, destroyed{0};
    tern::Session a = tern::Session::create(rt2).value();
    for (int i = 0; i < 20; i++) {
        CHECK_OK(a.send(tern::Request::get(H + "/hello"),
                        [&completes, t = Token(&destroyed)](tern::Response resp) {
                            if (resp.status() == 200) completes++;
                        }));
    }
    a = tern::Session::create(rt2).value();
    CHECK(eventually([&] { return destroyed.load() == 20; }));
    CHECK_EQ(completes.load(), 20);
    CHECK_OK(a.perform(tern::Request::get(H + "/hello")));

    // Handlers move, and a Request moves with its reader.
    std::atomic<int> h_destroyed{0};
    tern::Handlers h;
    h.on_complete([t = Token(&h_destroyed)](tern::Response) {});
    tern::Handlers h2 = std::move(h);
    CHECK_EQ(h_destroyed.load(), 0);
    { tern::Handlers dropped = std::move(h2); }
    CHECK_EQ(h_destroyed.load(), 1);
}

/* perform() from a callback is refused with WOULD_DEADLOCK; send() from one works. */
static void test_perform_from_callback() {
    Env e = make_env();
    Latch done(2);
    std::atomic<int> in_headers{-1}, in_complete{-1};
    std::atomic<bool> nested_ok{false};
    tern::Session &s = e.http;
    auto id = s.send(tern::Request::get(H + "/hello"),
                     tern::Handlers()
                         .on_headers([&](tern::ResponseView) {
                             in_headers =
                                 static_cast<int>(s.perform(tern::Request::get(H + "/hello")).code());
                             return tern::Action::Continue;
                         })
                         .on_complete([&](tern::Response) {
                             auto r = s.perform(tern::Request::get(H + "/hello"));
                             in_complete = static_cast<int>(r.code());
                             // send from a callback is allowed
                             auto nested = s.send(tern::Request::get(H + "/hello"), [&](tern::Response n) {
                                 nested_ok = n.status() == 200;
                                 done.count_down();
                             });
                             if (!nested) done.count_down();
                             done.count_down();
                         }));
    CHECK_OK(id);
    CHECK(done.wait_for());
    CHECK_EQ(in_headers.load(), static_cast<int>(Code::WouldDeadlock));
    CHECK_EQ(in_complete.load(), static_cast<int>(Code::WouldDeadlock));
    CHECK(nested_ok.load());
}

/* Queued delivery: nothing runs until poll, and everything runs on the polling thread. */
static void test_queued_delivery() {
    tern::Runtime rt = tern::Runtime::create().value();
    std::atomic<int> completes{0}, wrong_thread{0}, destroyed{0};
    const auto main_thread = std::this_thread::get_id();
    {
        tern::Session s =
            tern::Session::create(rt, tern::SessionOptions().delivery(tern::Delivery::Queued)).value();
        auto fd = s.fd();
        CHECK_OK(fd);
        constexpr int kN = 50;
        for (int i = 0; i < kN; i++) {
            CHECK_OK(s.send(tern::Request::get(H + "/hello"),
                            tern::Handlers()
                                .on_data([&, main_thread](std::string_view) {
                                    if (std::this_thread::get_id() != main_thread) wrong_thread++;
                                })
                                .on_complete([&, main_thread, t = Token(&destroyed)](tern::Response r) {
                                    if (std::this_thread::get_id() != main_thread) wrong_thread++;
                                    if (r.ok() && r.status() == 200) completes++;
                                })));
        }
        std::this_thread::sleep_for(50ms);
        CHECK_EQ(completes.load(), 0); // nothing runs before a poll
        auto end = std::chrono::steady_clock::now() + 20s;
        while (completes.load() < kN && std::chrono::steady_clock::now() < end) {
            struct pollfd p = {*fd, POLLIN, 0};
            if (::poll(&p, 1, 100) > 0) {
                auto ran = s.poll(0ms, 16);
                CHECK_OK(ran);
                if (ran) CHECK(*ran <= 16u);
            }
        }
        CHECK_EQ(completes.load(), kN);
        CHECK_EQ(destroyed.load(), kN);

        // Destroying a queued session runs what is left on this thread (requests still
        // in flight complete with SHUTDOWN; one that finished meanwhile, with OK).
        for (int i = 0; i < 5; i++) {
            CHECK_OK(s.send(tern::Request::get(H + "/bytes/16m"),
                            [&, main_thread, t = Token(&destroyed)](tern::Response r) {
                                if (std::this_thread::get_id() != main_thread) wrong_thread++;
                                if (r.code() == Code::Shutdown || r.code() == Code::Ok) completes++;
                            }));
        }
    }
    CHECK_EQ(destroyed.load(), 55);
    CHECK_EQ(completes.load(), 55);
    CHECK_EQ(wrong_thread.load(), 0);
}

/* Sessions and runtimes destroyed with requests in flight: every request completes
 * exactly once, every capture is destroyed exactly once. */
static void test_lifetimes() {
    std::atomic<int> completes{0}, shutdown{0}, destroyed{0};
    {
        tern::Runtime rt = tern::Runtime::create().value();
        {
            tern::Session s = tern::Session::create(rt).value();
            for (int i = 0; i < 50; i++) {
                CHECK_OK(
                    s.send(tern::Request::get(H + "/hello"), [&, t = Token(&destroyed)](tern::Response r) {
                        if (r.status() == 200) completes++;
                    }));
            }
        } // graceful: they still complete
        CHECK(eventually([&] { return destroyed.load() == 50; }));
        CHECK_EQ(completes.load(), 50);

        // The runtime first: in-flight requests (held paused at their first chunk)
        // complete with SHUTDOWN; then the session refuses new ones.
        tern::Session s = tern::Session::create(rt).value();
        std::atomic<int> paused{0};
        for (int i = 0; i < 10; i++) {
            CHECK_OK(s.send(tern::Request::get(H + "/bytes/16m"),
                            tern::Handlers()
                                .on_data([&paused](std::string_view) {
                                    paused++;
                                    return tern::Action::Pause;
                                })
                                .on_complete([&, t = Token(&destroyed)](tern::Response r) {
                                    if (r.code() == Code::Shutdown) shutdown++;
                                })));
        }
        CHECK(eventually([&] { return paused.load() == 10; }));
        rt = tern::Runtime();
        CHECK_EQ(destroyed.load(), 60);
        CHECK_EQ(shutdown.load(), 10);
        std::atomic<int> refused_destroyed{0};
        CHECK_ERR(
            s.send(tern::Request::get(H + "/hello"), [t = Token(&refused_destroyed)](tern::Response) {}),
            Code::Shutdown);
        CHECK_EQ(refused_destroyed.load(), 1);
    }

    // Fire and forget: no handler at all; the response is freed by the wrapper (and
    // LeakSanitizer would see it otherwise).
    tern::Runtime rt = tern::Runtime::create().value();
    tern::Session s = tern::Session::create(rt).value();
    for (int i = 0; i < 10; i++) CHECK_OK(s.send(tern::Request::get(H + "/hello"), tern::Handlers()));
    CHECK_OK(s.perform(tern::Request::get(H + "/hello")));
}

#if TERN_HPP_EXCEPTIONS
/* An exception from a callback never reaches tern: the request is canceled and the
 * exception is handed to on_complete. */
static void test_callback_exceptions() {
    Env e = make_env();
    struct Outcome {
        Latch done{1};
        Code code = Code::Internal;
        std::string what;
    };
    auto finish = [](Outcome &o) {
        return [&o](tern::Response r) {
            o.code = r.code();
            if (r.callback_exception()) {
                try {
                    std::rethrow_exception(r.callback_exception());
                } catch (const std::exception &ex) {
                    o.what = ex.what();
                }
            }
            o.done.count_down();
        };
    };
    std::atomic<int> destroyed{0};

    Outcome data;
    CHECK_OK(e.http.send(tern::Request::get(H + "/bytes/1m"),
                         tern::Handlers()
                             .on_data([t = Token(&destroyed)](std::string_view) -> tern::Action {
                                 throw std::runtime_error("boom in on_data");
                             })
                             .on_complete(finish(data))));
    CHECK(data.done.wait_for());
    CHECK_EQ(data.code, Code::Canceled);
    CHECK_EQ(data.what, std::string("boom in on_data"));

    Outcome headers;
    CHECK_OK(
        e.https.send(tern::Request::get(S + "/hello"),
                     tern::Handlers()
                         .on_headers([](tern::ResponseView) { throw std::logic_error("boom in on_headers"); })
                         .on_complete(finish(headers))));
    CHECK(headers.done.wait_for());
    CHECK_EQ(headers.code, Code::Canceled);
    CHECK_EQ(headers.what, std::string("boom in on_headers"));

    // on_progress returns nothing: the wrapper cancels the request by its id. (A 1 ms
    // interval, so that it runs while the body is still coming.)
    tern::Session fast = tern::Session::create(e.rt, tern::SessionOptions().progress_interval(1ms)).value();
    Outcome progress;
    CHECK_OK(fast.send(
        tern::Request::get(H + "/bytes/16m"),
        tern::Handlers()
            .on_progress([](const tern::Progress &) { throw std::runtime_error("boom in on_progress"); })
            .on_complete(finish(progress))));
    CHECK(progress.done.wait_for());
    CHECK_EQ(progress.code, Code::Canceled);
    CHECK_EQ(progress.what, std::string("boom in on_progress"));

    // A body reader that throws aborts the upload.
    auto up = e.http.perform(tern::Request::post(H + "/echo")
                                 .body_reader(
                                     [t = Token(&destroyed)](char *, std::size_t) -> tern::ReadResult {
                                         throw std::runtime_error("boom in reader");
                                     },
                                     100));
    CHECK_OK(up);
    CHECK_EQ(up->code(), Code::Canceled);
    bool rethrown = false;
    try {
        if (up->callback_exception()) std::rethrow_exception(up->callback_exception());
    } catch (const std::runtime_error &ex) {
        rethrown = std::string(ex.what()) == "boom in reader";
    }
    CHECK(rethrown);

    // on_complete throwing: dropped; release still destroys the capture.
    std::atomic<bool> ran{false};
    CHECK_OK(e.http.send(tern::Request::get(H + "/hello"), [&ran, t = Token(&destroyed)](tern::Response) {
        ran = true;
        throw std::runtime_error("boom in on_complete");
    }));
    CHECK(eventually([&] { return destroyed.load() == 3; }));
    CHECK(ran.load());
    CHECK_OK(e.http.perform(tern::Request::get(H + "/hello"))); // the session still works
}
#endif

static void test_cookies_and_forms() {
    Env e = make_env();
    tern::Session jar = tern::Session::create(e.rt, tern::SessionOptions().cookie_jar(true)).value();
    auto set = jar.perform(tern::Request::get(H + "/cookies/set"));
    CHECK_EQ(set->status(), 200);
    // A repeated header: every value, in order.
    std::vector<std::string_view> set_cookies = set->header_values("Set-Cookie");
    CHECK_EQ(set_cookies.size(), 2u);
    if (set_cookies.size() == 2) {
        CHECK_EQ(set_cookies[0], std::string_view("a=1; Path=/"));
        CHECK_EQ(set_cookies[1], std::string_view("b=2; Path=/cookies"));
    }
    CHECK_EQ(set->header("set-cookie", 1), std::optional<std::string_view>("b=2; Path=/cookies"));
    CHECK(set->header_values("x-absent").empty());
    auto c = jar.cookies(H + "/cookies/echo");
    CHECK_OK(c);
    CHECK(c->find("a=1") != std::string::npos);
    CHECK(c->find("b=2") != std::string::npos);
    auto echoed = jar.perform(tern::Request::get(H + "/cookies/echo"));
    CHECK(echoed->body().find("a=1") != std::string_view::npos);
    CHECK_OK(jar.add_cookie(H + "/", "c=3; Path=/"));
    CHECK(jar.cookies(H + "/")->find("c=3") != std::string::npos);
    CHECK_ERR(jar.add_cookie("not a url", "d=4"), Code::InvalidUrl);
    CHECK_OK(jar.clear_cookies());
    CHECK_EQ(jar.cookies(H + "/").value(), std::string());

    // Forms: url-encoded and multipart, against /echo.
    auto url = e.http.perform(
        tern::Request::post(H + "/echo").form(tern::Form::urlencoded().field("a", "1").field("b", "x y")));
    CHECK_EQ(url->status(), 200);
    CHECK(url->body().find("method=POST\na=1&b=x") == 0);

    char path[] = "/tmp/tern-cpp-test-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, "file contents", 13), 13);
    close(fd);
    tern::Form form = tern::Form::multipart();
    form.field("f", "v")
        .bytes("part", std::string_view("b\0ytes", 6), "p.bin")
        .file("doc", path, "doc.txt", "text/plain");
    CHECK(form.ok());
    auto multi = e.http.perform(tern::Request::post(H + "/echo").form(form));
    std::string_view mb = multi->body();
    CHECK(mb.find("name=\"part\"; filename=\"p.bin\"") != std::string_view::npos);
    CHECK(mb.find(std::string_view("b\0ytes", 6)) != std::string_view::npos);
    CHECK(mb.find("filename=\"doc.txt\"") != std::string_view::npos);
    CHECK(mb.find("file contents") != std::string_view::npos);
    unlink(path);

    tern::Form broken = tern::Form::urlencoded();
    broken.bytes("b", "x");
    CHECK_EQ(broken.error()->code(), Code::InvalidArgument);
    CHECK_ERR(e.http.perform(tern::Request::post(H + "/echo").form(broken)), Code::InvalidArgument);
    CHECK_ERR(e.http.perform(
                  tern::Request::post(H + "/echo").form(tern::Form::multipart().file("f", "/nonexistent"))),
              Code::InvalidFile);
}

/* Every SessionOptions setter, with working values; then the session works. */
static void test_all_options() {
    Env e = make_env();
    const std::string ca_pem = read_file(CA);
    const std::string cert = env("TERN_TEST_CLIENT_CERT"), key = env("TERN_TEST_CLIENT_KEY");
    char dir[] = "/tmp/tern-cpp-ca-XXXXXX";
    CHECK(mkdtemp(dir) != nullptr);
    std::string ca_copy = std::string(dir) + "/ca.pem";
    { std::ofstream(ca_copy, std::ios::binary) << ca_pem; }
    tern::SessionOptions o;
    o.header("X-Test", "from-options")
        .set_header("x-test", "set-from-options")
        .user_agent("tern-cpp-test")
        .timeout(tern::Timeout::Total, 30s)
        .timeout(tern::Timeout::Connect, 5s)
        .timeout(tern::Timeout::Read, 10s)
        .pool(30s, 8)
        .redirects(true, 5)
        .danger_allow_https_downgrade(false)
        .max_body_size(64 * 1024 * 1024)
        .max_header_size(65536)
        .http_version(tern::HttpVersion::Auto)
        .decompress(true)
        .add_ca_file(CA)
        .add_ca_pem(ca_pem)
        .add_ca_dir(dir)
        .system_roots(true)
        .proxy("")
        .proxy_credentials("user", "pass")
        .clear_proxy_credentials()
        .no_proxy("localhost,127.0.0.1")
        .trust_env(false)
        .add_proxy_header("X-Proxy", "1")
        .danger_accept_invalid_certs(false)
        .danger_accept_invalid_hostnames(false)
        .tls_versions(tern::TlsVersion::Tls12, tern::TlsVersion::Tls13)
        .sni(true)
        .nameservers("")
        .add_resolve("example.test:" + H.substr(H.rfind(':') + 1) + ":127.0.0.1")
        .ip_family(tern::IpFamily::Any)
        .dns_cache_ttl(60s)
        .connection_limits(64, 16)
        .delivery(tern::Delivery::RuntimeThread)
        .progress_interval(50ms)
        .cookie_jar(true);
    if (!cert.empty()) o.client_cert_file(cert, key).client_cert_pem(read_file(cert), read_file(key));
    CHECK(o.ok());
    if (o.error()) report(__FILE__, __LINE__, o.error()->to_string());
    auto s = tern::Session::create(e.rt, o);
    CHECK_OK(s);
    if (!s) return;
    auto r = s->perform(tern::Request::get("http://example.test:" + H.substr(H.rfind(':') + 1) + "/headers"));
    CHECK_EQ(r->code(), Code::Ok);
    CHECK(r->body().find("user-agent=tern-cpp-test\n") != std::string_view::npos);
    CHECK(r->body().find("x-test=set-from-options\n") != std::string_view::npos);
    auto tls = s->perform(tern::Request::get(S + "/hello"));
    CHECK_EQ(tls->code(), Code::Ok);
    // The no-proxy list applies to a request's own proxy too.
    CHECK_EQ(s->perform(tern::Request::get(H + "/hello").proxy("http://127.0.0.1:1"))->status(), 200);
    // Per-request proxy choice (a session without a no-proxy list): a proxy that is
    // not there, direct (""), and the session's (none) again.
    CHECK_EQ(e.http.perform(tern::Request::get(H + "/hello").proxy("http://127.0.0.1:1"))->code(),
             Code::ProxyConnect);
    CHECK_EQ(e.http.perform(tern::Request::get(H + "/hello").proxy(""))->status(), 200);
    CHECK_EQ(e.http.perform(tern::Request::get(H + "/hello").proxy("http://127.0.0.1:1").session_proxy())
                 ->status(),
             200);
    const std::string mtls = env("TERN_TEST_HTTPS_CLIENTCERT");
    if (!mtls.empty() && !cert.empty()) {
        auto m = s->perform(tern::Request::get(mtls + "/hello"));
        CHECK_EQ(m->code(), Code::Ok);
        CHECK_EQ(m->status(), 200);
    }
    unlink(ca_copy.c_str());
    rmdir(dir);
}

static void test_log_callback() {
    Env e = make_env();
    std::atomic<int> messages{0}, destroyed{0};
    std::atomic<int> nested{-1};
    CHECK_OK(tern::set_log_callback(
        tern::LogLevel::Debug,
        [&, t = Token(&destroyed)](tern::LogLevel level, std::string_view target, std::string_view message) {
            if (level != tern::LogLevel::Off && !target.empty() && !message.empty()) messages++;
            int expected = -1;
            if (nested.compare_exchange_strong(expected, -2)) {
                nested = static_cast<int>(tern::clear_log_callback().code());
            }
        }));
    tern::Session fresh = tern::Session::create(e.rt).value(); // new connections: DEBUG messages
    CHECK_OK(fresh.perform(tern::Request::get(H + "/hello")));
    CHECK(messages.load() > 0);
    CHECK(eventually([&] { return nested.load() >= 0; }, 5s));
    CHECK_EQ(nested.load(), static_cast<int>(Code::WouldDeadlock));
    CHECK_OK(tern::clear_log_callback());
    CHECK_EQ(destroyed.load(), 1);
    int before = messages.load();
    tern::Session fresh2 = tern::Session::create(e.rt).value();
    CHECK_OK(fresh2.perform(tern::Request::get(H + "/hello")));
    CHECK_EQ(messages.load(), before);
}

// ---------------------------------------------------------------------------------

int main(int argc, char **argv) {
    if (H.empty() || S.empty() || CA.empty()) {
        std::fprintf(stderr, "tern_test: TERN_TEST_HTTP, TERN_TEST_HTTPS and TERN_TEST_CA must be set\n");
        return 2;
    }
    const Test tests[] = {
        {"get_http", test_get_http},
        {"get_https_h2", test_get_https_h2},
        {"concurrent_lambdas", test_concurrent_lambdas},
        {"stream_pause_resume", test_stream_pause_resume},
        {"upload_reader", test_upload_reader},
        {"upload_push", test_upload_push},
        {"refused_send", test_refused_send},
        {"errors", test_errors},
        {"moving_handles", test_moving_handles},
        {"perform_from_callback", test_perform_from_callback},
        {"queued_delivery", test_queued_delivery},
        {"lifetimes", test_lifetimes},
#if TERN_HPP_EXCEPTIONS
        {"callback_exceptions", test_callback_exceptions},
#endif
        {"cookies_and_forms", test_cookies_and_forms},
        {"all_options", test_all_options},
        {"log_callback", test_log_callback},
    };
    return run_tests("tern_test", tests, argc, argv);
}
