//! The cookie jar against nginx (scripts/testenv.sh: /cookies/set, /cookies/echo,
//! /cookies/expire, /cookies/redirect, /cookies/redirect-localhost, /cookies/secure and
//! /headers, which echoes the Cookie header as `cookie=...`).

use std::ffi::CStr;
use std::ptr::null_mut;

use tern::code::tern_code;
use tern::ffi::cookies::*;
use tern::ffi::options::*;

use crate::common::*;
use crate::options::set;

fn jar_opts() -> Opts {
    let o = Opts::with_ca();
    set(&o, |o, e| unsafe {
        tern_session_options_set_cookie_jar(o, 1, e)
    });
    o
}

/// The `cookie=` line of a /headers or /cookies/echo answer.
fn sent_cookie(r: &Resp) -> String {
    let text = r.ok().text();
    text.lines()
        .find_map(|l| l.strip_prefix("cookie="))
        .unwrap_or_else(|| panic!("no cookie line in {text:?}"))
        .to_owned()
}

fn get_cookies(s: &Sess, url: &str) -> Result<String, (tern_code, String)> {
    let u = c(url);
    let mut out = null_mut();
    let mut e = null_mut();
    match unsafe { tern_session_get_cookies(s.0, u.as_ptr(), &mut out, &mut e) } {
        tern_code::Ok => {
            let v = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_owned();
            unsafe { tern_string_free(out) };
            Ok(v)
        }
        code => {
            assert!(out.is_null());
            Err((code, take_err(e)))
        }
    }
}

pub(crate) fn add_cookie(s: &Sess, url: &str, line: &str) -> Result<(), (tern_code, String)> {
    let (u, l) = (c(url), c(line));
    let mut e = null_mut();
    match unsafe { tern_session_add_cookie(s.0, u.as_ptr(), l.as_ptr(), &mut e) } {
        tern_code::Ok => Ok(()),
        code => Err((code, take_err(e))),
    }
}

fn clear_cookies(s: &Sess) -> tern_code {
    unsafe { tern_session_clear_cookies(s.0, null_mut()) }
}

/// `http://localhost:PORT` for the plain server's `http://127.0.0.1:PORT`.
fn localhost(path: &str) -> String {
    http(path).replace("127.0.0.1", "localhost")
}

#[test]
fn jar_keeps_cookies_and_sends_them_by_path() {
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &jar_opts());
    assert_eq!(sent_cookie(&s.get(&http("/headers"))), "");
    let r = s.get(&http("/cookies/set"));
    assert_eq!(r.ok().headers_named("set-cookie").len(), 2);
    // a (Path=/) everywhere; b (Path=/cookies) under /cookies only, first (longer path).
    assert_eq!(sent_cookie(&s.get(&http("/headers"))), "a=1");
    assert_eq!(sent_cookie(&s.get(&http("/cookies/echo"))), "b=2; a=1");
    assert_eq!(get_cookies(&s, &http("/cookies/x")).unwrap(), "b=2; a=1");
    assert_eq!(get_cookies(&s, &http("/cookiesx")).unwrap(), "a=1");
    assert_eq!(get_cookies(&s, &http("/")).unwrap(), "a=1");

    // Max-Age=0 removes a; b stays.
    s.get(&http("/cookies/expire")).ok();
    assert_eq!(sent_cookie(&s.get(&http("/headers"))), "");
    assert_eq!(sent_cookie(&s.get(&http("/cookies/echo"))), "b=2");

    // A cookie set by one host is not sent to another (host-only: 127.0.0.1 is not
    // localhost), although the same server answers both.
    assert_eq!(sent_cookie(&s.get(&localhost("/cookies/echo"))), "");
    assert_eq!(get_cookies(&s, &localhost("/cookies/echo")).unwrap(), "");
}

