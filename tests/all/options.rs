//! Session options that do not need a proxy or a nameserver: TLS trust, client
//! certificates, the danger opt-outs, TLS versions, SNI and ALPN, static DNS overrides,
//! address family, Happy Eyeballs and connection limits. Each positive test has a
//! negative twin that fails when the option is ignored.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern::code::tern_code;
use tern::ffi::options::*;

use crate::common::*;

const HTTP1: u32 = 1;
const H2: u32 = 2;
const CONNECT: u32 = 1;

/// Asserts that an option setter returned OK, with the error's message if not.
pub fn set(
    o: &Opts,
    f: impl FnOnce(*mut tern_session_options, *mut *mut tern::ffi::error::tern_error) -> tern_code,
) {
    let mut e = null_mut();
    let code = f(o.0, &mut e);
    assert_eq!(code, tern_code::Ok, "{}", take_err(e));
}

fn pki(name: &str) -> PathBuf {
    Path::new(&env("TERN_TESTENV_DIR")).join("pki").join(name)
}

// ------------------------------------------------------------------ TLS trust ---

#[test]
fn ca_directory_and_system_roots_switch() {
    let rt = Rt::new(1);
    // A directory holding the test root (and an unrelated file) is trusted.
    let dir = tempdir("ca-dir");
    std::fs::copy(env("TERN_TEST_CA"), dir.join("root.pem")).unwrap();
    std::fs::write(dir.join("README"), "not a certificate").unwrap();
    let o = Opts::new();
    let d = c(dir.to_str().unwrap());
    set(&o, |o, e| unsafe {
        tern_session_options_add_ca_dir(o, d.as_ptr(), e)
    });
    Sess::new(&rt, &o).get(&https("/hello")).ok();

    // Its negative twin: a directory with only the other root does not verify it.
    let other = tempdir("ca-dir-other");
    std::fs::copy(env("TERN_TEST_OTHER_CA"), other.join("other.pem")).unwrap();
    let o = Opts::new();
    let d = c(other.to_str().unwrap());
    set(&o, |o, e| unsafe {
        tern_session_options_add_ca_dir(o, d.as_ptr(), e)
    });
    let r = Sess::new(&rt, &o).get(&https("/hello"));
    assert_eq!(r.code(), tern_code::TlsVerify, "{}", r.message());

    // A missing directory, or one without a certificate, is refused at once.
    let o = Opts::new();
    for bad in ["/nonexistent/tern-ca", dir.join("README").to_str().unwrap()] {
        let p = c(bad);
        let mut e = null_mut();
        let code = unsafe { tern_session_options_add_ca_dir(o.0, p.as_ptr(), &mut e) };
        assert_eq!(code, tern_code::InvalidFile, "{bad}");
        assert!(!take_err(e).is_empty());
    }
    let empty = tempdir("ca-dir-empty");
    let p = c(empty.to_str().unwrap());
    let code = unsafe { tern_session_options_add_ca_dir(o.0, p.as_ptr(), null_mut()) };
    assert_eq!(
        code,
        tern_code::InvalidFile,
        "a directory without certificates"
    );
}

// -------------------------------------------------------- client certificates ---

