//! Safe Rust: the runtime, sessions, the request flow and responses. No FFI here.
#![deny(unsafe_code)]

pub mod body;
pub mod config;
pub mod cookies;
pub mod deliver;
pub mod flow;
pub mod form;
pub mod pool;
pub mod redact;
pub mod response;
pub mod runtime;
pub mod session;
pub mod ws;

/// The text of a caught panic's payload (a `&str` or a `String`), for the INTERNAL error
/// that reports it.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into())
}