#[test]
fn without_a_jar_nothing_is_kept_or_sent() {
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    s.get(&http("/cookies/set")).ok();
    assert_eq!(sent_cookie(&s.get(&http("/headers"))), "");
    assert_eq!(sent_cookie(&s.get(&http("/cookies/echo"))), "");
    // The jar functions say why they cannot work.
    let err = get_cookies(&s, &http("/")).unwrap_err();
    assert_eq!(err.0, tern_code::InvalidState);
    assert!(err.1.contains("cookie_jar"), "{}", err.1);
    assert_eq!(
        add_cookie(&s, &http("/"), "x=1").unwrap_err().0,
        tern_code::InvalidState
    );
    assert_eq!(clear_cookies(&s), tern_code::InvalidState);

    // Explicitly off is the same.
    let o = Opts::new();
    set(&o, |o, e| unsafe {
        tern_session_options_set_cookie_jar(o, 0, e)
    });
    let s = Sess::new(&rt, &o);
    s.get(&http("/cookies/set")).ok();
    assert_eq!(sent_cookie(&s.get(&http("/headers"))), "");
    let mut e = null_mut();
    assert_eq!(
        unsafe { tern_session_options_set_cookie_jar(o.0, 2, &mut e) },
        tern_code::InvalidArgument
    );
    take_err(e);
}

#[test]
fn redirect_hops_keep_and_send_cookies() {
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &jar_opts());
    // The 302 sets r=3; the next hop (/headers, same host) sends it.
    let r = s.get(&http("/cookies/redirect"));
    assert_eq!(r.ok().redirects(), 1);
    assert_eq!(sent_cookie(&r), "r=3");

    // The 302 on 127.0.0.1 sets h=4 and sends us to localhost: not sent there.
    let r = s.get(&http("/cookies/redirect-localhost"));
    assert_eq!(r.ok().redirects(), 1);
    assert!(
        r.effective_url().contains("//localhost:"),
        "{}",
        r.effective_url()
    );
    assert_eq!(sent_cookie(&r), "");
    assert_eq!(get_cookies(&s, &http("/")).unwrap(), "r=3; h=4");

    // Without a jar, the redirect's cookie is not sent on the next hop (negative twin).
    let s = Sess::new(&rt, &Opts::new());
    assert_eq!(sent_cookie(&s.get(&http("/cookies/redirect"))), "");
}

#[test]
fn secure_cookies_go_over_https_only() {
    // app.test (in the test certificate) is not a loopback name, so http to it is not
    // a secure channel; both of nginx's ports are reached through it.
    let http_port = http("").rsplit(':').next().unwrap().to_owned();
    let https_port = https("").rsplit(':').next().unwrap().to_owned();
    let o = jar_opts();
    for port in [&http_port, &https_port] {
        let entry = c(&format!("app.test:{port}:127.0.0.1"));
        set(&o, |o, e| unsafe {
            tern_session_options_add_resolve(o, entry.as_ptr(), e)
        });
    }
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &o);
    let plain = format!("http://app.test:{http_port}");
    let tls = format!("https://app.test:{https_port}");
    s.get(&format!("{tls}/cookies/secure")).ok();
    assert_eq!(sent_cookie(&s.get(&format!("{tls}/headers"))), "s=5");
    assert_eq!(sent_cookie(&s.get(&format!("{plain}/headers"))), "");
    assert_eq!(get_cookies(&s, &format!("{plain}/")).unwrap(), "");
    assert_eq!(get_cookies(&s, &format!("{tls}/")).unwrap(), "s=5");
    // A non-secure cookie of the same host goes both ways.
    add_cookie(&s, &format!("{plain}/"), "p=6; Path=/").unwrap();
    assert_eq!(sent_cookie(&s.get(&format!("{plain}/headers"))), "p=6");
    assert_eq!(sent_cookie(&s.get(&format!("{tls}/headers"))), "s=5; p=6");
}