/// Issues a client certificate with a key of type `kind` (ec, rsa, ed25519) from
/// `ca` (a pki name), with openssl; returns (cert path, key path).
fn client_cert(kind: &str, ca: &str) -> (PathBuf, PathBuf) {
    let dir = tempdir(&format!("client-{kind}-{ca}"));
    let key = dir.join("key.pem");
    let csr = dir.join("req.csr");
    let cert = dir.join("cert.pem");
    let ext = dir.join("ext.cnf");
    std::fs::write(&ext, "extendedKeyUsage = clientAuth\n").unwrap();
    let mut gen = Command::new("openssl");
    gen.arg("genpkey");
    match kind {
        "rsa" => gen.args(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        "ec" => gen.args(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        "ed25519" => gen.args(["-algorithm", "ED25519"]),
        _ => unreachable!(),
    };
    run(gen.arg("-out").arg(&key));
    run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-subj",
            &format!("/CN=tern {kind} client"),
            "-key",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(pki(&format!("{ca}.pem")))
        .arg("-CAkey")
        .arg(pki(&format!("{ca}-key.pem")))
        .arg("-CAcreateserial")
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    (cert, key)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("openssl runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn client_certificates_for_mutual_tls() {
    let rt = Rt::new(1);
    let url = format!("{}/hello", env("TERN_TEST_HTTPS_CLIENTCERT"));

    // Without a certificate nginx refuses the request (400, "No required SSL
    // certificate was sent").
    let r = Sess::new(&rt, &Opts::with_ca()).get(&url);
    r.ok();
    assert_eq!(r.status(), 400);

    // The testenv's client certificate from files (EC P-256 key).
    let o = Opts::with_ca();
    let (cp, kp) = (
        c(&env("TERN_TEST_CLIENT_CERT")),
        c(&env("TERN_TEST_CLIENT_KEY")),
    );
    set(&o, |o, e| unsafe {
        tern_session_options_set_client_cert_file(o, cp.as_ptr(), kp.as_ptr(), e)
    });
    let r = Sess::new(&rt, &o).get(&url);
    r.ok();
    assert_eq!((r.status(), r.text().as_str()), (200, "Hello, world!"));

    // RSA, ECDSA and Ed25519 keys, given as PEM bytes; over HTTP/2 and HTTP/1.1.
    for kind in ["rsa", "ec", "ed25519"] {
        let (cert, key) = client_cert(kind, "client-ca");
        let (cert, key) = (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap());
        let o = Opts::with_ca();
        set(&o, |o, e| unsafe {
            tern_session_options_set_client_cert_pem(
                o,
                cert.as_ptr(),
                cert.len(),
                key.as_ptr(),
                key.len(),
                e,
            )
        });
        let s = Sess::new(&rt, &o);
        for v in [H2, HTTP1] {
            let r = s.perform(Req::new("GET", &url).version(v));
            r.ok();
            assert_eq!(r.status(), 200, "{kind} key, version {v}");
        }
    }

    // A certificate from an issuer the server does not trust is refused by nginx.
    let (cert, key) = client_cert("ec", "other-ca");
    let o = Opts::with_ca();
    let (cp, kp) = (c(cert.to_str().unwrap()), c(key.to_str().unwrap()));
    set(&o, |o, e| unsafe {
        tern_session_options_set_client_cert_file(o, cp.as_ptr(), kp.as_ptr(), e)
    });
    let r = Sess::new(&rt, &o).get(&url);
    r.ok();
    assert_eq!(r.status(), 400, "nginx rejects an unknown issuer");

    // Bad input: a key that does not match the certificate, a file without a key,
    // garbage bytes.
    let o = Opts::with_ca();
    let (other_cert, _) = client_cert("ec", "client-ca");
    let (cp, kp) = (
        c(other_cert.to_str().unwrap()),
        c(&env("TERN_TEST_CLIENT_KEY")),
    );
    let mut e = null_mut();
    let code =
        unsafe { tern_session_options_set_client_cert_file(o.0, cp.as_ptr(), kp.as_ptr(), &mut e) };
    assert_eq!(code, tern_code::InvalidFile, "mismatched key");
    assert!(!take_err(e).is_empty());
    let code = unsafe {
        tern_session_options_set_client_cert_file(o.0, cp.as_ptr(), cp.as_ptr(), null_mut())
    };
    assert_eq!(
        code,
        tern_code::InvalidFile,
        "a certificate where the key should be"
    );
    let junk = b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n";
    let code = unsafe {
        tern_session_options_set_client_cert_pem(
            o.0,
            junk.as_ptr(),
            junk.len(),
            junk.as_ptr(),
            junk.len(),
            null_mut(),
        )
    };
    assert_eq!(code, tern_code::InvalidFile, "garbage PEM");
}

// ------------------------------------------------------------ danger opt-outs ---

#[test]
fn danger_opt_outs_accept_what_they_name_and_say_so() {
    let rt = Rt::new(1);
    let any = Opts::with_ca();
    set(&any, |o, e| unsafe {
        tern_session_options_set_danger_accept_invalid_certs(o, 1, e)
    });
    let any = Sess::new(&rt, &any);
    for var in [
        "TERN_TEST_HTTPS_EXPIRED",
        "TERN_TEST_HTTPS_WRONGHOST",
        "TERN_TEST_HTTPS_SELFSIGNED",
    ] {
        let r = any.get(&format!("{}/hello", env(var)));
        r.ok();
        assert_eq!(r.status(), 200, "{var}");
        assert!(
            r.message().contains("danger_accept_invalid_certs"),
            "the response says verification was off: {}",
            r.message()
        );
    }

    // Host names only: the wrong-host certificate passes, the expired and the
    // self-signed ones still fail.
    let names = Opts::with_ca();
    set(&names, |o, e| unsafe {
        tern_session_options_set_danger_accept_invalid_hostnames(o, 1, e)
    });
    let names = Sess::new(&rt, &names);
    let r = names.get(&format!("{}/hello", env("TERN_TEST_HTTPS_WRONGHOST")));
    r.ok();
    assert!(
        r.message().contains("danger_accept_invalid_hostnames"),
        "{}",
        r.message()
    );
    for var in ["TERN_TEST_HTTPS_EXPIRED", "TERN_TEST_HTTPS_SELFSIGNED"] {
        let r = names.get(&format!("{}/hello", env(var)));
        assert_eq!(r.code(), tern_code::TlsVerify, "{var}: {}", r.message());
    }

    // The default session says nothing of the kind.
    let r = Sess::new(&rt, &Opts::with_ca()).get(&https("/hello"));
    r.ok();
    assert!(!r.message().contains("danger"), "{}", r.message());
}

// ------------------------------------------------------ TLS versions, SNI, ALPN ---

/// What the in-process TLS server saw of one handshake.
#[derive(Debug, Clone)]
struct Seen {
    sni: Option<String>,
    version: String,
    alpn: Option<String>,
}

/// An in-process rustls server with the testenv's localhost leaf, limited to
/// `versions`, offering `alpn`; answers each request with the negotiated version.
struct TlsServer {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    _rt: tokio::runtime::Runtime,
}

impl TlsServer {
    fn start(versions: &[&'static rustls::SupportedProtocolVersion], alpn: &[&[u8]]) -> TlsServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let acceptor = localhost_acceptor(versions, alpn);
        let (rt, l, port) = server_runtime();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = l.accept().await else { return };
                let acceptor = acceptor.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let (_, conn) = tls.get_ref();
                    let s = Seen {
                        sni: conn.server_name().map(str::to_owned),
                        version: format!("{:?}", conn.protocol_version().unwrap()),
                        alpn: conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into()),
                    };
                    seen.lock().unwrap().push(s.clone());
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = s.version;
                    let _ = tls
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsServer {
            port,
            seen,
            _rt: rt,
        }
    }

    /// A session option set that reaches this server as `localhost` over IPv4.
    fn opts(&self) -> Opts {
        let o = Opts::with_ca();
        let entry = c(&format!("localhost:{}:127.0.0.1", self.port));
        set(&o, |o, e| unsafe {
            tern_session_options_add_resolve(o, entry.as_ptr(), e)
        });
        o
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/", self.port)
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a handshake")
    }
}

const TLS12: u32 = 12;
const TLS13: u32 = 13;

#[test]
fn tls_version_bounds() {
    let rt = Rt::new(1);
    let both = TlsServer::start(&[&rustls::version::TLS12, &rustls::version::TLS13], &[]);
    let only12 = TlsServer::start(&[&rustls::version::TLS12], &[]);
    let only13 = TlsServer::start(&[&rustls::version::TLS13], &[]);

    let by = |srv: &TlsServer, min: u32, max: u32| {
        let o = srv.opts();
        set(&o, |o, e| unsafe {
            tern_session_options_set_tls_versions(o, min, max, e)
        });
        Sess::new(&rt, &o).get(&srv.url())
    };
    // Defaults: the best both sides have.
    let r = by(&both, 0, 0);
    assert_eq!(r.ok().text(), "TLSv1_3");
    // A maximum of 1.2 is honoured by a server that could do 1.3 ...
    assert_eq!(by(&both, 0, TLS12).ok().text(), "TLSv1_2");
    assert_eq!(by(&only12, TLS12, TLS12).ok().text(), "TLSv1_2");
    // ... and its negative twins fail the handshake with TLS (not TLS_VERIFY).
    let r = by(&only13, 0, TLS12);
    assert_eq!(r.code(), tern_code::Tls, "{}", r.message());
    let r = by(&only12, TLS13, 0);
    assert_eq!(r.code(), tern_code::Tls, "{}", r.message());
    assert!(
        r.message().to_lowercase().contains("protocol"),
        "{}",
        r.message()
    );

    // Bad bounds are refused when set.
    let o = Opts::new();
    for (min, max) in [(TLS13, TLS12), (11, 0), (0, 14), (10, 12)] {
        let mut e = null_mut();
        let code = unsafe { tern_session_options_set_tls_versions(o.0, min, max, &mut e) };
        assert_eq!(code, tern_code::InvalidArgument, "{min}..{max}");
        assert!(!take_err(e).is_empty());
    }
}

#[test]
fn sni_and_alpn_choice() {
    let rt = Rt::new(1);
    let srv = TlsServer::start(
        &[&rustls::version::TLS12, &rustls::version::TLS13],
        &[b"h2", b"http/1.1"],
    );
    // HTTP/1.1 only: ALPN offers http/1.1 alone (the server would pick h2 otherwise).
    let s = Sess::new(&rt, &srv.opts());
    s.perform(Req::new("GET", &srv.url()).version(HTTP1)).ok();
    let seen = srv.last();
    assert_eq!(
        seen.sni.as_deref(),
        Some("localhost"),
        "SNI is on by default"
    );
    assert_eq!(seen.alpn.as_deref(), Some("http/1.1"));

    // SNI off: the server sees no name, and the certificate is still verified
    // against the URL's host.
    let o = srv.opts();
    set(&o, |o, e| unsafe { tern_session_options_set_sni(o, 0, e) });
    Sess::new(&rt, &o)
        .perform(Req::new("GET", &srv.url()).version(HTTP1))
        .ok();
    assert_eq!(srv.last().sni, None);

    // HTTP/2 only over TLS offers h2 alone: nginx's HTTP/1.1-only port refuses the
    // handshake, its h2 port serves HTTP/2; auto picks h2 where offered.
    let s = Sess::new(&rt, &Opts::with_ca());
    let r = s.perform(Req::new("GET", &format!("{}/hello", env("TERN_TEST_HTTPS_H1"))).version(H2));
    assert_eq!(r.code(), tern_code::Tls, "{}", r.message());
    let r = s.perform(Req::new("GET", &https("/hello")).version(H2));
    assert_eq!((r.ok().status(), r.version()), (200, 20));
    let r = s.get(&format!("{}/hello", env("TERN_TEST_HTTPS_H1")));
    assert_eq!((r.ok().status(), r.version()), (200, 11));
}

// ---------------------------------------------------------------------- DNS ---

#[test]
fn static_overrides_win_and_pick_the_port() {
    let rt = Rt::new(1);
    let port = http("").rsplit(':').next().unwrap().to_owned();
    // A name nobody resolves, mapped for the test's port only.
    let o = Opts::new();
    let entry = c(&format!("app.tern.invalid:{port}:127.0.0.1"));
    set(&o, |o, e| unsafe {
        tern_session_options_add_resolve(o, entry.as_ptr(), e)
    });
    let s = Sess::new(&rt, &o);
    let r = s.get(&format!("http://app.tern.invalid:{port}/hello"));
    assert_eq!(r.ok().text(), "Hello, world!");
    assert!(r.remote().starts_with("127.0.0.1:"));
    // Another port of the same name is not covered by the entry.
    let r = s.get("http://app.tern.invalid:1/hello");
    assert_unresolved(&r);
    // Without the entry the name does not exist.
    let r = Sess::new(&rt, &Opts::new()).get(&format!("http://app.tern.invalid:{port}/hello"));
    assert_unresolved(&r);

    // An override beats the system resolver for a name it knows: localhost to
    // ::1 only, and the TLS name stays localhost.
    let o = Opts::with_ca();
    let https_port = https("").rsplit(':').next().unwrap().to_owned();
    let entry = c(&format!("localhost:{https_port}:127.0.0.1"));
    set(&o, |o, e| unsafe {
        tern_session_options_add_resolve(o, entry.as_ptr(), e)
    });
    let r = Sess::new(&rt, &o).get(&format!("https://localhost:{https_port}/hello"));
    r.ok();
    assert!(r.remote().starts_with("127.0.0.1:"), "{}", r.remote());

    // Bad entries are refused with INVALID_ARGUMENT.
    for bad in [
        "",
        "host",
        "host:80",
        "host:x:127.0.0.1",
        "host:80:not-an-ip",
        ":80:127.0.0.1",
        "host:80:",
    ] {
        let p = c(bad);
        let mut e = null_mut();
        let code = unsafe { tern_session_options_add_resolve(o.0, p.as_ptr(), &mut e) };
        assert_eq!(code, tern_code::InvalidArgument, "{bad:?}");
        assert!(!take_err(e).is_empty());
    }
}

#[test]
fn address_family_preference_and_happy_eyeballs() {
    let rt = Rt::new(1);
    let port = http("").rsplit(':').next().unwrap().to_owned();
    let url = format!("http://dual.tern.invalid:{port}/hello");
    let dual = |family: u32| {
        let o = Opts::new();
        let entry = c(&format!("dual.tern.invalid:{port}:127.0.0.1,::1"));
        set(&o, |o, e| unsafe {
            tern_session_options_add_resolve(o, entry.as_ptr(), e)
        });
        set(&o, |o, e| unsafe {
            tern_session_options_set_ip_family(o, family, e)
        });
        Sess::new(&rt, &o).get(&url)
    };
    let r = dual(6);
    assert!(r.ok().remote().starts_with("[::1]:"), "{}", r.remote());
    let r = dual(4);
    assert!(r.ok().remote().starts_with("127.0.0.1:"), "{}", r.remote());
    let r = dual(0);
    r.ok();

    // A family the name does not have is DNS_NOT_FOUND, not a connect error.
    let o = Opts::new();
    let entry = c(&format!("v4.tern.invalid:{port}:127.0.0.1"));
    set(&o, |o, e| unsafe {
        tern_session_options_add_resolve(o, entry.as_ptr(), e)
    });
    set(&o, |o, e| unsafe {
        tern_session_options_set_ip_family(o, 6, e)
    });
    let r = Sess::new(&rt, &o).get(&format!("http://v4.tern.invalid:{port}/hello"));
    assert_eq!(r.code(), tern_code::DnsNotFound, "{}", r.message());

    // Happy Eyeballs: the first address never answers (a listener with a full
    // accept queue), the second does; the request succeeds well before the connect
    // timeout instead of waiting it out.
    let (hole, _fillers) = blackhole_v6();
    let o = Opts::new().timeout(CONNECT, 5_000);
    let entry = c(&format!("he.tern.invalid:{}:::1,127.0.0.1", hole.port()));
    set(&o, |o, e| unsafe {
        tern_session_options_add_resolve(o, entry.as_ptr(), e)
    });
    // The IPv4 side must answer on the same port: a raw server there.
    let srv = RawServer::start_on(&format!("127.0.0.1:{}", hole.port()), |_, mut s| {
        if read_request(&mut s).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nv4");
        }
    });
    let t = Instant::now();
    let r = Sess::new(&rt, &o).get(&format!("http://he.tern.invalid:{}/", hole.port()));
    assert_eq!(r.ok().text(), "v4");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "Happy Eyeballs should not wait for the connect timeout: {:?}",
        t.elapsed()
    );
    drop(srv);

    let o = Opts::new();
    let mut e = null_mut();
    let code = unsafe { tern_session_options_set_ip_family(o.0, 5, &mut e) };
    assert_eq!(code, tern_code::InvalidArgument);
    assert!(!take_err(e).is_empty());
}

/// An IPv6 loopback listener whose accept queue is full, so that further SYNs are
/// dropped; returns its address and the connections that fill it.
fn blackhole_v6() -> (
    std::net::SocketAddr,
    (socket2::Socket, Vec<std::net::TcpStream>),
) {
    // Pick a port free on both families.
    loop {
        let (addr, held) = blackhole(socket2::Domain::IPV6);
        if std::net::TcpListener::bind(("127.0.0.1", addr.port())).is_ok() {
            return (addr, held);
        }
    }
}

// -------------------------------------------------------- connection limits ---

/// A keep-alive HTTP/1.1 server that answers each request after `delay`. Counts the
/// connections it accepted and the most that were open at once: at each accept it
/// first drops the connections whose peer has closed (a FIN already queued on
/// loopback reads as end of file without blocking), so a connection the client
/// closed just before dialing the next one is not counted twice.
struct Census {
    srv: RawServer,
    peak: Arc<AtomicUsize>,
}

impl Census {
    fn start(delay: Duration) -> Census {
        let live: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let peak = Arc::new(AtomicUsize::new(0));
        let peak2 = peak.clone();
        let srv = RawServer::start(move |_, mut s| {
            {
                let mut live = live.lock().unwrap();
                live.retain(peer_open);
                live.push(s.try_clone().unwrap());
                peak2.fetch_max(live.len(), Ordering::SeqCst);
            }
            while read_request(&mut s).is_some() {
                std::thread::sleep(delay);
                if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .is_err()
                {
                    break;
                }
            }
        });
        Census { srv, peak }
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// False once the peer's FIN (or a reset) has arrived; never blocks or consumes.
fn peer_open(s: &std::net::TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0 || (n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock)
}

fn send_all(s: &Sess, urls: &[String]) -> Vec<tern_code> {
    let done = Arc::new(Mutex::new(Vec::new()));
    for u in urls {
        let d = done.clone();
        s.send(Req::new("GET", u).version(HTTP1), move |r| {
            d.lock().unwrap().push(r.code());
        })
        .unwrap();
    }
    assert!(wait_for(Duration::from_secs(60), || done
        .lock()
        .unwrap()
        .len()
        == urls.len()));
    let v = done.lock().unwrap().clone();
    v
}

#[test]
fn connection_limits_hold_strictly() {
    let rt = Rt::new(2);
    let census = Census::start(Duration::from_millis(20));
    let srv = &census.srv;

    // Per host: 200 requests in flight, 4 connections at most.
    let o = Opts::new();
    set(&o, |o, e| unsafe {
        tern_session_options_set_connection_limits(o, 0, 4, e)
    });
    let s = Sess::new(&rt, &o);
    let urls: Vec<String> = (0..200).map(|_| srv.url("/")).collect();
    let codes = send_all(&s, &urls);
    assert!(codes.iter().all(|c| *c == tern_code::Ok), "{codes:?}");
    assert_eq!(srv.accepted(), 4, "exactly the per-host limit was opened");
    assert_eq!(census.peak(), 4);

    // Total: two host names for the same server share a total of 3. When the limit
    // is reached and a request for the other host waits, the oldest idle connection
    // is closed to make room (as libcurl does), so more than 3 may be accepted over
    // time, but never more than 3 open at once.
    let census = Census::start(Duration::from_millis(20));
    let srv = &census.srv;
    let o = Opts::new();
    set(&o, |o, e| unsafe {
        tern_session_options_set_connection_limits(o, 3, 0, e)
    });
    let entry = c(&format!("b.tern.invalid:{}:127.0.0.1", srv.port));
    set(&o, |o, e| unsafe {
        tern_session_options_add_resolve(o, entry.as_ptr(), e)
    });
    let s = Sess::new(&rt, &o);
    let urls: Vec<String> = (0..200)
        .map(|i| {
            if i % 2 == 0 {
                srv.url("/")
            } else {
                format!("http://b.tern.invalid:{}/", srv.port)
            }
        })
        .collect();
    let t = Instant::now();
    let codes = send_all(&s, &urls);
    // Liveness, not speed: a waiter for one host must not sit until the other
    // host's idle connection times out (30 s); 200 x 20 ms over 3 connections
    // takes about 1.4 s.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(codes.iter().all(|c| *c == tern_code::Ok), "{codes:?}");
    assert!(census.peak() <= 3, "peak {}", census.peak());
    assert!(srv.accepted() >= 2, "both hosts got a connection");

    // Negative twin: without limits the same load opens many more connections.
    let census = Census::start(Duration::from_millis(20));
    let srv = &census.srv;
    let s = Sess::new(&rt, &Opts::new());
    let urls: Vec<String> = (0..200).map(|_| srv.url("/")).collect();
    send_all(&s, &urls);
    assert!(srv.accepted() > 4, "unlimited opened {}", srv.accepted());

    // A waiting request's timeouts still run: one slot, a request holding it for
    // 2 s, the next one times out while waiting for the slot.
    let srv = RawServer::start(|_, mut s| {
        while read_request(&mut s).is_some() {
            std::thread::sleep(Duration::from_secs(2));
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        }
    });
    let o = Opts::new();
    set(&o, |o, e| unsafe {
        tern_session_options_set_connection_limits(o, 1, 1, e)
    });
    let s = Sess::new(&rt, &o);
    let first = Arc::new(Mutex::new(None));
    let f = first.clone();
    s.send(Req::new("GET", &srv.url("/")), move |r| {
        *f.lock().unwrap() = Some(r.code());
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let r = s.perform(Req::new("GET", &srv.url("/")).timeout(0, 300));
    assert_eq!(r.code(), tern_code::TimeoutTotal, "{}", r.message());
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
    assert!(wait_for(Duration::from_secs(5), || first
        .lock()
        .unwrap()
        .is_some()));
    assert_eq!(*first.lock().unwrap(), Some(tern_code::Ok));
    assert_eq!(srv.accepted(), 1);
}

/// A fresh directory under target/ for one test.
pub fn tempdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-tmp")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ------------------------------------------------------------- nameservers ---

fn nameserver_session(rt: &Rt, servers: &str, family: u32) -> Sess {
    let o = Opts::new();
    let l = c(servers);
    set(&o, |o, e| unsafe {
        tern_session_options_set_nameservers(o, l.as_ptr(), e)
    });
    set(&o, |o, e| unsafe {
        tern_session_options_set_ip_family(o, family, e)
    });
    Sess::new(rt, &o)
}

#[test]
fn custom_nameservers_answer_what_the_system_does_not_know() {
    let rt = Rt::new(1);
    let dns = env("TERN_TEST_DNS");
    let port = http("").rsplit(':').next().unwrap().to_owned();
    let url = |name: &str| format!("http://{name}.tern.test:{port}/hello");
    let s = nameserver_session(&rt, &dns, 0);
    let r = s.get(&url("v4"));
    assert_eq!(r.ok().text(), "Hello, world!");
    assert!(r.remote().starts_with("127.0.0.1:"), "{}", r.remote());
    let r = s.get(&url("v6"));
    assert!(
        r.ok().remote().starts_with("[::1]:"),
        "AAAA only: {}",
        r.remote()
    );
    r.ok();
    s.get(&url("dual")).ok();
    let r = nameserver_session(&rt, &dns, 4).get(&url("dual"));
    assert!(r.ok().remote().starts_with("127.0.0.1:"), "{}", r.remote());
    let r = nameserver_session(&rt, &dns, 6).get(&url("dual"));
    assert!(r.ok().remote().starts_with("[::1]:"), "{}", r.remote());
    // A name the zone does not have, and a family a name does not have.
    let r = s.get(&url("missing"));
    assert_eq!(r.code(), tern_code::DnsNotFound, "{}", r.message());
    let r = nameserver_session(&rt, &dns, 6).get(&url("v4"));
    assert_eq!(r.code(), tern_code::DnsNotFound, "{}", r.message());

    // Negative twin: the system resolver does not know the test zone.
    let r = Sess::new(&rt, &Opts::new()).get(&url("v4"));
    assert!(
        matches!(r.code(), tern_code::DnsNotFound | tern_code::Dns),
        "{:?} {}",
        r.code(),
        r.message()
    );

    // A nameserver that is not there: the resolver failed (DNS), which is not the
    // same as a name that does not exist.
    let r = nameserver_session(&rt, "127.0.0.1:1", 0).get(&url("v4"));
    assert_eq!(r.code(), tern_code::Dns, "{}", r.message());

    // Bad lists are refused when set.
    let o = Opts::new();
    for bad in ["not-an-ip", "127.0.0.1:99999", "[::1", "1.2.3.4:53:1"] {
        let l = c(bad);
        let mut e = null_mut();
        let code = unsafe { tern_session_options_set_nameservers(o.0, l.as_ptr(), &mut e) };
        assert_eq!(code, tern_code::InvalidArgument, "{bad:?}");
        assert!(!take_err(e).is_empty());
    }
}

/// A minimal UDP DNS responder on 127.0.0.1 that answers every A query with
/// 127.0.0.1 (TTL 300) and every other query with an empty answer, counting the
/// A queries it saw.
fn counting_dns() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        loop {
            let Ok((len, peer)) = sock.recv_from(&mut buf) else {
                return;
            };
            let q = &buf[..len];
            if len < 17 {
                continue;
            }
            // The question ends after the name's zero label, then type and class.
            let mut i = 12;
            while i < len && q[i] != 0 {
                i += q[i] as usize + 1;
            }
            if i + 5 > len {
                continue;
            }
            let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
            let question = &q[12..i + 5];
            let mut resp = Vec::new();
            resp.extend_from_slice(&q[..2]); // id
            resp.extend_from_slice(&[0x81, 0x80]); // response, recursion available
            resp.extend_from_slice(&[0, 1]); // one question
            let answers: u16 = if qtype == 1 { 1 } else { 0 };
            resp.extend_from_slice(&answers.to_be_bytes());
            resp.extend_from_slice(&[0, 0, 0, 0]);
            resp.extend_from_slice(question);
            if qtype == 1 {
                n.fetch_add(1, Ordering::SeqCst);
                resp.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]); // name, A, IN
                resp.extend_from_slice(&300u32.to_be_bytes());
                resp.extend_from_slice(&[0, 4, 127, 0, 0, 1]);
            }
            let _ = sock.send_to(&resp, peer);
        }
    });
    (addr, count)
}

