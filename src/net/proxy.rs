//! Proxies: which proxy a URL goes through (hyper-util's `Matcher`, fed from the
//! options or from the environment in curl's order), the CONNECT tunnel (through
//! hyper's HTTP/1.1 client, so the proxy's status is kept), and SOCKS5 (hyper-util).

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::connect::proxy::SocksV5;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tower_service::Service;

use crate::code::{Code, Error, Result};
use crate::engine::config::ProxyOptions;
use crate::log;

/// The kind of proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Http,
    Https,
    /// The client resolves the origin's name.
    Socks5,
    /// The proxy resolves the origin's name.
    Socks5h,
}

/// Credentials for the proxy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Auth {
    /// A ready `Proxy-Authorization` value (HTTP proxies).
    Basic(HeaderValue),
    /// User and password (SOCKS5).
    UserPass(String, String),
}

/// One proxy, as part of a pool key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proxy {
    pub kind: Kind,
    pub host: String,
    pub port: u16,
    pub auth: Option<Auth>,
}

/// Checks a proxy URL before it is used.
pub fn validate_url(s: &str) -> Result<()> {
    let u = url::Url::parse(s).map_err(|e| {
        Error::new(
            Code::InvalidUrl,
            format!(
                "invalid proxy URL {:?}: {e}",
                crate::engine::redact::url_str(s)
            ),
        )
    })?;
    match u.scheme() {
        "http" | "https" | "socks5" | "socks5h" => {}
        other => {
            return Err(Error::new(
                Code::UnsupportedScheme,
                format!("unsupported proxy scheme {other:?} (http, https, socks5, socks5h)"),
            ))
        }
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(Error::new(Code::InvalidUrl, "proxy URL has no host"));
    }
    Ok(())
}

/// Lower case first; `HTTP_PROXY` is skipped when `REQUEST_METHOD` is set (a CGI
/// program must not take its proxy from a request header called `Proxy:`).
fn env_var(lower: &str, upper: &str, cgi_ignores_upper: bool) -> String {
    if let Ok(v) = std::env::var(lower) {
        return v;
    }
    if cgi_ignores_upper && std::env::var_os("REQUEST_METHOD").is_some() {
        return String::new();
    }
    std::env::var(upper).unwrap_or_default()
}

/// The session's proxy rules.
pub struct Rules {
    matcher: Option<Matcher>,
    no_proxy: String,
    credentials: Option<(String, String)>,
    pub connect_headers: HeaderMap,
}

impl Rules {
    pub fn new(o: &ProxyOptions) -> Result<Rules> {
        let mut no_proxy = o.no_proxy.clone().unwrap_or_default();
        let matcher = if let Some(url) = &o.url {
            validate_url(url)?;
            Some(
                Matcher::builder()
                    .all(url.clone())
                    .no(no_proxy.clone())
                    .build(),
            )
        } else if o.trust_env {
            if o.no_proxy.is_none() {
                no_proxy = env_var("no_proxy", "NO_PROXY", false);
            }
            Some(
                Matcher::builder()
                    .http(env_var("http_proxy", "HTTP_PROXY", true))
                    .https(env_var("https_proxy", "HTTPS_PROXY", false))
                    .all(env_var("all_proxy", "ALL_PROXY", false))
                    .no(no_proxy.clone())
                    .build(),
            )
        } else {
            None
        };
        Ok(Rules {
            matcher,
            no_proxy,
            credentials: o.credentials.clone(),
            connect_headers: o.connect_headers.clone(),
        })
    }

    /// The proxy for `url`: `over` is the request's own choice (`Some(None)` = none).
    pub fn choose(&self, url: &url::Url, over: Option<&Option<String>>) -> Result<Option<Proxy>> {
        let uri: http::Uri = match url.scheme() {
            "ws" => url.as_str().replacen("ws", "http", 1).parse(),
            "wss" => url.as_str().replacen("wss", "https", 1).parse(),
            _ => url.as_str().parse(),
        }
        .map_err(|e| {
            Error::new(
                Code::InvalidUrl,
                format!("URL cannot be matched against proxies: {e}"),
            )
        })?;
        let intercept = match over {
            Some(None) => return Ok(None),
            Some(Some(p)) => {
                validate_url(p)?;
                Matcher::builder()
                    .all(p.clone())
                    .no(self.no_proxy.clone())
                    .build()
                    .intercept(&uri)
            }
            None => match &self.matcher {
                Some(m) => m.intercept(&uri),
                None => None,
            },
        };
        let Some(i) = intercept else { return Ok(None) };
        let pu = i.uri();
        let kind = match pu.scheme_str() {
            Some("https") => Kind::Https,
            Some("socks5") => Kind::Socks5,
            Some("socks5h") => Kind::Socks5h,
            _ => Kind::Http,
        };
        let host = pu
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = pu.port_u16().unwrap_or(match kind {
            Kind::Https => 443,
            _ => 1080,
        });
        let socks = matches!(kind, Kind::Socks5 | Kind::Socks5h);
        let auth = match (&self.credentials, socks) {
            (Some((u, p)), true) => Some(Auth::UserPass(u.clone(), p.clone())),
            (Some((u, p)), false) => Some(Auth::Basic(basic(u, p))),
            (None, true) => i
                .raw_auth()
                .map(|(u, p)| Auth::UserPass(u.to_owned(), p.to_owned())),
            (None, false) => i.basic_auth().cloned().map(Auth::Basic),
        };
        Ok(Some(Proxy {
            kind,
            host,
            port,
            auth,
        }))
    }
}

