//! `tern_session`: shared configuration and connection pool; sends requests.

use std::ffi::c_void;
use std::mem::{offset_of, size_of};

use crate::code::{tern_code, Error};
use crate::engine::response::Response;
use crate::engine::session::{CloseMode, Deliver, Session};
use crate::ffi::boundary::{
    fail, ffi_boundary, from_raw, null_arg, out_arg, ref_arg, to_raw, try_ffi,
};
use crate::ffi::error::tern_error;
use crate::ffi::options::tern_session_options;
use crate::ffi::request::tern_request;
use crate::ffi::response::tern_response;
use crate::ffi::runtime::tern_runtime;

/// How `tern_session_close` ends a session (passed as `uint32_t`).
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum tern_close {
    /// No new requests; in-flight ones finish; then every connection is closed
    /// cleanly (TLS close_notify included).
    Graceful = 0,
    /// Every in-flight request completes with TERN_CODE_SHUTDOWN at once.
    Abort = 1,
}

/// What `on_headers` and `on_data` return (as `uint32_t`).
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum tern_action {
    /// Go on.
    Continue = 0,
    /// Cancel the request (it completes with TERN_CODE_CANCELED).
    Cancel = 1,
    /// Stop reading until the request is resumed (`on_data` only).
    Pause = 2,
}

/// The callbacks of one request. Zero-initialise it and set `struct_size` to
/// `sizeof(tern_callbacks)`: later versions add fields at the end, and a caller built
/// against an older header passes its smaller size.
///
/// Every function gets the `user_data` given to `tern_session_send` first. Callbacks
/// run on a runtime thread, never inside `tern_session_send`, with no tern lock held:
/// they may call `tern_session_send`, `tern_session_cancel` and `tern_response_free`
/// (the blocking `tern_session_perform` returns TERN_CODE_WOULD_DEADLOCK there).
/// Callbacks must not unwind into tern (no C++ exception, Go panic or longjmp out of
/// them).
///
/// Since: 0.1
#[repr(C)]
pub struct tern_callbacks {
    /// `sizeof(tern_callbacks)`.
    pub struct_size: usize,
    /// Required. Runs exactly once per accepted request and hands over `response`,
    /// which the caller frees with `tern_response_free` (on any thread, at any time).
    pub on_complete:
        Option<unsafe extern "C" fn(user_data: *mut c_void, response: *mut tern_response)>,
    /// Reserved for the response head before the body (returns a `tern_action`).
    /// Not yet supported: must be NULL (send refuses with TERN_CODE_UNSUPPORTED).
    pub on_headers:
        Option<unsafe extern "C" fn(user_data: *mut c_void, head: *const tern_response) -> u32>,
    /// Reserved for streamed body chunks (returns a `tern_action`). Not yet supported:
    /// must be NULL.
    pub on_data:
        Option<unsafe extern "C" fn(user_data: *mut c_void, data: *const u8, len: usize) -> u32>,
    /// Reserved for progress reports. Not yet supported: must be NULL.
    pub on_progress: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            sent: u64,
            to_send: u64,
            received: u64,
            expected: u64,
        ),
    >,
    /// Reserved for streamed uploads (room to write again). Not yet supported: must be
    /// NULL.
    pub on_upload_ready: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    /// Optional. Runs exactly once, after the last callback of an accepted request,
    /// so bindings can free `user_data`. Never runs for a request `send` refused.
    pub release: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// The opaque session: configuration, connection pool, in-flight requests.
pub struct tern_session {
    inner: Session,
}

struct CDeliver {
    on_complete: unsafe extern "C" fn(*mut c_void, *mut tern_response),
    release: Option<unsafe extern "C" fn(*mut c_void)>,
    user_data: *mut c_void,
}

// SAFETY: the header tells the caller that user_data and the callbacks are used from
// runtime threads.
unsafe impl Send for CDeliver {}

impl Deliver for CDeliver {
    fn deliver(self: Box<Self>, resp: Response) {
        let r = to_raw(tern_response::new(resp));
        // SAFETY: the caller's callbacks with the caller's user_data, once each.
        unsafe {
            (self.on_complete)(self.user_data, r);
            if let Some(rel) = self.release {
                rel(self.user_data);
            }
        }
    }
}

/// Reads the fields of a callbacks struct that its `struct_size` says are present.
///
/// # Safety
/// `cb` points to at least `struct_size` readable bytes.
unsafe fn read_callbacks(cb: &tern_callbacks, user_data: *mut c_void) -> Result<CDeliver, Error> {
    let size = cb.struct_size;
    let min = offset_of!(tern_callbacks, on_complete) + size_of::<usize>();
    if size < min {
        return Err(Error::new(
            tern_code::InvalidArgument,
            "tern_callbacks.struct_size is too small: set it to sizeof(tern_callbacks)",
        ));
    }
    let has = |off: usize| off + size_of::<usize>() <= size;
    let Some(on_complete) = cb.on_complete else {
        return Err(Error::new(
            tern_code::NullArgument,
            "tern_callbacks.on_complete is required",
        ));
    };
    let reserved = [
        (
            "on_headers",
            offset_of!(tern_callbacks, on_headers),
            cb.on_headers.is_some(),
        ),
        (
            "on_data",
            offset_of!(tern_callbacks, on_data),
            cb.on_data.is_some(),
        ),
        (
            "on_progress",
            offset_of!(tern_callbacks, on_progress),
            cb.on_progress.is_some(),
        ),
        (
            "on_upload_ready",
            offset_of!(tern_callbacks, on_upload_ready),
            cb.on_upload_ready.is_some(),
        ),
    ];
    for (name, off, set) in reserved {
        if has(off) && set {
            return Err(Error::new(
                tern_code::Unsupported,
                format!(
                    "tern_callbacks.{name} is not supported by this version of tern; leave it NULL"
                ),
            ));
        }
    }
    let release = if has(offset_of!(tern_callbacks, release)) {
        cb.release
    } else {
        None
    };
    Ok(CDeliver {
        on_complete,
        release,
        user_data,
    })
}

