//! WebSockets against a peer built on a library not written here: Python's
//! `websockets` (scripts/ws_echo_server.py, started by scripts/testenv.sh), over ws and
//! wss, with a client certificate, through squid (CONNECT) and microsocks (SOCKS5).

use std::ptr::null_mut;
use std::time::{Duration, Instant};

use tern::code::tern_code;
use tern::ffi::options::*;
use tern::ffi::ws::*;

use crate::common::*;
use crate::options::set;

const T: Duration = Duration::from_secs(10);
const TEXT: u32 = 1;
const BINARY: u32 = 2;
const CONNECTING: u32 = 0;
const OPEN: u32 = 1;
const CLOSED: u32 = 3;
const TO_HANDSHAKE: u32 = 1;
const TO_RECEIVE: u32 = 2;
const TO_CLOSE: u32 = 3;

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Sends `msgs` and checks they come back in order, kind included.
fn echo_all(ws: &WsHandle, r: &WsRec, msgs: &[(u32, Vec<u8>)]) {
    let before = r.messages().len();
    for (k, m) in msgs {
        // A full send queue (1 MiB by default) refuses until the writer catches up.
        let end = Instant::now() + T;
        loop {
            let code = if *k == TEXT {
                ws.send_text(std::str::from_utf8(m).unwrap())
            } else {
                ws.send_binary(m)
            };
            if code == tern_code::WouldBlock && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            assert_eq!(code, tern_code::Ok);
            break;
        }
    }
    let got = r.wait_messages(before + msgs.len(), T);
    assert_eq!(got.len(), before + msgs.len());
    for (i, (want, have)) in msgs.iter().zip(&got[before..]).enumerate() {
        assert_eq!(want.0, have.0, "kind of message {i}");
        assert!(
            want.1 == have.1,
            "message {i}: {} bytes sent, {} back",
            want.1.len(),
            have.1.len()
        );
    }
}

/// Closes with 1000 and checks the clean end.
fn close_cleanly(ws: &WsHandle, r: &WsRec) {
    assert_eq!(ws.close(1000, "done"), tern_code::Ok);
    let c = r.wait_close(T);
    assert_eq!(c.code, tern_code::Ok, "{c:?}");
    assert_eq!(
        (c.close_code, c.clean, c.opened),
        (1000, true, true),
        "{c:?}"
    );
    r.wait_release(T);
    assert_eq!(ws.state(), CLOSED);
    assert_eq!(ws.send_text("late"), tern_code::InvalidState);
}

fn sizes() -> Vec<(u32, Vec<u8>)> {
    let mut v = vec![
        (TEXT, "héllo wörld ✓".as_bytes().to_vec()),
        (TEXT, Vec::new()),
        (BINARY, vec![0, 1, 2, 255]),
    ];
    for n in [0usize, 1, 125, 126, 65535, 65536, 1 << 20] {
        v.push((BINARY, (0..n).map(|i| (i % 251) as u8).collect()));
    }
    v.push((TEXT, "x".repeat(70000).into_bytes()));
    v
}

#[test]
fn echo_over_ws() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (ws, r) = s.ws_connect(&ws_url("/echo"), &WsOpts::new());
    assert!(ws.id() > 0);
    match r.wait_open(T) {
        WsEvent::Open {
            status,
            headers,
            remote,
            subprotocol,
        } => {
            assert_eq!(status, 101);
            assert!(remote.starts_with("127.0.0.1:"), "{remote}");
            assert_eq!(subprotocol, None);
            // The server would accept permessage-deflate; tern offers none.
            assert_eq!(
                header(&headers, "sec-websocket-extensions"),
                None,
                "{headers:?}"
            );
            assert!(header(&headers, "sec-websocket-accept").is_some());
        }
        _ => unreachable!(),
    }
    assert_eq!(ws.state(), OPEN);
    echo_all(&ws, &r, &sizes());
    close_cleanly(&ws, &r);
}

