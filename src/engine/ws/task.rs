//! One task per socket: the open, then a loop that reads frames (cancel-safe
//! `next()`), runs the writer (one pinned future, never cancelled), and keeps the
//! timers (heartbeat, receive idle time-out, close time-out). Every callback of the
//! socket comes from here, so they never overlap and keep their order; `on_close` goes
//! through a guard that delivers it exactly once (SHUTDOWN when the task is dropped).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::code::{Code, Error};
use crate::engine::deliver::Delivery;
use crate::engine::response::Response;
use crate::engine::session::{post_serial, SessionInner};
use crate::engine::ws::open::{open, WsStream};
use crate::engine::ws::{
    CloseInfo, Ctl, MsgKind, Out, WebSocket, WsCallbacks, WsSpec, CONNECTING, OPEN,
};
use crate::log;

/// Queued messages not yet run by the caller's poll, per socket, above which reading
/// stops (invariant 6: a slow poller keeps memory flat).
const RECV_PENDING_MAX: u64 = 1024 * 1024;

/// How the socket's callbacks reach the caller: one at a time, never after `on_close`.
#[derive(Clone)]
struct Post {
    ws: WebSocket,
    cb: Arc<dyn WsCallbacks>,
    delivery: Delivery,
    done: Arc<Mutex<bool>>,
    /// Bytes of messages queued for the caller's poll and not yet run.
    pending: Arc<AtomicU64>,
    room: Arc<Notify>,
}

impl Post {
    fn open(&self, head: Response) {
        let (ws, cb) = (self.ws.clone(), self.cb.clone());
        post_serial(&self.delivery, &self.done, move || cb.on_open(&ws, &head));
    }

    fn message(&self, kind: MsgKind, data: Bytes) {
        let (ws, cb) = (self.ws.clone(), self.cb.clone());
        let n = data.len() as u64;
        if let Delivery::Queued(_) = self.delivery {
            self.pending.fetch_add(n, Ordering::AcqRel);
            let (pending, room) = (self.pending.clone(), self.room.clone());
            post_serial(&self.delivery, &self.done, move || {
                cb.on_message(&ws, kind, &data);
                drop(data);
                let left = pending.fetch_sub(n, Ordering::AcqRel) - n;
                if left <= RECV_PENDING_MAX / 2 {
                    room.notify_one();
                }
            });
        } else {
            post_serial(&self.delivery, &self.done, move || {
                cb.on_message(&ws, kind, &data)
            });
        }
    }

    fn writable(&self) {
        let (ws, cb) = (self.ws.clone(), self.cb.clone());
        post_serial(&self.delivery, &self.done, move || cb.on_writable(&ws));
    }

    /// Reading waits while too much waits for the caller's poll.
    fn paused(&self) -> bool {
        matches!(self.delivery, Delivery::Queued(_))
            && self.pending.load(Ordering::Acquire) > RECV_PENDING_MAX
    }
}

/// Delivers `on_close` exactly once: on `finish`, or with SHUTDOWN if the task is
/// dropped (runtime shutdown) first.
struct CloseGuard {
    ws: WebSocket,
    cb: Option<Arc<dyn WsCallbacks>>,
    delivery: Delivery,
    session: Arc<SessionInner>,
    done: Arc<Mutex<bool>>,
    opened: bool,
}

impl CloseGuard {
    fn finish(&mut self, mut info: CloseInfo) {
        self.ws.mark_closed();
        self.session.ws_finished(self.ws.id());
        info.opened = self.opened;
        log::debug!(
            "WebSocket closed id={} code={} close_code={} clean={}",
            self.ws.id(),
            info.code().name_cstr().to_string_lossy(),
            info.close_code,
            info.clean
        );
        // Under the lock: a callback posted from elsewhere either went before or sees
        // `done` and is dropped.
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        *done = true;
        if let Some(cb) = self.cb.take() {
            let ws = self.ws.clone();
            match &self.delivery {
                Delivery::Direct => {
                    drop(done);
                    cb.on_close(&ws, info);
                }
                Delivery::Queued(q) => {
                    let q2 = q.clone();
                    q.push(Box::new(move || {
                        q2.outstanding.fetch_sub(1, Ordering::AcqRel);
                        cb.on_close(&ws, info);
                    }));
                }
            }
        }
    }
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if self.cb.is_some() {
            self.finish(CloseInfo::failed(Error::new(
                Code::Shutdown,
                "the runtime shut down while the WebSocket was open",
            )));
        }
    }
}