#[test]
fn add_get_and_clear() {
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &jar_opts());
    add_cookie(&s, &http("/a/b"), "x=1").unwrap();
    add_cookie(&s, &http("/"), "y=2; Path=/; Max-Age=3600").unwrap();
    // Without Path, x's path is the URL's directory (/a).
    assert_eq!(get_cookies(&s, &http("/a/c")).unwrap(), "x=1; y=2");
    assert_eq!(get_cookies(&s, &http("/headers")).unwrap(), "y=2");
    assert_eq!(sent_cookie(&s.get(&http("/headers"))), "y=2");
    // A Domain cookie matches subdomains; host-only cookies do not.
    add_cookie(&s, "http://www.app.test/", "d=3; Domain=app.test; Path=/").unwrap();
    assert_eq!(get_cookies(&s, "http://other.app.test/").unwrap(), "d=3");
    assert_eq!(get_cookies(&s, "http://app.test/").unwrap(), "d=3");
    // Replaced in place, removed by an expired copy.
    add_cookie(&s, &http("/"), "y=22; Path=/").unwrap();
    assert_eq!(get_cookies(&s, &http("/a/c")).unwrap(), "x=1; y=22");
    add_cookie(
        &s,
        &http("/"),
        "y=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
    )
    .unwrap();
    assert_eq!(get_cookies(&s, &http("/a/c")).unwrap(), "x=1");

    // Refusals: the message names the reason, never the value.
    let err = add_cookie(&s, &http("/"), "z=SecretValue42; Domain=example.org").unwrap_err();
    assert_eq!(err.0, tern_code::InvalidArgument);
    assert!(
        err.1.contains("Domain") && !err.1.contains("SecretValue42"),
        "{}",
        err.1
    );
    let err = add_cookie(&s, &http("/"), "SecretValue42").unwrap_err();
    assert_eq!(err.0, tern_code::InvalidArgument);
    assert!(!err.1.contains("SecretValue42"), "{}", err.1);
    let err = add_cookie(&s, &http("/"), "z=1\r\nX-Injected: 1").unwrap_err();
    assert_eq!(err.0, tern_code::InvalidArgument);
    assert_eq!(
        add_cookie(&s, "not a url", "z=1").unwrap_err().0,
        tern_code::InvalidUrl
    );
    assert_eq!(
        add_cookie(&s, "ftp://x/", "z=1").unwrap_err().0,
        tern_code::UnsupportedScheme
    );
    assert_eq!(
        get_cookies(&s, "http://").unwrap_err().0,
        tern_code::InvalidUrl
    );

    assert_eq!(clear_cookies(&s), tern_code::Ok);
    assert_eq!(get_cookies(&s, &http("/a/c")).unwrap(), "");
    assert_eq!(sent_cookie(&s.get(&http("/headers"))), "");
    unsafe { tern_string_free(null_mut()) };
}

#[test]
fn a_cookie_header_of_the_caller_wins() {
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &jar_opts());
    add_cookie(&s, &http("/"), "a=jar; Path=/").unwrap();
    let r = s.perform(Req::new("GET", &http("/headers")).set_header("Cookie", "mine=1"));
    assert_eq!(sent_cookie(&r), "mine=1");
    // Set-Cookie is still kept while the caller's header is used.
    let r = s.perform(Req::new("GET", &http("/cookies/set")).set_header("Cookie", "mine=1"));
    r.ok();
    assert_eq!(get_cookies(&s, &http("/cookies/")).unwrap(), "b=2; a=1");
    // A session-wide Cookie header counts as the caller's too.
    let o = jar_opts();
    let (n, v) = (c("Cookie"), c("session=1"));
    set(&o, |o, e| unsafe {
        tern_session_options_add_header(o, n.as_ptr(), v.as_ptr(), e)
    });
    let s = Sess::new(&rt, &o);
    add_cookie(&s, &http("/"), "a=jar; Path=/").unwrap();
    assert_eq!(sent_cookie(&s.get(&http("/headers"))), "session=1");
}
