//! Dialling one connection: resolve, TCP connect (Happy Eyeballs), the proxy (HTTP
//! forward, CONNECT tunnel, SOCKS5), TLS (`connect_stream`, also used by WebSockets),
//! and the HTTP/1.1 or HTTP/2 handshake (`dial`). Records the phase timings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::task::TaskTracker;

use crate::code::{Code, Error, Result};
use crate::engine::body::ReqBody;
use crate::engine::config::VersionPref;
use crate::engine::pool::Permits;
use crate::log;
use crate::net::dns::Resolver;
use crate::net::proxy::{self, Kind, Proxy};
use crate::net::tls;

/// Where to connect and how: the pool key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub version: VersionPref,
    pub proxy: Option<Proxy>,
}

impl Target {
    /// Plain http through an HTTP(S) proxy: requests go in absolute form to the proxy.
    pub fn forward(&self) -> bool {
        !self.https
            && self
                .proxy
                .as_ref()
                .is_some_and(|p| matches!(p.kind, Kind::Http | Kind::Https))
    }
}

/// The phases of dialling one connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct DialTimings {
    pub dns: Duration,
    pub connect: Duration,
    pub tls: Duration,
}

/// A request sender on a fresh or pooled connection.
pub enum Sender {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

/// A newly dialled connection.
pub struct Dialed {
    pub sender: Sender,
    pub remote: SocketAddr,
    pub timings: DialTimings,
}

/// What dialling needs from the session.
pub struct DialContext<'a> {
    pub tls: &'a tls::TlsConfigs,
    pub resolver: &'a Resolver,
    pub tracker: &'a TaskTracker,
    pub max_header_size: usize,
    pub connect_headers: &'a http::HeaderMap,
    /// Held by the connection's task for as long as the connection lives.
    pub permits: Permits,
}

/// Maps an I/O error to a connect-class code, keeping the OS error in the message.
pub fn io_error(e: &std::io::Error, what: &str) -> Error {
    use std::io::ErrorKind as K;
    let code = match e.kind() {
        K::ConnectionRefused => Code::ConnectionRefused,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Code::ConnectionReset,
        _ => Code::Connect,
    };
    Error::new(code, format!("{what}: {e}"))
}

/// The delay before the next address is tried in parallel (RFC 8305).
const HAPPY_EYEBALLS_DELAY: Duration = Duration::from_millis(250);

/// Orders addresses by alternating families, starting with the resolver's first.
fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first().copied() else {
        return addrs;
    };
    let (mut a, mut b): (Vec<_>, Vec<_>) = addrs
        .into_iter()
        .partition(|x| x.is_ipv4() == first.is_ipv4());
    let mut out = Vec::with_capacity(a.len() + b.len());
    a.reverse();
    b.reverse();
    loop {
        match (a.pop(), b.pop()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

/// Connects to the first address that answers; a new attempt starts every 250 ms
/// while earlier ones are still pending (Happy Eyeballs).
async fn connect_tcp(addrs: Vec<SocketAddr>) -> Result<(TcpStream, SocketAddr)> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let mut queue = interleave(addrs).into_iter();
    let mut pending = FuturesUnordered::new();
    let mut last_err = None;
    let attempt = |a: SocketAddr| async move {
        log::debug!("connecting to {a}");
        (a, TcpStream::connect(a).await)
    };
    match queue.next() {
        Some(a) => pending.push(attempt(a)),
        None => return Err(Error::new(Code::Connect, "no address to connect to")),
    }
    loop {
        let delay = tokio::time::sleep(HAPPY_EYEBALLS_DELAY);
        tokio::select! {
            r = pending.next() => match r {
                Some((a, Ok(s))) => {
                    log::debug!("connected to {a}");
                    return Ok((s, a));
                }
                Some((a, Err(e))) => {
                    log::debug!("connect to {a} failed: {e}");
                    last_err = Some(io_error(&e, &format!("connect to {a} failed")));
                    if let Some(n) = queue.next() { pending.push(attempt(n)); }
                    if pending.is_empty() {
                        return Err(last_err.unwrap_or_else(|| Error::new(Code::Connect, "connect failed")));
                    }
                }
                None => return Err(last_err.unwrap_or_else(|| Error::new(Code::Connect, "connect failed"))),
            },
            _ = delay, if queue.len() > 0 => {
                if let Some(n) = queue.next() { pending.push(attempt(n)); }
            }
        }
    }
}

fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|e| {
        Error::new(
            Code::InvalidUrl,
            format!("invalid TLS server name {host:?}: {e}"),
        )
    })
}