/// Starts the socket's task. The session has registered `ws` already.
pub(crate) fn spawn(
    session: Arc<SessionInner>,
    ws: WebSocket,
    spec: WsSpec,
    cb: Arc<dyn WsCallbacks>,
    data_rx: mpsc::UnboundedReceiver<Out>,
    ctl_rx: mpsc::UnboundedReceiver<Ctl>,
) {
    let delivery = session.delivery.clone();
    let done = Arc::new(Mutex::new(false));
    let post = Post {
        ws: ws.clone(),
        cb: cb.clone(),
        delivery: delivery.clone(),
        done: done.clone(),
        pending: Arc::new(AtomicU64::new(0)),
        room: Arc::new(Notify::new()),
    };
    let guard = CloseGuard {
        ws,
        cb: Some(cb),
        delivery,
        session: session.clone(),
        done,
        opened: false,
    };
    let handle = session.rt.handle.clone();
    handle.spawn(Box::pin(socket_main(
        session, spec, post, guard, data_rx, ctl_rx,
    )));
}

async fn socket_main(
    s: Arc<SessionInner>,
    spec: WsSpec,
    post: Post,
    mut guard: CloseGuard,
    data_rx: mpsc::UnboundedReceiver<Out>,
    mut ctl_rx: mpsc::UnboundedReceiver<Ctl>,
) {
    #[cfg(debug_assertions)]
    let debug_panic = spec.headers.contains_key("x-tern-debug-panic");
    let work = async {
        #[cfg(debug_assertions)]
        if debug_panic {
            panic!("test panic inside a WebSocket task");
        }
        run(&s, spec, &post, &mut guard.opened, data_rx, &mut ctl_rx).await
    };
    let mut info = match AssertUnwindSafe(work).catch_unwind().await {
        Ok(info) => info,
        Err(panic) => {
            let what = crate::engine::panic_message(&*panic);
            CloseInfo::failed(Error::new(
                Code::Internal,
                format!("internal error (panic: {what})"),
            ))
        }
    };
    // An abort that raced the socket's own failure (its connection dropped by that
    // very abort) is the outcome; a failure of another kind (a close frame tern sent,
    // a refused upgrade, a time-out) stays.
    if !info.clean && info.error.as_ref().is_some_and(|e| dropped(e.code)) {
        while let Ok(c) = ctl_rx.try_recv() {
            if let Ctl::Abort(e) = c {
                if info.code() != e.code {
                    info.error = Some(e);
                    info.close_code = 1006;
                }
                break;
            }
        }
    }
    guard.finish(info);
}

/// Whether `code` says the connection itself went away (what an abort racing the
/// socket's end would cause).
fn dropped(code: Code) -> bool {
    matches!(
        code,
        Code::WsClosedAbnormally | Code::ConnectionReset | Code::Connect
    )
}

/// Maps a read error to (error, the close code to send and report, whether to send it).
fn read_error(e: WsError) -> (Error, u16, bool) {
    match e {
        WsError::Capacity(c) => (
            Error::new(
                Code::WsMessageTooLarge,
                format!("a message or frame exceeded the limit ({c}); closed with 1009"),
            ),
            1009,
            true,
        ),
        WsError::Utf8(m) => (
            Error::new(
                Code::WsInvalidUtf8,
                format!("the peer sent text that is not UTF-8 ({m}); closed with 1007"),
            ),
            1007,
            true,
        ),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => (
            Error::new(
                Code::WsClosedAbnormally,
                "the connection ended without a close frame",
            ),
            1006,
            false,
        ),
        WsError::Protocol(p) => (
            Error::new(
                Code::WsProtocol,
                format!("the peer broke the WebSocket protocol ({p}); closed with 1002"),
            ),
            1002,
            true,
        ),
        WsError::AttackAttempt => (
            Error::new(
                Code::WsProtocol,
                "the peer broke the WebSocket protocol (attack attempt); closed with 1002",
            ),
            1002,
            true,
        ),
        other => (write_error(other), 1006, false),
    }
}

