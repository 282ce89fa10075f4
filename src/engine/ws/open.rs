//! The opening handshake: tern's connector (DNS, proxy by CONNECT or SOCKS5, TLS with
//! ALPN http/1.1 only), then an HTTP/1.1 upgrade request through hyper's client, the
//! checks of RFC 6455 section 4.1, and frames on the upgraded stream.

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::AbortOnDropHandle;

use crate::code::{Code, Error, Result};
use crate::engine::body;
use crate::engine::config::VersionPref;
use crate::engine::flow;
use crate::engine::redact;
use crate::engine::response::Response;
use crate::engine::session::SessionInner;
use crate::engine::ws::{http_url, WsSpec};
use crate::log;
use crate::net::connect::{self, ConnectContext, PlainViaProxy};

/// The frames' stream: hyper's upgraded connection.
pub type WsStream = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// An open socket: its stream, the 101 head, and the chosen subprotocol.
pub struct Opened {
    pub stream: WsStream,
    pub head: Response,
    pub subprotocol: Option<String>,
}

/// A failed open: why, and the response head when one arrived.
pub type OpenError = (Error, Option<Response>);

/// How much of a refused upgrade's body is kept.
const REFUSAL_BODY_MAX: usize = 64 * 1024;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Headers tern sets for the upgrade; the caller's and the session's are dropped.
const MANAGED: [HeaderName; 10] = [
    header::HOST,
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::EXPECT,
];

/// Whether the caller may not set header `name` on a WebSocket (tern manages it).
pub fn is_managed(name: &HeaderName) -> bool {
    MANAGED.contains(name)
}

fn accept_key(key: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
}

fn new_key() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut k = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut k)
        .map_err(|_| Error::new(Code::Internal, "no random bytes for Sec-WebSocket-Key"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(k))
}

fn has_token(h: &HeaderMap, name: HeaderName, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

fn handshake_error(msg: impl Into<String>, head: Response) -> OpenError {
    (Error::new(Code::WsHandshake, msg), Some(head))
}

/// The part of the open after the connect, bounded by one handshake deadline.
async fn until<T>(
    deadline: Option<(tokio::time::Instant, Duration)>,
    what: &str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match deadline {
        Some((at, d)) => tokio::time::timeout_at(at, fut).await.unwrap_or_else(|_| {
            Err(Error::new(
                Code::TimeoutRead,
                format!(
                    "the WebSocket handshake took longer than {} ms ({what})",
                    d.as_millis()
                ),
            ))
        }),
        None => fut.await,
    }
}

/// Reads up to `cap` bytes of a refusal's body, until the deadline: the start of a
/// longer body is kept, and what came before a time-out or an error too.
async fn body_start(
    body: hyper::body::Incoming,
    cap: usize,
    deadline: Option<(tokio::time::Instant, Duration)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let read = async {
        let mut body = std::pin::pin!(body);
        while out.len() < cap {
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        let n = d.len().min(cap - out.len());
                        out.extend_from_slice(&d[..n]);
                    }
                }
                _ => break,
            }
        }
    };
    match deadline {
        Some((at, _)) => {
            let _ = tokio::time::timeout_at(at, read).await;
        }
        None => read.await,
    }
    out
}

