//! The rustls client side shared by the `tls` and `http` probes: trust anchors, a
//! certificate verifier that records the peer's expiry, and the handshake itself.
//!
//! Every handshake gets a fresh [`ClientConfig`] with session resumption disabled, so each
//! run verifies the server's certificate again (a resumed session would not show a newly
//! expired or replaced certificate). What is expensive is cached: the system roots are
//! loaded once per process, a CA file once per version of the file.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use siteward_config::{Host, TlsTrust};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{Failure, Reason};

/// A CA file larger than this is a configuration mistake, not a bundle.
const CA_FILE_LIMIT: u64 = 4 * 1024 * 1024;

/// The crypto provider of every probe, chosen explicitly so the process default (which
/// another part of the daemon may install) cannot change what probes accept.
static PROVIDER: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));

/// A verifier over the operating system's roots: loading them parses hundreds of
/// certificates, so it happens once per process.
static SYSTEM_ROOTS: LazyLock<Result<Arc<dyn ServerCertVerifier>, String>> =
    LazyLock::new(load_system_roots);

/// Verifiers for CA files, rebuilt when the file's size or modification time changes (a
/// config reload may point at a replaced file).
static CA_FILES: LazyLock<Mutex<HashMap<PathBuf, CaFileEntry>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

struct CaFileEntry {
    modified: Option<SystemTime>,
    len: u64,
    verifier: Arc<dyn ServerCertVerifier>,
}

/// What the probes report about the server's leaf certificate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PeerCert {
    /// notAfter, Unix seconds.
    pub not_after: i64,
    pub common_name: Option<String>,
}

/// An established TLS session and what was learnt during the handshake.
pub(crate) struct Session {
    pub stream: TlsStream<TcpStream>,
    pub cert: Option<PeerCert>,
}

impl Session {
    /// "TLS 1.3 TLS13_AES_256_GCM_SHA384, CN=example.com, expires in 42 days".
    pub fn describe(&self) -> String {
        let (_, conn) = self.stream.get_ref();
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
            Some(other) => format!("{other:?}"),
            None => "TLS".to_string(),
        };
        let suite = conn
            .negotiated_cipher_suite()
            .map(|s| format!(" {:?}", s.suite()))
            .unwrap_or_default();
        match &self.cert {
            Some(cert) => format!(
                "{version}{suite}, CN={}, {}",
                cert.common_name.as_deref().unwrap_or("(none)"),
                expiry_text(cert.not_after, unix_now())
            ),
            None => format!("{version}{suite}"),
        }
    }

    pub fn not_after(&self) -> Option<i64> {
        self.cert.as_ref().map(|c| c.not_after)
    }
}

/// The name sent as SNI and verified: `server_name` if configured, else the target's host
/// (an IP literal is verified against the certificate's IP addresses).
pub(crate) fn server_name(
    configured: Option<&str>,
    host: &Host,
) -> Result<ServerName<'static>, Failure> {
    let name = match (configured, host) {
        (Some(name), _) => name,
        (None, Host::Ip(ip)) => return Ok(ServerName::IpAddress((*ip).into())),
        (None, Host::Name(name)) => name.as_str(),
    };
    let name = name.trim_end_matches('.');
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(name.to_string()).map_err(|e| {
        Failure::new(
            Reason::TlsError,
            format!("\"{name}\" cannot be a TLS server name: {e}"),
        )
    })
}

