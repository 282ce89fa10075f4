//! Name resolution with the system resolver (`getaddrinfo` on tokio's blocking pool).
//!
//! `getaddrinfo` is called directly rather than through `ToSocketAddrs`, so that a
//! name that does not exist (EAI_NONAME) stays apart from a resolver that failed
//! (EAI_AGAIN, EAI_FAIL, ...): DNS_NOT_FOUND and DNS are different codes.

use std::ffi::{CStr, CString};
use std::net::{IpAddr, SocketAddr};

use crate::code::{Code, Error, Result};

/// Resolves `host` to socket addresses with `port`; IP literals skip the resolver.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = bare.to_owned();
    match tokio::task::spawn_blocking(move || getaddrinfo(&name, port)).await {
        Ok(r) => r,
        Err(e) => Err(Error::new(Code::Dns, format!("resolver task failed: {e}"))),
    }
}

fn getaddrinfo(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    let c_host =
        CString::new(host).map_err(|_| Error::new(Code::InvalidUrl, "host name contains NUL"))?;
    // SAFETY: zeroed addrinfo is a valid "no hints" value; we set the fields we use.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    hints.ai_flags = libc::AI_ADDRCONFIG;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated host, valid hints, and an out pointer we free below.
    let rc = unsafe { libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 {
        let not_found = rc == libc::EAI_NONAME || is_nodata(rc);
        let code = if not_found {
            Code::DnsNotFound
        } else {
            Code::Dns
        };
        let detail = if rc == libc::EAI_SYSTEM {
            std::io::Error::last_os_error().to_string()
        } else {
            // SAFETY: gai_strerror returns a static string for any code.
            unsafe { CStr::from_ptr(libc::gai_strerror(rc)) }
                .to_string_lossy()
                .into_owned()
        };
        return Err(Error::new(
            code,
            format!("could not resolve {host:?}: {detail}"),
        ));
    }
    let mut out = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: p walks the list getaddrinfo returned, which stays valid until freed.
        let ai = unsafe { &*p };
        if let Some(addr) = sockaddr_to_std(ai.ai_addr, ai.ai_family) {
            let addr = SocketAddr::new(addr, port);
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
        p = ai.ai_next;
    }
    // SAFETY: res came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(res) };
    if out.is_empty() {
        return Err(Error::new(
            Code::DnsNotFound,
            format!("{host:?} has no addresses"),
        ));
    }
    Ok(out)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn is_nodata(rc: i32) -> bool {
    rc == libc::EAI_NODATA
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn is_nodata(_rc: i32) -> bool {
    false
}

fn sockaddr_to_std(sa: *const libc::sockaddr, family: i32) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: the family tells which sockaddr type the pointer refers to.
    unsafe {
        match family {
            libc::AF_INET => {
                let v4 = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 => {
                let v6 = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::from(v6.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }
}
