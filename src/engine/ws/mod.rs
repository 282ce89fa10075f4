//! WebSocket client sockets on a session (RFC 6455): the opening handshake through
//! tern's connector and hyper's HTTP/1.1 upgrade (open.rs), then one task per socket
//! that reads and writes frames with tokio-tungstenite (task.rs). This file holds the
//! types the FFI layer sees: the spec, the callbacks, the handle and its sends.

mod open;
mod task;

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;
use url::Url;

use crate::code::{Code, Error, Result};
use crate::engine::response::Response;
use crate::engine::runtime::RuntimeShared;

pub use open::is_managed;
pub(crate) use task::spawn;

/// The kind of a data message (the RFC 6455 opcodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgKind {
    Text = 1,
    Binary = 2,
}

/// The life of a socket, as `tern_ws_state` reports it.
pub(crate) const CONNECTING: u8 = 0;
pub(crate) const OPEN: u8 = 1;
pub(crate) const CLOSING: u8 = 2;
pub(crate) const CLOSED: u8 = 3;

/// A WebSocket to open, as the caller described it (validated by the FFI layer).
#[derive(Clone, Debug)]
pub struct WsSpec {
    /// The ws:// or wss:// URL.
    pub url: Url,
    pub headers: HeaderMap,
    /// Offered in this order.
    pub subprotocols: Vec<String>,
    pub origin: Option<HeaderValue>,
    /// `Some(None)` = no proxy; `None` = the session's choice.
    pub proxy: Option<Option<String>>,
    pub max_message: Option<usize>,
    pub max_frame: Option<usize>,
    /// Bytes of text and binary messages that may wait to be written.
    pub send_queue: u64,
    /// `None` = the session's connect time-out; `Some(None)` = none.
    pub connect_timeout: Option<Option<Duration>>,
    pub handshake_timeout: Option<Duration>,
    pub receive_timeout: Option<Duration>,
    pub close_timeout: Duration,
    pub heartbeat: Option<Duration>,
}

/// aiohttp's `max_msg_size`.
pub(crate) const DEFAULT_MAX_MESSAGE: usize = 4 * 1024 * 1024;

impl WsSpec {
    /// A spec with the defaults: 4 MiB messages and frames, a 1 MiB send queue, a 30 s
    /// handshake, a 10 s close, no heartbeat and no receive time-out.
    pub fn new(url: &str) -> Result<WsSpec> {
        Ok(WsSpec {
            url: parse_ws_url(url)?,
            headers: HeaderMap::new(),
            subprotocols: Vec::new(),
            origin: None,
            proxy: None,
            max_message: Some(DEFAULT_MAX_MESSAGE),
            max_frame: Some(DEFAULT_MAX_MESSAGE),
            send_queue: 1024 * 1024,
            connect_timeout: None,
            handshake_timeout: Some(Duration::from_secs(30)),
            receive_timeout: None,
            close_timeout: Duration::from_secs(10),
            heartbeat: None,
        })
    }
}

/// Parses a WebSocket URL: ws and wss, with http and https as aliases (as the WHATWG
/// spec and aiohttp allow). The fragment is dropped.
pub fn parse_ws_url(s: &str) -> Result<Url> {
    let mut url = Url::parse(s).map_err(|e| {
        Error::new(
            Code::InvalidUrl,
            format!("invalid URL {:?}: {e}", crate::engine::redact::url_str(s)),
        )
    })?;
    let scheme = match url.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => {
            return Err(Error::new(
                Code::UnsupportedScheme,
                format!("unsupported WebSocket URL scheme {other:?} (ws and wss are supported)"),
            ))
        }
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::new(Code::InvalidUrl, "URL has no host"));
    }
    if url.scheme() != scheme {
        // http <-> ws are both special schemes: the change cannot be refused, and a
        // port that becomes the default one is dropped, as parsing would.
        let _ = url.set_scheme(scheme);
    }
    url.set_fragment(None);
    Ok(url)
}

