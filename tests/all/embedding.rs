//! Embedding: callbacks queued for the caller's own thread, streamed downloads with
//! pause and resume, streamed uploads (read callback, pushed writes with back-pressure,
//! Expect: 100-continue) and progress. The memory bounds are measured in a child
//! process, so that no other test's allocations count.

use std::ffi::c_void;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tern::code::tern_code;
use tern::ffi::request::*;
use tern::ffi::response::*;
use tern::ffi::session::*;

use crate::common::*;

const CONTINUE: u32 = 0;
const CANCEL: u32 = 1;
const PAUSE: u32 = 2;

/// What one request's callbacks saw.
#[derive(Default)]
struct Seen {
    threads: Mutex<Vec<ThreadId>>,
    completes: AtomicUsize,
    releases: AtomicUsize,
    code: Mutex<Option<tern_code>>,
    status: AtomicUsize,
    body_len: AtomicUsize,
    head_status: AtomicUsize,
    bytes: AtomicU64,
    chunks: AtomicUsize,
    hash: Mutex<Option<Sha256>>,
    /// Pause when this many bytes have arrived (0 = never).
    pause_at: AtomicU64,
    paused_at: Mutex<Option<Instant>>,
    resumed_gap: Mutex<Option<Duration>>,
    cancel_in_headers: AtomicBool,
    cancel_at: AtomicU64,
    progress: Mutex<Vec<[u64; 4]>>,
    ready: (Mutex<usize>, Condvar),
}

impl Seen {
    fn note_thread(&self) {
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
    }
}

unsafe extern "C" fn on_complete(ud: *mut c_void, r: *mut tern_response) {
    let seen = &*(ud as *const Seen);
    seen.note_thread();
    seen.completes.fetch_add(1, Ordering::SeqCst);
    *seen.code.lock().unwrap() = Some(tern_response_code(r));
    seen.status
        .store(tern_response_status(r) as usize, Ordering::SeqCst);
    let (mut p, mut n) = (null(), 0);
    tern_response_body(r, &mut p, &mut n);
    seen.body_len.store(n, Ordering::SeqCst);
    tern_response_free(r);
}

unsafe extern "C" fn on_headers(ud: *mut c_void, head: *const tern_response) -> u32 {
    let seen = &*(ud as *const Seen);
    seen.note_thread();
    seen.head_status
        .store(tern_response_status(head) as usize, Ordering::SeqCst);
    if seen.cancel_in_headers.load(Ordering::SeqCst) {
        CANCEL
    } else {
        CONTINUE
    }
}

unsafe extern "C" fn on_data(ud: *mut c_void, data: *const u8, len: usize) -> u32 {
    let seen = &*(ud as *const Seen);
    let chunk = std::slice::from_raw_parts(data, len);
    if let Some(at) = seen.paused_at.lock().unwrap().take() {
        *seen.resumed_gap.lock().unwrap() = Some(at.elapsed());
    }
    if let Some(h) = seen.hash.lock().unwrap().as_mut() {
        h.update(chunk);
    }
    seen.chunks.fetch_add(1, Ordering::SeqCst);
    let before = seen.bytes.fetch_add(len as u64, Ordering::SeqCst);
    let after = before + len as u64;
    let cancel_at = seen.cancel_at.load(Ordering::SeqCst);
    if cancel_at > 0 && after >= cancel_at {
        return CANCEL;
    }
    let pause_at = seen.pause_at.load(Ordering::SeqCst);
    if pause_at > 0 && before < pause_at && after >= pause_at {
        *seen.paused_at.lock().unwrap() = Some(Instant::now());
        return PAUSE;
    }
    CONTINUE
}

unsafe extern "C" fn on_progress(ud: *mut c_void, a: u64, b: u64, c: u64, d: u64) {
    let seen = &*(ud as *const Seen);
    seen.progress.lock().unwrap().push([a, b, c, d]);
}

