//! The one outcome enum shared by every layer, exported to C as `tern_code`.

/// Every outcome of a tern call or request (`uint32_t` on the wire, 0 = OK).
///
/// Codes are grouped in fixed ranges that are never renumbered: 1-99 caller errors,
/// 100s DNS, 200s connect, 300s TLS, 400s proxy, 500s timeouts, 600s protocol,
/// 700s lifecycle, 800s WebSocket, 900s internal. An HTTP 404 is not an error: the
/// exchange worked and the code is `TERN_CODE_OK`.
///
/// Since: 0.1
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum tern_code {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// An argument was out of range or malformed (including non-UTF-8 strings).
    InvalidArgument = 2,
    /// The URL could not be parsed.
    InvalidUrl = 3,
    /// The URL's scheme is not http or https.
    UnsupportedScheme = 4,
    /// A header name or value is not allowed (CR, LF, NUL, invalid token).
    InvalidHeader = 5,
    /// The method is not a valid HTTP token.
    InvalidMethod = 6,
    /// The object is in a state where this call is not allowed.
    InvalidState = 7,
    /// The call would block a thread that its own completion needs.
    WouldDeadlock = 8,
    /// The process forked after the runtime was created; use a new runtime in the child.
    Forked = 9,
    /// No request, header or item matches.
    NotFound = 10,
    /// The feature or callback is not supported by this version of the library.
    Unsupported = 11,
    /// A file could not be read, or its contents (PEM) could not be parsed.
    InvalidFile = 12,
    /// Not possible now without blocking: a streamed upload's buffer is full (write
    /// again after `on_upload_ready`).
    WouldBlock = 13,
    /// Name resolution failed (resolver error or time-out).
    Dns = 100,
    /// The name does not exist.
    DnsNotFound = 101,
    /// The TCP connection failed.
    Connect = 200,
    /// The server refused the TCP connection.
    ConnectionRefused = 201,
    /// The connection was reset by the peer.
    ConnectionReset = 202,
    /// The TLS handshake or TLS session failed.
    Tls = 300,
    /// The server's certificate did not verify.
    TlsVerify = 301,
    /// The proxy failed.
    Proxy = 400,
    /// The proxy could not be reached.
    ProxyConnect = 401,
    /// The proxy refused our credentials.
    ProxyAuth = 402,
    /// The connect time-out (TCP and TLS handshake) expired.
    TimeoutConnect = 500,
    /// No byte arrived within the read time-out.
    TimeoutRead = 501,
    /// The total time-out expired.
    TimeoutTotal = 502,
    /// No pong arrived within half the heartbeat interval (WebSocket).
    TimeoutHeartbeat = 503,
    /// The WebSocket closing handshake did not finish within the close time-out.
    TimeoutClose = 504,
    /// The peer broke the HTTP protocol.
    Protocol = 600,
    /// The connection ended before the whole body arrived.
    IncompleteBody = 601,
    /// The response headers exceed the limit.
    HeadersTooLarge = 602,
    /// More redirects than allowed.
    TooManyRedirects = 603,
    /// The response body exceeds the configured maximum.
    BodyTooLarge = 604,
    /// A 307/308 redirect needs a body that cannot be sent again.
    RedirectBodyNotReplayable = 605,
    /// A redirect from https to http was refused.
    InsecureRedirect = 606,
    /// The response body could not be decoded (gzip, deflate, br).
    Decoding = 607,
    /// The request was canceled by the caller.
    Canceled = 700,
    /// The session or runtime is shutting down or closed.
    Shutdown = 701,
    /// The server did not accept the WebSocket upgrade (a status other than 101, a bad
    /// Sec-WebSocket-Accept, a subprotocol or extension that was not offered).
    WsHandshake = 800,
    /// The WebSocket peer broke RFC 6455; tern closed with 1002.
    WsProtocol = 801,
    /// A WebSocket text message or close reason was not UTF-8; tern closed with 1007.
    WsInvalidUtf8 = 802,
    /// A WebSocket message or frame exceeded the limit; tern closed with 1009.
    WsMessageTooLarge = 803,
    /// The WebSocket connection ended without a close frame (1006).
    WsClosedAbnormally = 804,
    /// A bug in tern: an internal panic was caught at the boundary.
    Internal = 900,
}

