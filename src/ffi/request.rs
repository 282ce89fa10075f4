//! `tern_request`: the builder of one request, consumed by send or perform.

use std::ffi::{c_char, c_void};

use bytes::Bytes;

use crate::code::{tern_code, Error};
use crate::engine::config::{RequestSpec, UploadSource, UploadSpec};
use crate::engine::deliver::ReadOutcome;
use crate::ffi::boundary::{
    bytes_arg, ffi_boundary, from_raw, mut_arg, null_arg, out_arg, str_arg, to_raw, try_ffi,
};
use crate::ffi::error::tern_error;
use crate::ffi::options::{bool_arg, header_args, timeout_kind, version_pref};

/// One request being built. Consumed by `tern_session_send` or `tern_session_perform`.
pub struct tern_request {
    pub(crate) spec: RequestSpec,
}

/// Makes a request.
///
/// `method` is any HTTP token ("GET", "POST", "PROPFIND", ...; case is kept); `url` is
/// an absolute http or https URL. User info in the URL (`http://user:pass@host/`) is
/// sent as Basic authorization unless the request sets its own and is redacted from
/// every message.
/// Ownership: both strings are copied; on success `*out` receives a request the caller
/// hands to `tern_session_send` / `tern_session_perform` or frees with
/// `tern_request_free`.
/// Thread safety: any thread.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (not UTF-8),
/// TERN_CODE_INVALID_METHOD, TERN_CODE_INVALID_URL, TERN_CODE_UNSUPPORTED_SCHEME.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_request_new(
    method: *const c_char,
    url: *const c_char,
    out: *mut *mut tern_request,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        try_ffi!(err, out_arg(out, "out"));
        let m = try_ffi!(err, str_arg(method, "method"));
        let u = try_ffi!(err, str_arg(url, "url"));
        let spec = try_ffi!(err, RequestSpec::new(m, u));
        *out = to_raw(tern_request { spec });
        tern_code::Ok
    }
}

/// Frees a request that was not sent. `tern_request_free(NULL)` does nothing.
///
/// Ownership: consumes `req` (and releases a borrowed body).
/// Thread safety: any thread, once.
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_request_free(req: *mut tern_request) {
    ffi_boundary! {
        drop(from_raw(req));
    }
}

/// Adds a header, after any earlier values of the same name (repeated headers are
/// sent in order). Replaces the session's headers of that name.
///
/// Ownership: `name` and `value` are copied.
/// Thread safety: one thread at a time per request.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (not UTF-8),
/// TERN_CODE_INVALID_HEADER (bad name, or CR, LF or NUL in the value).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_request_add_header(
    req: *mut tern_request,
    name: *const c_char,
    value: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let r = try_ffi!(err, mut_arg(req, "req"));
        let (n, v) = try_ffi!(err, header_args(name, value));
        r.spec.headers.append(n, v);
        tern_code::Ok
    }
}

/// Sets a header, replacing every earlier value of that name.
///
/// Ownership: `name` and `value` are copied.
/// Thread safety: one thread at a time per request.
/// Errors: as `tern_request_add_header`.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_request_set_header(
    req: *mut tern_request,
    name: *const c_char,
    value: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let r = try_ffi!(err, mut_arg(req, "req"));
        let (n, v) = try_ffi!(err, header_args(name, value));
        r.spec.headers.insert(n, v);
        tern_code::Ok
    }
}

/// Sets the body to a copy of `(data, len)`. Sent with a Content-Length.
///
/// Ownership: the bytes are copied; `data` may be NULL when `len` is 0.
/// Thread safety: one thread at a time per request.
/// Errors: TERN_CODE_NULL_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_request_set_body(
    req: *mut tern_request,
    data: *const u8,
    len: usize,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let r = try_ffi!(err, mut_arg(req, "req"));
        let b = try_ffi!(err, bytes_arg(data, len, "data"));
        r.spec.upload = None;
        r.spec.body = Some(Bytes::copy_from_slice(b));
        tern_code::Ok
    }
}

/// A body the caller lends, released once tern no longer reads it.
struct Borrowed {
    ptr: *const u8,
    len: usize,
    release: Option<unsafe extern "C" fn(*mut c_void)>,
    user_data: *mut c_void,
}

// SAFETY: the caller promises (in the header) that the bytes stay valid and unchanged
// until `release` runs, and that `release` may run on any thread.
unsafe impl Send for Borrowed {}
unsafe impl Sync for Borrowed {}

