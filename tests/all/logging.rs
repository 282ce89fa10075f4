//! The process-wide log callback (`tern_set_log_callback`), against the local nginx
//! and squid.
//!
//! The logger is global to the process and the other tests run on parallel threads of
//! this binary, so each test that sets a callback re-runs itself in a child process
//! (`--exact logging::<name>` with TERN_CHILD set), where it is alone.

use std::ffi::{c_char, c_void, CStr};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tern::code::tern_code;
use tern::ffi::log::{tern_log_level, tern_set_log_callback};
use tern::ffi::options::{tern_session_options_set_cookie_jar, tern_session_options_set_proxy};

use crate::common::*;
use crate::options::set;

const OFF: u32 = tern_log_level::Off as u32;
const WARN: u32 = tern_log_level::Warn as u32;
const DEBUG: u32 = tern_log_level::Debug as u32;
const TRACE: u32 = tern_log_level::Trace as u32;

#[derive(Clone, Debug)]
struct Msg {
    level: u32,
    target: String,
    message: String,
}

/// What one callback received.
#[derive(Default)]
struct Collector {
    msgs: Mutex<Vec<Msg>>,
}

impl Collector {
    /// A collector that lives for the rest of the (child) process.
    fn leaked() -> &'static Collector {
        Box::leak(Box::default())
    }
    fn msgs(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.msgs.lock().unwrap().len()
    }
}

unsafe extern "C" fn collect(
    user_data: *mut c_void,
    level: tern_log_level,
    target: *const c_char,
    message: *const c_char,
) {
    let c = &*(user_data as *const Collector);
    let msg = Msg {
        level: level as u32,
        target: CStr::from_ptr(target).to_string_lossy().into_owned(),
        message: CStr::from_ptr(message).to_string_lossy().into_owned(),
    };
    c.msgs.lock().unwrap().push(msg);
}

/// Sets `c` (or no callback) at `level`; returns the code.
fn set_log(level: u32, c: Option<&'static Collector>) -> tern_code {
    let mut e = null_mut();
    let code = unsafe {
        tern_set_log_callback(
            level,
            c.map(|_| collect as _),
            c.map_or(null_mut(), |c| c as *const Collector as *mut c_void),
            &mut e,
        )
    };
    let msg = take_err(e);
    assert_eq!(code == tern_code::Ok, msg.is_empty(), "{code:?}: {msg}");
    code
}

/// Runs the test `name` of this module alone in a child process.
fn run_child(name: &str) -> (String, String) {
    run_in_child(&format!("logging::{name}"), &[], &[])
}

/// An HTTPS GET to nginx on a new session (so a new connection and TLS handshake).
fn https_get(rt: &Rt) {
    let s = Sess::new(rt, &Opts::with_ca());
    assert_eq!(s.get(&https("/hello")).ok().status(), 200);
}

fn show(msgs: &[Msg]) -> String {
    msgs.iter()
        .map(|m| format!("\n  {} {} {}", m.level, m.target, m.message))
        .collect()
}

#[test]
fn invalid_level_is_refused() {
    // Refused before anything changes, so this may run next to the other tests.
    for level in [6, 7, 100, u32::MAX] {
        let mut e = null_mut();
        let code = unsafe { tern_set_log_callback(level, None, null_mut(), &mut e) };
        assert_eq!(code, tern_code::InvalidArgument);
        assert!(take_err(e).contains("tern_log_level"));
        let code = unsafe { tern_set_log_callback(level, Some(collect), null_mut(), null_mut()) };
        assert_eq!(code, tern_code::InvalidArgument);
    }
}

#[test]
fn debug_level_gets_rustls_and_tern_events() {
    if !in_child() {
        run_child("debug_level_gets_rustls_and_tern_events");
        return;
    }
    let rt = Rt::new(2);
    let c = Collector::leaked();
    assert_eq!(set_log(DEBUG, Some(c)), tern_code::Ok);
    https_get(&rt);
    assert_eq!(set_log(OFF, None), tern_code::Ok);
    let msgs = c.msgs();
    let all = show(&msgs);
    assert!(
        msgs.iter().all(|m| (1..=DEBUG).contains(&m.level)),
        "a message above DEBUG:{all}"
    );
    assert!(
        msgs.iter()
            .all(|m| !m.target.is_empty() && !m.message.is_empty()),
        "{all}"
    );
    assert!(
        msgs.iter().any(|m| m.target.starts_with("rustls")),
        "no rustls message:{all}"
    );
    let tern = |target: &str, text: &str| {
        msgs.iter()
            .any(|m| m.target == target && m.message.contains(text))
    };
    assert!(tern("tern::net::dns", "DNS answer host=localhost"), "{all}");
    assert!(tern("tern::net::connect", "connecting to "), "{all}");
    assert!(tern("tern::net::connect", "connected to "), "{all}");
    assert!(
        tern(
            "tern::net::connect",
            "TLS handshake with the server done host=localhost version=TLSv1_3 alpn=h2"
        ),
        "{all}"
    );
}