#[test]
fn echo_over_wss_with_the_test_ca() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::with_ca());
    let (ws, r) = s.ws_connect(&wss_url("/echo"), &WsOpts::new());
    r.wait_open(T);
    echo_all(&ws, &r, &sizes());
    close_cleanly(&ws, &r);

    // Without the CA the certificate does not verify, and no head arrives.
    let s2 = Sess::new(&rt, &Opts::new());
    let (_ws, r) = s2.ws_connect(&wss_url("/echo"), &WsOpts::new());
    let c = r.wait_close(T);
    assert_eq!(c.code, tern_code::TlsVerify, "{c:?}");
    assert_eq!(
        (c.close_code, c.clean, c.opened, c.status),
        (1006, false, false, 0)
    );
    r.wait_release(T);
}

#[test]
fn wss_with_a_client_certificate() {
    let rt = Rt::new(2);
    // Without one the server refuses the connection.
    let s = Sess::new(&rt, &Opts::with_ca());
    let (_ws, r) = s.ws_connect(&wss_mtls_url("/peer"), &WsOpts::new());
    let end = r.wait_close(T);
    assert_ne!(end.code, tern_code::Ok, "{end:?}");
    assert!(!end.opened);

    let o = Opts::with_ca();
    let (cert, key) = (
        c(&env("TERN_TEST_CLIENT_CERT")),
        c(&env("TERN_TEST_CLIENT_KEY")),
    );
    set(&o, |o, e| unsafe {
        tern_session_options_set_client_cert_file(o, cert.as_ptr(), key.as_ptr(), e)
    });
    let s = Sess::new(&rt, &o);
    let (ws, r) = s.ws_connect(&wss_mtls_url("/peer"), &WsOpts::new());
    let m = r.wait_messages(1, T);
    let subject = String::from_utf8_lossy(&m[0].1).into_owned();
    assert!(subject.contains("tern test client"), "{subject}");
    close_cleanly(&ws, &r);
}

#[test]
fn fragments_are_assembled() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (ws, r) = s.ws_connect(&ws_url("/fragments"), &WsOpts::new());
    let m = r.wait_messages(2, T);
    assert_eq!(m[0], (TEXT, b"frag-mented text".to_vec()));
    assert_eq!(m[1], (BINARY, vec![0, 1, 2]));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(r.messages().len(), 2);
    close_cleanly(&ws, &r);
}

#[test]
fn subprotocols() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let o = WsOpts::new().subprotocol("chat.v1").subprotocol("x");
    let (ws, r) = s.ws_connect(&ws_url("/subprotocol"), &o);
    match r.wait_open(T) {
        WsEvent::Open {
            headers,
            subprotocol,
            ..
        } => {
            assert_eq!(subprotocol.as_deref(), Some("chat.v1"));
            assert_eq!(header(&headers, "sec-websocket-protocol"), Some("chat.v1"));
        }
        _ => unreachable!(),
    }
    assert_eq!(ws.subprotocol().as_deref(), Some("chat.v1"));
    assert_eq!(r.wait_messages(1, T)[0].1, b"chat.v1");
    close_cleanly(&ws, &r);

    // Nothing offered: none chosen.
    let (ws, r) = s.ws_connect(&ws_url("/subprotocol"), &WsOpts::new());
    assert_eq!(r.wait_messages(1, T)[0].1, b"");
    assert_eq!(ws.subprotocol(), None);
    close_cleanly(&ws, &r);

    // Offered, but the server picks none: the open succeeds (RFC 6455 4.1).
    let (ws, r) = s.ws_connect(&ws_url("/echo"), &WsOpts::new().subprotocol("x"));
    r.wait_open(T);
    assert_eq!(ws.subprotocol(), None);
    close_cleanly(&ws, &r);
}

