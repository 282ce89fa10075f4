//! Faults nginx cannot make, from in-process servers: time-outs, broken bodies,
//! resets, garbage; plus refused connections, unknown names and a panic in a task.

use std::io::Write;
use std::time::{Duration, Instant};

use tern::code::tern_code;

use crate::common::*;

const TOTAL: u32 = 0;
const CONNECT: u32 = 1;
const READ: u32 = 2;

/// A time-out fires within 10 % + 100 ms of its setting (and not before it).
fn assert_fired_in_time(start: Instant, ms: u64) {
    let took = start.elapsed();
    let set = Duration::from_millis(ms);
    assert!(took >= set, "fired early: {took:?} < {set:?}");
    assert!(
        took <= set + set / 10 + Duration::from_millis(100),
        "fired late: {took:?} for {set:?}"
    );
}

fn slow_headers(delay: Duration) -> RawServer {
    RawServer::start(move |_, mut s| {
        if read_request(&mut s).is_some() {
            std::thread::sleep(delay);
            let _ = respond(&mut s, "200 OK", "", b"late");
        }
    })
}

#[test]
fn total_timeout_session_default_and_request_override() {
    let srv = slow_headers(Duration::from_secs(3));
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new().timeout(TOTAL, 400));
    let t = Instant::now();
    let r = s.get(&srv.url("/"));
    assert_eq!(r.code(), tern_code::TimeoutTotal, "{}", r.message());
    assert_fired_in_time(t, 400);
    // The request's own setting wins over the session's.
    let t = Instant::now();
    let r = s.perform(Req::new("GET", &srv.url("/")).timeout(TOTAL, 200));
    assert_eq!(r.code(), tern_code::TimeoutTotal);
    assert_fired_in_time(t, 200);
    // 0 disables it: the slow answer arrives (a 1 s server this time).
    let srv1 = slow_headers(Duration::from_millis(1000));
    let r = s.perform(Req::new("GET", &srv1.url("/")).timeout(TOTAL, 0));
    r.ok();
    assert_eq!(r.text(), "late");
}

#[test]
fn read_timeout_on_head_and_on_body() {
    let srv = RawServer::start(|_, mut s| {
        if let Some((line, _, _)) = read_request(&mut s) {
            if line.contains("/body") {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789"
                );
                let _ = s.flush();
            }
            std::thread::sleep(Duration::from_secs(3));
        }
    });
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new().timeout(READ, 300));
    for path in ["/head", "/body"] {
        let t = Instant::now();
        let r = s.get(&srv.url(path));
        assert_eq!(r.code(), tern_code::TimeoutRead, "{path}: {}", r.message());
        assert_fired_in_time(t, 300);
    }
}

#[test]
fn connect_timeout_on_a_blackhole() {
    let (addr, fillers) = blackhole(socket2::Domain::IPV4);
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new().timeout(CONNECT, 300));
    let t = Instant::now();
    let r = s.get(&format!("http://{addr}/"));
    assert_eq!(r.code(), tern_code::TimeoutConnect, "{}", r.message());
    assert_fired_in_time(t, 300);
    drop(fillers);
}

#[test]
fn broken_bodies_and_garbage() {
    let srv = RawServer::start(|_, mut s| {
        let Some((line, _, _)) = read_request(&mut s) else {
            return;
        };
        if line.contains("/short") {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789"
            );
        } else if line.contains("/reset") {
            let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n");
            let _ = s.write_all(&[b'x'; 50_000]);
            let _ = s.flush();
            std::thread::sleep(Duration::from_millis(100));
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        } else if line.contains("/garbage") {
            let _ = s.write_all(b"SMTP READY\r\n\r\n");
        } else if line.contains("/nothing") {
            // close without a byte
        }
    });
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    let r = s.get(&srv.url("/short"));
    assert_eq!(r.code(), tern_code::IncompleteBody, "{}", r.message());
    assert_eq!(r.status(), 200, "the head arrived");
    let r = s.get(&srv.url("/reset"));
    assert!(
        matches!(
            r.code(),
            tern_code::ConnectionReset | tern_code::IncompleteBody
        ),
        "{:?} {}",
        r.code(),
        r.message()
    );
    let r = s.get(&srv.url("/garbage"));
    assert_eq!(r.code(), tern_code::Protocol, "{}", r.message());
    let r = s.get(&srv.url("/nothing"));
    assert_eq!(r.code(), tern_code::IncompleteBody, "{}", r.message());
}

