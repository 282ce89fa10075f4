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
/// A larger one fails with TERN_CODE_HEADERS_TOO_LARGE, as does an HTTP/1.1 response
/// with more than 100 header fields (a fixed limit, as in reqwest).
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
        o.cfg.tls.extra_roots.extend(certs);
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
        o.cfg.tls.extra_roots.extend(certs);
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
        o.cfg.tls.use_system_roots = try_ffi!(err, bool_arg(use_system_roots, "use_system_roots"));
        tern_code::Ok
    }
}

/// The TLS protocol version (passed as `uint32_t`).
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum tern_tls_version {
    /// No bound: TLS 1.2 and 1.3 are allowed.
    Default = 0,
    /// TLS 1.2.
    Tls12 = 12,
    /// TLS 1.3.
    Tls13 = 13,
}

/// Which address families to connect to (passed as `uint32_t`).
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum tern_ip_family {
    /// IPv4 and IPv6; when a name has both, they race (Happy Eyeballs). Default.
    Any = 0,
    /// IPv4 only.
    V4 = 4,
    /// IPv6 only.
    V6 = 6,
}

/// Reads an optional C string: NULL and "" give `None`.
///
/// # Safety
/// `p` is NULL or a valid C string.
unsafe fn opt_str(p: *const c_char, name: &str) -> Result<Option<String>> {
    if p.is_null() {
        return Ok(None);
    }
    let s = str_arg(p, name)?;
    Ok((!s.is_empty()).then(|| s.to_owned()))
}

/// Sets the proxy for every request of the session: `http://`, `https://` (TLS to the
/// proxy, verified like origins), `socks5://` (tern resolves the origin's name) or
/// `socks5h://` (the proxy resolves it). Credentials in the URL are percent-decoded
/// (`http://user:p%40ss@host:3128`). NULL or "" removes the proxy. Plain-http requests
/// are forwarded in absolute form; https requests go through a CONNECT tunnel. Proxy
/// credentials are sent to the proxy only. A proxy that cannot be reached fails the
/// request with TERN_CODE_PROXY_CONNECT, never a direct connection.
///
/// Ownership: `url` is copied.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT (`opts`), TERN_CODE_INVALID_ARGUMENT (not UTF-8),
/// TERN_CODE_INVALID_URL, TERN_CODE_UNSUPPORTED_SCHEME.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_proxy(
    opts: *mut tern_session_options,
    url: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let u = try_ffi!(err, opt_str(url, "url"));
        if let Some(u) = &u {
            try_ffi!(err, crate::net::proxy::validate_url(u));
        }
        o.cfg.proxy.url = u;
        tern_code::Ok
    }
}

/// Sets the proxy's user name and password (basic auth for HTTP proxies,
/// username/password for SOCKS5), overriding credentials in the proxy URL. NULL `user`
/// removes them.
///
/// Ownership: both strings are copied.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT (`opts`, or `password` with a user),
/// TERN_CODE_INVALID_ARGUMENT (not UTF-8).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_proxy_credentials(
    opts: *mut tern_session_options,
    user: *const c_char,
    password: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        if user.is_null() {
            o.cfg.proxy.credentials = None;
            return tern_code::Ok;
        }
        let u = try_ffi!(err, str_arg(user, "user")).to_owned();
        let p = try_ffi!(err, str_arg(password, "password")).to_owned();
        o.cfg.proxy.credentials = Some((u, p));
        tern_code::Ok
    }
}

/// Sets the hosts reached without the proxy, as curl's NO_PROXY: comma-separated host
/// names (each also matches its subdomains; a leading dot is allowed), IP addresses,
/// CIDR blocks, or `*` for all. With trust_env, it replaces the environment's NO_PROXY.
///
/// Ownership: `list` is copied.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (not UTF-8).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_no_proxy(
    opts: *mut tern_session_options,
    list: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.proxy.no_proxy = Some(try_ffi!(err, str_arg(list, "list")).to_owned());
        tern_code::Ok
    }
}

/// Reads proxies from the environment when no proxy is set (0 = off, default): for
/// http URLs `http_proxy` then `HTTP_PROXY` (ignored when `REQUEST_METHOD` is set, the
/// CGI rule), for https `https_proxy` then `HTTPS_PROXY`, else `all_proxy` /
/// `ALL_PROXY`; hosts in `no_proxy` / `NO_PROXY` go direct. Lower case wins. Read
/// once, when the session is made.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_trust_env(
    opts: *mut tern_session_options,
    on: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.proxy.trust_env = try_ffi!(err, bool_arg(on, "on"));
        tern_code::Ok
    }
}

/// Adds a header sent on CONNECT requests to the proxy only, never to the origin
/// (libcurl's CURLOPT_PROXYHEADER, aiohttp's proxy_headers).
///
/// Ownership: `name` and `value` are copied.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT, TERN_CODE_INVALID_HEADER.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_add_proxy_header(
    opts: *mut tern_session_options,
    name: *const c_char,
    value: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let (n, v) = try_ffi!(err, header_args(name, value));
        o.cfg.proxy.connect_headers.append(n, v);
        tern_code::Ok
    }
}