unsafe extern "C" fn on_upload_ready(ud: *mut c_void) {
    let seen = &*(ud as *const Seen);
    let (m, cv) = &seen.ready;
    *m.lock().unwrap() += 1;
    cv.notify_all();
}

unsafe extern "C" fn release(ud: *mut c_void) {
    let seen = &*(ud as *const Seen);
    seen.note_thread();
    seen.releases.fetch_add(1, Ordering::SeqCst);
}

fn all_callbacks(headers: bool, data: bool, progress: bool) -> tern_callbacks {
    tern_callbacks {
        struct_size: std::mem::size_of::<tern_callbacks>(),
        on_complete: Some(on_complete),
        on_headers: if headers { Some(on_headers) } else { None },
        on_data: if data { Some(on_data) } else { None },
        on_progress: if progress { Some(on_progress) } else { None },
        on_upload_ready: Some(on_upload_ready),
        release: Some(release),
    }
}

/// Sends with `seen` as user_data (the caller keeps `seen` alive until release).
fn send_seen(s: &Sess, req: Req, cb: &tern_callbacks, seen: &Arc<Seen>) -> u64 {
    let mut id = 0;
    let mut e = null_mut();
    let code = unsafe {
        tern_session_send(
            s.0,
            req.into_raw(),
            cb,
            Arc::as_ptr(seen) as *mut c_void,
            &mut id,
            &mut e,
        )
    };
    assert_eq!(code, tern_code::Ok, "{}", take_err(e));
    id
}

fn session_fd(s: &Sess) -> i32 {
    let mut fd = -1;
    let mut e = null_mut();
    let code = unsafe { tern_session_fd(s.0, &mut fd, &mut e) };
    assert_eq!(code, tern_code::Ok, "{}", take_err(e));
    fd
}

fn readable(fd: i32, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    unsafe { libc::poll(&mut p, 1, timeout_ms) == 1 && p.revents & libc::POLLIN != 0 }
}

#[test]
fn queued_delivery_runs_every_callback_on_the_polling_thread() {
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &queued_opts());
    let fd = session_fd(&s);
    let me = std::thread::current().id();
    const N: usize = 1000;
    let seen: Vec<Arc<Seen>> = (0..N).map(|_| Arc::new(Seen::default())).collect();
    let cb = all_callbacks(true, false, true);
    for (i, one) in seen.iter().enumerate() {
        let url = match i % 3 {
            0 => http("/hello"),
            1 => https("/hello"),
            _ => "http://127.0.0.1:1/".to_owned(),
        };
        send_seen(&s, Req::new("GET", &url), &cb, one);
    }
    // Nothing runs until this thread polls; the descriptor says callbacks wait.
    assert!(readable(fd, 5000), "the descriptor becomes readable");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        seen.iter()
            .map(|x| x.completes.load(Ordering::SeqCst))
            .sum::<usize>(),
        0
    );

    // A poll(2) loop on the descriptor, as an event loop would run it; a bound of 7
    // callbacks per turn.
    let t = Instant::now();
    let mut turns = 0;
    while seen.iter().any(|x| x.releases.load(Ordering::SeqCst) == 0) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "all requests complete"
        );
        if readable(fd, 1000) {
            let ran = poll_session(&s, 0, 7);
            assert!(ran <= 7);
            turns += 1;
        }
    }
    assert!(turns > N / 7, "the bound holds: {turns} turns");
    for (i, x) in seen.iter().enumerate() {
        assert_eq!(x.completes.load(Ordering::SeqCst), 1, "request {i}");
        assert_eq!(x.releases.load(Ordering::SeqCst), 1, "request {i}");
        let threads = x.threads.lock().unwrap();
        assert!(
            threads.iter().all(|t| *t == me),
            "request {i} ran off the main thread"
        );
        let code = x.code.lock().unwrap().unwrap();
        match i % 3 {
            2 => assert_eq!(code, tern_code::ConnectionRefused),
            _ => {
                assert_eq!(code, tern_code::Ok);
                assert_eq!(
                    x.head_status.load(Ordering::SeqCst),
                    200,
                    "on_headers ran first"
                );
            }
        }
        assert!(
            !x.progress.lock().unwrap().is_empty(),
            "a final progress report"
        );
    }
    // Once everything ran, the descriptor is not readable and a poll runs nothing.
    assert_eq!(poll_session(&s, 0, 0), 0);
    assert!(!readable(fd, 0));

    // A session delivering on runtime threads has no queue.
    let direct = Sess::new(&rt, &Opts::new());
    let mut e = null_mut();
    let code = unsafe { tern_session_poll(direct.0, 0, 0, null_mut(), &mut e) };
    assert_eq!(code, tern_code::InvalidState);
    assert!(!take_err(e).is_empty());
    let mut fd = 0;
    assert_eq!(
        unsafe { tern_session_fd(direct.0, &mut fd, null_mut()) },
        tern_code::InvalidState
    );

    // Freeing a queued session with work in flight runs what is left here.
    let s2 = Sess::new(&rt, &queued_opts());
    let hold = RawServer::start(|_, s| {
        std::thread::sleep(Duration::from_secs(5));
        drop(s);
    });
    let pending: Vec<Arc<Seen>> = (0..20).map(|_| Arc::new(Seen::default())).collect();
    for p in &pending {
        send_seen(&s2, Req::new("GET", &hold.url("/")), &cb, p);
    }
    let t = Instant::now();
    drop(s2);
    assert!(t.elapsed() < Duration::from_secs(3));
    for p in &pending {
        assert_eq!(p.releases.load(Ordering::SeqCst), 1);
        assert_eq!(*p.code.lock().unwrap(), Some(tern_code::Shutdown));
        assert!(p.threads.lock().unwrap().iter().all(|t| *t == me));
    }
}

