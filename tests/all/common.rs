//! Shared test helpers: safe wrappers over the exported C functions, the test
//! servers' addresses, and raw in-process servers for faults nginx cannot make.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::{c_void, CStr, CString};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern::code::tern_code;
use tern::ffi::error::*;
use tern::ffi::options::*;
use tern::ffi::request::*;
use tern::ffi::response::*;
use tern::ffi::runtime::*;
use tern::ffi::session::*;

/// A variable from the test servers' env.sh (scripts/testenv.sh start).
pub fn env(var: &str) -> String {
    if let Ok(v) = std::env::var(var) {
        return v;
    }
    let path = std::env::var("TERN_TESTENV_DIR")
        .unwrap_or_else(|_| format!("{}/target/testenv", env!("CARGO_MANIFEST_DIR")))
        + "/env.sh";
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!("{var} is not set and {path} is missing: run `scripts/testenv.sh start` first")
    });
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&format!("export {var}=")) {
            return rest.trim_matches('\'').trim_matches('"').to_owned();
        }
    }
    panic!("{var} not found in {path}")
}

pub fn http(path: &str) -> String {
    format!("{}{path}", env("TERN_TEST_HTTP"))
}

pub fn https(path: &str) -> String {
    format!("{}{path}", env("TERN_TEST_HTTPS"))
}

pub fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

pub fn take_err(e: *mut tern_error) -> String {
    if e.is_null() {
        return String::new();
    }
    let m = unsafe { CStr::from_ptr(tern_error_message(e)) }
        .to_string_lossy()
        .into_owned();
    unsafe { tern_error_free(e) };
    m
}

pub struct Rt(pub *mut tern_runtime);
unsafe impl Send for Rt {}
unsafe impl Sync for Rt {}

impl Rt {
    pub fn new(workers: u32) -> Rt {
        let cfg = tern_runtime_config {
            struct_size: std::mem::size_of::<tern_runtime_config>(),
            worker_threads: workers,
            thread_name: null(),
        };
        let mut rt = null_mut();
        assert_eq!(
            unsafe { tern_runtime_new(&cfg, &mut rt, null_mut()) },
            tern_code::Ok
        );
        Rt(rt)
    }
    /// Frees now (consumes the handle).
    pub fn free(mut self) {
        unsafe { tern_runtime_free(self.0) };
        self.0 = null_mut();
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        unsafe { tern_runtime_free(self.0) };
    }
}

/// Builds options; `f` may call setters on the raw pointer.
pub struct Opts(pub *mut tern_session_options);

impl Opts {
    pub fn new() -> Opts {
        let mut o = null_mut();
        assert_eq!(
            unsafe { tern_session_options_new(&mut o, null_mut()) },
            tern_code::Ok
        );
        Opts(o)
    }
    pub fn with_ca() -> Opts {
        let o = Opts::new();
        let ca = c(&env("TERN_TEST_CA"));
        assert_eq!(
            unsafe { tern_session_options_add_ca_file(o.0, ca.as_ptr(), null_mut()) },
            tern_code::Ok
        );
        o
    }
    pub fn timeout(self, kind: u32, ms: u64) -> Opts {
        assert_eq!(
            unsafe { tern_session_options_set_timeout_ms(self.0, kind, ms, null_mut()) },
            tern_code::Ok
        );
        self
    }
}

impl Drop for Opts {
    fn drop(&mut self) {
        unsafe { tern_session_options_free(self.0) };
    }
}

pub struct Sess(pub *mut tern_session);
unsafe impl Send for Sess {}
unsafe impl Sync for Sess {}

impl Sess {
    pub fn new(rt: &Rt, o: &Opts) -> Sess {
        let mut s = null_mut();
        let mut e = null_mut();
        let code = unsafe { tern_session_new(rt.0, o.0, &mut s, &mut e) };
        assert_eq!(code, tern_code::Ok, "{}", take_err(e));
        Sess(s)
    }

    pub fn perform(&self, req: Req) -> Resp {
        let mut out = null_mut();
        let mut e = null_mut();
        let code = unsafe { tern_session_perform(self.0, req.into_raw(), &mut out, &mut e) };
        assert_eq!(code, tern_code::Ok, "perform refused: {}", take_err(e));
        Resp(out)
    }

    pub fn get(&self, url: &str) -> Resp {
        self.perform(Req::new("GET", url))
    }