/// Runs the TLS handshake over `stream`. A failure is a `TlsError` that still carries the
/// certificate's notAfter when the server got as far as presenting one.
pub(crate) async fn handshake(
    stream: TcpStream,
    server_name: ServerName<'static>,
    trust: &TlsTrust,
) -> Result<Session, Failure> {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "peer".to_string());
    let recorder = Arc::new(RecordingVerifier {
        inner: verifier_for(trust)?,
        seen: OnceLock::new(),
    });
    let mut config = ClientConfig::builder_with_provider(PROVIDER.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::new(Reason::TlsError, format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    let connector = TlsConnector::from(Arc::new(config));
    match connector.connect(server_name.clone(), stream).await {
        Ok(stream) => Ok(Session {
            stream,
            cert: recorder.seen.get().cloned(),
        }),
        Err(e) => {
            let cert = recorder.seen.get().cloned();
            let mut failure = Failure::new(
                Reason::TlsError,
                handshake_error_text(&e, cert.as_ref(), &server_name, &peer),
            );
            failure.tls_not_after = cert.map(|c| c.not_after);
            Err(failure)
        }
    }
}

fn handshake_error_text(
    e: &std::io::Error,
    cert: Option<&PeerCert>,
    server_name: &ServerName<'_>,
    peer: &str,
) -> String {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match (rustls_error, cert) {
        (
            Some(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            )),
            Some(cert),
        ) => format!(
            "TLS handshake with {peer}: certificate expired at {}",
            time_text(cert.not_after)
        ),
        (
            Some(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )),
            _,
        ) => format!(
            "TLS handshake with {peer}: certificate not valid for {}",
            server_name.to_str()
        ),
        (Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)), _) => {
            format!("TLS handshake with {peer}: certificate not issued by a trusted CA")
        }
        (Some(error), _) => format!("TLS handshake with {peer}: {error}"),
        (None, _) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("TLS handshake with {peer}: connection closed by the server")
        }
        (None, _) => format!("TLS handshake with {peer}: {e}"),
    }
}

/// The verifier for a trust setting; what is costly to load is cached (see the statics).
fn verifier_for(trust: &TlsTrust) -> Result<Arc<dyn ServerCertVerifier>, Failure> {
    match trust {
        TlsTrust::SystemRoots => SYSTEM_ROOTS
            .clone()
            .map_err(|e| Failure::new(Reason::TlsError, e)),
        TlsTrust::CaFile(path) => ca_file_verifier(path),
        TlsTrust::InsecureSkipVerify => Ok(Arc::new(AcceptAnyCert {
            algorithms: PROVIDER.signature_verification_algorithms,
        })),
    }
}

fn load_system_roots() -> Result<Arc<dyn ServerCertVerifier>, String> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "reading a system root certificate");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "system root certificates rustls cannot use");
    }
    if added == 0 {
        return Err("no usable system root certificates (is ca-certificates installed?)".into());
    }
    tracing::debug!(roots = added, "loaded the system root certificates");
    build_verifier(roots).map_err(|e| format!("system root certificates: {e}"))
}

fn ca_file_verifier(path: &Path) -> Result<Arc<dyn ServerCertVerifier>, Failure> {
    let fail = |what: String| Failure::new(Reason::TlsError, what);
    // A stat per run of a local file: cheap enough to notice a replaced CA file at once.
    let meta = std::fs::metadata(path)
        .map_err(|e| fail(format!("reading CA file {}: {e}", path.display())))?;
    if meta.len() > CA_FILE_LIMIT {
        return Err(fail(format!(
            "CA file {} is larger than {CA_FILE_LIMIT} bytes",
            path.display()
        )));
    }
    let modified = meta.modified().ok();
    let mut cache = CA_FILES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(entry) = cache.get(path) {
        if entry.modified == modified && entry.len == meta.len() {
            return Ok(entry.verifier.clone());
        }
    }
    let pem = std::fs::read(path)
        .map_err(|e| fail(format!("reading CA file {}: {e}", path.display())))?;
    let mut roots = RootCertStore::empty();
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        certs.push(cert.map_err(|e| fail(format!("CA file {}: {e}", path.display())))?);
    }
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(fail(format!(
            "CA file {} holds no usable certificate",
            path.display()
        )));
    }
    let verifier =
        build_verifier(roots).map_err(|e| fail(format!("CA file {}: {e}", path.display())))?;
    cache.insert(
        path.to_path_buf(),
        CaFileEntry {
            modified,
            len: meta.len(),
            verifier: verifier.clone(),
        },
    );
    Ok(verifier)
}

