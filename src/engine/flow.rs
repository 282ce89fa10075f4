//! One request from start to end: connection (pooled or new), send, redirects,
//! body reading with decoding, and the one retry of an idempotent request whose
//! reused connection turned out dead.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::Incoming;
use url::Url;

use crate::code::{Code, Error, Result};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::Arc;

use futures_util::StreamExt;

use crate::engine::body::{self, ChunkStream, Coding, ReadLimits, ReqBody};
use crate::engine::config::{ReadFn, RequestSpec, Timeouts, UploadSource, VersionPref};
use crate::engine::deliver::{Action, Counters, ReadOutcome};
use crate::engine::pool::DialTurn;
use crate::engine::redact;
use crate::engine::response::Response;
use crate::engine::session::Hooks;
use crate::engine::session::SessionInner;
use crate::net::connect::{self, DialContext, Sender, Target};
use crate::net::proxy::{Auth, Kind};

/// What the request learned so far; survives a time-out that drops the future.
pub struct Progress {
    pub start: Instant,
    pub resp: Response,
}

/// A connection to give back to the pool once the body is read.
struct Lease {
    target: Target,
    h1: Option<hyper::client::conn::http1::SendRequest<ReqBody>>,
    remote: SocketAddr,
}

/// The session's default headers with the request's own: a name the request sets
/// replaces every default value of it.
pub(crate) fn merged_headers(defaults: &HeaderMap, own: &HeaderMap) -> HeaderMap {
    let mut h = defaults.clone();
    for name in own.keys() {
        h.remove(name);
    }
    for (name, value) in own {
        h.append(name.clone(), value.clone());
    }
    h
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

pub(crate) fn target_of(
    s: &SessionInner,
    url: &Url,
    version: VersionPref,
    proxy: Option<&Option<String>>,
) -> Result<Target> {
    let proxy = s.proxies.choose(url, proxy)?;
    let forward = url.scheme() == "http"
        && proxy
            .as_ref()
            .is_some_and(|p| matches!(p.kind, Kind::Http | Kind::Https));
    Ok(Target {
        https: url.scheme() == "https",
        host: url.host_str().unwrap_or_default().to_owned(),
        port: url.port_or_known_default().unwrap_or(80),
        // A forwarding proxy speaks HTTP/1.1 with us.
        version: if forward { VersionPref::Http1 } else { version },
        proxy,
    })
}

/// Runs `fut` within `d` (none: no limit); past it, fails with `code` and "<what> took
/// longer than N ms".
pub(crate) async fn with_timeout<T>(
    d: Option<Duration>,
    code: Code,
    what: &str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match d {
        Some(d) => tokio::time::timeout(d, fut).await.unwrap_or_else(|_| {
            Err(Error::new(
                code,
                format!("{what} took longer than {} ms", d.as_millis()),
            ))
        }),
        None => fut.await,
    }
}

/// The request body: in memory (sent again on a retry or a 307/308 redirect), or a
/// stream that can be sent once.
enum BodyPlan {
    Bytes(Option<Bytes>),
    Stream(Option<ChunkStream>),
    /// A streamed body that hyper gave back unsent (the connection was closed).
    Again(Option<ReqBody>),
}

impl BodyPlan {
    fn is_stream(&self) -> bool {
        !matches!(self, BodyPlan::Bytes(_))
    }

    /// Whether another attempt has a body to send.
    fn can_send(&self) -> bool {
        match self {
            BodyPlan::Bytes(_) => true,
            BodyPlan::Stream(s) => s.is_some(),
            BodyPlan::Again(b) => b.is_some(),
        }
    }

    /// The body's length when known (a streamed body's declared total).
    fn len(&self) -> Option<u64> {
        match self {
            BodyPlan::Bytes(b) => Some(b.as_ref().map_or(0, |b| b.len() as u64)),
            BodyPlan::Stream(_) | BodyPlan::Again(_) => None,
        }
    }

    fn restore(&mut self, b: ReqBody) {
        if self.is_stream() {
            *self = BodyPlan::Again(Some(b));
        }
    }

    /// The body for one attempt; `gate` holds it back until the server's 100
    /// Continue (or a second) when the caller sent `Expect: 100-continue`.
    fn take(&mut self, counters: &Arc<Counters>, gate: Option<Gate>) -> Result<ReqBody> {
        match self {
            BodyPlan::Bytes(b) => {
                let len = b.as_ref().map_or(0, |b| b.len() as u64);
                counters.to_send.store(len, AtomicOrdering::Relaxed);
                match (gate, b.clone()) {
                    (Some(g), Some(b)) if !b.is_empty() => Ok(body::streamed(
                        g.hold(Box::pin(futures_util::stream::once(async { Ok(b) }))),
                        counters.clone(),
                    )),
                    (_, b) => {
                        counters.sent.store(len, AtomicOrdering::Relaxed);
                        Ok(body::full(b))
                    }
                }
            }
            BodyPlan::Again(b) => b.take().ok_or_else(|| {
                Error::new(
                    Code::RedirectBodyNotReplayable,
                    "a streamed request body cannot be sent a second time",
                )
            }),
            BodyPlan::Stream(st) => match st.take() {
                Some(st) => {
                    let st = match gate {
                        Some(g) => g.hold(st),
                        None => st,
                    };
                    Ok(body::streamed(st, counters.clone()))
                }
                None => Err(Error::new(
                    Code::RedirectBodyNotReplayable,
                    "a streamed request body cannot be sent a second time",
                )),
            },
        }
    }
}

/// Holds a request body back until the server answers `Expect: 100-continue` with a
/// 100 (or with its final response, which drops the body), or a second has passed,
/// as libcurl does.
#[derive(Clone)]
struct Gate(Arc<tokio::sync::watch::Sender<GateState>>);

#[derive(Clone, Copy, PartialEq, Eq)]
enum GateState {
    Waiting,
    Continue,
    Final,
}

impl Gate {
    fn new() -> Gate {
        Gate(Arc::new(tokio::sync::watch::channel(GateState::Waiting).0))
    }

    fn set(&self, st: GateState) {
        self.0.send_if_modified(|cur| {
            let change = *cur == GateState::Waiting;
            if change {
                *cur = st;
            }
            change
        });
    }

    fn hold(&self, inner: ChunkStream) -> ChunkStream {
        let mut rx = self.0.subscribe();
        let wait = async move {
            let waited = tokio::time::timeout(
                Duration::from_secs(1),
                rx.wait_for(|st| *st != GateState::Waiting),
            )
            .await;
            match waited {
                Ok(Ok(st)) if *st == GateState::Final => Err(std::io::Error::other(
                    "the server answered before the body was sent",
                )),
                _ => Ok(()),
            }
        };
        Box::pin(
            futures_util::stream::once(wait)
                .filter_map(|r| async move { r.err().map(Err) })
                .chain(inner),
        )
    }
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Runs the request, filling `p.resp`; an `Err` is stored by the caller.
pub async fn execute(
    s: &SessionInner,
    spec: RequestSpec,
    p: &mut Progress,
    hooks: &Hooks,
) -> Result<()> {
    let cfg = &s.cfg;
    let tm = spec.timeouts.apply(cfg.timeouts);
    let version = spec.version.unwrap_or(cfg.version);
    let follow = spec.follow_redirects.unwrap_or(cfg.follow_redirects);
    let max_redirects = spec.max_redirects.unwrap_or(cfg.max_redirects);
    let mut method = spec.method;
    let mut url = spec.url;
    let mut declared_len = spec.upload.as_ref().and_then(|u| u.len);
    let mut req_body = match (&spec.upload, hooks.upload.as_ref()) {
        (Some(u), up) => {
            let st = match (&u.source, up) {
                (_, Some(push)) => push.stream(),
                (UploadSource::Reader(read), _) => reader_stream(read.clone(), hooks),
                (UploadSource::Stream(st), _) => {
                    match st.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        Some(st) => st,
                        None => {
                            return Err(Error::new(
                                Code::RedirectBodyNotReplayable,
                                "this request's streamed body was already sent",
                            ))
                        }
                    }
                }
                (UploadSource::Push, None) => {
                    return Err(Error::new(Code::Internal, "pushed body without a buffer"))
                }
            };
            hooks
                .counters
                .to_send
                .store(u.len.unwrap_or(0), AtomicOrdering::Relaxed);
            let st = match u.len {
                Some(n) => body::checked_len(st, n),
                None => st,
            };
            BodyPlan::Stream(Some(st))
        }
        (None, _) => BodyPlan::Bytes(spec.body),
    };
    let mut headers = merged_headers(&cfg.default_headers, &spec.headers);
    let decode = cfg.decompress && !headers.contains_key(header::ACCEPT_ENCODING);
    if decode {
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static(body::ACCEPT_ENCODING),
        );
    }
    url_basic_auth(&url, &mut headers);
    // A Cookie header of the caller's wins over the jar (until a redirect to another
    // origin drops it).
    let mut own_cookie = headers.contains_key(header::COOKIE);

    loop {
        p.resp.effective_url = redact::url(&url);
        if let Some(jar) = s.cookies.as_ref().filter(|_| !own_cookie) {
            match jar.header(&url) {
                Some(v) => headers.insert(header::COOKIE, v),
                None => headers.remove(header::COOKIE),
            };
        }
        let target = target_of(s, &url, version, spec.proxy.as_ref())?;
        if target.https {
            p.resp.warning.clone_from(&s.tls.danger_note);
        }
        let (resp, lease) = send_once(
            s,
            &target,
            &method,
            &url,
            &headers,
            &mut req_body,
            tm,
            p,
            hooks,
            declared_len,
        )
        .await?;
        if let Some(jar) = &s.cookies {
            jar.store_response(&url, resp.headers());
        }
        let status = resp.status();
        p.resp.status = status.as_u16();
        p.resp.version = Some(resp.version());
        let location = resp.headers().get(header::LOCATION).cloned();

        // A streamed body cannot be sent again: a 307/308 is the answer.
        let replay_needed = matches!(status.as_u16(), 307 | 308) && req_body.is_stream();
        if follow && is_redirect(status) && location.is_some() && !replay_needed {
            let loc = location.unwrap_or_else(|| HeaderValue::from_static(""));
            let loc = std::str::from_utf8(loc.as_bytes()).map_err(|_| {
                Error::new(
                    Code::Protocol,
                    "redirect Location header is not valid UTF-8",
                )
            })?;
            let next = url.join(loc).map_err(|e| {
                Error::new(
                    Code::InvalidUrl,
                    format!("bad redirect Location {:?}: {e}", redact::url_str(loc)),
                )
            })?;
            let next = crate::engine::config::parse_url(next.as_str())?;
            if p.resp.redirects >= max_redirects {
                return Err(Error::new(
                    Code::TooManyRedirects,
                    format!(
                        "more than {max_redirects} redirects (last to {})",
                        redact::url(&next)
                    ),
                ));
            }
            if url.scheme() == "https" && next.scheme() == "http" && !cfg.allow_https_downgrade {
                return Err(Error::new(
                    Code::InsecureRedirect,
                    format!("refused redirect from https to {}", redact::url(&next)),
                ));
            }
            let code = status.as_u16();
            if code == 303 && method != Method::HEAD
                || (code == 301 || code == 302) && method == Method::POST
            {
                method = Method::GET;
                req_body = BodyPlan::Bytes(None);
                declared_len = None;
                for h in [
                    header::CONTENT_LENGTH,
                    header::CONTENT_TYPE,
                    header::CONTENT_ENCODING,
                    header::TRANSFER_ENCODING,
                ] {
                    headers.remove(h);
                }
            }
            if !same_origin(&url, &next) {
                headers.remove(header::AUTHORIZATION);
                headers.remove(header::COOKIE);
                headers.remove(header::PROXY_AUTHORIZATION);
                own_cookie = false;
            }
            // Reuse the connection when the redirect's body is short.
            let Lease { target, h1, remote } = lease;
            let body = resp.into_body();
            if Box::pin(body::drain(body, 64 * 1024, tm.read)).await {
                if let Some(h1) = h1 {
                    give_back(s, &target, h1, remote).await;
                }
            }
            p.resp.redirects += 1;
            url = next;
            continue;
        }

        let (parts, incoming) = resp.into_parts();
        let mut resp_headers = parts.headers;
        let coding = if decode {
            resp_headers
                .get(header::CONTENT_ENCODING)
                .and_then(|v| Coding::from_header(v.as_bytes()))
        } else {
            None
        };
        let size_hint = http_body::Body::size_hint(&incoming).exact();
        if coding.is_some() {
            resp_headers.remove(header::CONTENT_ENCODING);
            resp_headers.remove(header::CONTENT_LENGTH);
        }
        p.resp.headers = resp_headers
            .into_iter()
            .scan(None, |last, (n, v)| {
                if let Some(n) = n {
                    *last = Some(n);
                }
                Some(last.clone().map(|n| (n, v)))
            })
            .flatten()
            .collect();
        let limits = ReadLimits {
            max_body: cfg.max_body_size,
            read_timeout: tm.read,
        };
        if hooks.cb.wants_headers() {
            let head = p.resp.head();
            let cb = hooks.cb.clone();
            let generation = hooks.resume.generation();
            let action = hooks
                .call(move || cb.on_headers(&head))
                .await
                .unwrap_or(Action::Cancel);
            match action {
                Action::Continue => {}
                Action::Cancel => return Err(Error::new(Code::Canceled, "canceled by on_headers")),
                Action::Pause => hooks.resume.wait_after(generation).await,
            }
        }
        if hooks.cb.wants_data() {
            if method != Method::HEAD {
                let counters = hooks.counters.clone();
                // Boxed, as the other rarely taken large states below: the request
                // task stays small (it is moved on spawn and on completion).
                Box::pin(body::read_chunks(
                    incoming,
                    coding,
                    size_hint,
                    limits,
                    &counters,
                    |chunk: Bytes| deliver_chunk(hooks, chunk),
                ))
                .await?;
            }
        } else {
            let (bytes, len) = read_body(
                incoming,
                coding,
                size_hint,
                limits,
                method == Method::HEAD,
                &hooks.counters,
            )
            .await?;
            p.resp.body = bytes;
            p.resp.body_len = len;
        }
        if let Some(h1) = lease.h1 {
            give_back(s, &lease.target, h1, lease.remote).await;
        }
        if status == http::StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            if let Some(proxy) = target.proxy.as_ref().filter(|_| target.forward()) {
                // The proxy answered for the origin: the same outcome as a 407 on
                // CONNECT, with the proxy's response (status, headers, body) kept.
                let why = if proxy.auth.is_some() {
                    "refused our credentials"
                } else {
                    "requires credentials"
                };
                return Err(Error::new(
                    Code::ProxyAuth,
                    format!("the proxy {}:{} {why} (407)", proxy.host, proxy.port),
                ));
            }
        }
        return Ok(());
    }
}

