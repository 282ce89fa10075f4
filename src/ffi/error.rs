//! `tern_error`: a code with its message, handed out through `tern_error **err`.

use std::ffi::{c_char, CString};

use crate::code::{tern_code, Error};
use crate::ffi::boundary::{ffi_boundary, from_raw, to_raw};

/// An error: a code and a human-readable message (secrets redacted).
pub struct tern_error {
    code: tern_code,
    message: CString,
}

/// Makes a NUL-free C string of a message.
pub fn c_message(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

impl tern_error {
    pub fn boxed(e: Error) -> *mut tern_error {
        to_raw(tern_error {
            code: e.code,
            message: c_message(&e.message),
        })
    }
}

/// The code of an error.
///
/// Ownership: borrows `err`.
/// Thread safety: any thread.
/// Errors: returns TERN_CODE_NULL_ARGUMENT when `err` is NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_error_code(err: *const tern_error) -> tern_code {
    ffi_boundary! {
        match err.as_ref() {
            Some(e) => e.code,
            None => tern_code::NullArgument,
        }
    }
}

/// The message of an error, NUL-terminated.
///
/// Ownership: the string belongs to `err` and lives until `tern_error_free(err)`.
/// Thread safety: any thread.
/// Errors: returns NULL when `err` is NULL.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_error_message(err: *const tern_error) -> *const c_char {
    ffi_boundary! {
        match err.as_ref() {
            Some(e) => e.message.as_ptr(),
            None => std::ptr::null(),
        }
    }
}

/// Frees an error. `tern_error_free(NULL)` does nothing.
///
/// Ownership: consumes `err`.
/// Thread safety: any thread, once per error.
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_error_free(err: *mut tern_error) {
    ffi_boundary! {
        drop(from_raw(err));
    }
}
