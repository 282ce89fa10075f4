//! The outcome of one request: status, headers, body, timings, or the error.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::code::{Code, Error};

/// The phases of one request; zero for phases that did not happen (a reused connection
/// has no DNS, connect or TLS time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    pub dns: Duration,
    pub connect: Duration,
    pub tls: Duration,
    /// From send to the first byte of the (last) response head.
    pub ttfb: Duration,
    pub total: Duration,
}

/// Everything known about a request when it ended, successfully or not.
#[derive(Debug, Default)]
pub struct Response {
    pub id: u64,
    pub error: Option<Error>,
    /// 0 when no response head arrived.
    pub status: u16,
    pub version: Option<http::Version>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body followed by one NUL byte that `body_len` does not count.
    pub body: Vec<u8>,
    pub body_len: usize,
    /// Redacted (no userinfo).
    pub effective_url: String,
    pub redirects: u32,
    pub remote: Option<SocketAddr>,
    pub timings: Timings,
    /// Shown as the message of a successful response (a `danger` option was used).
    pub warning: Option<String>,
}

impl Response {
    /// A response that carries only an error.
    pub fn failed(id: u64, error: Error) -> Response {
        Response {
            id,
            error: Some(error),
            body: vec![0],
            ..Default::default()
        }
    }

    /// The head alone (no body, no error), for `on_headers`.
    pub fn head(&self) -> Response {
        Response {
            id: self.id,
            error: None,
            status: self.status,
            version: self.version,
            headers: self.headers.clone(),
            body: vec![0],
            body_len: 0,
            effective_url: self.effective_url.clone(),
            redirects: self.redirects,
            remote: self.remote,
            timings: self.timings,
            warning: self.warning.clone(),
        }
    }

    pub fn code(&self) -> Code {
        self.error.as_ref().map_or(Code::Ok, |e| e.code)
    }

    pub fn body(&self) -> &[u8] {
        &self.body[..self.body_len]
    }
}
