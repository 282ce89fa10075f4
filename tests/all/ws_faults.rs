//! WebSocket faults no well-behaved server makes, from in-process servers: a
//! connection cut mid-message, invalid UTF-8, oversized frames, protocol violations, a
//! ping storm, a peer that never answers the close or pings, refused or malformed
//! upgrades. Each asserts what `on_close` reports and, where tern must send a close
//! frame, the frame the server read.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern::code::tern_code;

use crate::common::*;

const T: Duration = Duration::from_secs(10);
const TO_HANDSHAKE: u32 = 1;
const TO_CLOSE: u32 = 3;

fn url(srv: &RawServer) -> String {
    format!("ws://127.0.0.1:{}/", srv.port)
}

/// A server that upgrades, then runs `then` on the connection; the close code the
/// server read from tern (if it looked) comes back through the channel.
fn upgraded<F>(then: F) -> RawServer
where
    F: Fn(&mut TcpStream) + Send + Sync + 'static,
{
    RawServer::start(move |_, mut s| {
        if ws_accept(&mut s).is_some() {
            then(&mut s);
        }
    })
}

fn open_and_close(srv: &RawServer, o: &WsOpts) -> (CloseEv, Arc<WsRec>) {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (_ws, r) = s.ws_connect(&url(srv), o);
    let c = r.wait_close(T);
    r.wait_release(T);
    (c, r)
}

#[test]
fn connection_cut_mid_message_or_mid_frame() {
    // A text message whose first fragment came, then EOF.
    let srv = upgraded(|s| {
        s.write_all(&ws_frame(false, false, 1, b"abc")).unwrap();
        let _ = s.shutdown(Shutdown::Both);
    });
    let (c, r) = open_and_close(&srv, &WsOpts::new());
    assert_eq!(c.code, tern_code::WsClosedAbnormally, "{c:?}");
    assert_eq!((c.close_code, c.clean, c.opened), (1006, false, true));
    assert!(r.messages().is_empty());

    // A frame header for 100 bytes, 10 of them, then EOF.
    let srv = upgraded(|s| {
        let f = ws_frame(true, false, 2, &[1u8; 100]);
        s.write_all(&f[..12]).unwrap();
        let _ = s.shutdown(Shutdown::Both);
    });
    let (c, r) = open_and_close(&srv, &WsOpts::new());
    assert_eq!(c.code, tern_code::WsClosedAbnormally, "{c:?}");
    assert_eq!((c.close_code, c.clean), (1006, false));
    assert!(r.messages().is_empty());
}

/// A server that upgrades, writes `bytes`, and reports the close code tern sent.
fn sends_then_reads_close(bytes: Vec<u8>) -> (RawServer, mpsc::Receiver<Option<u16>>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let srv = upgraded(move |s| {
        s.write_all(&bytes).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let code = read_client_close(s);
        let _ = tx.lock().unwrap().send(code);
    });
    (srv, rx)
}

fn expect_closed_with(bytes: Vec<u8>, o: &WsOpts, code: tern_code, close_code: u16) {
    let (srv, rx) = sends_then_reads_close(bytes);
    let (c, r) = open_and_close(&srv, o);
    assert_eq!(c.code, code, "{c:?}");
    assert_eq!(
        (c.close_code, c.clean, c.opened),
        (close_code, false, true),
        "{c:?}"
    );
    assert!(r.messages().is_empty(), "{:?}", r.brief());
    assert_eq!(
        rx.recv_timeout(T).unwrap(),
        Some(close_code),
        "the close frame the server read"
    );
}

#[test]
fn invalid_utf8_closes_with_1007() {
    let o = WsOpts::new();
    expect_closed_with(
        ws_frame(true, false, 1, &[0xff, 0xfe]),
        &o,
        tern_code::WsInvalidUtf8,
        1007,
    );
    // Valid first fragment, invalid continuation.
    let mut b = ws_frame(false, false, 1, b"a");
    b.extend(ws_frame(true, false, 0, &[0xc3, 0x28]));
    expect_closed_with(b, &o, tern_code::WsInvalidUtf8, 1007);
}

