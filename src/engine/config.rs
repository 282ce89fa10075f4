//! Session and request settings, already validated: the FFI layer converts C values
//! into these types and the engine never sees a raw pointer.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use url::Url;

use crate::code::{Code, Error, Result};

/// Which time-out a setting applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    /// From send to the last byte of the body.
    Total,
    /// Name resolution, TCP connect and TLS handshake of one connection.
    Connect,
    /// The longest wait for the next byte of the response.
    Read,
}

/// Time-outs; `None` disables one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub total: Option<Duration>,
    pub connect: Option<Duration>,
    pub read: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            total: Some(Duration::from_secs(300)),
            connect: Some(Duration::from_secs(30)),
            read: None,
        }
    }
}

impl Timeouts {
    /// Sets one time-out from milliseconds; 0 disables it.
    pub fn set(&mut self, kind: TimeoutKind, ms: u64) {
        let v = (ms > 0).then(|| Duration::from_millis(ms));
        match kind {
            TimeoutKind::Total => self.total = v,
            TimeoutKind::Connect => self.connect = v,
            TimeoutKind::Read => self.read = v,
        }
    }
}

/// Per-request time-out overrides: `Some(None)` disables, `None` keeps the session's.
#[derive(Clone, Copy, Debug, Default)]
pub struct TimeoutOverrides {
    pub total: Option<Option<Duration>>,
    pub connect: Option<Option<Duration>>,
    pub read: Option<Option<Duration>>,
}

impl TimeoutOverrides {
    pub fn set(&mut self, kind: TimeoutKind, ms: u64) {
        let v = Some((ms > 0).then(|| Duration::from_millis(ms)));
        match kind {
            TimeoutKind::Total => self.total = v,
            TimeoutKind::Connect => self.connect = v,
            TimeoutKind::Read => self.read = v,
        }
    }

    pub fn apply(&self, base: Timeouts) -> Timeouts {
        Timeouts {
            total: self.total.unwrap_or(base.total),
            connect: self.connect.unwrap_or(base.connect),
            read: self.read.unwrap_or(base.read),
        }
    }
}

/// The HTTP version a request or session asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum VersionPref {
    /// HTTP/2 when TLS ALPN agrees, HTTP/1.1 otherwise (and always for plain http).
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 without negotiation on plain http (h2c prior knowledge), and HTTP/2 only
    /// over TLS.
    Http2PriorKnowledge,
}

/// Which address families to connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum IpFamily {
    /// Both; when a name has both, Happy Eyeballs (RFC 8305) races them.
    #[default]
    Any,
    V4Only,
    V6Only,
}

/// TLS settings.
#[derive(Clone, Default)]
pub struct TlsOptions {
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub use_system_roots: bool,
    pub client_identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    pub danger_accept_invalid_certs: bool,
    pub danger_accept_invalid_hostnames: bool,
    /// 12 or 13; None = rustls' default (1.2 and 1.3).
    pub min_version: Option<u8>,
    pub max_version: Option<u8>,
    pub sni: bool,
}

/// Proxy settings.
#[derive(Clone, Debug, Default)]
pub struct ProxyOptions {
    /// The proxy URL; `None` = no explicit proxy.
    pub url: Option<String>,
    /// Overrides credentials in the URL.
    pub credentials: Option<(String, String)>,
    pub no_proxy: Option<String>,
    pub trust_env: bool,
    /// Sent on CONNECT requests only.
    pub connect_headers: HeaderMap,
}

/// DNS settings.
#[derive(Clone, Debug)]
pub struct DnsOptions {
    /// Explicit nameservers (hickory); empty = the system resolver.
    pub nameservers: Vec<SocketAddr>,
    /// `(host, port) -> addresses`, winning over everything.
    pub overrides: HashMap<(String, u16), Vec<IpAddr>>,
    pub family: IpFamily,
    /// Upper bound of how long an answer is cached; zero disables the cache.
    pub cache_ttl: Duration,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            nameservers: Vec::new(),
            overrides: HashMap::new(),
            family: IpFamily::Any,
            cache_ttl: Duration::from_secs(60),
        }
    }
}

/// Everything a session is built from.
#[derive(Clone)]
pub struct SessionConfig {
    pub default_headers: HeaderMap,
    pub timeouts: Timeouts,
    pub pool_idle_timeout: Option<Duration>,
    pub pool_max_idle_per_host: usize,
    pub follow_redirects: bool,
    pub max_redirects: u32,
    pub allow_https_downgrade: bool,
    /// 0 = no limit.
    pub max_body_size: u64,
    pub max_header_size: usize,
    pub decompress: bool,
    pub version: VersionPref,
    pub tls: TlsOptions,
    pub proxy: ProxyOptions,
    pub dns: DnsOptions,
    /// 0 = no limit.
    pub max_connections: usize,
    /// 0 = no limit.
    pub max_connections_per_host: usize,
    /// Callbacks queued for the caller's `poll` instead of run on runtime threads.
    pub queued_delivery: bool,
    /// The shortest time between two `on_progress` calls of one request.
    pub progress_interval: Duration,
    /// Keep cookies from responses and send them back (RFC 6265); off by default.
    pub cookie_jar: bool,
}

