//! rustls client configuration: the ring provider only (never the process-wide
//! default, which belongs to the host), system roots and extra CAs, ALPN per version.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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

/// The TLS configurations of one session, one per ALPN choice, plus the one used for
/// an https:// proxy (HTTP/1.1 ALPN, no client certificate).
pub struct TlsConfigs {
    pub auto: Arc<ClientConfig>,
    pub http1: Arc<ClientConfig>,
    pub http2: Arc<ClientConfig>,
    pub proxy: Arc<ClientConfig>,
    /// A note for the response message when a `danger` option weakens verification.
    pub danger_note: Option<String>,
}

impl TlsConfigs {
    pub fn new(cfg: &SessionConfig) -> Result<TlsConfigs> {
        let t = &cfg.tls;
        let mut roots = RootCertStore::empty();
        if t.use_system_roots {
            roots.add_parsable_certificates(system_roots().iter().cloned());
        }
        for c in &t.extra_roots {
            roots.add(c.clone()).map_err(|e| {
                Error::new(Code::InvalidFile, format!("CA certificate rejected: {e}"))
            })?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = protocol_versions(t.min_version, t.max_version)?;
        // webpki's verifier refuses an empty root store; with no roots at all,
        // rustls's own path (every certificate fails as of unknown issuer) stays.
        let webpki = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .ok();
        let verifier: Option<Arc<dyn ServerCertVerifier>> = if t.danger_accept_invalid_certs {
            Some(Arc::new(danger::AcceptAny(provider.clone())))
        } else if let Some(inner) = webpki {
            Some(Arc::new(danger::Checked {
                inner,
                any_hostname: t.danger_accept_invalid_hostnames,
            }))
        } else {
            None
        };
        let build = |alpn: &[&[u8]], client_auth: bool| -> Result<Arc<ClientConfig>> {
            let b = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)
                .map_err(|e| Error::new(Code::InvalidArgument, format!("TLS versions: {e}")))?;
            let b = match &verifier {
                Some(v) => b.dangerous().with_custom_certificate_verifier(v.clone()),
                None => b.with_root_certificates(roots.clone()),
            };
            let mut c = match (&t.client_identity, client_auth) {
                (Some((certs, key)), true) => b
                    .with_client_auth_cert(certs.clone(), key.clone_key())
                    .map_err(|e| {
                        Error::new(
                            Code::InvalidFile,
                            format!("client certificate rejected: {e}"),
                        )
                    })?,
                _ => b.with_no_client_auth(),
            };
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            c.enable_sni = t.sni;
            Ok(Arc::new(c))
        };
        let danger_note = if t.danger_accept_invalid_certs {
            Some(
                "warning: TLS certificate verification is disabled (danger_accept_invalid_certs)"
                    .to_owned(),
            )
        } else if t.danger_accept_invalid_hostnames {
            Some(
                "warning: TLS host name verification is disabled (danger_accept_invalid_hostnames)"
                    .to_owned(),
            )
        } else {
            None
        };
        Ok(TlsConfigs {
            auto: build(&[b"h2", b"http/1.1"], true)?,
            http1: build(&[b"http/1.1"], true)?,
            http2: build(&[b"h2"], true)?,
            proxy: build(&[b"http/1.1"], false)?,
            danger_note,
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

fn protocol_versions(
    min: Option<u8>,
    max: Option<u8>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>> {
    let (lo, hi) = (min.unwrap_or(12), max.unwrap_or(13));
    let v: Vec<_> = [
        (12u8, &rustls::version::TLS12),
        (13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(n, _)| *n >= lo && *n <= hi)
    .map(|(_, v)| v)
    .collect();
    if v.is_empty() {
        return Err(Error::new(
            Code::InvalidArgument,
            format!("no TLS version between 1.{} and 1.{}", lo % 10, hi % 10),
        ));
    }
    Ok(v)
}

/// Reads a client certificate chain and its private key (PKCS#8, PKCS#1 RSA or SEC1
/// EC, so RSA, ECDSA and Ed25519 keys) from PEM bytes.
pub fn identity_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)> {
    let certs = certs_from_pem(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        Error::new(
            Code::InvalidFile,
            format!("no usable private key in PEM: {e}"),
        )
    })?;
    // Check now, not at the first handshake, that rustls can sign with the key and
    // that it belongs to the first certificate.
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs.clone(), key.clone_key(), &provider).map_err(
        |e| match e {
            rustls::Error::InconsistentKeys(_) => Error::new(
                Code::InvalidFile,
                "the private key does not belong to the client certificate",
            ),
            e => Error::new(Code::InvalidFile, format!("unusable client identity: {e}")),
        },
    )?;
    Ok((certs, Arc::new(key)))
}

/// Reads every certificate in the PEM files of a directory (as `CURLOPT_CAPATH`).
pub fn certs_from_dir(path: &str) -> Result<Vec<CertificateDer<'static>>> {
    let entries = std::fs::read_dir(path).map_err(|e| {
        Error::new(
            Code::InvalidFile,
            format!("cannot read CA directory {path:?}: {e}"),
        )
    })?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let p = entry.path();
        if !p.is_file() {
            continue;
        }
        if let Ok(data) = std::fs::read(&p) {
            if let Ok(certs) = certs_from_pem(&data) {
                out.extend(certs);
            }
        }
    }
    if out.is_empty() {
        return Err(Error::new(
            Code::InvalidFile,
            format!("no certificate found in CA directory {path:?}"),
        ));
    }
    Ok(out)
}

mod danger {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::crypto::CryptoProvider;
    use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    /// Accepts any certificate (signatures are still checked).
    #[derive(Debug)]
    pub struct AcceptAny(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// webpki's verification, with two additions: a self-signed leaf is named as
    /// such (webpki reports it as of unknown issuer), and with `any_hostname` (the
    /// danger opt-out) a certificate for another host name is accepted.
    #[derive(Debug)]
    pub struct Checked {
        pub inner: Arc<WebPkiServerVerifier>,
        pub any_hostname: bool,
    }

    /// The reason given for a self-signed leaf.
    #[derive(Debug)]
    struct SelfSigned;

    impl std::fmt::Display for SelfSigned {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("self-signed certificate")
        }
    }