    /// Sends with a Rust closure as on_complete; `release` counts into `released`.
    pub fn send<F: FnOnce(Resp) + Send + 'static>(&self, req: Req, f: F) -> Result<u64, tern_code> {
        self.send_counted(req, f, None)
    }

    pub fn send_counted<F: FnOnce(Resp) + Send + 'static>(
        &self,
        req: Req,
        f: F,
        released: Option<Arc<AtomicUsize>>,
    ) -> Result<u64, tern_code> {
        let ud = Box::into_raw(Box::new(Ud {
            f: Some(Box::new(f)),
            released,
        }));
        let cb = callbacks();
        let mut id = 0;
        let code = unsafe {
            tern_session_send(self.0, req.into_raw(), &cb, ud.cast(), &mut id, null_mut())
        };
        if code != tern_code::Ok {
            // Refused: we still own user_data.
            drop(unsafe { Box::from_raw(ud) });
            return Err(code);
        }
        Ok(id)
    }

    pub fn cancel(&self, id: u64) -> tern_code {
        unsafe { tern_session_cancel(self.0, id) }
    }

    pub fn close(&self, mode: u32) {
        assert_eq!(
            unsafe { tern_session_close(self.0, mode, null_mut()) },
            tern_code::Ok
        );
    }
}

impl Drop for Sess {
    fn drop(&mut self) {
        unsafe { tern_session_free(self.0) };
    }
}

struct Ud {
    f: Option<Box<dyn FnOnce(Resp) + Send>>,
    released: Option<Arc<AtomicUsize>>,
}

unsafe extern "C" fn on_complete(ud: *mut c_void, r: *mut tern_response) {
    let ud = &mut *(ud as *mut Ud);
    let f = ud.f.take().expect("on_complete ran twice");
    f(Resp(r));
}

unsafe extern "C" fn release(ud: *mut c_void) {
    let ud = Box::from_raw(ud as *mut Ud);
    assert!(ud.f.is_none(), "release ran before on_complete");
    if let Some(r) = &ud.released {
        r.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn callbacks() -> tern_callbacks {
    tern_callbacks {
        struct_size: std::mem::size_of::<tern_callbacks>(),
        on_complete: Some(on_complete),
        on_headers: None,
        on_data: None,
        on_progress: None,
        on_upload_ready: None,
        release: Some(release),
    }
}

pub struct Req(pub *mut tern_request);
unsafe impl Send for Req {}

impl Req {
    pub fn new(method: &str, url: &str) -> Req {
        let mut r = null_mut();
        let mut e = null_mut();
        let (m, u) = (c(method), c(url));
        let code = unsafe { tern_request_new(m.as_ptr(), u.as_ptr(), &mut r, &mut e) };
        assert_eq!(code, tern_code::Ok, "{}", take_err(e));
        Req(r)
    }
    pub fn header(self, name: &str, value: &str) -> Req {
        let (n, v) = (c(name), c(value));
        assert_eq!(
            unsafe { tern_request_add_header(self.0, n.as_ptr(), v.as_ptr(), null_mut()) },
            tern_code::Ok
        );
        self
    }
    pub fn set_header(self, name: &str, value: &str) -> Req {
        let (n, v) = (c(name), c(value));
        assert_eq!(
            unsafe { tern_request_set_header(self.0, n.as_ptr(), v.as_ptr(), null_mut()) },
            tern_code::Ok
        );
        self
    }
    pub fn body(self, b: &[u8]) -> Req {
        assert_eq!(
            unsafe { tern_request_set_body(self.0, b.as_ptr(), b.len(), null_mut()) },
            tern_code::Ok
        );
        self
    }
    pub fn timeout(self, kind: u32, ms: u64) -> Req {
        assert_eq!(
            unsafe { tern_request_set_timeout_ms(self.0, kind, ms, null_mut()) },
            tern_code::Ok
        );
        self
    }
    pub fn redirects(self, follow: u32, max: u32) -> Req {
        assert_eq!(
            unsafe { tern_request_set_redirects(self.0, follow, max, null_mut()) },
            tern_code::Ok
        );
        self
    }
    pub fn version(self, v: u32) -> Req {
        assert_eq!(
            unsafe { tern_request_set_http_version(self.0, v, null_mut()) },
            tern_code::Ok
        );
        self
    }
    pub fn into_raw(self) -> *mut tern_request {
        let p = self.0;
        std::mem::forget(self);
        p
    }
}

impl Drop for Req {
    fn drop(&mut self) {
        unsafe { tern_request_free(self.0) };
    }
}

/// An owned response.
pub struct Resp(pub *mut tern_response);
unsafe impl Send for Resp {}

impl Resp {
    pub fn code(&self) -> tern_code {
        unsafe { tern_response_code(self.0) }
    }
    pub fn message(&self) -> String {
        unsafe { CStr::from_ptr(tern_response_message(self.0)) }
            .to_string_lossy()
            .into_owned()
    }
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code(), tern_code::Ok, "{}", self.message());
        self
    }
    pub fn status(&self) -> u16 {
        unsafe { tern_response_status(self.0) }
    }
    pub fn version(&self) -> u32 {
        unsafe { tern_response_version(self.0) }
    }
    pub fn id(&self) -> u64 {
        unsafe { tern_response_id(self.0) }
    }
    pub fn body(&self) -> Vec<u8> {
        let mut p = null();
        let mut n = 0;
        assert_eq!(
            unsafe { tern_response_body(self.0, &mut p, &mut n) },
            tern_code::Ok
        );
        unsafe { std::slice::from_raw_parts(p, n) }.to_vec()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body()).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers_named(name).into_iter().next()
    }
    pub fn headers_named(&self, name: &str) -> Vec<String> {
        let n = c(name);
        let mut out = Vec::new();
        for i in 0.. {
            let mut p = null();
            let mut len = 0;
            let code = unsafe {
                tern_response_header_get(self.0, n.as_ptr(), i, &mut p, &mut len, null_mut())
            };
            if code == tern_code::NotFound {
                break;
            }
            assert_eq!(code, tern_code::Ok);
            out.push(
                String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(p, len) }).into_owned(),
            );
        }
        out
    }
    pub fn all_headers(&self) -> Vec<(String, String)> {
        let n = unsafe { tern_response_header_count(self.0) };
        (0..n)
            .map(|i| {
                let (mut np, mut nl, mut vp, mut vl) = (null(), 0, null(), 0);
                assert_eq!(
                    unsafe {
                        tern_response_header_at(self.0, i, &mut np, &mut nl, &mut vp, &mut vl)
                    },
                    tern_code::Ok
                );
                unsafe {
                    (
                        String::from_utf8_lossy(std::slice::from_raw_parts(np.cast(), nl))
                            .into_owned(),
                        String::from_utf8_lossy(std::slice::from_raw_parts(vp, vl)).into_owned(),
                    )
                }
            })
            .collect()
    }
    pub fn effective_url(&self) -> String {
        unsafe { CStr::from_ptr(tern_response_effective_url(self.0)) }
            .to_string_lossy()
            .into_owned()
    }
    pub fn remote(&self) -> String {
        unsafe { CStr::from_ptr(tern_response_remote_addr(self.0)) }
            .to_string_lossy()
            .into_owned()
    }
    pub fn redirects(&self) -> u32 {
        unsafe { tern_response_redirect_count(self.0) }
    }
    pub fn timing(&self, kind: u32) -> u64 {
        unsafe { tern_response_timing_us(self.0, kind) }
    }
}