/// Makes a session on a runtime.
///
/// Ownership: borrows `rt` (which must outlive the session's use; freeing the runtime
/// first aborts the session) and `opts` (copied; free it when you like). On success
/// `*out` receives a session the caller frees with `tern_session_free`.
/// Thread safety: any thread.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_SHUTDOWN (runtime freed),
/// TERN_CODE_FORKED, TERN_CODE_INVALID_FILE (a CA certificate was rejected).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_new(
    rt: *const tern_runtime,
    opts: *const tern_session_options,
    out: *mut *mut tern_session,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        try_ffi!(err, out_arg(out, "out"));
        let rt = try_ffi!(err, ref_arg(rt, "rt"));
        let o = try_ffi!(err, ref_arg(opts, "opts"));
        let s = try_ffi!(err, Session::new(&rt.inner, o.cfg.clone()));
        *out = to_raw(tern_session { inner: s });
        tern_code::Ok
    }
}

/// Drops the caller's reference to a session and starts a graceful close: requests in
/// flight still complete (their callbacks still run), then connections close.
/// `tern_session_free(NULL)` does nothing.
///
/// Ownership: consumes `session`.
/// Thread safety: any thread (callbacks included), once; never blocks.
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_free(session: *mut tern_session) {
    ffi_boundary! {
        drop(from_raw(session));
    }
}

/// Starts a request and returns its id at once. `callbacks->on_complete` runs exactly
/// once with the outcome, on a runtime thread, never inside this call.
///
/// Ownership: consumes `request`, also on failure. `callbacks` is copied. tern does not
/// touch `user_data`; `release(user_data)` runs once after the last callback. When this
/// call fails no callback runs and `release` is not called: the caller still owns
/// `user_data`. `id_out` may be NULL.
/// Thread safety: any thread, callbacks included; a session may be shared by threads.
/// Errors: TERN_CODE_NULL_ARGUMENT (`session`, `request`, `callbacks` or `on_complete`),
/// TERN_CODE_INVALID_ARGUMENT (`struct_size`), TERN_CODE_UNSUPPORTED (a reserved
/// callback was set), TERN_CODE_SHUTDOWN (session closed or runtime freed),
/// TERN_CODE_FORKED.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_send(
    session: *const tern_session,
    request: *mut tern_request,
    callbacks: *const tern_callbacks,
    user_data: *mut c_void,
    id_out: *mut u64,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let req = from_raw(request);
        let s = try_ffi!(err, ref_arg(session, "session"));
        let Some(req) = req else { return fail(err, null_arg("request")) };
        let cb = try_ffi!(err, ref_arg(callbacks, "callbacks"));
        let deliver = try_ffi!(err, read_callbacks(cb, user_data));
        let id = try_ffi!(err, s.inner.send(req.spec, Box::new(deliver)));
        if !id_out.is_null() {
            *id_out = id;
        }
        tern_code::Ok
    }
}

/// Cancels a request: it completes (once) with TERN_CODE_CANCELED, unless it had
/// already completed.
///
/// Ownership: nothing changes hands.
/// Thread safety: any thread, callbacks included.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_NOT_FOUND (no such request in flight:
/// unknown id, or already completed).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_cancel(session: *const tern_session, id: u64) -> tern_code {
    ffi_boundary! {
        let Some(s) = session.as_ref() else { return tern_code::NullArgument };
        if s.inner.cancel(id) { tern_code::Ok } else { tern_code::NotFound }
    }
}

/// Runs one request to its end on the calling thread and returns the outcome.
///
/// Once the request is accepted this always writes a response to `*out` (which may
/// carry a DNS, TLS or other error code) and returns TERN_CODE_OK; other return codes
/// mean the request was refused and `*out` is untouched.
/// Ownership: consumes `request`, also on failure. The caller frees `*out` with
/// `tern_response_free`.
/// Thread safety: any thread except tern's own (callbacks): there it returns
/// TERN_CODE_WOULD_DEADLOCK instead of blocking.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_WOULD_DEADLOCK, TERN_CODE_SHUTDOWN,
/// TERN_CODE_FORKED.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_perform(
    session: *const tern_session,
    request: *mut tern_request,
    out: *mut *mut tern_response,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let req = from_raw(request);
        let s = try_ffi!(err, ref_arg(session, "session"));
        let Some(req) = req else { return fail(err, null_arg("request")) };
        try_ffi!(err, out_arg(out, "out"));
        let resp = try_ffi!(err, s.inner.perform(req.spec));
        *out = to_raw(tern_response::new(resp));
        tern_code::Ok
    }
}

/// Starts closing a session; returns at once. `mode` is a `tern_close` value. After
/// it, `tern_session_send` refuses with TERN_CODE_SHUTDOWN; every request already
/// accepted still gets its `on_complete`.
///
/// Ownership: the caller still frees the session with `tern_session_free`.
/// Thread safety: any thread, callbacks included; calling it again is harmless (an
/// abort after a graceful close aborts what is left).
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (unknown mode).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_close(
    session: *const tern_session,
    mode: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let s = try_ffi!(err, ref_arg(session, "session"));
        let mode = match mode {
            0 => CloseMode::Graceful,
            1 => CloseMode::Abort,
            other => return fail(err, Error::new(tern_code::InvalidArgument, format!("unknown close mode {other}"))),
        };
        s.inner.close(mode);
        tern_code::Ok
    }
}