    impl std::error::Error for SelfSigned {}

    impl ServerCertVerifier for Checked {
        fn verify_server_cert(
            &self,
            end: &CertificateDer<'_>,
            inter: &[CertificateDer<'_>],
            name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            match self.inner.verify_server_cert(end, inter, name, ocsp, now) {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) if self.any_hostname => Ok(ServerCertVerified::assertion()),
                Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
                    if super::self_signed(end) =>
                {
                    Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                        rustls::OtherError(Arc::new(SelfSigned)),
                    )))
                }
                other => other,
            }
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(m, c, d)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(m, c, d)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
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
        C::UnknownIssuer => "unknown issuer (not signed by a trusted CA)".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            format!("name mismatch ({e})")
        }
        C::Other(o) => o.to_string(),
        other => other.to_string(),
    }
}

/// Whether a DER certificate names itself as its issuer (issuer == subject).
fn self_signed(cert: &[u8]) -> bool {
    /// One DER element: (tag, content, what follows it).
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, b1) = b.split_first()?;
        let (&l0, b2) = b1.split_first()?;
        let (len, b3) = if l0 < 0x80 {
            (usize::from(l0), b2)
        } else {
            let n = usize::from(l0 & 0x7f);
            if n == 0 || n > 4 || b2.len() < n {
                return None;
            }
            let len = b2[..n]
                .iter()
                .fold(0usize, |a, &x| (a << 8) | usize::from(x));
            (len, &b2[n..])
        };
        if b3.len() < len {
            return None;
        }
        Some((tag, &b3[..len], &b3[len..]))
    }
    let parse = || -> Option<bool> {
        let (_, cert, _) = tlv(cert)?;
        let (_, tbs, _) = tlv(cert)?;
        let (tag, _, mut rest) = tlv(tbs)?;
        if tag == 0xa0 {
            // explicit version; the serial number follows
            rest = tlv(rest)?.2;
        }
        let rest = tlv(rest)?.2; // signature algorithm
        let (_, issuer, rest) = tlv(rest)?;
        let rest = tlv(rest)?.2; // validity
        let (_, subject, _) = tlv(rest)?;
        Some(issuer == subject)
    };
    parse().unwrap_or(false)
}