#[test]
fn streamed_download_cancel_from_headers_and_data() {
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::with_ca());
    let cb = all_callbacks(true, true, false);
    // Cancel in on_headers: no body callback.
    let seen = Arc::new(Seen::default());
    seen.cancel_in_headers.store(true, Ordering::SeqCst);
    send_seen(&s, Req::new("GET", &http("/bytes/1m")), &cb, &seen);
    assert!(wait_for(Duration::from_secs(10), || seen
        .releases
        .load(Ordering::SeqCst)
        == 1));
    assert_eq!(*seen.code.lock().unwrap(), Some(tern_code::Canceled));
    assert_eq!(seen.chunks.load(Ordering::SeqCst), 0);
    assert_eq!(seen.head_status.load(Ordering::SeqCst), 200);
    // Cancel in on_data after 100 KiB.
    let seen = Arc::new(Seen::default());
    seen.cancel_at.store(100 * 1024, Ordering::SeqCst);
    send_seen(&s, Req::new("GET", &https("/bytes/16m")), &cb, &seen);
    assert!(wait_for(Duration::from_secs(10), || seen
        .releases
        .load(Ordering::SeqCst)
        == 1));
    assert_eq!(*seen.code.lock().unwrap(), Some(tern_code::Canceled));
    assert!(seen.bytes.load(Ordering::SeqCst) < 16 << 20);
    // A whole body through on_data: decoded, and not kept in the response.
    let seen = Arc::new(Seen::default());
    *seen.hash.lock().unwrap() = Some(Sha256::new());
    send_seen(&s, Req::new("GET", &http("/bytes/16m")), &cb, &seen);
    assert!(wait_for(Duration::from_secs(20), || seen
        .releases
        .load(Ordering::SeqCst)
        == 1));
    assert_eq!(*seen.code.lock().unwrap(), Some(tern_code::Ok));
    assert_eq!(seen.bytes.load(Ordering::SeqCst), 16 << 20);
    assert_eq!(
        seen.body_len.load(Ordering::SeqCst),
        0,
        "the body is not buffered"
    );
    let h = seen.hash.lock().unwrap().take().unwrap();
    assert_eq!(hex(&h.finalize()), env("TERN_TEST_SHA256_16M"));
    let seen = Arc::new(Seen::default());
    send_seen(&s, Req::new("GET", &http("/gzip/text")), &cb, &seen);
    assert!(wait_for(Duration::from_secs(10), || seen
        .releases
        .load(Ordering::SeqCst)
        == 1));
    let text = std::fs::read(format!("{}/www/gzip/text", env("TERN_TESTENV_DIR"))).unwrap();
    assert_eq!(
        seen.bytes.load(Ordering::SeqCst),
        text.len() as u64,
        "decoded bytes"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The process's peak resident set (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// In the parent, runs `name` in a child process (see `run_in_child`), passes on
/// its "measured" lines and returns true; in the child, returns false.
fn in_child(name: &str) -> bool {
    if crate::common::in_child() {
        return false;
    }
    let (stdout, _) = run_in_child(name, &[], &[]);
    for line in stdout.lines().filter(|l| l.contains("measured")) {
        eprintln!("{line}");
    }
    true
}

#[test]
fn one_gib_download_streams_in_bounded_memory_with_a_pause() {
    if in_child("embedding::one_gib_download_streams_in_bounded_memory_with_a_pause") {
        return;
    }
    let rt = Rt::new(2);
    let s = Arc::new(Sess::new(&rt, &Opts::new()));
    s.get(&http("/hello")).ok(); // warm up the runtime and the pool
    let base = peak_rss();
    let seen = Arc::new(Seen::default());
    *seen.hash.lock().unwrap() = Some(Sha256::new());
    seen.pause_at.store(100 << 20, Ordering::SeqCst);
    let cb = all_callbacks(true, true, true);
    let id = send_seen(&s, Req::new("GET", &http("/bytes/1g")), &cb, &seen);
    // Resume 2 s after the pause, from another thread.
    assert!(wait_for(Duration::from_secs(60), || seen
        .paused_at
        .lock()
        .unwrap()
        .is_some()));
    let during = seen.bytes.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        seen.bytes.load(Ordering::SeqCst),
        during,
        "no data while paused"
    );
    assert_eq!(unsafe { tern_session_resume(s.0, id) }, tern_code::Ok);
    assert!(wait_for(Duration::from_secs(300), || seen
        .releases
        .load(Ordering::SeqCst)
        == 1));
    assert_eq!(*seen.code.lock().unwrap(), Some(tern_code::Ok));
    assert_eq!(seen.bytes.load(Ordering::SeqCst), 1 << 30);
    let gap = seen.resumed_gap.lock().unwrap().unwrap();
    assert!(gap >= Duration::from_secs(2), "paused for {gap:?}");
    let h = seen.hash.lock().unwrap().take().unwrap();
    assert_eq!(hex(&h.finalize()), env("TERN_TEST_SHA256_1G"));
    let grew = peak_rss().saturating_sub(base);
    println!(
        "measured: 1 GiB download, peak RSS grew {} KiB",
        grew / 1024
    );
    assert!(grew < 32 << 20, "peak RSS grew {} MiB", grew >> 20);
    // Progress: monotonic, and the last report has everything.
    let p = seen.progress.lock().unwrap();
    assert!(p.windows(2).all(|w| w[0][2] <= w[1][2]));
    assert_eq!(p.last().unwrap()[2], 1 << 30);
    assert_eq!(p.last().unwrap()[3], 1 << 30);
}

