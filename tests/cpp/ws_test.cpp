/* ws_test: the WebSocket part of include/tern.hpp (WsOptions, WebSocket, WsView,
 * WsHandlers) against the test environment's WebSocket peer
 * (scripts/ws_echo_server.py). tests/cpp/run.sh builds it as tern_test.cpp (g++ and
 * clang++, strict warnings, ASan + LSan + UBSan, with and without exceptions) and
 * runs it.
 *
 *   ws_test [NAME...]          (only the tests whose name contains one of NAME)
 *
 * Needs TERN_TEST_WS (target/testenv/env.sh): without it, it fails (exit 2) rather
 * than skip. Prints PASS/FAIL per test, then
 * "ws_test (exceptions|no exceptions): N checks; P passed, F failed"; exits 1 when
 * any failed.
 */
#include "check.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#if TERN_HPP_EXCEPTIONS
#include <stdexcept>
#endif
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

// ---------------------------------------------------------------------------------
// Checks: check.hpp (CHECK, CHECK_EQ, CHECK_OK, CHECK_ERR, env, eventually)

static const std::string WS = env("TERN_TEST_WS");

/* What a socket's handlers saw, shared with the test (which outlives the handlers).
 * Each socket's callbacks run one at a time, but the test reads from its own thread:
 * counters are atomics, the rest is under `m`. */
struct Seen {
    std::atomic<int> opens{0}, closes{0}, writables{0}, released{0};
    std::atomic<int> closes_at_release{-1}; // on_close calls counted when the handlers died
    std::mutex m;
    std::vector<std::pair<tern::WsMessage, std::string>> messages;
    std::string open_subprotocol;
    std::uint16_t open_status = 0;
    Code close_code_ = Code::Internal;
    std::string close_message;
    std::uint16_t peer_close_code = 0;
    bool clean = false, opened = false, had_exception = false;
    std::string reason;
    std::uint16_t response_status = 0;
    std::string response_body;

    std::size_t message_count() {
        std::lock_guard<std::mutex> g(m);
        return messages.size();
    }
    bool done() const { return released.load() > 0; }
};

/* Captured by the handlers: its destruction (the handlers' release) is counted once,
 * with the number of on_close calls seen by then. Move-only. */