impl tern_code {
    /// Every code, in numeric order.
    pub const ALL: &'static [tern_code] = &[
        Self::Ok,
        Self::NullArgument,
        Self::InvalidArgument,
        Self::InvalidUrl,
        Self::UnsupportedScheme,
        Self::InvalidHeader,
        Self::InvalidMethod,
        Self::InvalidState,
        Self::WouldDeadlock,
        Self::Forked,
        Self::NotFound,
        Self::Unsupported,
        Self::InvalidFile,
        Self::WouldBlock,
        Self::Dns,
        Self::DnsNotFound,
        Self::Connect,
        Self::ConnectionRefused,
        Self::ConnectionReset,
        Self::Tls,
        Self::TlsVerify,
        Self::Proxy,
        Self::ProxyConnect,
        Self::ProxyAuth,
        Self::TimeoutConnect,
        Self::TimeoutRead,
        Self::TimeoutTotal,
        Self::TimeoutHeartbeat,
        Self::TimeoutClose,
        Self::Protocol,
        Self::IncompleteBody,
        Self::HeadersTooLarge,
        Self::TooManyRedirects,
        Self::BodyTooLarge,
        Self::RedirectBodyNotReplayable,
        Self::InsecureRedirect,
        Self::Decoding,
        Self::Canceled,
        Self::Shutdown,
        Self::WsHandshake,
        Self::WsProtocol,
        Self::WsInvalidUtf8,
        Self::WsMessageTooLarge,
        Self::WsClosedAbnormally,
        Self::Internal,
    ];

    /// The constant's name without the prefix, as a static NUL-terminated string.
    pub fn name_cstr(self) -> &'static std::ffi::CStr {
        match self {
            Self::Ok => c"OK",
            Self::NullArgument => c"NULL_ARGUMENT",
            Self::InvalidArgument => c"INVALID_ARGUMENT",
            Self::InvalidUrl => c"INVALID_URL",
            Self::UnsupportedScheme => c"UNSUPPORTED_SCHEME",
            Self::InvalidHeader => c"INVALID_HEADER",
            Self::InvalidMethod => c"INVALID_METHOD",
            Self::InvalidState => c"INVALID_STATE",
            Self::WouldDeadlock => c"WOULD_DEADLOCK",
            Self::Forked => c"FORKED",
            Self::NotFound => c"NOT_FOUND",
            Self::Unsupported => c"UNSUPPORTED",
            Self::InvalidFile => c"INVALID_FILE",
            Self::WouldBlock => c"WOULD_BLOCK",
            Self::Dns => c"DNS",
            Self::DnsNotFound => c"DNS_NOT_FOUND",
            Self::Connect => c"CONNECT",
            Self::ConnectionRefused => c"CONNECTION_REFUSED",
            Self::ConnectionReset => c"CONNECTION_RESET",
            Self::Tls => c"TLS",
            Self::TlsVerify => c"TLS_VERIFY",
            Self::Proxy => c"PROXY",
            Self::ProxyConnect => c"PROXY_CONNECT",
            Self::ProxyAuth => c"PROXY_AUTH",
            Self::TimeoutConnect => c"TIMEOUT_CONNECT",
            Self::TimeoutRead => c"TIMEOUT_READ",
            Self::TimeoutTotal => c"TIMEOUT_TOTAL",
            Self::TimeoutHeartbeat => c"TIMEOUT_HEARTBEAT",
            Self::TimeoutClose => c"TIMEOUT_CLOSE",
            Self::Protocol => c"PROTOCOL",
            Self::IncompleteBody => c"INCOMPLETE_BODY",
            Self::HeadersTooLarge => c"HEADERS_TOO_LARGE",
            Self::TooManyRedirects => c"TOO_MANY_REDIRECTS",
            Self::BodyTooLarge => c"BODY_TOO_LARGE",
            Self::RedirectBodyNotReplayable => c"REDIRECT_BODY_NOT_REPLAYABLE",
            Self::InsecureRedirect => c"INSECURE_REDIRECT",
            Self::Decoding => c"DECODING",
            Self::Canceled => c"CANCELED",
            Self::Shutdown => c"SHUTDOWN",
            Self::WsHandshake => c"WS_HANDSHAKE",
            Self::WsProtocol => c"WS_PROTOCOL",
            Self::WsInvalidUtf8 => c"WS_INVALID_UTF8",
            Self::WsMessageTooLarge => c"WS_MESSAGE_TOO_LARGE",
            Self::WsClosedAbnormally => c"WS_CLOSED_ABNORMALLY",
            Self::Internal => c"INTERNAL",
        }
    }

    /// The code with this number, if there is one.
    pub fn from_u32(v: u32) -> Option<tern_code> {
        Self::ALL.iter().copied().find(|c| *c as u32 == v)
    }
}

/// The short name used inside the engine.
pub use tern_code as Code;

/// An outcome with its human message (already redacted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.code.name_cstr().to_string_lossy(),
            self.message
        )
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