impl Drop for Resp {
    fn drop(&mut self) {
        unsafe { tern_response_free(self.0) };
    }
}

/// Asserts that a name was not resolved by the system resolver: DNS_NOT_FOUND where
/// the machine's resolver answers NXDOMAIN, DNS where it has no nameserver at all
/// (an offline machine). Tests against dnsmasq tell the two codes apart.
pub fn assert_unresolved(r: &Resp) {
    assert!(
        matches!(r.code(), tern_code::DnsNotFound | tern_code::Dns),
        "{:?} {}",
        r.code(),
        r.message()
    );
    assert!(r.message().contains("resolve"), "{}", r.message());
}

/// A one-worker tokio runtime for an in-process server, with a listener bound to a
/// free port on 127.0.0.1.
pub fn server_runtime() -> (tokio::runtime::Runtime, tokio::net::TcpListener, u16) {
    server_runtime_with(1)
}

/// As `server_runtime`, with `workers` worker threads.
pub fn server_runtime_with(
    workers: usize,
) -> (tokio::runtime::Runtime, tokio::net::TcpListener, u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = l.local_addr().unwrap().port();
    (rt, l, port)
}

/// Whether this process is a child started by `run_in_child`.
pub fn in_child() -> bool {
    std::env::var_os("TERN_CHILD").is_some()
}