#[test]
fn dns_cache_ttl_is_bounded_by_the_option() {
    let rt = Rt::new(1);
    let port = http("").rsplit(':').next().unwrap().to_owned();
    let url = format!("http://cached.tern.test:{port}/hello");
    let run = |ttl_ms: Option<u64>, pause: Duration| -> usize {
        let (dns, count) = counting_dns();
        let o = Opts::new();
        let l = c(&dns.to_string());
        set(&o, |o, e| unsafe {
            tern_session_options_set_nameservers(o, l.as_ptr(), e)
        });
        set(&o, |o, e| unsafe {
            tern_session_options_set_ip_family(o, 4, e)
        });
        // No pooled connections: every request looks the name up again.
        set(&o, |o, e| unsafe {
            tern_session_options_set_pool(o, 1000, 0, e)
        });
        if let Some(ms) = ttl_ms {
            set(&o, |o, e| unsafe {
                tern_session_options_set_dns_cache_ttl_ms(o, ms, e)
            });
        }
        let s = Sess::new(&rt, &o);
        s.get(&url).ok();
        std::thread::sleep(pause);
        s.get(&url).ok();
        count.load(Ordering::SeqCst)
    };
    // Default (60 s, below the record's 300 s): one query for two requests.
    assert_eq!(run(None, Duration::ZERO), 1);
    // A bound of 300 ms, waited out: the answer is asked for again.
    assert_eq!(run(Some(300), Duration::from_millis(600)), 2);
    // 0 disables the cache.
    assert_eq!(run(Some(0), Duration::ZERO), 2);
}