#[test]
fn oversized_frames_and_messages_close_with_1009() {
    let o = WsOpts::new().max_message(1024).max_frame(1024);
    // A header that claims 2^40 bytes and no payload: refused on the header.
    let mut h = vec![0x82, 127];
    h.extend_from_slice(&(1u64 << 40).to_be_bytes());
    let start = Instant::now();
    expect_closed_with(h, &o, tern_code::WsMessageTooLarge, 1009);
    assert!(start.elapsed() < Duration::from_secs(5));
    // Three fragments of 500 bytes: each frame fits, the message does not.
    let mut b = ws_frame(false, false, 2, &[1u8; 500]);
    b.extend(ws_frame(false, false, 0, &[1u8; 500]));
    b.extend(ws_frame(true, false, 0, &[1u8; 500]));
    expect_closed_with(b, &o, tern_code::WsMessageTooLarge, 1009);
}

#[test]
fn protocol_violations_close_with_1002() {
    let o = WsOpts::new();
    let mut masked = ws_frame(true, false, 1, b"");
    masked[1] |= 0x80;
    masked.extend_from_slice(&[0, 0, 0, 0]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("RSV1 without an extension", ws_frame(true, true, 1, b"hi")),
        ("a masked frame from the server", masked),
        ("opcode 3", ws_frame(true, false, 3, b"")),
        ("a fragmented ping", ws_frame(false, false, 9, b"")),
        (
            "a ping over 125 bytes",
            ws_frame(true, false, 9, &[0u8; 126]),
        ),
        (
            "a continuation with no start",
            ws_frame(true, false, 0, b"x"),
        ),
    ];
    for (what, bytes) in cases {
        let (srv, rx) = sends_then_reads_close(bytes);
        let (c, _) = open_and_close(&srv, &o);
        assert_eq!(c.code, tern_code::WsProtocol, "{what}: {c:?}");
        assert_eq!(c.close_code, 1002, "{what}");
        assert_eq!(rx.recv_timeout(T).unwrap(), Some(1002), "{what}");
    }
}

#[test]
fn ping_storm_keeps_the_socket_open() {
    const PINGS: usize = 20_000;
    let pongs = Arc::new(AtomicUsize::new(0));
    let last_pong = Arc::new(Mutex::new(Vec::new()));
    let (p2, l2) = (pongs.clone(), last_pong.clone());
    let srv = upgraded(move |s| {
        // Read the client's frames on another thread, as a real server does.
        let mut rd = s.try_clone().unwrap();
        let (p3, l3) = (p2.clone(), l2.clone());
        let reader = std::thread::spawn(move || {
            while let Some((op, payload)) = read_client_frame(&mut rd) {
                if op == 10 {
                    p3.fetch_add(1, Ordering::SeqCst);
                    *l3.lock().unwrap() = payload;
                }
                if op == 8 {
                    return;
                }
            }
        });
        for i in 0..PINGS {
            let mut p = format!("{i:08}").into_bytes();
            p.resize(125, b'.');
            s.write_all(&ws_frame(true, false, 9, &p)).unwrap();
        }
        s.write_all(&ws_frame(true, false, 1, b"done")).unwrap();
        let _ = reader.join();
        // Answer the close.
        let _ = s.write_all(&ws_frame(true, false, 8, &1000u16.to_be_bytes()));
        let _ = s.shutdown(Shutdown::Both);
    });
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (ws, r) = s.ws_connect(&url(&srv), &WsOpts::new());
    let m = r.wait_messages(1, Duration::from_secs(30));
    assert_eq!(m[0], (1, b"done".to_vec()));
    assert_eq!(ws.state(), 1, "open after the storm");
    assert!(wait_for(T, || pongs.load(Ordering::SeqCst) > 0));
    // Pongs may be merged (a newer one replaces a queued one), but the last ping is
    // answered with its own payload.
    assert!(wait_for(T, || last_pong
        .lock()
        .unwrap()
        .starts_with(format!("{:08}", PINGS - 1).as_bytes())));
    assert_eq!(ws.close(1000, ""), tern_code::Ok);
    let c = r.wait_close(T);
    assert_eq!((c.code, c.close_code), (tern_code::Ok, 1000), "{c:?}");
}

