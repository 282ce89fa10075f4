//! `tern_ws_options` and `tern_ws`: WebSocket clients opened from a session, with the
//! session's proxy, TLS, DNS, cookies and delivery mode.

use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;

use crate::code::{tern_code, Error, Result};
use crate::engine::response::Response;
use crate::engine::ws::{
    check_close_code, is_managed, CloseInfo, MsgKind, WebSocket, WsCallbacks, WsSpec, CLOSED,
};
use crate::ffi::boundary::{
    bytes_arg, fail, ffi_boundary, from_raw, mut_arg, null_arg, out_arg, ref_arg, str_arg, to_raw,
    try_ffi,
};
use crate::ffi::error::{c_message, tern_error};
use crate::ffi::options::header_args;
use crate::ffi::response::tern_response;
use crate::ffi::session::tern_session;

/// The kind of a WebSocket message (the RFC 6455 opcodes; passed as `uint32_t`).
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum tern_ws_message {
    /// UTF-8 text (not NUL-terminated).
    Text = 1,
    /// Bytes.
    Binary = 2,
}

/// Where a WebSocket stands (`tern_ws_state`'s answer).
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum tern_ws_ready_state {
    /// Connecting and upgrading; sends are queued until it opens.
    Connecting = 0,
    /// Open: messages flow both ways.
    Open = 1,
    /// A close frame was sent or received; sends are refused.
    Closing = 2,
    /// The outcome is decided (`on_close` ran or is about to run).
    Closed = 3,
}

/// Which time-out `tern_ws_options_set_timeout_ms` sets (passed as `uint32_t`).
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum tern_ws_timeout {
    /// DNS, TCP, proxy and TLS. Default: the session's connect time-out; 0 = none.
    Connect = 0,
    /// From the end of the connect to the upgraded stream: the upgrade request, the
    /// response, a refusal's body and the upgrade. Default 30000 ms; 0 = none.
    Handshake = 1,
    /// Nothing at all received for this long: tern closes with 1001 and reports
    /// TERN_CODE_TIMEOUT_READ. Default 0 (off).
    Receive = 2,
    /// The closing handshake: from tern's close frame written (or the peer's received)
    /// to the end of the connection. Writing the messages queued ahead of tern's close
    /// frame is bounded by this time-out again, counted from the close call. Default
    /// 10000 ms; cannot be 0.
    Close = 3,
}

/// The settings of WebSockets to open: headers, subprotocols, origin, proxy,
/// time-outs, heartbeat, limits, send queue. Reusable; `tern_session_ws_connect`
/// copies it.
pub struct tern_ws_options {
    /// The connect call's URL replaces this one.
    spec: WsSpec,
}

/// One WebSocket. The caller's handle comes from `tern_session_ws_connect` and is
/// freed with `tern_ws_free`; callbacks get a borrowed one, valid during the call.
pub struct tern_ws {
    inner: WebSocket,
}