/// The same URL with http or https, for proxies' and cookies' rules.
pub fn http_url(ws: &Url) -> Url {
    let scheme = if ws.scheme() == "wss" {
        "https"
    } else {
        "http"
    };
    let mut http = ws.clone();
    let _ = http.set_scheme(scheme); // ws <-> http: special schemes, never refused
    http
}

/// How a socket ended, for `on_close`.
#[derive(Debug, Default)]
pub struct CloseInfo {
    /// `None` = OK.
    pub error: Option<Error>,
    pub close_code: u16,
    pub reason: String,
    pub clean: bool,
    pub opened: bool,
    /// The upgrade response head (the 101, or a refusal with its body).
    pub response: Option<Response>,
}

impl CloseInfo {
    pub fn failed(error: Error) -> CloseInfo {
        CloseInfo {
            error: Some(error),
            close_code: 1006,
            ..Default::default()
        }
    }

    pub fn code(&self) -> Code {
        self.error.as_ref().map_or(Code::Ok, |e| e.code)
    }
}

/// The caller's callbacks for one socket. `on_close` is the one mandatory outcome
/// (then release); every callback of a socket runs one at a time, in order.
pub trait WsCallbacks: Send + Sync + 'static {
    fn on_open(&self, _ws: &WebSocket, _head: &Response) {}
    fn on_message(&self, _ws: &WebSocket, _kind: MsgKind, _data: &[u8]) {}
    fn on_writable(&self, _ws: &WebSocket) {}
    /// Exactly once, last.
    fn on_close(&self, ws: &WebSocket, info: CloseInfo);
}

/// What the caller's calls tell the socket's task.
pub(crate) enum Ctl {
    Ping(Bytes),
    /// The caller's close frame was queued behind the data: start the close timer.
    CloseStarted,
    /// End now without a close frame.
    Abort(Error),
    /// The session is closing gracefully: close with 1001.
    GoingAway,
}

/// Data for the writer, in the caller's order.
pub(crate) enum Out {
    Msg(Message, u64),
    Close(Option<CloseFrame>),
}

/// Shared by the caller's handle, the handles given to callbacks, the session and the
/// socket's task.
pub struct WsShared {
    pub id: u64,
    state: AtomicU8,
    buffered: AtomicU64,
    limit: u64,
    want_writable: AtomicBool,
    /// Held while the state is checked and a message or close frame is queued, and
    /// while the state leaves OPEN: a send either goes ahead of the close frame or is
    /// refused, never behind it.
    gate: Mutex<()>,
    data_tx: mpsc::UnboundedSender<Out>,
    ctl_tx: mpsc::UnboundedSender<Ctl>,
    subprotocol: OnceLock<Option<CString>>,
    rt: Arc<RuntimeShared>,
}

/// The engine's handle on one socket (the FFI wraps it in `tern_ws`).
#[derive(Clone)]
pub struct WebSocket(pub(crate) Arc<WsShared>);

impl WebSocket {
    pub(crate) fn new(
        id: u64,
        limit: u64,
        rt: Arc<RuntimeShared>,
    ) -> (
        WebSocket,
        mpsc::UnboundedReceiver<Out>,
        mpsc::UnboundedReceiver<Ctl>,
    ) {
        let (data_tx, data_rx) = mpsc::unbounded_channel();
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let ws = WebSocket(Arc::new(WsShared {
            id,
            state: AtomicU8::new(CONNECTING),
            buffered: AtomicU64::new(0),
            limit: limit.max(1),
            want_writable: AtomicBool::new(false),
            gate: Mutex::new(()),
            data_tx,
            ctl_tx,
            subprotocol: OnceLock::new(),
            rt,
        }));
        (ws, data_rx, ctl_rx)
    }

    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// CONNECTING, OPEN, CLOSING or CLOSED.
    pub fn state(&self) -> u8 {
        self.0.state.load(Ordering::Acquire)
    }

    /// Bytes of text and binary messages accepted and not yet written to the socket.
    pub fn buffered_amount(&self) -> u64 {
        self.0.buffered.load(Ordering::Acquire)
    }