impl AsRef<[u8]> for Borrowed {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: see the Send impl; checked non-NULL when made.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        if let Some(f) = self.release {
            // SAFETY: the caller's function, called once with its own user_data.
            unsafe { f(self.user_data) };
        }
    }
}

/// Sets the body to `(data, len)` without copying it; `release(user_data)` runs
/// exactly once when tern no longer needs the bytes (after the request completed,
/// after redirects, or when the request is freed or replaced), on any thread.
///
/// Ownership: the caller keeps the bytes valid and unchanged until `release` runs.
/// `release` may be NULL (static data). If this call fails, `release` is not called
/// and the caller still owns the bytes.
/// Thread safety: one thread at a time per request; `release` may run on a runtime
/// thread.
/// Errors: TERN_CODE_NULL_ARGUMENT (`req`, or `data` with a non-zero `len`).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_request_set_body_borrowed(
    req: *mut tern_request,
    data: *const u8,
    len: usize,
    release: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    user_data: *mut c_void,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let r = try_ffi!(err, mut_arg(req, "req"));
        if data.is_null() && len > 0 {
            return crate::ffi::boundary::fail(err, null_arg("data"));
        }
        r.spec.upload = None;
        r.spec.body = Some(Bytes::from_owner(Borrowed { ptr: data, len, release, user_data }));
        tern_code::Ok
    }
}

/// Overrides one of the session's time-outs for this request, in milliseconds; 0
/// disables it. `kind` is a `tern_timeout` value.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per request.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (unknown kind).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_request_set_timeout_ms(
    req: *mut tern_request,
    kind: u32,
    ms: u64,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let r = try_ffi!(err, mut_arg(req, "req"));
        let k = try_ffi!(err, timeout_kind(kind));
        r.spec.timeouts.set(k, ms);
        tern_code::Ok
    }
}

/// Overrides the session's redirect policy for this request: `follow` 0 or 1, and the
/// most redirects to follow.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per request.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_request_set_redirects(
    req: *mut tern_request,
    follow: u32,
    max: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let r = try_ffi!(err, mut_arg(req, "req"));
        r.spec.follow_redirects = Some(try_ffi!(err, bool_arg(follow, "follow")));
        r.spec.max_redirects = Some(max);
        tern_code::Ok
    }
}

/// Overrides the session's HTTP version preference (a `tern_http_version` value).
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per request.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_request_set_http_version(
    req: *mut tern_request,
    version: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let r = try_ffi!(err, mut_arg(req, "req"));
        r.spec.version = Some(try_ffi!(err, version_pref(version)));
        tern_code::Ok
    }
}

/// Overrides the session's proxy for this request: a proxy URL (as
/// `tern_session_options_set_proxy`; the session's no-proxy list still applies), ""
/// for a direct connection, or NULL to use the session's choice again.
///
/// Ownership: `url` is copied.
/// Thread safety: one thread at a time per request.
/// Errors: TERN_CODE_NULL_ARGUMENT (`req`), TERN_CODE_INVALID_ARGUMENT (not UTF-8),
/// TERN_CODE_INVALID_URL, TERN_CODE_UNSUPPORTED_SCHEME.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_request_set_proxy(
    req: *mut tern_request,
    url: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let r = try_ffi!(err, mut_arg(req, "req"));
        if url.is_null() {
            r.spec.proxy = None;
            return tern_code::Ok;
        }
        let u = try_ffi!(err, str_arg(url, "url"));
        if u.is_empty() {
            r.spec.proxy = Some(None);
        } else {
            try_ffi!(err, crate::net::proxy::validate_url(u));
            r.spec.proxy = Some(Some(u.to_owned()));
        }
        tern_code::Ok
    }
}

/// What a body read callback returns (as `uint32_t`).
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum tern_read_status {
    /// `*written` bytes were put in the buffer (0 is allowed: tern asks again).
    Data = 0,
    /// The body ends after the `*written` bytes put in the buffer now.
    End = 1,
    /// Nothing now: tern asks again after `tern_session_resume`.
    Pause = 2,
    /// Give up: the request completes with TERN_CODE_CANCELED.
    Abort = 3,
}

