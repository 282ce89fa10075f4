//! `tern_session_options`: the builder a session is made from.

use std::ffi::c_char;

use crate::code::{tern_code, Error, Result};
use crate::engine::config::{header_pair, SessionConfig, TimeoutKind, VersionPref};
use crate::ffi::boundary::{
    bytes_arg, ffi_boundary, from_raw, mut_arg, out_arg, str_arg, to_raw, try_ffi,
};
use crate::ffi::error::tern_error;
use crate::net::tls;

/// Which time-out a `set_timeout_ms` call sets (passed as `uint32_t`).
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum tern_timeout {
    /// From send to the last byte of the body, redirects included. Default 300000 ms.
    Total = 0,
    /// Resolving, TCP connect and TLS handshake of one connection. Default 30000 ms.
    Connect = 1,
    /// The longest wait for the next byte of the response. Default 0 (off).
    Read = 2,
}

/// The HTTP version to use (passed as `uint32_t`).
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum tern_http_version {
    /// HTTP/2 when TLS ALPN agrees, else HTTP/1.1 (plain http is HTTP/1.1). Default.
    Auto = 0,
    /// HTTP/1.1 only.
    Http1 = 1,
    /// HTTP/2 only: prior knowledge (h2c) on plain http, ALPN "h2" only over TLS.
    Http2PriorKnowledge = 2,
}

pub fn timeout_kind(v: u32) -> Result<TimeoutKind> {
    Ok(match v {
        0 => TimeoutKind::Total,
        1 => TimeoutKind::Connect,
        2 => TimeoutKind::Read,
        _ => {
            return Err(Error::new(
                tern_code::InvalidArgument,
                format!("unknown time-out kind {v}"),
            ))
        }
    })
}

pub fn version_pref(v: u32) -> Result<VersionPref> {
    Ok(match v {
        0 => VersionPref::Auto,
        1 => VersionPref::Http1,
        2 => VersionPref::Http2PriorKnowledge,
        _ => {
            return Err(Error::new(
                tern_code::InvalidArgument,
                format!("unknown HTTP version {v}"),
            ))
        }
    })
}

pub fn bool_arg(v: u32, name: &str) -> Result<bool> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::new(
            tern_code::InvalidArgument,
            format!("`{name}` must be 0 or 1, not {v}"),
        )),
    }
}

/// Options for `tern_session_new`: a builder, used once or many times.
pub struct tern_session_options {
    pub(crate) cfg: SessionConfig,
}

/// Makes options with the defaults: TLS verified against the system's roots, total
/// time-out 300 s, connect 30 s, read off, redirects followed up to 10, gzip/deflate/br
/// decoded, idle connections kept 30 s (at most 32 per host), `user-agent: tern/<version>`.
///
/// Ownership: on success `*out` receives options the caller frees with
/// `tern_session_options_free`.
/// Thread safety: any thread; one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_new(
    out: *mut *mut tern_session_options,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        try_ffi!(err, out_arg(out, "out"));
        *out = to_raw(tern_session_options { cfg: SessionConfig::default() });
        tern_code::Ok
    }
}

/// Frees options. `tern_session_options_free(NULL)` does nothing.
///
/// Ownership: consumes `opts`; sessions made from it keep their own copy.
/// Thread safety: any thread, once.
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_free(opts: *mut tern_session_options) {
    ffi_boundary! {
        drop(from_raw(opts));
    }
}

/// Adds a header sent with every request of the session (kept after earlier ones of
/// the same name). A request's own header of the same name replaces all of these.
///
/// Ownership: `name` and `value` are copied.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (not UTF-8),
/// TERN_CODE_INVALID_HEADER (bad name, or CR, LF or NUL in the value).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_add_header(
    opts: *mut tern_session_options,
    name: *const c_char,
    value: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let (n, v) = try_ffi!(err, header_args(name, value));
        o.cfg.default_headers.append(n, v);
        tern_code::Ok
    }
}

/// Sets a session header, replacing every earlier value of that name (including the
/// default `user-agent`).
///
/// Ownership: `name` and `value` are copied.
/// Thread safety: one thread at a time per options object.
/// Errors: as `tern_session_options_add_header`.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_header(
    opts: *mut tern_session_options,
    name: *const c_char,
    value: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let (n, v) = try_ffi!(err, header_args(name, value));
        o.cfg.default_headers.insert(n, v);
        tern_code::Ok
    }
}

/// Converts a C header pair.
///
/// # Safety
/// Both pointers are NULL or valid C strings.
pub unsafe fn header_args(
    name: *const c_char,
    value: *const c_char,
) -> Result<(http::HeaderName, http::HeaderValue)> {
    let n = str_arg(name, "name")?;
    if value.is_null() {
        return Err(crate::ffi::boundary::null_arg("value"));
    }
    let v = std::ffi::CStr::from_ptr(value).to_bytes();
    header_pair(n, v)
}