/// Trusts every CA certificate found in the PEM files of a directory (as
/// CURLOPT_CAPATH), in addition to the system's roots.
///
/// Ownership: the files are read during the call; `path` is not kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT, TERN_CODE_INVALID_FILE
/// (unreadable, or no certificate in it).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_add_ca_dir(
    opts: *mut tern_session_options,
    path: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let p = try_ffi!(err, str_arg(path, "path"));
        let certs = try_ffi!(err, tls::certs_from_dir(p));
        o.cfg.tls.extra_roots.extend(certs);
        tern_code::Ok
    }
}

/// Sets the client certificate (PEM chain, leaf first) and private key (PEM: PKCS#8,
/// PKCS#1 RSA or SEC1 EC; RSA, ECDSA and Ed25519 keys) for mutual TLS, from files.
///
/// Ownership: the files are read during the call; the paths are not kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT, TERN_CODE_INVALID_FILE
/// (unreadable, no certificate, no usable key).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_client_cert_file(
    opts: *mut tern_session_options,
    cert_path: *const c_char,
    key_path: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let cp = try_ffi!(err, str_arg(cert_path, "cert_path"));
        let kp = try_ffi!(err, str_arg(key_path, "key_path"));
        let read = |p: &str| std::fs::read(p).map_err(|e| Error::new(tern_code::InvalidFile, format!("cannot read {p:?}: {e}")));
        let cert = try_ffi!(err, read(cp));
        let key = try_ffi!(err, read(kp));
        o.cfg.tls.client_identity = Some(try_ffi!(err, tls::identity_from_pem(&cert, &key)));
        tern_code::Ok
    }
}

/// Sets the client certificate and private key for mutual TLS from PEM bytes (formats
/// as `tern_session_options_set_client_cert_file`).
///
/// Ownership: the bytes are read during the call and not kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_FILE.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_client_cert_pem(
    opts: *mut tern_session_options,
    cert: *const u8,
    cert_len: usize,
    key: *const u8,
    key_len: usize,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let c = try_ffi!(err, bytes_arg(cert, cert_len, "cert"));
        let k = try_ffi!(err, bytes_arg(key, key_len, "key"));
        o.cfg.tls.client_identity = Some(try_ffi!(err, tls::identity_from_pem(c, k)));
        tern_code::Ok
    }
}

/// DANGER: accepts any server certificate (expired, self-signed, unknown issuer, any
/// name) when 1. Default 0. Every response of an https request says so in its message.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_danger_accept_invalid_certs(
    opts: *mut tern_session_options,
    on: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.tls.danger_accept_invalid_certs = try_ffi!(err, bool_arg(on, "on"));
        tern_code::Ok
    }
}

/// DANGER: accepts a certificate issued for another host name when 1 (the chain is
/// still verified). Default 0. Every response of an https request says so in its
/// message.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_danger_accept_invalid_hostnames(
    opts: *mut tern_session_options,
    on: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.tls.danger_accept_invalid_hostnames = try_ffi!(err, bool_arg(on, "on"));
        tern_code::Ok
    }
}

fn tls_version(v: u32, name: &str) -> Result<Option<u8>> {
    match v {
        0 => Ok(None),
        12 => Ok(Some(12)),
        13 => Ok(Some(13)),
        _ => Err(Error::new(
            tern_code::InvalidArgument,
            format!("`{name}` must be a tern_tls_version, not {v}"),
        )),
    }
}

/// Sets the lowest and highest TLS version (`tern_tls_version` values; DEFAULT = no
/// bound). A server that cannot meet them fails with TERN_CODE_TLS.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (unknown value, or
/// min above max).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_tls_versions(
    opts: *mut tern_session_options,
    min: u32,
    max: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let lo = try_ffi!(err, tls_version(min, "min"));
        let hi = try_ffi!(err, tls_version(max, "max"));
        if let (Some(a), Some(b)) = (lo, hi) {
            if a > b {
                return crate::ffi::boundary::fail(err, Error::new(tern_code::InvalidArgument, "min TLS version is above max"));
            }
        }
        o.cfg.tls.min_version = lo;
        o.cfg.tls.max_version = hi;
        tern_code::Ok
    }
}

/// Sends the server name in the TLS handshake (SNI) when 1 (default); 0 leaves it out.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_sni(
    opts: *mut tern_session_options,
    on: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.tls.sni = try_ffi!(err, bool_arg(on, "on"));
        tern_code::Ok
    }
}