async fn read_body(
    incoming: Incoming,
    coding: Option<Coding>,
    size_hint: Option<u64>,
    limits: ReadLimits,
    head: bool,
    counters: &Counters,
) -> Result<(Vec<u8>, usize)> {
    if head {
        return Ok((vec![0], 0));
    }
    body::collect(incoming, coding, size_hint, limits, counters).await
}

/// Returns an HTTP/1.1 connection to the pool once it can take the next request: right
/// after the body's last byte, hyper's connection task may not have marked it idle yet
/// (it would be dropped as not ready). A connection that does not become ready within
/// a moment, or fails, is closed.
async fn give_back(
    s: &SessionInner,
    target: &Target,
    mut h1: hyper::client::conn::http1::SendRequest<ReqBody>,
    remote: SocketAddr,
) {
    if !h1.is_ready() {
        match tokio::time::timeout(Duration::from_millis(100), h1.ready()).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
    s.pool.put_h1(target, h1, remote);
}

/// Hands one chunk to `on_data`; waits while the caller has paused the request.
async fn deliver_chunk(hooks: &Hooks, chunk: Bytes) -> Result<()> {
    let generation = hooks.resume.generation();
    let cb = hooks.cb.clone();
    let action = hooks
        .call(move || cb.on_data(&chunk))
        .await
        .unwrap_or(Action::Cancel);
    match action {
        Action::Continue => Ok(()),
        Action::Cancel => Err(Error::new(Code::Canceled, "canceled by on_data")),
        Action::Pause => {
            // Reading stops here, so the socket is no longer read and the peer's
            // sends block on the TCP window.
            hooks.resume.wait_after(generation).await;
            Ok(())
        }
    }
}

/// The body produced by the caller's read callback, 64 KiB at most per call.
fn reader_stream(read: Arc<ReadFn>, hooks: &Hooks) -> ChunkStream {
    let delivery = hooks.delivery.clone();
    let resume = hooks.resume.clone();
    Box::pin(futures_util::stream::unfold(false, move |done| {
        let (read, delivery, resume) = (read.clone(), delivery.clone(), resume.clone());
        async move {
            if done {
                return None;
            }
            loop {
                let generation = resume.generation();
                let r = read.clone();
                let out = delivery
                    .call_blocking(move || r(64 * 1024))
                    .await
                    .unwrap_or(ReadOutcome::Abort);
                match out {
                    ReadOutcome::Data(b) if b.is_empty() => continue,
                    ReadOutcome::Data(b) => return Some((Ok(b), false)),
                    ReadOutcome::End => return None,
                    ReadOutcome::Pause => resume.wait_after(generation).await,
                    ReadOutcome::Abort => {
                        return Some((Err(std::io::Error::other(body::UploadAborted)), true))
                    }
                }
            }
        }
    }))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Basic credentials from the URL's user info, unless the headers already have an
/// Authorization (sensitive: never logged).
pub(crate) fn url_basic_auth(url: &Url, headers: &mut HeaderMap) {
    if url.username().is_empty() || headers.contains_key(header::AUTHORIZATION) {
        return;
    }
    let user = percent_decode(url.username());
    let pass = percent_decode(url.password().unwrap_or(""));
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    if let Ok(mut v) = HeaderValue::from_str(&format!("Basic {token}")) {
        v.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, v);
    }
}

/// The Host header of `url`: its host, and its port when the URL names one.
pub(crate) fn host_header(url: &Url) -> Result<HeaderValue> {
    let host = url.host_str().unwrap_or_default();
    let host = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    HeaderValue::from_str(&host)
        .map_err(|_| Error::new(Code::InvalidUrl, "host cannot be sent in a Host header"))
}

fn build_request(
    h2: bool,
    target: &Target,
    method: &Method,
    url: &Url,
    headers: &HeaderMap,
    body: ReqBody,
) -> Result<http::Request<ReqBody>> {
    let forward = target.forward();
    let uri: http::Uri = if h2 || forward {
        let mut u = url.clone();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_fragment(None);
        u.as_str().parse()
    } else {
        let pq = match url.query() {
            Some(q) => format!("{}?{}", url.path(), q),
            None => url.path().to_owned(),
        };
        pq.parse()
    }
    .map_err(|e| Error::new(Code::InvalidUrl, format!("URL cannot be sent: {e}")))?;
    let mut req = http::Request::new(body);
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers.clone();
    if h2 {
        *req.version_mut() = http::Version::HTTP_2;
        req.headers_mut().remove(header::HOST);
    } else if forward {
        if let Some(Auth::Basic(v)) = target.proxy.as_ref().and_then(|p| p.auth.as_ref()) {
            req.headers_mut()
                .insert(header::PROXY_AUTHORIZATION, v.clone());
        }
    }
    if !h2 && !headers.contains_key(header::HOST) {
        req.headers_mut().insert(header::HOST, host_header(url)?);
    }
    Ok(req)
}

/// The read time-out while a request is sent and its answer awaited: it fires after
/// `d` without progress, and bytes of the request body going out count as progress,
/// so a long upload is not cut off.
async fn idle_timeout<T>(
    d: Option<Duration>,
    counters: &Counters,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let Some(d) = d else { return fut.await };
    tokio::pin!(fut);
    let mut last = counters.sent.load(AtomicOrdering::Relaxed);
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = tokio::time::sleep(d) => {
                let now = counters.sent.load(AtomicOrdering::Relaxed);
                if now == last {
                    return Err(Error::new(
                        Code::TimeoutRead,
                        format!("waiting for the response took longer than {} ms", d.as_millis()),
                    ));
                }
                last = now;
            }
        }
    }
}

