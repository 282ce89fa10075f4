//! `tern_response`: the owned outcome of one request.

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use crate::code::tern_code;
use crate::engine::response::Response;
use crate::ffi::boundary::{ffi_boundary, from_raw, null_arg, ref_arg, str_arg, try_ffi};
use crate::ffi::error::{c_message, tern_error};

/// Which phase `tern_response_timing_us` reports (passed as `uint32_t`).
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum tern_timing {
    /// Name resolution of a new connection (0 on a reused one).
    Dns = 0,
    /// TCP connect of a new connection (0 on a reused one).
    Connect = 1,
    /// TLS handshake of a new connection (0 on a reused one or plain http).
    Tls = 2,
    /// From send to the first byte of the final response head.
    Ttfb = 3,
    /// From send to the end, body included.
    Total = 4,
}

/// The outcome of one request: the error code and message, or status, version,
/// headers and body; plus effective URL, redirect count, remote address and timings.
pub struct tern_response {
    resp: Response,
    // The C strings are made on first use: most callers read one or none of them.
    message: OnceLock<CString>,
    effective_url: OnceLock<CString>,
    remote: OnceLock<CString>,
}

impl tern_response {
    pub fn new(resp: Response) -> tern_response {
        tern_response {
            resp,
            message: OnceLock::new(),
            effective_url: OnceLock::new(),
            remote: OnceLock::new(),
        }
    }

    fn message(&self) -> &CString {
        self.message
            .get_or_init(|| match (&self.resp.error, &self.resp.warning) {
                (Some(e), Some(w)) => c_message(&format!("{}; {w}", e.message)),
                (Some(e), None) => c_message(&e.message),
                (None, Some(w)) => c_message(w),
                (None, None) => c_message(""),
            })
    }

    fn effective_url(&self) -> &CString {
        self.effective_url
            .get_or_init(|| c_message(&self.resp.effective_url))
    }

    fn remote(&self) -> &CString {
        self.remote
            .get_or_init(|| c_message(&self.resp.remote.map(|a| a.to_string()).unwrap_or_default()))
    }
}

/// Frees a response and everything borrowed from it. `tern_response_free(NULL)` does
/// nothing.
///
/// Ownership: consumes `resp`.
/// Thread safety: any thread, once (it need not be the thread that received it).
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_free(resp: *mut tern_response) {
    ffi_boundary! {
        drop(from_raw(resp));
    }
}

/// The request id `tern_session_send` returned for this response's request.
///
/// Ownership: borrows `resp`.
/// Thread safety: a `const` response may be read from any number of threads.
/// Errors: returns 0 when `resp` is NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_id(resp: *const tern_response) -> u64 {
    ffi_boundary! {
        resp.as_ref().map_or(0, |r| r.resp.id)
    }
}

/// The outcome: TERN_CODE_OK when an HTTP exchange completed (whatever its status,
/// 404 and 500 included), or the error that ended the request.
///
/// Ownership: borrows `resp`.
/// Thread safety: any thread.
/// Errors: TERN_CODE_NULL_ARGUMENT when `resp` is NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_code(resp: *const tern_response) -> tern_code {
    ffi_boundary! {
        resp.as_ref().map_or(tern_code::NullArgument, |r| r.resp.code())
    }
}

/// The error message with its underlying cause (OS error, TLS alert, HTTP error),
/// secrets redacted; "" when the code is TERN_CODE_OK, unless a `danger` option
/// weakened TLS verification for this request, which the message then says.
///
/// Ownership: borrowed from `resp`, valid until `tern_response_free`.
/// Thread safety: any thread.
/// Errors: NULL when `resp` is NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_message(resp: *const tern_response) -> *const c_char {
    ffi_boundary! {
        resp.as_ref().map_or(std::ptr::null(), |r| r.message().as_ptr())
    }
}

/// The HTTP status of the final response; 0 when no response head arrived.
///
/// Ownership: borrows `resp`.
/// Thread safety: any thread.
/// Errors: 0 when `resp` is NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_status(resp: *const tern_response) -> u16 {
    ffi_boundary! {
        resp.as_ref().map_or(0, |r| r.resp.status)
    }
}

/// The HTTP version of the final response: 10, 11, 20 or 30; 0 when none arrived.
///
/// Ownership: borrows `resp`.
/// Thread safety: any thread.
/// Errors: 0 when `resp` is NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_version(resp: *const tern_response) -> u32 {
    ffi_boundary! {
        let Some(r) = resp.as_ref() else { return 0 };
        match r.resp.version {
            Some(http::Version::HTTP_09) => 9,
            Some(http::Version::HTTP_10) => 10,
            Some(http::Version::HTTP_11) => 11,
            Some(http::Version::HTTP_2) => 20,
            Some(http::Version::HTTP_3) => 30,
            _ => 0,
        }
    }
}

/// The number of response headers (each repeated header counts once per value).
///
/// Ownership: borrows `resp`.
/// Thread safety: any thread.
/// Errors: 0 when `resp` is NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_header_count(resp: *const tern_response) -> usize {
    ffi_boundary! {
        resp.as_ref().map_or(0, |r| r.resp.headers.len())
    }
}