/// The upgrade request's headers: the session's defaults and the caller's (managed
/// names removed), then tern's.
fn request_headers(
    s: &SessionInner,
    spec: &WsSpec,
    key: &str,
    http: &url::Url,
) -> Result<HeaderMap> {
    let mut h = flow::merged_headers(&s.cfg.default_headers, &spec.headers);
    for n in MANAGED.iter().chain([&header::ACCEPT_ENCODING]) {
        h.remove(n);
    }
    let url = &spec.url;
    h.insert(header::HOST, flow::host_header(url)?);
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    h.insert(
        header::SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(key).map_err(|_| Error::new(Code::Internal, "bad key"))?,
    );
    if !spec.subprotocols.is_empty() {
        let v = HeaderValue::from_str(&spec.subprotocols.join(", "))
            .map_err(|_| Error::new(Code::InvalidArgument, "bad subprotocol"))?;
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    if let Some(o) = &spec.origin {
        h.insert(header::ORIGIN, o.clone());
    }
    flow::url_basic_auth(url, &mut h);
    if !h.contains_key(header::COOKIE) {
        if let Some(v) = s.cookies.as_ref().and_then(|j| j.header(http)) {
            h.insert(header::COOKIE, v);
        }
    }
    Ok(h)
}

/// Opens the socket: connect, upgrade, check the answer.
pub async fn open(
    s: &SessionInner,
    spec: &WsSpec,
    id: u64,
) -> std::result::Result<Opened, OpenError> {
    let start = Instant::now();
    let http = http_url(&spec.url);
    let url = &spec.url;
    let mut head = Response {
        id,
        body: vec![0],
        effective_url: redact::url(url),
        ..Default::default()
    };
    let wss = url.scheme() == "wss";
    if wss {
        head.warning.clone_from(&s.tls.danger_note);
    }
    log::debug!("WebSocket opening id={id} url={}", head.effective_url);
    // The http(s) twin of the URL; ALPN http/1.1 only: the upgrade does not exist in
    // HTTP/2 here.
    let target = flow::target_of(s, &http, VersionPref::Http1, spec.proxy.as_ref())
        .map_err(|e| (e, None))?;
    let ctx = ConnectContext {
        tls: &s.tls,
        resolver: &s.resolver,
        connect_headers: &s.proxies.connect_headers,
    };
    let connect_timeout = spec.connect_timeout.unwrap_or(s.cfg.timeouts.connect);
    let st = flow::with_timeout(
        connect_timeout,
        Code::TimeoutConnect,
        "connecting",
        Box::pin(connect::connect_stream(
            &ctx,
            &target,
            PlainViaProxy::Tunnel,
        )),
    )
    .await
    .map_err(|e| (e, None))?;
    head.remote = Some(st.remote);
    head.timings.dns = st.timings.dns;
    head.timings.connect = st.timings.connect;
    head.timings.tls = st.timings.tls;

    // One deadline from here to the upgraded stream: hyper's handshake, the request,
    // the answer, a refusal's body and the upgrade.
    let deadline = spec
        .handshake_timeout
        .map(|d| (tokio::time::Instant::now() + d, d));
    let key = new_key().map_err(|e| (e, None))?;
    let headers = request_headers(s, spec, &key, &http).map_err(|e| (e, None))?;
    let (mut sender, conn) = until(deadline, "starting HTTP/1.1", async {
        hyper::client::conn::http1::Builder::new()
            .title_case_headers(true)
            .max_buf_size(s.cfg.max_header_size.max(8192))
            .handshake::<_, Empty<Bytes>>(TokioIo::new(st.io))
            .await
            .map_err(|e| body::hyper_error(&e, "WebSocket handshake"))
    })
    .await
    .map_err(|e| (e, None))?;
    // hyper's connection until the upgrade hands the stream over; aborted when the open
    // fails (dropped here), a no-op once it has finished.
    let _driver = AbortOnDropHandle::new(tokio::spawn(conn.with_upgrades()));
    let pq = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut req = http::Request::new(Empty::<Bytes>::new());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = pq.parse().map_err(|e| {
        (
            Error::new(Code::InvalidUrl, format!("URL cannot be sent: {e}")),
            None,
        )
    })?;
    *req.headers_mut() = headers;
    let sent = Instant::now();
    let resp = until(deadline, "waiting for the upgrade response", async {
        sender
            .send_request(req)
            .await
            .map_err(|e| body::hyper_error(&e, "WebSocket handshake"))
    })
    .await
    .map_err(|e| (e, None))?;
    head.timings.ttfb = sent.elapsed();
    if let Some(jar) = &s.cookies {
        jar.store_response(&http, resp.headers());
    }
    let status = resp.status();
    head.status = status.as_u16();
    head.version = Some(resp.version());
    head.headers = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        // Keep (the start of) the refusal's body: it often says why.
        let b = body_start(resp.into_body(), REFUSAL_BODY_MAX, deadline).await;
        head.body_len = b.len();
        head.body = b;
        head.body.push(0);
        head.timings.total = start.elapsed();
        let msg = format!(
            "the server answered {} {} instead of 101 Switching Protocols",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        return Err(handshake_error(msg, head));
    }
    let h = resp.headers();
    if !has_token(h, header::UPGRADE, "websocket") {
        return Err(handshake_error(
            "the 101 response has no `Upgrade: websocket`",
            head,
        ));
    }
    if !has_token(h, header::CONNECTION, "upgrade") {
        return Err(handshake_error(
            "the 101 response has no `Connection: upgrade`",
            head,
        ));
    }
    let want = accept_key(&key);
    if h.get(header::SEC_WEBSOCKET_ACCEPT).map(|v| v.as_bytes()) != Some(want.as_bytes()) {
        return Err(handshake_error(
            "the 101 response's Sec-WebSocket-Accept does not match the key sent",
            head,
        ));
    }
    if let Some(ext) = h
        .get(header::SEC_WEBSOCKET_EXTENSIONS)
        .filter(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace))
    {
        let ext = String::from_utf8_lossy(ext.as_bytes()).into_owned();
        return Err(handshake_error(
            format!("the server chose the extension {ext:?}, which tern did not offer"),
            head,
        ));
    }
    let subprotocol = match h.get(header::SEC_WEBSOCKET_PROTOCOL) {
        None => None,
        Some(v) => {
            let p = String::from_utf8_lossy(v.as_bytes()).trim().to_owned();
            if !spec.subprotocols.contains(&p) {
                return Err(handshake_error(
                    format!("the server chose the subprotocol {p:?}, which was not offered"),
                    head,
                ));
            }
            Some(p)
        }
    };
    let upgraded = until(deadline, "the upgrade", async {
        hyper::upgrade::on(resp)
            .await
            .map_err(|e| Error::new(Code::WsHandshake, format!("the upgrade failed: {e}")))
    })
    .await
    .map_err(|e| (e, None))?;
    let cfg = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(spec.max_message)
        .max_frame_size(spec.max_frame);
    let stream =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, Some(cfg)).await;
    head.timings.total = start.elapsed();
    log::debug!(
        "WebSocket open id={id} subprotocol={}",
        subprotocol.as_deref().unwrap_or("none")
    );
    Ok(Opened {
        stream,
        head,
        subprotocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_rfc_6455() {
        // The example of RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(new_key().unwrap().len(), 24);
    }

    #[test]
    fn config_does_not_panic() {
        // tungstenite panics when the write buffer's maximum is not above its size.
        let cfg = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(16 * 1024)
            .max_write_buffer_size(usize::MAX);
        assert!(cfg.max_write_buffer_size > cfg.write_buffer_size);
    }
}