#[test]
fn warn_level_gets_nothing_verbose() {
    if !in_child() {
        run_child("warn_level_gets_nothing_verbose");
        return;
    }
    let rt = Rt::new(2);
    let c = Collector::leaked();
    assert_eq!(set_log(WARN, Some(c)), tern_code::Ok);
    https_get(&rt);
    let s = Sess::new(&rt, &Opts::new());
    assert_eq!(s.get(&http("/hello")).ok().status(), 200);
    assert_eq!(set_log(OFF, None), tern_code::Ok);
    let msgs = c.msgs();
    assert!(
        msgs.iter().all(|m| m.level <= WARN),
        "a message above WARN:{}",
        show(&msgs)
    );
    // Lowering the level to WARN after DEBUG filters again (the interest caches).
    let d = Collector::leaked();
    assert_eq!(set_log(DEBUG, Some(d)), tern_code::Ok);
    https_get(&rt);
    assert!(d.count() > 0);
    let w = Collector::leaked();
    assert_eq!(set_log(WARN, Some(w)), tern_code::Ok);
    https_get(&rt);
    assert_eq!(set_log(OFF, None), tern_code::Ok);
    let msgs = w.msgs();
    assert!(
        msgs.iter().all(|m| m.level <= WARN),
        "a message above WARN after DEBUG:{}",
        show(&msgs)
    );
}

#[test]
fn replaced_or_cleared_callback_is_no_longer_called() {
    if !in_child() {
        run_child("replaced_or_cleared_callback_is_no_longer_called");
        return;
    }
    let rt = Rt::new(2);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Requests keep running on other threads while the callback changes.
        for _ in 0..2 {
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    https_get(&rt);
                }
            });
        }
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| replace_and_clear(&rt)));
        stop.store(true, Ordering::SeqCst);
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    });
}

fn replace_and_clear(rt: &Rt) {
    let a = Collector::leaked();
    let b = Collector::leaked();
    assert_eq!(set_log(TRACE, Some(a)), tern_code::Ok);
    assert!(wait_for(Duration::from_secs(10), || a.count() > 20));
    assert_eq!(set_log(TRACE, Some(b)), tern_code::Ok);
    let a_after = a.count();
    assert!(wait_for(Duration::from_secs(10), || b.count() > 20));
    assert_eq!(a.count(), a_after, "the replaced callback was called");
    assert_eq!(set_log(TRACE, None), tern_code::Ok);
    let b_after = b.count();
    std::thread::sleep(Duration::from_millis(300));
    https_get(rt);
    assert_eq!(b.count(), b_after, "the cleared callback was called");
    // OFF with a callback is off too.
    let c = Collector::leaked();
    assert_eq!(set_log(OFF, Some(c)), tern_code::Ok);
    https_get(rt);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.count(), 0);
}

static REENTER_CODE: AtomicU32 = AtomicU32::new(u32::MAX);

unsafe extern "C" fn reenter(
    user_data: *mut c_void,
    level: tern_log_level,
    target: *const c_char,
    message: *const c_char,
) {
    if REENTER_CODE.load(Ordering::SeqCst) == u32::MAX {
        let code = tern_set_log_callback(OFF, None, null_mut(), null_mut());
        REENTER_CODE.store(code as u32, Ordering::SeqCst);
    }
    collect(user_data, level, target, message);
}

#[test]
fn setting_from_inside_the_callback_would_deadlock() {
    if !in_child() {
        run_child("setting_from_inside_the_callback_would_deadlock");
        return;
    }
    let rt = Rt::new(2);
    let c = Collector::leaked();
    let code = unsafe {
        tern_set_log_callback(
            DEBUG,
            Some(reenter),
            c as *const Collector as *mut c_void,
            null_mut(),
        )
    };
    assert_eq!(code, tern_code::Ok);
    https_get(&rt);
    assert_eq!(
        REENTER_CODE.load(Ordering::SeqCst),
        tern_code::WouldDeadlock as u32
    );
    // Nothing changed: the callback still gets messages.
    let before = c.count();
    https_get(&rt);
    assert!(c.count() > before);
    assert_eq!(set_log(OFF, None), tern_code::Ok);
}

