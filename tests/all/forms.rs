//! Forms: urlencoded bodies checked byte for byte against nginx's /echo, multipart
//! bodies (fields, a 20 MiB file streamed from disk, bytes with explicit content
//! types) parsed by `multer` in an in-process server, and the errors of the form
//! functions.

use std::ffi::CString;
use std::path::PathBuf;
use std::ptr::{null, null_mut};

use sha2::{Digest, Sha256};
use tern::code::tern_code;
use tern::ffi::error::tern_error;
use tern::ffi::form::*;

use crate::common::*;

const URLENCODED: u32 = 0;
const MULTIPART: u32 = 1;

/// A form handle, freed on drop.
struct Form(*mut tern_form);

fn opt(s: Option<&str>) -> Option<CString> {
    s.map(c)
}

fn ptr(s: &Option<CString>) -> *const std::ffi::c_char {
    s.as_ref().map_or(null(), |s| s.as_ptr())
}

/// Runs `f` with an error out-parameter: `Ok` or the code and message.
fn call(f: impl FnOnce(*mut *mut tern_error) -> tern_code) -> Result<(), (tern_code, String)> {
    let mut e = null_mut();
    match f(&mut e) {
        tern_code::Ok => {
            assert!(e.is_null());
            Ok(())
        }
        code => Err((code, take_err(e))),
    }
}

impl Form {
    fn new(kind: u32) -> Form {
        let mut f = null_mut();
        call(|e| unsafe { tern_form_new(kind, &mut f, e) }).unwrap();
        Form(f)
    }

    fn field(self, name: &str, value: &str) -> Form {
        let (n, v) = (c(name), c(value));
        call(|e| unsafe { tern_form_add_field(self.0, n.as_ptr(), v.as_ptr(), e) }).unwrap();
        self
    }

    fn try_bytes(
        &self,
        name: &str,
        data: &[u8],
        filename: Option<&str>,
        ct: Option<&str>,
    ) -> Result<(), (tern_code, String)> {
        let (n, f, t) = (c(name), opt(filename), opt(ct));
        call(|e| unsafe {
            tern_form_add_bytes(
                self.0,
                n.as_ptr(),
                data.as_ptr(),
                data.len(),
                ptr(&f),
                ptr(&t),
                e,
            )
        })
    }

    fn bytes(self, name: &str, data: &[u8], filename: Option<&str>, ct: Option<&str>) -> Form {
        self.try_bytes(name, data, filename, ct).unwrap();
        self
    }

    fn try_file(
        &self,
        name: &str,
        path: &str,
        filename: Option<&str>,
        ct: Option<&str>,
    ) -> Result<(), (tern_code, String)> {
        let (n, p, f, t) = (c(name), c(path), opt(filename), opt(ct));
        call(|e| unsafe { tern_form_add_file(self.0, n.as_ptr(), p.as_ptr(), ptr(&f), ptr(&t), e) })
    }

    fn file(self, name: &str, path: &str, filename: Option<&str>, ct: Option<&str>) -> Form {
        self.try_file(name, path, filename, ct).unwrap();
        self
    }

    fn try_attach(&self, req: &Req) -> Result<(), (tern_code, String)> {
        call(|e| unsafe { tern_request_set_form(req.0, self.0, e) })
    }

    fn attach(&self, req: Req) -> Req {
        self.try_attach(&req).unwrap();
        req
    }
}