#[test]
fn headers_origin_and_user_agent() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let o = WsOpts::new()
        .header("X-Extra", "one")
        .origin("https://app.example");
    let (ws, r) = s.ws_connect(&ws_url("/headers"), &o);
    let m = r.wait_messages(1, T);
    let text = String::from_utf8_lossy(&m[0].1).into_owned();
    // Names go out in title case (hyper's: "Sec-Websocket-Key"), which servers picky
    // about case accept; compared here without case.
    let lower = text.to_ascii_lowercase();
    for want in [
        "[\"x-extra\", \"one\"]",
        "[\"origin\", \"https://app.example\"]",
        "[\"sec-websocket-key\",",
        "[\"sec-websocket-version\", \"13\"]",
        "[\"upgrade\", \"websocket\"]",
        "[\"connection\", \"upgrade\"]",
        "[\"user-agent\", \"tern/",
    ] {
        assert!(lower.contains(want), "{want} not in {text}");
    }
    assert!(
        text.contains("[\"Sec-Websocket-Key\","),
        "title case: {text}"
    );
    assert!(!lower.contains("sec-websocket-extensions"), "{text}");
    assert!(!lower.contains("accept-encoding"), "{text}");
    close_cleanly(&ws, &r);

    // URL user info becomes Basic authorization, and is never shown.
    let url = ws_url("/auth").replacen("ws://", "ws://user:s3cret@", 1);
    let (ws, r) = s.ws_connect(&url, &WsOpts::new());
    r.wait_open(T);
    echo_all(&ws, &r, &[(TEXT, b"in".to_vec())]);
    close_cleanly(&ws, &r);
    let (_ws, r) = s.ws_connect(&ws_url("/auth"), &WsOpts::new());
    let c = r.wait_close(T);
    assert_eq!((c.code, c.status), (tern_code::WsHandshake, 401), "{c:?}");
}

#[test]
fn cookies_from_the_session_jar() {
    let rt = Rt::new(2);
    let o = Opts::new();
    set(&o, |o, e| unsafe {
        tern_session_options_set_cookie_jar(o, 1, e)
    });
    let s = Sess::new(&rt, &o);
    let (ws, r) = s.ws_connect(&ws_url("/cookie"), &WsOpts::new());
    r.wait_open(T);
    close_cleanly(&ws, &r);
    let (ws, r) = s.ws_connect(&ws_url("/headers"), &WsOpts::new());
    let text = String::from_utf8_lossy(&r.wait_messages(1, T)[0].1).into_owned();
    assert!(text.contains("[\"Cookie\", \"wsc=1\"]"), "{text}");
    close_cleanly(&ws, &r);
}

#[test]
fn refused_upgrade_reports_the_status_and_body() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (ws, r) = s.ws_connect(&ws_url("/reject"), &WsOpts::new());
    let c = r.wait_close(T);
    assert_eq!(c.code, tern_code::WsHandshake, "{c:?}");
    assert_eq!(
        (c.status, c.opened, c.close_code, c.clean),
        (403, false, 1006, false)
    );
    assert_eq!(c.body, b"forbidden\n");
    assert!(c.message.contains("403"), "{}", c.message);
    r.wait_release(T);
    assert!(!r.events().iter().any(|e| matches!(e, WsEvent::Open { .. })));
    assert_eq!(ws.state(), CLOSED);
}

#[test]
fn the_server_closes_with_a_code_and_reason() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (_ws, r) = s.ws_connect(&ws_url("/close?code=4001&reason=bye"), &WsOpts::new());
    let c = r.wait_close(T);
    assert_eq!(c.code, tern_code::Ok, "{c:?}");
    assert_eq!(
        (c.close_code, c.reason.as_str(), c.clean, c.opened),
        (4001, "bye", true, true)
    );
    r.wait_release(T);
}

#[test]
fn pings_both_ways_and_heartbeat() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    // The server pings every 50 ms; tungstenite answers; the echo still works.
    let (ws, r) = s.ws_connect(&ws_url("/ping?every=50"), &WsOpts::new());
    r.wait_open(T);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ws.ping(b"hi"), tern_code::Ok);
    assert_eq!(ws.ping(&[0u8; 126]), tern_code::InvalidArgument);
    echo_all(&ws, &r, &[(TEXT, b"after pings".to_vec())]);
    close_cleanly(&ws, &r);

    // A heartbeat of 100 ms against a silent peer that answers pings: no time-out.
    let (ws, r) = s.ws_connect(&ws_url("/silent"), &WsOpts::new().heartbeat(100));
    r.wait_open(T);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(ws.state(), OPEN, "{:?}", r.brief());
    close_cleanly(&ws, &r);
}

