//! Form bodies: `application/x-www-form-urlencoded` (the `url` crate's serializer) and
//! `multipart/form-data` (RFC 7578), with files streamed from disk in 64 KiB chunks
//! and an exact Content-Length.
//!
//! The multipart encoder is written here: the builder crates (common-multipart-rfc7578,
//! mpart-async) stream files but cannot say the body's length in advance, so their
//! bodies go chunked; `multer` is a parser only.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};

use crate::code::{Code, Error, Result};
use crate::engine::body::ChunkStream;
use crate::engine::config::{RequestSpec, UploadSource, UploadSpec};

/// How a file part is read while it is sent.
const CHUNK: usize = 64 * 1024;

/// Which encoding a form uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormKind {
    UrlEncoded,
    Multipart,
}

#[derive(Clone, Debug)]
enum Value {
    Text(String),
    Bytes(Bytes),
    File(PathBuf),
}

#[derive(Clone, Debug)]
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    value: Value,
}

/// A form description: fields, bytes and file paths, in order. Attaching it to a
/// request copies it, so one form can be attached to many requests.
#[derive(Clone, Debug)]
pub struct Form {
    kind: FormKind,
    parts: Vec<Part>,
}

fn multipart_only(what: &str) -> Error {
    Error::new(
        Code::InvalidArgument,
        format!("{what} needs a multipart form (TERN_FORM_KIND_MULTIPART)"),
    )
}

/// Refuses control characters (CR and LF above all) in a content type.
fn check_content_type(ct: &str) -> Result<()> {
    if ct.is_empty() || ct.chars().any(|c| c.is_control()) {
        return Err(Error::new(
            Code::InvalidArgument,
            format!(
                "invalid content type {ct:?}: empty, or with CR, LF or another control character"
            ),
        ));
    }
    Ok(())
}

/// Opens a file for reading and takes its size; INVALID_FILE when that fails or it is
/// not a regular file.
fn open_file(path: &Path) -> Result<(std::fs::File, u64)> {
    let fail = |why: String| {
        Error::new(
            Code::InvalidFile,
            format!("cannot read the file {}: {why}", path.display()),
        )
    };
    let f = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let meta = f.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    Ok((f, meta.len()))
}

/// Quotes a name or filename as browsers do (HTML's multipart/form-data encoding,
/// RFC 7578 section 4.2): `"`, CR and LF become `%22`, `%0D` and `%0A`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("%22"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

/// A random boundary (128 bits from the ring provider's system random source).
fn boundary() -> Result<String> {
    let mut raw = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut raw)
        .map_err(|_| Error::new(Code::Internal, "no random source for a multipart boundary"))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("tern-form-{hex}"))
}

/// One piece of a multipart body.
enum Segment {
    Bytes(Bytes),
    File {
        file: std::fs::File,
        len: u64,
        path: PathBuf,
    },
}

impl Form {
    pub fn new(kind: FormKind) -> Form {
        Form {
            kind,
            parts: Vec::new(),
        }
    }

    pub fn kind(&self) -> FormKind {
        self.kind
    }

    /// Adds a text field.
    pub fn add_field(&mut self, name: &str, value: &str) {
        self.parts.push(Part {
            name: name.to_owned(),
            filename: None,
            content_type: None,
            value: Value::Text(value.to_owned()),
        });
    }

