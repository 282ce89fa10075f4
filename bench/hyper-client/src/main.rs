//! hyper_client: the plain hyper-util legacy client on tokio, the ceiling tern sits on.
//!
//!   hyper_client --url URL --requests N --concurrency C [--cacert FILE] [--no-reuse]
//!                [--http2] [--stream] [--version]
//!
//! C tasks on a multi-thread runtime (one worker per CPU, as tern's default) each take
//! the next request number and run it to its end, so at most C are in flight. Settings
//! as the C clients (bench/clients/common.h): only the CA file with --cacert; HTTP/1.1
//! (ALPN http/1.1), or with --http2 HTTP/2 only (ALPN h2, `http2_only`); idle
//! connections kept without limit, none with --no-reuse (`pool_max_idle_per_host(0)`).
//! A body is collected in memory (`collect().to_bytes()`), or with --stream read frame
//! by frame and counted. Prints the same one-line RESULT as the C clients.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

struct Opts {
    url: String,
    requests: u64,
    concurrency: u64,
    cacert: Option<String>,
    no_reuse: bool,
    http2: bool,
    stream: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: hyper_client --url URL --requests N --concurrency C [--cacert FILE] \
         [--no-reuse] [--http2] [--stream] [--version]"
    );
    std::process::exit(2)
}

fn parse() -> Opts {
    let mut o = Opts {
        url: String::new(),
        requests: 0,
        concurrency: 1,
        cacert: None,
        no_reuse: false,
        http2: false,
        stream: false,
    };
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>| -> u64 {
        match v.and_then(|s| s.parse::<u64>().ok()) {
            Some(n) if n > 0 => n,
            _ => usage(),
        }
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--url" => o.url = args.next().unwrap_or_else(|| usage()),
            "--requests" => o.requests = num(args.next()),
            "--concurrency" => o.concurrency = num(args.next()),
            "--cacert" => o.cacert = Some(args.next().unwrap_or_else(|| usage())),
            "--no-reuse" => o.no_reuse = true,
            "--http2" => o.http2 = true,
            "--stream" => o.stream = true,
            "--version" => {
                println!(
                    "hyper 1.x, hyper-util legacy client, hyper-rustls 0.27, rustls 0.23 (ring)"
                );
                std::process::exit(0)
            }
            _ => usage(),
        }
    }
    if o.url.is_empty() || o.requests == 0 {
        usage()
    }
    o.concurrency = o.concurrency.min(o.requests);
    o
}

fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn tls_config(o: &Opts) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &o.cacert {
        for cert in CertificateDer::pem_file_iter(path).expect("--cacert: cannot read") {
            roots
                .add(cert.expect("--cacert: bad PEM"))
                .expect("--cacert: bad certificate");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

struct Totals {
    ok: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    first_error: Mutex<Option<String>>,
}

fn main() {
    let o = Arc::new(parse());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(&o))
        .https_or_http();
    let connector = if o.http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    };
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(if o.no_reuse { 0 } else { usize::MAX })
        .http2_only(o.http2)
        .build(connector);
    let uri: hyper::Uri = o.url.parse().expect("--url: not a URI");

    let totals = Arc::new(Totals {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    let next = Arc::new(AtomicU64::new(0));

    let base_rss = rss_kib();
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::with_capacity(o.concurrency as usize);
        for _ in 0..o.concurrency {
            let (client, uri, o, totals, next) = (
                client.clone(),
                uri.clone(),
                o.clone(),
                totals.clone(),
                next.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < o.requests {
                    let req = hyper::Request::get(uri.clone())
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    let outcome: Result<u64, String> = async {
                        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
                        if resp.status() != hyper::StatusCode::OK {
                            return Err(format!("status {}", resp.status()));
                        }
                        let mut body = resp.into_body();
                        if o.stream {
                            let mut n = 0u64;
                            while let Some(frame) = body.frame().await {
                                let frame = frame.map_err(|e| format!("body: {e}"))?;
                                if let Ok(data) = frame.into_data() {
                                    n += data.len() as u64;
                                }
                            }
                            Ok(n)
                        } else {
                            let b = body.collect().await.map_err(|e| format!("body: {e}"))?;
                            Ok(b.to_bytes().len() as u64)
                        }
                    }
                    .await;
                    match outcome {
                        Ok(n) => {
                            totals.ok.fetch_add(1, Ordering::Relaxed);
                            totals.bytes.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => {
                            totals.failed.fetch_add(1, Ordering::Relaxed);
                            totals.first_error.lock().unwrap().get_or_insert(e);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
    let seconds = start.elapsed().as_secs_f64();

    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let ok = totals.ok.load(Ordering::Relaxed);
    let failed = totals.failed.load(Ordering::Relaxed);
    let mut line = format!(
        "RESULT client=hyper requests={} ok={ok} failed={failed} bytes={} seconds={seconds:.6} \
         user_s={:.6} sys_s={:.6} maxrss_kib={} base_rss_kib={base_rss}",
        o.requests,
        totals.bytes.load(Ordering::Relaxed),
        tv(ru.ru_utime),
        tv(ru.ru_stime),
        ru.ru_maxrss
    );
    if let Some(e) = totals.first_error.lock().unwrap().as_ref() {
        line.push_str(&format!(" error=\"{}\"", e.replace(['"', '\n'], "'")));
    }
    println!("{line}");
    drop(client);
    rt.shutdown_background();
    std::process::exit(if ok == o.requests && failed == 0 {
        0
    } else {
        1
    });
}
