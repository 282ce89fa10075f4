//! A session's cookie jar, when the caller turns it on: RFC 6265 storage and matching
//! (domain, host-only, path, Secure, HttpOnly, Expires and Max-Age) by `cookie_store`,
//! behind a mutex so any thread may use it.

use std::sync::{Mutex, MutexGuard};

use cookie_store::{CookieError, CookieStore, RawCookie};
use http::header::{self, HeaderMap, HeaderValue};
use url::Url;

use crate::code::{Code, Error, Result};
use crate::engine::redact;

/// The cookies of one session.
#[derive(Default)]
pub struct CookieJar {
    store: Mutex<CookieStore>,
}

/// Whether a Set-Cookie line holds a character no cookie may hold (CR, LF, NUL and
/// other controls except tab).
fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\t')
}

impl CookieJar {
    pub fn new() -> CookieJar {
        CookieJar::default()
    }

    fn lock(&self) -> MutexGuard<'_, CookieStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the Set-Cookie headers of a response from `url`; cookies the rules
    /// refuse (a Domain that does not match, unparsable lines) are ignored, as a
    /// browser ignores them.
    pub fn store_response(&self, url: &Url, headers: &HeaderMap) {
        let mut cookies = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
            .filter(|s| !has_control(s))
            .filter_map(|s| RawCookie::parse(s.to_owned()).ok())
            .peekable();
        if cookies.peek().is_some() {
            self.lock().store_response_cookies(cookies, url);
        }
    }

    /// Stores one Set-Cookie line as if `url` had answered with it. An expired cookie
    /// (`Max-Age=0`, an Expires in the past) removes the stored one of that name.
    pub fn add(&self, url: &Url, set_cookie: &str) -> Result<()> {
        let refused = |why: &str| {
            Error::new(
                Code::InvalidArgument,
                format!("the cookie was refused for {}: {why}", redact::url(url)),
            )
        };
        if has_control(set_cookie) {
            return Err(refused("it holds a control character (CR, LF, ...)"));
        }
        let raw = RawCookie::parse(set_cookie.to_owned())
            .map_err(|e| refused(&format!("it cannot be parsed ({e})")))?;
        match self.lock().insert_raw(&raw, url) {
            Ok(_) | Err(CookieError::Expired) => Ok(()),
            Err(CookieError::DomainMismatch) => Err(refused(
                "its Domain attribute does not match the URL's host",
            )),
            Err(e) => Err(refused(&e.to_string())),
        }
    }

    /// The Cookie header value tern sends to `url`: `name=value` pairs joined by "; ",
    /// longer paths first, then in the order the cookies were first stored (RFC 6265
    /// section 5.4). `None` when no cookie matches.
    pub fn header_value(&self, url: &Url) -> Option<String> {
        let store = self.lock();
        let mut found = store.matches(url);
        if found.is_empty() {
            return None;
        }
        found.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let pairs: Vec<String> = found
            .iter()
            .map(|c| {
                let (n, v) = c.name_value();
                format!("{n}={v}")
            })
            .collect();
        Some(pairs.join("; "))
    }

    /// The Cookie header for `url`, marked sensitive (never logged).
    pub fn header(&self, url: &Url) -> Option<HeaderValue> {
        let mut v = HeaderValue::from_str(&self.header_value(url)?).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// Forgets every cookie.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn paths_domains_and_expiry() {
        let j = CookieJar::new();
        j.add(&u("http://a.test/x/y"), "a=1; Path=/").unwrap();
        j.add(&u("http://a.test/x/y"), "b=2; Path=/x").unwrap();
        j.add(&u("http://a.test/"), "c=3; Domain=a.test").unwrap();
        assert_eq!(
            j.header_value(&u("http://a.test/x/z")).as_deref(),
            Some("b=2; a=1; c=3")
        );
        assert_eq!(
            j.header_value(&u("http://sub.a.test/")).as_deref(),
            Some("c=3")
        );
        assert_eq!(j.header_value(&u("http://b.test/")), None);
        j.add(&u("http://a.test/"), "a=1; Path=/; Max-Age=0")
            .unwrap();
        assert_eq!(j.header_value(&u("http://a.test/")).as_deref(), Some("c=3"));
        assert_eq!(
            j.add(&u("http://a.test/"), "d=4; Domain=b.test")
                .unwrap_err()
                .code,
            Code::InvalidArgument
        );
        assert_eq!(
            j.add(&u("http://a.test/"), "novalue").unwrap_err().code,
            Code::InvalidArgument
        );
        assert_eq!(
            j.add(&u("http://a.test/"), "e=5\r\nX: y").unwrap_err().code,
            Code::InvalidArgument
        );
        j.clear();
        assert_eq!(j.header_value(&u("http://a.test/")), None);
    }
}