#[test]
fn no_secret_reaches_the_callback() {
    if !in_child() {
        run_child("no_secret_reaches_the_callback");
        return;
    }
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let url_pass = "UrlPa55wdQzx";
    let basic = b64("someone:BasicS3cretQzx");
    let cookie = "CookieS3cretQzx";
    let jar_cookie = "JarS3cretQzx";
    let proxy_user = env("TERN_TEST_PROXY_USER");
    let proxy_pass = env("TERN_TEST_PROXY_PASS");
    let proxy_basic = b64(&format!("{proxy_user}:{proxy_pass}"));
    let enc_proxy_pass: String = proxy_pass
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let squid = env("TERN_TEST_SQUID");
    let (scheme, rest) = squid.split_once("://").unwrap();
    let squid_auth = format!("{scheme}://{proxy_user}:{enc_proxy_pass}@{rest}");
    let with_pass = |u: &str| u.replacen("://", &format!("://logtester:{url_pass}@"), 1);

    let rt = Rt::new(2);
    let c = Collector::leaked();
    assert_eq!(set_log(TRACE, Some(c)), tern_code::Ok);
    let request = |url: &str| {
        Req::new("GET", &with_pass(url))
            .set_header("Authorization", &format!("Basic {basic}"))
            .set_header("Cookie", &format!("session={cookie}"))
    };
    // Directly, over HTTPS (HTTP/2) and plain HTTP.
    let direct = Sess::new(&rt, &Opts::with_ca());
    direct.perform(request(&https("/hello"))).ok();
    direct.perform(request(&http("/hello"))).ok();
    // Through squid with credentials: a CONNECT tunnel and a forwarded request.
    let o = Opts::with_ca();
    let p = crate::common::c(&squid_auth);
    set(&o, |o, e| unsafe {
        tern_session_options_set_proxy(o, p.as_ptr(), e)
    });
    let proxied = Sess::new(&rt, &o);
    proxied.perform(request(&https("/hello"))).ok();
    proxied.perform(request(&http("/hello"))).ok();
    // A cookie jar: a cookie stored by the program, one set by the server, both sent.
    let o = Opts::new();
    set(&o, |o, e| unsafe {
        tern_session_options_set_cookie_jar(o, 1, e)
    });
    let jarred = Sess::new(&rt, &o);
    crate::cookies::add_cookie(
        &jarred,
        &http("/cookies/echo"),
        &format!("jar={jar_cookie}; Path=/"),
    )
    .unwrap();
    jarred.get(&http("/cookies/set")).ok();
    let echoed = jarred.get(&http("/cookies/echo")).ok().text();
    assert!(echoed.contains(jar_cookie), "{echoed}");
    drop((direct, proxied, jarred));
    assert_eq!(set_log(OFF, None), tern_code::Ok);

    let msgs = c.msgs();
    let all = show(&msgs);
    assert!(
        msgs.iter().any(|m| m.target.starts_with("h2")),
        "expected h2's TRACE messages too:{all}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.message.contains("proxy tunnel established")),
        "{all}"
    );
    assert!(
        msgs.iter().all(|m| !m.message.contains(['\n', '\r'])),
        "a message of several lines:{all}"
    );
    for secret in [
        url_pass,
        &basic,
        cookie,
        jar_cookie,
        "a=1; Path=/",
        &proxy_pass,
        &enc_proxy_pass,
        &proxy_basic,
    ] {
        for m in &msgs {
            assert!(
                !m.message.contains(secret) && !m.target.contains(secret),
                "{secret:?} in a message: {} {}",
                m.target,
                m.message
            );
        }
    }
}