/// An in-process HTTP/1.1 server that hashes each request body and answers
/// "<bytes> <sha256>"; a request to /reject is answered 401 without reading the body.
fn hashing_server() -> (u16, tokio::runtime::Runtime) {
    use http_body_util::BodyExt;
    http1_server(|req: hyper::Request<hyper::body::Incoming>| async move {
        if req.uri().path() == "/reject" {
            return Ok::<_, hyper::Error>(
                hyper::Response::builder()
                    .status(401)
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(b"no")))
                    .unwrap(),
            );
        }
        if req.uri().path() == "/slow" {
            // Reads nothing for a while, so that the client's buffers fill.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let expect = req.headers().contains_key("expect");
        let chunked = req.headers().contains_key("transfer-encoding");
        let mut body = req.into_body();
        let mut h = Sha256::new();
        let mut n = 0u64;
        while let Some(f) = body.frame().await {
            if let Ok(d) = f?.into_data() {
                n += d.len() as u64;
                h.update(&d);
            }
        }
        let text = format!(
            "{n} {} expect={expect} chunked={chunked}",
            hex(&h.finalize())
        );
        Ok(hyper::Response::new(http_body_util::Full::new(
            bytes::Bytes::from(text),
        )))
    })
}

/// A deterministic byte pattern: byte i is (i * 31 + i / 4096) mod 251.
fn pattern(offset: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        let i = offset + k as u64;
        *b = ((i * 31 + i / 4096) % 251) as u8;
    }
}

