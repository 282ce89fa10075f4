//! Version and code names.

use std::ffi::c_char;

use crate::code::tern_code;
use crate::ffi::boundary::ffi_boundary;

/// The major version of the header; compare with the library's at run time.
pub const TERN_VERSION_MAJOR: u32 = 0;
/// The minor version of the header.
pub const TERN_VERSION_MINOR: u32 = 1;
/// The patch version of the header.
pub const TERN_VERSION_PATCH: u32 = 0;

/// The library's version as a static string, for example "0.1.0".
///
/// Ownership: static; never free it.
/// Thread safety: any thread.
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub extern "C" fn tern_version() -> *const c_char {
    ffi_boundary! {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    }
}

/// Checks that the linked library can serve a program built against the header
/// version `major.minor` (pass TERN_VERSION_MAJOR and TERN_VERSION_MINOR).
///
/// The same major version is required, and the library's minor version must be at
/// least the header's; while the major version is 0, the minor versions must be equal.
/// Ownership: nothing is allocated.
/// Thread safety: any thread.
/// Errors: TERN_CODE_UNSUPPORTED when the versions do not match.
/// Since: 0.1
#[no_mangle]
pub extern "C" fn tern_version_check(major: u32, minor: u32) -> tern_code {
    ffi_boundary! {
        let ok = major == TERN_VERSION_MAJOR
            && if major == 0 { minor == TERN_VERSION_MINOR } else { minor <= TERN_VERSION_MINOR };
        if ok { tern_code::Ok } else { tern_code::Unsupported }
    }
}

/// The name of a code without its prefix, for example "TIMEOUT_TOTAL" for
/// TERN_CODE_TIMEOUT_TOTAL, or "UNKNOWN" for a number that is no code.
///
/// Ownership: static; never free it.
/// Thread safety: any thread.
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub extern "C" fn tern_code_name(code: u32) -> *const c_char {
    ffi_boundary! {
        match tern_code::from_u32(code) {
            Some(c) => c.name_cstr().as_ptr(),
            None => c"UNKNOWN".as_ptr(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_version_matches_cargo() {
        let v = format!(
            "{}.{}.{}",
            super::TERN_VERSION_MAJOR,
            super::TERN_VERSION_MINOR,
            super::TERN_VERSION_PATCH
        );
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
    }
}
