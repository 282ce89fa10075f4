//! The process-wide log callback.

use std::ffi::{c_char, c_void, CString};

use crate::code::{tern_code, Error};
use crate::ffi::boundary::{ffi_boundary, try_ffi};
use crate::ffi::error::tern_error;
use crate::log::{self, Level};

/// How much a log message matters, and how much the log callback wants (passed to
/// `tern_set_log_callback` as `uint32_t`). Lower is more severe.
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tern_log_level {
    /// No messages: logging is off.
    Off = 0,
    /// Something failed.
    Error = 1,
    /// Something is wrong but tern carries on.
    Warn = 2,
    /// Rare, noteworthy events.
    Info = 3,
    /// Connection life-cycle: DNS answers, connects, TLS handshakes, proxy tunnels,
    /// pool reuse and eviction, and the libraries' handshake details.
    Debug = 4,
    /// Everything, down to single HTTP/2 frames. Verbose.
    Trace = 5,
}

impl From<Level> for tern_log_level {
    fn from(l: Level) -> Self {
        match l {
            Level::Error => tern_log_level::Error,
            Level::Warn => tern_log_level::Warn,
            Level::Info => tern_log_level::Info,
            Level::Debug => tern_log_level::Debug,
            Level::Trace => tern_log_level::Trace,
        }
    }
}

type LogFn = unsafe extern "C" fn(
    user_data: *mut c_void,
    level: tern_log_level,
    target: *const c_char,
    message: *const c_char,
);

/// The caller's callback and its `user_data`.
struct CLog {
    cb: LogFn,
    user_data: *mut c_void,
}

// SAFETY: the caller promises (header docs) that `cb` may run on any thread, several
// at once, with this `user_data`.
unsafe impl Send for CLog {}
unsafe impl Sync for CLog {}

/// A C string of `s`; a NUL inside (never expected) is dropped.
fn c_text(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|e| {
        let mut v = e.into_vec();
        v.retain(|b| *b != 0);
        CString::new(v).unwrap_or_default()
    })
}

impl CLog {
    fn call(&self, level: Level, target: &str, message: &str) {
        let (t, m) = (c_text(target), c_text(message));
        // SAFETY: `cb` is the caller's function with its `user_data`; both strings
        // outlive the call, as documented.
        unsafe { (self.cb)(self.user_data, level.into(), t.as_ptr(), m.as_ptr()) }
    }
}

/// Sets the process-wide log callback: `cb` receives tern's, rustls's, h2's,
/// hyper-util's and hickory-resolver's messages at `max_level` and more severe, as
/// plain text, so a program can route them to its own console.
///
/// Logging is off until this is called, and tern never writes to stdout or stderr
/// itself. `max_level` is a `tern_log_level` value; TERN_LOG_LEVEL_OFF or a NULL `cb`
/// turns logging off (and forgets the callback). Each message arrives as
/// `cb(user_data, level, target, message)`: `target` is the module it comes from
/// ("tern::net::connect", "rustls::client::hs", "h2::codec::framed_read"), `message`
/// is one line, "text key=value ...". URL user info and the values of Authorization,
/// Proxy-Authorization and Cookie never appear. hyper's own events are not
/// included: tern's DEBUG messages cover the connection life-cycle instead.
///
/// In a Rust program that links tern as a Rust library and installed a `log` logger
/// (or a global `tracing` subscriber) first, rustls's (or h2's, hyper-util's and
/// hickory's) messages keep going there; this call still succeeds and `cb` receives
/// one TERN_LOG_LEVEL_WARN message saying so. A program linking libtern as a C library
/// is never in that case: the library has its own copies of those crates.
///
/// Ownership: `target` and `message` are valid during the call to `cb` only; copy
/// them to keep them. `user_data` is not touched by tern. When this function returns,
/// the previous callback is no longer called (it waits for calls in progress on other
/// threads), so the previous `user_data` may be freed then.
/// Callbacks: `cb` runs on any thread (runtime threads, the thread of a tern call,
/// this one), on several at once: it must be thread-safe, quick, and must not unwind
/// (no C++ exception, Go panic or longjmp). Messages logged on a thread while `cb`
/// runs on it are dropped. Calling `tern_set_log_callback` from inside `cb` fails with
/// TERN_CODE_WOULD_DEADLOCK and changes nothing; from another thread, do not call it
/// while holding a lock that `cb` takes (it waits for `cb` to return).
/// Thread safety: any thread; concurrent calls are serialised, the last one wins.
/// Errors: TERN_CODE_INVALID_ARGUMENT (`max_level` is not a `tern_log_level`),
/// TERN_CODE_WOULD_DEADLOCK (called from inside the log callback). On failure nothing
/// changes.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_set_log_callback(
    max_level: u32,
    cb: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            level: tern_log_level,
            target: *const c_char,
            message: *const c_char,
        ),
    >,
    user_data: *mut c_void,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        if max_level > tern_log_level::Trace as u32 {
            return crate::ffi::boundary::fail(err, Error::new(
                tern_code::InvalidArgument,
                format!("`max_level` must be a tern_log_level (0-5), not {max_level}"),
            ));
        }
        let sink = cb.map(|cb: LogFn| {
            let c = CLog { cb, user_data };
            Box::new(move |level: Level, target: &str, message: &str| c.call(level, target, message))
                as Box<log::Sink>
        });
        try_ffi!(err, log::set(Level::from_u32(max_level), sink));
        tern_code::Ok
    }
}
