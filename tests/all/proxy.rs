//! Proxies against real servers: squid (basic auth, and a name only squid can
//! resolve), tinyproxy, microsocks (SOCKS5 with and without a password), a TLS front
//! before squid (an https:// proxy), and small in-process proxies that record what
//! tern sends on the wire. The environment variables are read in a child process, so
//! that no test changes the environment of the others.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::ptr::null_mut;
use std::sync::{Arc, Mutex};

use tern::code::tern_code;
use tern::ffi::options::*;
use tern::ffi::request::tern_request_set_proxy;

use crate::common::*;
use crate::options::set;

const HTTP1: u32 = 1;

fn proxy_opts(url: &str) -> Opts {
    let o = Opts::with_ca();
    let u = c(url);
    set(&o, |o, e| unsafe {
        tern_session_options_set_proxy(o, u.as_ptr(), e)
    });
    o
}

/// The port of the local nginx plain-HTTP server.
fn http_port() -> String {
    port_of(&http(""))
}

/// A URL on the plain-HTTP nginx that only squid can resolve (its hosts_file).
fn proxy_only(path: &str) -> String {
    format!("http://proxy-only.test:{}{path}", http_port())
}

fn via_squid(r: &Resp) -> bool {
    r.headers_named("via").iter().any(|v| v.contains("squid"))
}

#[test]
fn http_forward_through_squid_with_basic_auth() {
    let rt = Rt::new(2);
    // Credentials in the URL, percent-decoded ("p@ss word").
    let s = Sess::new(&rt, &proxy_opts(&squid_auth_url()));
    let r = s.get(&http("/hello"));
    assert_eq!(r.ok().status(), 200);
    assert_eq!(r.text(), "Hello, world!");
    assert!(
        via_squid(&r),
        "the response came through squid: {:?}",
        r.all_headers()
    );
    // A name only squid knows proves the proxy, not tern, resolved and connected.
    let r = s.get(&proxy_only("/hello"));
    assert_eq!((r.ok().status(), r.text().as_str()), (200, "Hello, world!"));
    // Its negative twin: without the proxy the name does not exist.
    let r = Sess::new(&rt, &Opts::new()).get(&proxy_only("/hello"));
    assert_unresolved(&r);

    // Credentials set separately work the same.
    let o = proxy_opts(&env("TERN_TEST_SQUID"));
    let (u, p) = (
        c(&env("TERN_TEST_PROXY_USER")),
        c(&env("TERN_TEST_PROXY_PASS")),
    );
    set(&o, |o, e| unsafe {
        tern_session_options_set_proxy_credentials(o, u.as_ptr(), p.as_ptr(), e)
    });
    let r = Sess::new(&rt, &o).get(&proxy_only("/hello"));
    assert_eq!(r.ok().status(), 200);

    // Wrong or missing credentials: PROXY_AUTH, with squid's 407 in the message.
    for url in [
        with_userinfo(&env("TERN_TEST_SQUID"), "tern", "wrong"),
        env("TERN_TEST_SQUID"),
    ] {
        let r = Sess::new(&rt, &proxy_opts(&url)).get(&http("/hello"));
        assert_eq!(r.code(), tern_code::ProxyAuth, "{url}: {}", r.message());
        assert!(r.message().contains("407"), "{}", r.message());
        assert!(
            !r.message().contains("wrong"),
            "the password is not shown: {}",
            r.message()
        );
    }
}

