/*
 * tern.hpp: a header-only C++17 interface to tern (include/tern.h). Hand-written, not
 * generated; it adds no symbol of its own to libtern. Link libtern as for C.
 *
 *     #include "tern.hpp"
 *
 *     auto rt = tern::Runtime::create().value();
 *     auto session = tern::Session::create(rt, tern::SessionOptions().add_ca_file(ca)).value();
 *     tern::Result<tern::Response> r = session.perform(tern::Request::get(url));
 *     if (r && r->ok()) std::cout << r->status() << " " << r->body() << "\n";
 *
 * ERRORS: a result type, not exceptions. Every call that can fail returns
 * `tern::Result<T>` (a value or a `tern::Error` with the tern code and its message;
 * `tern::Result<void>` for calls with no value). Why:
 *   - game engines and embedded code often build with -fno-exceptions; a result type
 *     works in every build, and this header compiles and behaves the same without
 *     exceptions;
 *   - failure is ordinary for a network client (refused, closed, would-block), and
 *     the C API already reports it as values: mapping them 1:1 keeps the cost and the
 *     control flow visible;
 *   - the callbacks run on tern's threads, where an exception could never reach the
 *     caller anyway.
 * The one throwing layer is opt-in and thin: `Result::value()` on an error throws
 * `tern::Exception` (which carries the `tern::Error`) when exceptions are enabled,
 * and prints the error and calls std::abort() when they are not. So code that likes
 * exceptions writes `session.perform(req).value()`; code that does not checks
 * `if (!r) r.error()`. Nothing else in this header throws, except std::bad_alloc.
 *
 * Builders (SessionOptions, Request, Form) are fluent: a setter that fails keeps the
 * first error and makes the later setters no-ops; the error comes back from the call
 * that uses the builder (Session::create, Session::send/perform, Request::form), or
 * early from `.error()`. So a chain needs no check per step.
 *
 * An HTTP exchange that completed is a success whatever its status (404 included),
 * as in C. A request that was accepted but failed (DNS, TLS, time-out, cancel...)
 * gives a `Response` whose code() says so, with its message, effective URL and
 * timings; `Result` errors are for calls tern refused (bad argument, closed session,
 * WOULD_DEADLOCK, ...).
 *
 * OWNERSHIP: every tern handle has one owner here, a move-only class holding a
 * `std::unique_ptr` with the matching `tern_*_free` deleter (Session shares its handle
 * with in-flight requests only weakly, see below). A moved-from object is empty: its
 * calls fail with NULL_ARGUMENT instead of crashing. `raw()` gives the C handle to mix
 * with tern.h calls, `release()` (Request, Response) gives up ownership.
 *
 * CALLBACKS are any callable, move-only ones included (a lambda capturing a
 * std::unique_ptr): each is stored in a heap box passed to tern as user_data; tern's
 * `release` deletes the box exactly once after the last callback, so every capture is
 * destroyed exactly once, on the thread that ran the last callback, also when the
 * request fails, is canceled, or its session or runtime is freed. When tern refuses a
 * send (it then calls nothing, per tern.h), this header destroys the callables itself,
 * without calling them, before `send` returns. Callbacks run on tern's threads (or
 * inside `Session::poll` with Delivery::Queued), one at a time per request, never
 * inside `send` (but maybe before `send` has returned the id to its caller:
 * `Response::id()` has it); they may call every Session method except `perform`
 * (which returns WOULD_DEADLOCK there). No exception ever unwinds into tern: an
 * exception thrown by on_headers, on_data, on_progress, on_upload_ready or a body
 * reader cancels the request, which completes with CANCELED (unless it had already
 * finished: the last on_progress runs just before on_complete), and on_complete's
 * `Response` carries the exception (`callback_exception()`, a std::exception_ptr to
 * rethrow); one thrown by on_complete itself, or by the log callback, is caught and
 * dropped (nobody is left to receive it).
 *
 * VIEWS: `Response::body()`, `header()`, `headers()`, `message()`... are
 * std::string_view into the response, valid while the Response lives (moving the
 * Response keeps them valid). A `ResponseView` (on_headers) and on_data's chunk are
 * valid during the callback only.
 *
 * THREADS: as tern.h: Session and Response may be used from several threads at once
 * (their methods are const); builders by one thread at a time.
 *
 * WEBSOCKETS: `WebSocket::connect(session, url, WsHandlers, WsOptions)` returns an
 * owning, move-only `WebSocket` at once (tern_ws_free on destruction: an open socket
 * is closed with 1000). The handlers (on_open, on_message, on_writable, on_close) are
 * boxed as a request's: released exactly once after on_close, or destroyed uncalled
 * when connect is refused; they get a borrowed `WsView` to send and close with. Sends
 * and close return `Result<void>` (WOULD_BLOCK when the send queue is full). An
 * exception from on_open, on_message or on_writable aborts the socket and reaches
 * on_close in `WsCloseInfo::callback_exception`.
 */
#ifndef TERN_HPP
#define TERN_HPP

#include "tern.h"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#if __cplusplus < 201703L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 201703L)
#error "tern.hpp needs C++17 or later"
#endif

/* Whether exceptions are enabled (a program may define it to 0 or 1 itself). */
#ifndef TERN_HPP_EXCEPTIONS
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define TERN_HPP_EXCEPTIONS 1
#else
#define TERN_HPP_EXCEPTIONS 0
#endif
#endif

#if TERN_HPP_EXCEPTIONS
#include <stdexcept>
#endif

/* Each fluent setter `T &name(params) &` of a builder gets a twin for rvalues, so a
 * chain on a temporary stays an rvalue: `auto o = SessionOptions().sni(true);`. */
#define TERN_HPP_RVALUE_SETTER(Class, name, params, args)                                                    \
    Class &&name params && { return std::move(this->name args); }

namespace tern {

// ---------------------------------------------------------------------------------
// Enumerations: the C constants, as scoped enums (the values are the C ones, so a
// change in tern.h cannot leave these behind).

/** Every outcome of a tern call or request (tern.h `tern_code`). */
enum class Code : std::uint32_t {
    Ok = TERN_CODE_OK,
    NullArgument = TERN_CODE_NULL_ARGUMENT,
    InvalidArgument = TERN_CODE_INVALID_ARGUMENT,
    InvalidUrl = TERN_CODE_INVALID_URL,
    UnsupportedScheme = TERN_CODE_UNSUPPORTED_SCHEME,
    InvalidHeader = TERN_CODE_INVALID_HEADER,
    InvalidMethod = TERN_CODE_INVALID_METHOD,
    InvalidState = TERN_CODE_INVALID_STATE,
    WouldDeadlock = TERN_CODE_WOULD_DEADLOCK,
    Forked = TERN_CODE_FORKED,
    NotFound = TERN_CODE_NOT_FOUND,
    Unsupported = TERN_CODE_UNSUPPORTED,
    InvalidFile = TERN_CODE_INVALID_FILE,
    WouldBlock = TERN_CODE_WOULD_BLOCK,
    Dns = TERN_CODE_DNS,
    DnsNotFound = TERN_CODE_DNS_NOT_FOUND,
    Connect = TERN_CODE_CONNECT,
    ConnectionRefused = TERN_CODE_CONNECTION_REFUSED,
    ConnectionReset = TERN_CODE_CONNECTION_RESET,
    Tls = TERN_CODE_TLS,
    TlsVerify = TERN_CODE_TLS_VERIFY,
    Proxy = TERN_CODE_PROXY,
    ProxyConnect = TERN_CODE_PROXY_CONNECT,
    ProxyAuth = TERN_CODE_PROXY_AUTH,
    TimeoutConnect = TERN_CODE_TIMEOUT_CONNECT,
    TimeoutRead = TERN_CODE_TIMEOUT_READ,
    TimeoutTotal = TERN_CODE_TIMEOUT_TOTAL,
    TimeoutHeartbeat = TERN_CODE_TIMEOUT_HEARTBEAT,
    TimeoutClose = TERN_CODE_TIMEOUT_CLOSE,
    Protocol = TERN_CODE_PROTOCOL,
    IncompleteBody = TERN_CODE_INCOMPLETE_BODY,
    HeadersTooLarge = TERN_CODE_HEADERS_TOO_LARGE,
    TooManyRedirects = TERN_CODE_TOO_MANY_REDIRECTS,
    BodyTooLarge = TERN_CODE_BODY_TOO_LARGE,
    RedirectBodyNotReplayable = TERN_CODE_REDIRECT_BODY_NOT_REPLAYABLE,
    InsecureRedirect = TERN_CODE_INSECURE_REDIRECT,
    Decoding = TERN_CODE_DECODING,
    Canceled = TERN_CODE_CANCELED,
    Shutdown = TERN_CODE_SHUTDOWN,
    WsHandshake = TERN_CODE_WS_HANDSHAKE,
    WsProtocol = TERN_CODE_WS_PROTOCOL,
    WsInvalidUtf8 = TERN_CODE_WS_INVALID_UTF8,
    WsMessageTooLarge = TERN_CODE_WS_MESSAGE_TOO_LARGE,
    WsClosedAbnormally = TERN_CODE_WS_CLOSED_ABNORMALLY,
    Internal = TERN_CODE_INTERNAL,
};

/** What on_headers and on_data return. */
enum class Action : std::uint32_t {
    Continue = TERN_ACTION_CONTINUE,
    Cancel = TERN_ACTION_CANCEL,
    Pause = TERN_ACTION_PAUSE,
};

/** Which time-out a `timeout()` setter sets. */
enum class Timeout : std::uint32_t {
    Total = TERN_TIMEOUT_TOTAL,
    Connect = TERN_TIMEOUT_CONNECT,
    Read = TERN_TIMEOUT_READ,
};

enum class HttpVersion : std::uint32_t {
    Auto = TERN_HTTP_VERSION_AUTO,
    Http1 = TERN_HTTP_VERSION_HTTP1,
    Http2PriorKnowledge = TERN_HTTP_VERSION_HTTP2_PRIOR_KNOWLEDGE,
};

enum class Timing : std::uint32_t {
    Dns = TERN_TIMING_DNS,
    Connect = TERN_TIMING_CONNECT,
    Tls = TERN_TIMING_TLS,
    Ttfb = TERN_TIMING_TTFB,
    Total = TERN_TIMING_TOTAL,
};

enum class Close : std::uint32_t {
    Graceful = TERN_CLOSE_GRACEFUL,
    Abort = TERN_CLOSE_ABORT,
};

enum class TlsVersion : std::uint32_t {
    Default = TERN_TLS_VERSION_DEFAULT,
    Tls12 = TERN_TLS_VERSION_TLS12,
    Tls13 = TERN_TLS_VERSION_TLS13,
};

enum class IpFamily : std::uint32_t {
    Any = TERN_IP_FAMILY_ANY,
    V4 = TERN_IP_FAMILY_V4,
    V6 = TERN_IP_FAMILY_V6,
};

enum class Delivery : std::uint32_t {
    RuntimeThread = TERN_DELIVERY_RUNTIME_THREAD,
    Queued = TERN_DELIVERY_QUEUED,
};

enum class ReadStatus : std::uint32_t {
    Data = TERN_READ_STATUS_DATA,
    End = TERN_READ_STATUS_END,
    Pause = TERN_READ_STATUS_PAUSE,
    Abort = TERN_READ_STATUS_ABORT,
};

enum class FormKind : std::uint32_t {
    UrlEncoded = TERN_FORM_KIND_URLENCODED,
    Multipart = TERN_FORM_KIND_MULTIPART,
};

enum class LogLevel : std::uint32_t {
    Off = TERN_LOG_LEVEL_OFF,
    Error = TERN_LOG_LEVEL_ERROR,
    Warn = TERN_LOG_LEVEL_WARN,
    Info = TERN_LOG_LEVEL_INFO,
    Debug = TERN_LOG_LEVEL_DEBUG,
    Trace = TERN_LOG_LEVEL_TRACE,
};

/** The kind of a WebSocket message (tern.h `tern_ws_message`). */
enum class WsMessage : std::uint32_t {
    Text = TERN_WS_MESSAGE_TEXT,
    Binary = TERN_WS_MESSAGE_BINARY,
};

/** Where a WebSocket stands (tern.h `tern_ws_ready_state`). */
enum class WsState : std::uint32_t {
    Connecting = TERN_WS_READY_STATE_CONNECTING,
    Open = TERN_WS_READY_STATE_OPEN,
    Closing = TERN_WS_READY_STATE_CLOSING,
    Closed = TERN_WS_READY_STATE_CLOSED,
};

/** Which time-out `WsOptions::timeout()` sets (tern.h `tern_ws_timeout`). */
enum class WsTimeout : std::uint32_t {
    Connect = TERN_WS_TIMEOUT_CONNECT,
    Handshake = TERN_WS_TIMEOUT_HANDSHAKE,
    Receive = TERN_WS_TIMEOUT_RECEIVE,
    Close = TERN_WS_TIMEOUT_CLOSE,
};

/** The id `Session::send` returns, and `Response::id()`. */
using RequestId = std::uint64_t;

/** The name of a code without its prefix ("TIMEOUT_TOTAL"); "UNKNOWN" for no code. */
inline const char *code_name(Code code) noexcept { return tern_code_name(static_cast<std::uint32_t>(code)); }

/** The library's version string ("0.1.0"). */
inline std::string_view version() noexcept {
    const char *v = tern_version();
    return v != nullptr ? std::string_view(v) : std::string_view();
}

// ---------------------------------------------------------------------------------
// Error, Result, Exception

/** A failed call: the tern code and its message (secrets redacted by tern). */
class Error {
public:
    Error(Code code, std::string message) : code_(code), message_(std::move(message)) {}

