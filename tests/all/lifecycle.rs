//! Exactly-once completion, cancel, close, runtime free, re-entrancy, fork, and the
//! clean TLS close on a graceful shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern::code::tern_code;

use crate::common::*;

const GRACEFUL: u32 = 0;
const ABORT: u32 = 1;

/// An async server that reads requests and never answers, holding each connection
/// until the client closes it. Cheap enough for thousands of connections.
struct Hold {
    port: u16,
    _rt: tokio::runtime::Runtime,
}

fn hold_server() -> Hold {
    let (rt, l, port) = server_runtime();
    rt.spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                use tokio::io::AsyncReadExt;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    Hold { port, _rt: rt }
}

#[test]
fn cancel_from_another_thread() {
    let hold = hold_server();
    let rt = Rt::new(2);
    let s = Arc::new(Sess::new(&rt, &Opts::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let id = s
        .send(
            Req::new("GET", &format!("http://127.0.0.1:{}/", hold.port)),
            move |r| {
                tx.send((r.code(), r.id())).unwrap();
            },
        )
        .unwrap();
    let s2 = s.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(s2.cancel(id), tern_code::Ok);
    });
    let (code, rid) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((code, rid), (tern_code::Canceled, id));
    assert_eq!(s.cancel(id), tern_code::NotFound, "already completed");
    assert_eq!(s.cancel(987654), tern_code::NotFound);
}