    /// The server's choice, once open; `None` before and when there is none.
    pub fn subprotocol(&self) -> Option<&CString> {
        self.0.subprotocol.get().and_then(Option::as_ref)
    }

    pub(crate) fn control(&self, c: Ctl) {
        let _ = self.0.ctl_tx.send(c);
    }

    fn check_sendable(&self) -> Result<()> {
        self.0.rt.check_usable()?;
        match self.state() {
            CONNECTING | OPEN => Ok(()),
            _ => Err(Error::new(
                Code::InvalidState,
                "the WebSocket is closing or closed",
            )),
        }
    }

    /// Queues a text or binary message, whole or not at all. A message that does not
    /// fit while the queue holds bytes is refused with WOULD_BLOCK, and `on_writable`
    /// follows once the queue has drained to half; a message larger than the queue is
    /// taken when the queue is empty.
    pub fn send(&self, kind: MsgKind, data: Bytes) -> Result<()> {
        let s = &*self.0;
        let len = data.len() as u64;
        // Checked before the count is touched: a refused text must not move it.
        let msg = match kind {
            MsgKind::Binary => Message::Binary(data),
            MsgKind::Text => match tungstenite::Utf8Bytes::try_from(data) {
                Ok(t) => Message::Text(t),
                Err(_) => {
                    return Err(Error::new(
                        Code::InvalidArgument,
                        "a text message must be valid UTF-8",
                    ))
                }
            },
        };
        let _gate = self.gate();
        self.check_sendable()?;
        // Under the gate no other send adds to the count; the writer only takes from
        // it, which can only make room: a plain add after the check is enough.
        let cur = s.buffered.load(Ordering::Acquire);
        if cur > 0 && cur.saturating_add(len) > s.limit {
            // Ask for on_writable, then look once more: the writer may have drained
            // the queue between the two loads, and would not have seen the request.
            s.want_writable.store(true, Ordering::SeqCst);
            let again = s.buffered.load(Ordering::SeqCst);
            if again > 0 && again.saturating_add(len) > s.limit {
                return Err(Error::new(
                    Code::WouldBlock,
                    format!(
                        "the WebSocket send queue is full ({again} of {} bytes); on_writable tells when there is room",
                        s.limit
                    ),
                ));
            }
        }
        s.buffered.fetch_add(len, Ordering::AcqRel);
        if s.data_tx.send(Out::Msg(msg, len)).is_err() {
            // The task has ended: nothing will be written again.
            s.buffered.fetch_sub(len, Ordering::AcqRel);
            return Err(Error::new(Code::InvalidState, "the WebSocket is closed"));
        }
        Ok(())
    }

    /// The lock that orders sends against the state leaving OPEN.
    pub(crate) fn gate(&self) -> MutexGuard<'_, ()> {
        self.0.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// OPEN -> CLOSING with `frame` queued behind the caller's messages, under the
    /// gate; false when the socket was not open.
    pub(crate) fn start_close(&self, frame: Option<CloseFrame>) -> bool {
        let _gate = self.gate();
        let s = &*self.0;
        if s.state
            .compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let _ = s.data_tx.send(Out::Close(frame));
        true
    }

    /// CONNECTING or OPEN -> CLOSING, under the gate: no send is accepted after this.
    pub(crate) fn mark_closing(&self) {
        let _gate = self.gate();
        let s = &self.0.state;
        if s.load(Ordering::Acquire) < CLOSING {
            s.store(CLOSING, Ordering::Release);
        }
    }

    /// The socket has ended (under the gate): no send is accepted, and the messages
    /// that were queued and never written no longer count.
    pub(crate) fn mark_closed(&self) {
        let _gate = self.gate();
        self.0.state.store(CLOSED, Ordering::Release);
        self.0.buffered.store(0, Ordering::Release);
    }

