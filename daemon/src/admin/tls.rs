//! The admin listener's certificate: the configured pair, or a self-signed one made on
//! first start and kept in the state directory (so browsers can pin it).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use siteward_config::Config;

use crate::state_files::write_private;

pub const SELF_SIGNED_CERT: &str = "tls/admin-cert.pem";
pub const SELF_SIGNED_KEY: &str = "tls/admin-key.pem";

/// The rustls server configuration of the admin listener.
pub fn server_config(config: &Config) -> anyhow::Result<Arc<ServerConfig>> {
    let (cert_file, key_file) = match &config.admin.tls {
        Some(tls) => (tls.cert_file.clone(), tls.key_file.clone()),
        None => {
            let state = &config.appliance.state_dir;
            let (cert, key) = (state.join(SELF_SIGNED_CERT), state.join(SELF_SIGNED_KEY));
            if !(cert.is_file() && key.is_file()) {
                generate_self_signed(&config.appliance.name, config.admin.listen, &cert, &key)?;
                tracing::info!(cert = %cert.display(), "generated a self-signed certificate for the admin API");
            }
            (cert, key)
        }
    };
    let certs = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("reading certificates from {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{} holds no certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_file)
        .map_err(|e| anyhow!("reading the private key from {}: {e}", key_file.display()))?;
    let mut server =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .with_context(|| {
                format!("using {} with {}", cert_file.display(), key_file.display())
            })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

fn generate_self_signed(
    appliance: &str,
    listen: SocketAddr,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<()> {
    let mut names = vec![
        appliance.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names)
        .context("generating a self-signed certificate")?;
    write_private(key, certified.signing_key.serialize_pem().as_bytes())?;
    write_private(cert, certified.cert.pem().as_bytes())
}