impl Drop for Form {
    fn drop(&mut self) {
        unsafe { tern_form_free(self.0) };
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// A directory of this test binary's own under target/.
fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tern-forms-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An in-process HTTP/1.1 server. For a multipart body it answers one line per part
/// (`name|filename|content-type|length|sha256`, as multer parsed it) after a first
/// line with the request's framing; for any other body, the framing line and the
/// body.
fn form_server() -> (u16, tokio::runtime::Runtime) {
    use http_body_util::BodyExt;
    http1_server(|req: hyper::Request<hyper::body::Incoming>| async move {
        let h = |n: &str| {
            req.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let ct = h("content-type");
        let mut text = format!(
            "content-type={ct}\ncontent-length={}\ntransfer-encoding={}\n",
            h("content-length"),
            h("transfer-encoding")
        );
        match multer::parse_boundary(&ct) {
            Ok(b) => {
                let body = http_body_util::BodyDataStream::new(req.into_body());
                let mut mp = multer::Multipart::new(body, b);
                loop {
                    match mp.next_field().await {
                        Ok(Some(mut f)) => {
                            let line0 = format!(
                                "{}|{}|{}",
                                f.name().unwrap_or("-"),
                                f.file_name().unwrap_or("-"),
                                f.content_type().map_or("-".to_owned(), |m| m.to_string())
                            );
                            let mut hs = Sha256::new();
                            let mut n = 0u64;
                            loop {
                                match f.chunk().await {
                                    Ok(Some(c)) => {
                                        n += c.len() as u64;
                                        hs.update(&c);
                                    }
                                    Ok(None) => break,
                                    Err(e) => {
                                        text += &format!("error {e}\n");
                                        break;
                                    }
                                }
                            }
                            text += &format!("{line0}|{n}|{}\n", hex(&hs.finalize()));
                        }
                        Ok(None) => break,
                        Err(e) => {
                            text += &format!("error {e}\n");
                            break;
                        }
                    }
                }
            }
            Err(_) => {
                let b = req.into_body().collect().await?.to_bytes();
                text += &String::from_utf8_lossy(&b);
            }
        }
        Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
            bytes::Bytes::from(text),
        )))
    })
}

/// A file of `len` deterministic bytes; returns its path and SHA-256.
fn pattern_file(dir: &std::path::Path, name: &str, len: usize) -> (String, String) {
    let data: Vec<u8> = (0..len).map(|i| (i * 31 + i / 4096) as u8).collect();
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (path.to_str().unwrap().to_owned(), sha(&data))
}

#[test]
fn urlencoded_body_is_exact_on_the_wire() {
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    let form = Form::new(URLENCODED)
        .field("q", "a b&c=d/e?f#g+h%i")
        .field("名前", "値 ü")
        .field("empty", "")
        .field("q", "second");
    let want =
        "q=a+b%26c%3Dd%2Fe%3Ff%23g%2Bh%25i&%E5%90%8D%E5%89%8D=%E5%80%A4+%C3%BC&empty=&q=second";
    let r = s.perform(form.attach(Req::new("POST", &http("/echo"))));
    assert_eq!(r.ok().text(), format!("method=POST\n{want}"));

    // The framing and content type, seen by a server of ours; the form was copied
    // into the first request and serves a second one unchanged.
    let (port, _srv) = form_server();
    let r = s.perform(form.attach(Req::new("POST", &format!("http://127.0.0.1:{port}/"))));
    assert_eq!(
        r.ok().text(),
        format!(
            "content-type=application/x-www-form-urlencoded\ncontent-length={}\ntransfer-encoding=\n{want}",
            want.len()
        )
    );

    // An empty form is an empty body.
    let r = s.perform(Form::new(URLENCODED).attach(Req::new("POST", &http("/echo"))));
    assert_eq!(r.ok().text(), "method=POST\n");
}

