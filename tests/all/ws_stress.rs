//! 1,000 WebSockets open at once, each closed, aborted or freed at a random moment
//! while a session close, a session abort or a runtime free (from the test thread or
//! from inside a callback) ends the rest: every socket gets exactly one `on_close`,
//! then exactly one `release`, and nothing after them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern::code::tern_code;
use tern::ffi::session::tern_session_poll;

use crate::common::*;

const PER_SESSION: usize = 500;

/// xorshift64*: a fixed seed per round, printed on failure.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An in-process echo server (tokio-tungstenite) on two workers.
fn echo_server() -> (tokio::runtime::Runtime, u16) {
    let (rt, l, port) = server_runtime_with(2);
    rt.spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                use futures_util::{SinkExt, StreamExt};
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (rt, port)
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Close,
    Abort,
    Free,
    Nothing,
}

fn round(n: u64, port: u16) {
    let seed = 0x7e57_0000 + n;
    let mut rng = Rng(seed);
    let rt = Arc::new(Mutex::new(Some(Rt::new(2))));
    let direct = {
        let g = rt.lock().unwrap();
        Sess::new(g.as_ref().unwrap(), &Opts::new())
    };
    let queued = {
        let g = rt.lock().unwrap();
        Arc::new(Sess::new(g.as_ref().unwrap(), &queued_opts()))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (q, stop) = (queued.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                unsafe {
                    tern_session_poll(q.0, 10, 0, std::ptr::null_mut(), std::ptr::null_mut())
                };
            }
        })
    };
    // Round 2 frees the runtime from inside a message callback of a direct socket (a
    // runtime thread); round 3 from the test thread.
    let free_in_callback = n == 2;
    let freed_in_callback = Arc::new(AtomicBool::new(false));
    let url = format!("ws://127.0.0.1:{port}/");
    // Armed once every socket is open, so that every connect is accepted.
    let armed = Arc::new(AtomicBool::new(false));
    let mut sockets = Vec::new();
    for i in 0..2 * PER_SESSION {
        let k = 1 + rng.below(3) as usize;
        let from_cb = free_in_callback && i < PER_SESSION;
        let (rt2, armed2, freed2) = (rt.clone(), armed.clone(), freed_in_callback.clone());
        let hook: WsHook = Box::new(move |ws, ev| match ev {
            WsEvent::Open { .. } => {
                for j in 0..k {
                    let _ = ws.send_text(&format!("m{j}"));
                }
            }
            WsEvent::Message { .. } if from_cb => {
                if !armed2.load(Ordering::Acquire) {
                    // Keep traffic going until every socket is open.
                    let _ = ws.send_text("again");
                    return;
                }
                let r = rt2.lock().unwrap().take();
                if let Some(r) = r {
                    r.free();
                    freed2.store(true, Ordering::Release);
                }
            }
            _ => {}
        });
        let s = if i < PER_SESSION { &direct } else { &*queued };
        let (h, r) = s
            .ws_connect_with(&url, None, Some(hook))
            .unwrap_or_else(|e| panic!("seed {seed:#x}: connect {i} refused: {e:?}"));
        let action = match rng.below(100) {
            0..=29 => Action::Close,
            30..=44 => Action::Abort,
            45..=59 => Action::Free,
            _ => Action::Nothing,
        };
        sockets.push((Some(h), r, action, rng.below(200)));
    }
    // Every socket open at once before anything ends them.
    let all_open = wait_for(Duration::from_secs(60), || {
        sockets
            .iter()
            .all(|(_, r, _, _)| r.events().iter().any(|e| matches!(e, WsEvent::Open { .. })))
    });
    let not_open = sockets
        .iter()
        .filter(|(_, r, _, _)| !r.events().iter().any(|e| matches!(e, WsEvent::Open { .. })))
        .count();
    assert!(
        all_open,
        "seed {seed:#x}: {not_open} of {} sockets did not open",
        sockets.len()
    );
    armed.store(true, Ordering::Release);
    let global_at = 50 + rng.below(200);
    let start = Instant::now();
    // The driver acts on each socket at its moment, from another thread.
    let mut order: Vec<usize> = (0..sockets.len()).collect();
    order.sort_by_key(|i| sockets[*i].3);
    let plan: Vec<(usize, Action, u64, Option<WsHandle>)> = order
        .iter()
        .map(|&i| (i, sockets[i].2, sockets[i].3, sockets[i].0.take()))
        .collect();
    let driver = std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut kept = Vec::new();
        for (i, action, at, h) in plan {
            let due = Duration::from_millis(at);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
            let h = h.unwrap();
            match action {
                Action::Close => {
                    let c = h.close(1000, "");
                    assert!(matches!(c, tern_code::Ok | tern_code::Shutdown), "{c:?}");
                }
                Action::Abort => assert_eq!(h.abort(), tern_code::Ok),
                Action::Free => {
                    h.free();
                    continue;
                }
                Action::Nothing => {}
            }
            kept.push((i, h));
        }
        kept
    });
    if let Some(wait) = Duration::from_millis(global_at).checked_sub(start.elapsed()) {
        std::thread::sleep(wait);
    }
    match n {
        0 => {
            direct.close(0);
            queued.close(0);
        }
        1 => {
            direct.close(1);
            queued.close(1);
        }
        _ => {
            let r = rt.lock().unwrap().take();
            if let Some(r) = r {
                r.free();
            }
        }
    }
    let kept = driver.join().unwrap();
    if free_in_callback {
        assert!(
            freed_in_callback.load(Ordering::Acquire),
            "seed {seed:#x}: the runtime was not freed from a callback"
        );
    }
    let all_released = wait_for(Duration::from_secs(60), || {
        sockets
            .iter()
            .all(|(_, r, _, _)| r.events().iter().any(|e| matches!(e, WsEvent::Release)))
    });
    let missing: Vec<usize> = sockets
        .iter()
        .enumerate()
        .filter(|(_, (_, r, _, _))| !r.events().iter().any(|e| matches!(e, WsEvent::Release)))
        .map(|(i, _)| i)
        .collect();
    assert!(
        all_released,
        "seed {seed:#x}: {} sockets never released, e.g. {:?}: {:?}",
        missing.len(),
        missing.first(),
        missing.first().map(|i| sockets[*i].1.brief())
    );
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Release);
    poller.join().unwrap();
    for (i, (_, r, action, _)) in sockets.iter().enumerate() {
        let ev = r.events();
        let v = r.violations.lock().unwrap();
        assert!(v.is_empty(), "seed {seed:#x} socket {i}: {v:?}");
        let closes: Vec<&CloseEv> = ev
            .iter()
            .filter_map(|e| match e {
                WsEvent::Close(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(
            closes.len(),
            1,
            "seed {seed:#x} socket {i}: {:?}",
            r.brief()
        );
        assert_eq!(
            ev.iter().filter(|e| matches!(e, WsEvent::Release)).count(),
            1
        );
        assert!(matches!(ev.last(), Some(WsEvent::Release)));
        let c = closes[0];
        // The echo server answers every close: no time-out is normal here. A socket
        // the caller left alone is ended by the session's close, abort or the
        // runtime's free: SHUTDOWN.
        assert!(
            matches!(
                c.code,
                tern_code::Ok | tern_code::Canceled | tern_code::Shutdown
            ),
            "seed {seed:#x} socket {i} ({action:?}): {c:?}"
        );
        if let Action::Nothing = action {
            assert_eq!(
                c.code,
                tern_code::Shutdown,
                "seed {seed:#x} socket {i} ({action:?}): {c:?}"
            );
            assert!(c.opened, "seed {seed:#x} socket {i}: {c:?}");
        }
    }
    for (i, h) in &kept {
        assert_eq!(h.state(), 3, "socket {i}");
        let code = h.send_text("after");
        assert!(
            matches!(code, tern_code::InvalidState | tern_code::Shutdown),
            "socket {i}: {code:?}"
        );
    }
    drop(kept);
    drop(direct);
    drop(queued);
    let last = rt.lock().unwrap().take();
    if let Some(r) = last {
        r.free();
    }
}

#[test]
fn thousand_sockets_close_exactly_once() {
    raise_fd_limit();
    let (_server, port) = echo_server();
    for n in 0..4 {
        round(n, port);
    }
}
