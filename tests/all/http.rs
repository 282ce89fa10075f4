//! HTTP behaviour against nginx: versions, TLS, headers, bodies, redirects, decoding,
//! limits and the connection pool.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tern::code::tern_code;
use tern::ffi::options::*;

use crate::common::*;

const TIMEOUT_TOTAL: u32 = 0;
const HTTP1: u32 = 1;
const H2: u32 = 2;
const DNS: u32 = 0;
const CONNECT: u32 = 1;
const TLS: u32 = 2;
const TTFB: u32 = 3;
const TOTAL: u32 = 4;

#[test]
fn get_over_http1_https_h2_and_h2c() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::with_ca());
    let r = s.get(&http("/hello"));
    r.ok();
    assert_eq!(
        (r.status(), r.version(), r.text().as_str()),
        (200, 11, "Hello, world!")
    );
    assert_eq!(r.header("CONTENT-TYPE").as_deref(), Some("text/plain"));
    assert!(r.remote().starts_with("127.0.0.1:"), "{}", r.remote());

    let r = s.get(&https("/hello"));
    r.ok();
    assert_eq!((r.status(), r.version()), (200, 20), "ALPN should pick h2");
    assert!(r.timing(TLS) > 0);

    let r = s.perform(Req::new("GET", &https("/hello")).version(HTTP1));
    r.ok();
    assert_eq!(r.version(), 11, "HTTP/1.1 only must not negotiate h2");

    let r = s.get(&format!("{}/hello", env("TERN_TEST_HTTPS_H1")));
    r.ok();
    assert_eq!(
        r.version(),
        11,
        "a server without h2 falls back to HTTP/1.1"
    );

    let r = s.perform(Req::new("GET", &format!("{}/hello", env("TERN_TEST_H2C"))).version(H2));
    r.ok();
    assert_eq!((r.version(), r.text().as_str()), (20, "Hello, world!"));

    let r = s.perform(Req::new("GET", &format!("{}/hello", env("TERN_TEST_HTTPS_H1"))).version(H2));
    // The server refuses the ALPN list with a TLS alert: a TLS error naming it.
    assert_eq!(
        r.code(),
        tern_code::Tls,
        "h2 required but refused: {}",
        r.message()
    );
    assert!(
        r.message().contains("NoApplicationProtocol"),
        "{}",
        r.message()
    );
}

#[test]
fn ipv6_loopback() {
    let Ok(url) = std::env::var("TERN_TEST_HTTP6")
        .or_else(|_| std::panic::catch_unwind(|| env("TERN_TEST_HTTP6")).map_err(|_| ()))
    else {
        // The machine has no IPv6 loopback: testenv.sh did not listen on ::1.
        assert!(
            !std::path::Path::new("/proc/net/if_inet6").exists()
                || std::fs::read_to_string("/proc/net/if_inet6")
                    .unwrap_or_default()
                    .is_empty()
        );
        return;
    };
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    let r = s.get(&format!("{url}/hello"));
    r.ok();
    assert!(r.remote().starts_with("[::1]:"), "{}", r.remote());
}

#[test]
fn tls_verification_errors_are_distinct() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::with_ca());
    let cases = [
        ("TERN_TEST_HTTPS_EXPIRED", "expired"),
        ("TERN_TEST_HTTPS_WRONGHOST", "name mismatch"),
        ("TERN_TEST_HTTPS_SELFSIGNED", "self-signed"),
    ];
    for (var, why) in cases {
        let r = s.get(&format!("{}/hello", env(var)));
        assert_eq!(r.code(), tern_code::TlsVerify, "{var}: {}", r.message());
        assert!(r.message().contains(why), "{var}: {}", r.message());
    }
    // Without the test CA, the system roots do not trust the test server.
    let plain = Sess::new(&rt, &Opts::new());
    let r = plain.get(&https("/hello"));
    assert_eq!(r.code(), tern_code::TlsVerify, "{}", r.message());
    assert!(r.message().contains("unknown issuer"), "{}", r.message());
    // With only the other CA and no system roots, neither.
    let o = Opts::new();
    let other = c(&env("TERN_TEST_OTHER_CA"));
    unsafe {
        assert_eq!(
            tern_session_options_add_ca_file(o.0, other.as_ptr(), std::ptr::null_mut()),
            tern_code::Ok
        );
        assert_eq!(
            tern_session_options_set_system_roots(o.0, 0, std::ptr::null_mut()),
            tern_code::Ok
        );
    }
    let r = Sess::new(&rt, &o).get(&https("/hello"));
    assert_eq!(r.code(), tern_code::TlsVerify, "{}", r.message());
    // The CA given as PEM bytes works like the file.
    let o = Opts::new();
    let pem = std::fs::read(env("TERN_TEST_CA")).unwrap();
    unsafe {
        assert_eq!(
            tern_session_options_add_ca_pem(o.0, pem.as_ptr(), pem.len(), std::ptr::null_mut()),
            tern_code::Ok
        );
    }
    Sess::new(&rt, &o).get(&https("/hello")).ok();
}