#[test]
fn multipart_parts_arrive_exactly_with_a_content_length() {
    let dir = scratch("multipart");
    let (big, big_sha) = pattern_file(&dir, "big.bin", 20 << 20);
    let (small, small_sha) = pattern_file(&dir, "notes.txt", 1000);
    let json = br#"{"k": [1, 2, 3]}"#;
    let raw: Vec<u8> = (0..=255u8).collect();
    let form = Form::new(MULTIPART)
        .field("title", "héllo wörld\r\nline two")
        .file("upload", &big, None, None)
        .bytes("meta", json, Some("meta.json"), Some("application/json"))
        .bytes("raw", &raw, None, None)
        .file(
            "notes",
            &small,
            Some("renamed.md"),
            Some("text/markdown; charset=utf-8"),
        )
        .field("title", "again");
    let (port, _srv) = form_server();
    let url = format!("http://127.0.0.1:{port}/upload");
    let rt = Rt::new(2);
    let s = Sess::new(&rt, &Opts::new());
    let req = form.attach(Req::new("POST", &url));
    drop(form); // the request holds its own copy
    let r = s.perform(req);
    let text = r.ok().text();
    let mut lines = text.lines();
    let ct = lines.next().unwrap();
    let boundary = ct
        .strip_prefix("content-type=multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("{ct}"));
    assert!(
        boundary.len() >= 27
            && boundary
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    );
    let cl: u64 = lines
        .next()
        .unwrap()
        .strip_prefix("content-length=")
        .unwrap()
        .parse()
        .expect("a Content-Length was sent");
    assert!(cl > 20 << 20);
    assert_eq!(lines.next(), Some("transfer-encoding="), "not chunked");
    let title = "héllo wörld\r\nline two";
    let parts: Vec<&str> = lines.collect();
    assert_eq!(
        parts,
        vec![
            format!("title|-|-|{}|{}", title.len(), sha(title.as_bytes())),
            format!(
                "upload|big.bin|application/octet-stream|{}|{big_sha}",
                20 << 20
            ),
            format!(
                "meta|meta.json|application/json|{}|{}",
                json.len(),
                sha(json)
            ),
            format!("raw|-|application/octet-stream|256|{}", sha(&raw)),
            format!("notes|renamed.md|text/markdown; charset=utf-8|1000|{small_sha}"),
            format!("title|-|-|5|{}", sha(b"again")),
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn multipart_encoding_is_exact_and_escapes_names() {
    // Over HTTPS (HTTP/2 by ALPN) to nginx's /echo, which returns the body as sent.
    let dir = scratch("escape");
    let (path, _) = pattern_file(&dir, "résumé.pdf", 3);
    let file_bytes = std::fs::read(&path).unwrap();
    let form = Form::new(MULTIPART)
        .field("a\"b\r\nc", "v")
        .bytes("d", b"xyz", Some("x\"y\nz.txt"), None)
        .file("f", &path, None, None);
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::with_ca());
    let r = s.perform(form.attach(Req::new("POST", &https("/echo"))));
    assert_eq!(r.ok().version(), 20, "HTTP/2");
    let body = r.body();
    let body = body.strip_prefix(b"method=POST\n".as_slice()).unwrap();
    let first = body.split(|&b| b == b'\r').next().unwrap();
    let b = std::str::from_utf8(&first[2..]).unwrap();
    let mut want = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"a%22b%0D%0Ac\"\r\n\r\nv\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"d\"; filename=\"x%22y%0Az.txt\"\r\n\
         Content-Type: text/plain\r\n\r\nxyz\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"résumé.pdf\"\r\n\
         Content-Type: application/pdf\r\n\r\n"
    )
    .into_bytes();
    want.extend_from_slice(&file_bytes);
    want.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    assert_eq!(
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(body, want.as_slice());

    // An empty multipart form is its closing delimiter only.
    let r = s.perform(Form::new(MULTIPART).attach(Req::new("POST", &https("/echo"))));
    let text = r.ok().text();
    let b = text
        .strip_prefix("method=POST\n--")
        .and_then(|t| t.strip_suffix("--\r\n"))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(b.starts_with("tern-form-"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn caller_content_type_is_kept() {
    let (port, _srv) = form_server();
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    let req = Req::new("POST", &format!("http://127.0.0.1:{port}/")).set_header(
        "Content-Type",
        "application/x-www-form-urlencoded; charset=utf-8",
    );
    let r = s.perform(Form::new(URLENCODED).field("a", "1").attach(req));
    assert_eq!(
        r.ok().text(),
        "content-type=application/x-www-form-urlencoded; charset=utf-8\ncontent-length=3\ntransfer-encoding=\na=1"
    );
}

#[test]
fn form_errors() {
    let dir = scratch("errors");
    let (path, _) = pattern_file(&dir, "f.bin", 100);

    let mut f = null_mut();
    let err = call(|e| unsafe { tern_form_new(2, &mut f, e) }).unwrap_err();
    assert_eq!(err.0, tern_code::InvalidArgument, "{}", err.1);
    assert!(f.is_null());

    // Bytes and files need a multipart form.
    let u = Form::new(URLENCODED);
    let err = u.try_bytes("b", b"x", None, None).unwrap_err();
    assert_eq!(err.0, tern_code::InvalidArgument);
    assert!(err.1.contains("multipart"), "{}", err.1);
    let err = u.try_file("f", &path, None, None).unwrap_err();
    assert_eq!(err.0, tern_code::InvalidArgument);

    let m = Form::new(MULTIPART);
    for ct in ["text/plain\r\nX-Injected: 1", "text/plain\n", ""] {
        let err = m.try_bytes("b", b"x", None, Some(ct)).unwrap_err();
        assert_eq!(err.0, tern_code::InvalidArgument, "{ct:?}");
        let err = m.try_file("f", &path, None, Some(ct)).unwrap_err();
        assert_eq!(err.0, tern_code::InvalidArgument, "{ct:?}");
    }
    let missing = dir.join("missing.bin");
    let err = m
        .try_file("f", missing.to_str().unwrap(), None, None)
        .unwrap_err();
    assert_eq!(err.0, tern_code::InvalidFile);
    assert!(err.1.contains("missing.bin"), "{}", err.1);
    let err = m
        .try_file("f", dir.to_str().unwrap(), None, None)
        .unwrap_err();
    assert_eq!(err.0, tern_code::InvalidFile, "a directory: {}", err.1);
    let err = m.try_file("f", "", None, None).unwrap_err();
    assert_eq!(err.0, tern_code::InvalidFile);

    // A file removed after it was added: INVALID_FILE when attached, and the request
    // keeps the body it had.
    let (gone, _) = pattern_file(&dir, "gone.bin", 10);
    let m = Form::new(MULTIPART).file("f", &gone, None, None);
    std::fs::remove_file(&gone).unwrap();
    let req = Req::new("POST", &http("/echo")).body(b"kept");
    let err = m.try_attach(&req).unwrap_err();
    assert_eq!(err.0, tern_code::InvalidFile, "{}", err.1);
    let rt = Rt::new(1);
    let s = Sess::new(&rt, &Opts::new());
    assert_eq!(s.perform(req).ok().text(), "method=POST\nkept");

    // A file that shrinks between attach and send fails the request, naming it.
    let (shrinks, _) = pattern_file(&dir, "shrinks.bin", 1 << 20);
    let req = Form::new(MULTIPART)
        .file("f", &shrinks, None, None)
        .attach(Req::new("POST", &http("/echo")));
    std::fs::write(&shrinks, b"short").unwrap();
    let r = s.perform(req);
    assert_eq!(r.code(), tern_code::Protocol, "{}", r.message());
    assert!(r.message().contains("shrinks.bin"), "{}", r.message());

    // NULL arguments.
    let v = c("v");
    let err = call(|e| unsafe { tern_form_add_field(null_mut(), v.as_ptr(), v.as_ptr(), e) })
        .unwrap_err();
    assert_eq!(err.0, tern_code::NullArgument);
    let err = call(|e| unsafe { tern_form_add_field(m.0, v.as_ptr(), null(), e) }).unwrap_err();
    assert_eq!(err.0, tern_code::NullArgument);
    let err =
        call(|e| unsafe { tern_form_add_bytes(m.0, v.as_ptr(), null(), 3, null(), null(), e) })
            .unwrap_err();
    assert_eq!(err.0, tern_code::NullArgument);
    let req = Req::new("POST", &http("/echo"));
    let err = call(|e| unsafe { tern_request_set_form(req.0, null(), e) }).unwrap_err();
    assert_eq!(err.0, tern_code::NullArgument);
    let err = call(|e| unsafe { tern_request_set_form(null_mut(), m.0, e) }).unwrap_err();
    assert_eq!(err.0, tern_code::NullArgument);
    std::fs::remove_dir_all(&dir).unwrap();
}