/// What `on_close` reports. Valid during the call only.
///
/// Since: 0.1
#[repr(C)]
pub struct tern_ws_close_info {
    /// TERN_CODE_OK when the closing handshake completed (either side began it);
    /// otherwise why it ended: TERN_CODE_CANCELED (`tern_ws_abort`, or a close or free
    /// before the open), TERN_CODE_SHUTDOWN (session closed, runtime freed), a DNS,
    /// connect, TLS, proxy or time-out code, TERN_CODE_WS_HANDSHAKE (the upgrade was
    /// refused: see `response`), TERN_CODE_WS_PROTOCOL, TERN_CODE_WS_INVALID_UTF8,
    /// TERN_CODE_WS_MESSAGE_TOO_LARGE, TERN_CODE_WS_CLOSED_ABNORMALLY,
    /// TERN_CODE_TIMEOUT_HEARTBEAT, TERN_CODE_TIMEOUT_CLOSE, TERN_CODE_TIMEOUT_READ.
    pub code: tern_code,
    /// Why, in words (redacted; "" when OK). NUL-terminated.
    pub message: *const c_char,
    /// The peer's close code (1005 when its close frame had none); the code tern sent
    /// for failures it detected (1002, 1007, 1009) when that close frame was written;
    /// 1006 when no close frame ended it.
    pub close_code: u16,
    /// 1 when both close frames were exchanged.
    pub clean: u32,
    /// 1 when `on_open` ran.
    pub opened: u32,
    /// The peer's close reason: UTF-8, `reason_len` bytes, followed by a NUL. It may
    /// itself hold NUL bytes: use `reason_len`, not `strlen`.
    pub reason: *const c_char,
    /// The length of `reason` in bytes (0 when the close frame had none).
    pub reason_len: usize,
    /// The upgrade response (status, headers; for a refusal, the first 64 KiB of its body);
    /// NULL when none arrived (DNS, TCP, TLS or proxy failures).
    pub response: *const tern_response,
}

/// The callbacks of one WebSocket. Zero-initialise it and set `struct_size` to
/// `sizeof(tern_ws_callbacks)`: later versions add fields at the end.
///
/// Every function gets the `user_data` given to `tern_session_ws_connect` first, and a
/// borrowed `ws`, valid during the call, that may be used to send or close (never
/// freed). Callbacks run on a runtime thread (or, with queued delivery, inside
/// `tern_session_poll` on the polling thread), one at a time per socket and in order:
/// `on_open`, `on_message` and `on_writable`..., `on_close`, `release`. With direct
/// delivery a callback runs holding that socket's own lock (which keeps its callbacks
/// one at a time), and no other tern lock. A poll made from a callback never runs
/// another callback of the same socket inside it: those (its next messages, `on_close`
/// and `release`) are held and run right after the running one returns.
/// They never run inside a tern call, with one exception: a socket whose task is
/// still alive when `tern_runtime_free` stops the runtime (direct delivery) gets its
/// `on_close` (TERN_CODE_SHUTDOWN) and `release` while the runtime stops, before
/// `tern_runtime_free` returns: on a runtime thread as it stops, or on the thread
/// calling `tern_runtime_free` itself.
/// They must not unwind into tern, and a callback on a runtime thread should not
/// block: it holds up that thread, and that socket's reading.
///
/// Since: 0.1
#[repr(C)]
pub struct tern_ws_callbacks {
    /// `sizeof(tern_ws_callbacks)`.
    pub struct_size: usize,
    /// Required. Runs exactly once per accepted connect, last (then `release`).
    pub on_close: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            ws: *const tern_ws,
            info: *const tern_ws_close_info,
        ),
    >,
    /// Optional. The socket is open: `head` is the 101 response (status, headers with
    /// Sec-WebSocket-Protocol, remote address, timings), valid during the call.
    pub on_open: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            ws: *const tern_ws,
            head: *const tern_response,
        ),
    >,
    /// Optional. One complete message (fragments assembled); `kind` is a
    /// `tern_ws_message`; text is valid UTF-8, not NUL-terminated; `data` is valid
    /// during the call.
    pub on_message: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            ws: *const tern_ws,
            kind: u32,
            data: *const u8,
            len: usize,
        ),
    >,
    /// Optional. After a send returned TERN_CODE_WOULD_BLOCK: the send queue has
    /// drained to half; send again.
    pub on_writable: Option<unsafe extern "C" fn(user_data: *mut c_void, ws: *const tern_ws)>,
    /// Optional. Once, after `on_close`, so bindings can free `user_data`. Never runs
    /// for a connect that was refused.
    pub release: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

type OnClose = unsafe extern "C" fn(*mut c_void, *const tern_ws, *const tern_ws_close_info);