#[test]
fn https_through_connect_tunnels() {
    let rt = Rt::new(2);
    for (name, url) in [
        ("squid", squid_auth_url()),
        ("tinyproxy", env("TERN_TEST_TINYPROXY")),
        ("https proxy", env("TERN_TEST_HTTPS_PROXY")),
    ] {
        let s = Sess::new(&rt, &proxy_opts(&url));
        // HTTP/2 inside the tunnel (ALPN goes end to end), and HTTP/1.1.
        let r = s.get(&https("/hello"));
        assert_eq!((r.ok().status(), r.version()), (200, 20), "{name}");
        let r = s.perform(Req::new("GET", &https("/hello")).version(HTTP1));
        assert_eq!((r.ok().status(), r.version()), (200, 11), "{name}");
        // Plain HTTP is forwarded.
        let r = s.get(&http("/hello"));
        assert_eq!(r.ok().text(), "Hello, world!", "{name}");
    }
    // Through squid's tunnel the TLS name is still verified end to end.
    let s = Sess::new(&rt, &proxy_opts(&squid_auth_url()));
    let r = s.get(&format!("{}/hello", env("TERN_TEST_HTTPS_WRONGHOST")));
    assert_eq!(r.code(), tern_code::TlsVerify, "{}", r.message());

    // A 407 on CONNECT is PROXY_AUTH.
    let bad = with_userinfo(&env("TERN_TEST_SQUID"), "tern", "wrong");
    let r = Sess::new(&rt, &proxy_opts(&bad)).get(&https("/hello"));
    assert_eq!(r.code(), tern_code::ProxyAuth, "{}", r.message());

    // The https:// proxy's own certificate is verified: without the test CA it is
    // refused, and nothing falls back to a direct connection.
    let o = Opts::new();
    let u = c(&env("TERN_TEST_HTTPS_PROXY"));
    set(&o, |o, e| unsafe {
        tern_session_options_set_proxy(o, u.as_ptr(), e)
    });
    let r = Sess::new(&rt, &o).get(&http("/hello"));
    assert_eq!(r.code(), tern_code::TlsVerify, "{}", r.message());
    assert!(r.message().contains("proxy"), "{}", r.message());
}

#[test]
fn socks5_and_socks5h() {
    let rt = Rt::new(2);
    let socks = env("TERN_TEST_SOCKS");
    let (user, pass) = (env("TERN_TEST_SOCKS_USER"), env("TERN_TEST_SOCKS_PASS"));
    let auth = |scheme: &str| with_userinfo(&format!("{scheme}://{socks}"), &user, &pass);

    for scheme in ["socks5", "socks5h"] {
        let s = Sess::new(&rt, &proxy_opts(&auth(scheme)));
        assert_eq!(
            s.get(&http("/hello")).ok().text(),
            "Hello, world!",
            "{scheme}"
        );
        let r = s.get(&https("/hello"));
        assert_eq!((r.ok().status(), r.version()), (200, 20), "{scheme}");
        // Without a password the server refuses: PROXY_AUTH.
        let r = Sess::new(&rt, &proxy_opts(&format!("{scheme}://{socks}"))).get(&http("/hello"));
        assert_eq!(r.code(), tern_code::ProxyAuth, "{scheme}: {}", r.message());
        let bad = with_userinfo(&format!("{scheme}://{socks}"), &user, "wrong");
        let r = Sess::new(&rt, &proxy_opts(&bad)).get(&http("/hello"));
        assert_eq!(r.code(), tern_code::ProxyAuth, "{scheme}: {}", r.message());
    }
    // The server without authentication.
    let open = format!("socks5h://{}", env("TERN_TEST_SOCKS_NOAUTH"));
    assert_eq!(
        Sess::new(&rt, &proxy_opts(&open))
            .get(&http("/hello"))
            .ok()
            .status(),
        200
    );

    // Who resolves the name: tern maps localhost to an address where nothing
    // listens. socks5 (tern resolves) then fails at the proxy; socks5h hands the
    // name to the proxy, which resolves it to 127.0.0.1 and succeeds.
    let url = format!("http://localhost:{}/hello", http_port());
    let misled = |proxy: &str| {
        let o = proxy_opts(proxy);
        let entry = c(&format!("localhost:{}:127.0.0.2", http_port()));
        set(&o, |o, e| unsafe {
            tern_session_options_add_resolve(o, entry.as_ptr(), e)
        });
        Sess::new(&rt, &o).get(&url)
    };
    let r = misled(&auth("socks5h"));
    assert_eq!(r.ok().text(), "Hello, world!");
    let r = misled(&auth("socks5"));
    assert_eq!(r.code(), tern_code::Proxy, "{}", r.message());
}

