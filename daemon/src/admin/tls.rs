//! The admin listener's certificate: the configured pair, or a self-signed one made on
//! first start and kept in the state directory (so browsers can pin it).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use rustls::ServerConfig;
use siteward_config::Config;
use siteward_connectors::http_server;

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
    http_server::tls_server_config(&cert_file, &key_file).map_err(|e| anyhow!(e))
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