#[test]
fn headers_default_user_agent_add_and_set() {
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    let r = s.get(&http("/headers"));
    r.ok();
    let ua = format!("user-agent=tern/{}", env!("CARGO_PKG_VERSION"));
    assert!(r.text().contains(&ua), "{}", r.text());

    // Session headers: set replaces the default user agent; add appends.
    let o = Opts::new();
    let (n, v, x, v1) = (c("User-Agent"), c("mine/1"), c("x-test"), c("from-session"));
    unsafe {
        tern_session_options_set_header(o.0, n.as_ptr(), v.as_ptr(), std::ptr::null_mut());
        tern_session_options_add_header(o.0, x.as_ptr(), v1.as_ptr(), std::ptr::null_mut());
    }
    let s2 = Sess::new(&rt, &o);
    let t = s2.get(&http("/headers")).text();
    assert!(
        t.contains("user-agent=mine/1\n") && t.contains("x-test=from-session\n"),
        "{t}"
    );
    // A request header of the same name replaces the session's.
    let t = s2
        .perform(Req::new("GET", &http("/headers")).header("X-Test", "req"))
        .text();
    assert!(t.contains("x-test=req\n"), "{t}");
    // Repeated request headers are all sent, in order (seen raw by an in-process server).
    let srv = RawServer::start(|_, mut s| {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && std::io::Read::read(&mut s, &mut b).unwrap_or(0) == 1
        {
            head.push(b[0]);
        }
        let _ = respond(&mut s, "200 OK", "", &head);
    });
    let t = s2
        .perform(
            Req::new("GET", &srv.url("/"))
                .header("x-test", "a")
                .header("x-test", "b"),
        )
        .text();
    let a = t.find("x-test: a\r\n").expect(&t);
    let b = t.find("x-test: b\r\n").expect(&t);
    assert!(a < b, "{t}");
    let t = s2
        .perform(
            Req::new("GET", &http("/headers"))
                .header("x-test", "a")
                .set_header("x-test", "c"),
        )
        .text();
    assert!(t.contains("x-test=c\n"), "{t}");
}

#[test]
fn repeated_response_headers_are_kept_in_order() {
    let srv = RawServer::start(|_, mut s| {
        while read_request(&mut s).is_some() {
            let _ = respond(
                &mut s,
                "200 OK",
                "set-cookie: a=1\r\nX-One: 1\r\nSet-Cookie: b=2\r\n",
                b"ok",
            );
        }
    });
    let rt = Rt::new(1);
    let r = Sess::new(&rt, &Opts::new()).get(&srv.url("/"));
    r.ok();
    assert_eq!(r.headers_named("Set-Cookie"), vec!["a=1", "b=2"]);
    let names: Vec<_> = r.all_headers().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().all(|n| n == &n.to_ascii_lowercase()),
        "{names:?}"
    );
    assert!(names.contains(&"x-one".to_owned()));
}

#[test]
fn bodies_copied_and_borrowed() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let r = s.perform(Req::new("POST", &http("/echo")).body(b"hello body"));
    r.ok();
    assert_eq!(r.text(), "method=POST\nhello body");

    // Borrowed: not copied, released exactly once after completion.
    static RELEASED: AtomicUsize = AtomicUsize::new(0);
    unsafe extern "C" fn rel(ud: *mut std::ffi::c_void) {
        assert_eq!(ud as usize, 0x1234);
        RELEASED.fetch_add(1, Ordering::SeqCst);
    }
    let data: &'static [u8] = &[b'x'; 100_000];
    let req = Req::new("PUT", &http("/echo"));
    assert_eq!(
        unsafe {
            tern::ffi::request::tern_request_set_body_borrowed(
                req.0,
                data.as_ptr(),
                data.len(),
                Some(rel),
                0x1234 as *mut _,
                std::ptr::null_mut(),
            )
        },
        tern_code::Ok
    );
    let r = s.perform(req);
    r.ok();
    assert_eq!(r.body().len(), "method=PUT\n".len() + data.len());
    assert!(wait_for(std::time::Duration::from_secs(2), || RELEASED
        .load(Ordering::SeqCst)
        == 1));
    // A borrowed body on a request that is freed unsent is released too.
    let req = Req::new("PUT", &http("/echo"));
    unsafe {
        tern::ffi::request::tern_request_set_body_borrowed(
            req.0,
            data.as_ptr(),
            data.len(),
            Some(rel),
            0x1234 as *mut _,
            std::ptr::null_mut(),
        );
    }
    drop(req);
    assert_eq!(RELEASED.load(Ordering::SeqCst), 2);
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        RELEASED.load(Ordering::SeqCst),
        2,
        "released more than once"
    );
}