    /// Sends a ping (at most 125 bytes) ahead of queued messages.
    pub fn ping(&self, data: Bytes) -> Result<()> {
        self.check_sendable()?;
        if data.len() > 125 {
            return Err(Error::new(
                Code::InvalidArgument,
                format!("a ping carries at most 125 bytes, not {}", data.len()),
            ));
        }
        if self.state() != OPEN {
            return Err(Error::new(
                Code::InvalidState,
                "the WebSocket is not open yet",
            ));
        }
        self.control(Ctl::Ping(data));
        Ok(())
    }

    /// Starts the closing handshake with `code` (None: a close frame without a code)
    /// after the messages queued before it; before the open, abandons the open
    /// (CANCELED). A second call does nothing.
    pub fn close(&self, code: Option<u16>, reason: &str) -> Result<()> {
        self.0.rt.check_usable()?;
        let s = &*self.0;
        {
            let _gate = self.gate();
            if s.state
                .compare_exchange(CONNECTING, CLOSING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.control(Ctl::Abort(Error::new(
                    Code::Canceled,
                    "the WebSocket was closed before it opened",
                )));
                return Ok(());
            }
        }
        let frame = code.map(|c| CloseFrame {
            code: CloseCode::from(c),
            reason: reason.into(),
        });
        if self.start_close(frame) {
            self.control(Ctl::CloseStarted);
        }
        Ok(())
    }

    /// Drops the connection without a close frame; `on_close` reports CANCELED unless
    /// it was decided already.
    pub fn abort(&self) {
        self.control(Ctl::Abort(Error::new(
            Code::Canceled,
            "the WebSocket was aborted by the caller",
        )));
    }

    /// The caller let go of its handle: an open socket is closed with 1000, one still
    /// connecting is abandoned.
    pub fn handle_dropped(&self) {
        let _ = self.close(Some(1000), "");
    }

    /// The writer wrote `n` bytes of messages: `on_writable` is due when a send was
    /// refused and the queue is now at half or below.
    fn written(&self, n: u64) -> bool {
        let s = &*self.0;
        if n == 0 {
            return false;
        }
        let now = s.buffered.fetch_sub(n, Ordering::AcqRel) - n;
        now <= s.limit / 2 && s.want_writable.swap(false, Ordering::SeqCst)
    }

    /// Messages left in the queue after the close frame, never to be written.
    fn discarded(&self, n: u64) {
        if n > 0 {
            self.0.buffered.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

/// Checks a close code the caller may send: 1000-1003, 1007-1014, 3000-4999.
pub fn check_close_code(code: u32) -> Result<()> {
    match code {
        1000..=1003 | 1007..=1014 | 3000..=4999 => Ok(()),
        _ => Err(Error::new(
            Code::InvalidArgument,
            format!(
                "close code {code} may not be sent (0 for none, 1000-1003, 1007-1014, 3000-4999)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_ws_url("http://a.test/x#f").unwrap().as_str(),
            "ws://a.test/x"
        );
        assert_eq!(
            parse_ws_url("wss://a.test:8443/").unwrap().as_str(),
            "wss://a.test:8443/"
        );
        assert_eq!(parse_ws_url("https://a.test/").unwrap().scheme(), "wss");
        // A port that is the new scheme's default is dropped, as parsing would.
        assert_eq!(
            parse_ws_url("https://a.test:443/").unwrap().as_str(),
            "wss://a.test/"
        );
        assert_eq!(
            http_url(&parse_ws_url("ws://a.test:80/").unwrap()).as_str(),
            "http://a.test/"
        );
        assert_eq!(
            parse_ws_url("ftp://a.test/").unwrap_err().code,
            Code::UnsupportedScheme
        );
        assert_eq!(parse_ws_url("nope").unwrap_err().code, Code::InvalidUrl);
        let u = parse_ws_url("wss://u:p@a.test/p?q").unwrap();
        assert_eq!(http_url(&u).as_str(), "https://u:p@a.test/p?q");
    }

    #[test]
    fn close_codes() {
        for ok in [1000, 1003, 1007, 1014, 3000, 4999] {
            assert!(check_close_code(ok).is_ok(), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(check_close_code(bad).is_err(), "{bad}");
        }
    }
}
