//! The panic boundary and the helpers every exported function uses to check its
//! arguments. Exports nothing.

use std::ffi::{c_char, CStr};

use crate::code::{tern_code, Error};
use crate::ffi::error::tern_error;

/// What an exported function returns when its body panicked.
pub trait PanicDefault {
    fn panic_default() -> Self;
}

impl PanicDefault for tern_code {
    fn panic_default() -> Self {
        tern_code::Internal
    }
}

impl<T> PanicDefault for *const T {
    fn panic_default() -> Self {
        std::ptr::null()
    }
}

impl<T> PanicDefault for *mut T {
    fn panic_default() -> Self {
        std::ptr::null_mut()
    }
}

macro_rules! impl_zero_default {
    ($($t:ty),*) => {$(
        impl PanicDefault for $t {
            fn panic_default() -> Self { Default::default() }
        }
    )*};
}
impl_zero_default!((), bool, u16, u32, u64, usize);

/// Runs the body of an exported function; a panic becomes the return type's
/// [`PanicDefault`] (TERN_CODE_INTERNAL, NULL or 0) instead of unwinding into C.
macro_rules! ffi_boundary {
    ($($body:tt)*) => {{
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| { $($body)* })) {
            Ok(v) => v,
            Err(_) => $crate::ffi::boundary::PanicDefault::panic_default(),
        }
    }};
}
pub(crate) use ffi_boundary;

/// Writes `e` to the optional error out-parameter and returns its code.
///
/// # Safety
/// `err` is NULL or valid for a pointer write.
pub unsafe fn fail(err: *mut *mut tern_error, e: Error) -> tern_code {
    let code = e.code;
    if !err.is_null() {
        *err = tern_error::boxed(e);
    }
    code
}

/// Like `?` for exported functions: on `Err`, stores the error and returns its code.
macro_rules! try_ffi {
    ($err:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return unsafe { $crate::ffi::boundary::fail($err, e) },
        }
    };
}
pub(crate) use try_ffi;

pub fn null_arg(name: &str) -> Error {
    Error::new(
        tern_code::NullArgument,
        format!("argument `{name}` is NULL"),
    )
}

/// Borrows a C string as UTF-8.
///
/// # Safety
/// `p` is NULL or a valid NUL-terminated string that outlives the result.
pub unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(null_arg(name));
    }
    CStr::from_ptr(p).to_str().map_err(|_| {
        Error::new(
            tern_code::InvalidArgument,
            format!("argument `{name}` is not valid UTF-8"),
        )
    })
}

/// Borrows `(ptr, len)` as a byte slice; len 0 accepts NULL.
///
/// # Safety
/// `p` is valid for `len` bytes, or `len` is 0.
pub unsafe fn bytes_arg<'a>(p: *const u8, len: usize, name: &str) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null_arg(name));
    }
    Ok(std::slice::from_raw_parts(p, len))
}

/// Borrows a handle.
///
/// # Safety
/// `p` is NULL or a live pointer made by this library for `T`.
pub unsafe fn ref_arg<'a, T>(p: *const T, name: &str) -> Result<&'a T, Error> {
    p.as_ref().ok_or_else(|| null_arg(name))
}

/// Borrows a handle mutably.
///
/// # Safety
/// `p` is NULL or a live pointer made by this library for `T`, not used elsewhere.
pub unsafe fn mut_arg<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, Error> {
    p.as_mut().ok_or_else(|| null_arg(name))
}

/// Checks an out-parameter before any work is done.
pub fn out_arg<T>(p: *mut T, name: &str) -> Result<(), Error> {
    if p.is_null() {
        Err(null_arg(name))
    } else {
        Ok(())
    }
}

/// Moves a value to the heap and hands the caller its pointer.
pub fn to_raw<T>(v: T) -> *mut T {
    Box::into_raw(Box::new(v))
}

/// Takes back ownership of a pointer made by [`to_raw`]; NULL gives `None`.
///
/// # Safety
/// `p` is NULL or came from `to_raw::<T>` and was not freed before.
pub unsafe fn from_raw<T>(p: *mut T) -> Option<Box<T>> {
    (!p.is_null()).then(|| Box::from_raw(p))
}