/// Maps an I/O-side error (no close frame is sent: the connection is gone).
fn write_error(e: WsError) -> Error {
    match e {
        WsError::Io(io) => {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::new(
                    Code::WsClosedAbnormally,
                    format!("the connection ended without a close frame ({io})"),
                )
            } else if io
                .get_ref()
                .is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some())
            {
                crate::net::tls::classify(&io)
            } else {
                crate::net::connect::io_error(&io, "WebSocket connection")
            }
        }
        other => Error::new(
            Code::WsClosedAbnormally,
            format!("the WebSocket connection failed: {other}"),
        ),
    }
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

enum WriterEnd {
    /// A close frame ended the writer: `Some(code)` when it was written with that
    /// code, `None` when it went without a code or was not written (the peer closed
    /// first).
    CloseSent(Option<u16>),
    Idle,
    Failed(WsError),
}

type Sink = SplitSink<WsStream, Message>;

/// Writes pings and close frames first, then the caller's messages in order; flushes
/// when nothing more waits (or every 64 KiB) and gives the written bytes back to the
/// send queue's count. Ends after a close frame, giving back the count of the messages
/// still queued (they are never written).
async fn write_loop(
    sink: Sink,
    mut data: mpsc::UnboundedReceiver<Out>,
    prio: mpsc::UnboundedReceiver<Message>,
    post: Post,
) -> WriterEnd {
    let end = write_until_close(sink, &mut data, prio, &post).await;
    if let WriterEnd::CloseSent(_) = end {
        // Every send accepted before the state left OPEN was queued before the close
        // frame that made it leave (the gate), so nothing arrives after this.
        let mut left = 0;
        while let Ok(o) = data.try_recv() {
            if let Out::Msg(_, n) = o {
                left += n;
            }
        }
        post.ws.discarded(left);
    }
    end
}

async fn write_until_close(
    mut sink: Sink,
    data: &mut mpsc::UnboundedReceiver<Out>,
    mut prio: mpsc::UnboundedReceiver<Message>,
    post: &Post,
) -> WriterEnd {
    let mut unflushed = 0u64;
    loop {
        let (msg, len) = tokio::select! {
            biased;
            Some(m) = prio.recv() => (m, 0),
            Some(o) = data.recv() => match o {
                Out::Msg(m, n) => (m, n),
                Out::Close(f) => (Message::Close(f), 0),
            },
            else => return WriterEnd::Idle,
        };
        let close = match &msg {
            Message::Close(f) => Some(f.as_ref().map(|f| u16::from(f.code))),
            _ => None,
        };
        match sink.feed(msg).await {
            Ok(()) => {}
            Err(WsError::Protocol(ProtocolError::SendAfterClosing)) => {
                // The peer closed first: what is left is not sent.
                if post.ws.written(len) {
                    post.writable();
                }
                if close.is_some() {
                    if post.ws.written(unflushed) {
                        post.writable();
                    }
                    return WriterEnd::CloseSent(None);
                }
                continue;
            }
            Err(e) => return WriterEnd::Failed(e),
        }
        unflushed += len;
        if close.is_some() || unflushed >= 64 * 1024 || (prio.is_empty() && data.is_empty()) {
            if let Err(e) = sink.flush().await {
                if !matches!(e, WsError::ConnectionClosed) {
                    return WriterEnd::Failed(e);
                }
            }
            if post.ws.written(unflushed) {
                post.writable();
            }
            unflushed = 0;
        }
        if let Some(code) = close {
            return WriterEnd::CloseSent(code);
        }
    }
}

enum Ev {
    Ctl(Option<Ctl>),
    Writer(WriterEnd),
    Read(Option<Result<Message, WsError>>),
    Room,
    Timer,
}