/// Sets a session time-out in milliseconds; 0 disables it. `kind` is a
/// `tern_timeout` value.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (unknown kind).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_timeout_ms(
    opts: *mut tern_session_options,
    kind: u32,
    ms: u64,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let k = try_ffi!(err, timeout_kind(kind));
        o.cfg.timeouts.set(k, ms);
        tern_code::Ok
    }
}

/// Sets how long an idle pooled connection is kept (default 30000 ms; 0 keeps idle
/// connections until the server closes them) and how many idle connections are kept
/// per host (default 32; 0 disables keep-alive reuse).
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_pool(
    opts: *mut tern_session_options,
    idle_timeout_ms: u64,
    max_idle_per_host: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.pool_idle_timeout = (idle_timeout_ms > 0).then(|| std::time::Duration::from_millis(idle_timeout_ms));
        o.cfg.pool_max_idle_per_host = max_idle_per_host as usize;
        tern_code::Ok
    }
}

/// Sets the redirect policy: `follow` 1 (default) or 0, and the most redirects to
/// follow (default 10; one more fails with TERN_CODE_TOO_MANY_REDIRECTS).
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (`follow` not 0 or 1).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_redirects(
    opts: *mut tern_session_options,
    follow: u32,
    max: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.follow_redirects = try_ffi!(err, bool_arg(follow, "follow"));
        o.cfg.max_redirects = max;
        tern_code::Ok
    }
}

/// Allows (1) or refuses (0, default) following a redirect from https to http, which
/// sends the rest of the exchange in clear text.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_danger_allow_https_downgrade(
    opts: *mut tern_session_options,
    allow: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.allow_https_downgrade = try_ffi!(err, bool_arg(allow, "allow"));
        tern_code::Ok
    }
}

/// Sets the largest response body kept (after decoding), in bytes; 0 (default) = no
/// limit. A larger body fails with TERN_CODE_BODY_TOO_LARGE.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_max_body_size(
    opts: *mut tern_session_options,
    bytes: u64,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.max_body_size = bytes;
        tern_code::Ok
    }
}

/// Sets the largest response head accepted, in bytes (default 102400, at least 8192).
/// A larger one fails with TERN_CODE_HEADERS_TOO_LARGE.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (below 8192).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_max_header_size(
    opts: *mut tern_session_options,
    bytes: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        if bytes < 8192 {
            return crate::ffi::boundary::fail(err, Error::new(tern_code::InvalidArgument, "max header size must be at least 8192 bytes"));
        }
        o.cfg.max_header_size = bytes as usize;
        tern_code::Ok
    }
}

/// Sets the HTTP version preference (a `tern_http_version` value; default AUTO).
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_http_version(
    opts: *mut tern_session_options,
    version: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.version = try_ffi!(err, version_pref(version));
        tern_code::Ok
    }
}

/// Turns automatic decoding of gzip, deflate and br bodies on (1, default) or off (0).
/// When on and the request has no Accept-Encoding of its own, tern sends
/// `accept-encoding: gzip, deflate, br`, decodes the body, and removes
/// Content-Encoding and Content-Length from the response's headers.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_decompress(
    opts: *mut tern_session_options,
    on: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.decompress = try_ffi!(err, bool_arg(on, "on"));
        tern_code::Ok
    }
}

/// Trusts the CA certificates in a PEM file, in addition to the system's roots.
///
/// Ownership: the file is read during the call; `path` is not kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (not UTF-8),
/// TERN_CODE_INVALID_FILE (unreadable, or no certificate in it).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_add_ca_file(
    opts: *mut tern_session_options,
    path: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let p = try_ffi!(err, str_arg(path, "path"));
        let certs = try_ffi!(err, tls::certs_from_pem_file(p));
        o.cfg.extra_roots.extend(certs);
        tern_code::Ok
    }
}

/// Trusts the CA certificates in PEM bytes, in addition to the system's roots.
///
/// Ownership: `pem` is read during the call and not kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_FILE (no certificate in it).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_add_ca_pem(
    opts: *mut tern_session_options,
    pem: *const u8,
    len: usize,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let data = try_ffi!(err, bytes_arg(pem, len, "pem"));
        let certs = try_ffi!(err, tls::certs_from_pem(data));
        o.cfg.extra_roots.extend(certs);
        tern_code::Ok
    }
}

/// Whether the system's trust store is used (1, default) or only the CAs added with
/// `tern_session_options_add_ca_file` / `_add_ca_pem` (0).
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_system_roots(
    opts: *mut tern_session_options,
    use_system_roots: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.use_system_roots = try_ffi!(err, bool_arg(use_system_roots, "use_system_roots"));
        tern_code::Ok
    }
}