fn pattern_sha(total: u64) -> String {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < total {
        let n = (total - off).min(buf.len() as u64) as usize;
        pattern(off, &mut buf[..n]);
        h.update(&buf[..n]);
        off += n as u64;
    }
    hex(&h.finalize())
}

struct Source {
    total: u64,
    offset: AtomicU64,
    reads: AtomicUsize,
    released: AtomicUsize,
}

unsafe extern "C" fn read_pattern(
    ud: *mut c_void,
    buf: *mut u8,
    cap: usize,
    written: *mut usize,
) -> u32 {
    let src = &*(ud as *const Source);
    src.reads.fetch_add(1, Ordering::SeqCst);
    let off = src.offset.load(Ordering::SeqCst);
    let n = (src.total - off).min(cap as u64) as usize;
    pattern(off, std::slice::from_raw_parts_mut(buf, n));
    src.offset.store(off + n as u64, Ordering::SeqCst);
    *written = n;
    if off + n as u64 == src.total {
        1 // END
    } else {
        0 // DATA
    }
}

unsafe extern "C" fn release_source(ud: *mut c_void) {
    let src = &*(ud as *const Source);
    src.released.fetch_add(1, Ordering::SeqCst);
}

fn reader_request(url: &str, total: u64, known: bool, src: &Arc<Source>) -> Req {
    let r = Req::new("PUT", url);
    let len = if known { total as i64 } else { -1 };
    let code = unsafe {
        tern_request_set_body_reader(
            r.0,
            len,
            Some(read_pattern),
            Some(release_source),
            Arc::as_ptr(src) as *mut c_void,
            null_mut(),
        )
    };
    assert_eq!(code, tern_code::Ok);
    r
}

fn source(total: u64) -> Arc<Source> {
    Arc::new(Source {
        total,
        offset: AtomicU64::new(0),
        reads: AtomicUsize::new(0),
        released: AtomicUsize::new(0),
    })
}

#[test]
fn one_gib_upload_from_a_read_callback_in_bounded_memory() {
    if in_child("embedding::one_gib_upload_from_a_read_callback_in_bounded_memory") {
        return;
    }
    let (port, _srv) = hashing_server();
    let url = format!("http://127.0.0.1:{port}/upload");
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    s.get(&url).ok();
    let base = peak_rss();
    let total: u64 = 1 << 30;
    let src = source(total);
    let r = s.perform(reader_request(&url, total, true, &src).header("Expect", "100-continue"));
    let text = r.ok().text();
    assert_eq!(
        text,
        format!("{total} {} expect=true chunked=false", pattern_sha(total))
    );
    assert_eq!(src.released.load(Ordering::SeqCst), 1);
    let grew = peak_rss().saturating_sub(base);
    println!("measured: 1 GiB upload, peak RSS grew {} KiB", grew / 1024);
    assert!(grew < 32 << 20, "peak RSS grew {} MiB", grew >> 20);
}