/// Where the loop stands.
struct St {
    last_rx: Instant,
    ping_due: Option<Instant>,
    pong_deadline: Option<Instant>,
    /// The close time-out, from tern's close frame written or the peer's received.
    close_deadline: Option<Instant>,
    /// The bound on writing tern's close frame (the messages queued before it go
    /// first): the close time-out again, from the close call.
    drain_deadline: Option<Instant>,
    /// Since when reading has waited for the caller's poll (queued delivery): the
    /// deadlines wait too, and move on by the pause when it ends.
    paused_since: Option<Instant>,
    /// The peer's close frame, once it came (`Some(None)`: one without a code).
    peer_close: Option<Option<CloseFrame>>,
    /// Why tern is closing (SHUTDOWN for a session close, TIMEOUT_READ for the
    /// receive time-out): the outcome of the closing handshake, clean or not; `None`
    /// = OK.
    outcome: Option<Error>,
    writer_done: bool,
}

impl St {
    /// An unclean end: why tern was closing, when it was, or else `e`.
    fn fail(&mut self, e: Error) -> CloseInfo {
        CloseInfo::failed(self.outcome.take().unwrap_or(e))
    }

    /// Whether the close or pong deadline has passed (checked before every wait, so
    /// a peer that keeps streaming cannot starve them).
    fn expired(&self, now: Instant) -> bool {
        self.paused_since.is_none()
            && (self.close_deadline.is_some_and(|d| d <= now)
                || (!self.writer_done && self.drain_deadline.is_some_and(|d| d <= now))
                || self.pong_deadline.is_some_and(|d| d <= now))
    }

    /// Notes a pause of reading, or moves the deadlines on by the pause that ended.
    fn pause(&mut self, paused: bool, now: Instant) {
        match (paused, self.paused_since) {
            (true, None) => self.paused_since = Some(now),
            (false, Some(since)) => {
                let d = now - since;
                for t in [
                    &mut self.ping_due,
                    &mut self.pong_deadline,
                    &mut self.close_deadline,
                    &mut self.drain_deadline,
                ]
                .into_iter()
                .flatten()
                {
                    *t += d;
                }
                self.last_rx += d;
                self.paused_since = None;
            }
            _ => {}
        }
    }
}