class ReleaseProbe {
public:
    explicit ReleaseProbe(Seen *s) noexcept : s_(s) {}
    ReleaseProbe(ReleaseProbe &&o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    ReleaseProbe &operator=(ReleaseProbe &&) = delete;
    ReleaseProbe(const ReleaseProbe &) = delete;
    ReleaseProbe &operator=(const ReleaseProbe &) = delete;
    ~ReleaseProbe() {
        if (s_ == nullptr) return;
        s_->closes_at_release = s_->closes.load();
        s_->released++;
    }

private:
    Seen *s_;
};

/* Handlers that record into `seen`; `on_open_extra` and `on_message_extra` run after
 * the recording. */
template <class Open, class Message>
static tern::WsHandlers recording(Seen &seen, Open on_open_extra, Message on_message_extra) {
    auto probe = std::make_shared<ReleaseProbe>(&seen); // shared by the four callables
    return tern::WsHandlers()
        .on_open([&seen, probe, on_open_extra](tern::WsView ws, tern::ResponseView head) mutable {
            {
                std::lock_guard<std::mutex> g(seen.m);
                seen.open_subprotocol = std::string(ws.subprotocol());
                seen.open_status = head.status();
            }
            seen.opens++;
            on_open_extra(ws);
        })
        .on_message([&seen, probe, on_message_extra](tern::WsView ws, tern::WsMessage kind,
                                                     std::string_view data) mutable {
            {
                std::lock_guard<std::mutex> g(seen.m);
                seen.messages.emplace_back(kind, std::string(data));
            }
            on_message_extra(ws, kind, data);
        })
        .on_writable([&seen, probe](tern::WsView) { seen.writables++; })
        .on_close([&seen, probe](tern::WsView ws, const tern::WsCloseInfo &info) {
            CHECK_EQ(ws.state(), tern::WsState::Closed);
            {
                std::lock_guard<std::mutex> g(seen.m);
                seen.close_code_ = info.code;
                seen.close_message = std::string(info.message);
                seen.peer_close_code = info.close_code;
                seen.clean = info.clean;
                seen.opened = info.opened;
                seen.reason = std::string(info.reason);
                seen.had_exception = static_cast<bool>(info.callback_exception);
                if (info.response) {
                    seen.response_status = info.response->status();
                    seen.response_body = std::string(info.response->body());
                }
            }
            CHECK_EQ(info.ok(), info.code == Code::Ok);
            CHECK_EQ(info.error().code(), info.code);
            seen.closes++;
        });
}
static tern::WsHandlers recording(Seen &seen) {
    return recording(seen, [](tern::WsView) {}, [](tern::WsView, tern::WsMessage, std::string_view) {});
}

/* Waits for the release, then checks on_close ran exactly once, before it. */
#define CHECK_RELEASED_ONCE(seen)                                                                            \
    do {                                                                                                     \
        CHECK(eventually([&] { return (seen).done(); }));                                                   \
        std::this_thread::sleep_for(50ms); /* a second on_close or release would show now */                \
        CHECK_EQ((seen).closes.load(), 1);                                                                   \
        CHECK_EQ((seen).released.load(), 1);                                                                 \
        CHECK_EQ((seen).closes_at_release.load(), 1);                                                        \
    } while (0)

struct Env {
    tern::Runtime rt;
    tern::Session session;
};

static Env make_env(tern::Delivery delivery = tern::Delivery::RuntimeThread) {
    Env e;
    e.rt = tern::Runtime::create(tern::RuntimeConfig{2, "ws-test"}).value();
    e.session = tern::Session::create(e.rt, tern::SessionOptions().delivery(delivery)).value();
    return e;
}

// ---------------------------------------------------------------------------------
// Tests

/* Text (UTF-8) and binary messages come back as sent, kind included; a send from
 * on_open through the WsView and from the test thread through the WebSocket; close
 * with 1000 and a reason: on_close once, clean, then the release. */
static void test_echo_and_close() {
    Env e = make_env();
    Seen seen;
    const std::string text = "h\xc3\xa9llo, w\xc3\xb6rld";
    const std::string binary("\x00\x01\xff\xfe\x80 bin", 10);
    auto ws = tern::WebSocket::connect(
        e.session, WS + "/echo",
        recording(
            seen,
            [&](tern::WsView v) {
                CHECK_EQ(v.state(), tern::WsState::Open);
                CHECK_OK(v.send_ping("hi"));
                CHECK_OK(v.send_text(text));
            },
            [](tern::WsView, tern::WsMessage, std::string_view) {}),
        tern::WsOptions().timeout(tern::WsTimeout::Close, 5s));
    CHECK_OK(ws);
    if (!ws) return;
    CHECK(static_cast<bool>(*ws));
    CHECK(ws->id() != 0);
    CHECK_EQ(ws->view().id(), ws->id());
    CHECK(eventually([&] { return seen.message_count() >= 1; }));
    CHECK_EQ(ws->state(), tern::WsState::Open);
    CHECK_EQ(ws->subprotocol(), std::string_view()); // none offered
    CHECK_OK(ws->send_binary(binary));
    CHECK_OK(ws->send_text(""));
    CHECK(eventually([&] { return seen.message_count() >= 3; }));
    CHECK(ws->buffered_amount() < (1u << 20));
    {
        std::lock_guard<std::mutex> g(seen.m);
        CHECK_EQ(seen.messages.size(), 3u);
        if (seen.messages.size() == 3) {
            CHECK_EQ(seen.messages[0].first, tern::WsMessage::Text);
            CHECK_EQ(seen.messages[0].second, text);
            CHECK_EQ(seen.messages[1].first, tern::WsMessage::Binary);
            CHECK(seen.messages[1].second == binary);
            CHECK_EQ(seen.messages[2].first, tern::WsMessage::Text);
            CHECK_EQ(seen.messages[2].second, "");
        }
        CHECK_EQ(seen.open_status, 101);
    }
    CHECK_EQ(seen.opens.load(), 1);
    CHECK_OK(ws->close(1000, "bye"));
    CHECK_OK(ws->close(1000, "bye")); // again: nothing
    CHECK_RELEASED_ONCE(seen);
    std::lock_guard<std::mutex> g(seen.m);
    CHECK_EQ(seen.close_code_, Code::Ok);
    CHECK_EQ(seen.close_message, "");
    CHECK_EQ(seen.peer_close_code, 1000);
    CHECK_EQ(seen.reason, "bye");
    CHECK(seen.clean);
    CHECK(seen.opened);
    CHECK(!seen.had_exception);
    CHECK_EQ(ws->state(), tern::WsState::Closed);
    // The socket is closed: sends are refused.
    CHECK_ERR(ws->send_text("late"), Code::InvalidState);
}

/* The subprotocol route: the server's choice, seen in on_open and on the handle,
 * and its greeting. */
static void test_subprotocol() {
    Env e = make_env();
    Seen seen;
    auto ws = tern::WebSocket::connect(e.session, WS + "/subprotocol", recording(seen),
                                       tern::WsOptions().subprotocol("chat.v1").subprotocol("other"));
    CHECK_OK(ws);
    if (!ws) return;
    CHECK(eventually([&] { return seen.message_count() >= 1; }));
    CHECK_EQ(ws->subprotocol(), "chat.v1");
    {
        std::lock_guard<std::mutex> g(seen.m);
        CHECK_EQ(seen.open_subprotocol, "chat.v1");
        if (!seen.messages.empty()) CHECK_EQ(seen.messages[0].second, "chat.v1");
    }
    CHECK_OK(ws->close(4000, "done"));
    CHECK_RELEASED_ONCE(seen);
    std::lock_guard<std::mutex> g(seen.m);
    CHECK_EQ(seen.close_code_, Code::Ok);
    CHECK_EQ(seen.peer_close_code, 4000);
}

/* A refused upgrade (403): WS_HANDSHAKE with the response, never opened. */
static void test_rejected() {
    Env e = make_env();
    Seen seen;
    auto ws = tern::WebSocket::connect(e.session, WS + "/reject", recording(seen));
    CHECK_OK(ws);
    if (!ws) return;
    CHECK_RELEASED_ONCE(seen);
    std::lock_guard<std::mutex> g(seen.m);
    CHECK_EQ(seen.close_code_, Code::WsHandshake);
    CHECK(!seen.close_message.empty());
    CHECK_EQ(seen.response_status, 403);
    CHECK(seen.response_body.find("forbidden") != std::string::npos);
    CHECK(!seen.opened);
    CHECK(!seen.clean);
    CHECK_EQ(seen.opens.load(), 0);
    CHECK_EQ(ws->state(), tern::WsState::Closed);
    CHECK_EQ(ws->subprotocol(), std::string_view());
}

/* Bad input is refused with an error; a refused connect destroys its handlers
 * before returning, uncalled. */
static void test_bad_input() {
    Env e = make_env();
    Seen seen;
    auto ws = tern::WebSocket::connect(e.session, WS + "/echo", recording(seen));
    CHECK_OK(ws);
    if (!ws) return;
    CHECK(eventually([&] { return seen.opens.load() == 1; }));
    CHECK_ERR(ws->send_text("\xff\xfe not UTF-8"), Code::InvalidArgument);
    CHECK_ERR(ws->send_text(std::string_view("\xc3", 1)), Code::InvalidArgument); // cut sequence
    CHECK_ERR(ws->send_ping(std::string(126, 'p')), Code::InvalidArgument);
    CHECK_ERR(ws->close(999), Code::InvalidArgument);
    CHECK_ERR(ws->close(1000, std::string(124, 'r')), Code::InvalidArgument);
    CHECK_ERR(ws->close(0, "a reason needs a code"), Code::InvalidArgument);
    CHECK_ERR(ws->close(1000, std::string_view("a\0b", 3)), Code::InvalidArgument);
    // Nothing was sent: the socket is still open and echoes.
    CHECK_EQ(ws->state(), tern::WsState::Open);
    CHECK_OK(ws->send_text("still open"));
    CHECK(eventually([&] { return seen.message_count() == 1; }));
    CHECK_OK(ws->close(0)); // a close frame without a code: the peer answers 1005
    CHECK_RELEASED_ONCE(seen);
    {
        std::lock_guard<std::mutex> g(seen.m);
        CHECK_EQ(seen.close_code_, Code::Ok);
        CHECK_EQ(seen.peer_close_code, 1005);
    }

    // Refused connects: the handlers are destroyed, never called.
    const struct {
        std::string url;
        tern::WsOptions options;
        Code want;
    } refused[] = {
        {"not a url", tern::WsOptions(), Code::InvalidUrl},
        {"ftp://127.0.0.1/x", tern::WsOptions(), Code::UnsupportedScheme},
        {std::string("ws://127.0.0.1/\0x", 17), tern::WsOptions(), Code::InvalidArgument},
        {WS + "/echo", tern::WsOptions().subprotocol("not a token"), Code::InvalidArgument},
        {WS + "/echo", tern::WsOptions().subprotocol("chat.v1").subprotocol("chat.v1"), Code::InvalidArgument},
        {WS + "/echo", tern::WsOptions().header("Sec-WebSocket-Key", "x"), Code::InvalidHeader},
        {WS + "/echo", tern::WsOptions().timeout(tern::WsTimeout::Close, 0ms), Code::InvalidArgument},
        {WS + "/echo", tern::WsOptions().timeout(tern::WsTimeout::Connect, -1ms), Code::InvalidArgument},
        {WS + "/echo", tern::WsOptions().send_queue_size(0), Code::InvalidArgument},
        {WS + "/echo", tern::WsOptions().compression(true), Code::Unsupported},
        {WS + "/echo", tern::WsOptions().proxy("gopher://proxy"), Code::UnsupportedScheme},
    };
    for (const auto &r : refused) {
        Seen s2;
        auto w = tern::WebSocket::connect(e.session, r.url, recording(s2), r.options);
        CHECK_ERR(w, r.want);
        CHECK_EQ(s2.released.load(), 1); // before connect returned
        CHECK_EQ(s2.closes_at_release.load(), 0);
        CHECK_EQ(s2.opens.load(), 0);
    }
    // The first error of a chain is kept; later setters do nothing.
    tern::WsOptions o = tern::WsOptions().compression(true).subprotocol("x y");
    CHECK(!o.ok());
    if (o.error()) CHECK_EQ(o.error()->code(), Code::Unsupported);

    // An empty (moved-from) WebSocket: NULL_ARGUMENT, never a crash.
    tern::WebSocket moved = std::move(*ws);
    CHECK(!static_cast<bool>(*ws));
    CHECK(static_cast<bool>(moved));
    CHECK_ERR(ws->send_text("x"), Code::NullArgument);
    CHECK_ERR(ws->send_binary("x"), Code::NullArgument);
    CHECK_ERR(ws->send_ping(), Code::NullArgument);
    CHECK_ERR(ws->close(), Code::NullArgument);
    CHECK_EQ(ws->abort().code(), Code::NullArgument);
    CHECK_EQ(ws->state(), tern::WsState::Closed);
    CHECK_EQ(ws->id(), 0u);
    CHECK_EQ(ws->buffered_amount(), 0u);
    // And a moved-from Session refuses to connect.
    tern::Session gone = std::move(e.session);
    Seen s3;
    CHECK_ERR(tern::WebSocket::connect(e.session, WS + "/echo", recording(s3)), Code::NullArgument);
    CHECK_EQ(s3.released.load(), 1);
}

/* Destroying an open WebSocket closes it (1000): on_close once, then the release. */
static void test_destroy_while_open() {
    Env e = make_env();
    Seen seen;
    {
        auto ws = tern::WebSocket::connect(e.session, WS + "/echo", recording(seen)).value();
        CHECK(eventually([&] { return seen.opens.load() == 1; }));
        CHECK_EQ(ws.state(), tern::WsState::Open);
        CHECK_EQ(seen.closes.load(), 0);
    } // ~WebSocket: tern_ws_free
    CHECK_RELEASED_ONCE(seen);
    std::lock_guard<std::mutex> g(seen.m);
    CHECK_EQ(seen.close_code_, Code::Ok);
    CHECK_EQ(seen.peer_close_code, 1000);
    CHECK(seen.clean);

    // Move assignment frees the socket held before (still connecting: CANCELED).
    Seen a, b;
    auto first = tern::WebSocket::connect(e.session, WS + "/silent", recording(a)).value();
    first = tern::WebSocket::connect(e.session, WS + "/echo", recording(b)).value();
    CHECK_RELEASED_ONCE(a);
    CHECK(a.close_code_ == Code::Canceled || a.close_code_ == Code::Ok); // freed connecting, or just open
    CHECK(eventually([&] { return b.opens.load() == 1; }));
    CHECK_OK(first.abort());
    CHECK_RELEASED_ONCE(b);
    std::lock_guard<std::mutex> g2(b.m);
    CHECK_EQ(b.close_code_, Code::Canceled);
    CHECK_EQ(b.peer_close_code, 1006);
    CHECK(!b.clean);
}

/* Every WsOptions setter; headers and Origin reach the server (/headers). */
static void test_options() {
    Env e = make_env();
    Seen seen;
    tern::WsOptions o = tern::WsOptions()
                            .header("X-Ws-Test", "cpp")
                            .origin("http://somewhere.test")
                            .clear_origin()
                            .origin("http://origin.test")
                            .proxy("http://127.0.0.1:1")
                            .session_proxy()
                            .proxy("")
                            .timeout(tern::WsTimeout::Connect, 5s)
                            .timeout(tern::WsTimeout::Handshake, 10s)
                            .timeout(tern::WsTimeout::Receive, 0ms)
                            .timeout(tern::WsTimeout::Close, 5s)
                            .heartbeat(20s)
                            .max_message_size(1 << 20)
                            .max_frame_size(1 << 20)
                            .send_queue_size(1 << 16)
                            .compression(false);
    CHECK(o.ok());
    if (o.error()) report(__FILE__, __LINE__, o.error()->to_string());
    auto ws = tern::WebSocket::connect(e.session, WS + "/headers", recording(seen), o);
    CHECK_OK(ws);
    if (!ws) return;
    CHECK(eventually([&] { return seen.message_count() >= 1; }));
    {
        std::lock_guard<std::mutex> g(seen.m);
        const std::string &json = seen.messages.empty() ? std::string() : seen.messages[0].second;
        CHECK(json.find("[\"X-Ws-Test\", \"cpp\"]") != std::string::npos);
        CHECK(json.find("\"http://origin.test\"") != std::string::npos);
        CHECK(json.find("somewhere.test") == std::string::npos);
        CHECK(json.find("permessage-deflate") == std::string::npos);
        if (json.find("X-Ws-Test") == std::string::npos) report(__FILE__, __LINE__, "headers: " + json);
    }
    CHECK_OK(ws->close(1000, "bye"));
    CHECK_RELEASED_ONCE(seen);
    CHECK_EQ(seen.close_code_, Code::Ok);
}

/* A small send queue: sends while connecting wait for the open; a full queue
 * answers WOULD_BLOCK, and on_writable follows. */
static void test_backpressure() {
    Env e = make_env();
    Seen seen;
    auto ws = tern::WebSocket::connect(e.session, WS + "/echo", recording(seen),
                                       tern::WsOptions().send_queue_size(64 * 1024));
    CHECK_OK(ws);
    if (!ws) return;
    const std::string chunk(64 * 1024, 'q');
    int accepted = 0;
    bool blocked = false;
    for (int i = 0; i < 2000 && !blocked; i++) {
        tern::Result<void> r = ws->send_binary(chunk);
        if (r) {
            accepted++;
        } else {
            CHECK_EQ(r.code(), Code::WouldBlock);
            blocked = true;
        }
    }
    CHECK(blocked);
    CHECK(accepted >= 1);
    CHECK(eventually([&] { return seen.writables.load() >= 1; }));
    CHECK(eventually([&] { return static_cast<int>(seen.message_count()) == accepted; }));
    CHECK_EQ(ws->buffered_amount(), 0u);
    CHECK_OK(ws->close(1000, "bye"));
    CHECK_RELEASED_ONCE(seen);
    CHECK_EQ(seen.close_code_, Code::Ok);
}

/* Delivery::Queued: every callback runs inside Session::poll, on this thread. */
static void test_queued_delivery() {
    Env e = make_env(tern::Delivery::Queued);
    Seen seen;
    const std::thread::id me = std::this_thread::get_id();
    std::atomic<int> elsewhere{0};
    auto ws = tern::WebSocket::connect(
        e.session, WS + "/echo",
        recording(
            seen,
            [&](tern::WsView) {
                if (std::this_thread::get_id() != me) elsewhere++;
            },
            [&](tern::WsView v, tern::WsMessage, std::string_view) {
                if (std::this_thread::get_id() != me) elsewhere++;
                CHECK_OK(v.close(1000, "from a callback"));
            }));
    CHECK_OK(ws);
    if (!ws) return;
    CHECK_OK(ws->send_text("queued before the open"));
    auto end = std::chrono::steady_clock::now() + 20s;
    while (!seen.done() && std::chrono::steady_clock::now() < end) CHECK_OK(e.session.poll(100ms));
    CHECK_RELEASED_ONCE(seen);
    CHECK_EQ(elsewhere.load(), 0);
    std::lock_guard<std::mutex> g(seen.m);
    CHECK_EQ(seen.messages.size(), 1u);
    CHECK_EQ(seen.close_code_, Code::Ok);
    CHECK_EQ(seen.reason, "from a callback");
}

#if TERN_HPP_EXCEPTIONS
/* An exception from on_message aborts the socket; on_close carries it. */
static void test_callback_exception() {
    Env e = make_env();
    Seen seen;
    auto ws = tern::WebSocket::connect(e.session, WS + "/echo",
                                       recording(
                                           seen, [](tern::WsView v) { CHECK_OK(v.send_text("boom")); },
                                           [](tern::WsView, tern::WsMessage, std::string_view) {
                                               throw std::runtime_error("from on_message");
                                           }));
    CHECK_OK(ws);
    if (!ws) return;
    CHECK_RELEASED_ONCE(seen);
    std::lock_guard<std::mutex> g(seen.m);
    CHECK_EQ(seen.close_code_, Code::Canceled);
    CHECK(seen.had_exception);
    CHECK(!seen.clean);
}
#endif

// ---------------------------------------------------------------------------------

int main(int argc, char **argv) {
    if (WS.empty()) {
        std::fprintf(stderr, "ws_test: TERN_TEST_WS is not set (the WebSocket test server, e.g. "
                             "ws://127.0.0.1:18082): source target/testenv/env.sh\n");
        return 2;
    }
    const Test tests[] = {
        {"echo_and_close", test_echo_and_close},
        {"subprotocol", test_subprotocol},
        {"rejected", test_rejected},
        {"bad_input", test_bad_input},
        {"destroy_while_open", test_destroy_while_open},
        {"options", test_options},
        {"backpressure", test_backpressure},
        {"queued_delivery", test_queued_delivery},
#if TERN_HPP_EXCEPTIONS
        {"callback_exception", test_callback_exception},
#endif
    };
    return run_tests("ws_test", tests, argc, argv);
}