#[test]
fn proxy_errors_never_fall_back_to_direct() {
    let rt = Rt::new(1);
    for dead in [
        "http://127.0.0.1:1",
        "https://127.0.0.1:1",
        "socks5://127.0.0.1:1",
        "socks5h://127.0.0.1:1",
    ] {
        let s = Sess::new(&rt, &proxy_opts(dead));
        for url in [http("/hello"), https("/hello")] {
            let r = s.get(&url);
            assert_eq!(
                r.code(),
                tern_code::ProxyConnect,
                "{dead} {url}: {}",
                r.message()
            );
        }
    }
    // A proxy that refuses the tunnel for another reason: PROXY with the status.
    // squid denies CONNECT to a port outside its allowed range.
    let s = Sess::new(&rt, &proxy_opts(&squid_auth_url()));
    let r = s.get("https://127.0.0.1:22/");
    assert_eq!(r.code(), tern_code::Proxy, "{}", r.message());
    assert!(r.message().contains("403"), "{}", r.message());

    // Bad proxy URLs are refused when set.
    let o = Opts::new();
    for (bad, code) in [
        ("ftp://127.0.0.1:1", tern_code::UnsupportedScheme),
        ("http://", tern_code::InvalidUrl),
        ("not a url", tern_code::InvalidUrl),
    ] {
        let u = c(bad);
        let mut e = null_mut();
        let got = unsafe { tern_session_options_set_proxy(o.0, u.as_ptr(), &mut e) };
        assert_eq!(got, code, "{bad}");
        assert!(!take_err(e).is_empty());
    }
}

#[test]
fn no_proxy_list_and_per_request_override() {
    let rt = Rt::new(1);
    let dead = "http://127.0.0.1:1";
    let port = http_port();
    let with_no = |list: &str| {
        let o = proxy_opts(dead);
        let l = c(list);
        set(&o, |o, e| unsafe {
            tern_session_options_set_no_proxy(o, l.as_ptr(), e)
        });
        let entry = c(&format!("www.tern.invalid:{port}:127.0.0.1"));
        set(&o, |o, e| unsafe {
            tern_session_options_add_resolve(o, entry.as_ptr(), e)
        });
        Sess::new(&rt, &o)
    };
    let direct = format!("http://127.0.0.1:{port}/hello");
    let named = format!("http://www.tern.invalid:{port}/hello");
    // Matching entries go direct (the dead proxy would fail them) ...
    for (list, url) in [
        ("127.0.0.1", &direct),
        ("127.0.0.0/8", &direct),
        ("*", &named),
        ("tern.invalid", &named),
        (".tern.invalid", &named),
        ("other.test, www.tern.invalid", &named),
    ] {
        let r = with_no(list).get(url);
        assert_eq!(
            r.code(),
            tern_code::Ok,
            "no_proxy {list:?} {url}: {}",
            r.message()
        );
    }
    // ... and the negative twins go to the proxy.
    for (list, url) in [
        ("localhost", &direct),
        ("10.0.0.0/8", &direct),
        ("ern.invalid", &named),
        ("www.tern.invalid.com", &named),
    ] {
        let r = with_no(list).get(url);
        assert_eq!(
            r.code(),
            tern_code::ProxyConnect,
            "no_proxy {list:?} {url}: {}",
            r.message()
        );
    }

    // Per request: "" goes direct, a URL picks another proxy, NULL restores the
    // session's choice.
    let s = Sess::new(&rt, &proxy_opts(dead));
    let req = |proxy: Option<&str>| {
        let r = Req::new("GET", &proxy_only("/hello"));
        let p = proxy.map(c);
        let code = unsafe {
            tern_request_set_proxy(
                r.0,
                p.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
                null_mut(),
            )
        };
        assert_eq!(code, tern_code::Ok);
        r
    };
    let r = s.perform(req(Some(&env("TERN_TEST_SQUID_NOAUTH"))));
    assert_eq!(
        r.ok().status(),
        200,
        "the request's proxy resolves proxy-only.test"
    );
    let r = s.perform(req(Some("")));
    assert_unresolved(&r);
    let r = s.perform(req(None));
    assert_eq!(
        r.code(),
        tern_code::ProxyConnect,
        "session's proxy: {}",
        r.message()
    );
    // A request can use a proxy on a session without one.
    let plain = Sess::new(&rt, &Opts::new());
    let r = plain.perform(req(Some(&env("TERN_TEST_SQUID_NOAUTH"))));
    assert_eq!(r.ok().status(), 200);
}

