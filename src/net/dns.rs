//! Name resolution: static overrides, explicit nameservers (hickory-resolver), or the
//! system resolver (`getaddrinfo` on tokio's blocking pool, answers cached for
//! `cache_ttl`, 60 s by default, as curl's DNS cache).
//!
//! `getaddrinfo` is called directly rather than through `ToSocketAddrs`, so that a
//! name that does not exist (EAI_NONAME) stays apart from a resolver that failed
//! (EAI_AGAIN, EAI_FAIL, ...): DNS_NOT_FOUND and DNS are different codes.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use crate::code::{Code, Error, Result};
use crate::engine::config::{DnsOptions, IpFamily};
use crate::log;

/// Cached system-resolver answers: name → (when resolved, addresses).
type Cache = Mutex<HashMap<String, (Instant, Arc<Vec<IpAddr>>)>>;

/// The session's resolver: static overrides first, then hickory (explicit
/// nameservers) or the system resolver, with a cache bounded by `cache_ttl`.
pub struct Resolver {
    overrides: HashMap<(String, u16), Vec<IpAddr>>,
    hickory: Option<TokioResolver>,
    family: IpFamily,
    cache_ttl: Duration,
    cache: Cache,
}

impl Resolver {
    /// Builds the resolver; call inside the runtime (hickory spawns on it).
    pub fn new(o: &DnsOptions) -> Result<Resolver> {
        let hickory =
            if o.nameservers.is_empty() {
                None
            } else {
                let servers = o
                    .nameservers
                    .iter()
                    .map(|sa| {
                        let mut udp = ConnectionConfig::udp();
                        udp.port = sa.port();
                        let mut tcp = ConnectionConfig::tcp();
                        tcp.port = sa.port();
                        NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
                    })
                    .collect();
                let mut b = hickory_resolver::Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(servers),
                    TokioRuntimeProvider::default(),
                );
                let opts = b.options_mut();
                opts.ip_strategy = match o.family {
                    IpFamily::Any => LookupIpStrategy::Ipv4AndIpv6,
                    IpFamily::V4Only => LookupIpStrategy::Ipv4Only,
                    IpFamily::V6Only => LookupIpStrategy::Ipv6Only,
                };
                opts.ndots = 0;
                opts.attempts = 2;
                opts.timeout = Duration::from_secs(2);
                if o.cache_ttl.is_zero() {
                    opts.cache_size = 0;
                } else {
                    opts.positive_max_ttl = Some(o.cache_ttl);
                    opts.negative_max_ttl = Some(o.cache_ttl);
                }
                Some(b.build().map_err(|e| {
                    Error::new(Code::Dns, format!("cannot set up the resolver: {e}"))
                })?)
            };
        Ok(Resolver {
            overrides: o.overrides.clone(),
            hickory,
            family: o.family,
            cache_ttl: o.cache_ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Resolves `host` to socket addresses with `port`; IP literals skip the resolver.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let ips = match (
            self.overrides.get(&(bare.to_ascii_lowercase(), port)),
            &self.hickory,
        ) {
            (Some(ips), _) => Arc::new(ips.clone()),
            (None, Some(h)) => self.hickory_lookup(h, bare).await?,
            (None, None) => self.system_lookup(bare).await?,
        };
        let ips: Vec<_> = ips
            .iter()
            .filter(|ip| self.family_ok(ip))
            .map(|ip| SocketAddr::new(*ip, port))
            .collect();
        if ips.is_empty() {
            return Err(Error::new(
                Code::DnsNotFound,
                format!(
                    "{bare:?} has no address of the allowed family ({:?})",
                    self.family
                ),
            ));
        }
        log::debug!("DNS answer host={bare} addrs={ips:?}");
        Ok(ips)
    }

    fn family_ok(&self, ip: &IpAddr) -> bool {
        match self.family {
            IpFamily::Any => true,
            IpFamily::V4Only => ip.is_ipv4(),
            IpFamily::V6Only => ip.is_ipv6(),
        }
    }

    async fn hickory_lookup(&self, h: &TokioResolver, name: &str) -> Result<Arc<Vec<IpAddr>>> {
        match h.lookup_ip(name).await {
            Ok(l) => Ok(Arc::new(l.iter().collect())),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Err(Error::new(
                Code::DnsNotFound,
                format!("could not resolve {name:?}: {e}"),
            )),
            Err(e) => Err(Error::new(
                Code::Dns,
                format!("could not resolve {name:?}: {e}"),
            )),
        }
    }

    async fn system_lookup(&self, name: &str) -> Result<Arc<Vec<IpAddr>>> {
        let key = name.to_ascii_lowercase();
        if !self.cache_ttl.is_zero() {
            let g = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, ips)) = g.get(&key) {
                if at.elapsed() < self.cache_ttl {
                    return Ok(ips.clone());
                }
            }
        }
        let n = name.to_owned();
        let ips = match tokio::task::spawn_blocking(move || getaddrinfo(&n)).await {
            Ok(r) => Arc::new(r?),
            Err(e) => return Err(Error::new(Code::Dns, format!("resolver task failed: {e}"))),
        };
        if !self.cache_ttl.is_zero() {
            let mut g = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if g.len() > 4096 {
                g.clear();
            }
            g.insert(key, (Instant::now(), ips.clone()));
        }
        Ok(ips)
    }
}

/// Parses a curl `--resolve` entry, `host:port:addr[,addr...]` (IPv6 in brackets).
pub fn parse_override(s: &str) -> Result<((String, u16), Vec<IpAddr>)> {
    let bad = || {
        Error::new(
            Code::InvalidArgument,
            format!("bad resolve entry {s:?}: expected host:port:addr[,addr]"),
        )
    };
    let (host, rest) = s.split_once(':').ok_or_else(bad)?;
    let (port, addrs) = rest.split_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let ips = addrs
        .split(',')
        .map(|a| {
            let a = a.trim();
            a.strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .unwrap_or(a)
                .parse::<IpAddr>()
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad())?;
    if host.is_empty() || ips.is_empty() {
        return Err(bad());
    }
    Ok(((host.to_ascii_lowercase(), port), ips))
}

/// Parses a nameserver list, `ip[:port]` separated by commas or spaces (IPv6 as
/// `[addr]:port`); the port defaults to 53.
pub fn parse_nameservers(s: &str) -> Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for part in s.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
        let sa = part
            .parse::<SocketAddr>()
            .or_else(|_| {
                let bare = part
                    .strip_prefix('[')
                    .and_then(|p| p.strip_suffix(']'))
                    .unwrap_or(part);
                bare.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53))
            })
            .map_err(|_| {
                Error::new(
                    Code::InvalidArgument,
                    format!("bad nameserver {part:?}: expected ip[:port]"),
                )
            })?;
        out.push(sa);
    }
    Ok(out)
}

fn getaddrinfo(host: &str) -> Result<Vec<IpAddr>> {
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