/// Runs the test `path` (`module::name`) alone in a child process of this test
/// binary, with `set` added to and `unset` removed from its environment, for tests
/// that change process-wide state (the environment, the logger) or measure the
/// process's memory. Asserts that the child ran the test and passed; returns its
/// stdout and stderr.
pub fn run_in_child(path: &str, set: &[(&str, &str)], unset: &[&str]) -> (String, String) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", path, "--nocapture", "--test-threads=1"]);
    for v in unset {
        cmd.env_remove(v);
    }
    cmd.env("TERN_CHILD", "1")
        .env("TERN_TESTENV_DIR", env("TERN_TESTENV_DIR"));
    for (k, v) in set {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "child {path} with {set:?} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran {path}:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// A TLS acceptor with the test environment's `localhost` leaf (and its chain),
/// limited to `versions` and offering `alpn`, for in-process HTTPS servers.
pub fn localhost_acceptor(
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let pki = std::path::Path::new(&env("TERN_TESTENV_DIR")).join("pki");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(pki.join("leaf-chain.pem"))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_file(pki.join("leaf-key.pem")).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// An in-process HTTP/1.1 server (hyper) answering every request with `handler`;
/// returns its port and the runtime that serves it (dropping it stops the server).
pub fn http1_server<F, Fut>(handler: F) -> (u16, tokio::runtime::Runtime)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<
            Output = Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, hyper::Error>,
        > + Send
        + 'static,
{
    let (rt, l, port) = server_runtime();
    rt.spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let svc = hyper::service::service_fn(handler.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (port, rt)
}

/// Waits until `cond` holds, at most `limit`.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// A raw TCP server on 127.0.0.1 for faults: each accepted connection runs `handler`
/// on its own thread with its 0-based index. Counts accepted connections.
pub struct RawServer {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
}

impl RawServer {
    pub fn start<F>(handler: F) -> RawServer
    where
        F: Fn(usize, TcpStream) + Send + Sync + 'static,
    {
        Self::start_on("127.0.0.1:0", handler)
    }

    /// As `start`, on a given address.
    pub fn start_on<F>(addr: &str, handler: F) -> RawServer
    where
        F: Fn(usize, TcpStream) + Send + Sync + 'static,
    {
        let l = TcpListener::bind(addr).unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let acc = accepted.clone();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let n = acc.fetch_add(1, Ordering::SeqCst);
                let h = handler.clone();
                std::thread::spawn(move || h(n, s));
            }
        });
        RawServer { port, accepted }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Reads one request head (and a Content-Length body); None at EOF.
pub fn read_request(s: &mut TcpStream) -> Option<(String, HashMap<String, String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next()?.to_owned();
    let mut headers = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).ok()?;
    Some((first, headers, body))
}

/// Writes a complete keep-alive response.
pub fn respond(
    s: &mut TcpStream,
    status: &str,
    extra_headers: &str,
    body: &[u8],
) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra_headers}\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    s.flush()
}

/// A shared log of strings for in-process servers.
pub type Log = Arc<Mutex<Vec<String>>>;

// ---------------------------------------------------------------------------------
// WebSockets: options, an event recorder behind the callbacks, and the caller's handle.
// ---------------------------------------------------------------------------------

use std::sync::Condvar;
use std::time::Instant;

use tern::ffi::ws::*;

/// A URL on the WebSocket echo server (`TERN_TEST_WS`, `TERN_TEST_WSS`,
/// `TERN_TEST_WSS_MTLS` from scripts/testenv.sh).
pub fn ws_url(path: &str) -> String {
    format!("{}{path}", env("TERN_TEST_WS"))
}

pub fn wss_url(path: &str) -> String {
    format!("{}{path}", env("TERN_TEST_WSS"))
}

pub fn wss_mtls_url(path: &str) -> String {
    format!("{}{path}", env("TERN_TEST_WSS_MTLS"))
}

pub struct WsOpts(pub *mut tern_ws_options);

impl WsOpts {
    pub fn new() -> WsOpts {
        let mut o = null_mut();
        assert_eq!(
            unsafe { tern_ws_options_new(&mut o, null_mut()) },
            tern_code::Ok
        );
        WsOpts(o)
    }
    fn ok(self, f: impl FnOnce(*mut tern_ws_options, *mut *mut tern_error) -> tern_code) -> Self {
        let mut e = null_mut();
        let code = f(self.0, &mut e);
        assert_eq!(code, tern_code::Ok, "{}", take_err(e));
        self
    }
    pub fn header(self, n: &str, v: &str) -> Self {
        let (n, v) = (c(n), c(v));
        self.ok(|o, e| unsafe { tern_ws_options_add_header(o, n.as_ptr(), v.as_ptr(), e) })
    }
    pub fn subprotocol(self, p: &str) -> Self {
        let p = c(p);
        self.ok(|o, e| unsafe { tern_ws_options_add_subprotocol(o, p.as_ptr(), e) })
    }
    pub fn origin(self, v: &str) -> Self {
        let v = c(v);
        self.ok(|o, e| unsafe { tern_ws_options_set_origin(o, v.as_ptr(), e) })
    }
    pub fn proxy(self, v: &str) -> Self {
        let v = c(v);
        self.ok(|o, e| unsafe { tern_ws_options_set_proxy(o, v.as_ptr(), e) })
    }
    pub fn timeout(self, kind: u32, ms: u64) -> Self {
        self.ok(|o, e| unsafe { tern_ws_options_set_timeout_ms(o, kind, ms, e) })
    }
    pub fn heartbeat(self, ms: u64) -> Self {
        self.ok(|o, e| unsafe { tern_ws_options_set_heartbeat_ms(o, ms, e) })
    }
    pub fn max_message(self, n: u64) -> Self {
        self.ok(|o, e| unsafe { tern_ws_options_set_max_message_size(o, n, e) })
    }
    pub fn max_frame(self, n: u64) -> Self {
        self.ok(|o, e| unsafe { tern_ws_options_set_max_frame_size(o, n, e) })
    }
    pub fn send_queue(self, n: u64) -> Self {
        self.ok(|o, e| unsafe { tern_ws_options_set_send_queue_size(o, n, e) })
    }
}