struct WsCCallbacks {
    on_close: OnClose,
    on_open: Option<unsafe extern "C" fn(*mut c_void, *const tern_ws, *const tern_response)>,
    on_message: Option<unsafe extern "C" fn(*mut c_void, *const tern_ws, u32, *const u8, usize)>,
    on_writable: Option<unsafe extern "C" fn(*mut c_void, *const tern_ws)>,
    release: Option<unsafe extern "C" fn(*mut c_void)>,
    user_data: *mut c_void,
}

// SAFETY: the header tells the caller that user_data and the callbacks are used from
// runtime threads (or the polling thread), one callback at a time per socket.
unsafe impl Send for WsCCallbacks {}
unsafe impl Sync for WsCCallbacks {}

impl WsCallbacks for WsCCallbacks {
    fn on_open(&self, ws: &WebSocket, head: &Response) {
        if let Some(f) = self.on_open {
            let h = tern_ws { inner: ws.clone() };
            let r = tern_response::new(head.head());
            // SAFETY: the caller's callback with its user_data; `h` and `r` outlive it.
            unsafe { f(self.user_data, &h, &r) };
        }
    }

    fn on_message(&self, ws: &WebSocket, kind: MsgKind, data: &[u8]) {
        if let Some(f) = self.on_message {
            let h = tern_ws { inner: ws.clone() };
            // SAFETY: as above; `data` outlives the call.
            unsafe { f(self.user_data, &h, kind as u32, data.as_ptr(), data.len()) };
        }
    }

    fn on_writable(&self, ws: &WebSocket) {
        if let Some(f) = self.on_writable {
            let h = tern_ws { inner: ws.clone() };
            // SAFETY: as above.
            unsafe { f(self.user_data, &h) };
        }
    }

    fn on_close(&self, ws: &WebSocket, info: CloseInfo) {
        let h = tern_ws { inner: ws.clone() };
        let message = c_message(info.error.as_ref().map_or("", |e| e.message.as_str()));
        // The raw bytes and a NUL: a reason may itself hold NULs, and `reason_len`
        // (not the first NUL) is its length.
        let mut reason = Vec::with_capacity(info.reason.len() + 1);
        reason.extend_from_slice(info.reason.as_bytes());
        reason.push(0);
        let code = info.code();
        let response = info.response.map(tern_response::new);
        let c = tern_ws_close_info {
            code,
            message: message.as_ptr(),
            close_code: info.close_code,
            clean: u32::from(info.clean),
            opened: u32::from(info.opened),
            reason: reason.as_ptr().cast(),
            reason_len: info.reason.len(),
            response: response
                .as_ref()
                .map_or(std::ptr::null(), |r| r as *const tern_response),
        };
        // SAFETY: the caller's callbacks with the caller's user_data; the socket's
        // guard calls this exactly once; every pointer in `c` outlives the call.
        unsafe {
            (self.on_close)(self.user_data, &h, &c);
            if let Some(rel) = self.release {
                rel(self.user_data);
            }
        }
    }
}

/// Reads the fields of a callbacks struct that its `struct_size` says are present,
/// and only those: a caller built against an older header passes a shorter struct.
///
/// # Safety
/// `cb` is not NULL and points to at least `struct_size` readable bytes (and at least
/// the `struct_size` field).
unsafe fn read_callbacks(
    cb: *const tern_ws_callbacks,
    user_data: *mut c_void,
) -> Result<WsCCallbacks> {
    let size = std::ptr::addr_of!((*cb).struct_size).read();
    if size < offset_of!(tern_ws_callbacks, on_close) + size_of::<usize>() {
        return Err(Error::new(
            tern_code::InvalidArgument,
            "tern_ws_callbacks.struct_size is too small: set it to sizeof(tern_ws_callbacks)",
        ));
    }
    let has = |off: usize| off + size_of::<usize>() <= size;
    // Each field is read through a raw pointer once its end is known to lie within
    // `struct_size`: no reference to the whole (possibly longer) struct is made.
    macro_rules! field {
        ($f:ident) => {
            if has(offset_of!(tern_ws_callbacks, $f)) {
                std::ptr::addr_of!((*cb).$f).read()
            } else {
                None
            }
        };
    }
    let Some(on_close) = field!(on_close) else {
        return Err(Error::new(
            tern_code::NullArgument,
            "tern_ws_callbacks.on_close is required",
        ));
    };
    Ok(WsCCallbacks {
        on_close,
        on_open: field!(on_open),
        on_message: field!(on_message),
        on_writable: field!(on_writable),
        release: field!(release),
        user_data,
    })
}