#[test]
fn a_peer_that_never_answers_the_close() {
    let srv = upgraded(|s| {
        let _ = read_client_close(s);
        std::thread::sleep(Duration::from_secs(3));
    });
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (ws, r) = s.ws_connect(&url(&srv), &WsOpts::new().timeout(TO_CLOSE, 300));
    r.wait_open(T);
    let start = Instant::now();
    assert_eq!(ws.close(1000, "bye"), tern_code::Ok);
    assert_eq!(ws.state(), 2, "CLOSING");
    let c = r.wait_close(T);
    let took = start.elapsed();
    assert_eq!(c.code, tern_code::TimeoutClose, "{c:?}");
    assert_eq!((c.close_code, c.clean), (1006, false));
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn a_peer_that_answers_the_close_but_keeps_tcp_open() {
    let srv = upgraded(|s| {
        if read_client_close(s).is_some() {
            s.write_all(&ws_frame(true, false, 8, &1000u16.to_be_bytes()))
                .unwrap();
        }
        std::thread::sleep(Duration::from_secs(3));
    });
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (ws, r) = s.ws_connect(&url(&srv), &WsOpts::new().timeout(TO_CLOSE, 300));
    r.wait_open(T);
    assert_eq!(ws.close(1000, ""), tern_code::Ok);
    let c = r.wait_close(T);
    assert_eq!(
        (c.code, c.close_code, c.clean),
        (tern_code::Ok, 1000, true),
        "{c:?}"
    );
}

#[test]
fn heartbeat_fails_when_no_pong_comes() {
    let srv = upgraded(|s| {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        // Reads (and ignores) the pings.
        while read_client_frame(s).is_some() {}
    });
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (_ws, r) = s.ws_connect(&url(&srv), &WsOpts::new().heartbeat(200));
    r.wait_open(T);
    let start = Instant::now();
    let c = r.wait_close(T);
    let took = start.elapsed();
    assert_eq!(c.code, tern_code::TimeoutHeartbeat, "{c:?}");
    assert_eq!((c.close_code, c.clean), (1006, false));
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

/// A server that answers the upgrade request with `answer`.
fn answers(answer: &'static str) -> RawServer {
    RawServer::start(move |_, mut s| {
        if read_request(&mut s).is_some() {
            let _ = s.write_all(answer.as_bytes());
            std::thread::sleep(Duration::from_millis(500));
        }
    })
}

#[test]
fn malformed_or_refused_upgrades() {
    let cases = [
        ("a wrong accept key", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n", 101),
        ("no Upgrade header", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n", 101),
        ("a 200 with a body", "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", 200),
        ("a redirect", "HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n", 302),
    ];
    for (what, answer, status) in cases {
        let srv = answers(answer);
        let (c, _) = open_and_close(&srv, &WsOpts::new());
        assert_eq!(c.code, tern_code::WsHandshake, "{what}: {c:?}");
        assert_eq!(
            (c.status, c.opened, c.close_code),
            (status, false, 1006),
            "{what}"
        );
    }
    let srv = answers("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
    let (c, _) = open_and_close(&srv, &WsOpts::new());
    assert_eq!(c.body, b"hello");
    assert!(c.message.contains("200"), "{}", c.message);

    // A 101 that is right except for what the server chose.
    let extra = [
        (
            "a subprotocol not offered",
            "Sec-WebSocket-Protocol: other\r\n",
        ),
        (
            "an extension not offered",
            "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        ),
    ];
    for (what, line) in extra {
        let srv = RawServer::start(move |_, mut s| {
            if ws_accept_with(&mut s, line).is_some() {
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let (c, _) = open_and_close(&srv, &WsOpts::new().subprotocol("chat"));
        assert_eq!(c.code, tern_code::WsHandshake, "{what}: {c:?}");
        assert_eq!((c.status, c.opened), (101, false), "{what}");
    }
}

#[test]
fn upgrade_without_an_answer_times_out() {
    let srv = RawServer::start(|_, mut s| {
        let _ = read_request(&mut s);
        std::thread::sleep(Duration::from_secs(3));
    });
    let start = Instant::now();
    let (c, _) = open_and_close(&srv, &WsOpts::new().timeout(TO_HANDSHAKE, 300));
    assert_eq!(c.code, tern_code::TimeoutRead, "{c:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn frames_sent_with_the_101_are_kept() {
    let srv = RawServer::start(|_, mut s| {
        let Some((_, h, _)) = read_request(&mut s) else {
            return;
        };
        let key = h.get("sec-websocket-key").unwrap();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut all = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .into_bytes();
        all.extend(ws_frame(true, false, 1, b"early bird"));
        s.write_all(&all).unwrap();
        let _ = read_client_close(&mut s);
        let _ = s.write_all(&ws_frame(true, false, 8, &1000u16.to_be_bytes()));
    });
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (ws, r) = s.ws_connect(&url(&srv), &WsOpts::new());
    assert_eq!(r.wait_messages(1, T)[0].1, b"early bird");
    assert_eq!(ws.close(1000, ""), tern_code::Ok);
    let c = r.wait_close(T);
    assert_eq!((c.code, c.clean), (tern_code::Ok, true), "{c:?}");
}

#[test]
fn wss_offers_http11_only() {
    let (srt, l, port) = server_runtime();
    let acceptor = localhost_acceptor(
        &[&rustls::version::TLS13],
        &[b"h2".as_slice(), b"http/1.1".as_slice()],
    );
    let alpn = Arc::new(Mutex::new(None));
    let a2 = alpn.clone();
    srt.spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, a3) = (acceptor.clone(), a2.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                *a3.lock().unwrap() = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                use futures_util::{SinkExt, StreamExt};
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() || m.is_binary() {
                        let _ = ws.send(m).await;
                    }
                }
            });
        }
    });
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::with_ca());
    let (ws, r) = s.ws_connect(&format!("wss://localhost:{port}/"), &WsOpts::new());
    r.wait_open(T);
    assert_eq!(ws.send_text("tls"), tern_code::Ok);
    assert_eq!(r.wait_messages(1, T)[0].1, b"tls");
    assert_eq!(
        alpn.lock().unwrap().as_deref(),
        Some(b"http/1.1".as_slice())
    );
    assert_eq!(ws.close(1000, ""), tern_code::Ok);
    let c = r.wait_close(T);
    assert_eq!(c.code, tern_code::Ok, "{c:?}");
}

#[test]
#[cfg(debug_assertions)]
fn a_panic_in_the_socket_task_is_reported_once() {
    let srv = upgraded(|s| {
        let _ = read_client_close(s);
    });
    let (c, r) = open_and_close(&srv, &WsOpts::new().header("x-tern-debug-panic", "1"));
    assert_eq!(c.code, tern_code::Internal, "{c:?}");
    assert!(c.message.contains("panic"), "{}", c.message);
    let closes = r
        .events()
        .iter()
        .filter(|e| matches!(e, WsEvent::Close(_)))
        .count();
    assert_eq!(closes, 1);
}

const TO_RECEIVE: u32 = 2;

/// A server that upgrades, reads (and drops) everything tern sends, and never answers
/// its close; the close code tern sent comes back through the channel.
fn never_answers() -> (RawServer, mpsc::Receiver<Option<u16>>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let srv = upgraded(move |s| {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let code = read_client_close(s);
        let _ = tx.lock().unwrap().send(code);
        // Keeps the connection open, reading, until tern drops it.
        while read_client_frame(s).is_some() {}
    });
    (srv, rx)
}

#[test]
fn an_unanswered_close_reports_why_tern_was_closing() {
    // The receive time-out closes with 1001; the peer does not answer: TIMEOUT_READ,
    // not TIMEOUT_CLOSE.
    let (srv, rx) = never_answers();
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let o = WsOpts::new()
        .timeout(TO_RECEIVE, 200)
        .timeout(TO_CLOSE, 300);
    let (_ws, r) = s.ws_connect(&url(&srv), &o);
    r.wait_open(T);
    let c = r.wait_close(T);
    assert_eq!(c.code, tern_code::TimeoutRead, "{c:?}");
    assert_eq!(
        (c.close_code, c.clean, c.opened),
        (1006, false, true),
        "{c:?}"
    );
    assert_eq!(rx.recv_timeout(T).unwrap(), Some(1001));
    r.wait_release(T);

    // A graceful session close says 1001; the peer does not answer: SHUTDOWN.
    let (srv, rx) = never_answers();
    let s = Sess::new(&rt, &Opts::new());
    let (_ws, r) = s.ws_connect(&url(&srv), &WsOpts::new().timeout(TO_CLOSE, 300));
    r.wait_open(T);
    let start = Instant::now();
    s.close(0);
    let c = r.wait_close(T);
    assert_eq!(c.code, tern_code::Shutdown, "{c:?}");
    assert_eq!((c.close_code, c.clean), (1006, false), "{c:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(rx.recv_timeout(T).unwrap(), Some(1001));
    r.wait_release(T);
}

#[test]
fn a_peer_that_floods_after_the_close_cannot_hold_it_open() {
    // After tern's close the peer ignores it and keeps sending pings, so a frame is
    // always ready to read: the close time-out must still end the socket.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let srv = upgraded(move |s| {
        let mut batch = Vec::new();
        for i in 0..4000u32 {
            let mut p = [0u8; 125];
            p[..4].copy_from_slice(&i.to_be_bytes());
            batch.extend(ws_frame(true, false, 9, &p));
        }
        let mut r = s.try_clone().unwrap();
        std::thread::spawn(move || while read_client_frame(&mut r).is_some() {});
        let start = Instant::now();
        while !stop2.load(Ordering::Acquire) && start.elapsed() < T {
            if s.write_all(&batch).is_err() {
                return;
            }
        }
    });
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    // Whether the reads would starve the timer depends on tokio's scheduling (its
    // co-operative budget sometimes lets the timer in): five tries.
    for round in 0..5 {
        let (ws, r) = s.ws_connect(&url(&srv), &WsOpts::new().timeout(TO_CLOSE, 300));
        r.wait_open(T);
        std::thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        assert_eq!(ws.close(1000, ""), tern_code::Ok);
        let c = r.wait_close(Duration::from_secs(5));
        let took = start.elapsed();
        assert_eq!(c.code, tern_code::TimeoutClose, "round {round}: {c:?}");
        assert_eq!((c.close_code, c.clean), (1006, false), "{c:?}");
        assert!(
            took < Duration::from_millis(300 + 1500),
            "round {round}: {took:?}"
        );
        r.wait_release(T);
    }
    stop.store(true, Ordering::Release);
}

/// A server that reads tern's text messages until its close frame, sends them back
/// through the channel, and answers the close.
fn collects_until_close() -> (RawServer, mpsc::Receiver<Vec<Vec<u8>>>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let srv = upgraded(move |s| {
        s.set_read_timeout(Some(T)).unwrap();
        let mut got = Vec::new();
        while let Some((op, p)) = read_client_frame(s) {
            if op == 8 {
                let _ = s.write_all(&ws_frame(true, false, 8, &1000u16.to_be_bytes()));
                break;
            }
            got.push(p);
        }
        let _ = tx.lock().unwrap().send(got);
    });
    (srv, rx)
}

#[test]
fn sends_racing_the_close_are_sent_or_refused() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    for round in 0..30u64 {
        let (srv, rx) = collects_until_close();
        let (ws, r) = s.ws_connect(&url(&srv), &WsOpts::new());
        r.wait_open(T);
        let ws = Arc::new(ws);
        let go = Arc::new(std::sync::Barrier::new(3));
        let sender = |tag: u8| {
            let (ws, go) = (ws.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                let mut ok = Vec::new();
                for i in 0..100_000u32 {
                    let m = format!("{}-{i}", tag as char);
                    match ws.send_text(&m) {
                        tern_code::Ok => ok.push(m.into_bytes()),
                        tern_code::WouldBlock => std::thread::yield_now(),
                        tern_code::InvalidState => return ok,
                        other => panic!("send: {other:?}"),
                    }
                }
                ok
            })
        };
        let (a, b) = (sender(b'a'), sender(b'b'));
        go.wait();
        std::thread::sleep(Duration::from_micros(200 + 100 * round));
        assert_eq!(ws.close(1000, ""), tern_code::Ok);
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        let c = r.wait_close(T);
        assert_eq!((c.code, c.close_code), (tern_code::Ok, 1000), "{c:?}");
        let got = rx.recv_timeout(T).unwrap();
        // Every accepted send arrived before the close frame, each thread's in order.
        let of = |tag: u8| -> Vec<Vec<u8>> {
            got.iter()
                .filter(|m| m.first() == Some(&tag))
                .cloned()
                .collect()
        };
        for (tag, sent) in [(b'a', &a), (b'b', &b)] {
            let arrived = of(tag);
            assert!(
                arrived == *sent,
                "round {round}, thread {}: {} accepted, {} arrived (last accepted {:?})",
                tag as char,
                sent.len(),
                arrived.len(),
                sent.last().map(|m| String::from_utf8_lossy(m).into_owned())
            );
        }
        assert_eq!(got.len(), a.len() + b.len(), "round {round}");
        assert_eq!(ws.buffered(), 0, "round {round}");
        r.wait_release(T);
    }
}