#[test]
fn redirects() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::with_ca());
    let r = s.get(&http("/redirect/5"));
    r.ok();
    assert_eq!(
        (r.status(), r.redirects(), r.text().as_str()),
        (200, 5, "Hello, world!")
    );
    assert!(
        r.effective_url().ends_with("/hello"),
        "{}",
        r.effective_url()
    );

    let r = s.perform(Req::new("GET", &http("/redirect/5")).redirects(1, 4));
    assert_eq!(r.code(), tern_code::TooManyRedirects, "{}", r.message());
    let r = s.get(&http("/redirect-loop"));
    assert_eq!(r.code(), tern_code::TooManyRedirects);
    let r = s.perform(Req::new("GET", &http("/redirect/2")).redirects(0, 10));
    r.ok();
    assert_eq!((r.status(), r.redirects()), (302, 0));
    assert!(r.header("location").unwrap().ends_with("/redirect/1"));

    // 301/302/303 turn POST into GET without body; 307/308 keep both.
    for (path, method, body) in [
        ("/r301", "GET", ""),
        ("/r302", "GET", ""),
        ("/r303", "GET", ""),
        ("/r307", "POST", "payload"),
        ("/r308", "POST", "payload"),
    ] {
        let r = s.perform(Req::new("POST", &http(path)).body(b"payload"));
        r.ok();
        assert_eq!(r.text(), format!("method={method}\n{body}"), "{path}");
    }
    // https -> http is refused by default...
    let r = s.get(&https("/redirect-abs"));
    assert_eq!(r.code(), tern_code::InsecureRedirect, "{}", r.message());
    // ...and allowed when asked.
    let o = Opts::with_ca();
    unsafe { tern_session_options_set_danger_allow_https_downgrade(o.0, 1, std::ptr::null_mut()) };
    let r = Sess::new(&rt, &o).get(&https("/redirect-abs"));
    r.ok();
    assert_eq!(r.text(), "Hello, world!");
}

#[test]
fn credentials_are_not_forwarded_to_another_origin() {
    // An in-process origin redirects to nginx (another origin), which shows the
    // headers it received.
    let target = http("/headers");
    let srv = RawServer::start(move |_, mut s| {
        while read_request(&mut s).is_some() {
            let _ = respond(&mut s, "302 Found", &format!("location: {target}\r\n"), b"");
        }
    });
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    let r = s.perform(
        Req::new("GET", &srv.url("/"))
            .header("Authorization", "Bearer s3cret")
            .header("Cookie", "sid=s3cret")
            .header("X-Test", "kept"),
    );
    r.ok();
    let t = r.text();
    assert!(
        t.contains("authorization=\n") && t.contains("cookie=\n"),
        "{t}"
    );
    assert!(t.contains("x-test=kept\n"), "{t}");
    // Same origin keeps them.
    let r = s.perform(Req::new("GET", &http("/redirect/1")).header("Authorization", "Bearer a"));
    assert_eq!(r.text(), "Hello, world!");
    let srv2 = RawServer::start(|_, mut s| {
        while let Some((line, _, _)) = read_request(&mut s) {
            if line.starts_with("GET /start") {
                let _ = respond(&mut s, "302 Found", "location: /end\r\n", b"");
            } else {
                let _ = respond(&mut s, "200 OK", "", b"end");
            }
        }
    });
    let _ = srv2;
}

