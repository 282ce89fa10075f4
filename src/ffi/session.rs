//! `tern_session`: shared configuration and connection pool; sends requests.

use std::ffi::{c_int, c_void};
use std::mem::{offset_of, size_of};

use crate::code::{tern_code, Error};
use crate::engine::deliver::{Action, Callbacks, ProgressSnapshot};
use crate::engine::response::Response;
use crate::engine::session::{CloseMode, Session};
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
/// run on a runtime thread (or, with queued delivery, inside `tern_session_poll` on
/// the polling thread), never inside `tern_session_send`, one at a time per request
/// and in order (`on_headers`, `on_data`..., `on_complete`, `release`). The only tern
/// lock held during a callback is that request's own (direct delivery; it keeps its
/// callbacks one at a time). A poll made from a callback never runs a later callback
/// of the same request inside it: those (`on_complete` and `release` included) run
/// right after the running one returns. They may call `tern_session_send`,
/// `tern_session_cancel`, `tern_session_resume`, `tern_session_write` and
/// `tern_response_free` (the blocking `tern_session_perform` returns
/// TERN_CODE_WOULD_DEADLOCK on a runtime thread). A callback on a runtime thread should not block: it holds up that thread.
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
    /// Optional. The final response's head (status, version, headers, effective URL,
    /// timings so far; no body), before any body byte; `head` is valid during the call
    /// only. Returns a `tern_action`: CONTINUE, CANCEL (the request completes with
    /// TERN_CODE_CANCELED) or PAUSE (no body is read until `tern_session_resume`).
    pub on_headers:
        Option<unsafe extern "C" fn(user_data: *mut c_void, head: *const tern_response) -> u32>,
    /// Optional. One chunk of the (decoded) body; `data` is valid during the call only.
    /// When set, the body is not kept in the response. Returns a `tern_action`:
    /// CONTINUE, CANCEL, or PAUSE: tern stops reading from the socket (the server's
    /// sends then block on the TCP window) until `tern_session_resume` from any thread
    /// (a resume made during this very call counts).
    pub on_data:
        Option<unsafe extern "C" fn(user_data: *mut c_void, data: *const u8, len: usize) -> u32>,
    /// Optional. Bytes sent and to send, received and expected (0 when unknown; the
    /// received count is of bytes on the wire, before decoding), at most once per the
    /// session's progress interval while bytes move, and once more before
    /// `on_complete`.
    pub on_progress: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            sent: u64,
            to_send: u64,
            received: u64,
            expected: u64,
        ),
    >,
    /// Optional. A pushed body (`tern_request_set_body_stream`) can take more: a
    /// `tern_session_write` refused with TERN_CODE_WOULD_BLOCK (or taken in part) may be
    /// tried again now.
    pub on_upload_ready: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    /// Optional. Runs exactly once, after the last callback of an accepted request,
    /// so bindings can free `user_data`. Never runs for a request `send` refused.
    pub release: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// The opaque session: configuration, connection pool, in-flight requests.
pub struct tern_session {
    pub(crate) inner: Session,
}

struct CCallbacks {
    on_complete: unsafe extern "C" fn(*mut c_void, *mut tern_response),
    on_headers: Option<unsafe extern "C" fn(*mut c_void, *const tern_response) -> u32>,
    on_data: Option<unsafe extern "C" fn(*mut c_void, *const u8, usize) -> u32>,
    on_progress: Option<unsafe extern "C" fn(*mut c_void, u64, u64, u64, u64)>,
    on_upload_ready: Option<unsafe extern "C" fn(*mut c_void)>,
    release: Option<unsafe extern "C" fn(*mut c_void)>,
    user_data: *mut c_void,
}

// SAFETY: the header tells the caller that user_data and the callbacks are used from
// runtime threads (or the polling thread), one callback at a time per request.
unsafe impl Send for CCallbacks {}
unsafe impl Sync for CCallbacks {}

fn action(v: u32) -> Action {
    match v {
        0 => Action::Continue,
        2 => Action::Pause,
        _ => Action::Cancel,
    }
}

impl Callbacks for CCallbacks {
    fn wants_headers(&self) -> bool {
        self.on_headers.is_some()
    }
    fn wants_data(&self) -> bool {
        self.on_data.is_some()
    }
    fn wants_progress(&self) -> bool {
        self.on_progress.is_some()
    }
    fn on_headers(&self, head: &Response) -> Action {
        let Some(f) = self.on_headers else {
            return Action::Continue;
        };
        let r = tern_response::new(head.head());
        // SAFETY: the caller's callback with its user_data; `r` outlives the call.
        action(unsafe { f(self.user_data, &r) })
    }
    fn on_data(&self, chunk: &[u8]) -> Action {
        let Some(f) = self.on_data else {
            return Action::Continue;
        };
        // SAFETY: as above; the chunk outlives the call.
        action(unsafe { f(self.user_data, chunk.as_ptr(), chunk.len()) })
    }
    fn on_progress(&self, p: ProgressSnapshot) {
        if let Some(f) = self.on_progress {
            // SAFETY: as above.
            unsafe { f(self.user_data, p.sent, p.to_send, p.received, p.expected) };
        }
    }
    fn on_upload_ready(&self) {
        if let Some(f) = self.on_upload_ready {
            // SAFETY: as above.
            unsafe { f(self.user_data) };
        }
    }
    fn complete(&self, resp: Response) {
        let r = to_raw(tern_response::new(resp));
        // SAFETY: the caller's callbacks with the caller's user_data; the session's
        // guard calls this exactly once.
        unsafe {
            (self.on_complete)(self.user_data, r);
            if let Some(rel) = self.release {
                rel(self.user_data);
            }
        }
    }
}