#[test]
fn receive_timeout() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (_ws, r) = s.ws_connect(&ws_url("/silent"), &WsOpts::new().timeout(TO_RECEIVE, 300));
    let start = Instant::now();
    r.wait_open(T);
    let c = r.wait_close(T);
    let took = start.elapsed();
    assert_eq!(c.code, tern_code::TimeoutRead, "{c:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // tern closed with 1001 and the server answered.
    assert_eq!((c.close_code, c.clean), (1001, true), "{c:?}");
    r.wait_release(T);
}

#[test]
fn message_size_limit() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (_ws, r) = s.ws_connect(&ws_url("/big?n=5000000"), &WsOpts::new());
    let c = r.wait_close(T);
    assert_eq!(c.code, tern_code::WsMessageTooLarge, "{c:?}");
    assert_eq!((c.close_code, c.clean, c.opened), (1009, false, true));
    assert!(r.messages().is_empty());
    r.wait_release(T);

    let o = WsOpts::new().max_message(8 << 20).max_frame(8 << 20);
    let (ws, r) = s.ws_connect(&ws_url("/big?n=5000000"), &o);
    let m = r.wait_messages(1, T);
    assert_eq!(m[0].1.len(), 5_000_000);
    assert!(m[0].1.iter().all(|b| *b == b'x'));
    close_cleanly(&ws, &r);
}

#[test]
fn back_pressure_on_send() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (ws, r) = s.ws_connect(&ws_url("/echo"), &WsOpts::new().send_queue(64 * 1024));
    r.wait_open(T);
    let chunk = |i: usize| -> Vec<u8> { (0..16 * 1024).map(|j| ((i + j) % 256) as u8).collect() };
    let mut sent = Vec::new();
    let mut blocked = false;
    for i in 0..100_000 {
        let m = chunk(i);
        match ws.send_binary(&m) {
            tern_code::Ok => sent.push(m),
            tern_code::WouldBlock => {
                blocked = true;
                let b = ws.buffered();
                assert!(b > 0 && b <= 80 * 1024, "buffered {b}");
                break;
            }
            other => panic!("send: {other:?}"),
        }
    }
    assert!(blocked, "the queue never filled");
    r.wait(T, |e| {
        e.iter()
            .any(|e| matches!(e, WsEvent::Writable))
            .then_some(())
    })
    .expect("no on_writable after WOULD_BLOCK");
    let m = chunk(7);
    assert_eq!(ws.send_binary(&m), tern_code::Ok);
    sent.push(m);
    let got = r.wait_messages(sent.len(), Duration::from_secs(30));
    for (i, (a, b)) in sent.iter().zip(&got).enumerate() {
        assert!(*a == b.1, "message {i} differs");
    }
    close_cleanly(&ws, &r);
}

#[test]
fn sends_while_connecting_go_out_after_the_open() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (ws, r) = s.ws_connect(&ws_url("/echo"), &WsOpts::new());
    // Usually still connecting here; either way the message is sent once open.
    let st = ws.state();
    assert!(st == CONNECTING || st == OPEN, "{st}");
    assert_eq!(ws.send_text("early"), tern_code::Ok);
    assert_eq!(r.wait_messages(1, T)[0].1, b"early");
    close_cleanly(&ws, &r);
}

#[test]
fn callbacks_may_send_and_close() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let hook: WsHook = Box::new(|ws, ev| match ev {
        WsEvent::Open { .. } => {
            assert_eq!(ws.send_text("1"), tern_code::Ok);
        }
        WsEvent::Message { data, .. } => {
            let n: u32 = std::str::from_utf8(data).unwrap().parse().unwrap();
            if n < 20 {
                ws.send_text(&(n + 1).to_string());
            } else {
                ws.close(1000, "enough");
            }
        }
        _ => {}
    });
    let (_ws, r) = s
        .ws_connect_with(&ws_url("/echo"), None, Some(hook))
        .unwrap();
    let c = r.wait_close(T);
    assert_eq!(
        (c.code, c.close_code, c.clean),
        (tern_code::Ok, 1000, true),
        "{c:?}"
    );
    assert_eq!(r.messages().len(), 20);
    r.wait_release(T);
}