impl Drop for WsOpts {
    fn drop(&mut self) {
        unsafe { tern_ws_options_free(self.0) };
    }
}

/// What `on_close` reported, copied out during the call.
#[derive(Clone, Debug)]
pub struct CloseEv {
    pub code: tern_code,
    pub message: String,
    pub close_code: u16,
    pub reason: String,
    pub clean: bool,
    pub opened: bool,
    /// 0 when no response head arrived.
    pub status: u16,
    pub body: Vec<u8>,
    pub thread: std::thread::ThreadId,
}

#[derive(Clone, Debug)]
pub enum WsEvent {
    Open {
        status: u16,
        headers: Vec<(String, String)>,
        remote: String,
        subprotocol: Option<String>,
    },
    Message {
        kind: u32,
        data: Vec<u8>,
    },
    Writable,
    Close(CloseEv),
    Release,
}

/// A borrowed socket handed to a hook (valid during the callback only).
#[derive(Clone, Copy)]
pub struct WsRef(pub *const tern_ws);

impl WsRef {
    pub fn send_text(&self, s: &str) -> tern_code {
        unsafe { tern_ws_send_text(self.0, s.as_ptr().cast(), s.len(), null_mut()) }
    }
    pub fn send_binary(&self, b: &[u8]) -> tern_code {
        unsafe { tern_ws_send_binary(self.0, b.as_ptr(), b.len(), null_mut()) }
    }
    pub fn close(&self, code: u32, reason: &str) -> tern_code {
        let r = c(reason);
        unsafe { tern_ws_close(self.0, code, r.as_ptr(), null_mut()) }
    }
    pub fn state(&self) -> u32 {
        unsafe { tern_ws_state(self.0) }
    }
}

pub type WsHook = Box<dyn Fn(WsRef, &WsEvent) + Send + Sync>;

/// Records every callback of one socket, checking their order as they come: at most
/// one on_open and only before on_close, nothing after on_close, release once after
/// on_close. `hook` runs inside each callback (after it was recorded).
pub struct WsRec {
    pub events: Mutex<Vec<WsEvent>>,
    pub cv: Condvar,
    pub violations: Mutex<Vec<String>>,
    pub hook: Option<WsHook>,
    pub threads: Mutex<Vec<std::thread::ThreadId>>,
}

impl WsRec {
    pub fn new(hook: Option<WsHook>) -> Arc<WsRec> {
        Arc::new(WsRec {
            events: Mutex::new(Vec::new()),
            cv: Condvar::new(),
            violations: Mutex::new(Vec::new()),
            hook,
            threads: Mutex::new(Vec::new()),
        })
    }

    fn push(&self, ws: *const tern_ws, ev: WsEvent) {
        let mut g = self.events.lock().unwrap();
        let closed = g.iter().any(|e| matches!(e, WsEvent::Close(_)));
        let released = g.iter().any(|e| matches!(e, WsEvent::Release));
        let opened = g.iter().any(|e| matches!(e, WsEvent::Open { .. }));
        let bad = match &ev {
            WsEvent::Release if !closed => Some("release before on_close"),
            WsEvent::Release if released => Some("release twice"),
            WsEvent::Open { .. } if opened => Some("on_open twice"),
            _ if released => Some("a callback after release"),
            WsEvent::Release => None,
            _ if closed => Some("a callback after on_close"),
            _ => None,
        };
        if let Some(b) = bad {
            self.violations.lock().unwrap().push(format!("{b}: {ev:?}"));
        }
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        g.push(ev.clone());
        drop(g);
        self.cv.notify_all();
        if let (Some(h), false) = (&self.hook, ws.is_null()) {
            h(WsRef(ws), &ev);
        }
    }

