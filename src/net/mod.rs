//! The connector stack: name resolution, TCP, TLS, and the HTTP handshake on top.

pub mod connect;
pub mod dns;
pub mod eventfd;
pub mod proxy;
pub mod signals;
pub mod tls;
