//! The C ABI and nothing else: one file per handle type. Every exported function
//! checks its pointers and strings, converts to engine types, and runs its body inside
//! the panic boundary. No networking logic lives here.
#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

pub mod boundary;
pub mod cookies;
pub mod error;
pub mod form;
pub mod log;
pub mod options;
pub mod request;
pub mod response;
pub mod runtime;
pub mod session;
pub mod version;
pub mod ws;