#[test]
fn queued_delivery_runs_callbacks_on_the_polling_thread() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &queued_opts());
    let (ws, r) = s.ws_connect(&ws_url("/echo"), &WsOpts::new());
    let me = std::thread::current().id();
    // Nothing runs without a poll.
    std::thread::sleep(Duration::from_millis(300));
    assert!(r.events().is_empty(), "{:?}", r.brief());
    assert_eq!(ws.send_text("q1"), tern_code::Ok);
    assert_eq!(ws.send_binary(b"q2"), tern_code::Ok);
    assert!(
        poll_until(&s, T, || r.messages().len() >= 2),
        "{:?}",
        r.brief()
    );
    assert_eq!(
        r.messages(),
        vec![(TEXT, b"q1".to_vec()), (BINARY, b"q2".to_vec())]
    );
    assert_eq!(ws.close(1000, ""), tern_code::Ok);
    let released = || r.events().iter().any(|e| matches!(e, WsEvent::Release));
    assert!(poll_until(&s, T, released), "{:?}", r.brief());
    r.wait_release(Duration::ZERO);
    assert!(r.threads.lock().unwrap().iter().all(|t| *t == me));
    let ev = r.events();
    assert!(matches!(ev[0], WsEvent::Open { .. }), "{:?}", r.brief());
    assert!(matches!(ev[ev.len() - 2], WsEvent::Close(_)));
}

#[test]
fn queued_delivery_stops_reading_while_the_caller_does_not_poll() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &queued_opts());
    let (ws, r) = s.ws_connect(&ws_url("/echo"), &WsOpts::new().send_queue(32 << 20));
    let opened = || r.events().iter().any(|e| matches!(e, WsEvent::Open { .. }));
    assert!(poll_until(&s, T, opened), "{:?}", r.brief());
    // 64 messages of 256 KiB echoed while nobody polls: reading stops at about 1 MiB
    // queued, so the echoes wait in the kernel's buffers and the server's, not in
    // tern's queue.
    let big = vec![7u8; 256 * 1024];
    for _ in 0..64 {
        assert_eq!(ws.send_binary(&big), tern_code::Ok);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let ran = poll_session(&s, 0, 0);
    assert!(ran <= 8, "{ran} messages were queued while nobody polled");
    poll_until(&s, Duration::from_secs(30), || r.messages().len() >= 64);
    assert_eq!(r.messages().len(), 64);
    assert_eq!(ws.close(1000, ""), tern_code::Ok);
    let released = || r.events().iter().any(|e| matches!(e, WsEvent::Release));
    assert!(poll_until(&s, T, released), "{:?}", r.brief());
}

fn echo_through(s: &Sess, url: &str, o: &WsOpts, proxy_port: &str) {
    let (ws, r) = s.ws_connect(url, o);
    match r.wait_open(T) {
        WsEvent::Open { remote, .. } => {
            assert!(remote.ends_with(&format!(":{proxy_port}")), "{remote}")
        }
        _ => unreachable!(),
    }
    echo_all(
        &ws,
        &r,
        &[(TEXT, b"via proxy".to_vec()), (BINARY, vec![9; 70000])],
    );
    close_cleanly(&ws, &r);
}

#[test]
fn through_squid_with_connect() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::with_ca());
    let squid = env("TERN_TEST_SQUID");
    let port = port_of(&squid);
    let auth = squid_auth_url();
    let o = WsOpts::new().proxy(&auth);
    echo_through(&s, &ws_url("/echo"), &o, &port);
    echo_through(&s, &wss_url("/echo"), &o, &port);
    // A name only squid can resolve: the tunnel is made by name.
    let ws_port = port_of(&ws_url(""));
    let by_name = format!("ws://{}:{ws_port}/echo", env("TERN_TEST_PROXY_ONLY_HOST"));
    echo_through(&s, &by_name, &o, &port);

    let wrong = with_userinfo(&squid, &env("TERN_TEST_PROXY_USER"), "wrong");
    let (_ws, r) = s.ws_connect(&ws_url("/echo"), &WsOpts::new().proxy(&wrong));
    let c = r.wait_close(T);
    assert_eq!((c.code, c.opened), (tern_code::ProxyAuth, false), "{c:?}");
    assert!(!c.message.contains("wrong"), "{}", c.message);
}