#[test]
fn a_text_that_is_not_utf8_takes_no_room_in_the_queue() {
    // A queue of 1,000 bytes; one thread sends texts of 1,000 invalid bytes, another
    // one-byte messages: the invalid texts are refused before they count, so the
    // one-byte sends never see a full queue (a WOULD_BLOCK caused by a refused text
    // would have no on_writable to follow it).
    let (srv, rx) = collects_until_close();
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let (ws, r) = s.ws_connect(&url(&srv), &WsOpts::new().send_queue(1000));
    r.wait_open(T);
    let ws = Arc::new(ws);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bad = {
        let (ws, stop) = (ws.clone(), stop.clone());
        std::thread::spawn(move || {
            let b = vec![0xffu8; 1000];
            while !stop.load(Ordering::Acquire) {
                let code = unsafe {
                    tern::ffi::ws::tern_ws_send_text(
                        ws.0,
                        b.as_ptr().cast(),
                        b.len(),
                        std::ptr::null_mut(),
                    )
                };
                assert_eq!(code, tern_code::InvalidArgument);
            }
        })
    };
    let mut sent = 0;
    for _ in 0..3_000 {
        // Only when the queue is empty: a one-byte message then always fits.
        assert!(wait_for(T, || ws.buffered() == 0));
        match ws.send_binary(b"x") {
            tern_code::Ok => sent += 1,
            other => panic!("after {sent} sends: {other:?}"),
        }
    }
    stop.store(true, Ordering::Release);
    bad.join().unwrap();
    assert_eq!(ws.close(1000, ""), tern_code::Ok);
    let c = r.wait_close(T);
    assert_eq!(c.code, tern_code::Ok, "{c:?}");
    assert_eq!(rx.recv_timeout(T).unwrap().len(), sent);
    assert_eq!(ws.buffered(), 0);
}