#[test]
fn userinfo_becomes_basic_auth_and_is_redacted() {
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let seen2 = seen.clone();
    let srv = RawServer::start(move |_, mut s| {
        if let Some((_, h, _)) = read_request(&mut s) {
            *seen2.lock().unwrap() = h.get("authorization").cloned().unwrap_or_default();
            let _ = respond(&mut s, "200 OK", "", b"ok");
        }
    });
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    let url = format!("http://alice:p%40ss@127.0.0.1:{}/x", srv.port);
    let r = s.get(&url);
    r.ok();
    // "alice:p@ss" in base64.
    assert_eq!(*seen.lock().unwrap(), "Basic YWxpY2U6cEBzcw==");
    assert!(
        !r.effective_url().contains("p%40ss") && !r.effective_url().contains("alice"),
        "{}",
        r.effective_url()
    );
    // Errors do not show them either.
    let r = s.get("http://alice:hunter2@127.0.0.1:1/");
    assert_eq!(r.code(), tern_code::ConnectionRefused);
    assert!(!r.message().contains("hunter2") && !r.effective_url().contains("hunter2"));
    let mut e = std::ptr::null_mut();
    let mut out = std::ptr::null_mut();
    let (m, u) = (c("GET"), c("http://alice:hunter2@[bad/"));
    let code =
        unsafe { tern::ffi::request::tern_request_new(m.as_ptr(), u.as_ptr(), &mut out, &mut e) };
    assert_eq!(code, tern_code::InvalidUrl);
    let msg = take_err(e);
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn decoding_gzip_deflate_br() {
    let plain = std::fs::read(format!("{}/www/gzip/text", env("TERN_TESTENV_DIR"))).unwrap();
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let r = s.get(&http("/gzip/text"));
    r.ok();
    assert_eq!(r.body(), plain, "gzip body decoded");
    assert_eq!(r.header("content-encoding"), None);
    // The caller's own Accept-Encoding: body left as sent.
    let r = s.perform(Req::new("GET", &http("/gzip/text")).header("accept-encoding", "gzip"));
    assert_eq!(r.header("content-encoding").as_deref(), Some("gzip"));
    assert_ne!(r.body(), plain);
    // Decoding off: nothing is asked for.
    let o = Opts::new();
    unsafe { tern_session_options_set_decompress(o.0, 0, std::ptr::null_mut()) };
    let t = Sess::new(&rt, &o).get(&http("/headers")).text();
    assert!(t.contains("accept-encoding=\n"), "{t}");

    // deflate (zlib) and br from an in-process server.
    let p2 = plain.clone();
    let srv = RawServer::start(move |_, mut s| {
        while let Some((line, h, _)) = read_request(&mut s) {
            assert_eq!(
                h.get("accept-encoding").map(String::as_str),
                Some("gzip, deflate, br")
            );
            let (enc, body) = if line.contains("/deflate") {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&p2).unwrap();
                ("deflate", e.finish().unwrap())
            } else if line.contains("/br") {
                let mut out = Vec::new();
                brotli::BrotliCompress(&mut &p2[..], &mut out, &Default::default()).unwrap();
                ("br", out)
            } else {
                ("gzip", b"this is not gzip".to_vec())
            };
            let _ = respond(
                &mut s,
                "200 OK",
                &format!("content-encoding: {enc}\r\n"),
                &body,
            );
        }
    });
    for path in ["/deflate", "/br"] {
        let r = s.get(&srv.url(path));
        r.ok();
        assert_eq!(r.body(), plain, "{path}");
    }
    let r = s.get(&srv.url("/bad"));
    assert_eq!(r.code(), tern_code::Decoding, "{}", r.message());
}

#[test]
fn body_and_header_limits() {
    let rt = Rt::new(2);
    let o = Opts::new();
    unsafe { tern_session_options_set_max_body_size(o.0, 1000, std::ptr::null_mut()) };
    let s = Sess::new(&rt, &o);
    let r = s.get(&http("/bytes/1m"));
    assert_eq!(r.code(), tern_code::BodyTooLarge, "{}", r.message());
    s.get(&http("/hello")).ok();
    // Decoded size counts: /gzip/text is ~100 KiB decoded.
    let r = s.get(&http("/gzip/text"));
    assert_eq!(r.code(), tern_code::BodyTooLarge);

    let s = Sess::new(&rt, &Opts::with_ca());
    let r = s.get(&http("/big-header"));
    r.ok();
    assert_eq!(r.header("x-big").map(|v| v.len()), Some(65536));
    let o = Opts::with_ca();
    unsafe { tern_session_options_set_max_header_size(o.0, 16384, std::ptr::null_mut()) };
    let s = Sess::new(&rt, &o);
    let r = s.get(&http("/big-header"));
    assert_eq!(r.code(), tern_code::HeadersTooLarge, "{}", r.message());
    let r = s.get(&https("/big-header"));
    assert_ne!(
        r.code(),
        tern_code::Ok,
        "h2 header list limit: {}",
        r.message()
    );
}