fn size_arg(bytes: u64) -> Option<usize> {
    (bytes > 0).then(|| usize::try_from(bytes).unwrap_or(usize::MAX))
}

/// Whether `s` is an RFC 7230 token (what a subprotocol name must be).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Makes WebSocket options with the defaults: 4 MiB messages and frames, a 1 MiB send
/// queue, a 30 s handshake and a 10 s close time-out, no heartbeat, no receive
/// time-out, no subprotocol, no compression.
///
/// Ownership: on success `*out` receives options the caller frees with
/// `tern_ws_options_free`.
/// Thread safety: any thread; one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_options_new(
    out: *mut *mut tern_ws_options,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        try_ffi!(err, out_arg(out, "out"));
        let spec = try_ffi!(err, WsSpec::new("ws://localhost/"));
        *out = to_raw(tern_ws_options { spec });
        tern_code::Ok
    }
}

/// Frees WebSocket options. `tern_ws_options_free(NULL)` does nothing.
///
/// Ownership: consumes `opts` (sockets opened with them keep their own copy).
/// Thread safety: any thread, once.
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_options_free(opts: *mut tern_ws_options) {
    ffi_boundary! {
        drop(from_raw(opts));
    }
}

/// Adds a header to the upgrade request, after earlier values of that name; replaces
/// the session's default headers of that name.
///
/// Ownership: `name` and `value` are copied.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (not UTF-8),
/// TERN_CODE_INVALID_HEADER (a bad name or value, or a header tern sets itself: Host,
/// Connection, Upgrade, Sec-WebSocket-Key, -Version, -Protocol, -Extensions,
/// Content-Length, Transfer-Encoding, Expect).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_options_add_header(
    opts: *mut tern_ws_options,
    name: *const c_char,
    value: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let (n, v) = try_ffi!(err, header_args(name, value));
        if is_managed(&n) {
            return fail(err, Error::new(tern_code::InvalidHeader, format!("tern sets the {n} header of a WebSocket upgrade itself (use tern_ws_options_add_subprotocol for subprotocols)")));
        }
        o.spec.headers.append(n, v);
        tern_code::Ok
    }
}

/// Offers a subprotocol (Sec-WebSocket-Protocol), after those offered before. The
/// server's choice is `tern_ws_subprotocol`; a server that picks none is accepted.
///
/// Ownership: `protocol` is copied.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (empty, not a token,
/// or offered already).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_options_add_subprotocol(
    opts: *mut tern_ws_options,
    protocol: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let p = try_ffi!(err, str_arg(protocol, "protocol"));
        if !is_token(p) {
            return fail(err, Error::new(tern_code::InvalidArgument, format!("subprotocol {p:?} is not a token (letters, digits and !#$%&'*+-.^_`|~)")));
        }
        if o.spec.subprotocols.iter().any(|x| x == p) {
            return fail(err, Error::new(tern_code::InvalidArgument, format!("subprotocol {p:?} is offered already")));
        }
        o.spec.subprotocols.push(p.to_owned());
        tern_code::Ok
    }
}