fn as_proxy_error(mut e: Error, p: &Proxy) -> Error {
    e.message = format!(
        "cannot reach the proxy {}:{}: {}",
        p.host, p.port, e.message
    );
    e.code = Code::ProxyConnect;
    e
}

/// A byte stream to the origin, before any HTTP: TCP, TLS over TCP, a CONNECT tunnel,
/// or TLS through a tunnel. One `match` per poll instead of one hyper connection type
/// per stream type.
pub enum Io {
    /// Direct, SOCKS5, or to an http:// proxy that forwards.
    Tcp(TcpStream),
    /// An https origin direct or through SOCKS5, or an https:// proxy that forwards.
    Tls(Box<TlsStream<TcpStream>>),
    /// A CONNECT tunnel to a plain origin (WebSocket ws:// only).
    Tunnel(TokioIo<hyper::upgrade::Upgraded>),
    /// An https origin through a CONNECT tunnel.
    TlsTunnel(Box<TlsStream<TokioIo<hyper::upgrade::Upgraded>>>),
}

macro_rules! each_io {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Io::Tcp($s) => $e,
            Io::Tls($s) => $e,
            Io::Tunnel($s) => $e,
            Io::TlsTunnel($s) => $e,
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        each_io!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        each_io!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        each_io!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Tcp(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
            Io::Tunnel(s) => s.is_write_vectored(),
            Io::TlsTunnel(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        each_io!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        each_io!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// A stream to the origin with what connecting it learned.
pub struct Stream {
    pub io: Io,
    pub remote: SocketAddr,
    pub timings: DialTimings,
    /// TLS ALPN chose h2.
    pub h2: bool,
}

/// How a plain (http, ws) target is reached through an HTTP(S) proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlainViaProxy {
    /// Requests go in absolute form to the proxy.
    Forward,
    /// A CONNECT tunnel (WebSocket: proxies do not relay an upgrade in forward mode).
    Tunnel,
}

/// What connecting needs from the session (no pool, no tracker, no permits).
pub struct ConnectContext<'a> {
    pub tls: &'a tls::TlsConfigs,
    pub resolver: &'a Resolver,
    pub connect_headers: &'a http::HeaderMap,
}

impl DialContext<'_> {
    fn connect(&self) -> ConnectContext<'_> {
        ConnectContext {
            tls: self.tls,
            resolver: self.resolver,
            connect_headers: self.connect_headers,
        }
    }
}

/// Streams that TLS to the origin can run over.
trait IntoIo: AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static {
    fn plain(self) -> Io;
    fn tls(s: TlsStream<Self>) -> Io;
}

impl IntoIo for TcpStream {
    fn plain(self) -> Io {
        Io::Tcp(self)
    }
    fn tls(s: TlsStream<Self>) -> Io {
        Io::Tls(Box::new(s))
    }
}

impl IntoIo for TokioIo<hyper::upgrade::Upgraded> {
    fn plain(self) -> Io {
        Io::Tunnel(self)
    }
    fn tls(s: TlsStream<Self>) -> Io {
        Io::TlsTunnel(Box::new(s))
    }
}

