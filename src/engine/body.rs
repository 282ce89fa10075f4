//! Request bodies and reading response bodies in full: limits, read time-out,
//! and decoding of gzip, deflate and br.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, BodyStream};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio_util::io::StreamReader;

use crate::code::{Code, Error, Result};
use crate::engine::deliver::Counters;

/// The body type every connection sends: bytes in memory or a stream.
pub type ReqBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed request body.
pub type ChunkStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A body held in memory.
pub fn full(b: Option<Bytes>) -> ReqBody {
    http_body_util::Full::new(b.unwrap_or_default())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A streamed body; every chunk is counted in `sent`.
pub fn streamed(chunks: ChunkStream, sent: Arc<Counters>) -> ReqBody {
    let frames = chunks.map(move |r| {
        r.map(|b| {
            sent.sent.fetch_add(b.len() as u64, Ordering::Relaxed);
            hyper::body::Frame::data(b)
        })
        .map_err(|e| Box::new(e) as BoxError)
    });
    http_body_util::StreamBody::new(frames).boxed_unsync()
}

/// Holds a streamed body to its declared length: more bytes, or an end before it,
/// fail the request (INVALID_ARGUMENT) instead of going out cut or short.
pub fn checked_len(inner: ChunkStream, declared: u64) -> ChunkStream {
    let mut total = 0u64;
    let mut done = false;
    let mut inner = inner;
    Box::pin(futures_util::stream::poll_fn(move |cx| {
        if done {
            return std::task::Poll::Ready(None);
        }
        let item = futures_util::ready!(inner.as_mut().poll_next(cx));
        let mismatch = |got: String| {
            std::io::Error::other(BodyLength(format!(
                "the streamed body has {got} bytes but its declared length is {declared}"
            )))
        };
        std::task::Poll::Ready(match item {
            Some(Ok(b)) => {
                total += b.len() as u64;
                if total > declared {
                    done = true;
                    Some(Err(mismatch(format!("more than {declared}"))))
                } else {
                    Some(Ok(b))
                }
            }
            None if total < declared => {
                done = true;
                Some(Err(mismatch(total.to_string())))
            }
            other => other,
        })
    }))
}

/// A streamed body that did not match its declared length.
#[derive(Debug)]
pub struct BodyLength(String);

impl std::fmt::Display for BodyLength {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyLength {}

/// An upload the caller pushes with `write` and ends with `end`, buffered up to
/// `cap` bytes; a write that does not fit is refused (WOULD_BLOCK) and `on_ready`
/// runs once the buffer has drained to half.
pub struct PushUpload {
    state: Mutex<PushState>,
    cap: usize,
    on_ready: Box<dyn Fn() + Send + Sync>,
}

#[derive(Default)]
struct PushState {
    chunks: std::collections::VecDeque<Bytes>,
    buffered: usize,
    ended: bool,
    want_ready: bool,
    waker: Option<std::task::Waker>,
}

impl PushUpload {
    pub fn new(cap: usize, on_ready: Box<dyn Fn() + Send + Sync>) -> PushUpload {
        PushUpload {
            state: Mutex::new(PushState::default()),
            cap,
            on_ready,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PushState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes as much of `data` as fits; `Ok(0)` for empty data. WOULD_BLOCK when
    /// nothing fits now; INVALID_ARGUMENT after `end`.
    pub fn write(&self, data: &[u8]) -> Result<usize> {
        let mut g = self.lock();
        if g.ended {
            return Err(Error::new(
                Code::InvalidArgument,
                "the upload was already ended",
            ));
        }
        if data.is_empty() {
            return Ok(0);
        }
        let room = self.cap.saturating_sub(g.buffered);
        if room == 0 {
            g.want_ready = true;
            return Err(Error::new(
                Code::WouldBlock,
                "the upload buffer is full; write again after on_upload_ready",
            ));
        }
        let n = room.min(data.len());
        g.chunks.push_back(Bytes::copy_from_slice(&data[..n]));
        g.buffered += n;
        if n < data.len() {
            g.want_ready = true;
        }
        let w = g.waker.take();
        drop(g);
        if let Some(w) = w {
            w.wake();
        }
        Ok(n)
    }

    /// Marks the end of the body.
    pub fn end(&self) {
        let mut g = self.lock();
        g.ended = true;
        let w = g.waker.take();
        drop(g);
        if let Some(w) = w {
            w.wake();
        }
    }

    /// The body stream (call once).
    pub fn stream(self: &Arc<Self>) -> ChunkStream {
        let me = self.clone();
        Box::pin(futures_util::stream::poll_fn(move |cx| {
            let mut g = me.lock();
            if let Some(b) = g.chunks.pop_front() {
                g.buffered -= b.len();
                let ready = g.want_ready && g.buffered <= me.cap / 2;
                if ready {
                    g.want_ready = false;
                }
                drop(g);
                if ready {
                    (me.on_ready)();
                }
                return std::task::Poll::Ready(Some(Ok(b)));
            }
            if g.ended {
                return std::task::Poll::Ready(None);
            }
            g.waker = Some(cx.waker().clone());
            std::task::Poll::Pending
        }))
    }
}

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
            format!(
                "{what}: response headers too large: more than the session's maximum header size, or more than 100 header fields ({e})"
            ),
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
        let aborted = s.is::<UploadAborted>()
            || s.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|i| i.is::<UploadAborted>());
        if aborted {
            return Error::new(Code::Canceled, format!("{what}: {UploadAborted}"));
        }
        if let Some(len) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<BodyLength>())
        {
            return Error::new(Code::InvalidArgument, format!("{what}: {len}"));
        }
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
    body: Incoming,
    coding: Option<Coding>,
    size_hint: Option<u64>,
    limits: ReadLimits,
    counters: &Counters,
) -> Result<(Vec<u8>, usize)> {
    let mut out: Vec<u8> = Vec::new();
    if let (Some(n), None) = (size_hint, coding) {
        out.reserve_exact((n as usize).saturating_add(1).min(64 << 20));
    }
    read_chunks(body, coding, size_hint, limits, counters, |chunk: Bytes| {
        out.extend_from_slice(&chunk);
        std::future::ready(Ok(()))
    })
    .await?;
    let len = out.len();
    out.push(0);
    Ok((out, len))
}

/// Reads the body chunk by chunk (decoded when `coding` is set) into `sink`, within
/// the size limit and the read time-out; counts the bytes received on the wire.
/// Returns the number of (decoded) bytes.
pub async fn read_chunks<F>(
    body: Incoming,
    coding: Option<Coding>,
    size_hint: Option<u64>,
    limits: ReadLimits,
    counters: &Counters,
    mut sink: impl FnMut(Bytes) -> F + Send,
) -> Result<u64>
where
    F: std::future::Future<Output = Result<()>> + Send,
{
    let over = |n: u64| limits.max_body != 0 && n > limits.max_body;
    if let Some(n) = size_hint {
        counters.expected.store(n, Ordering::Relaxed);
        if coding.is_none() && over(n) {
            return Err(too_large(limits.max_body));
        }
    }
    let mut total: u64 = 0;
    match coding {
        None => {
            let mut body = body;
            while let Some(frame) = with_read_timeout(limits.read_timeout, body.frame()).await? {
                let frame = frame.map_err(|e| hyper_error(&e, "reading the response body"))?;
                if let Ok(data) = frame.into_data() {
                    counters
                        .received
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    total += data.len() as u64;
                    if over(total) {
                        return Err(too_large(limits.max_body));
                    }
                    sink(data).await?;
                }
            }
        }
        Some(c) => {
            let stream = BodyStream::new(body)
                .try_filter_map(|f| {
                    let d = f.into_data().ok();
                    if let Some(d) = &d {
                        counters
                            .received
                            .fetch_add(d.len() as u64, Ordering::Relaxed);
                    }
                    std::future::ready(Ok(d))
                })
                .map_err(|e| {
                    std::io::Error::other(HyperIo(hyper_error(&e, "reading the response body")))
                });
            let reader = BufReader::new(StreamReader::new(stream));
            let mut dec: Box<dyn AsyncRead + Send + Unpin> = match c {
                Coding::Gzip => Box::new(GzipDecoder::new(reader)),
                Coding::Deflate => Box::new(ZlibDecoder::new(reader)),
                Coding::Brotli => Box::new(BrotliDecoder::new(reader)),
            };
            let mut buf = vec![0u8; 64 * 1024];
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
                total += n as u64;
                if over(total) {
                    return Err(too_large(limits.max_body));
                }
                sink(Bytes::copy_from_slice(&buf[..n])).await?;
            }
        }
    }
    Ok(total)
}

/// The caller's read callback gave up on the upload (TERN_READ_STATUS_ABORT).
#[derive(Debug)]
pub struct UploadAborted;

impl std::fmt::Display for UploadAborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the read callback aborted the upload")
    }
}

impl std::error::Error for UploadAborted {}

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