#[test]
fn reentrancy_from_on_complete() {
    let hold = hold_server();
    let rt = Rt::new(1);
    let s = Arc::new(Sess::new(&rt, &Opts::new()));
    let (tx, rx) = std::sync::mpsc::channel::<(&str, tern_code)>();
    // A request that will be canceled from inside another's callback.
    let tx1 = tx.clone();
    let slow = s
        .send(
            Req::new("GET", &format!("http://127.0.0.1:{}/", hold.port)),
            move |r| {
                tx1.send(("slow", r.code())).unwrap();
            },
        )
        .unwrap();
    let s2 = s.clone();
    let tx2 = tx.clone();
    s.send(Req::new("GET", &http("/hello")), move |r| {
        r.ok();
        // Blocking inside a callback is refused, and the request is consumed.
        let mut out = std::ptr::null_mut();
        let code = unsafe {
            tern::ffi::session::tern_session_perform(
                s2.0,
                Req::new("GET", &http("/hello")).into_raw(),
                &mut out,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(code, tern_code::WouldDeadlock);
        assert!(out.is_null());
        // Cancel and send from inside the callback.
        assert_eq!(s2.cancel(slow), tern_code::Ok);
        let tx3 = tx2.clone();
        s2.send(Req::new("GET", &http("/hello")), move |r| {
            tx3.send(("chained", r.code())).unwrap();
        })
        .unwrap();
        tx2.send(("first", r.code())).unwrap();
    })
    .unwrap();
    let mut got: Vec<_> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
        .collect();
    got.sort_by_key(|(n, _)| *n);
    assert_eq!(
        got,
        vec![
            ("chained", tern_code::Ok),
            ("first", tern_code::Ok),
            ("slow", tern_code::Canceled)
        ]
    );
}

#[test]
fn graceful_close_finishes_in_flight_then_refuses() {
    let srv = RawServer::start(|_, mut s| {
        while read_request(&mut s).is_some() {
            std::thread::sleep(Duration::from_millis(300));
            if respond(&mut s, "200 OK", "", b"done").is_err() {
                return;
            }
        }
    });
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let done = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..5 {
        let d = done.clone();
        s.send(Req::new("GET", &srv.url("/")), move |r| {
            d.lock().unwrap().push(r.code())
        })
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    s.close(GRACEFUL);
    assert_eq!(
        s.send(Req::new("GET", &srv.url("/")), |_| panic!(
            "refused request completed"
        )),
        Err(tern_code::Shutdown)
    );
    assert!(wait_for(Duration::from_secs(5), || done
        .lock()
        .unwrap()
        .len()
        == 5));
    assert!(
        done.lock().unwrap().iter().all(|c| *c == tern_code::Ok),
        "{:?}",
        done.lock().unwrap()
    );
}

#[test]
fn abort_close_and_runtime_free_complete_everything_once() {
    let hold = hold_server();
    for free_runtime in [false, true] {
        let rt = Rt::new(2);
        let s = Sess::new(&rt, &Opts::new());
        let codes = Arc::new(Mutex::new(Vec::new()));
        let released = Arc::new(AtomicUsize::new(0));
        for _ in 0..50 {
            let c2 = codes.clone();
            s.send_counted(
                Req::new("GET", &format!("http://127.0.0.1:{}/", hold.port)),
                move |r| c2.lock().unwrap().push(r.code()),
                Some(released.clone()),
            )
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        if free_runtime {
            rt.free();
            // Every completion ran before tern_runtime_free returned.
            assert_eq!(codes.lock().unwrap().len(), 50);
            assert_eq!(released.load(Ordering::SeqCst), 50);
            assert_eq!(
                s.send(Req::new("GET", &http("/hello")), |_| ()),
                Err(tern_code::Shutdown)
            );
        } else {
            s.close(ABORT);
            assert!(wait_for(Duration::from_secs(2), || released
                .load(Ordering::SeqCst)
                == 50));
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "shutdown is prompt: {:?}",
            t.elapsed()
        );
        assert!(
            codes
                .lock()
                .unwrap()
                .iter()
                .all(|c| *c == tern_code::Shutdown),
            "{:?}",
            codes.lock().unwrap()
        );
        drop(s);
    }
}

#[test]
fn runtime_free_from_inside_a_callback() {
    let rt = Rt::new(1);
    let raw = Arc::new(AtomicUsize::new(rt.0 as usize));
    std::mem::forget(rt);
    let s = Sess(std::ptr::null_mut());
    let mut sp = std::ptr::null_mut();
    let o = Opts::new();
    assert_eq!(
        unsafe {
            tern::ffi::session::tern_session_new(
                raw.load(Ordering::SeqCst) as *mut _,
                o.0,
                &mut sp,
                std::ptr::null_mut(),
            )
        },
        tern_code::Ok
    );
    std::mem::forget(s);
    let s = Sess(sp);
    let (tx, rx) = std::sync::mpsc::channel();
    let r2 = raw.clone();
    s.send(Req::new("GET", &http("/hello")), move |r| {
        r.ok();
        unsafe { tern::ffi::runtime::tern_runtime_free(r2.load(Ordering::SeqCst) as *mut _) };
        tx.send(()).unwrap();
    })
    .unwrap();
    rx.recv_timeout(Duration::from_secs(5))
        .expect("callback returned");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        s.send(Req::new("GET", &http("/hello")), |_| ()),
        Err(tern_code::Shutdown)
    );
}

#[test]
fn forked_child_gets_a_clear_error() {
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    s.get(&http("/hello")).ok();
    let req = Req::new("GET", &http("/hello")).into_raw();
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut out = std::ptr::null_mut();
        let code = unsafe {
            tern::ffi::session::tern_session_perform(s.0, req, &mut out, std::ptr::null_mut())
        };
        unsafe { libc::_exit(if code == tern_code::Forked { 0 } else { 1 }) };
    }
    unsafe { tern::ffi::request::tern_request_free(req) };
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );
    s.get(&http("/hello")).ok();
}

#[test]
fn graceful_close_sends_tls_close_notify() {
    let acceptor = localhost_acceptor(rustls::DEFAULT_VERSIONS, &[]);
    let srt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let l = srt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    srt.spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (tcp, _) = l.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut buf = vec![0u8; 8192];
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let n = tls.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        // Now wait for the client to close: Ok(0) means close_notify arrived;
        // an UnexpectedEof error means the TCP connection ended without it.
        let outcome = match tls.read(&mut buf).await {
            Ok(0) => "close_notify".to_string(),
            Ok(n) => format!("{n} unexpected bytes"),
            Err(e) => format!("error: {e}"),
        };
        tx.send(outcome).unwrap();
    });
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::with_ca());
    let r = s.perform(Req::new("GET", &format!("https://localhost:{port}/")).version(1));
    r.ok();
    s.close(GRACEFUL);
    let got = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server saw the connection end");
    assert_eq!(got, "close_notify");
}