    Code code() const noexcept { return code_; }
    const std::string &message() const noexcept { return message_; }
    /** The code's name, "INVALID_URL". */
    const char *name() const noexcept { return code_name(code_); }
    /** "INVALID_URL: <message>". */
    std::string to_string() const {
        std::string s = name();
        if (!message_.empty()) {
            s += ": ";
            s += message_;
        }
        return s;
    }

private:
    Code code_;
    std::string message_;
};

#if TERN_HPP_EXCEPTIONS
/** Thrown by `Result::value()` on an error (only there), when exceptions are on. */
class Exception : public std::runtime_error {
public:
    explicit Exception(Error error) : std::runtime_error(error.to_string()), error_(std::move(error)) {}
    const Error &error() const noexcept { return error_; }
    Code code() const noexcept { return error_.code(); }

private:
    Error error_;
};
#endif

namespace detail {

[[noreturn]] inline void bad_result_access(const Error &error) {
#if TERN_HPP_EXCEPTIONS
    throw Exception(error);
#else
    std::fprintf(stderr, "tern::Result::value() on an error: %s\n", error.to_string().c_str());
    std::abort();
#endif
}

inline const Error &no_error() {
    static const Error *const none = new Error(Code::Ok, std::string()); // never destroyed
    return *none;
}

/** Takes an error the C call wrote (may be NULL): its message, else the code's name. */
inline Error take_error(tern_code code, tern_error *err) {
    const char *msg = err != nullptr ? tern_error_message(err) : nullptr;
    Error out(static_cast<Code>(code), msg != nullptr ? std::string(msg) : std::string());
    tern_error_free(err);
    return out;
}

/** For calls that return a code without an error object. */
inline Error code_error(tern_code code, const char *what) {
    std::string msg = what;
    msg += ": ";
    msg += tern_code_name(static_cast<std::uint32_t>(code));
    return Error(static_cast<Code>(code), std::move(msg));
}

inline Error nul_error(const char *what) {
    return Error(Code::InvalidArgument, std::string(what) + " contains a NUL byte");
}

/** A NUL-terminated copy of a string_view for the C API; remembers an inner NUL,
 *  which C would silently cut the string at. */
class CStr {
public:
    explicit CStr(std::string_view s) : s_(s), ok_(s.find('\0') == std::string_view::npos) {}
    const char *c_str() const noexcept { return s_.c_str(); }
    /** NULL for an empty string (the C "not set" for optional strings). */
    const char *c_str_or_null() const noexcept { return s_.empty() ? nullptr : s_.c_str(); }
    bool ok() const noexcept { return ok_; }

private:
    std::string s_;
    bool ok_;
};

inline const std::uint8_t *bytes(std::string_view s) noexcept {
    return reinterpret_cast<const std::uint8_t *>(s.data());
}

inline std::string_view view(const char *s) noexcept {
    return s != nullptr ? std::string_view(s) : std::string_view();
}

/** Milliseconds as the C API's uint64; negative durations are refused. */
inline bool to_ms(std::chrono::milliseconds ms, std::uint64_t &out) noexcept {
    if (ms.count() < 0) return false;
    out = static_cast<std::uint64_t>(ms.count());
    return true;
}

/** Runs f(); with exceptions on, an exception goes to on_exception instead. */
template <class F, class G>
decltype(auto) guarded(F &&f, G &&on_exception) noexcept {
#if TERN_HPP_EXCEPTIONS
    try {
        return f();
    } catch (...) {
        return on_exception(std::current_exception());
    }
#else
    (void)on_exception;
    return f();
#endif
}

struct RuntimeDeleter {
    void operator()(tern_runtime *p) const noexcept { tern_runtime_free(p); }
};
struct OptionsDeleter {
    void operator()(tern_session_options *p) const noexcept { tern_session_options_free(p); }
};
struct RequestDeleter {
    void operator()(tern_request *p) const noexcept { tern_request_free(p); }
};
struct ResponseDeleter {
    void operator()(tern_response *p) const noexcept { tern_response_free(p); }
};
struct FormDeleter {
    void operator()(tern_form *p) const noexcept { tern_form_free(p); }
};
struct StringDeleter {
    void operator()(char *p) const noexcept { tern_string_free(p); }
};

/** The session handle, shared by the Session (strongly) and by in-flight requests'
 *  callback boxes (weakly, to cancel from a callback that threw). The last strong
 *  reference frees it; that may be a callback holding it for a moment, and freeing
 *  a session from a callback is allowed by tern.h. */
struct SessionCore {
    explicit SessionCore(tern_session *s) noexcept : raw(s) {}
    ~SessionCore() { tern_session_free(raw); }
    SessionCore(const SessionCore &) = delete;
    SessionCore &operator=(const SessionCore &) = delete;
    tern_session *raw;
};

/** The first exception a request's callbacks (or body reader) threw. Callbacks of
 *  one request run one at a time, but the reader runs on another thread: a mutex. */
class Failure {
public:
    void set(std::exception_ptr e) noexcept {
        std::lock_guard<std::mutex> lock(m_);
        if (!e_) e_ = std::move(e);
    }
    std::exception_ptr get() const noexcept {
        std::lock_guard<std::mutex> lock(m_);
        return e_;
    }

private:
    mutable std::mutex m_;
    std::exception_ptr e_;
};

struct Trampolines;
struct CallBox;

} // namespace detail

/**
 * A value or an Error. `if (r)` / `r.ok()` tests it; `*r` and `r->` reach the value
 * (unchecked: only after a test); `r.value()` is checked (throws tern::Exception, or
 * aborts without exceptions); `r.error()` is the error (a static OK error when there
 * is none).
 */
template <class T>
class [[nodiscard]] Result {
    static_assert(!std::is_reference_v<T>, "Result<T&> is not supported");

public:
    using value_type = T;

    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

    bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    T &value() & {
        check();
        return *std::get_if<0>(&v_);
    }
    const T &value() const & {
        check();
        return *std::get_if<0>(&v_);
    }
    /** On an rvalue the value is moved out and returned by value, so
     *  `const auto &x = f().value();` and `for (auto c : f().value())` do not dangle. */
    T value() && {
        check();
        return std::move(*std::get_if<0>(&v_));
    }
    template <class U>
    T value_or(U &&fallback) const & {
        return ok() ? *std::get_if<0>(&v_) : static_cast<T>(std::forward<U>(fallback));
    }
    template <class U>
    T value_or(U &&fallback) && {
        return ok() ? std::move(*std::get_if<0>(&v_)) : static_cast<T>(std::forward<U>(fallback));
    }

    T &operator*() & noexcept { return *std::get_if<0>(&v_); }
    const T &operator*() const & noexcept { return *std::get_if<0>(&v_); }
    T operator*() && { return std::move(*std::get_if<0>(&v_)); }
    T *operator->() noexcept { return std::get_if<0>(&v_); }
    const T *operator->() const noexcept { return std::get_if<0>(&v_); }

    const Error &error() const noexcept {
        const Error *e = std::get_if<1>(&v_);
        return e != nullptr ? *e : detail::no_error();
    }
    Code code() const noexcept { return error().code(); }

private:
    void check() const {
        if (!ok()) detail::bad_result_access(*std::get_if<1>(&v_));
    }
    std::variant<T, Error> v_;
};

/** The result of a call with no value. */
template <>
class [[nodiscard]] Result<void> {
public:
    Result() noexcept = default;
    Result(Error error) : error_(std::move(error)) {}

    bool ok() const noexcept { return !error_.has_value(); }
    explicit operator bool() const noexcept { return ok(); }
    /** Checks: throws tern::Exception (or aborts) on an error. */
    void value() const {
        if (error_) detail::bad_result_access(*error_);
    }
    const Error &error() const noexcept { return error_ ? *error_ : detail::no_error(); }
    Code code() const noexcept { return error().code(); }

private:
    std::optional<Error> error_;
};

namespace detail {
/** A code and the error written with it. (Make the call first, then pass `err`: as
 *  two arguments of one call their order of evaluation would be unspecified.) */
inline Result<void> check(tern_code code, tern_error *err) {
    if (code == TERN_CODE_OK) {
        tern_error_free(err);
        return {};
    }
    return take_error(code, err);
}
} // namespace detail

/** Whether the linked libtern serves this header (tern_version_check). */
inline Result<void> check_version() {
    tern_code c = tern_version_check(TERN_VERSION_MAJOR, TERN_VERSION_MINOR);
    if (c == TERN_CODE_OK) return {};
    return Error(static_cast<Code>(c), std::string("libtern ") + tern_version() + " does not match tern.h " +
                                           std::to_string(TERN_VERSION_MAJOR) + "." +
                                           std::to_string(TERN_VERSION_MINOR));
}

// ---------------------------------------------------------------------------------
// Function: a move-only std::function (as C++23's std::move_only_function), so
// callables that capture move-only state are accepted.

template <class Signature>
class Function;

template <class R, class... Args>
class Function<R(Args...)> {
    struct Base {
        virtual ~Base() = default;
        virtual R call(Args... args) = 0;
    };
    template <class F>
    struct Impl final : Base {
        template <class G>
        explicit Impl(G &&g) : f(std::forward<G>(g)) {}
        R call(Args... args) override {
            if constexpr (std::is_void_v<R>) {
                std::invoke(f, std::forward<Args>(args)...);
            } else {
                return std::invoke(f, std::forward<Args>(args)...);
            }
        }
        F f;
    };

public:
    Function() noexcept = default;
    Function(std::nullptr_t) noexcept {}

    template <
        class F, class D = std::decay_t<F>,
        std::enable_if_t<!std::is_same_v<D, Function> && std::is_invocable_r_v<R, D &, Args...>, int> = 0>
    Function(F &&f) {
        if constexpr (std::is_pointer_v<D> || std::is_member_pointer_v<D>) {
            if (f == nullptr) return;
        }
        impl_ = std::make_unique<Impl<D>>(std::forward<F>(f));
    }

    Function(Function &&) noexcept = default;
    Function &operator=(Function &&) noexcept = default;
    Function(const Function &) = delete;
    Function &operator=(const Function &) = delete;
    ~Function() = default;