/// A one-connection recording proxy: stores the request head it receives; for
/// CONNECT it answers 200 and relays bytes to the target, otherwise it answers a
/// fixed 200.
fn recording_proxy() -> (RawServer, Arc<Mutex<Vec<String>>>) {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let h = heads.clone();
    let srv = RawServer::start(move |_, mut s| {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).unwrap_or(0) == 0 {
                return;
            }
            head.push(b[0]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        h.lock().unwrap().push(text.clone());
        if let Some(authority) = text
            .strip_prefix("CONNECT ")
            .and_then(|r| r.split(' ').next())
        {
            let Ok(up) = TcpStream::connect(authority) else {
                return;
            };
            let _ = s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            let (mut a, mut b2) = (s.try_clone().unwrap(), up.try_clone().unwrap());
            let mut up2 = up;
            let t = std::thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut up2);
                let _ = up2.shutdown(std::net::Shutdown::Write);
            });
            let _ = std::io::copy(&mut b2, &mut s);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let _ = t.join();
        } else {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nproxied",
            );
        }
    });
    (srv, heads)
}

#[test]
fn what_goes_on_the_wire_to_a_proxy() {
    let rt = Rt::new(1);
    let (srv, heads) = recording_proxy();
    let o = proxy_opts(&with_userinfo(
        &format!("http://127.0.0.1:{}", srv.port),
        "u",
        "p@ss",
    ));
    let (n, v) = (c("X-Tern-Proxy"), c("connect-only"));
    set(&o, |o, e| unsafe {
        tern_session_options_add_proxy_header(o, n.as_ptr(), v.as_ptr(), e)
    });
    let s = Sess::new(&rt, &o);

    // Plain HTTP: absolute-form request line, Proxy-Authorization to the proxy.
    let r = s.get("http://example.invalid:8080/a?b=c");
    assert_eq!(r.ok().text(), "proxied");
    let head = heads.lock().unwrap()[0].clone();
    let lower = head.to_ascii_lowercase();
    assert!(
        head.starts_with("GET http://example.invalid:8080/a?b=c HTTP/1.1\r\n"),
        "{head}"
    );
    // base64("u:p@ss") = dTpwQHNz
    assert!(
        lower.contains("proxy-authorization: basic dtpwqhnz\r\n"),
        "{head}"
    );
    assert!(lower.contains("host: example.invalid:8080\r\n"), "{head}");

    // HTTPS: a CONNECT with the credentials and the extra header, and the origin
    // request inside the tunnel carries neither.
    let r = s.perform(Req::new("GET", &https("/headers")).version(HTTP1));
    let body = r.ok().text();
    let connect = heads.lock().unwrap()[1].clone();
    let lower = connect.to_ascii_lowercase();
    let authority = https("").trim_start_matches("https://").to_owned();
    assert!(
        connect.starts_with(&format!("CONNECT {authority} HTTP/1.1\r\n")),
        "{connect}"
    );
    assert!(
        lower.contains(&format!("host: {authority}\r\n")),
        "{connect}"
    );
    assert!(
        lower.contains("proxy-authorization: basic dtpwqhnz\r\n"),
        "{connect}"
    );
    assert!(
        lower.contains("x-tern-proxy: connect-only\r\n"),
        "{connect}"
    );
    assert!(body.contains("method=GET"), "{body}");
    assert!(!body.to_ascii_lowercase().contains("dtpwqhnz"), "{body}");
}

