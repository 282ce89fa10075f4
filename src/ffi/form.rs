//! `tern_form`: a form body (urlencoded or multipart) built field by field and
//! attached to requests.

use std::ffi::c_char;

use bytes::Bytes;

use crate::code::{tern_code, Error, Result};
use crate::engine::form::{Form, FormKind};
use crate::ffi::boundary::{
    bytes_arg, ffi_boundary, from_raw, mut_arg, out_arg, ref_arg, str_arg, to_raw, try_ffi,
};
use crate::ffi::error::tern_error;
use crate::ffi::request::tern_request;

/// The encoding of a form (passed as `uint32_t`).
///
/// Since: 0.1
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum tern_form_kind {
    /// `application/x-www-form-urlencoded`: text fields only, as
    /// `name=value&name2=value2` (an HTML form's default).
    Urlencoded = 0,
    /// `multipart/form-data` (RFC 7578): text fields, bytes and files.
    Multipart = 1,
}

/// A form being built: text fields, and for a multipart form bytes and files.
pub struct tern_form {
    pub(crate) form: Form,
}

fn form_kind(v: u32) -> Result<FormKind> {
    match v {
        0 => Ok(FormKind::UrlEncoded),
        1 => Ok(FormKind::Multipart),
        _ => Err(Error::new(
            tern_code::InvalidArgument,
            format!(
                "unknown form kind {v} (TERN_FORM_KIND_URLENCODED or TERN_FORM_KIND_MULTIPART)"
            ),
        )),
    }
}

/// Borrows an optional C string: NULL gives `None`.
///
/// # Safety
/// `p` is NULL or a valid NUL-terminated string that outlives the result.
unsafe fn opt_str<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        str_arg(p, name).map(Some)
    }
}

/// Makes an empty form of `kind` (a `tern_form_kind` value), as libcurl's
/// `curl_mime_init` or aiohttp's `FormData`.
///
/// Ownership: on success `*out` receives a form the caller frees with
/// `tern_form_free`; attaching it to requests (`tern_request_set_form`) copies it.
/// Thread safety: any thread; one thread at a time per form.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (unknown kind).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_form_new(
    kind: u32,
    out: *mut *mut tern_form,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        try_ffi!(err, out_arg(out, "out"));
        let k = try_ffi!(err, form_kind(kind));
        *out = to_raw(tern_form { form: Form::new(k) });
        tern_code::Ok
    }
}

/// Frees a form. Requests it was attached to keep their own copy.
/// `tern_form_free(NULL)` does nothing.
///
/// Ownership: consumes `form`.
/// Thread safety: any thread, once.
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_form_free(form: *mut tern_form) {
    ffi_boundary! {
        drop(from_raw(form));
    }
}

/// Adds a text field, after the ones added before (fields are sent in order; a name
/// may repeat). In a multipart form it is a part with no filename and no Content-Type.
///
/// Ownership: `name` and `value` (UTF-8) are copied.
/// Thread safety: one thread at a time per form.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (not UTF-8).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_form_add_field(
    form: *mut tern_form,
    name: *const c_char,
    value: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let f = try_ffi!(err, mut_arg(form, "form"));
        let n = try_ffi!(err, str_arg(name, "name"));
        let v = try_ffi!(err, str_arg(value, "value"));
        f.form.add_field(n, v);
        tern_code::Ok
    }
}

/// Adds a part holding `(data, len)` to a multipart form (libcurl's
/// `curl_mime_data`), with an optional `filename` and `content_type`. Without a
/// content type it is guessed from the filename's extension, else
/// `application/octet-stream`.
///
/// Ownership: the bytes and strings are copied; `data` may be NULL when `len` is 0;
/// `filename` and `content_type` may be NULL.
/// Thread safety: one thread at a time per form.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (not a multipart form,
/// not UTF-8, CR, LF or another control character in `content_type`).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_form_add_bytes(
    form: *mut tern_form,
    name: *const c_char,
    data: *const u8,
    len: usize,
    filename: *const c_char,
    content_type: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let f = try_ffi!(err, mut_arg(form, "form"));
        let n = try_ffi!(err, str_arg(name, "name"));
        let d = try_ffi!(err, bytes_arg(data, len, "data"));
        let file = try_ffi!(err, opt_str(filename, "filename"));
        let ct = try_ffi!(err, opt_str(content_type, "content_type"));
        try_ffi!(err, f.form.add_bytes(n, Bytes::copy_from_slice(d), file, ct));
        tern_code::Ok
    }
}

/// Adds a file to a multipart form (libcurl's `curl_mime_filedata`). The file is
/// checked now, opened and measured again each time the form is attached to a
/// request, and read in 64 KiB chunks while the request is sent, never whole into
/// memory. `filename` defaults to the path's last component; `content_type` to a
/// guess from the filename's extension, else `application/octet-stream`. A file that
/// becomes shorter after it was attached fails the request with TERN_CODE_PROTOCOL
/// and a message naming the file; bytes added after it are not sent.
///
/// Ownership: the strings are copied; `filename` and `content_type` may be NULL.
/// Thread safety: one thread at a time per form.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_ARGUMENT (not a multipart form,
/// not UTF-8, CR, LF or another control character in `content_type`),
/// TERN_CODE_INVALID_FILE (missing, unreadable or not a regular file).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_form_add_file(
    form: *mut tern_form,
    name: *const c_char,
    path: *const c_char,
    filename: *const c_char,
    content_type: *const c_char,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let f = try_ffi!(err, mut_arg(form, "form"));
        let n = try_ffi!(err, str_arg(name, "name"));
        let p = try_ffi!(err, str_arg(path, "path"));
        let file = try_ffi!(err, opt_str(filename, "filename"));
        let ct = try_ffi!(err, opt_str(content_type, "content_type"));
        try_ffi!(err, f.form.add_file(n, p, file, ct));
        tern_code::Ok
    }
}

/// Makes `form` the request's body, replacing any body set before, and sets
/// Content-Type (`application/x-www-form-urlencoded`, or `multipart/form-data` with
/// a random boundary) unless the request already has one. A urlencoded body is held
/// in memory; a multipart body is streamed with an exact Content-Length, its files
/// opened and measured now. Like every streamed body, a multipart body is sent once:
/// a 307/308 redirect is returned rather than followed.
///
/// Ownership: `form` is copied (open files are held by the request until it is sent
/// or freed); the caller still owns and frees it.
/// Thread safety: one thread at a time per request; a form nobody changes may be
/// attached from several threads at once.
/// Errors: TERN_CODE_NULL_ARGUMENT, TERN_CODE_INVALID_FILE (a file can no longer be
/// read).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_request_set_form(
    req: *mut tern_request,
    form: *const tern_form,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        let r = try_ffi!(err, mut_arg(req, "req"));
        let f = try_ffi!(err, ref_arg(form, "form"));
        try_ffi!(err, f.form.attach(&mut r.spec));
        tern_code::Ok
    }
}