    explicit operator bool() const noexcept { return impl_ != nullptr; }
    /** Calls the callable; it must not be empty. */
    R operator()(Args... args) const { return impl_->call(std::forward<Args>(args)...); }

private:
    std::unique_ptr<Base> impl_;
};

// ---------------------------------------------------------------------------------
// Responses

/** One response header: lower-case name and value, views into the response. */
struct Header {
    std::string_view name;
    std::string_view value;
};

/** Bytes sent and to send, received and expected (0 when unknown); see on_progress. */
struct Progress {
    std::uint64_t sent;
    std::uint64_t to_send;
    std::uint64_t received;
    std::uint64_t expected;
};

/** The headers of a response, in tern's order (grouped by name, values in order). */
class HeaderRange {
public:
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag; // yields Header values
        using value_type = Header;
        using difference_type = std::ptrdiff_t;
        using pointer = void;
        using reference = Header;

        iterator() noexcept = default;
        iterator(const tern_response *r, std::size_t i) noexcept : r_(r), i_(i) {}
        Header operator*() const noexcept {
            const char *name = nullptr;
            const std::uint8_t *value = nullptr;
            std::size_t name_len = 0, value_len = 0;
            if (tern_response_header_at(r_, i_, &name, &name_len, &value, &value_len) != TERN_CODE_OK) {
                return Header{};
            }
            return Header{std::string_view(name, name_len),
                          std::string_view(reinterpret_cast<const char *>(value), value_len)};
        }
        iterator &operator++() noexcept {
            ++i_;
            return *this;
        }
        iterator operator++(int) noexcept {
            iterator old = *this;
            ++i_;
            return old;
        }
        bool operator==(const iterator &o) const noexcept { return r_ == o.r_ && i_ == o.i_; }
        bool operator!=(const iterator &o) const noexcept { return !(*this == o); }

    private:
        const tern_response *r_ = nullptr;
        std::size_t i_ = 0;
    };

    explicit HeaderRange(const tern_response *r) noexcept : r_(r) {}
    iterator begin() const noexcept { return iterator(r_, 0); }
    iterator end() const noexcept { return iterator(r_, size()); }
    std::size_t size() const noexcept { return tern_response_header_count(r_); }
    bool empty() const noexcept { return size() == 0; }
    Header operator[](std::size_t i) const noexcept { return *iterator(r_, i); }

private:
    const tern_response *r_;
};

namespace detail {
/** The read accessors shared by Response (owning) and ResponseView (borrowed). */
template <class Derived>
class ResponseAccess {
    const tern_response *r() const noexcept { return static_cast<const Derived &>(*this).raw(); }

public:
    /** The id `Session::send` returned for this request. */
    RequestId id() const noexcept { return tern_response_id(r()); }
    /** OK when the HTTP exchange completed (whatever the status), else the error. */
    Code code() const noexcept { return static_cast<Code>(tern_response_code(r())); }
    bool ok() const noexcept { return code() == Code::Ok; }
    /** The error message; "" on success (unless a danger option weakened TLS). */
    std::string_view message() const noexcept { return view(tern_response_message(r())); }
    /** code() and message() as an Error (code Ok when the exchange worked). */
    Error error() const { return Error(code(), std::string(message())); }
    /** The HTTP status; 0 when no response head arrived. */
    std::uint16_t status() const noexcept { return tern_response_status(r()); }
    /** 10, 11, 20 or 30; 0 when no response head arrived. */
    std::uint32_t version() const noexcept { return tern_response_version(r()); }
    /** The (decoded) body; empty when streamed with on_data, and in a ResponseView. */
    std::string_view body() const noexcept {
        const std::uint8_t *data = nullptr;
        std::size_t len = 0;
        if (tern_response_body(r(), &data, &len) != TERN_CODE_OK || data == nullptr) return {};
        return std::string_view(reinterpret_cast<const char *>(data), len);
    }
    /** The nth value of a header, name compared case-insensitively; nullopt if none. */
    std::optional<std::string_view> header(std::string_view name, std::size_t nth = 0) const {
        CStr n(name);
        if (!n.ok()) return std::nullopt;
        const std::uint8_t *value = nullptr;
        std::size_t len = 0;
        if (tern_response_header_get(r(), n.c_str(), nth, &value, &len, nullptr) != TERN_CODE_OK) {
            return std::nullopt;
        }
        return std::string_view(reinterpret_cast<const char *>(value), len);
    }
    /** Every value of a header (name compared case-insensitively), in order. */
    std::vector<std::string_view> header_values(std::string_view name) const {
        std::vector<std::string_view> out;
        for (std::size_t nth = 0;; nth++) {
            std::optional<std::string_view> v = header(name, nth);
            if (!v) return out;
            out.push_back(*v);
        }
    }
    /** Every header: `for (auto [name, value] : resp.headers())`. */
    HeaderRange headers() const noexcept { return HeaderRange(r()); }
    /** The final URL after redirects, user info redacted; "" if it never started. */
    std::string_view effective_url() const noexcept { return view(tern_response_effective_url(r())); }
    std::uint32_t redirect_count() const noexcept { return tern_response_redirect_count(r()); }
    /** "ip:port" of the final connection (the proxy's through a proxy); "" if none. */
    std::string_view remote_addr() const noexcept { return view(tern_response_remote_addr(r())); }
    std::chrono::microseconds timing(Timing kind) const noexcept {
        return std::chrono::microseconds(static_cast<std::chrono::microseconds::rep>(
            tern_response_timing_us(r(), static_cast<std::uint32_t>(kind))));
    }
};
} // namespace detail

/** A response head borrowed during on_headers: valid during that call only. */
class ResponseView : public detail::ResponseAccess<ResponseView> {
public:
    explicit ResponseView(const tern_response *r) noexcept : r_(r) {}
    const tern_response *raw() const noexcept { return r_; }

private:
    const tern_response *r_;
};

/** The outcome of one request, owned (tern_response_free on destruction). */
class Response : public detail::ResponseAccess<Response> {
public:
    Response() noexcept = default;
    /** Takes ownership of a response from tern.h. */
    explicit Response(tern_response *r) noexcept : r_(r) {}

    const tern_response *raw() const noexcept { return r_.get(); }
    /** Gives up ownership: the caller frees it with tern_response_free. */
    tern_response *release() noexcept { return r_.release(); }
    /** Whether this holds a response (false once moved from). */
    bool has_value() const noexcept { return r_ != nullptr; }

    /** The exception a callback or body reader of this request threw (the request was
     *  then canceled), or null. `std::rethrow_exception` it to handle it. */
    const std::exception_ptr &callback_exception() const noexcept { return exception_; }

private:
    friend struct detail::Trampolines;
    friend class Session;
    std::unique_ptr<tern_response, detail::ResponseDeleter> r_;
    std::exception_ptr exception_;
};

// ---------------------------------------------------------------------------------
// Runtime

struct RuntimeConfig {
    /** Worker threads; 0 = one per CPU. */
    std::uint32_t worker_threads = 0;
    /** Thread name; empty = "tern-worker". */
    std::string thread_name;
};

/** The background runtime (threads). Destroying it aborts its sessions' requests
 *  (they complete with SHUTDOWN) and stops the threads. Declare it before the
 *  sessions that use it, so they are destroyed first. */
class Runtime {
public:
    Runtime() noexcept = default;
    explicit Runtime(tern_runtime *rt) noexcept : rt_(rt) {}

    static Result<Runtime> create(const RuntimeConfig &config = RuntimeConfig()) {
        detail::CStr name(config.thread_name);
        if (!name.ok()) return detail::nul_error("thread name");
        tern_runtime_config c{};
        c.struct_size = sizeof(c);
        c.worker_threads = config.worker_threads;
        c.thread_name = name.c_str_or_null();
        tern_runtime *rt = nullptr;
        tern_error *err = nullptr;
        tern_code code = tern_runtime_new(&c, &rt, &err);
        if (code != TERN_CODE_OK) return detail::take_error(code, err);
        return Runtime(rt);
    }

    tern_runtime *raw() const noexcept { return rt_.get(); }
    explicit operator bool() const noexcept { return rt_ != nullptr; }

private:
    std::unique_ptr<tern_runtime, detail::RuntimeDeleter> rt_;
};

// ---------------------------------------------------------------------------------
// SessionOptions

namespace detail {
/** What SessionOptions and WsOptions share: the handle, made by `make`, and the first
 *  error a setter met, kept for whatever consumes the options to report. */
template <class Derived, class Handle, class Deleter>
class OptionsBuilder {
public:
    /** The first error a setter met, if any. */
    const std::optional<Error> &error() const noexcept { return error_; }
    bool ok() const noexcept { return !error_.has_value(); }
    const Handle *raw() const noexcept { return o_.get(); }
    Handle *raw() noexcept { return o_.get(); }

protected:
    explicit OptionsBuilder(tern_code (*make)(Handle **, tern_error **)) {
        Handle *o = nullptr;
        tern_error *err = nullptr;
        tern_code code = make(&o, &err);
        if (code != TERN_CODE_OK) {
            error_ = detail::take_error(code, err);
        } else {
            o_.reset(o);
        }
    }
    Derived &fail(Error e) {
        if (!error_) error_ = std::move(e);
        return static_cast<Derived &>(*this);
    }
    /** Runs one setter unless an error came before; `strings_ok` false means a string
     *  argument held a NUL (reported as INVALID_ARGUMENT naming `what`). */
    template <class F>
    Derived &apply(bool strings_ok, const char *what, F &&call) {
        if (error_) return static_cast<Derived &>(*this);
        if (!strings_ok) return fail(detail::nul_error(what));
        tern_error *err = nullptr;
        tern_code code = call(o_.get(), &err); // a NULL handle: NULL_ARGUMENT from tern
        if (code != TERN_CODE_OK) error_ = detail::take_error(code, err);
        return static_cast<Derived &>(*this);
    }

    std::unique_ptr<Handle, Deleter> o_;
    std::optional<Error> error_;
};
} // namespace detail

/**
 * Options for Session::create, one fluent setter per tern_session_options_* call
 * (the `set_` dropped; `add_` kept where values accumulate). Strings may be any
 * std::string_view (copied; an inner NUL byte is an INVALID_ARGUMENT error).
 */