/// The user agent sent unless the caller sets its own.
pub const USER_AGENT: &str = concat!("tern/", env!("CARGO_PKG_VERSION"));

impl Default for SessionConfig {
    fn default() -> Self {
        let mut default_headers = HeaderMap::new();
        default_headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        SessionConfig {
            default_headers,
            timeouts: Timeouts::default(),
            pool_idle_timeout: Some(Duration::from_secs(30)),
            pool_max_idle_per_host: 32,
            follow_redirects: true,
            max_redirects: 10,
            allow_https_downgrade: false,
            max_body_size: 0,
            max_header_size: 100 * 1024,
            decompress: true,
            version: VersionPref::Auto,
            tls: TlsOptions {
                use_system_roots: true,
                sni: true,
                ..Default::default()
            },
            proxy: ProxyOptions::default(),
            dns: DnsOptions::default(),
            max_connections: 0,
            max_connections_per_host: 0,
            queued_delivery: false,
            progress_interval: Duration::from_millis(100),
            cookie_jar: false,
        }
    }
}

/// Parses a header pair, refusing CR, LF, NUL and invalid names.
pub fn header_pair(name: &str, value: &[u8]) -> Result<(HeaderName, HeaderValue)> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| Error::new(Code::InvalidHeader, format!("invalid header name {name:?}")))?;
    let v = HeaderValue::from_bytes(value).map_err(|_| {
        Error::new(
            Code::InvalidHeader,
            format!(
                "invalid value for header {n}: control characters (CR, LF, NUL) are not allowed"
            ),
        )
    })?;
    Ok((n, v))
}

/// A request as built by the caller.
#[derive(Clone, Debug)]
pub struct RequestSpec {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
    pub timeouts: TimeoutOverrides,
    pub follow_redirects: Option<bool>,
    pub max_redirects: Option<u32>,
    pub version: Option<VersionPref>,
    /// `Some(None)` = no proxy for this request; `None` = the session's choice.
    pub proxy: Option<Option<String>>,
    /// A body produced while it is sent (instead of `body`).
    pub upload: Option<UploadSpec>,
}

/// Reads the next piece of a streamed upload, at most `max` bytes.
pub type ReadFn = dyn Fn(usize) -> crate::engine::deliver::ReadOutcome + Send + Sync;

/// A request body produced while it is sent. It cannot be sent twice: no retry on a
/// dead pooled connection, and a 307/308 redirect is returned, not followed.
#[derive(Clone)]
pub struct UploadSpec {
    /// The total, sent as Content-Length; `None` = chunked (HTTP/1.1).
    pub len: Option<u64>,
    pub source: UploadSource,
}

#[derive(Clone)]
pub enum UploadSource {
    /// The caller's read callback, asked for each chunk.
    Reader(std::sync::Arc<ReadFn>),
    /// Writes pushed by the caller (`write` / `end`) from any thread.
    Push,
    /// A stream made by tern (multipart forms), taken once.
    Stream(std::sync::Arc<std::sync::Mutex<Option<crate::engine::body::ChunkStream>>>),
}

impl std::fmt::Debug for UploadSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.source {
            UploadSource::Reader(_) => "reader",
            UploadSource::Push => "push",
            UploadSource::Stream(_) => "stream",
        };
        write!(f, "UploadSpec({kind}, {:?})", self.len)
    }
}

impl RequestSpec {
    pub fn new(method: &str, url: &str) -> Result<RequestSpec> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| Error::new(Code::InvalidMethod, format!("invalid method {method:?}")))?;
        let url = parse_url(url)?;
        Ok(RequestSpec {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            timeouts: TimeoutOverrides::default(),
            follow_redirects: None,
            max_redirects: None,
            version: None,
            proxy: None,
            upload: None,
        })
    }
}

/// Parses and checks an http(s) URL.
pub fn parse_url(s: &str) -> Result<Url> {
    let url = Url::parse(s).map_err(|e| {
        Error::new(
            Code::InvalidUrl,
            format!("invalid URL {:?}: {e}", crate::engine::redact::url_str(s)),
        )
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(Error::new(
                Code::UnsupportedScheme,
                format!("unsupported URL scheme {other:?} (http and https are supported)"),
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::new(Code::InvalidUrl, "URL has no host"));
    }
    Ok(url)
}