    pub fn events(&self) -> Vec<WsEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until `f` finds something in the events, at most `limit`.
    pub fn wait<T>(
        &self,
        limit: Duration,
        mut f: impl FnMut(&[WsEvent]) -> Option<T>,
    ) -> Option<T> {
        let end = Instant::now() + limit;
        let mut g = self.events.lock().unwrap();
        loop {
            if let Some(t) = f(&g) {
                return Some(t);
            }
            let now = Instant::now();
            if now >= end {
                return None;
            }
            g = self.cv.wait_timeout(g, end - now).unwrap().0;
        }
    }

    pub fn wait_close(&self, limit: Duration) -> CloseEv {
        self.wait(limit, |e| {
            e.iter().find_map(|e| match e {
                WsEvent::Close(c) => Some(c.clone()),
                _ => None,
            })
        })
        .unwrap_or_else(|| panic!("no on_close within {limit:?}; events: {:?}", self.brief()))
    }

    pub fn wait_release(&self, limit: Duration) {
        self.wait(limit, |e| {
            e.iter()
                .any(|e| matches!(e, WsEvent::Release))
                .then_some(())
        })
        .unwrap_or_else(|| panic!("no release within {limit:?}; events: {:?}", self.brief()));
        let v = self.violations.lock().unwrap();
        assert!(v.is_empty(), "callback order violated: {v:?}");
    }

    pub fn wait_open(&self, limit: Duration) -> WsEvent {
        self.wait(limit, |e| {
            e.iter().find_map(|e| match e {
                WsEvent::Open { .. } => Some(e.clone()),
                WsEvent::Close(c) => panic!("closed instead of opening: {c:?}"),
                _ => None,
            })
        })
        .unwrap_or_else(|| panic!("no on_open within {limit:?}"))
    }

    /// The first `n` messages, waiting at most `limit` for them.
    pub fn wait_messages(&self, n: usize, limit: Duration) -> Vec<(u32, Vec<u8>)> {
        self.wait(limit, |e| {
            let m = messages(e);
            (m.len() >= n).then(|| m[..n].to_vec())
        })
        .unwrap_or_else(|| {
            panic!(
                "fewer than {n} messages within {limit:?}; events: {:?}",
                self.brief()
            )
        })
    }

    pub fn messages(&self) -> Vec<(u32, Vec<u8>)> {
        messages(&self.events.lock().unwrap())
    }

    /// The events with long messages shortened, for failure messages.
    pub fn brief(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| match e {
                WsEvent::Message { kind, data } if data.len() > 64 => {
                    format!("Message {{ kind: {kind}, {} bytes }}", data.len())
                }
                e => format!("{e:?}"),
            })
            .collect()
    }
}

fn messages(e: &[WsEvent]) -> Vec<(u32, Vec<u8>)> {
    e.iter()
        .filter_map(|e| match e {
            WsEvent::Message { kind, data } => Some((*kind, data.clone())),
            _ => None,
        })
        .collect()
}

unsafe fn rec<'a>(ud: *mut c_void) -> &'a WsRec {
    &*(ud as *const WsRec)
}

unsafe fn resp_headers(r: *const tern_response) -> Vec<(String, String)> {
    let n = tern_response_header_count(r);
    (0..n)
        .map(|i| {
            let (mut np, mut nl, mut vp, mut vl) = (null(), 0, null(), 0);
            assert_eq!(
                tern_response_header_at(r, i, &mut np, &mut nl, &mut vp, &mut vl),
                tern_code::Ok
            );
            (
                String::from_utf8_lossy(std::slice::from_raw_parts(np.cast(), nl)).into_owned(),
                String::from_utf8_lossy(std::slice::from_raw_parts(vp, vl)).into_owned(),
            )
        })
        .collect()
}

unsafe extern "C" fn ws_on_open(ud: *mut c_void, ws: *const tern_ws, head: *const tern_response) {
    let sp = tern_ws_subprotocol(ws);
    let ev = WsEvent::Open {
        status: tern_response_status(head),
        headers: resp_headers(head),
        remote: CStr::from_ptr(tern_response_remote_addr(head))
            .to_string_lossy()
            .into_owned(),
        subprotocol: (!sp.is_null()).then(|| CStr::from_ptr(sp).to_string_lossy().into_owned()),
    };
    rec(ud).push(ws, ev);
}

unsafe extern "C" fn ws_on_message(
    ud: *mut c_void,
    ws: *const tern_ws,
    kind: u32,
    data: *const u8,
    len: usize,
) {
    let data = if len == 0 {
        Vec::new()
    } else {
        std::slice::from_raw_parts(data, len).to_vec()
    };
    rec(ud).push(ws, WsEvent::Message { kind, data });
}