#[test]
fn environment_variables_when_trusted() {
    // Each case runs this same test in a child process with its own environment.
    if let Ok(case) = std::env::var("TERN_ENV_CASE") {
        return env_case(&case);
    }
    let squid = env("TERN_TEST_SQUID_NOAUTH");
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("off", vec![("http_proxy", squid.clone())]),
        ("proxied", vec![("http_proxy", squid.clone())]),
        ("proxied", vec![("HTTP_PROXY", squid.clone())]),
        // Lower case wins over upper case.
        (
            "proxied",
            vec![
                ("http_proxy", squid.clone()),
                ("HTTP_PROXY", "http://127.0.0.1:1".into()),
            ],
        ),
        (
            "dead",
            vec![
                ("http_proxy", "http://127.0.0.1:1".into()),
                ("HTTP_PROXY", squid.clone()),
            ],
        ),
        // The CGI rule: HTTP_PROXY is ignored when REQUEST_METHOD is set.
        (
            "direct",
            vec![
                ("HTTP_PROXY", squid.clone()),
                ("REQUEST_METHOD", "GET".into()),
            ],
        ),
        (
            "proxied",
            vec![
                ("http_proxy", squid.clone()),
                ("REQUEST_METHOD", "GET".into()),
            ],
        ),
        // NO_PROXY, lower case first.
        (
            "direct",
            vec![
                ("http_proxy", squid.clone()),
                ("no_proxy", "proxy-only.test".into()),
            ],
        ),
        (
            "direct",
            vec![("http_proxy", squid.clone()), ("NO_PROXY", "*".into())],
        ),
        (
            "proxied",
            vec![
                ("http_proxy", squid.clone()),
                ("no_proxy", "other.test".into()),
                ("NO_PROXY", "*".into()),
            ],
        ),
        // ALL_PROXY covers both schemes; HTTPS_PROXY only https.
        ("proxied", vec![("ALL_PROXY", squid.clone())]),
        ("direct", vec![("HTTPS_PROXY", squid.clone())]),
        (
            "https_dead",
            vec![("HTTPS_PROXY", "http://127.0.0.1:1".into())],
        ),
        // ALL_PROXY covers the scheme without a proxy of its own.
        (
            "proxied_https_dead",
            vec![
                ("https_proxy", "http://127.0.0.1:1".into()),
                ("ALL_PROXY", squid.clone()),
            ],
        ),
    ];
    for (case, vars) in cases {
        let mut set: Vec<(&str, &str)> = vec![("TERN_ENV_CASE", case)];
        set.extend(vars.iter().map(|(k, v)| (*k, v.as_str())));
        run_in_child(
            "proxy::environment_variables_when_trusted",
            &set,
            &[
                "http_proxy",
                "HTTP_PROXY",
                "https_proxy",
                "HTTPS_PROXY",
                "all_proxy",
                "ALL_PROXY",
                "no_proxy",
                "NO_PROXY",
                "REQUEST_METHOD",
            ],
        );
    }
}

/// One environment case, in the child process.
fn env_case(case: &str) {
    let rt = Rt::new(1);
    let o = Opts::with_ca();
    let on = u32::from(case != "off");
    set(&o, |o, e| unsafe {
        tern_session_options_set_trust_env(o, on, e)
    });
    let s = Sess::new(&rt, &o);
    let r = s.get(&proxy_only("/hello"));
    match case {
        "proxied" | "proxied_https_dead" => {
            assert_eq!(r.code(), tern_code::Ok, "{}", r.message())
        }
        "off" | "direct" | "https_dead" => assert_unresolved(&r),
        "dead" => assert_eq!(r.code(), tern_code::ProxyConnect, "{}", r.message()),
        _ => unreachable!(),
    }
    if case.ends_with("https_dead") {
        let r = s.get(&https("/hello"));
        assert_eq!(r.code(), tern_code::ProxyConnect, "{}", r.message());
    }
}
