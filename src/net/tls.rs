//! rustls client configuration: the ring provider only (never the process-wide
//! default, which belongs to the host), system roots and extra CAs, ALPN per version.

use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::code::{Code, Error, Result};
use crate::engine::config::{SessionConfig, VersionPref};

/// The system's trust store, loaded once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// Reads every certificate in a PEM file.
pub fn certs_from_pem_file(path: &str) -> Result<Vec<CertificateDer<'static>>> {
    let data = std::fs::read(path).map_err(|e| {
        Error::new(
            Code::InvalidFile,
            format!("cannot read CA file {path:?}: {e}"),
        )
    })?;
    certs_from_pem(&data)
        .map_err(|e| Error::new(e.code, format!("CA file {path:?}: {}", e.message)))
}

/// Reads every certificate in PEM bytes.
pub fn certs_from_pem(data: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs: std::result::Result<Vec<_>, _> = CertificateDer::pem_slice_iter(data).collect();
    let certs = certs.map_err(|e| Error::new(Code::InvalidFile, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::new(Code::InvalidFile, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// The TLS configurations of one session, one per ALPN choice.
pub struct TlsConfigs {
    pub auto: Arc<ClientConfig>,
    pub http1: Arc<ClientConfig>,
    pub http2: Arc<ClientConfig>,
}

impl TlsConfigs {
    pub fn new(cfg: &SessionConfig) -> Result<TlsConfigs> {
        let mut roots = RootCertStore::empty();
        if cfg.use_system_roots {
            roots.add_parsable_certificates(system_roots().iter().cloned());
        }
        for c in &cfg.extra_roots {
            roots.add(c.clone()).map_err(|e| {
                Error::new(Code::InvalidFile, format!("CA certificate rejected: {e}"))
            })?;
        }
        let roots = Arc::new(roots);
        let build = |alpn: &[&[u8]]| -> Result<Arc<ClientConfig>> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut c = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::new(Code::Tls, format!("TLS setup: {e}")))?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(c))
        };
        Ok(TlsConfigs {
            auto: build(&[b"h2", b"http/1.1"])?,
            http1: build(&[b"http/1.1"])?,
            http2: build(&[b"h2"])?,
        })
    }

    pub fn for_version(&self, v: VersionPref) -> Arc<ClientConfig> {
        match v {
            VersionPref::Auto => self.auto.clone(),
            VersionPref::Http1 => self.http1.clone(),
            VersionPref::Http2PriorKnowledge => self.http2.clone(),
        }
    }
}

/// Maps a TLS handshake failure to TLS_VERIFY or TLS, with the reason.
pub fn classify(e: &std::io::Error) -> Error {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(reason)) => Error::new(
            Code::TlsVerify,
            format!("certificate verification failed: {}", cert_reason(reason)),
        ),
        Some(other) => Error::new(Code::Tls, format!("TLS handshake failed: {other}")),
        None => crate::net::connect::io_error(e, "TLS handshake"),
    }
}

fn cert_reason(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match e {
        C::Expired | C::ExpiredContext { .. } => format!("expired ({e})"),
        C::UnknownIssuer => "unknown issuer (not signed by a trusted CA, or self-signed)".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            format!("name mismatch ({e})")
        }
        other => other.to_string(),
    }
}
