//! A session's cookie jar (`tern_session_options_set_cookie_jar` turns it on): add,
//! read and clear cookies; and `tern_string_free` for the strings tern allocates.

use std::ffi::{c_char, CString};

use crate::code::{tern_code, Error, Result};
use crate::engine::config::parse_url;
use crate::engine::cookies::CookieJar;
use crate::ffi::boundary::{ffi_boundary, out_arg, ref_arg, str_arg, try_ffi};
use crate::ffi::error::tern_error;
use crate::ffi::session::tern_session;

fn jar(s: &tern_session) -> Result<&CookieJar> {
    s.inner.inner().cookies.as_ref().ok_or_else(|| {
        Error::new(
            tern_code::InvalidState,
            "this session has no cookie jar (tern_session_options_set_cookie_jar)",
        )
    })
}

/// Stores a cookie as if `url` had answered with the header `Set-Cookie:
/// <set_cookie>` ("name=value; Path=/; Domain=...; Secure; Max-Age=..."), by the same
/// rules (RFC 6265): without Domain the cookie is host-only; without Path its path is
/// the URL's directory. An expired cookie (`Max-Age=0`, a past Expires) removes the
/// stored one of that name, domain and path.
///
/// Ownership: the strings are copied.
/// Thread safety: any thread (the jar has a lock of its own).
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_STATE (the session has no jar),
/// TERN_CODE_INVALID_URL, TERN_CODE_UNSUPPORTED_SCHEME, TERN_CODE_INVALID_ARGUMENT
/// (not UTF-8, an unparsable cookie, a control character, or a Domain that does
/// not match the URL's host). Messages never show the cookie's value.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_add_cookie(
    session: *const tern_session,
    url: *const c_char,
    set_cookie: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let s = try_ffi!(err, ref_arg(session, "session"));
        let u = try_ffi!(err, str_arg(url, "url"));
        let line = try_ffi!(err, str_arg(set_cookie, "set_cookie"));
        let j = try_ffi!(err, jar(s));
        let u = try_ffi!(err, parse_url(u));
        try_ffi!(err, j.add(&u, line));
        tern_code::Ok
    }
}

/// Reads the cookies tern would send to `url` now: the value of its Cookie header
/// ("a=1; b=2": longer paths first, then oldest first), or "" when none matches.
/// Secure cookies match https URLs, and http ones only for localhost and loopback
/// addresses (as browsers and curl treat them); expired cookies never match.
///
/// Ownership: on success `*out` receives a NUL-terminated string the caller frees
/// with `tern_string_free`.
/// Thread safety: any thread (the jar has a lock of its own).
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_STATE (the session has no jar),
/// TERN_CODE_INVALID_URL, TERN_CODE_UNSUPPORTED_SCHEME, TERN_CODE_INVALID_ARGUMENT
/// (not UTF-8).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_get_cookies(
    session: *const tern_session,
    url: *const c_char,
    out: *mut *mut c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        try_ffi!(err, out_arg(out, "out"));
        let s = try_ffi!(err, ref_arg(session, "session"));
        let u = try_ffi!(err, str_arg(url, "url"));
        let j = try_ffi!(err, jar(s));
        let u = try_ffi!(err, parse_url(u));
        let value = j.header_value(&u).unwrap_or_default();
        let c = try_ffi!(err, CString::new(value).map_err(|_| Error::new(tern_code::Internal, "a stored cookie holds a NUL byte")));
        *out = c.into_raw();
        tern_code::Ok
    }
}

/// Forgets every cookie of the session's jar.
///
/// Ownership: nothing is kept.
/// Thread safety: any thread (the jar has a lock of its own); requests in flight
/// send what their next hop finds in the jar.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_STATE (the session has no jar).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_clear_cookies(
    session: *const tern_session,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let s = try_ffi!(err, ref_arg(session, "session"));
        try_ffi!(err, jar(s)).clear();
        tern_code::Ok
    }
}

/// Frees a string tern allocated for the caller (`tern_session_get_cookies`).
/// `tern_string_free(NULL)` does nothing.
///
/// Ownership: consumes `s`, which must come from tern (never from `malloc`).
/// Thread safety: any thread, once.
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_string_free(s: *mut c_char) {
    ffi_boundary! {
        if !s.is_null() {
            drop(CString::from_raw(s));
        }
    }
}