fn basic(user: &str, pass: &str) -> HeaderValue {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let mut v = HeaderValue::from_str(&format!("Basic {token}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// Opens a CONNECT tunnel to `host:port` over `io` (a connection to the proxy).
pub async fn connect_tunnel<I>(
    io: I,
    host: &str,
    port: u16,
    proxy: &Proxy,
    headers: &HeaderMap,
) -> Result<TokioIo<hyper::upgrade::Upgraded>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| Error::new(Code::Proxy, format!("proxy handshake failed: {e}")))?;
    let driver = tokio::spawn(conn.with_upgrades());
    let mut req = http::Request::new(Empty::<Bytes>::new());
    *req.method_mut() = Method::CONNECT;
    *req.uri_mut() = authority.parse().map_err(|e| {
        Error::new(
            Code::InvalidUrl,
            format!("bad CONNECT target {authority:?}: {e}"),
        )
    })?;
    let h = req.headers_mut();
    h.insert(
        http::header::HOST,
        HeaderValue::from_str(&authority).map_err(|_| Error::new(Code::InvalidUrl, "bad host"))?,
    );
    for (k, v) in headers {
        h.append(k.clone(), v.clone());
    }
    if let Some(Auth::Basic(v)) = &proxy.auth {
        h.insert(http::header::PROXY_AUTHORIZATION, v.clone());
    }
    let resp = sender.send_request(req).await.map_err(|e| {
        driver.abort();
        Error::new(
            Code::Proxy,
            format!("proxy closed the CONNECT request: {e}"),
        )
    })?;
    let status = resp.status();
    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        driver.abort();
        let why = if proxy.auth.is_some() {
            "refused our credentials"
        } else {
            "requires credentials"
        };
        return Err(Error::new(
            Code::ProxyAuth,
            format!("the proxy {why} (407 on CONNECT to {authority})"),
        ));
    }
    if !status.is_success() {
        driver.abort();
        return Err(Error::new(
            Code::Proxy,
            format!("the proxy refused CONNECT to {authority}: {status}"),
        ));
    }
    let upgraded = hyper::upgrade::on(resp)
        .await
        .map_err(|e| Error::new(Code::Proxy, format!("CONNECT tunnel failed: {e}")))?;
    log::debug!(
        "proxy tunnel established proxy={}:{} target={authority}",
        proxy.host,
        proxy.port
    );
    Ok(TokioIo::new(upgraded))
}

/// Hands an already connected stream to hyper-util's SOCKS client.
#[derive(Clone)]
struct Connected(Arc<Mutex<Option<TcpStream>>>);

impl Service<http::Uri> for Connected {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = std::future::Ready<std::io::Result<TokioIo<TcpStream>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        std::future::ready(
            s.map(TokioIo::new)
                .ok_or_else(|| std::io::Error::other("stream already used")),
        )
    }
}

/// Runs the SOCKS5 handshake on `tcp` (connected to the proxy) for `host:port`:
/// `host` is an IP literal for socks5 (resolved by tern) or the name for socks5h.
pub async fn socks5(tcp: TcpStream, host: &str, port: u16, proxy: &Proxy) -> Result<TcpStream> {
    let proxy_uri: http::Uri = format!("http://{}:{}", bracket(&proxy.host), proxy.port)
        .parse()
        .map_err(|e| Error::new(Code::InvalidUrl, format!("bad proxy address: {e}")))?;
    let mut svc =
        SocksV5::new(proxy_uri, Connected(Arc::new(Mutex::new(Some(tcp))))).local_dns(false);
    if let Some(Auth::UserPass(u, p)) = &proxy.auth {
        svc = svc.with_auth(u.clone(), p.clone());
    }
    let dst: http::Uri = format!("http://{}:{port}", bracket(host))
        .parse()
        .map_err(|e| Error::new(Code::InvalidUrl, format!("bad SOCKS target: {e}")))?;
    match svc.call(dst).await {
        Ok(io) => {
            log::debug!(
                "SOCKS5 tunnel established proxy={}:{} target={host}:{port}",
                proxy.host,
                proxy.port
            );
            Ok(io.into_inner())
        }
        Err(e) => {
            let text = e.to_string();
            let auth = text.contains("credentials not accepted")
                || text.contains("user/pass")
                || text.contains("authentication incorrectly");
            let code = if auth { Code::ProxyAuth } else { Code::Proxy };
            Err(Error::new(code, format!("SOCKS5 proxy: {text} ({e:?})")))
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}