/// Resolves names with these nameservers instead of the system resolver (UDP, with a
/// TCP fall-back for truncated answers): a list of `ip[:port]` (IPv6 as
/// `[addr]:port`; port 53 by default) separated by commas. NULL or "" returns to the
/// system resolver.
///
/// Ownership: `list` is copied.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT (`opts`), TERN_CODE_INVALID_ARGUMENT (not UTF-8, or
/// an entry that is not an address).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_nameservers(
    opts: *mut tern_session_options,
    list: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let l = try_ffi!(err, opt_str(list, "list"));
        o.cfg.dns.nameservers = match l {
            Some(l) => try_ffi!(err, crate::net::dns::parse_nameservers(&l)),
            None => Vec::new(),
        };
        tern_code::Ok
    }
}

/// Adds a static answer that wins over every resolver, as curl's `--resolve`:
/// `host:port:addr[,addr...]` (IPv6 addresses may be in brackets). Only connections
/// to that host and port use it.
///
/// Ownership: `entry` is copied.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (malformed entry).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_add_resolve(
    opts: *mut tern_session_options,
    entry: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let e = try_ffi!(err, str_arg(entry, "entry"));
        let (k, ips) = try_ffi!(err, crate::net::dns::parse_override(e));
        o.cfg.dns.overrides.insert(k, ips);
        tern_code::Ok
    }
}

/// Limits connections to one address family (a `tern_ip_family` value; default ANY,
/// where a name with both families gets Happy Eyeballs: the second family is tried
/// 250 ms after the first if that has not connected yet).
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_ip_family(
    opts: *mut tern_session_options,
    family: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.dns.family = match family {
            0 => crate::engine::config::IpFamily::Any,
            4 => crate::engine::config::IpFamily::V4Only,
            6 => crate::engine::config::IpFamily::V6Only,
            v => return crate::ffi::boundary::fail(err, Error::new(tern_code::InvalidArgument, format!("unknown IP family {v}"))),
        };
        tern_code::Ok
    }
}

/// Sets how long a DNS answer may be cached, in milliseconds (default 60000; 0 turns
/// the cache off). Answers from nameservers are kept for their TTL, at most this long;
/// answers from the system resolver (which gives no TTL) for exactly this long.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_dns_cache_ttl_ms(
    opts: *mut tern_session_options,
    ms: u64,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.dns.cache_ttl = std::time::Duration::from_millis(ms);
        tern_code::Ok
    }
}

/// Limits the connections the session keeps open: in total and per host (scheme, host
/// and port); 0 = no limit (default). A request beyond a limit waits, in order, for a
/// connection to go idle or close (its time-outs still run); when the total is reached,
/// the oldest idle connection is closed to make room. An HTTP/2 connection counts once.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_connection_limits(
    opts: *mut tern_session_options,
    total: u32,
    per_host: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.max_connections = total as usize;
        o.cfg.max_connections_per_host = per_host as usize;
        tern_code::Ok
    }
}

/// Where a session's callbacks run (passed as `uint32_t`).
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum tern_delivery {
    /// On a runtime thread, as soon as the event happens. Default.
    RuntimeThread = 0,
    /// Queued, and run by the caller's own thread inside `tern_session_poll`; the
    /// session's descriptor (`tern_session_fd`) is readable while callbacks wait.
    Queued = 1,
}

/// Chooses where the session's callbacks run: a `tern_delivery` value.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (unknown value).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_delivery(
    opts: *mut tern_session_options,
    delivery: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.queued_delivery = match delivery {
            0 => false,
            1 => true,
            other => return crate::ffi::boundary::fail(err, Error::new(tern_code::InvalidArgument, format!("unknown delivery {other} (TERN_DELIVERY_RUNTIME_THREAD or TERN_DELIVERY_QUEUED)"))),
        };
        tern_code::Ok
    }
}

/// Sets the shortest time between two `on_progress` calls of one request, in
/// milliseconds (default 100; at least 1).
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (0).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_progress_interval_ms(
    opts: *mut tern_session_options,
    ms: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        if ms == 0 {
            return crate::ffi::boundary::fail(err, Error::new(tern_code::InvalidArgument, "the progress interval must be at least 1 ms"));
        }
        o.cfg.progress_interval = std::time::Duration::from_millis(u64::from(ms));
        tern_code::Ok
    }
}

/// Turns the session's cookie jar on (1) or off (0, the default). With it on, the
/// session keeps the cookies of every response (redirect hops included) by RFC 6265's
/// rules (domain, host-only, path, Secure, HttpOnly, Expires, Max-Age) and sends the
/// matching ones in a Cookie header with each request and redirect hop, unless the
/// request sets its own Cookie header (which then wins, until a redirect to another
/// origin drops it). The jar lives as long as the session; it is not saved anywhere.
/// Read and change it with `tern_session_get_cookies`, `tern_session_add_cookie` and
/// `tern_session_clear_cookies` (libcurl's CURLOPT_COOKIEFILE "" and
/// CURLOPT_COOKIELIST; aiohttp's `cookie_jar`).
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (not 0 or 1).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_options_set_cookie_jar(
    opts: *mut tern_session_options,
    on: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.cfg.cookie_jar = try_ffi!(err, bool_arg(on, "on"));
        tern_code::Ok
    }
}