#[test]
fn refused_and_unknown_names() {
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    let r = s.get("http://127.0.0.1:1/");
    assert_eq!(r.code(), tern_code::ConnectionRefused, "{}", r.message());
    assert!(
        r.message().contains("os error"),
        "the OS error is kept: {}",
        r.message()
    );
    let r = s.get("http://no-such-host.invalid/");
    assert_unresolved(&r);
}

#[test]
fn panic_inside_a_request_becomes_its_error_once() {
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    let r = s.perform(Req::new("GET", &http("/hello")).header("x-tern-debug-panic", "1"));
    assert_eq!(r.code(), tern_code::Internal, "{}", r.message());
    assert!(r.message().contains("panic"), "{}", r.message());
    // The session still works.
    s.get(&http("/hello")).ok();
}

#[test]
fn connect_timeout_covers_the_tls_handshake_and_requests_override_it() {
    // A server that accepts TCP and never answers the ClientHello.
    let srv = RawServer::start(|_, s| {
        std::thread::sleep(Duration::from_secs(5));
        drop(s);
    });
    let url = format!("https://127.0.0.1:{}/", srv.port);
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new().timeout(CONNECT, 400));
    let t = Instant::now();
    let r = s.get(&url);
    assert_eq!(r.code(), tern_code::TimeoutConnect, "{}", r.message());
    assert_fired_in_time(t, 400);
    // The request's own connect time-out wins.
    let t = Instant::now();
    let r = s.perform(Req::new("GET", &url).timeout(CONNECT, 200));
    assert_eq!(r.code(), tern_code::TimeoutConnect, "{}", r.message());
    assert_fired_in_time(t, 200);
}

#[test]
fn read_timeout_override_and_the_connection_is_closed() {
    // The server sends the head, then stalls; it records when the client hangs up.
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c2 = closed.clone();
    let srv = RawServer::start(move |_, mut s| {
        if read_request(&mut s).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234");
            let mut b = [0u8; 1];
            // Blocks until the client closes its end.
            if matches!(std::io::Read::read(&mut s, &mut b), Ok(0) | Err(_)) {
                c2.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let rt = Rt::new(1);
    // Session read time-out off (0); the request sets 300 ms.
    let s = Sess::new(&rt, &Opts::new().timeout(READ, 0));
    let t = Instant::now();
    let r = s.perform(Req::new("GET", &srv.url("/")).timeout(READ, 300));
    assert_eq!(r.code(), tern_code::TimeoutRead, "{}", r.message());
    assert_fired_in_time(t, 300);
    assert!(
        wait_for(Duration::from_secs(2), || closed
            .load(std::sync::atomic::Ordering::SeqCst)),
        "the timed-out connection was closed, not pooled"
    );
}

/// Up to 100 response header fields are read (hyper's own limit, kept on its stack:
/// a larger limit costs two heap buffers per response); one more fails clearly.
#[test]
fn header_count_limit() {
    let srv = RawServer::start(|_, mut s| {
        while let Some((line, _, _)) = read_request(&mut s) {
            let n: usize = line
                .split(['/', ' '])
                .find_map(|p| p.parse().ok())
                .unwrap_or(0);
            let mut head = String::from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n");
            for i in 1..n {
                head.push_str(&format!("x-h{i}: {i}\r\n"));
            }
            head.push_str("\r\nok");
            if s.write_all(head.as_bytes()).is_err() {
                return;
            }
        }
    });
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    let r = s.get(&srv.url("/100"));
    r.ok();
    assert_eq!(r.header("x-h99").as_deref(), Some("99"));
    assert_eq!(r.all_headers().len(), 100);
    let r = s.get(&srv.url("/101"));
    assert_eq!(r.code(), tern_code::HeadersTooLarge, "{}", r.message());
    assert!(r.message().contains("100 header fields"), "{}", r.message());
}