/// Reads the fields of a callbacks struct that its `struct_size` says are present,
/// and only those: a caller built against an older header passes a shorter struct.
///
/// # Safety
/// `cb` is not NULL and points to at least `struct_size` readable bytes (and at least
/// the `struct_size` field).
unsafe fn read_callbacks(
    cb: *const tern_callbacks,
    user_data: *mut c_void,
) -> Result<CCallbacks, Error> {
    let size = std::ptr::addr_of!((*cb).struct_size).read();
    let min = offset_of!(tern_callbacks, on_complete) + size_of::<usize>();
    if size < min {
        return Err(Error::new(
            tern_code::InvalidArgument,
            "tern_callbacks.struct_size is too small: set it to sizeof(tern_callbacks)",
        ));
    }
    let has = |off: usize| off + size_of::<usize>() <= size;
    // Each field is read through a raw pointer once its end is known to lie within
    // `struct_size`: no reference to the whole (possibly longer) struct is made.
    macro_rules! field {
        ($f:ident) => {
            if has(offset_of!(tern_callbacks, $f)) {
                std::ptr::addr_of!((*cb).$f).read()
            } else {
                None
            }
        };
    }
    let Some(on_complete) = field!(on_complete) else {
        return Err(Error::new(
            tern_code::NullArgument,
            "tern_callbacks.on_complete is required",
        ));
    };
    Ok(CCallbacks {
        on_complete,
        on_headers: field!(on_headers),
        on_data: field!(on_data),
        on_progress: field!(on_progress),
        on_upload_ready: field!(on_upload_ready),
        release: field!(release),
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
/// With queued delivery nobody could poll afterwards, so requests in flight and
/// WebSockets are aborted instead (TERN_CODE_SHUTDOWN) and every remaining callback
/// runs on the calling thread before this returns, with one exception: called from a
/// callback, the remaining callbacks of that callback's own request or socket (and of
/// any other whose callback is running below it on this thread), `on_complete` or
/// `on_close` and `release` included, run right after that callback returns, on the
/// same thread (they do not need the session any more). `tern_session_free(NULL)`
/// does nothing.
///
/// Ownership: consumes `session`.
/// Thread safety: any thread (callbacks included), once; never blocks, except to run
/// the remaining callbacks of a queued session.
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_free(session: *mut tern_session) {
    ffi_boundary! {
        if let Some(s) = from_raw(session) {
            if let Some(q) = s.inner.queue().cloned() {
                s.inner.close(CloseMode::Abort);
                let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while q.outstanding.load(std::sync::atomic::Ordering::Acquire) > 0
                    && std::time::Instant::now() < end
                {
                    q.poll(std::time::Duration::from_millis(10), usize::MAX);
                }
            }
            drop(s);
        }
    }
}

/// Starts a request and returns its id at once. `callbacks->on_complete` runs exactly
/// once with the outcome, never inside this call: on a runtime thread, or inside
/// `tern_session_poll` with queued delivery.
///
/// Ownership: consumes `request`, also on failure. `callbacks` is copied. tern does not
/// touch `user_data`; `release(user_data)` runs once after the last callback. When this
/// call fails no callback runs and `release` is not called: the caller still owns
/// `user_data`. `id_out` may be NULL.
/// Thread safety: any thread, callbacks included; a session may be shared by threads.
/// Errors: TERN_CODE_NULL_ARGUMENT (`session`, `request`, `callbacks` or `on_complete`),
/// TERN_CODE_INVALID_ARGUMENT (`struct_size`), TERN_CODE_SHUTDOWN (session closed or
/// runtime freed), TERN_CODE_FORKED.
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
        if callbacks.is_null() {
            return fail(err, null_arg("callbacks"));
        }
        let deliver = try_ffi!(err, read_callbacks(callbacks, user_data));
        let id = try_ffi!(err, s.inner.send(req.spec, std::sync::Arc::new(deliver)));
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

/// Runs queued callbacks on the calling thread (sessions made with
/// `TERN_DELIVERY_QUEUED`): up to `max_callbacks` of them (0 means no bound), waiting
/// up to `timeout_ms` for the first when none is queued (0 = do not wait). Each
/// request's callbacks still run in order and exactly once. Also clears the session's
/// descriptor (`tern_session_fd`), which becomes readable again when callbacks wait.
///
/// Ownership: `ran_out` (may be NULL) receives how many callbacks ran.
/// Thread safety: any thread that is not a tern runtime thread; the callbacks run on
/// the thread that polls, so poll from one thread to keep them there. A callback may
/// poll again: that runs other queued callbacks, but never one of the request or
/// WebSocket whose callback is running on this thread (those are held, in order, and
/// run right after the running callback returns). So `on_complete`, `on_close` and
/// `release` never run inside a callback of the same request or socket.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_STATE (the session delivers on
/// runtime threads), TERN_CODE_WOULD_DEADLOCK (called on a runtime thread).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_poll(
    session: *const tern_session,
    timeout_ms: u32,
    max_callbacks: u32,
    ran_out: *mut u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let s = try_ffi!(err, ref_arg(session, "session"));
        // Owned: a callback run below may free the session.
        let q = try_ffi!(err, queue_of(s)).clone();
        if crate::engine::runtime::on_runtime_thread() {
            return fail(err, Error::new(tern_code::WouldDeadlock, "tern_session_poll was called on a tern runtime thread"));
        }
        let max = if max_callbacks == 0 { usize::MAX } else { max_callbacks as usize };
        let ran = q.poll(std::time::Duration::from_millis(u64::from(timeout_ms)), max);
        if !ran_out.is_null() {
            *ran_out = u32::try_from(ran).unwrap_or(u32::MAX);
        }
        tern_code::Ok
    }
}

fn queue_of(s: &tern_session) -> Result<&std::sync::Arc<crate::engine::deliver::Queue>, Error> {
    s.inner.queue().ok_or_else(|| {
        Error::new(
            tern_code::InvalidState,
            "this session delivers callbacks on runtime threads; set TERN_DELIVERY_QUEUED to poll",
        )
    })
}

/// The descriptor of a session with queued delivery: readable while callbacks wait
/// for `tern_session_poll`, for epoll, kqueue-like loops, libuv (`uv_poll_t`) or a
/// frame loop. `tern_session_poll` clears it (reading it also does).
///
/// Ownership: the descriptor belongs to the session and stays valid until
/// `tern_session_free`; do not close it.
/// Thread safety: any thread.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_STATE (not queued delivery).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_fd(
    session: *const tern_session,
    fd_out: *mut c_int,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let s = try_ffi!(err, ref_arg(session, "session"));
        try_ffi!(err, out_arg(fd_out, "fd_out"));
        let q = try_ffi!(err, queue_of(s));
        *fd_out = q.raw_fd();
        tern_code::Ok
    }
}

