//! A tunnel's configuration turned into what its IKE SAs run with: keys and certificates
//! parsed, identities and selectors in wire form. Done once when the tunnel starts, so a
//! bad key or certificate fails the start with a clear error.

use std::time::{Duration, SystemTime};

use siteward_config::{IpsecAuth, IpsecTunnel};
use siteward_ike::crypto::auth::SigningKey;
use siteward_ike::crypto::certs::{certs_from_pem, TrustAnchors};
use siteward_ike::message::TrafficSelector;
use siteward_ike::sa::{LocalAuth, RemoteAuth, Retransmit, SaConfig};
use zeroize::Zeroizing;

use super::control::Settings;

/// How long a responder keeps an IKE SA that never authenticates.
const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn settings_of(config: &IpsecTunnel) -> Result<Settings, String> {
    let (local_auth, remote_auth) = match &config.auth {
        IpsecAuth::Psk(psk) => {
            let bytes = || Zeroizing::new(psk.expose().as_bytes().to_vec());
            (LocalAuth::Psk(bytes()), RemoteAuth::Psk(bytes()))
        }
        IpsecAuth::Cert {
            cert_file,
            cert_pem,
            key_file,
            key_pem,
            ca_file,
            ca_pem,
        } => {
            let chain = certs_from_pem(cert_pem)
                .map_err(|e| format!("certificate {}: {e}", cert_file.display()))?;
            let Some(own) = chain.first() else {
                return Err(format!(
                    "certificate {}: no certificate in it",
                    cert_file.display()
                ));
            };
            let key = SigningKey::from_pem(key_pem.expose().as_bytes())
                .map_err(|e| format!("private key {}: {e}", key_file.display()))?;
            if !key.matches_certificate(own) {
                return Err(format!(
                    "private key {} does not belong to certificate {}",
                    key_file.display(),
                    cert_file.display()
                ));
            }
            let anchors = TrustAnchors::from_pem(ca_pem)
                .map_err(|e| format!("CA certificate {}: {e}", ca_file.display()))?;
            // Our own chain must validate too, or every peer will refuse it.
            let ders: Vec<Vec<u8>> = chain.iter().map(|c| c.der().to_vec()).collect();
            let intermediates = &ders[1..];
            if let Err(e) = anchors.verify(own.der(), intermediates, SystemTime::now()) {
                tracing::warn!(certificate = %cert_file.display(), error = %e,
                    "our certificate does not validate against our own CA");
            }
            (
                LocalAuth::Cert {
                    key: Box::new(key),
                    chain,
                },
                RemoteAuth::Cert(anchors),
            )
        }
    };
    let sa = SaConfig {
        proposals: config.proposals.clone(),
        esp_proposals: config.esp_proposals.clone(),
        local_id: config.local_id.clone(),
        remote_id: config.remote_id.clone(),
        local_auth,
        remote_auth,
        local_ts: config
            .local_ts
            .iter()
            .map(|n| TrafficSelector::from_net(*n))
            .collect(),
        remote_ts: config
            .remote_ts
            .iter()
            .map(|n| TrafficSelector::from_net(*n))
            .collect(),
        // Config already turned "0s" into None.
        dpd_delay: config.dpd_delay,
        ike_rekey_time: config.rekey_time,
        child_rekey_time: config.child_rekey_time,
        child_rekey_bytes: config.child_rekey_bytes,
        force_encap: config.encap,
        fragmentation: config.fragmentation,
        retransmit: Retransmit::default(),
        half_open_timeout: HALF_OPEN_TIMEOUT,
    };
    Ok(Settings {
        sa: std::sync::Arc::new(sa),
        start: config.start,
        dpd_action: config.dpd_action,
        remote_addrs: config.remote_addrs.clone(),
        local_addrs: config.local_addrs.clone(),
        remote_port: config.remote_port,
    })
}