#[test]
fn through_socks5() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::with_ca());
    let socks = env("TERN_TEST_SOCKS");
    let port = port_of(&socks);
    let url = with_userinfo(
        &format!("socks5://{socks}"),
        &env("TERN_TEST_SOCKS_USER"),
        &env("TERN_TEST_SOCKS_PASS"),
    );
    let o = WsOpts::new().proxy(&url);
    echo_through(&s, &ws_url("/echo"), &o, &port);
    echo_through(&s, &wss_url("/echo"), &o, &port);
    let open = env("TERN_TEST_SOCKS_NOAUTH");
    let port = port_of(&open);
    let o = WsOpts::new().proxy(&format!("socks5h://{open}"));
    echo_through(&s, &wss_url("/echo"), &o, &port);
}

#[test]
fn session_close_and_runtime_free_end_open_sockets() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (_ws, r) = s.ws_connect(&ws_url("/echo"), &WsOpts::new());
    r.wait_open(T);
    // A graceful close says 1001 to the peer and reports SHUTDOWN.
    s.close(0);
    let c = r.wait_close(T);
    assert_eq!(
        (c.code, c.close_code, c.clean),
        (tern_code::Shutdown, 1001, true),
        "{c:?}"
    );
    r.wait_release(T);
    assert_eq!(
        s.ws_connect_with(&ws_url("/echo"), None, None)
            .err()
            .map(|e| e.0),
        Some(tern_code::Shutdown)
    );

    let s = Sess::new(&rt, &Opts::new());
    let (_ws, r) = s.ws_connect(&ws_url("/silent"), &WsOpts::new());
    r.wait_open(T);
    s.close(1);
    let c = r.wait_close(T);
    assert_eq!(
        (c.code, c.close_code, c.clean),
        (tern_code::Shutdown, 1006, false),
        "{c:?}"
    );
    r.wait_release(T);

    let s = Sess::new(&rt, &Opts::new());
    let (ws, r) = s.ws_connect(&ws_url("/silent"), &WsOpts::new());
    r.wait_open(T);
    rt.free();
    let c = r.wait_close(T);
    assert_eq!(c.code, tern_code::Shutdown, "{c:?}");
    r.wait_release(T);
    assert_eq!(ws.send_text("x"), tern_code::Shutdown);
}