fn build_verifier(roots: RootCertStore) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let verifier: Arc<dyn ServerCertVerifier> =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), PROVIDER.clone())
            .build()
            .map_err(|e| e.to_string())?;
    Ok(verifier)
}

/// Reads notAfter and the subject CN of a DER certificate.
pub(crate) fn peer_cert(der: &[u8]) -> Option<PeerCert> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(|cn| cn.chars().take(64).collect());
    Some(PeerCert {
        not_after: cert.validity().not_after.timestamp(),
        common_name,
    })
}

/// Wraps the real verifier to remember the leaf certificate, because a verification
/// error from rustls carries no certificate and an expired one is exactly when its
/// expiry matters most.
struct RecordingVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    seen: OnceLock<PeerCert>,
}

impl fmt::Debug for RecordingVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingVerifier")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(cert) = peer_cert(end_entity) {
            let _ = self.seen.set(cert);
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake signatures are
/// still checked, so the session is at least with the holder of that certificate's key.
#[derive(Debug)]
struct AcceptAnyCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// "expires in 42 days", "expires in 1 day", "expired 3 days ago" (whole days, rounded down).
pub(crate) fn expiry_text(not_after: i64, now: i64) -> String {
    let plural = |n: i64| if n == 1 { "" } else { "s" };
    if not_after < now {
        let days = (now - not_after) / 86_400;
        if days == 0 {
            "expired today".to_string()
        } else {
            format!("expired {days} day{} ago", plural(days))
        }
    } else {
        let days = (not_after - now) / 86_400;
        if days == 0 {
            "expires today".to_string()
        } else {
            format!("expires in {days} day{}", plural(days))
        }
    }
}

/// A Unix time as people read it, e.g. "Jan  1 00:00:00 2020 +00:00".
pub(crate) fn time_text(unix: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("{unix} (Unix time)"))
}

/// Certificates and TLS/HTTP servers for the `tls` and `http` probe tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::io::Write;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::ServerConfig;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// A test CA (as a PEM file) and a server configuration with a leaf it issued.
    pub struct Pki {
        pub ca_file: tempfile::NamedTempFile,
        pub server: Arc<ServerConfig>,
        /// The leaf's notAfter, Unix seconds.
        pub not_after: i64,
    }

    /// A CA and a leaf for `names` (DNS names or IPs), valid until `not_after`
    /// (year, month, day; a date in the past makes an expired certificate).
    pub fn pki(names: &[&str], not_after: (i32, u8, u8)) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Siteward Test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        ca_params.not_after = rcgen::date_time_ymd(2090, 1, 1);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut leaf_params = CertificateParams::new(names.clone()).unwrap();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        leaf_params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        leaf_params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let leaf_not_after = leaf_params.not_after.unix_timestamp();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

        let mut ca_file = tempfile::NamedTempFile::new().unwrap();
        ca_file.write_all(ca_cert.pem().as_bytes()).unwrap();
        ca_file.flush().unwrap();

        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let server = ServerConfig::builder_with_provider(super::PROVIDER.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Pki {
            ca_file,
            server: Arc::new(server),
            not_after: leaf_not_after,
        }
    }

    /// A server on 127.0.0.1 that, per connection, optionally does a TLS handshake, reads
    /// the request head (up to an empty line, at most 16 KiB; a bare TLS client sends
    /// nothing), sends `response` and closes. The request heads come out of the receiver.
    pub async fn serve(
        tls: Option<Arc<ServerConfig>>,
        response: Vec<u8>,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (heads, rx) = mpsc::unbounded_channel();
        let response = Arc::new(response);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let response = response.clone();
                let heads = heads.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            if let Ok(stream) = acceptor.accept(stream).await {
                                answer(stream, &response, &heads).await;
                            }
                        }
                        None => answer(stream, &response, &heads).await,
                    }
                });
            }
        });
        (addr, rx)
    }

    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        response: &[u8],
        heads: &mpsc::UnboundedSender<String>,
    ) {
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
        let _ = stream.write_all(response).await;
        let _ = stream.shutdown().await;
    }
}