/// Resumes a request that `on_headers`, `on_data` or a body read callback paused.
/// Resuming a request that is not paused makes its next pause return at once.
///
/// Ownership: nothing changes hands.
/// Thread safety: any thread, callbacks included.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_NOT_FOUND (not in flight).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_resume(session: *const tern_session, id: u64) -> tern_code {
    ffi_boundary! {
        let Some(s) = session.as_ref() else { return tern_code::NullArgument };
        if s.inner.resume(id) { tern_code::Ok } else { tern_code::NotFound }
    }
}

/// Pushes body bytes to a request sent with `tern_request_set_body_stream`. Takes as
/// much as its buffer (256 KiB) has room for: `*accepted` says how much. When nothing
/// fits, returns TERN_CODE_WOULD_BLOCK; `on_upload_ready` runs once the buffer has
/// drained to half, and the write can be made again.
///
/// Ownership: the bytes taken are copied.
/// Thread safety: any thread, callbacks included; one writer at a time per request.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_WOULD_BLOCK, TERN_CODE_NOT_FOUND (not in
/// flight), TERN_CODE_INVALID_STATE (the request has no pushed body),
/// TERN_CODE_INVALID_ARGUMENT (already ended).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_write(
    session: *const tern_session,
    id: u64,
    data: *const u8,
    len: usize,
    accepted: *mut usize,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let s = try_ffi!(err, ref_arg(session, "session"));
        let data = try_ffi!(err, crate::ffi::boundary::bytes_arg(data, len, "data"));
        let up = try_ffi!(err, s.inner.upload(id));
        let n = try_ffi!(err, up.write(data));
        if !accepted.is_null() {
            *accepted = n;
        }
        tern_code::Ok
    }
}

/// Ends the body of a request sent with `tern_request_set_body_stream`: the body is
/// complete once the bytes written so far are sent. With a declared length the request
/// may complete as soon as its last byte is written; ending it afterwards returns
/// TERN_CODE_OK and does nothing.
///
/// Ownership: nothing changes hands.
/// Thread safety: any thread, callbacks included.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_NOT_FOUND (an id this session never
/// gave), TERN_CODE_INVALID_STATE (the request has no pushed body).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_end_body(
    session: *const tern_session,
    id: u64,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let s = try_ffi!(err, ref_arg(session, "session"));
        match s.inner.upload(id) {
            Ok(up) => up.end(),
            // Completed already (its declared length was reached): nothing to end.
            Err(e) if e.code == tern_code::NotFound && s.inner.issued(id) => {}
            Err(e) => return fail(err, e),
        }
        tern_code::Ok
    }
}