#[test]
fn abort_close_before_open_and_free() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (ws, r) = s.ws_connect(&ws_url("/silent"), &WsOpts::new());
    r.wait_open(T);
    assert_eq!(ws.abort(), tern_code::Ok);
    let c = r.wait_close(T);
    assert_eq!(
        (c.code, c.close_code, c.clean),
        (tern_code::Canceled, 1006, false),
        "{c:?}"
    );
    r.wait_release(T);
    // Closing or aborting again does nothing.
    assert_eq!(ws.close(1000, ""), tern_code::Ok);
    assert_eq!(ws.abort(), tern_code::Ok);

    // Closed before the open (the server answers the upgrade a second late): CANCELED.
    let slow = RawServer::start(|_, mut s| {
        std::thread::sleep(Duration::from_secs(1));
        if ws_accept(&mut s).is_some() {
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    let (ws, r) = s.ws_connect(&format!("ws://127.0.0.1:{}/", slow.port), &WsOpts::new());
    assert_eq!(ws.close(1000, ""), tern_code::Ok);
    let c = r.wait_close(T);
    assert_eq!(
        (c.code, c.close_code, c.clean, c.opened),
        (tern_code::Canceled, 1006, false, false),
        "{c:?}"
    );
    assert!(
        !r.events().iter().any(|e| matches!(e, WsEvent::Open { .. })),
        "{:?}",
        r.brief()
    );
    r.wait_release(T);

    // Freeing the caller's handle of an open socket closes it with 1000.
    let (ws, r) = s.ws_connect(&ws_url("/silent"), &WsOpts::new());
    r.wait_open(T);
    ws.free();
    let c = r.wait_close(T);
    assert_eq!(
        (c.code, c.close_code, c.clean),
        (tern_code::Ok, 1000, true),
        "{c:?}"
    );
    r.wait_release(T);
}

#[test]
fn refusals_run_no_callback() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let refused = |url: &str| s.ws_connect_with(url, None, None).err().map(|e| e.0);
    assert_eq!(
        refused("ftp://127.0.0.1/"),
        Some(tern_code::UnsupportedScheme)
    );
    assert_eq!(refused("not a url"), Some(tern_code::InvalidUrl));

    let cb = ws_callbacks();
    let u = c(&ws_url("/echo"));
    let call = |s: *const tern::ffi::session::tern_session,
                url: *const std::ffi::c_char,
                cb: *const tern_ws_callbacks| unsafe {
        tern_session_ws_connect(
            s,
            url,
            std::ptr::null(),
            cb,
            null_mut(),
            null_mut(),
            null_mut(),
        )
    };
    assert_eq!(
        call(std::ptr::null(), u.as_ptr(), &cb),
        tern_code::NullArgument
    );
    assert_eq!(call(s.0, std::ptr::null(), &cb), tern_code::NullArgument);
    assert_eq!(
        call(s.0, u.as_ptr(), std::ptr::null()),
        tern_code::NullArgument
    );
    let mut no_close = ws_callbacks();
    no_close.on_close = None;
    assert_eq!(call(s.0, u.as_ptr(), &no_close), tern_code::NullArgument);
    let mut small = ws_callbacks();
    small.struct_size = 4;
    assert_eq!(call(s.0, u.as_ptr(), &small), tern_code::InvalidArgument);

    let o = WsOpts::new();
    let mut e = null_mut();
    let (n, v) = (c("Sec-WebSocket-Protocol"), c("x"));
    assert_eq!(
        unsafe { tern_ws_options_add_header(o.0, n.as_ptr(), v.as_ptr(), &mut e) },
        tern_code::InvalidHeader
    );
    assert!(take_err(e).contains("itself"));
    for bad in ["", "a b", "a,b"] {
        let p = c(bad);
        assert_eq!(
            unsafe { tern_ws_options_add_subprotocol(o.0, p.as_ptr(), null_mut()) },
            tern_code::InvalidArgument,
            "{bad:?}"
        );
    }
    let p = c("dup");
    assert_eq!(
        unsafe { tern_ws_options_add_subprotocol(o.0, p.as_ptr(), null_mut()) },
        tern_code::Ok
    );
    assert_eq!(
        unsafe { tern_ws_options_add_subprotocol(o.0, p.as_ptr(), null_mut()) },
        tern_code::InvalidArgument
    );
    assert_eq!(
        unsafe { tern_ws_options_set_compression(o.0, 1, null_mut()) },
        tern_code::Unsupported
    );
    assert_eq!(
        unsafe { tern_ws_options_set_compression(o.0, 0, null_mut()) },
        tern_code::Ok
    );
    assert_eq!(
        unsafe { tern_ws_options_set_timeout_ms(o.0, TO_CLOSE, 0, null_mut()) },
        tern_code::InvalidArgument
    );
    assert_eq!(
        unsafe { tern_ws_options_set_timeout_ms(o.0, 9, 10, null_mut()) },
        tern_code::InvalidArgument
    );
    assert_eq!(
        unsafe { tern_ws_options_set_timeout_ms(o.0, TO_HANDSHAKE, 0, null_mut()) },
        tern_code::Ok
    );
    assert_eq!(
        unsafe { tern_ws_options_set_send_queue_size(o.0, 0, null_mut()) },
        tern_code::InvalidArgument
    );
    let bad_proxy = c("ftp://x");
    assert_eq!(
        unsafe { tern_ws_options_set_proxy(o.0, bad_proxy.as_ptr(), null_mut()) },
        tern_code::UnsupportedScheme
    );

    // Close codes and reasons, on an open socket; NULL handles.
    let (ws, r) = s.ws_connect(&ws_url("/echo"), &WsOpts::new());
    r.wait_open(T);
    for code in [999, 1004, 1005, 1006, 1015, 2000, 5000] {
        assert_eq!(ws.close(code, ""), tern_code::InvalidArgument, "{code}");
    }
    assert_eq!(ws.close(1000, &"r".repeat(124)), tern_code::InvalidArgument);
    assert_eq!(
        ws.close(0, "reason without code"),
        tern_code::InvalidArgument
    );
    let bad_utf8 = [0xffu8, 0xfe];
    assert_eq!(
        unsafe { tern_ws_send_text(ws.0, bad_utf8.as_ptr().cast(), 2, null_mut()) },
        tern_code::InvalidArgument
    );
    assert_eq!(ws.state(), OPEN);
    unsafe {
        assert_eq!(
            tern_ws_send_text(std::ptr::null(), null_mut(), 0, null_mut()),
            tern_code::NullArgument
        );
        assert_eq!(
            tern_ws_send_binary(ws.0, std::ptr::null(), 5, null_mut()),
            tern_code::NullArgument
        );
        assert_eq!(tern_ws_abort(std::ptr::null()), tern_code::NullArgument);
        assert_eq!(tern_ws_state(std::ptr::null()), CLOSED);
        assert_eq!(tern_ws_buffered_amount(std::ptr::null()), 0);
        assert_eq!(tern_ws_id(std::ptr::null()), 0);
        assert!(tern_ws_subprotocol(std::ptr::null()).is_null());
        tern_ws_free(null_mut());
        tern_ws_options_free(null_mut());
    }
    close_cleanly(&ws, &r);
}

#[test]
fn other_proxies_and_the_direct_override() {
    let rt = Rt::new(2);
    // tinyproxy (CONNECT) for ws.
    let tiny = env("TERN_TEST_TINYPROXY");
    let s = Sess::new(&rt, &Opts::with_ca());
    let port = port_of(&tiny);
    echo_through(&s, &ws_url("/echo"), &WsOpts::new().proxy(&tiny), &port);
    // An https:// proxy (TLS to the proxy, then CONNECT) for wss.
    let hp = env("TERN_TEST_HTTPS_PROXY");
    let port = port_of(&hp);
    echo_through(&s, &wss_url("/echo"), &WsOpts::new().proxy(&hp), &port);

    // The session's proxy applies to sockets; "" in the socket's options goes direct.
    let o = Opts::with_ca();
    let squid = c(&env("TERN_TEST_SQUID_NOAUTH"));
    set(&o, |o, e| unsafe {
        tern_session_options_set_proxy(o, squid.as_ptr(), e)
    });
    let s = Sess::new(&rt, &o);
    let squid_port = port_of(&env("TERN_TEST_SQUID_NOAUTH"));
    echo_through(&s, &ws_url("/echo"), &WsOpts::new(), &squid_port);
    let ws_port = port_of(&ws_url(""));
    echo_through(&s, &ws_url("/echo"), &WsOpts::new().proxy(""), &ws_port);
}

#[test]
fn dns_overrides_nameservers_and_unknown_names() {
    let rt = Rt::new(2);
    let ws_port = port_of(&ws_url(""));
    let o = Opts::new();
    let rule = c(&format!("ws.test:{ws_port}:127.0.0.1"));
    set(&o, |o, e| unsafe {
        tern_session_options_add_resolve(o, rule.as_ptr(), e)
    });
    let ns = c(&env("TERN_TEST_DNS"));
    set(&o, |o, e| unsafe {
        tern_session_options_set_nameservers(o, ns.as_ptr(), e)
    });
    let s = Sess::new(&rt, &o);
    echo_through(
        &s,
        &format!("ws://ws.test:{ws_port}/echo"),
        &WsOpts::new(),
        &ws_port,
    );
    // app.tern.test is known to the test nameserver only.
    echo_through(
        &s,
        &format!("ws://app.tern.test:{ws_port}/echo"),
        &WsOpts::new(),
        &ws_port,
    );

    let plain = Sess::new(&rt, &Opts::new());
    let (_ws, r) = plain.ws_connect("ws://no-such-host.invalid/echo", &WsOpts::new());
    let c = r.wait_close(T);
    assert!(
        matches!(c.code, tern_code::DnsNotFound | tern_code::Dns),
        "{c:?}"
    );
    assert!(!c.opened && c.status == 0);
}

#[test]
fn connect_timeout_on_a_blackhole() {
    let (addr, fillers) = blackhole(socket2::Domain::IPV4);
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    let start = Instant::now();
    let (_ws, r) = s.ws_connect(&format!("ws://{addr}/"), &WsOpts::new().timeout(0, 300));
    let c = r.wait_close(T);
    assert_eq!(c.code, tern_code::TimeoutConnect, "{c:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop(fillers);
}