/// The caller's body reader and its `user_data`.
struct Reader {
    read: unsafe extern "C" fn(*mut c_void, *mut u8, usize, *mut usize) -> u32,
    release: Option<unsafe extern "C" fn(*mut c_void)>,
    user_data: *mut c_void,
    ended: std::sync::atomic::AtomicBool,
}

// SAFETY: the header tells the caller that the reader runs on runtime threads (or the
// polling thread), one call at a time.
unsafe impl Send for Reader {}
unsafe impl Sync for Reader {}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(f) = self.release {
            // SAFETY: the caller's function, once, with its own user_data.
            unsafe { f(self.user_data) };
        }
    }
}

impl Reader {
    fn next(&self, max: usize) -> ReadOutcome {
        use std::sync::atomic::Ordering;
        if self.ended.load(Ordering::Acquire) {
            return ReadOutcome::End;
        }
        let mut buf = vec![0u8; max];
        let mut written = 0usize;
        // SAFETY: the caller's function with a live buffer of `max` bytes.
        let status = unsafe { (self.read)(self.user_data, buf.as_mut_ptr(), max, &mut written) };
        buf.truncate(written.min(max));
        match status {
            0 => ReadOutcome::Data(Bytes::from(buf)),
            1 => {
                self.ended.store(true, Ordering::Release);
                if buf.is_empty() {
                    ReadOutcome::End
                } else {
                    ReadOutcome::Data(Bytes::from(buf))
                }
            }
            2 => ReadOutcome::Pause,
            _ => ReadOutcome::Abort,
        }
    }
}

/// Checks a body length argument: -1 = unknown (chunked), else 0 or more.
fn body_len(length: i64) -> Result<Option<u64>, Error> {
    match length {
        -1 => Ok(None),
        n if n >= 0 => Ok(Some(n as u64)),
        n => Err(Error::new(
            tern_code::InvalidArgument,
            format!("body length {n}: use -1 for an unknown length"),
        )),
    }
}

/// Makes the body come from `read`, called for each piece while the request is sent
/// (libcurl's CURLOPT_READFUNCTION): it fills up to `cap` bytes of `buf`, stores the
/// count in `*written` and returns a `tern_read_status`. `length` is the total
/// (sent as Content-Length), or -1 when unknown (chunked with HTTP/1.1). A streamed
/// body is sent once: no retry on a dead pooled connection, and a 307/308 redirect is
/// returned instead of followed. With `Expect: 100-continue` set, the body waits for the
/// server's 100 (at most a second).
///
/// Ownership: `release(user_data)` (may be NULL) runs once when tern no longer needs the
/// reader, on any thread, also when the request is freed unsent or its body replaced.
/// If this call fails, `release` is not called.
/// Callbacks: `read` runs on a runtime thread that may block (the blocking pool), or,
/// with queued delivery, inside `tern_session_poll`; one call at a time.
/// Errors: TERN_CODE_NULL_ARGUMENT (`req`, `read`), TERN_CODE_INVALID_ARGUMENT
/// (`length` below -1).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_request_set_body_reader(
    req: *mut tern_request,
    length: i64,
    read: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            buf: *mut u8,
            cap: usize,
            written: *mut usize,
        ) -> u32,
    >,
    release: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    user_data: *mut c_void,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let r = try_ffi!(err, mut_arg(req, "req"));
        let Some(read) = read else { return crate::ffi::boundary::fail(err, null_arg("read")) };
        let len = try_ffi!(err, body_len(length));
        let reader = std::sync::Arc::new(Reader { read, release, user_data, ended: false.into() });
        r.spec.body = None;
        r.spec.upload = Some(UploadSpec {
            len,
            source: UploadSource::Reader(std::sync::Arc::new(move |max| reader.next(max))),
        });
        tern_code::Ok
    }
}

/// Makes the body come from writes pushed after `tern_session_send`, from any thread:
/// `tern_session_write(session, id, ...)` for the bytes, `tern_session_end_body` at
/// the end; `on_upload_ready` says when a refused write may be made again. `length`
/// is the total (sent as Content-Length) or -1 when unknown (chunked). Sent once, as
/// for `tern_request_set_body_reader`.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per request.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (`length` below -1).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_request_set_body_stream(
    req: *mut tern_request,
    length: i64,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let r = try_ffi!(err, mut_arg(req, "req"));
        let len = try_ffi!(err, body_len(length));
        r.spec.body = None;
        r.spec.upload = Some(UploadSpec { len, source: UploadSource::Push });
        tern_code::Ok
    }
}