async fn run(
    s: &Arc<SessionInner>,
    spec: WsSpec,
    post: &Post,
    opened: &mut bool,
    data_rx: mpsc::UnboundedReceiver<Out>,
    ctl: &mut mpsc::UnboundedReceiver<Ctl>,
) -> CloseInfo {
    let ws = &post.ws;
    // The open, abandoned by an abort, a close before it, or a session close.
    let o = {
        let opening = open(s, &spec, ws.id());
        tokio::pin!(opening);
        loop {
            tokio::select! {
                biased;
                c = ctl.recv() => match c {
                    Some(Ctl::Abort(e)) => return CloseInfo::failed(e),
                    Some(Ctl::GoingAway) | None => {
                        return CloseInfo::failed(Error::new(
                            Code::Shutdown,
                            "the session was closed before the WebSocket opened",
                        ))
                    }
                    Some(_) => continue,
                },
                r = &mut opening => break r,
            }
        }
    };
    let o = match o {
        Ok(o) => o,
        Err((e, head)) => {
            return CloseInfo {
                response: head,
                ..CloseInfo::failed(e)
            }
        }
    };
    let _ =
        ws.0.subprotocol
            .set(o.subprotocol.and_then(|p| std::ffi::CString::new(p).ok()));
    if ws
        .0
        .state
        .compare_exchange(CONNECTING, OPEN, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Closed (or aborted) while the upgrade was answered: the abort is queued.
        let e = match ctl.try_recv() {
            Ok(Ctl::Abort(e)) => e,
            _ => Error::new(Code::Canceled, "the WebSocket was closed before it opened"),
        };
        return CloseInfo {
            response: Some(o.head),
            ..CloseInfo::failed(e)
        };
    }
    let head_copy = o.head.head();
    *opened = true;
    post.open(o.head);

    let (sink, mut stream): (Sink, SplitStream<WsStream>) = o.stream.split();
    let (prio_tx, prio_rx) = mpsc::unbounded_channel::<Message>();
    let mut writer = Box::pin(write_loop(sink, data_rx, prio_rx, post.clone()));
    let now = Instant::now();
    let mut st = St {
        last_rx: now,
        ping_due: spec.heartbeat.map(|h| now + h),
        pong_deadline: None,
        close_deadline: None,
        drain_deadline: None,
        paused_since: None,
        peer_close: None,
        outcome: None,
        writer_done: false,
    };
    let close_timeout = spec.close_timeout;
    let mut info = loop {
        let paused = post.paused();
        st.pause(paused, Instant::now());
        let ev = if st.expired(Instant::now()) {
            Ev::Timer
        } else {
            let deadline = next_deadline(&st, &spec, paused);
            tokio::select! {
                biased;
                c = ctl.recv() => Ev::Ctl(c),
                w = &mut writer, if !st.writer_done => Ev::Writer(w),
                m = stream.next(), if !paused => Ev::Read(m),
                _ = post.room.notified(), if paused => Ev::Room,
                _ = sleep_until(deadline), if deadline.is_some() => Ev::Timer,
            }
        };
        let now = Instant::now();
        match ev {
            Ev::Room => {}
            Ev::Ctl(None) => {}
            Ev::Ctl(Some(Ctl::Ping(p))) => {
                let _ = prio_tx.send(Message::Ping(p));
            }
            Ev::Ctl(Some(Ctl::CloseStarted)) => {
                st.drain_deadline.get_or_insert(now + close_timeout);
            }
            Ev::Ctl(Some(Ctl::Abort(e))) => break CloseInfo::failed(e),
            Ev::Ctl(Some(Ctl::GoingAway)) => {
                if ws.start_close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "going away".into(),
                })) {
                    st.outcome = Some(Error::new(
                        Code::Shutdown,
                        "the session was closed (the WebSocket closed with 1001)",
                    ));
                    st.drain_deadline.get_or_insert(now + close_timeout);
                }
            }
            Ev::Writer(WriterEnd::Failed(e)) if st.peer_close.is_some() && connection_gone(&e) => {
                // As for reads: both close frames went, then the connection ended.
                break clean_end(&mut st);
            }
            Ev::Writer(WriterEnd::Failed(e)) => break st.fail(write_error(e)),
            Ev::Writer(WriterEnd::CloseSent(_)) => {
                st.writer_done = true;
                st.close_deadline.get_or_insert(now + close_timeout);
            }
            // Every sender is gone, which cannot happen while the socket lives.
            Ev::Writer(WriterEnd::Idle) => st.writer_done = true,
            Ev::Read(None) => break clean_end(&mut st),
            Ev::Read(Some(Ok(m))) => {
                // Any frame shows the peer is alive (as aiohttp's heartbeat counts it).
                st.last_rx = now;
                st.pong_deadline = None;
                match m {
                    Message::Text(t) => post.message(MsgKind::Text, Bytes::from(t)),
                    Message::Binary(b) => post.message(MsgKind::Binary, b),
                    // tungstenite queued the pong; it goes out with the next read.
                    Message::Ping(_) | Message::Pong(_) => {}
                    Message::Close(f) => {
                        ws.mark_closing();
                        st.peer_close = Some(f);
                        st.close_deadline.get_or_insert(now + close_timeout);
                    }
                    Message::Frame(_) => {}
                }
            }
            Ev::Read(Some(Err(e))) if st.peer_close.is_some() && connection_gone(&e) => {
                // Both close frames went; the connection then ended without TLS
                // close_notify or with a reset: the exchange itself completed.
                break clean_end(&mut st);
            }
            Ev::Read(Some(Err(e))) => {
                let (err, code, send) = read_error(e);
                // The code is reported as sent only when this close frame went out;
                // otherwise (the writer had ended, the peer had closed, it did not go
                // within a second) no frame of ours said it: 1006.
                let mut close_code = 1006;
                if send {
                    ws.mark_closing();
                    let reason = match code {
                        1009 => "message too big",
                        1007 => "invalid UTF-8",
                        _ => "protocol error",
                    };
                    if !st.writer_done && st.peer_close.is_none() {
                        let _ = prio_tx.send(close_frame(code, reason));
                        // The writer gets a moment to send the close frame.
                        let w = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
                        if let Ok(WriterEnd::CloseSent(Some(c))) = w {
                            if c == code {
                                close_code = code;
                            }
                        }
                    }
                }
                if let Some(why) = st.outcome.take() {
                    break CloseInfo::failed(why);
                }
                break CloseInfo {
                    error: Some(err),
                    close_code,
                    ..Default::default()
                };
            }
            Ev::Timer => {
                let closing = st.close_deadline.is_some_and(|d| d <= now)
                    || (!st.writer_done && st.drain_deadline.is_some_and(|d| d <= now));
                if closing {
                    if st.peer_close.is_some() {
                        // Both close frames went (tungstenite answers the peer's
                        // itself); the server kept TCP open.
                        break clean_end(&mut st);
                    }
                    break st.fail(Error::new(
                        Code::TimeoutClose,
                        format!(
                            "the closing handshake did not finish within {} ms",
                            close_timeout.as_millis()
                        ),
                    ));
                }
                if st.pong_deadline.is_some_and(|d| d <= now) {
                    break st.fail(Error::new(
                        Code::TimeoutHeartbeat,
                        "no pong arrived within half the heartbeat interval",
                    ));
                }
                if paused || st.close_deadline.is_some() || st.drain_deadline.is_some() {
                    continue;
                }
                if let (Some(due), Some(every)) = (st.ping_due, spec.heartbeat) {
                    if due <= now {
                        if st.last_rx + every <= now && st.pong_deadline.is_none() {
                            let _ = prio_tx.send(Message::Ping(Bytes::from_static(b"tern")));
                            st.pong_deadline = Some(now + every / 2);
                        }
                        st.ping_due = Some(now.max(st.last_rx) + every);
                    }
                }
                if let Some(rt) = spec.receive_timeout {
                    if st.last_rx + rt <= now {
                        ws.mark_closing();
                        st.outcome = Some(Error::new(
                            Code::TimeoutRead,
                            format!("nothing was received for {} ms", rt.as_millis()),
                        ));
                        let _ = prio_tx.send(close_frame(1001, "receive timeout"));
                        st.drain_deadline = Some(now + close_timeout);
                    }
                }
            }
        }
    };
    if info.response.is_none() {
        info.response = Some(head_copy);
    }
    info
}