/// Sets the Origin header of the upgrade request; NULL removes it.
///
/// Ownership: `origin` is copied.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT (`opts`), TERN_CODE_INVALID_ARGUMENT (not UTF-8),
/// TERN_CODE_INVALID_HEADER (CR, LF or NUL).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_options_set_origin(
    opts: *mut tern_ws_options,
    origin: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        if origin.is_null() {
            o.spec.origin = None;
            return tern_code::Ok;
        }
        let s = try_ffi!(err, str_arg(origin, "origin"));
        let v = try_ffi!(err, HeaderValue::from_str(s).map_err(|_| Error::new(tern_code::InvalidHeader, "the origin holds a character a header may not (CR, LF, NUL)")));
        o.spec.origin = Some(v);
        tern_code::Ok
    }
}

/// Overrides the session's proxy for these sockets: a proxy URL (http, https: a
/// CONNECT tunnel for ws and wss alike; socks5, socks5h), "" for a direct connection,
/// or NULL for the session's choice.
///
/// Ownership: `url` is copied.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT (`opts`), TERN_CODE_INVALID_ARGUMENT (not UTF-8),
/// TERN_CODE_INVALID_URL, TERN_CODE_UNSUPPORTED_SCHEME.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_options_set_proxy(
    opts: *mut tern_ws_options,
    url: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        if url.is_null() {
            o.spec.proxy = None;
            return tern_code::Ok;
        }
        let u = try_ffi!(err, str_arg(url, "url"));
        if u.is_empty() {
            o.spec.proxy = Some(None);
        } else {
            try_ffi!(err, crate::net::proxy::validate_url(u));
            o.spec.proxy = Some(Some(u.to_owned()));
        }
        tern_code::Ok
    }
}

/// Sets a WebSocket time-out in milliseconds; `kind` is a `tern_ws_timeout`. 0 turns
/// CONNECT, HANDSHAKE and RECEIVE off.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (unknown kind, or 0 for
/// CLOSE).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_options_set_timeout_ms(
    opts: *mut tern_ws_options,
    kind: u32,
    ms: u64,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        let d = (ms > 0).then(|| Duration::from_millis(ms));
        match kind {
            0 => o.spec.connect_timeout = Some(d),
            1 => o.spec.handshake_timeout = d,
            2 => o.spec.receive_timeout = d,
            3 => match d {
                Some(d) => o.spec.close_timeout = d,
                None => return fail(err, Error::new(tern_code::InvalidArgument, "the close time-out cannot be turned off (0)")),
            },
            other => return fail(err, Error::new(tern_code::InvalidArgument, format!("unknown WebSocket time-out kind {other}"))),
        }
        tern_code::Ok
    }
}

/// Sends a ping every `interval_ms` when nothing was received for that long, and ends
/// the socket with TERN_CODE_TIMEOUT_HEARTBEAT (1006, no close frame) when nothing
/// arrives within half the interval after it (as aiohttp's `heartbeat`). 0 = off
/// (the default).
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_options_set_heartbeat_ms(
    opts: *mut tern_ws_options,
    interval_ms: u64,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.spec.heartbeat = (interval_ms > 0).then(|| Duration::from_millis(interval_ms));
        tern_code::Ok
    }
}

/// Sets the largest message accepted (fragments assembled); a larger one closes the
/// socket with 1009 and TERN_CODE_WS_MESSAGE_TOO_LARGE. 0 = no limit. Default 4 MiB.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_options_set_max_message_size(
    opts: *mut tern_ws_options,
    bytes: u64,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.spec.max_message = size_arg(bytes);
        tern_code::Ok
    }
}

/// Sets the largest frame accepted, checked on the frame's header before its payload
/// is read; a larger one closes with 1009 (TERN_CODE_WS_MESSAGE_TOO_LARGE). 0 = no
/// limit. Default 4 MiB.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_options_set_max_frame_size(
    opts: *mut tern_ws_options,
    bytes: u64,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        o.spec.max_frame = size_arg(bytes);
        tern_code::Ok
    }
}