/// Sends Content-Length for a streamed body of known length (hyper would otherwise
/// send it chunked), unless the caller set one.
fn set_content_length(req: &mut http::Request<ReqBody>, len: Option<u64>) {
    use http_body::Body as _;
    if let Some(n) = len {
        if req.body().size_hint().exact().is_none()
            && !req.headers().contains_key(header::CONTENT_LENGTH)
        {
            req.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
}

/// What a request goes on with: a pooled connection, or the slots (and, for a
/// possibly-HTTP/2 target, the turn) to dial a new one.
enum Checkout<'a> {
    Pooled(Sender, SocketAddr),
    Dial(crate::engine::pool::Permits, Option<DialTurn<'a>>),
}

/// A pooled connection, or the right to dial one. With connection limits, waits for
/// whichever comes first: a connection going idle or a free slot. A target that may
/// speak HTTP/2 is dialed once: the others wait for that dial and share its connection
/// (or, when ALPN chose HTTP/1.1, dial their own).
async fn checkout_or_slot<'a>(s: &'a SessionInner, target: &Target) -> Checkout<'a> {
    let _waiting = s.pool.limited().then(|| s.pool.waiting(target));
    loop {
        let signal = s.pool.limited().then(|| s.pool.idle_signal(target));
        let idle = signal.as_ref().map(|n| n.notified());
        if let Some((c, remote)) = s.pool.checkout(target) {
            return Checkout::Pooled(c, remote);
        }
        // Asked on every turn: after a wait, ALPN may have shown HTTP/1.1.
        let turn = if s.pool.may_be_h2(target) {
            match s.pool.h2_dial_turn(target) {
                Ok(turn) => Some(turn),
                Err(mut dialing) => {
                    let _ = dialing.wait_for(|done| *done).await;
                    continue;
                }
            }
        } else {
            None
        };
        match idle {
            None => return Checkout::Dial(s.pool.acquire(target).await, turn),
            Some(idle) => tokio::select! {
                p = s.pool.acquire(target) => return Checkout::Dial(p, turn),
                _ = idle => continue,
            },
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn send_once(
    s: &SessionInner,
    target: &Target,
    method: &Method,
    url: &Url,
    headers: &HeaderMap,
    body: &mut BodyPlan,
    tm: Timeouts,
    p: &mut Progress,
    hooks: &Hooks,
    declared_len: Option<u64>,
) -> Result<(http::Response<Incoming>, Lease)> {
    let mut pooled = Some(checkout_or_slot(s, target).await);
    loop {
        let reused = matches!(pooled, Some(Checkout::Pooled(..)));
        let (sender, remote) = match pooled.take() {
            Some(Checkout::Pooled(c, remote)) => (c, remote),
            slot => {
                let (permits, _turn) = match slot {
                    Some(Checkout::Dial(p, turn)) => (p, turn),
                    // A retry after a dead pooled connection needs a slot of its own.
                    _ => (s.pool.acquire(target).await, None),
                };
                let ctx = DialContext {
                    tls: &s.tls,
                    resolver: &s.resolver,
                    tracker: &s.tracker,
                    max_header_size: s.cfg.max_header_size,
                    connect_headers: &s.proxies.connect_headers,
                    permits,
                };
                let d = with_timeout(
                    tm.connect,
                    Code::TimeoutConnect,
                    "connecting",
                    // Boxed: the dial's state (DNS, TCP, proxy, TLS) is large and only
                    // needed by requests that open a connection.
                    Box::pin(connect::dial(ctx, target)),
                )
                .await?;
                p.resp.timings.dns = d.timings.dns;
                p.resp.timings.connect = d.timings.connect;
                p.resp.timings.tls = d.timings.tls;
                if let Sender::H2(h2) = &d.sender {
                    s.pool.put_h2(target, h2, d.remote);
                }
                if target.https && target.version == VersionPref::Auto {
                    s.pool.note_alpn(target, matches!(d.sender, Sender::H2(_)));
                }
                (d.sender, d.remote)
            }
        };
        p.resp.remote = Some(remote);
        let idempotent = matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        let result = match sender {
            Sender::H1(mut h1) => {
                if h1.ready().await.is_err() {
                    Err(None)
                } else {
                    let gate = expects_continue(headers).then(Gate::new);
                    let len = body.len().or(declared_len);
                    let b = body.take(&hooks.counters, gate.clone())?;
                    let mut req = build_request(false, target, method, url, headers, b)?;
                    set_content_length(&mut req, len);
                    if let Some(g) = &gate {
                        let g = g.clone();
                        hyper::ext::on_informational(&mut req, move |r| {
                            if r.status() == StatusCode::CONTINUE {
                                g.set(GateState::Continue);
                            }
                        });
                    }
                    let r = idle_timeout(tm.read, &hooks.counters, async {
                        Ok(h1.try_send_request(req).await)
                    })
                    .await?;
                    if let Some(g) = &gate {
                        g.set(GateState::Final);
                    }
                    match r {
                        Ok(resp) => Ok((
                            resp,
                            Lease {
                                target: target.clone(),
                                h1: Some(h1),
                                remote,
                            },
                        )),
                        Err(mut e) => {
                            if let Some(req) = e.take_message() {
                                body.restore(req.into_body());
                            }
                            Err(Some(e))
                        }
                    }
                }
            }
            Sender::H2(mut h2) => {
                if let Err(e) = h2.ready().await {
                    return Err(body::hyper_error(&e, "HTTP/2 connection"));
                }
                let len = body.len().or(declared_len);
                let b = body.take(&hooks.counters, None)?;
                let mut req = build_request(true, target, method, url, headers, b)?;
                set_content_length(&mut req, len);
                let r = idle_timeout(tm.read, &hooks.counters, async {
                    Ok(h2
                        .send_request(req)
                        .await
                        .map_err(|e| body::hyper_error(&e, "sending the request")))
                })
                .await?;
                match r {
                    Ok(resp) => Ok((
                        resp,
                        Lease {
                            target: target.clone(),
                            h1: None,
                            remote,
                        },
                    )),
                    Err(e) => return Err(e),
                }
            }
        };
        match result {
            Ok(ok) => {
                p.resp.timings.ttfb = p.start.elapsed();
                return Ok(ok);
            }
            Err(e) => {
                // Not sent at all (connection closed under us), or a reused connection
                // died before answering an idempotent request: retry once, fresh.
                let not_sent = e.as_ref().is_none_or(|e| e.message().is_some());
                let err = match &e {
                    Some(e) => body::hyper_error(e.error(), "sending the request"),
                    None => Error::new(Code::ConnectionReset, "pooled connection closed"),
                };
                if reused && (not_sent || idempotent) && body.can_send() {
                    continue;
                }
                return Err(err);
            }
        }
    }
}