#[test]
fn a_long_refusal_keeps_the_start_of_its_body() {
    let body: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
    let b2 = body.clone();
    let srv = RawServer::start(move |_, mut s| {
        if read_request(&mut s).is_some() {
            let _ = write!(
                s,
                "HTTP/1.1 403 Forbidden\r\ncontent-length: {}\r\n\r\n",
                b2.len()
            );
            let _ = s.write_all(&b2);
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let (c, _) = open_and_close(&srv, &WsOpts::new());
    assert_eq!(c.code, tern_code::WsHandshake, "{c:?}");
    assert_eq!(c.status, 403);
    assert_eq!(c.body.len(), 64 * 1024);
    assert!(c.body == body[..64 * 1024], "not the start of the body");
}

#[test]
fn the_handshake_time_out_covers_a_refusal_body() {
    // A refusal whose body stalls after 10 bytes: the open ends at the handshake
    // deadline (400 ms), not at a fresh time-out for the body (300 + 400 ms), with
    // the bytes that came.
    let srv = RawServer::start(|_, mut s| {
        if read_request(&mut s).is_some() {
            std::thread::sleep(Duration::from_millis(300));
            let _ =
                s.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 1000\r\n\r\n0123456789");
            std::thread::sleep(Duration::from_secs(3));
        }
    });
    let start = Instant::now();
    let (c, _) = open_and_close(&srv, &WsOpts::new().timeout(TO_HANDSHAKE, 400));
    let took = start.elapsed();
    assert_eq!((c.code, c.status), (tern_code::WsHandshake, 403), "{c:?}");
    assert_eq!(c.body, b"0123456789");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_millis(650),
        "{took:?}"
    );
}