/// An in-process HTTPS server speaking HTTP/2 (ALPN h2 only) that counts the
/// connections it accepted.
fn h2_server() -> (u16, Arc<AtomicUsize>, tokio::runtime::Runtime) {
    let acceptor = localhost_acceptor(rustls::DEFAULT_VERSIONS, &[b"h2"]);
    let (rt, l, port) = server_runtime();
    let accepted = Arc::new(AtomicUsize::new(0));
    let acc = accepted.clone();
    rt.spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"h2"),
                    )))
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .max_concurrent_streams(1000)
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
            });
        }
    });
    (port, accepted, rt)
}

#[test]
fn an_http2_burst_shares_one_connection() {
    let (port, accepted, _srv) = h2_server();
    let rt = Rt::new(2);
    for limit in [0u32, 1] {
        // ALPN (the default) and prior knowledge; with and without a per-host limit of 1.
        for version in [0u32, H2] {
            let before = accepted.load(Ordering::SeqCst);
            let o = Opts::with_ca();
            let entry = c(&format!("localhost:{port}:127.0.0.1"));
            set(&o, |o, e| unsafe {
                tern_session_options_add_resolve(o, entry.as_ptr(), e)
            });
            set(&o, |o, e| unsafe {
                tern_session_options_set_connection_limits(o, 0, limit, e)
            });
            let s = Sess::new(&rt, &o);
            let done = Arc::new(Mutex::new(Vec::new()));
            for _ in 0..256 {
                let d = done.clone();
                let req = Req::new("GET", &format!("https://localhost:{port}/")).version(version);
                s.send(req, move |r| {
                    d.lock().unwrap().push((r.code(), r.version()))
                })
                .unwrap();
            }
            assert!(
                wait_for(Duration::from_secs(30), || done.lock().unwrap().len()
                    == 256),
                "limit {limit}, version {version}: all complete"
            );
            let got = done.lock().unwrap();
            assert!(
                got.iter().all(|(c, v)| *c == tern_code::Ok && *v == 20),
                "{got:?}"
            );
            let opened = accepted.load(Ordering::SeqCst) - before;
            assert_eq!(
                opened, 1,
                "limit {limit}, version {version}: {opened} connections"
            );
        }
    }
}