/// Sets how many bytes of text and binary messages may wait to be written (default
/// 1 MiB). A send that does not fit returns TERN_CODE_WOULD_BLOCK and `on_writable`
/// follows when the queue has drained to half; a message larger than the queue is
/// taken when the queue is empty.
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (0).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_options_set_send_queue_size(
    opts: *mut tern_ws_options,
    bytes: u64,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let o = try_ffi!(err, mut_arg(opts, "opts"));
        if bytes == 0 {
            return fail(err, Error::new(tern_code::InvalidArgument, "the send queue must hold at least one byte"));
        }
        o.spec.send_queue = bytes;
        tern_code::Ok
    }
}

/// Asks for permessage-deflate: 0 (off, the default) is accepted; 1 returns
/// TERN_CODE_UNSUPPORTED, since this version does not implement it (tern never offers
/// the extension, and fails an upgrade whose server chose one anyway).
///
/// Ownership: nothing is kept.
/// Thread safety: one thread at a time per options object.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_UNSUPPORTED (1),
/// TERN_CODE_INVALID_ARGUMENT (not 0 or 1).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_options_set_compression(
    opts: *mut tern_ws_options,
    on: u32,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        try_ffi!(err, mut_arg(opts, "opts"));
        match on {
            0 => tern_code::Ok,
            1 => fail(err, Error::new(tern_code::Unsupported, "permessage-deflate is not supported by this version of tern")),
            other => fail(err, Error::new(tern_code::InvalidArgument, format!("compression must be 0 or 1, not {other}"))),
        }
    }
}

/// Opens a WebSocket (`ws://`, `wss://`; `http://` and `https://` mean the same) from a
/// session, with its proxy (a CONNECT tunnel or SOCKS5), TLS settings (ALPN
/// http/1.1 only), DNS, connect time-out, default headers and cookie jar. Returns at
/// once; `callbacks->on_close` runs exactly once, never inside this call (when the
/// runtime shuts down during the call, the connect is refused with
/// TERN_CODE_SHUTDOWN and no callback runs).
///
/// Ownership: `url`, `opts` (NULL = defaults) and `callbacks` are copied. On success
/// `*ws_out` (may be NULL) receives the caller's handle, freed with `tern_ws_free`; it
/// is written before any callback can run. tern does not touch `user_data`;
/// `release(user_data)` runs once after `on_close`. When this call fails no callback
/// and no release runs: the caller still owns `user_data`.
/// Thread safety: any thread, callbacks included; never blocks.
/// Errors: TERN_CODE_NULL_ARGUMENT (`session`, `url`, `callbacks`, `on_close`),
/// TERN_CODE_INVALID_ARGUMENT (`struct_size`, not UTF-8), TERN_CODE_INVALID_URL,
/// TERN_CODE_UNSUPPORTED_SCHEME, TERN_CODE_SHUTDOWN (session closed or runtime freed),
/// TERN_CODE_FORKED. DNS, connect, TLS, proxy and handshake failures arrive in
/// `on_close`.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_session_ws_connect(
    session: *const tern_session,
    url: *const c_char,
    opts: *const tern_ws_options,
    callbacks: *const tern_ws_callbacks,
    user_data: *mut c_void,
    ws_out: *mut *mut tern_ws,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let s = try_ffi!(err, ref_arg(session, "session"));
        let u = try_ffi!(err, str_arg(url, "url"));
        if callbacks.is_null() {
            return fail(err, null_arg("callbacks"));
        }
        let cb = try_ffi!(err, read_callbacks(callbacks, user_data));
        let mut spec = match opts.as_ref() {
            Some(o) => o.spec.clone(),
            None => try_ffi!(err, WsSpec::new("ws://localhost/")),
        };
        spec.url = try_ffi!(err, crate::engine::ws::parse_ws_url(u));
        let before = if ws_out.is_null() { std::ptr::null_mut() } else { *ws_out };
        let written = std::cell::Cell::new(false);
        let r = s.inner.ws_connect(spec, Arc::new(cb), |w| {
            if !ws_out.is_null() {
                *ws_out = to_raw(tern_ws { inner: w.clone() });
                written.set(true);
            }
        });
        if let Err(e) = r {
            // Refused after the handle was written (the runtime shut down during the
            // call): take it back, so that nothing is written on failure.
            if written.get() {
                drop(from_raw(*ws_out));
                *ws_out = before;
            }
            return fail(err, e);
        }
        tern_code::Ok
    }
}

