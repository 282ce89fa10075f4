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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
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