/// Connects to `target`: DNS, Happy Eyeballs TCP (TCP_NODELAY), the proxy (CONNECT,
/// SOCKS5, TLS to an https:// proxy) and TLS to an https origin with the configuration
/// of `target.version` (its ALPN, client certificate and verifier).
pub async fn connect_stream(
    ctx: &ConnectContext<'_>,
    target: &Target,
    plain: PlainViaProxy,
) -> Result<Stream> {
    let mut t = DialTimings::default();
    let (hop_host, hop_port) = match &target.proxy {
        Some(p) => (p.host.as_str(), p.port),
        None => (target.host.as_str(), target.port),
    };
    let start = Instant::now();
    let addrs = ctx.resolver.resolve(hop_host, hop_port).await;
    t.dns = start.elapsed();
    let start = Instant::now();
    let tcp = match addrs {
        Ok(a) => connect_tcp(a).await,
        Err(e) => Err(e),
    };
    let (tcp, remote) = match (&target.proxy, tcp) {
        (_, Ok(x)) => x,
        (Some(p), Err(e)) => return Err(as_proxy_error(e, p)),
        (None, Err(e)) => return Err(e),
    };
    t.connect = start.elapsed();
    let _ = tcp.set_nodelay(true);
    let tunnel = target.https || plain == PlainViaProxy::Tunnel;

    let (io, h2) = match target.proxy.clone() {
        None => origin_tls(ctx, target, tcp, &mut t).await?,
        Some(p) => match p.kind {
            Kind::Http if tunnel => {
                let io =
                    proxy::connect_tunnel(tcp, &target.host, target.port, &p, ctx.connect_headers)
                        .await?;
                origin_tls(ctx, target, io, &mut t).await?
            }
            Kind::Http => (Io::Tcp(tcp), false),
            Kind::Https => {
                let start = Instant::now();
                let s = TlsConnector::from(ctx.tls.proxy.clone())
                    .connect(server_name(&p.host)?, tcp)
                    .await
                    .map_err(|e| {
                        let mut err = tls::classify(&e);
                        err.message = format!("TLS to the proxy {}: {}", p.host, err.message);
                        err
                    })?;
                t.tls = start.elapsed();
                log_tls("the proxy", &p.host, s.get_ref().1);
                if tunnel {
                    let io = proxy::connect_tunnel(
                        s,
                        &target.host,
                        target.port,
                        &p,
                        ctx.connect_headers,
                    )
                    .await?;
                    origin_tls(ctx, target, io, &mut t).await?
                } else {
                    (Io::Tls(Box::new(s)), false)
                }
            }
            Kind::Socks5 | Kind::Socks5h => {
                let host = if p.kind == Kind::Socks5 {
                    // Resolved by tern (its nameservers and overrides), handed over as an IP.
                    let addrs = ctx.resolver.resolve(&target.host, target.port).await?;
                    addrs[0].ip().to_string()
                } else {
                    target
                        .host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned()
                };
                let io = proxy::socks5(tcp, &host, target.port, &p).await?;
                origin_tls(ctx, target, io, &mut t).await?
            }
        },
    };
    Ok(Stream {
        io,
        remote,
        timings: t,
        h2,
    })
}

/// Dials `target`: the stream (DNS, TCP, proxy, TLS), then the HTTP handshake.
pub async fn dial(ctx: DialContext<'_>, target: &Target) -> Result<Dialed> {
    let st = connect_stream(&ctx.connect(), target, PlainViaProxy::Forward).await?;
    let prior = target.version == VersionPref::Http2PriorKnowledge;
    if target.https && prior && !st.h2 {
        return Err(Error::new(
            Code::Protocol,
            "HTTP/2 was required but the server did not agree to it in ALPN",
        ));
    }
    // h2c prior knowledge applies to a plain origin reached directly, through SOCKS or
    // a tunnel; a forwarding proxy speaks HTTP/1.1 (its target says so).
    let h2 = st.h2 || (!target.https && prior);
    let sender = handshake(&ctx, st.io, h2).await?;
    Ok(Dialed {
        sender,
        remote: st.remote,
        timings: st.timings,
    })
}

/// TLS to the origin when it is https; the plain stream otherwise.
async fn origin_tls<I: IntoIo>(
    ctx: &ConnectContext<'_>,
    target: &Target,
    io: I,
    t: &mut DialTimings,
) -> Result<(Io, bool)> {
    if !target.https {
        return Ok((io.plain(), false));
    }
    let start = Instant::now();
    let cfg = ctx.tls.for_version(target.version);
    let s = TlsConnector::from(Arc::clone(&cfg))
        .connect(server_name(&target.host)?, io)
        .await
        .map_err(|e| tls::classify(&e))?;
    t.tls += start.elapsed();
    log_tls("the server", &target.host, s.get_ref().1);
    let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
    Ok((I::tls(s), h2))
}

fn log_tls(peer: &str, host: &str, c: &rustls::ClientConnection) {
    log::debug!(
        "TLS handshake with {peer} done host={host} version={} alpn={}",
        c.protocol_version()
            .map_or("unknown".into(), |v| format!("{v:?}")),
        c.alpn_protocol()
            .map_or("none".into(), String::from_utf8_lossy)
    );
}

async fn handshake(ctx: &DialContext<'_>, io: Io, h2: bool) -> Result<Sender> {
    let io = TokioIo::new(io);
    let permits = ctx.permits.clone();
    if h2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .max_header_list_size(ctx.max_header_size.min(u32::MAX as usize) as u32)
            .handshake(io)
            .await
            .map_err(|e| Error::new(Code::Protocol, format!("HTTP/2 handshake failed: {e}")))?;
        ctx.tracker.spawn(async move {
            let _ = conn.await;
            drop(permits);
        });
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(ctx.max_header_size.max(8192))
            .handshake(io)
            .await
            .map_err(|e| Error::new(Code::Protocol, format!("HTTP/1.1 handshake failed: {e}")))?;
        ctx.tracker.spawn(async move {
            let _ = conn.await;
            drop(permits);
        });
        Ok(Sender::H1(sender))
    }
}