/// 10,000 requests in five rounds of 2,000 at once: success, server error, refused,
/// time-out, cancel from another thread, cancel from inside a callback, then session
/// abort or runtime free mid-flight. Every accepted request completes exactly once,
/// and `release` runs exactly once after it.
#[test]
fn exactly_once_under_stress() {
    raise_fd_limit();
    let hold = hold_server();
    let hold_url = format!("http://127.0.0.1:{}/", hold.port);
    const PER_ROUND: usize = 2000;
    let mut cancelled_inside = 0;
    for round in 0..5 {
        let rt = Rt::new(2);
        let s = Arc::new(Sess::new(&rt, &Opts::new()));
        let complete: Arc<Vec<AtomicU32>> =
            Arc::new((0..PER_ROUND).map(|_| AtomicU32::new(0)).collect());
        let codes: Arc<Mutex<HashMap<usize, tern_code>>> = Arc::new(Mutex::new(HashMap::new()));
        let released = Arc::new(AtomicUsize::new(0));
        let to_cancel_inside: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
        let mut ids = vec![0u64; PER_ROUND];
        let mut to_cancel = Vec::new();
        for (i, id_slot) in ids.iter_mut().enumerate() {
            let kind = i % 8;
            let req = match kind {
                0 => Req::new("GET", &http("/hello")),
                1 => Req::new("GET", &http("/status/500")),
                2 => Req::new("GET", "http://127.0.0.1:1/"),
                3 => Req::new("GET", &hold_url).timeout(0, 50),
                4..=6 => Req::new("GET", &hold_url),
                _ => Req::new("GET", &format!("{}/hello", env("TERN_TEST_H2C"))).version(2),
            };
            let (c2, codes2, s2, tci) = (
                complete.clone(),
                codes.clone(),
                s.clone(),
                to_cancel_inside.clone(),
            );
            let id = s
                .send_counted(
                    req,
                    move |r| {
                        c2[i].fetch_add(1, Ordering::SeqCst);
                        codes2.lock().unwrap().insert(i, r.code());
                        if kind == 0 {
                            // Cancel one kind-5 request from inside this callback.
                            if let Some(id) = tci.lock().unwrap().pop() {
                                let _ = s2.cancel(id);
                            }
                        }
                    },
                    Some(released.clone()),
                )
                .expect("send accepted");
            *id_slot = id;
            match kind {
                4 => to_cancel.push(id),
                5 => to_cancel_inside.lock().unwrap().push(id),
                _ => {}
            }
        }
        // Cancel from another thread.
        let s2 = s.clone();
        let canceller = std::thread::spawn(move || {
            for id in to_cancel {
                assert_eq!(s2.cancel(id), tern_code::Ok);
            }
        });
        canceller.join().unwrap();
        let mid_flight = round == 4;
        if !mid_flight {
            // A kind-0 callback that ran before any kind-5 request was queued had
            // nothing to cancel; once every kind-0 request has completed, cancel what
            // is left from here.
            assert!(wait_for(Duration::from_secs(60), || (0..PER_ROUND)
                .filter(|i| i % 8 == 0)
                .all(|i| complete[i].load(Ordering::SeqCst) == 1)));
            let left: Vec<u64> = std::mem::take(&mut *to_cancel_inside.lock().unwrap());
            cancelled_inside += PER_ROUND / 8 - left.len();
            for id in left {
                // It may have been cancelled by a callback between the take and here.
                let code = s.cancel(id);
                assert!(
                    matches!(code, tern_code::Ok | tern_code::NotFound),
                    "{code:?}"
                );
            }
            // Let everything but the held requests finish.
            let settled = wait_for(Duration::from_secs(60), || {
                (0..PER_ROUND)
                    .filter(|i| i % 8 != 6)
                    .all(|i| complete[i].load(Ordering::SeqCst) == 1)
            });
            assert!(settled, "round {round}: requests did not complete");
        }
        if round % 2 == 0 {
            rt.free();
        } else {
            s.close(ABORT);
            drop(rt);
        }
        assert!(wait_for(Duration::from_secs(10), || released
            .load(Ordering::SeqCst)
            == PER_ROUND));
        std::thread::sleep(Duration::from_millis(100));
        for (i, c) in complete.iter().enumerate() {
            assert_eq!(
                c.load(Ordering::SeqCst),
                1,
                "round {round}: request {i} completed {} times",
                c.load(Ordering::SeqCst)
            );
        }
        assert_eq!(
            released.load(Ordering::SeqCst),
            PER_ROUND,
            "release exactly once"
        );
        if !mid_flight {
            let codes = codes.lock().unwrap();
            for (i, code) in codes.iter() {
                let want: &[tern_code] = match i % 8 {
                    0 | 1 | 7 => &[tern_code::Ok],
                    2 => &[tern_code::ConnectionRefused],
                    3 => &[tern_code::TimeoutTotal],
                    4 => &[tern_code::Canceled],
                    5 => &[tern_code::Canceled, tern_code::Shutdown],
                    _ => &[tern_code::Shutdown],
                };
                assert!(
                    want.contains(code),
                    "round {round}: request {i} (kind {}) ended {code:?}",
                    i % 8
                );
            }
        }
    }
    assert!(cancelled_inside > 0, "some cancels ran inside callbacks");
}