/// Queues a text message (checked to be UTF-8) to be sent whole.
///
/// Ownership: the bytes are copied; `data` may be NULL when `len` is 0.
/// Thread safety: any thread, callbacks included; never blocks. Sends from one thread
/// keep their order. Allowed while connecting (sent once open) and open.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (not UTF-8; checked
/// before the queue's room, so such a text never gets WOULD_BLOCK),
/// TERN_CODE_WOULD_BLOCK (the send queue is full: wait for `on_writable`),
/// TERN_CODE_INVALID_STATE (closing or closed), TERN_CODE_SHUTDOWN, TERN_CODE_FORKED.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_send_text(
    ws: *const tern_ws,
    data: *const c_char,
    len: usize,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let w = try_ffi!(err, ref_arg(ws, "ws"));
        let d = try_ffi!(err, bytes_arg(data.cast(), len, "data"));
        try_ffi!(err, w.inner.send(MsgKind::Text, Bytes::copy_from_slice(d)));
        tern_code::Ok
    }
}

/// Queues a binary message to be sent whole.
///
/// Ownership: the bytes are copied; `data` may be NULL when `len` is 0.
/// Thread safety: as `tern_ws_send_text`.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_WOULD_BLOCK, TERN_CODE_INVALID_STATE,
/// TERN_CODE_SHUTDOWN, TERN_CODE_FORKED.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_send_binary(
    ws: *const tern_ws,
    data: *const u8,
    len: usize,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let w = try_ffi!(err, ref_arg(ws, "ws"));
        let d = try_ffi!(err, bytes_arg(data, len, "data"));
        try_ffi!(err, w.inner.send(MsgKind::Binary, Bytes::copy_from_slice(d)));
        tern_code::Ok
    }
}

/// Sends a ping, ahead of queued messages (pongs to the peer's pings are automatic).
///
/// Ownership: the bytes are copied (at most 125).
/// Thread safety: any thread, callbacks included.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (over 125 bytes),
/// TERN_CODE_INVALID_STATE (not open), TERN_CODE_SHUTDOWN, TERN_CODE_FORKED.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_send_ping(
    ws: *const tern_ws,
    data: *const u8,
    len: usize,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let w = try_ffi!(err, ref_arg(ws, "ws"));
        let d = try_ffi!(err, bytes_arg(data, len, "data"));
        try_ffi!(err, w.inner.ping(Bytes::copy_from_slice(d)));
        tern_code::Ok
    }
}

/// Starts the closing handshake: a close frame with `code` (0 = a frame without a
/// code, which the peer sees as 1005; else 1000-1003, 1007-1014 or 3000-4999) and
/// `reason` (NULL or UTF-8 of at most 123 bytes; only with a code), sent after the
/// messages queued before it. `on_close` follows once the peer answered and closed
/// the connection (TERN_CODE_OK), or after the close time-out: TERN_CODE_TIMEOUT_CLOSE,
/// or the reason tern was closing for (TERN_CODE_TIMEOUT_READ after the receive
/// time-out, TERN_CODE_SHUTDOWN for a session close). Before the open it abandons the
/// open (TERN_CODE_CANCELED). Calling it again does nothing. A send racing it from
/// another thread is either sent, ahead of the close frame, or refused with
/// TERN_CODE_INVALID_STATE.
///
/// Ownership: `reason` is copied.
/// Thread safety: any thread, callbacks included.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (code or reason),
/// TERN_CODE_SHUTDOWN, TERN_CODE_FORKED.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_close(
    ws: *const tern_ws,
    code: u32,
    reason: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let w = try_ffi!(err, ref_arg(ws, "ws"));
        let reason = if reason.is_null() { "" } else { try_ffi!(err, str_arg(reason, "reason")) };
        if reason.len() > 123 {
            return fail(err, Error::new(tern_code::InvalidArgument, format!("a close reason holds at most 123 bytes, not {}", reason.len())));
        }
        let code = if code == 0 {
            if !reason.is_empty() {
                return fail(err, Error::new(tern_code::InvalidArgument, "a close reason needs a close code"));
            }
            None
        } else {
            try_ffi!(err, check_close_code(code));
            Some(code as u16)
        };
        try_ffi!(err, w.inner.close(code, reason));
        tern_code::Ok
    }
}