/// Requests with and without a callback, for `nothing_on_stdout_or_stderr`.
#[test]
fn quiet_child() {
    if !in_child() {
        return; // only run by nothing_on_stdout_or_stderr
    }
    let rt = Rt::new(2);
    let requests = || {
        https_get(&rt);
        let s = Sess::new(&rt, &Opts::new());
        assert_eq!(s.get(&http("/hello")).ok().status(), 200);
        // A failing request too: errors are reported, not printed.
        assert_ne!(s.get("http://127.0.0.1:1/").code(), tern_code::Ok);
    };
    requests();
    let c = Collector::leaked();
    assert_eq!(set_log(TRACE, Some(c)), tern_code::Ok);
    requests();
    assert_eq!(set_log(OFF, None), tern_code::Ok);
    assert!(c.count() > 0);
}

#[test]
fn nothing_on_stdout_or_stderr() {
    let (stdout, stderr) = run_child("quiet_child");
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with("running 1 test")
                || line == "test logging::quiet_child ... ok"
                || line.starts_with("test result: ok. 1 passed"),
            "tern wrote to stdout: {line:?}\n{stdout}"
        );
    }
    assert!(stderr.trim().is_empty(), "tern wrote to stderr:\n{stderr}");
}

/// A `log` logger installed by the "host program" before tern's.
struct HostLogger(std::sync::atomic::AtomicUsize);

impl log::Log for HostLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        if r.target().starts_with("rustls") {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn flush(&self) {}
}

static HOST_LOGGER: HostLogger = HostLogger(std::sync::atomic::AtomicUsize::new(0));

#[test]
fn a_logger_installed_first_keeps_rustls_events() {
    if !in_child() {
        run_child("a_logger_installed_first_keeps_rustls_events");
        return;
    }
    log::set_logger(&HOST_LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    let rt = Rt::new(2);
    let c = Collector::leaked();
    assert_eq!(set_log(DEBUG, Some(c)), tern_code::Ok);
    https_get(&rt);
    assert_eq!(set_log(OFF, None), tern_code::Ok);
    let msgs = c.msgs();
    let all = show(&msgs);
    assert!(
        msgs.iter().any(|m| m.level == WARN
            && m.target == "tern::log"
            && m.message.contains("rustls's events are not forwarded")),
        "no warning about the logger:{all}"
    );
    assert!(
        !msgs.iter().any(|m| m.target.starts_with("rustls")),
        "{all}"
    );
    assert!(
        msgs.iter().any(|m| m.target == "tern::net::connect"),
        "{all}"
    );
    assert!(msgs.iter().any(|m| m.target.starts_with("h2")), "{all}");
    assert!(HOST_LOGGER.0.load(Ordering::SeqCst) > 0);
    // The program's logger keeps its own level: tern did not touch it.
    assert_eq!(log::max_level(), log::LevelFilter::Debug);
}

#[test]
fn websocket_payloads_and_credentials_stay_out_of_the_log() {
    if !in_child() {
        run_child("websocket_payloads_and_credentials_stay_out_of_the_log");
        return;
    }
    let payload = "PayloadS3cretQzx";
    let cookie = "WsCookieS3cretQzx";
    let url_pass = "WsUrlPa55wdQzx";
    let rt = Rt::new(2);
    let c = Collector::leaked();
    assert_eq!(set_log(TRACE, Some(c)), tern_code::Ok);
    let s = Sess::new(&rt, &Opts::with_ca());
    let o = WsOpts::new().header("Cookie", &format!("s={cookie}"));
    let url = wss_url("/auth").replacen("://", &format!("://someone:{url_pass}@"), 1);
    let (ws, r) = s.ws_connect(&url, &o);
    r.wait_open(std::time::Duration::from_secs(10));
    assert_eq!(ws.send_text(payload), tern_code::Ok);
    assert_eq!(
        r.wait_messages(1, std::time::Duration::from_secs(10))[0].1,
        payload.as_bytes()
    );
    assert_eq!(ws.close(1000, ""), tern_code::Ok);
    r.wait_release(std::time::Duration::from_secs(10));
    assert_eq!(set_log(OFF, None), tern_code::Ok);
    let msgs = c.msgs();
    let all = show(&msgs);
    assert!(
        msgs.iter().any(|m| m.message.contains("WebSocket open")),
        "tern's own WebSocket events:{all}"
    );
    assert!(
        !msgs
            .iter()
            .any(|m| m.target.starts_with("tungstenite") && m.level == TRACE),
        "tungstenite's TRACE lines (frames) are not forwarded:{all}"
    );
    for secret in [payload, cookie, url_pass] {
        assert!(
            msgs.iter().all(|m| !m.message.contains(secret)),
            "{secret:?} in the log:{all}"
        );
    }
}