/// The header at `index` (0-based): its lower-case name and its value as (pointer,
/// length). Neither is NUL-terminated. Headers come grouped by name, names in the order
/// they first appeared; the values of a repeated name stay in the order received
/// (`x-a: 1`, `x-b: 2`, `x-a: 3` reads as x-a 1, x-a 3, x-b 2).
///
/// Ownership: borrowed from `resp`, valid until `tern_response_free`. Any of the out
/// pointers may be NULL when that part is not wanted.
/// Thread safety: any thread.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_NOT_FOUND (index out of range).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_header_at(
    resp: *const tern_response,
    index: usize,
    name: *mut *const c_char,
    name_len: *mut usize,
    value: *mut *const u8,
    value_len: *mut usize,
) -> tern_code {
    ffi_boundary! {
        let Some(r) = resp.as_ref() else { return tern_code::NullArgument };
        let Some((n, v)) = r.resp.headers.get(index) else { return tern_code::NotFound };
        write_opt(name, n.as_str().as_ptr().cast());
        write_opt(name_len, n.as_str().len());
        write_opt(value, v.as_bytes().as_ptr());
        write_opt(value_len, v.as_bytes().len());
        tern_code::Ok
    }
}

unsafe fn write_opt<T>(p: *mut T, v: T) {
    if !p.is_null() {
        *p = v;
    }
}

/// The `nth` (0-based) value of the header `name`, compared case-insensitively, as
/// (pointer, length), not NUL-terminated. Loop over `nth` to read repeated headers.
///
/// Ownership: borrowed from `resp`, valid until `tern_response_free`.
/// Thread safety: any thread.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (name not UTF-8),
/// TERN_CODE_NOT_FOUND (no such header, or fewer than `nth + 1` values).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_header_get(
    resp: *const tern_response,
    name: *const c_char,
    nth: usize,
    value: *mut *const u8,
    value_len: *mut usize,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let r = try_ffi!(err, ref_arg(resp, "resp"));
        let n = try_ffi!(err, str_arg(name, "name"));
        if value.is_null() || value_len.is_null() {
            return crate::ffi::boundary::fail(err, null_arg("value"));
        }
        let found = r.resp.headers.iter().filter(|(k, _)| k.as_str().eq_ignore_ascii_case(n)).nth(nth);
        match found {
            Some((_, v)) => {
                *value = v.as_bytes().as_ptr();
                *value_len = v.as_bytes().len();
                tern_code::Ok
            }
            None => tern_code::NotFound,
        }
    }
}

/// The body (decoded when tern decoded it) as (pointer, length). One NUL byte follows
/// the last byte (not counted), so a text body can be used as a C string; a body may
/// itself contain NUL bytes. An empty body gives a valid pointer and length 0.
///
/// Ownership: borrowed from `resp`, valid until `tern_response_free`.
/// Thread safety: any thread.
/// Errors: TERN_CODE_NULL_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_body(
    resp: *const tern_response,
    data: *mut *const u8,
    len: *mut usize,
) -> tern_code {
    ffi_boundary! {
        let Some(r) = resp.as_ref() else { return tern_code::NullArgument };
        if data.is_null() || len.is_null() {
            return tern_code::NullArgument;
        }
        *data = r.resp.body.as_ptr();
        *len = r.resp.body_len;
        tern_code::Ok
    }
}

/// The URL of the final request after redirects, with any user info redacted; "" when
/// the request never started.
///
/// Ownership: borrowed from `resp`, valid until `tern_response_free`.
/// Thread safety: any thread.
/// Errors: NULL when `resp` is NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_effective_url(resp: *const tern_response) -> *const c_char {
    ffi_boundary! {
        resp.as_ref().map_or(std::ptr::null(), |r| r.effective_url().as_ptr())
    }
}

/// How many redirects were followed.
///
/// Ownership: borrows `resp`.
/// Thread safety: any thread.
/// Errors: 0 when `resp` is NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_redirect_count(resp: *const tern_response) -> u32 {
    ffi_boundary! {
        resp.as_ref().map_or(0, |r| r.resp.redirects)
    }
}

/// The server address of the final connection, "ip:port" or "[ipv6]:port"; "" when no
/// connection was made.
///
/// Ownership: borrowed from `resp`, valid until `tern_response_free`.
/// Thread safety: any thread.
/// Errors: NULL when `resp` is NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_remote_addr(resp: *const tern_response) -> *const c_char {
    ffi_boundary! {
        resp.as_ref().map_or(std::ptr::null(), |r| r.remote().as_ptr())
    }
}

/// One phase's duration in microseconds; `kind` is a `tern_timing` value.
///
/// Ownership: borrows `resp`.
/// Thread safety: any thread.
/// Errors: 0 when `resp` is NULL or `kind` is unknown.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_response_timing_us(resp: *const tern_response, kind: u32) -> u64 {
    ffi_boundary! {
        let Some(r) = resp.as_ref() else { return 0 };
        let t = &r.resp.timings;
        let d = match kind {
            0 => t.dns,
            1 => t.connect,
            2 => t.tls,
            3 => t.ttfb,
            4 => t.total,
            _ => return 0,
        };
        d.as_micros().min(u64::MAX as u128) as u64
    }
}
