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
