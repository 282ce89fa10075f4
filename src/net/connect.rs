//! Dialling one connection: resolve, TCP connect (addresses in order), TLS, and the
//! HTTP/1.1 or HTTP/2 handshake. Records the phase timings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;
use tokio_util::task::TaskTracker;

use crate::code::{Code, Error, Result};
use crate::engine::body::ReqBody;
use crate::engine::config::VersionPref;
use crate::net::{dns, tls};

/// Where to connect and how.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub version: VersionPref,
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
    pub tracker: &'a TaskTracker,
    pub max_header_size: usize,
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

/// Dials `target`: DNS, TCP, TLS (for https) and the HTTP handshake.
pub async fn dial(ctx: DialContext<'_>, target: &Target) -> Result<Dialed> {
    let mut t = DialTimings::default();
    let start = Instant::now();
    let addrs = dns::resolve(&target.host, target.port).await?;
    t.dns = start.elapsed();

    let start = Instant::now();
    let mut last_err = None;
    let mut stream = None;
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some((s, *addr));
                break;
            }
            Err(e) => last_err = Some(io_error(&e, &format!("connect to {addr} failed"))),
        }
    }
    let Some((tcp, remote)) = stream else {
        return Err(
            last_err.unwrap_or_else(|| Error::new(Code::Connect, "no address to connect to"))
        );
    };
    t.connect = start.elapsed();
    let _ = tcp.set_nodelay(true);

    let (io, h2) = if target.https {
        let start = Instant::now();
        let cfg = ctx.tls.for_version(target.version);
        let name = ServerName::try_from(
            target
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )
        .map_err(|e| {
            Error::new(
                Code::InvalidUrl,
                format!("invalid TLS server name {:?}: {e}", target.host),
            )
        })?;
        let s = TlsConnector::from(Arc::clone(&cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| tls::classify(&e))?;
        t.tls = start.elapsed();
        let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
        if target.version == VersionPref::Http2PriorKnowledge && !h2 {
            return Err(Error::new(
                Code::Protocol,
                "HTTP/2 was required but the server did not agree to it in ALPN",
            ));
        }
        (Either::Right(s), h2)
    } else {
        (
            Either::Left(tcp),
            target.version == VersionPref::Http2PriorKnowledge,
        )
    };

    let io = TokioIo::new(io);
    let sender = if h2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .max_header_list_size(ctx.max_header_size.min(u32::MAX as usize) as u32)
            .handshake(io)
            .await
            .map_err(|e| Error::new(Code::Protocol, format!("HTTP/2 handshake failed: {e}")))?;
        ctx.tracker.spawn(async move {
            let _ = conn.await;
        });
        Sender::H2(sender)
    } else {
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(ctx.max_header_size.max(8192))
            .max_headers(1000)
            .handshake(io)
            .await
            .map_err(|e| Error::new(Code::Protocol, format!("HTTP/1.1 handshake failed: {e}")))?;
        ctx.tracker.spawn(async move {
            let _ = conn.await;
        });
        Sender::H1(sender)
    };
    Ok(Dialed {
        sender,
        remote,
        timings: t,
    })
}