#[test]
fn uploads_chunked_pushed_and_refused_before_the_body() {
    let (port, _srv) = hashing_server();
    let url = format!("http://127.0.0.1:{port}/upload");
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());

    // Unknown length: chunked.
    let total = 8 << 20;
    let src = source(total);
    let r = s.perform(reader_request(&url, total, false, &src));
    assert_eq!(
        r.ok().text(),
        format!("{total} {} expect=false chunked=true", pattern_sha(total))
    );

    // Expect: 100-continue and a server that answers 401 without reading: the
    // body is never produced (or dropped at once), and the answer is the 401.
    let src = source(64 << 20);
    let r = s.perform(
        reader_request(
            &format!("http://127.0.0.1:{port}/reject"),
            64 << 20,
            true,
            &src,
        )
        .header("Expect", "100-continue"),
    );
    assert_eq!(r.ok().status(), 401);
    assert!(
        src.offset.load(Ordering::SeqCst) < 64 << 20,
        "the body was not sent"
    );

    // Pushed writes from another thread, with back-pressure (the server starts
    // reading after half a second, so the buffer fills).
    let seen = Arc::new(Seen::default());
    let req = Req::new("POST", &format!("http://127.0.0.1:{port}/slow"));
    assert_eq!(
        unsafe { tern_request_set_body_stream(req.0, -1, null_mut()) },
        tern_code::Ok
    );
    let cb = all_callbacks(false, false, true);
    let id = send_seen(&s, req, &cb, &seen);
    let total: u64 = 32 << 20;
    // The session pointer crosses to the writer thread as an address.
    let (sp, seen2) = (s.0 as usize, seen.clone());
    let writer = std::thread::spawn(move || {
        let sp = sp as *mut tern::ffi::session::tern_session;
        let mut off = 0u64;
        let mut refused = 0;
        let mut buf = vec![0u8; 100_000];
        while off < total {
            let n = (total - off).min(buf.len() as u64) as usize;
            pattern(off, &mut buf[..n]);
            let mut taken = 0;
            while taken < n {
                let ready_before = *seen2.ready.0.lock().unwrap();
                let mut acc = 0;
                let code = unsafe {
                    tern_session_write(
                        sp,
                        id,
                        buf[taken..n].as_ptr(),
                        n - taken,
                        &mut acc,
                        null_mut(),
                    )
                };
                match code {
                    tern_code::Ok => taken += acc,
                    tern_code::WouldBlock => {
                        refused += 1;
                        let (m, cv) = &seen2.ready;
                        let g = m.lock().unwrap();
                        let _g = cv
                            .wait_timeout_while(g, Duration::from_secs(10), |c| *c == ready_before)
                            .unwrap();
                    }
                    other => panic!("write: {other:?}"),
                }
            }
            off += n as u64;
        }
        assert_eq!(
            unsafe { tern_session_end_body(sp, id, null_mut()) },
            tern_code::Ok
        );
        refused
    });
    let refused = writer.join().unwrap();
    assert!(wait_for(Duration::from_secs(60), || seen
        .releases
        .load(Ordering::SeqCst)
        == 1));
    assert_eq!(*seen.code.lock().unwrap(), Some(tern_code::Ok));
    assert!(refused > 0, "the buffer filled at least once");
    assert!(*seen.ready.0.lock().unwrap() > 0, "on_upload_ready ran");
    let p = seen.progress.lock().unwrap();
    assert_eq!(p.last().unwrap()[0], total, "all bytes reported sent");

    // Writes to a request without a pushed body, or not in flight, are refused.
    let mut acc = 0;
    let code = unsafe { tern_session_write(s.0, id, b"x".as_ptr(), 1, &mut acc, null_mut()) };
    assert_eq!(code, tern_code::NotFound);
    assert_eq!(unsafe { tern_session_resume(s.0, id) }, tern_code::NotFound);
}

struct Slow {
    left: AtomicUsize,
}

