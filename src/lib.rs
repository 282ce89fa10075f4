//! tern: an embeddable HTTP client with a C ABI.
//!
//! A C, C++, Go or Swift program links `libtern`, includes `tern.h`, and gets many
//! requests in flight over a connection pool, TLS by rustls, redirects, decoding and
//! time-outs, without running an event loop of its own: a background tokio runtime
//! (`tern_runtime`) drives hyper.
//!
//! # API conventions
//!
//! * **Names**: `tern_<noun>_<verb>`; opaque handle types `tern_<noun>`; constants
//!   `TERN_<GROUP>_<NAME>`.
//! * **Errors**: every fallible function returns a `tern_code` (`uint32_t`, 0 = OK)
//!   and takes an optional `tern_error **err` last; on failure it receives an owned
//!   error (free it with `tern_error_free`). Results are written through
//!   out-parameters only on success. There is no thread-local "last error".
//! * **Ownership**: every object the caller owns has one `_free`, and `_free(NULL)` is a
//!   no-op. A function that consumes a handle (`tern_session_send`,
//!   `tern_session_perform` consume the request) consumes it whatever it returns.
//!   Strings and bytes passed in are copied unless the function says "borrowed".
//!   Pointers returned by getters are borrowed from their object.
//! * **Threads**: a `const` pointer may be shared across threads (sessions and
//!   responses); a non-const one (builders) is used by one thread at a time.
//! * **Exactly once**: every request that `tern_session_send` accepted gets exactly one
//!   `on_complete`, whatever happens (success, error, time-out, cancel, session close,
//!   runtime free), then `release(user_data)` once. A refused request gets neither.
//! * **Callbacks** run on a runtime thread (or, with queued delivery, inside
//!   `tern_session_poll` on the polling thread), never inside `send` or `ws_connect`.
//!   The only tern lock held while one runs is that request's or that socket's own
//!   (which keeps its callbacks one at a time); no session, pool or runtime lock.
//!   They must not unwind into tern. The one exception to "never inside a tern call":
//!   `tern_runtime_free` (see there).
//! * **WebSockets** (`tern_session_ws_connect`): every accepted connect gets exactly one
//!   `on_close`, then `release(user_data)`. The caller's `tern_ws` handle is written
//!   before any callback can run, so it may live in `user_data`; the `ws` a callback is
//!   given is borrowed (valid during the call, usable to send or close, never freed).
//! * **Enums in** cross as `uint32_t` and are validated; a bad value is
//!   TERN_CODE_INVALID_ARGUMENT.
//! * **Secrets**: URL user info and the values of Authorization, Proxy-Authorization
//!   and Cookie never appear in a message or effective URL.
//! * **Fork**: a child process gets TERN_CODE_FORKED from a runtime made in its parent.

pub mod code;
pub mod engine;
pub mod ffi;
pub mod log;
pub mod net;