    /// Adds bytes as a part (multipart only), with an optional filename and content
    /// type (default: guessed from the filename, else application/octet-stream).
    pub fn add_bytes(
        &mut self,
        name: &str,
        data: Bytes,
        filename: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<()> {
        if self.kind != FormKind::Multipart {
            return Err(multipart_only("a bytes part"));
        }
        if let Some(ct) = content_type {
            check_content_type(ct)?;
        }
        self.parts.push(Part {
            name: name.to_owned(),
            filename: filename.map(str::to_owned),
            content_type: Some(match content_type {
                Some(ct) => ct.to_owned(),
                None => guess(filename),
            }),
            value: Value::Bytes(data),
        });
        Ok(())
    }

    /// Adds a file part (multipart only): checks now that the file can be read; it is
    /// opened again, and its size taken, when the form is attached.
    pub fn add_file(
        &mut self,
        name: &str,
        path: &str,
        filename: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<()> {
        if self.kind != FormKind::Multipart {
            return Err(multipart_only("a file part"));
        }
        if let Some(ct) = content_type {
            check_content_type(ct)?;
        }
        if path.is_empty() {
            return Err(Error::new(Code::InvalidFile, "the file path is empty"));
        }
        let path = PathBuf::from(path);
        open_file(&path)?;
        let filename = match filename {
            Some(f) => f.to_owned(),
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let content_type = match content_type {
            Some(ct) => ct.to_owned(),
            None => guess(Some(&filename)),
        };
        self.parts.push(Part {
            name: name.to_owned(),
            filename: Some(filename),
            content_type: Some(content_type),
            value: Value::File(path),
        });
        Ok(())
    }

    /// The urlencoded body: `name=value&...` (spaces as `+`).
    fn urlencoded(&self) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for p in &self.parts {
            if let Value::Text(v) = &p.value {
                ser.append_pair(&p.name, v);
            }
        }
        ser.finish()
    }

    /// The multipart body's pieces (files opened now) and its exact length.
    fn multipart(&self, boundary: &str) -> Result<(Vec<Segment>, u64)> {
        let mut segs = Vec::new();
        let mut text = BytesMut::new();
        let mut total = 0u64;
        for p in &self.parts {
            text.extend_from_slice(b"--");
            text.extend_from_slice(boundary.as_bytes());
            text.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
            text.extend_from_slice(escape(&p.name).as_bytes());
            text.extend_from_slice(b"\"");
            if let Some(f) = &p.filename {
                text.extend_from_slice(b"; filename=\"");
                text.extend_from_slice(escape(f).as_bytes());
                text.extend_from_slice(b"\"");
            }
            text.extend_from_slice(b"\r\n");
            if let Some(ct) = &p.content_type {
                text.extend_from_slice(b"Content-Type: ");
                text.extend_from_slice(ct.as_bytes());
                text.extend_from_slice(b"\r\n");
            }
            text.extend_from_slice(b"\r\n");
            match &p.value {
                Value::Text(v) => text.extend_from_slice(v.as_bytes()),
                Value::Bytes(b) => text.extend_from_slice(b),
                Value::File(path) => {
                    let (file, len) = open_file(path)?;
                    total += text.len() as u64 + len;
                    segs.push(Segment::Bytes(text.split().freeze()));
                    segs.push(Segment::File {
                        file,
                        len,
                        path: path.clone(),
                    });
                }
            }
            text.extend_from_slice(b"\r\n");
        }
        text.extend_from_slice(b"--");
        text.extend_from_slice(boundary.as_bytes());
        text.extend_from_slice(b"--\r\n");
        total += text.len() as u64;
        segs.push(Segment::Bytes(text.freeze()));
        Ok((segs, total))
    }

    /// Makes this form the body of `spec` and sets its Content-Type, unless the caller
    /// set one. Files are opened and measured now.
    pub fn attach(&self, spec: &mut RequestSpec) -> Result<()> {
        let (content_type, body, upload) = match self.kind {
            FormKind::UrlEncoded => (
                "application/x-www-form-urlencoded".to_owned(),
                Some(Bytes::from(self.urlencoded())),
                None,
            ),
            FormKind::Multipart => {
                let b = boundary()?;
                let (segs, len) = self.multipart(&b)?;
                let stream = std::sync::Arc::new(std::sync::Mutex::new(Some(stream(segs))));
                (
                    format!("multipart/form-data; boundary={b}"),
                    None,
                    Some(UploadSpec {
                        len: Some(len),
                        source: UploadSource::Stream(stream),
                    }),
                )
            }
        };
        if !spec.headers.contains_key(header::CONTENT_TYPE) {
            let v = HeaderValue::from_str(&content_type)
                .map_err(|_| Error::new(Code::Internal, "form content type"))?;
            spec.headers.insert(header::CONTENT_TYPE, v);
        }
        spec.body = body;
        spec.upload = upload;
        Ok(())
    }
}

/// The content type for a filename: guessed from its extension, else
/// application/octet-stream.
fn guess(filename: Option<&str>) -> String {
    filename
        .and_then(|f| mime_guess::from_path(f).first_raw())
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// The body: each piece in order, files read in 64 KiB chunks.
fn stream(segs: Vec<Segment>) -> ChunkStream {
    use futures_util::StreamExt;
    Box::pin(
        futures_util::stream::iter(segs)
            .map(|s| match s {
                Segment::Bytes(b) => Box::pin(futures_util::stream::once(async { Ok(b) })),
                Segment::File { file, len, path } => file_stream(file, len, path),
            })
            .flatten(),
    )
}

/// Exactly `len` bytes of `file`; an error if it ends sooner (it shrank after the
/// form was attached). Bytes past `len` are not sent.
fn file_stream(file: std::fs::File, len: u64, path: PathBuf) -> ChunkStream {
    use tokio::io::AsyncReadExt;
    struct St {
        std: Option<std::fs::File>,
        file: Option<tokio::fs::File>,
        left: u64,
        path: PathBuf,
    }
    let st = St {
        std: Some(file),
        file: None,
        left: len,
        path,
    };
    Box::pin(futures_util::stream::unfold(st, |mut st| async move {
        if st.left == 0 {
            return None;
        }
        // Made on the runtime, where the first read happens.
        if let Some(f) = st.std.take() {
            st.file = Some(tokio::fs::File::from_std(f));
        }
        let f = st.file.as_mut()?;
        let mut buf = vec![0u8; st.left.min(CHUNK as u64) as usize];
        let r = match f.read(&mut buf).await {
            Ok(0) => Err(std::io::Error::other(format!(
                "the file {} became shorter while it was sent",
                st.path.display()
            ))),
            Ok(n) => {
                buf.truncate(n);
                st.left -= n as u64;
                Ok(Bytes::from(buf))
            }
            // Kind Other: a file error is not a connection error.
            Err(e) => Err(std::io::Error::other(format!(
                "reading the file {}: {e}",
                st.path.display()
            ))),
        };
        if r.is_err() {
            st.left = 0;
        }
        Some((r, st))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn escapes_quotes_and_line_breaks() {
        assert_eq!(escape("a\"b\r\nc é"), "a%22b%0D%0Ac é");
    }

    #[test]
    fn multipart_length_is_exact() {
        let dir = std::env::temp_dir().join(format!("tern-form-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.txt");
        std::fs::write(&path, vec![7u8; 200_000]).unwrap();
        let mut f = Form::new(FormKind::Multipart);
        f.add_field("a", "1");
        f.add_bytes("b", Bytes::from_static(b"xyz"), None, Some("text/x"))
            .unwrap();
        f.add_file("c", path.to_str().unwrap(), None, None).unwrap();
        let (segs, len) = f.multipart("BOUND").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let body: Vec<u8> = rt.block_on(async {
            let mut s = stream(segs);
            let mut out = Vec::new();
            while let Some(c) = s.next().await {
                out.extend_from_slice(&c.unwrap());
            }
            out
        });
        assert_eq!(body.len() as u64, len);
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(
            "--BOUND\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--BOUND\r\n"
        ));
        assert!(text.contains("name=\"c\"; filename=\"f.txt\"\r\nContent-Type: text/plain\r\n"));
        assert!(text.ends_with("\r\n--BOUND--\r\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kinds_and_content_types_are_checked() {
        let mut u = Form::new(FormKind::UrlEncoded);
        assert_eq!(
            u.add_bytes("b", Bytes::new(), None, None).unwrap_err().code,
            Code::InvalidArgument
        );
        let mut m = Form::new(FormKind::Multipart);
        assert_eq!(
            m.add_bytes("b", Bytes::new(), None, Some("text/plain\r\nX: y"))
                .unwrap_err()
                .code,
            Code::InvalidArgument
        );
        assert_eq!(
            m.add_file("f", "/nonexistent/tern", None, None)
                .unwrap_err()
                .code,
            Code::InvalidFile
        );
        u.add_field("a b", "c&d=é");
        assert_eq!(u.urlencoded(), "a+b=c%26d%3D%C3%A9");
    }
}