/// Whether a read or write error says the connection ended (after the peer's close
/// frame, a clean end).
fn connection_gone(e: &WsError) -> bool {
    matches!(
        e,
        WsError::Io(_)
            | WsError::ConnectionClosed
            | WsError::AlreadyClosed
            | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
    )
}

/// The end of a completed closing handshake: the peer's code and reason.
fn clean_end(st: &mut St) -> CloseInfo {
    match st.peer_close.take() {
        Some(f) => {
            let (code, reason) = match f {
                Some(f) => (u16::from(f.code), f.reason.as_str().to_owned()),
                None => (1005, String::new()),
            };
            CloseInfo {
                error: st.outcome.take(),
                close_code: code,
                reason,
                clean: true,
                ..Default::default()
            }
        }
        None => st.fail(Error::new(
            Code::WsClosedAbnormally,
            "the connection ended without a close frame",
        )),
    }
}

fn next_deadline(st: &St, spec: &WsSpec, paused: bool) -> Option<Instant> {
    if paused {
        // Every deadline waits for the caller's poll (St::pause moves them on).
        return None;
    }
    let drain = st.drain_deadline.filter(|_| !st.writer_done);
    let mut d = [st.close_deadline, drain, st.pong_deadline]
        .into_iter()
        .flatten()
        .min();
    if st.close_deadline.is_none() && st.drain_deadline.is_none() {
        let more = [st.ping_due, spec.receive_timeout.map(|r| st.last_rx + r)];
        for x in more.into_iter().flatten() {
            d = Some(d.map_or(x, |d: Instant| d.min(x)));
        }
    }
    d
}

async fn sleep_until(d: Option<Instant>) {
    match d {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