unsafe extern "C" fn ws_on_writable(ud: *mut c_void, ws: *const tern_ws) {
    rec(ud).push(ws, WsEvent::Writable);
}

unsafe extern "C" fn ws_on_close(
    ud: *mut c_void,
    ws: *const tern_ws,
    info: *const tern_ws_close_info,
) {
    let i = &*info;
    let (status, body) = if i.response.is_null() {
        (0, Vec::new())
    } else {
        let mut p = null();
        let mut n = 0;
        tern_response_body(i.response, &mut p, &mut n);
        let body = if n == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(p, n).to_vec()
        };
        (tern_response_status(i.response), body)
    };
    let reason = if i.reason_len == 0 {
        String::new()
    } else {
        String::from_utf8_lossy(std::slice::from_raw_parts(i.reason.cast(), i.reason_len))
            .into_owned()
    };
    let ev = WsEvent::Close(CloseEv {
        code: i.code,
        message: CStr::from_ptr(i.message).to_string_lossy().into_owned(),
        close_code: i.close_code,
        reason,
        clean: i.clean == 1,
        opened: i.opened == 1,
        status,
        body,
        thread: std::thread::current().id(),
    });
    let r = rec(ud);
    if tern_ws_state(ws) != 3 {
        r.violations
            .lock()
            .unwrap()
            .push("the state is not CLOSED during on_close".into());
    }
    r.push(ws, ev);
}

unsafe extern "C" fn ws_release(ud: *mut c_void) {
    let r = Arc::from_raw(ud as *const WsRec);
    r.push(null(), WsEvent::Release);
}

pub fn ws_callbacks() -> tern_ws_callbacks {
    tern_ws_callbacks {
        struct_size: std::mem::size_of::<tern_ws_callbacks>(),
        on_close: Some(ws_on_close),
        on_open: Some(ws_on_open),
        on_message: Some(ws_on_message),
        on_writable: Some(ws_on_writable),
        release: Some(ws_release),
    }
}

/// The caller's handle on a socket; dropping it frees it (`tern_ws_free`).
pub struct WsHandle(pub *mut tern_ws);
unsafe impl Send for WsHandle {}
unsafe impl Sync for WsHandle {}

impl WsHandle {
    pub fn r(&self) -> WsRef {
        WsRef(self.0)
    }
    pub fn send_text(&self, s: &str) -> tern_code {
        self.r().send_text(s)
    }
    pub fn send_binary(&self, b: &[u8]) -> tern_code {
        self.r().send_binary(b)
    }
    pub fn ping(&self, b: &[u8]) -> tern_code {
        unsafe { tern_ws_send_ping(self.0, b.as_ptr(), b.len(), null_mut()) }
    }
    pub fn close(&self, code: u32, reason: &str) -> tern_code {
        self.r().close(code, reason)
    }
    pub fn abort(&self) -> tern_code {
        unsafe { tern_ws_abort(self.0) }
    }
    pub fn buffered(&self) -> u64 {
        unsafe { tern_ws_buffered_amount(self.0) }
    }
    pub fn state(&self) -> u32 {
        unsafe { tern_ws_state(self.0) }
    }
    pub fn subprotocol(&self) -> Option<String> {
        let p = unsafe { tern_ws_subprotocol(self.0) };
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
    pub fn id(&self) -> u64 {
        unsafe { tern_ws_id(self.0) }
    }
    /// Frees now.
    pub fn free(mut self) {
        unsafe { tern_ws_free(self.0) };
        self.0 = null_mut();
    }
}

impl Drop for WsHandle {
    fn drop(&mut self) {
        unsafe { tern_ws_free(self.0) };
    }
}

impl Sess {
    /// Opens a socket with recording callbacks; a refusal gives its code and message.
    pub fn ws_connect_with(
        &self,
        url: &str,
        o: Option<&WsOpts>,
        hook: Option<WsHook>,
    ) -> Result<(WsHandle, Arc<WsRec>), (tern_code, String)> {
        let r = WsRec::new(hook);
        let ud = Arc::into_raw(r.clone()) as *mut c_void;
        let cb = ws_callbacks();
        let u = c(url);
        let mut ws = null_mut();
        let mut e = null_mut();
        let code = unsafe {
            tern_session_ws_connect(
                self.0,
                u.as_ptr(),
                o.map_or(null(), |o| o.0),
                &cb,
                ud,
                &mut ws,
                &mut e,
            )
        };
        if code != tern_code::Ok {
            // Refused: no callback ran and we still own user_data.
            drop(unsafe { Arc::from_raw(ud as *const WsRec) });
            return Err((code, take_err(e)));
        }
        Ok((WsHandle(ws), r))
    }