/// Drops the connection at once without a close frame; `on_close` follows with
/// TERN_CODE_CANCELED and 1006, unless the outcome was decided already.
///
/// Ownership: nothing changes hands.
/// Thread safety: any thread, callbacks included.
/// Errors: TERN_CODE_NULL_ARGUMENT.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_abort(ws: *const tern_ws) -> tern_code {
    ffi_boundary! {
        match ws.as_ref() {
            Some(w) => {
                w.inner.abort();
                tern_code::Ok
            }
            None => tern_code::NullArgument,
        }
    }
}

/// The bytes of text and binary messages accepted by sends and not yet written to
/// the connection; 0 once the socket is closed.
///
/// Ownership: borrows `ws`.
/// Thread safety: any thread.
/// Errors: none; 0 for NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_buffered_amount(ws: *const tern_ws) -> u64 {
    ffi_boundary! {
        ws.as_ref().map_or(0, |w| w.inner.buffered_amount())
    }
}

/// Where the socket stands: a `tern_ws_ready_state` value.
///
/// Ownership: borrows `ws`.
/// Thread safety: any thread.
/// Errors: none; TERN_WS_READY_STATE_CLOSED for NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_state(ws: *const tern_ws) -> u32 {
    ffi_boundary! {
        u32::from(ws.as_ref().map_or(CLOSED, |w| w.inner.state()))
    }
}

/// The subprotocol the server chose, NUL-terminated; NULL before the open, when
/// none was chosen, and for NULL.
///
/// Ownership: the string belongs to the socket and lives as long as any handle on it
/// (the caller's, until `tern_ws_free`).
/// Thread safety: any thread.
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_subprotocol(ws: *const tern_ws) -> *const c_char {
    ffi_boundary! {
        ws.as_ref()
            .and_then(|w| w.inner.subprotocol().map(|s| s.as_ptr()))
            .unwrap_or(std::ptr::null())
    }
}

/// The socket's id: unique within its session (shared with request ids).
///
/// Ownership: borrows `ws`.
/// Thread safety: any thread.
/// Errors: none; 0 for NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_id(ws: *const tern_ws) -> u64 {
    ffi_boundary! {
        ws.as_ref().map_or(0, |w| w.inner.id())
    }
}

/// Frees the caller's handle. A socket still connecting is abandoned
/// (TERN_CODE_CANCELED); an open one is closed with 1000; `on_close` and `release`
/// still run. `tern_ws_free(NULL)` does nothing. Never free the `ws` a callback was
/// given: it is borrowed.
///
/// Ownership: consumes `ws` (the handle from `tern_session_ws_connect`).
/// Thread safety: any thread (callbacks included), once.
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_ws_free(ws: *mut tern_ws) {
    ffi_boundary! {
        if let Some(w) = from_raw(ws) {
            w.inner.handle_dropped();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(is_token("chat.v1"));
        assert!(!is_token(""));
        assert!(!is_token("a b"));
        assert!(!is_token("a,b"));
    }
}