#[test]
fn large_body_intact() {
    use sha2::Digest;
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::with_ca());
    for url in [http("/bytes/16m"), https("/bytes/16m")] {
        let r = s.get(&url);
        r.ok();
        let hex: String = sha2::Sha256::digest(r.body())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, env("TERN_TEST_SHA256_16M"), "{url}");
    }
}

#[test]
fn status_codes_are_not_errors_and_timings_make_sense() {
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    for code in [404u16, 500, 503] {
        let r = s.get(&http(&format!("/status/{code}")));
        r.ok();
        assert_eq!(r.status(), code);
    }
    let r = s.perform(Req::new("HEAD", &http("/bytes/1m")));
    r.ok();
    assert_eq!((r.status(), r.body().len()), (200, 0));
    // A fresh session dials: connect > 0; the next request reuses: no dns/connect.
    let s = Sess::new(&rt, &Opts::new());
    let r = s.get(&http("/hello"));
    assert!(r.timing(CONNECT) > 0 && r.timing(TOTAL) >= r.timing(TTFB) && r.timing(TTFB) > 0);
    let r = s.get(&http("/hello"));
    assert_eq!(
        (r.timing(DNS), r.timing(CONNECT), r.timing(TLS)),
        (0, 0, 0),
        "connection reused"
    );
    assert_eq!(r.timing(99), 0);
    let _ = TIMEOUT_TOTAL;
}

#[test]
fn pool_reuses_and_expires_connections() {
    let srv = RawServer::start(|_, mut s| {
        while read_request(&mut s).is_some() {
            if respond(&mut s, "200 OK", "", b"ok").is_err() {
                return;
            }
        }
    });
    let rt = Rt::new(2);
    let o = Opts::new();
    unsafe { tern_session_options_set_pool(o.0, 300, 4, std::ptr::null_mut()) };
    let s = Sess::new(&rt, &o);
    for _ in 0..20 {
        s.get(&srv.url("/")).ok();
    }
    assert_eq!(
        srv.accepted(),
        1,
        "sequential requests share one connection"
    );
    std::thread::sleep(std::time::Duration::from_millis(700));
    s.get(&srv.url("/")).ok();
    assert_eq!(
        srv.accepted(),
        2,
        "idle connection dropped after the idle time-out"
    );
    // No reuse when max idle per host is 0.
    let o = Opts::new();
    unsafe { tern_session_options_set_pool(o.0, 30000, 0, std::ptr::null_mut()) };
    let s = Sess::new(&rt, &o);
    s.get(&srv.url("/")).ok();
    s.get(&srv.url("/")).ok();
    assert_eq!(srv.accepted(), 4);
}

#[test]
fn h2_requests_share_one_connection() {
    let rt = Rt::new(2);
    let s = Arc::new(Sess::new(&rt, &Opts::with_ca()));
    s.get(&https("/hello")).ok();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..100 {
        let d = done.clone();
        s.send(Req::new("GET", &https("/hello")), move |r| {
            r.ok();
            assert_eq!(r.version(), 20);
            assert_eq!(
                r.timing(CONNECT),
                0,
                "h2 requests must share the connection"
            );
            d.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    assert!(wait_for(std::time::Duration::from_secs(10), || done
        .load(Ordering::SeqCst)
        == 100));
}

#[test]
fn dead_pooled_connection_is_retried_once_for_idempotent_requests() {
    // Each connection answers its first request, then closes on the second without
    // answering: the client sees a reused connection die.
    let srv = RawServer::start(|_, mut s| {
        if read_request(&mut s).is_some() {
            let _ = respond(&mut s, "200 OK", "", b"first");
        }
        let _ = read_request(&mut s);
    });
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    s.get(&srv.url("/")).ok();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let r = s.get(&srv.url("/"));
    r.ok();
    assert_eq!(r.text(), "first", "retried on a new connection");
    assert_eq!(srv.accepted(), 2);
    // POST is not idempotent: no retry once it was sent.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let r = s.perform(Req::new("POST", &srv.url("/")).body(b"x"));
    assert_ne!(r.code(), tern_code::Ok);
    assert_eq!(srv.accepted(), 2, "POST must not be retried");
}