unsafe extern "C" fn read_slowly(
    ud: *mut c_void,
    buf: *mut u8,
    cap: usize,
    written: *mut usize,
) -> u32 {
    let slow = &*(ud as *const Slow);
    std::thread::sleep(Duration::from_millis(150));
    let n = cap.min(1000);
    std::ptr::write_bytes(buf, b'x', n);
    *written = n;
    if slow.left.fetch_sub(1, Ordering::SeqCst) == 1 {
        1
    } else {
        0
    }
}

#[test]
fn a_slow_upload_is_progress_for_the_read_timeout() {
    let (port, _srv) = hashing_server();
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new().timeout(2, 400));
    // 12 pieces, 150 ms apart: 1.8 s in all, never 400 ms without a byte.
    let slow = Slow {
        left: AtomicUsize::new(12),
    };
    let r = Req::new("POST", &format!("http://127.0.0.1:{port}/"));
    let code = unsafe {
        tern_request_set_body_reader(
            r.0,
            12_000,
            Some(read_slowly),
            None,
            &slow as *const Slow as *mut c_void,
            null_mut(),
        )
    };
    assert_eq!(code, tern_code::Ok);
    let r = s.perform(r);
    assert!(r.ok().text().starts_with("12000 "), "{}", r.text());
}

#[test]
fn a_streamed_body_must_match_its_declared_length() {
    let (port, _srv) = hashing_server();
    let url = format!("http://127.0.0.1:{port}/");
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    // The reader produces 100 KiB; declared 200 KiB (short) and 50 KiB (long).
    for declared in [200 * 1024i64, 50 * 1024] {
        let src = source(100 * 1024);
        let r = Req::new("PUT", &url);
        let code = unsafe {
            tern_request_set_body_reader(
                r.0,
                declared,
                Some(read_pattern),
                Some(release_source),
                Arc::as_ptr(&src) as *mut c_void,
                null_mut(),
            )
        };
        assert_eq!(code, tern_code::Ok);
        let r = s.perform(r);
        assert_eq!(
            r.code(),
            tern_code::InvalidArgument,
            "{declared}: {}",
            r.message()
        );
        assert!(r.message().contains("declared length"), "{}", r.message());
        assert_eq!(src.released.load(Ordering::SeqCst), 1);
    }
}

static FREE_ME: std::sync::atomic::AtomicPtr<tern::ffi::session::tern_session> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

unsafe extern "C" fn free_session_inside(ud: *mut c_void, r: *mut tern_response) {
    on_complete(ud, r);
    let s = FREE_ME.swap(null_mut(), Ordering::SeqCst);
    if !s.is_null() {
        tern_session_free(s);
    }
}

#[test]
fn a_queued_session_freed_from_its_own_callback() {
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &queued_opts());
    let raw = s.0;
    std::mem::forget(s); // freed by the callback
    FREE_ME.store(raw, Ordering::SeqCst);
    let seen: Vec<Arc<Seen>> = (0..2).map(|_| Arc::new(Seen::default())).collect();
    let mut cb = all_callbacks(false, false, false);
    cb.on_complete = Some(free_session_inside);
    for one in &seen {
        let mut id = 0;
        let req = Req::new("GET", &http("/hello"));
        let code = unsafe {
            tern_session_send(
                raw,
                req.into_raw(),
                &cb,
                Arc::as_ptr(one) as *mut c_void,
                &mut id,
                null_mut(),
            )
        };
        assert_eq!(code, tern_code::Ok);
    }
    let t = Instant::now();
    while !FREE_ME.load(Ordering::SeqCst).is_null() {
        unsafe { tern_session_poll(raw, 100, 0, null_mut(), null_mut()) };
        assert!(t.elapsed() < Duration::from_secs(20));
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "free did not wait for itself: {:?}",
        t.elapsed()
    );
    for one in &seen {
        assert_eq!(one.completes.load(Ordering::SeqCst), 1);
        assert_eq!(one.releases.load(Ordering::SeqCst), 1);
    }
}