    pub fn ws_connect(&self, url: &str, o: &WsOpts) -> (WsHandle, Arc<WsRec>) {
        self.ws_connect_with(url, Some(o), None)
            .unwrap_or_else(|(c, m)| panic!("connect refused: {c:?} {m}"))
    }
}

/// Frames as a server writes them (unmasked).
pub fn ws_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
    let n = payload.len();
    if n < 126 {
        f.push(n as u8);
    } else if n < 65536 {
        f.push(126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

/// Answers a WebSocket upgrade on a raw connection (101 with the right accept key);
/// returns the request's headers (names in lower case).
pub fn ws_accept(s: &mut TcpStream) -> Option<HashMap<String, String>> {
    ws_accept_with(s, "")
}

/// As `ws_accept`, with extra header lines (each ending in CRLF) in the 101.
pub fn ws_accept_with(s: &mut TcpStream, extra: &str) -> Option<HashMap<String, String>> {
    let (_, h, _) = read_request(s)?;
    let key = h.get("sec-websocket-key")?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    write!(
        s,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .ok()?;
    Some(h)
}

/// Reads one frame the client sent (masked): (opcode, unmasked payload).
pub fn read_client_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    let opcode = h[0] & 0x0f;
    let mut n = u64::from(h[1] & 0x7f);
    if n == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).ok()?;
        n = u64::from(u16::from_be_bytes(b));
    } else if n == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).ok()?;
        n = u64::from_be_bytes(b);
    }
    let mut mask = [0u8; 4];
    if h[1] & 0x80 != 0 {
        s.read_exact(&mut mask).ok()?;
    }
    let mut p = vec![0u8; n as usize];
    s.read_exact(&mut p).ok()?;
    for (i, b) in p.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Some((opcode, p))
}

/// Reads client frames until a close frame; returns its code (None: EOF first).
pub fn read_client_close(s: &mut TcpStream) -> Option<u16> {
    loop {
        let (op, p) = read_client_frame(s)?;
        if op == 8 {
            return Some(if p.len() >= 2 {
                u16::from_be_bytes([p[0], p[1]])
            } else {
                1005
            });
        }
    }
}

/// A loopback listener (127.0.0.1, or ::1 only) whose accept queue is full, so that the
/// kernel drops further SYNs and a TCP handshake with it never completes; returns its
/// address and what must stay alive meanwhile (the socket and the connections that fill
/// its queue).
pub fn blackhole(
    domain: socket2::Domain,
) -> (
    std::net::SocketAddr,
    (socket2::Socket, Vec<std::net::TcpStream>),
) {
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
    let local = if domain == socket2::Domain::IPV6 {
        sock.set_only_v6(true).unwrap();
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    sock.bind(&local.parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(c);
        }
    }
    (addr, (sock, fillers))
}

/// Raises the soft limit of open files to the hard one (thousands of sockets).
pub fn raise_fd_limit() {
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// `http://user:pass@host:port` from a proxy URL and the test credentials,
/// percent-encoded as a URL needs them.
pub fn with_userinfo(url: &str, user: &str, pass: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!("{scheme}://{}:{}@{rest}", enc(user), enc(pass))
}

/// The authenticating squid's URL with the test credentials.
pub fn squid_auth_url() -> String {
    with_userinfo(
        &env("TERN_TEST_SQUID"),
        &env("TERN_TEST_PROXY_USER"),
        &env("TERN_TEST_PROXY_PASS"),
    )
}

/// The port of a `scheme://host:port` URL or a `host:port` address, as text.
pub fn port_of(url: &str) -> String {
    url.rsplit(':').next().unwrap().to_owned()
}

/// Options for a session with queued delivery (callbacks run in `tern_session_poll`),
/// trusting the test CA.
pub fn queued_opts() -> Opts {
    let o = Opts::with_ca();
    crate::options::set(&o, |o, e| unsafe {
        tern::ffi::options::tern_session_options_set_delivery(o, 1, e)
    });
    o
}

/// One `tern_session_poll` (asserted OK); returns how many callbacks ran.
pub fn poll_session(s: &Sess, timeout_ms: u32, max: u32) -> u32 {
    let mut ran = 0;
    let mut e = null_mut();
    let code =
        unsafe { tern::ffi::session::tern_session_poll(s.0, timeout_ms, max, &mut ran, &mut e) };
    assert_eq!(code, tern_code::Ok, "{}", take_err(e));
    ran
}

/// Polls `s` (10 ms at a time) until `cond` holds or `limit` passes; whether it held.
pub fn poll_until(s: &Sess, limit: Duration, cond: impl Fn() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= end {
            return false;
        }
        poll_session(s, 10, 0);
    }
    true
}