class SessionOptions
    : public detail::OptionsBuilder<SessionOptions, tern_session_options, detail::OptionsDeleter> {
public:
    SessionOptions()
        : OptionsBuilder([](tern_session_options **o, tern_error **e) { return tern_session_options_new(o, e); }) {}

    /** Adds a header sent with every request (after earlier values of that name). */
    SessionOptions &header(std::string_view name, std::string_view value) & {
        detail::CStr n(name), v(value);
        return apply(n.ok() && v.ok(), "header", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_add_header(o, n.c_str(), v.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, header, (std::string_view name, std::string_view value),
                           (name, value))
    /** Sets a session header, replacing every earlier value (the user-agent too). */
    SessionOptions &set_header(std::string_view name, std::string_view value) & {
        detail::CStr n(name), v(value);
        return apply(n.ok() && v.ok(), "header", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_header(o, n.c_str(), v.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, set_header, (std::string_view name, std::string_view value),
                           (name, value))
    /** Sets the user-agent header. */
    SessionOptions &user_agent(std::string_view value) & { return set_header("user-agent", value); }
    TERN_HPP_RVALUE_SETTER(SessionOptions, user_agent, (std::string_view value), (value))
    /** A time-out (0 disables it). */
    SessionOptions &timeout(Timeout kind, std::chrono::milliseconds ms) & {
        std::uint64_t v = 0;
        if (!detail::to_ms(ms, v)) return fail(Error(Code::InvalidArgument, "timeout: negative duration"));
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_timeout_ms(o, static_cast<std::uint32_t>(kind), v, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, timeout, (Timeout kind, std::chrono::milliseconds ms), (kind, ms))
    /** Idle connections: how long kept (0 = until the server closes), how many per host. */
    SessionOptions &pool(std::chrono::milliseconds idle_timeout, std::uint32_t max_idle_per_host) & {
        std::uint64_t v = 0;
        if (!detail::to_ms(idle_timeout, v))
            return fail(Error(Code::InvalidArgument, "pool: negative duration"));
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_pool(o, v, max_idle_per_host, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, pool,
                           (std::chrono::milliseconds idle_timeout, std::uint32_t max_idle_per_host),
                           (idle_timeout, max_idle_per_host))
    SessionOptions &redirects(bool follow, std::uint32_t max = 10) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_redirects(o, follow ? 1u : 0u, max, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, redirects, (bool follow, std::uint32_t max = 10), (follow, max))
    SessionOptions &danger_allow_https_downgrade(bool allow) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_danger_allow_https_downgrade(o, allow ? 1u : 0u, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, danger_allow_https_downgrade, (bool allow), (allow))
    /** The largest body kept, in bytes; 0 = no limit. */
    SessionOptions &max_body_size(std::uint64_t bytes) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_max_body_size(o, bytes, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, max_body_size, (std::uint64_t bytes), (bytes))
    SessionOptions &max_header_size(std::uint32_t bytes) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_max_header_size(o, bytes, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, max_header_size, (std::uint32_t bytes), (bytes))
    SessionOptions &http_version(HttpVersion version) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_http_version(o, static_cast<std::uint32_t>(version), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, http_version, (HttpVersion version), (version))
    SessionOptions &decompress(bool on) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_decompress(o, on ? 1u : 0u, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, decompress, (bool on), (on))
    SessionOptions &add_ca_file(std::string_view path) & {
        detail::CStr p(path);
        return apply(p.ok(), "CA file path", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_add_ca_file(o, p.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, add_ca_file, (std::string_view path), (path))
    SessionOptions &add_ca_pem(std::string_view pem) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_add_ca_pem(o, detail::bytes(pem), pem.size(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, add_ca_pem, (std::string_view pem), (pem))
    SessionOptions &add_ca_dir(std::string_view path) & {
        detail::CStr p(path);
        return apply(p.ok(), "CA directory path", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_add_ca_dir(o, p.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, add_ca_dir, (std::string_view path), (path))
    SessionOptions &system_roots(bool use) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_system_roots(o, use ? 1u : 0u, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, system_roots, (bool use), (use))
    /** The proxy URL (http, https, socks5, socks5h); "" removes it. */
    SessionOptions &proxy(std::string_view url) & {
        detail::CStr u(url);
        return apply(u.ok(), "proxy URL", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_proxy(o, u.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, proxy, (std::string_view url), (url))
    SessionOptions &proxy_credentials(std::string_view user, std::string_view password) & {
        detail::CStr u(user), p(password);
        return apply(u.ok() && p.ok(), "proxy credentials", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_proxy_credentials(o, u.c_str(), p.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, proxy_credentials,
                           (std::string_view user, std::string_view password), (user, password))
    /** Back to the credentials in the proxy URL. */
    SessionOptions &clear_proxy_credentials() & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_proxy_credentials(o, nullptr, nullptr, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, clear_proxy_credentials, (), ())
    /** Hosts reached without the proxy, as curl's NO_PROXY. */
    SessionOptions &no_proxy(std::string_view list) & {
        detail::CStr l(list);
        return apply(l.ok(), "no-proxy list", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_no_proxy(o, l.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, no_proxy, (std::string_view list), (list))
    SessionOptions &trust_env(bool on) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_trust_env(o, on ? 1u : 0u, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, trust_env, (bool on), (on))
    SessionOptions &add_proxy_header(std::string_view name, std::string_view value) & {
        detail::CStr n(name), v(value);
        return apply(n.ok() && v.ok(), "proxy header", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_add_proxy_header(o, n.c_str(), v.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, add_proxy_header, (std::string_view name, std::string_view value),
                           (name, value))
    SessionOptions &client_cert_file(std::string_view cert_path, std::string_view key_path) & {
        detail::CStr c(cert_path), k(key_path);
        return apply(c.ok() && k.ok(), "client certificate path",
                     [&](tern_session_options *o, tern_error **e) {
                         return tern_session_options_set_client_cert_file(o, c.c_str(), k.c_str(), e);
                     });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, client_cert_file,
                           (std::string_view cert_path, std::string_view key_path), (cert_path, key_path))
    SessionOptions &client_cert_pem(std::string_view cert, std::string_view key) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_client_cert_pem(o, detail::bytes(cert), cert.size(),
                                                            detail::bytes(key), key.size(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, client_cert_pem, (std::string_view cert, std::string_view key),
                           (cert, key))
    SessionOptions &danger_accept_invalid_certs(bool on) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_danger_accept_invalid_certs(o, on ? 1u : 0u, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, danger_accept_invalid_certs, (bool on), (on))
    SessionOptions &danger_accept_invalid_hostnames(bool on) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_danger_accept_invalid_hostnames(o, on ? 1u : 0u, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, danger_accept_invalid_hostnames, (bool on), (on))
    SessionOptions &tls_versions(TlsVersion min, TlsVersion max) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_tls_versions(o, static_cast<std::uint32_t>(min),
                                                         static_cast<std::uint32_t>(max), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, tls_versions, (TlsVersion min, TlsVersion max), (min, max))
    SessionOptions &sni(bool on) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_sni(o, on ? 1u : 0u, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, sni, (bool on), (on))
    /** "ip[:port],..." nameservers; "" = the system resolver. */
    SessionOptions &nameservers(std::string_view list) & {
        detail::CStr l(list);
        return apply(l.ok(), "nameserver list", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_nameservers(o, l.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, nameservers, (std::string_view list), (list))
    /** "host:port:addr[,addr...]", as curl's --resolve. */
    SessionOptions &add_resolve(std::string_view entry) & {
        detail::CStr en(entry);
        return apply(en.ok(), "resolve entry", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_add_resolve(o, en.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, add_resolve, (std::string_view entry), (entry))
    SessionOptions &ip_family(IpFamily family) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_ip_family(o, static_cast<std::uint32_t>(family), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, ip_family, (IpFamily family), (family))
    SessionOptions &dns_cache_ttl(std::chrono::milliseconds ttl) & {
        std::uint64_t v = 0;
        if (!detail::to_ms(ttl, v))
            return fail(Error(Code::InvalidArgument, "dns_cache_ttl: negative duration"));
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_dns_cache_ttl_ms(o, v, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, dns_cache_ttl, (std::chrono::milliseconds ttl), (ttl))
    /** Open connections in total and per host; 0 = no limit. */
    SessionOptions &connection_limits(std::uint32_t total, std::uint32_t per_host) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_connection_limits(o, total, per_host, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, connection_limits, (std::uint32_t total, std::uint32_t per_host),
                           (total, per_host))
    SessionOptions &delivery(Delivery where) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_delivery(o, static_cast<std::uint32_t>(where), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, delivery, (Delivery where), (where))
    SessionOptions &progress_interval(std::chrono::milliseconds interval) & {
        std::uint64_t v = 0;
        if (!detail::to_ms(interval, v) || v > std::numeric_limits<std::uint32_t>::max()) {
            return fail(Error(Code::InvalidArgument, "progress_interval: out of range"));
        }
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_progress_interval_ms(o, static_cast<std::uint32_t>(v), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, progress_interval, (std::chrono::milliseconds interval),
                           (interval))
    SessionOptions &cookie_jar(bool on) & {
        return apply(true, "", [&](tern_session_options *o, tern_error **e) {
            return tern_session_options_set_cookie_jar(o, on ? 1u : 0u, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(SessionOptions, cookie_jar, (bool on), (on))

};

// ---------------------------------------------------------------------------------
// Form

/** A form body: url-encoded text fields, or multipart with bytes and files. */
class Form {
public:
    explicit Form(FormKind kind) {
        tern_form *f = nullptr;
        tern_error *err = nullptr;
        tern_code code = tern_form_new(static_cast<std::uint32_t>(kind), &f, &err);
        if (code != TERN_CODE_OK) {
            error_ = detail::take_error(code, err);
        } else {
            f_.reset(f);
        }
    }
    static Form urlencoded() { return Form(FormKind::UrlEncoded); }
    static Form multipart() { return Form(FormKind::Multipart); }

    const std::optional<Error> &error() const noexcept { return error_; }
    bool ok() const noexcept { return !error_.has_value(); }
    const tern_form *raw() const noexcept { return f_.get(); }

    /** A text field (UTF-8); names may repeat. */
    Form &field(std::string_view name, std::string_view value) & {
        detail::CStr n(name), v(value);
        return apply(n.ok() && v.ok(), "form field", [&](tern_form *f, tern_error **e) {
            return tern_form_add_field(f, n.c_str(), v.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(Form, field, (std::string_view name, std::string_view value), (name, value))
    /** A part holding a copy of `data` (multipart only); an empty filename or
     *  content type means none (the type is then guessed from the filename). */
    Form &bytes(std::string_view name, std::string_view data, std::string_view filename = {},
                std::string_view content_type = {}) & {
        detail::CStr n(name), fn(filename), ct(content_type);
        return apply(n.ok() && fn.ok() && ct.ok(), "form part", [&](tern_form *f, tern_error **e) {
            return tern_form_add_bytes(f, n.c_str(), detail::bytes(data), data.size(), fn.c_str_or_null(),
                                       ct.c_str_or_null(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(Form, bytes,
                           (std::string_view name, std::string_view data, std::string_view filename = {},
                            std::string_view content_type = {}),
                           (name, data, filename, content_type))
    /** A file, streamed when the request is sent (multipart only). */
    Form &file(std::string_view name, std::string_view path, std::string_view filename = {},
               std::string_view content_type = {}) & {
        detail::CStr n(name), p(path), fn(filename), ct(content_type);
        return apply(n.ok() && p.ok() && fn.ok() && ct.ok(), "form file", [&](tern_form *f, tern_error **e) {
            return tern_form_add_file(f, n.c_str(), p.c_str(), fn.c_str_or_null(), ct.c_str_or_null(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(Form, file,
                           (std::string_view name, std::string_view path, std::string_view filename = {},
                            std::string_view content_type = {}),
                           (name, path, filename, content_type))

private:
    template <class F>
    Form &apply(bool strings_ok, const char *what, F &&call) {
        if (error_) return *this;
        if (!strings_ok) {
            error_ = detail::nul_error(what);
            return *this;
        }
        tern_error *err = nullptr;
        tern_code code = call(f_.get(), &err);
        if (code != TERN_CODE_OK) error_ = detail::take_error(code, err);
        return *this;
    }

    std::unique_ptr<tern_form, detail::FormDeleter> f_;
    std::optional<Error> error_;
};

// ---------------------------------------------------------------------------------
// Request

/** What a body reader returns: how many bytes it wrote, and whether the body goes
 *  on (data), ends (end), waits for Session::resume (pause) or is given up (abort). */
struct ReadResult {
    ReadStatus status;
    std::size_t written;

    static ReadResult data(std::size_t n) noexcept { return {ReadStatus::Data, n}; }
    static ReadResult end(std::size_t n = 0) noexcept { return {ReadStatus::End, n}; }
    static ReadResult pause() noexcept { return {ReadStatus::Pause, 0}; }
    static ReadResult abort() noexcept { return {ReadStatus::Abort, 0}; }
};

namespace detail {
struct ReaderBox {
    Function<ReadResult(char *, std::size_t)> read;
    std::shared_ptr<Failure> failure;
};

/** A body moved into the request (Request::body(std::string&&) and the like). */
struct OwnedBody {
    virtual ~OwnedBody() = default;
};
template <class T>
struct OwnedBodyOf final : OwnedBody {
    explicit OwnedBodyOf(T &&v) : value(std::move(v)) {}
    T value;
};

/* The callbacks tern.h declares inside its extern "C" block (body reader, borrowed
 * body release, log) have C language linkage, so these do too; they are global
 * names, hence the prefix. (tern_callbacks' members are declared outside that block:
 * the Trampolines below have C++ linkage to match.) */
extern "C" {
inline std::uint32_t tern_hpp_read_body(void *user_data, std::uint8_t *buf, std::size_t cap,
                                        std::size_t *written) noexcept {
    auto *box = static_cast<ReaderBox *>(user_data);
    *written = 0;
    return guarded(
        [&]() -> std::uint32_t {
            ReadResult r = box->read(reinterpret_cast<char *>(buf), cap);
            if (r.written > cap) return TERN_READ_STATUS_ABORT; // a broken reader
            *written = r.written;
            return static_cast<std::uint32_t>(r.status);
        },
        [&](std::exception_ptr e) -> std::uint32_t {
            box->failure->set(std::move(e));
            return TERN_READ_STATUS_ABORT;
        });
}
inline void tern_hpp_release_reader(void *user_data) noexcept { delete static_cast<ReaderBox *>(user_data); }
inline void tern_hpp_release_body(void *user_data) noexcept { delete static_cast<OwnedBody *>(user_data); }
}
} // namespace detail

/**
 * One request being built; consumed by Session::send or Session::perform. Setters
 * are fluent on lvalues and rvalues: `session.perform(Request::get(u).header("a", "b"))`.
 * The first failing setter's error is kept and returned by send/perform.
 */
class Request {
public:
    Request() noexcept = default;
    /** Any HTTP method token ("GET", "PROPFIND"); an absolute http(s) URL. */
    Request(std::string_view method, std::string_view url) {
        detail::CStr m(method), u(url);
        if (!m.ok() || !u.ok()) {
            error_ = detail::nul_error("method or URL");
            return;
        }
        tern_request *r = nullptr;
        tern_error *err = nullptr;
        tern_code code = tern_request_new(m.c_str(), u.c_str(), &r, &err);
        if (code != TERN_CODE_OK) {
            error_ = detail::take_error(code, err);
        } else {
            r_.reset(r);
        }
    }
    /** Takes ownership of a request from tern.h. */
    explicit Request(tern_request *r) noexcept : r_(r) {}

    static Request get(std::string_view url) { return Request("GET", url); }
    static Request head(std::string_view url) { return Request("HEAD", url); }
    static Request post(std::string_view url) { return Request("POST", url); }
    static Request put(std::string_view url) { return Request("PUT", url); }

    const std::optional<Error> &error() const noexcept { return error_; }
    bool ok() const noexcept { return !error_.has_value(); }
    tern_request *raw() noexcept { return r_.get(); }
    /** Gives up ownership (send it with tern.h or free it with tern_request_free). */
    tern_request *release() noexcept { return r_.release(); }

    /** Adds a header (after earlier values of that name). */
    Request &header(std::string_view name, std::string_view value) & {
        detail::CStr n(name), v(value);
        return apply(n.ok() && v.ok(), "header", [&](tern_request *r, tern_error **e) {
            return tern_request_add_header(r, n.c_str(), v.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(Request, header, (std::string_view name, std::string_view value), (name, value))

    /** Sets a header, replacing earlier values of that name. */
    Request &set_header(std::string_view name, std::string_view value) & {
        detail::CStr n(name), v(value);
        return apply(n.ok() && v.ok(), "header", [&](tern_request *r, tern_error **e) {
            return tern_request_set_header(r, n.c_str(), v.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(Request, set_header, (std::string_view name, std::string_view value),
                           (name, value))

    /** The body: a copy of `data`. */
    Request &body(std::string_view data) & {
        return apply(true, "", [&](tern_request *r, tern_error **e) {
            return tern_request_set_body(r, detail::bytes(data), data.size(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(Request, body, (std::string_view data), (data))
    Request &body(const char *data) & { return body(std::string_view(data != nullptr ? data : "")); }
    TERN_HPP_RVALUE_SETTER(Request, body, (const char *data), (data))

    /** The body, moved in and never copied: the string lives until tern is done. */
    Request &body(std::string &&data) & { return body_owned(std::move(data)); }
    TERN_HPP_RVALUE_SETTER(Request, body, (std::string && data), (std::move(data)))
    Request &body(std::vector<std::uint8_t> &&data) & { return body_owned(std::move(data)); }
    TERN_HPP_RVALUE_SETTER(Request, body, (std::vector<std::uint8_t> && data), (std::move(data)))
    Request &body(std::vector<char> &&data) & { return body_owned(std::move(data)); }
    TERN_HPP_RVALUE_SETTER(Request, body, (std::vector<char> && data), (std::move(data)))

    /** The body, borrowed: `data` must stay valid and unchanged until the request has
     *  completed (or is destroyed unsent). For static data. */
    Request &body_static(std::string_view data) & {
        return apply(true, "", [&](tern_request *r, tern_error **e) {
            return tern_request_set_body_borrowed(r, detail::bytes(data), data.size(), nullptr, nullptr, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(Request, body_static, (std::string_view data), (data))

    /**
     * The body comes from `read(char *buf, std::size_t cap) -> ReadResult`, called on
     * a tern thread each time tern wants more (one call at a time); `length` is the
     * total (Content-Length) or -1 (chunked). The callable (and its captures) is
     * destroyed once tern no longer needs it. An exception from it aborts the request
     * (CANCELED; Response::callback_exception() has it).
     */
    template <class F>
    Request &body_reader(F &&read, std::int64_t length = -1) & {
        static_assert(std::is_invocable_r_v<ReadResult, std::decay_t<F> &, char *, std::size_t>,
                      "a body reader is called as read(char *buf, std::size_t cap) -> tern::ReadResult");
        if (error_) return *this;
        auto box = std::make_unique<detail::ReaderBox>();
        box->read = Function<ReadResult(char *, std::size_t)>(std::forward<F>(read));
        box->failure = failure();
        tern_error *err = nullptr;
        tern_code code = tern_request_set_body_reader(r_.get(), length, &detail::tern_hpp_read_body,
                                                      &detail::tern_hpp_release_reader, box.get(), &err);
        if (code != TERN_CODE_OK) {
            error_ = detail::take_error(code, err); // not called: still ours, freed here
        } else {
            (void)box.release(); // tern's now: tern_hpp_release_reader frees it
        }
        return *this;
    }
    template <class F>
    Request &&body_reader(F &&read, std::int64_t length = -1) && {
        return std::move(body_reader(std::forward<F>(read), length));
    }

    /** The body is pushed after send: Session::write, then Session::end_body. */
    Request &body_stream(std::int64_t length = -1) & {
        return apply(true, "", [&](tern_request *r, tern_error **e) {
            return tern_request_set_body_stream(r, length, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(Request, body_stream, (std::int64_t length = -1), (length))

    /** The body is this form (copied; sets Content-Type). */
    Request &form(const Form &f) & {
        if (error_) return *this;
        if (f.error()) {
            error_ = *f.error();
            return *this;
        }
        return apply(true, "",
                     [&](tern_request *r, tern_error **e) { return tern_request_set_form(r, f.raw(), e); });
    }
    TERN_HPP_RVALUE_SETTER(Request, form, (const Form &f), (f))

    /** Overrides one of the session's time-outs (0 disables it). */
    Request &timeout(Timeout kind, std::chrono::milliseconds ms) & {
        std::uint64_t v = 0;
        if (!detail::to_ms(ms, v)) {
            if (!error_) error_ = Error(Code::InvalidArgument, "timeout: negative duration");
            return *this;
        }
        return apply(true, "", [&](tern_request *r, tern_error **e) {
            return tern_request_set_timeout_ms(r, static_cast<std::uint32_t>(kind), v, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(Request, timeout, (Timeout kind, std::chrono::milliseconds ms), (kind, ms))

    Request &redirects(bool follow, std::uint32_t max = 10) & {
        return apply(true, "", [&](tern_request *r, tern_error **e) {
            return tern_request_set_redirects(r, follow ? 1u : 0u, max, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(Request, redirects, (bool follow, std::uint32_t max = 10), (follow, max))

    Request &http_version(HttpVersion version) & {
        return apply(true, "", [&](tern_request *r, tern_error **e) {
            return tern_request_set_http_version(r, static_cast<std::uint32_t>(version), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(Request, http_version, (HttpVersion version), (version))

    /** A proxy for this request; "" = a direct connection. */
    Request &proxy(std::string_view url) & {
        detail::CStr u(url);
        return apply(u.ok(), "proxy URL", [&](tern_request *r, tern_error **e) {
            return tern_request_set_proxy(r, u.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(Request, proxy, (std::string_view url), (url))
    /** Back to the session's proxy choice. */
    Request &session_proxy() & {
        return apply(true, "",
                     [&](tern_request *r, tern_error **e) { return tern_request_set_proxy(r, nullptr, e); });
    }
    TERN_HPP_RVALUE_SETTER(Request, session_proxy, (), ())

private:
    friend class Session;

    template <class T>
    Request &body_owned(T &&data) {
        static_assert(!std::is_lvalue_reference_v<T>, "moved in, never copied");
        if (error_) return *this;
        auto owner = std::make_unique<detail::OwnedBodyOf<T>>(std::move(data));
        const auto *bytes = reinterpret_cast<const std::uint8_t *>(owner->value.data());
        const std::size_t size = owner->value.size();
        tern_error *err = nullptr;
        tern_code code = tern_request_set_body_borrowed(r_.get(), bytes, size, &detail::tern_hpp_release_body,
                                                        static_cast<detail::OwnedBody *>(owner.get()), &err);
        if (code != TERN_CODE_OK) {
            error_ = detail::take_error(code, err); // not called: still ours, freed here
        } else {
            (void)owner.release(); // tern's now: tern_hpp_release_body frees it
        }
        return *this;
    }

    template <class F>
    Request &apply(bool strings_ok, const char *what, F &&call) {
        if (error_) return *this;
        if (!strings_ok) {
            error_ = detail::nul_error(what);
            return *this;
        }
        tern_error *err = nullptr;
        tern_code code = call(r_.get(), &err);
        if (code != TERN_CODE_OK) error_ = detail::take_error(code, err);
        return *this;
    }

    const std::shared_ptr<detail::Failure> &failure() {
        if (!failure_) failure_ = std::make_shared<detail::Failure>();
        return failure_;
    }

    std::unique_ptr<tern_request, detail::RequestDeleter> r_;
    std::optional<Error> error_;
    std::shared_ptr<detail::Failure> failure_; // shared with a body reader, if any
};

// ---------------------------------------------------------------------------------
// Handlers: the callbacks of one request

/**
 * The callbacks of one request, each any callable (move-only ones too):
 *   on_complete(Response)                 exactly once; owns the response
 *   on_headers(ResponseView) -> Action    the final head, before the body (or void)
 *   on_data(std::string_view) -> Action   each body chunk; the body is then not kept
 *                                         (or void); Action::Pause waits for resume
 *   on_progress(const Progress &)         bytes moved, at most once per interval
 *   on_upload_ready()                     a pushed body can take more writes
 * All are optional (without on_complete the response is freed). Views are valid
 * during the call only.
 */
class Handlers {
public:
    Handlers() = default;

    template <class F>
    Handlers &on_complete(F &&f) & {
        complete_ = Function<void(Response)>(std::forward<F>(f));
        return *this;
    }
    template <class F>
    Handlers &&on_complete(F &&f) && {
        return std::move(on_complete(std::forward<F>(f)));
    }
    template <class F>
    Handlers &on_headers(F &&f) & {
        headers_ = action_function<ResponseView>(std::forward<F>(f));
        return *this;
    }
    template <class F>
    Handlers &&on_headers(F &&f) && {
        return std::move(on_headers(std::forward<F>(f)));
    }
    template <class F>
    Handlers &on_data(F &&f) & {
        data_ = action_function<std::string_view>(std::forward<F>(f));
        return *this;
    }
    template <class F>
    Handlers &&on_data(F &&f) && {
        return std::move(on_data(std::forward<F>(f)));
    }
    template <class F>
    Handlers &on_progress(F &&f) & {
        progress_ = Function<void(const Progress &)>(std::forward<F>(f));
        return *this;
    }
    template <class F>
    Handlers &&on_progress(F &&f) && {
        return std::move(on_progress(std::forward<F>(f)));
    }
    template <class F>
    Handlers &on_upload_ready(F &&f) & {
        upload_ready_ = Function<void()>(std::forward<F>(f));
        return *this;
    }
    template <class F>
    Handlers &&on_upload_ready(F &&f) && {
        return std::move(on_upload_ready(std::forward<F>(f)));
    }

private:
    friend struct detail::Trampolines;
    friend class Session;

    /** A callable returning Action, or void (then: Continue). */
    template <class Arg, class F>
    static Function<Action(Arg)> action_function(F &&f) {
        using D = std::decay_t<F>;
        static_assert(std::is_invocable_v<D &, Arg>, "the callback must accept its argument");
        if constexpr (std::is_void_v<std::invoke_result_t<D &, Arg>>) {
            return Function<Action(Arg)>([g = D(std::forward<F>(f))](Arg a) mutable {
                std::invoke(g, a);
                return Action::Continue;
            });
        } else {
            static_assert(std::is_convertible_v<std::invoke_result_t<D &, Arg>, Action>,
                          "the callback must return tern::Action or void");
            return Function<Action(Arg)>(std::forward<F>(f));
        }
    }

    Function<void(Response)> complete_;
    Function<Action(ResponseView)> headers_;
    Function<Action(std::string_view)> data_;
    Function<void(const Progress &)> progress_;
    Function<void()> upload_ready_;
};

namespace detail {

/** user_data of one sent request. Two references: tern's (dropped by `release`,
 *  which also destroys the handlers) and the sender's (dropped when `send` has
 *  published the id), so a callback that must cancel learns the id either way. */
struct CallBox {
    CallBox(Handlers h, std::weak_ptr<SessionCore> s, std::shared_ptr<Failure> reader_failure) noexcept
        : handlers(std::move(h)), session(std::move(s)), reader(std::move(reader_failure)) {}

    void unref() noexcept {
        if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }
    /** Cancels the request from a callback: now if its id is known, else `send`
     *  does it when it publishes the id; on_headers/on_data also answer CANCEL. */
    void cancel() noexcept {
        cancel_wanted.store(true);
        RequestId i = id.load();
        if (i == 0) return;
        if (std::shared_ptr<SessionCore> s = session.lock()) tern_session_cancel(s->raw, i);
    }
    void fail(std::exception_ptr e) noexcept {
        failure.set(std::move(e));
        cancel();
    }

    std::atomic<int> refs{2};
    std::atomic<RequestId> id{0};
    std::atomic<bool> cancel_wanted{false};
    Handlers handlers;
    std::weak_ptr<SessionCore> session;
    Failure failure;                 // a callback's exception
    std::shared_ptr<Failure> reader; // the body reader's, if it has one
};

/** The C callbacks. They never let an exception out (tern.h forbids unwinding). */
struct Trampolines {
    static void complete(void *user_data, tern_response *response) noexcept {
        auto *box = static_cast<CallBox *>(user_data);
        Response r(response);
        r.exception_ = box->failure.get();
        if (!r.exception_ && box->reader) r.exception_ = box->reader->get();
        if (!box->handlers.complete_) return; // r frees the response
        guarded([&] { box->handlers.complete_(std::move(r)); },
                [](std::exception_ptr) { /* nobody left to receive it */ });
    }
    static std::uint32_t headers(void *user_data, const tern_response *head) noexcept {
        auto *box = static_cast<CallBox *>(user_data);
        if (box->id.load() == 0) box->id.store(tern_response_id(head));
        if (box->cancel_wanted.load()) return TERN_ACTION_CANCEL;
        return guarded([&] { return static_cast<std::uint32_t>(box->handlers.headers_(ResponseView(head))); },
                       [&](std::exception_ptr e) {
                           box->fail(std::move(e));
                           return std::uint32_t{TERN_ACTION_CANCEL};
                       });
    }
    static std::uint32_t data(void *user_data, const std::uint8_t *chunk_data, std::size_t len) noexcept {
        auto *box = static_cast<CallBox *>(user_data);
        if (box->cancel_wanted.load()) return TERN_ACTION_CANCEL;
        std::string_view chunk(len != 0 ? reinterpret_cast<const char *>(chunk_data) : "", len);
        return guarded([&] { return static_cast<std::uint32_t>(box->handlers.data_(chunk)); },
                       [&](std::exception_ptr e) {
                           box->fail(std::move(e));
                           return std::uint32_t{TERN_ACTION_CANCEL};
                       });
    }
    static void progress(void *user_data, std::uint64_t sent, std::uint64_t to_send, std::uint64_t received,
                         std::uint64_t expected) noexcept {
        auto *box = static_cast<CallBox *>(user_data);
        if (box->cancel_wanted.load()) return;
        const Progress p{sent, to_send, received, expected};
        guarded([&] { box->handlers.progress_(p); }, [&](std::exception_ptr e) { box->fail(std::move(e)); });
    }
    static void upload_ready(void *user_data) noexcept {
        auto *box = static_cast<CallBox *>(user_data);
        if (box->cancel_wanted.load()) return;
        guarded([&] { box->handlers.upload_ready_(); },
                [&](std::exception_ptr e) { box->fail(std::move(e)); });
    }
    static void release(void *user_data) noexcept {
        auto *box = static_cast<CallBox *>(user_data);
        box->handlers = Handlers(); // every capture destroyed here, exactly once
        box->unref();
    }
};

} // namespace detail

// ---------------------------------------------------------------------------------
// Session

/**
 * A session: configuration, connection pool, cookie jar, requests in flight. All
 * methods are const and thread-safe. Destroying it starts a graceful close: requests
 * in flight still complete and their callbacks still run (with Delivery::Queued they
 * are aborted and their callbacks run inside the destructor), as tern_session_free.
 */
class Session {
public:
    Session() noexcept = default;
    Session(Session &&) noexcept = default;
    Session &operator=(Session &&) noexcept = default;
    Session(const Session &) = delete; // one owner, as every handle here
    Session &operator=(const Session &) = delete;
    ~Session() = default;

    static Result<Session> create(const Runtime &rt, const SessionOptions &options = SessionOptions()) {
        if (options.error()) return *options.error();
        tern_session *s = nullptr;
        tern_error *err = nullptr;
        tern_code code = tern_session_new(rt.raw(), options.raw(), &s, &err);
        if (code != TERN_CODE_OK) return detail::take_error(code, err);
        Session out;
        out.core_ = std::make_shared<detail::SessionCore>(s);
        return out;
    }

    const tern_session *raw() const noexcept { return core_ ? core_->raw : nullptr; }
    explicit operator bool() const noexcept { return core_ != nullptr; }

    /**
     * Starts a request; returns its id at once. The handlers run later (never inside
     * this call). If the request is refused (an error is returned), no handler runs
     * and each is destroyed before this returns.
     */
    Result<RequestId> send(Request request, Handlers handlers) const {
        if (request.error_) return *request.error_; // handlers destroyed, uncalled
        tern_callbacks cb{};
        cb.struct_size = sizeof(cb);
        cb.on_complete = &detail::Trampolines::complete;
        cb.on_headers = handlers.headers_ ? &detail::Trampolines::headers : nullptr;
        cb.on_data = handlers.data_ ? &detail::Trampolines::data : nullptr;
        cb.on_progress = handlers.progress_ ? &detail::Trampolines::progress : nullptr;
        cb.on_upload_ready = handlers.upload_ready_ ? &detail::Trampolines::upload_ready : nullptr;
        cb.release = &detail::Trampolines::release;
        auto *box = new detail::CallBox(std::move(handlers), core_, request.failure_);
        RequestId id = 0;
        tern_error *err = nullptr;
        tern_code code = tern_session_send(raw(), request.release(), &cb, box, &id, &err);
        if (code != TERN_CODE_OK) {
            delete box; // refused: tern calls nothing, so the box is still ours
            return detail::take_error(code, err);
        }
        box->id.store(id);
        if (box->cancel_wanted.load()) tern_session_cancel(raw(), id); // a callback threw early
        box->unref();
        return id;
    }

    /** send() with only an on_complete callable. */
    template <class F, std::enable_if_t<std::is_invocable_v<std::decay_t<F> &, Response>, int> = 0>
    Result<RequestId> send(Request request, F &&on_complete) const {
        return send(std::move(request), Handlers().on_complete(std::forward<F>(on_complete)));
    }

    /** Runs a request to its end on this thread. An error Result means refused (from
     *  a callback: WOULD_DEADLOCK); a failed exchange is a Response with its code. */
    Result<Response> perform(Request request) const {
        if (request.error_) return *request.error_;
        std::shared_ptr<detail::Failure> reader = request.failure_;
        tern_response *out = nullptr;
        tern_error *err = nullptr;
        tern_code code = tern_session_perform(raw(), request.release(), &out, &err);
        if (code != TERN_CODE_OK) return detail::take_error(code, err);
        Response r(out);
        if (reader) r.exception_ = reader->get();
        return r;
    }

    /** Cancels a request in flight (NOT_FOUND when it already completed). */
    Result<void> cancel(RequestId id) const {
        tern_code code = tern_session_cancel(raw(), id);
        if (code == TERN_CODE_OK) return {};
        return detail::code_error(code, "tern_session_cancel");
    }
    /** Resumes a request that on_headers, on_data or a body reader paused. */
    Result<void> resume(RequestId id) const {
        tern_code code = tern_session_resume(raw(), id);
        if (code == TERN_CODE_OK) return {};
        return detail::code_error(code, "tern_session_resume");
    }
    /** Pushes body bytes (Request::body_stream); returns how many were taken. When
     *  none fit: error WOULD_BLOCK; try again after on_upload_ready. */
    Result<std::size_t> write(RequestId id, std::string_view data) const {
        std::size_t accepted = 0;
        tern_error *err = nullptr;
        tern_code code = tern_session_write(raw(), id, detail::bytes(data), data.size(), &accepted, &err);
        if (code != TERN_CODE_OK) return detail::take_error(code, err);
        return accepted;
    }
    /** Ends a pushed body. */
    Result<void> end_body(RequestId id) const {
        tern_error *err = nullptr;
        tern_code code = tern_session_end_body(raw(), id, &err);
        return detail::check(code, err);
    }
    /** Starts closing: new sends are refused (SHUTDOWN); see tern_close. */
    Result<void> close(Close mode = Close::Graceful) const {
        tern_error *err = nullptr;
        tern_code code = tern_session_close(raw(), static_cast<std::uint32_t>(mode), &err);
        return detail::check(code, err);
    }
    /** Delivery::Queued: runs up to `max_callbacks` (0 = all) queued callbacks here,
     *  waiting up to `timeout` for the first; returns how many ran. */
    Result<std::uint32_t> poll(std::chrono::milliseconds timeout = std::chrono::milliseconds(0),
                               std::uint32_t max_callbacks = 0) const {
        std::uint64_t ms = 0;
        if (!detail::to_ms(timeout, ms)) return Error(Code::InvalidArgument, "poll: negative timeout");
        if (ms > std::numeric_limits<std::uint32_t>::max()) ms = std::numeric_limits<std::uint32_t>::max();
        std::uint32_t ran = 0;
        tern_error *err = nullptr;
        tern_code code = tern_session_poll(raw(), static_cast<std::uint32_t>(ms), max_callbacks, &ran, &err);
        if (code != TERN_CODE_OK) return detail::take_error(code, err);
        return ran;
    }
    /** Delivery::Queued: the descriptor that is readable while callbacks wait. It
     *  belongs to the session: do not close it. */
    Result<int> fd() const {
        int out = -1;
        tern_error *err = nullptr;
        tern_code code = tern_session_fd(raw(), &out, &err);
        if (code != TERN_CODE_OK) return detail::take_error(code, err);
        return out;
    }

    /** Stores a cookie as if `url` had sent `Set-Cookie: <set_cookie>` (cookie jar). */
    Result<void> add_cookie(std::string_view url, std::string_view set_cookie) const {
        detail::CStr u(url), c(set_cookie);
        if (!u.ok() || !c.ok()) return detail::nul_error("cookie URL or value");
        tern_error *err = nullptr;
        tern_code code = tern_session_add_cookie(raw(), u.c_str(), c.c_str(), &err);
        return detail::check(code, err);
    }
    /** The Cookie header tern would send to `url` now ("" when none). */
    Result<std::string> cookies(std::string_view url) const {
        detail::CStr u(url);
        if (!u.ok()) return detail::nul_error("cookie URL");
        char *out = nullptr;
        tern_error *err = nullptr;
        tern_code code = tern_session_get_cookies(raw(), u.c_str(), &out, &err);
        if (code != TERN_CODE_OK) return detail::take_error(code, err);
        std::unique_ptr<char, detail::StringDeleter> owned(out);
        return std::string(owned ? owned.get() : "");
    }
    Result<void> clear_cookies() const {
        tern_error *err = nullptr;
        tern_code code = tern_session_clear_cookies(raw(), &err);
        return detail::check(code, err);
    }

private:
    std::shared_ptr<detail::SessionCore> core_;
};

// ---------------------------------------------------------------------------------
// WebSocket

namespace detail {
struct WsOptionsDeleter {
    void operator()(tern_ws_options *p) const noexcept { tern_ws_options_free(p); }
};
struct WsDeleter {
    void operator()(tern_ws *p) const noexcept { tern_ws_free(p); }
};
struct WsTrampolines;
} // namespace detail

/**
 * Options for WebSocket::connect, one fluent setter per tern_ws_options_* call (the
 * `set_`/`add_` dropped; `header` and `subprotocol` accumulate). Like SessionOptions:
 * the first failing setter's error is kept, later setters do nothing, and connect
 * returns it. Reusable: connect copies the options.
 */
class WsOptions : public detail::OptionsBuilder<WsOptions, tern_ws_options, detail::WsOptionsDeleter> {
public:
    WsOptions() : OptionsBuilder([](tern_ws_options **o, tern_error **e) { return tern_ws_options_new(o, e); }) {}

    /** Adds a header to the upgrade request (after earlier values of that name);
     *  tern's own (Host, Upgrade, Sec-WebSocket-*...) are refused (INVALID_HEADER). */
    WsOptions &header(std::string_view name, std::string_view value) & {
        detail::CStr n(name), v(value);
        return apply(n.ok() && v.ok(), "header", [&](tern_ws_options *o, tern_error **e) {
            return tern_ws_options_add_header(o, n.c_str(), v.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(WsOptions, header, (std::string_view name, std::string_view value), (name, value))
    /** Offers a subprotocol, after those offered before (in order of preference);
     *  the server's choice is WebSocket::subprotocol(). */
    WsOptions &subprotocol(std::string_view protocol) & {
        detail::CStr p(protocol);
        return apply(p.ok(), "subprotocol", [&](tern_ws_options *o, tern_error **e) {
            return tern_ws_options_add_subprotocol(o, p.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(WsOptions, subprotocol, (std::string_view protocol), (protocol))
    /** The Origin header of the upgrade request. */
    WsOptions &origin(std::string_view value) & {
        detail::CStr v(value);
        return apply(v.ok(), "origin", [&](tern_ws_options *o, tern_error **e) {
            return tern_ws_options_set_origin(o, v.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(WsOptions, origin, (std::string_view value), (value))
    /** No Origin header (the default). */
    WsOptions &clear_origin() & {
        return apply(true, "",
                     [&](tern_ws_options *o, tern_error **e) { return tern_ws_options_set_origin(o, nullptr, e); });
    }
    TERN_HPP_RVALUE_SETTER(WsOptions, clear_origin, (), ())
    /** A proxy for these sockets (http, https: a CONNECT tunnel; socks5, socks5h);
     *  "" = a direct connection. */
    WsOptions &proxy(std::string_view url) & {
        detail::CStr u(url);
        return apply(u.ok(), "proxy URL", [&](tern_ws_options *o, tern_error **e) {
            return tern_ws_options_set_proxy(o, u.c_str(), e);
        });
    }
    TERN_HPP_RVALUE_SETTER(WsOptions, proxy, (std::string_view url), (url))
    /** Back to the session's proxy choice (the default). */
    WsOptions &session_proxy() & {
        return apply(true, "",
                     [&](tern_ws_options *o, tern_error **e) { return tern_ws_options_set_proxy(o, nullptr, e); });
    }
    TERN_HPP_RVALUE_SETTER(WsOptions, session_proxy, (), ())
    /** A time-out; 0 turns Connect, Handshake and Receive off (Close cannot be 0). */
    WsOptions &timeout(WsTimeout kind, std::chrono::milliseconds ms) & {
        std::uint64_t v = 0;
        if (!detail::to_ms(ms, v)) return fail(Error(Code::InvalidArgument, "timeout: negative duration"));
        return apply(true, "", [&](tern_ws_options *o, tern_error **e) {
            return tern_ws_options_set_timeout_ms(o, static_cast<std::uint32_t>(kind), v, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(WsOptions, timeout, (WsTimeout kind, std::chrono::milliseconds ms), (kind, ms))
    /** A ping when nothing arrived for `interval`; no answer within half of it fails
     *  the socket (TIMEOUT_HEARTBEAT). 0 = off (the default). */
    WsOptions &heartbeat(std::chrono::milliseconds interval) & {
        std::uint64_t v = 0;
        if (!detail::to_ms(interval, v))
            return fail(Error(Code::InvalidArgument, "heartbeat: negative duration"));
        return apply(true, "", [&](tern_ws_options *o, tern_error **e) {
            return tern_ws_options_set_heartbeat_ms(o, v, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(WsOptions, heartbeat, (std::chrono::milliseconds interval), (interval))
    /** The largest message accepted (fragments assembled); 0 = no limit. */
    WsOptions &max_message_size(std::uint64_t bytes) & {
        return apply(true, "", [&](tern_ws_options *o, tern_error **e) {
            return tern_ws_options_set_max_message_size(o, bytes, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(WsOptions, max_message_size, (std::uint64_t bytes), (bytes))
    /** The largest frame accepted; 0 = no limit. */
    WsOptions &max_frame_size(std::uint64_t bytes) & {
        return apply(true, "", [&](tern_ws_options *o, tern_error **e) {
            return tern_ws_options_set_max_frame_size(o, bytes, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(WsOptions, max_frame_size, (std::uint64_t bytes), (bytes))
    /** How many message bytes may wait to be written (not 0); a send that does not
     *  fit is refused with WOULD_BLOCK, and on_writable follows. */
    WsOptions &send_queue_size(std::uint64_t bytes) & {
        return apply(true, "", [&](tern_ws_options *o, tern_error **e) {
            return tern_ws_options_set_send_queue_size(o, bytes, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(WsOptions, send_queue_size, (std::uint64_t bytes), (bytes))
    /** permessage-deflate: false is accepted; true is UNSUPPORTED in this version. */
    WsOptions &compression(bool on) & {
        return apply(true, "", [&](tern_ws_options *o, tern_error **e) {
            return tern_ws_options_set_compression(o, on ? 1u : 0u, e);
        });
    }
    TERN_HPP_RVALUE_SETTER(WsOptions, compression, (bool on), (on))

};

namespace detail {
/** The calls shared by WebSocket (owning) and WsView (borrowed, in callbacks). */
template <class Derived>
class WsAccess {
    const tern_ws *w() const noexcept { return static_cast<const Derived &>(*this).raw(); }

public:
    /** Queues a text message (UTF-8: INVALID_ARGUMENT otherwise). While connecting it
     *  is sent once open; WOULD_BLOCK when the send queue is full (see on_writable);
     *  INVALID_STATE once closing. */
    Result<void> send_text(std::string_view text) const {
        tern_error *err = nullptr;
        tern_code code = tern_ws_send_text(w(), text.data(), text.size(), &err);
        return check(code, err);
    }
    /** Queues a binary message (as send_text, any bytes). */
    Result<void> send_binary(std::string_view data) const {
        tern_error *err = nullptr;
        tern_code code = tern_ws_send_binary(w(), bytes(data), data.size(), &err);
        return check(code, err);
    }
    /** Sends a ping (at most 125 bytes), ahead of queued messages; once open. */
    Result<void> send_ping(std::string_view payload = {}) const {
        tern_error *err = nullptr;
        tern_code code = tern_ws_send_ping(w(), bytes(payload), payload.size(), &err);
        return check(code, err);
    }
    /** Starts the closing handshake after the messages queued before it: a close
     *  frame with `close_code` (0 = none, the peer sees 1005; else 1000-1003,
     *  1007-1014 or 3000-4999) and a UTF-8 `reason` of at most 123 bytes (only with
     *  a code). on_close follows. Before the open it abandons it (CANCELED). Again:
     *  does nothing. */
    Result<void> close(std::uint32_t close_code = 1000, std::string_view reason = {}) const {
        CStr r(reason);
        if (!r.ok()) return nul_error("close reason");
        tern_error *err = nullptr;
        tern_code code = tern_ws_close(w(), close_code, r.c_str_or_null(), &err);
        return check(code, err);
    }
    /** Drops the connection without a close frame; on_close follows (CANCELED, 1006)
     *  unless the outcome was decided already. */
    Result<void> abort() const {
        tern_code code = tern_ws_abort(w());
        if (code == TERN_CODE_OK) return {};
        return code_error(code, "tern_ws_abort");
    }
    /** Bytes of messages accepted by sends and not yet written. */
    std::uint64_t buffered_amount() const noexcept { return tern_ws_buffered_amount(w()); }
    /** Closed for an empty handle. */
    WsState state() const noexcept { return static_cast<WsState>(tern_ws_state(w())); }
    /** The subprotocol the server chose; "" before the open or when none. Valid as
     *  long as this handle (a WsView's: during the callback). */
    std::string_view subprotocol() const noexcept { return view(tern_ws_subprotocol(w())); }
    /** The socket's id, unique within its session (shared with request ids); 0 for an
     *  empty handle. */
    RequestId id() const noexcept { return tern_ws_id(w()); }
};
} // namespace detail

/** The socket a callback is given: borrowed, valid during that call only. Send and
 *  close with it; it is never freed. */
class WsView : public detail::WsAccess<WsView> {
public:
    explicit WsView(const tern_ws *w) noexcept : w_(w) {}
    const tern_ws *raw() const noexcept { return w_; }

private:
    const tern_ws *w_;
};

/** What on_close reports; the views are valid during the call only. */
struct WsCloseInfo {
    /** Ok when the closing handshake completed (either side began it), else why the
     *  socket ended: Canceled (abort, or a close or destruction before the open),
     *  Shutdown, WsHandshake (refused upgrade: see `response`), a connect, TLS, proxy,
     *  protocol or time-out code. */
    Code code = Code::Ok;
    /** Why, in words; "" when Ok. */
    std::string_view message;
    /** The peer's close code (1005: its frame had none); the one tern sent for a
     *  failure it detected (1002, 1007, 1009); 1006 when no close frame ended it. */
    std::uint16_t close_code = 0;
    /** Both close frames were exchanged. */
    bool clean = false;
    /** on_open ran. */
    bool opened = false;
    /** The peer's close reason (UTF-8). */
    std::string_view reason;
    /** The upgrade response (status, headers; for a refusal the start of its body);
     *  nullopt when none arrived (DNS, connect, TLS or proxy failures). */
    std::optional<ResponseView> response;
    /** The exception on_open, on_message or on_writable threw (the socket was then
     *  aborted: code Canceled), or null. */
    std::exception_ptr callback_exception;

    bool ok() const noexcept { return code == Code::Ok; }
    /** code and message as an Error (code Ok after a completed closing handshake). */
    Error error() const { return Error(code, std::string(message)); }
};

/**
 * The callbacks of one WebSocket, each any callable (move-only ones too), all
 * optional:
 *   on_open(WsView, ResponseView)                     the socket is open (the 101 head)
 *   on_message(WsView, WsMessage, std::string_view)   one whole message (text: UTF-8)
 *   on_writable(WsView)                               after a WOULD_BLOCK send: room again
 *   on_close(WsView, const WsCloseInfo &)             exactly once per accepted connect, last
 * They run on tern's threads (or inside Session::poll with Delivery::Queued), one at
 * a time and in that order, never inside a tern call; they may send and close through
 * the WsView. After on_close tern releases the handlers: every capture is destroyed
 * exactly once, there (or, for a refused connect, before connect returns, uncalled).
 * An exception from on_open, on_message or on_writable aborts the socket; on_close
 * then gets it in `callback_exception` (one from on_close is dropped).
 */
class WsHandlers {
public:
    WsHandlers() = default;

    template <class F>
    WsHandlers &on_open(F &&f) & {
        static_assert(std::is_invocable_v<std::decay_t<F> &, WsView, ResponseView>,
                      "on_open is called as f(tern::WsView, tern::ResponseView)");
        open_ = Function<void(WsView, ResponseView)>(std::forward<F>(f));
        return *this;
    }
    template <class F>
    WsHandlers &&on_open(F &&f) && {
        return std::move(on_open(std::forward<F>(f)));
    }
    template <class F>
    WsHandlers &on_message(F &&f) & {
        static_assert(std::is_invocable_v<std::decay_t<F> &, WsView, WsMessage, std::string_view>,
                      "on_message is called as f(tern::WsView, tern::WsMessage, std::string_view)");
        message_ = Function<void(WsView, WsMessage, std::string_view)>(std::forward<F>(f));
        return *this;
    }
    template <class F>
    WsHandlers &&on_message(F &&f) && {
        return std::move(on_message(std::forward<F>(f)));
    }
    template <class F>
    WsHandlers &on_writable(F &&f) & {
        static_assert(std::is_invocable_v<std::decay_t<F> &, WsView>,
                      "on_writable is called as f(tern::WsView)");
        writable_ = Function<void(WsView)>(std::forward<F>(f));
        return *this;
    }
    template <class F>
    WsHandlers &&on_writable(F &&f) && {
        return std::move(on_writable(std::forward<F>(f)));
    }
    template <class F>
    WsHandlers &on_close(F &&f) & {
        static_assert(std::is_invocable_v<std::decay_t<F> &, WsView, const WsCloseInfo &>,
                      "on_close is called as f(tern::WsView, const tern::WsCloseInfo &)");
        close_ = Function<void(WsView, const WsCloseInfo &)>(std::forward<F>(f));
        return *this;
    }
    template <class F>
    WsHandlers &&on_close(F &&f) && {
        return std::move(on_close(std::forward<F>(f)));
    }

private:
    friend struct detail::WsTrampolines;
    friend class WebSocket;

    Function<void(WsView, ResponseView)> open_;
    Function<void(WsView, WsMessage, std::string_view)> message_;
    Function<void(WsView)> writable_;
    Function<void(WsView, const WsCloseInfo &)> close_;
};

namespace detail {

/** user_data of one WebSocket: its handlers, deleted by `release` (once, after
 *  on_close), or by connect when tern refused it. */
struct WsBox {
    explicit WsBox(WsHandlers h) noexcept : handlers(std::move(h)) {}
    WsHandlers handlers;
    Failure failure; // the first exception a callback threw
};

/** The C callbacks (tern_ws_callbacks' members have C++ linkage, as tern_callbacks').
 *  They never let an exception out. */
struct WsTrampolines {
    static void fail(WsBox *box, const tern_ws *ws, std::exception_ptr e) noexcept {
        box->failure.set(std::move(e));
        (void)tern_ws_abort(ws); // on_close follows with CANCELED
    }
    static void open(void *user_data, const tern_ws *ws, const tern_response *head) noexcept {
        auto *box = static_cast<WsBox *>(user_data);
        if (box->failure.get()) return;
        guarded([&] { box->handlers.open_(WsView(ws), ResponseView(head)); },
                [&](std::exception_ptr e) { fail(box, ws, std::move(e)); });
    }
    static void message(void *user_data, const tern_ws *ws, std::uint32_t kind, const std::uint8_t *data,
                        std::size_t len) noexcept {
        auto *box = static_cast<WsBox *>(user_data);
        if (box->failure.get()) return;
        std::string_view msg(len != 0 ? reinterpret_cast<const char *>(data) : "", len);
        guarded([&] { box->handlers.message_(WsView(ws), static_cast<WsMessage>(kind), msg); },
                [&](std::exception_ptr e) { fail(box, ws, std::move(e)); });
    }
    static void writable(void *user_data, const tern_ws *ws) noexcept {
        auto *box = static_cast<WsBox *>(user_data);
        if (box->failure.get()) return;
        guarded([&] { box->handlers.writable_(WsView(ws)); },
                [&](std::exception_ptr e) { fail(box, ws, std::move(e)); });
    }
    static void close(void *user_data, const tern_ws *ws, const tern_ws_close_info *info) noexcept {
        auto *box = static_cast<WsBox *>(user_data);
        if (!box->handlers.close_) return;
        guarded(
            [&] {
                WsCloseInfo ci;
                ci.code = static_cast<Code>(info->code);
                ci.message = view(info->message);
                ci.close_code = info->close_code;
                ci.clean = info->clean != 0;
                ci.opened = info->opened != 0;
                if (info->reason != nullptr) ci.reason = std::string_view(info->reason, info->reason_len);
                if (info->response != nullptr) ci.response.emplace(info->response);
                ci.callback_exception = box->failure.get();
                box->handlers.close_(WsView(ws), ci);
            },
            [](std::exception_ptr) { /* nobody left to receive it */ });
    }
    static void release(void *user_data) noexcept {
        delete static_cast<WsBox *>(user_data); // every capture destroyed here, exactly once
    }
};

} // namespace detail

/**
 * One WebSocket, owned (tern_ws_free on destruction). Opened from a Session with
 * `WebSocket::connect`, which returns at once; the outcome arrives in the handlers.
 * Its methods are const and thread-safe (callbacks included). Destroying it abandons
 * a socket still connecting (CANCELED) and closes an open one with 1000: on_close
 * and the release of the handlers still follow, after the destructor (so what the
 * handlers capture must outlive them, not just this object). Destroy it before its
 * Session and Runtime.
 */
class WebSocket : public detail::WsAccess<WebSocket> {
public:
    WebSocket() noexcept = default;
    /** Takes ownership of a handle from tern_session_ws_connect. */
    explicit WebSocket(tern_ws *w) noexcept : w_(w) {}

    /**
     * Opens a WebSocket (ws://, wss://) with the session's proxy, TLS, DNS, cookies,
     * default headers and delivery mode. An error Result means refused (bad URL or
     * options, closed session): no handler runs and each is destroyed before this
     * returns. Connect, TLS and handshake failures arrive in on_close.
     */
    static Result<WebSocket> connect(const Session &session, std::string_view url, WsHandlers handlers,
                                     const WsOptions &options = WsOptions()) {
        if (options.error()) return *options.error(); // handlers destroyed, uncalled
        detail::CStr u(url);
        if (!u.ok()) return detail::nul_error("WebSocket URL");
        tern_ws_callbacks cb{};
        cb.struct_size = sizeof(cb);
        cb.on_close = &detail::WsTrampolines::close;
        cb.on_open = handlers.open_ ? &detail::WsTrampolines::open : nullptr;
        cb.on_message = handlers.message_ ? &detail::WsTrampolines::message : nullptr;
        cb.on_writable = handlers.writable_ ? &detail::WsTrampolines::writable : nullptr;
        cb.release = &detail::WsTrampolines::release;
        auto box = std::make_unique<detail::WsBox>(std::move(handlers));
        tern_ws *w = nullptr;
        tern_error *err = nullptr;
        tern_code code = tern_session_ws_connect(session.raw(), u.c_str(), options.raw(), &cb, box.get(), &w, &err);
        if (code != TERN_CODE_OK) return detail::take_error(code, err); // tern calls nothing: box freed here
        (void)box.release(); // tern's now: WsTrampolines::release frees it
        return WebSocket(w);
    }

    const tern_ws *raw() const noexcept { return w_.get(); }
    /** Gives up ownership: the caller frees it with tern_ws_free. */
    tern_ws *release() noexcept { return w_.release(); }
    /** Whether this holds a socket (false once moved from). */
    explicit operator bool() const noexcept { return w_ != nullptr; }
    /** A borrowed view of this socket (valid while this object holds it). */
    WsView view() const noexcept { return WsView(w_.get()); }

private:
    std::unique_ptr<tern_ws, detail::WsDeleter> w_;
};

// ---------------------------------------------------------------------------------
// Logging (process-wide)

namespace detail {
using LogFunction = Function<void(LogLevel, std::string_view, std::string_view)>;

struct LogState {
    std::mutex lock;
    std::unique_ptr<LogFunction> current;
};
/** Never destroyed: tern's threads may still log during static destruction. */
inline LogState &log_state() {
    static LogState *state = new LogState();
    return *state;
}
inline thread_local bool in_log_callback = false;

extern "C" inline void tern_hpp_log(void *user_data, tern_log_level level, const char *target,
                                    const char *message) noexcept {
    auto *f = static_cast<LogFunction *>(user_data);
    in_log_callback = true;
    guarded([&] { (*f)(static_cast<LogLevel>(level), view(target), view(message)); },
            [](std::exception_ptr) { /* dropped */ });
    in_log_callback = false;
}
} // namespace detail

/**
 * Routes tern's log messages at `max_level` and more severe to
 * `f(LogLevel, std::string_view target, std::string_view message)`, on any thread
 * (several at once: it must be thread-safe). Replaces (and destroys) the previous
 * callable. From inside the callback it fails with WOULD_DEADLOCK.
 */
template <class F>
Result<void> set_log_callback(LogLevel max_level, F &&f) {
    if (detail::in_log_callback)
        return Error(Code::WouldDeadlock, "set_log_callback inside the log callback");
    auto next = std::make_unique<detail::LogFunction>(std::forward<F>(f));
    detail::LogState &state = detail::log_state();
    std::lock_guard<std::mutex> guard(state.lock);
    tern_error *err = nullptr;
    tern_code code = tern_set_log_callback(static_cast<std::uint32_t>(max_level),
                                           *next ? &detail::tern_hpp_log : nullptr, next.get(), &err);
    if (code != TERN_CODE_OK) return detail::take_error(code, err);
    // tern no longer calls the previous callable once the call returned.
    if (*next) {
        state.current = std::move(next);
    } else {
        state.current.reset();
    }
    return {};
}

/** Turns logging off and destroys the callable. */
inline Result<void> clear_log_callback() {
    if (detail::in_log_callback)
        return Error(Code::WouldDeadlock, "clear_log_callback inside the log callback");
    detail::LogState &state = detail::log_state();
    std::lock_guard<std::mutex> guard(state.lock);
    tern_error *err = nullptr;
    tern_code code = tern_set_log_callback(TERN_LOG_LEVEL_OFF, nullptr, nullptr, &err);
    if (code != TERN_CODE_OK) return detail::take_error(code, err);
    state.current.reset();
    return {};
}

} // namespace tern

#undef TERN_HPP_RVALUE_SETTER

#endif /* TERN_HPP */
