//! Request bodies and reading response bodies in full: limits, read time-out,
//! and decoding of gzip, deflate and br.

use std::time::Duration;

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, BodyStream};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio_util::io::StreamReader;

use crate::code::{Code, Error, Result};

/// The body type every connection sends.
pub type ReqBody = http_body_util::Full<Bytes>;

/// A content coding tern decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Brotli,
}

/// The value tern sends as Accept-Encoding when the caller did not set one.
pub const ACCEPT_ENCODING: &str = "gzip, deflate, br";

impl Coding {
    pub fn from_header(v: &[u8]) -> Option<Coding> {
        let v = std::str::from_utf8(v).ok()?.trim();
        if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") {
            Some(Coding::Gzip)
        } else if v.eq_ignore_ascii_case("deflate") {
            Some(Coding::Deflate)
        } else if v.eq_ignore_ascii_case("br") {
            Some(Coding::Brotli)
        } else {
            None
        }
    }
}

/// Limits that apply while a body is read.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// 0 = unlimited.
    pub max_body: u64,
    pub read_timeout: Option<Duration>,
}

/// Maps a hyper error to a code, with the underlying cause in the message.
pub fn hyper_error(e: &hyper::Error, what: &str) -> Error {
    if e.is_parse() && e.to_string().contains("too large") {
        return Error::new(
            Code::HeadersTooLarge,
            format!("{what}: response headers too large ({e})"),
        );
    }
    if e.is_incomplete_message() {
        return Error::new(
            Code::IncompleteBody,
            format!("{what}: connection closed before the message was complete"),
        );
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return Error::new(
                    Code::IncompleteBody,
                    format!("{what}: connection closed before the message was complete ({io})"),
                );
            }
            let mut err = crate::net::connect::io_error(io, what);
            if err.code == Code::Connect {
                err.code = Code::Protocol;
            }
            return err;
        }
        src = s.source();
    }
    let detail = match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    };
    Error::new(Code::Protocol, format!("{what}: {detail}"))
}

async fn with_read_timeout<T>(
    t: Option<Duration>,
    fut: impl std::future::Future<Output = T>,
) -> Result<T> {
    match t {
        Some(d) => tokio::time::timeout(d, fut).await.map_err(|_| {
            Error::new(
                Code::TimeoutRead,
                format!("no data received for {} ms (read time-out)", d.as_millis()),
            )
        }),
        None => Ok(fut.await),
    }
}

fn too_large(limit: u64) -> Error {
    Error::new(
        Code::BodyTooLarge,
        format!("response body exceeds the maximum of {limit} bytes"),
    )
}

/// Reads the whole body. The returned vector holds one extra NUL byte after the body
/// (not counted in the returned length), so C callers may treat text as a C string.
pub async fn collect(
    mut body: Incoming,
    coding: Option<Coding>,
    size_hint: Option<u64>,
    limits: ReadLimits,
) -> Result<(Vec<u8>, usize)> {
    let over = |n: u64| limits.max_body != 0 && n > limits.max_body;
    if let Some(n) = size_hint {
        if coding.is_none() && over(n) {
            return Err(too_large(limits.max_body));
        }
    }
    let mut out: Vec<u8> = Vec::new();
    match coding {
        None => {
            if let Some(n) = size_hint {
                out.reserve_exact((n as usize).saturating_add(1).min(64 << 20));
            }
            while let Some(frame) = with_read_timeout(limits.read_timeout, body.frame()).await? {
                let frame = frame.map_err(|e| hyper_error(&e, "reading the response body"))?;
                if let Ok(data) = frame.into_data() {
                    if over(out.len() as u64 + data.len() as u64) {
                        return Err(too_large(limits.max_body));
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
        Some(c) => {
            let stream = BodyStream::new(body)
                .try_filter_map(|f| std::future::ready(Ok(f.into_data().ok())))
                .map_err(|e| {
                    std::io::Error::other(HyperIo(hyper_error(&e, "reading the response body")))
                });
            let reader = BufReader::new(StreamReader::new(stream));
            let mut dec: Box<dyn AsyncRead + Send + Unpin> = match c {
                Coding::Gzip => Box::new(GzipDecoder::new(reader)),
                Coding::Deflate => Box::new(ZlibDecoder::new(reader)),
                Coding::Brotli => Box::new(BrotliDecoder::new(reader)),
            };
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = with_read_timeout(limits.read_timeout, dec.read(&mut buf))
                    .await?
                    .map_err(
                        |e| match e.get_ref().and_then(|i| i.downcast_ref::<HyperIo>()) {
                            Some(HyperIo(inner)) => inner.clone(),
                            None => Error::new(
                                Code::Decoding,
                                format!("cannot decode the {c:?} body: {e}"),
                            ),
                        },
                    )?;
                if n == 0 {
                    break;
                }
                if over(out.len() as u64 + n as u64) {
                    return Err(too_large(limits.max_body));
                }
                out.extend_from_slice(&buf[..n]);
            }
        }
    }
    let len = out.len();
    out.push(0);
    Ok((out, len))
}

/// Carries a hyper error through the decoder's io::Error.
#[derive(Debug)]
struct HyperIo(Error);

impl std::fmt::Display for HyperIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for HyperIo {}

/// Reads and discards up to `max` bytes of a body; true when it ended within that.
pub async fn drain(mut body: Incoming, max: usize, read_timeout: Option<Duration>) -> bool {
    let mut seen = 0usize;
    loop {
        match with_read_timeout(read_timeout, body.frame()).await {
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    seen += d.len();
                    if seen > max {
                        return false;
                    }
                }
            }
            Ok(None) => return true,
            _ => return false,
        }
    }
}
