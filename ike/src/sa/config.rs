//! What one tunnel's IKE SAs are configured with, in the form the state machine uses
//! (netstack builds it from `siteward_config::IpsecTunnel`).

use std::time::Duration;

use zeroize::Zeroizing;

use crate::crypto::auth::SigningKey;
use crate::crypto::certs::{PeerCert, TrustAnchors};
use crate::identity::Identity;
use crate::message::TrafficSelector;
use crate::proposal::{EspProposal, IkeProposal};

pub struct SaConfig {
    /// IKE proposals, most preferred first. The first DH group of the first proposal is
    /// the one guessed in IKE_SA_INIT.
    pub proposals: Vec<IkeProposal>,
    pub esp_proposals: Vec<EspProposal>,
    /// `None`: the certificate's subject with certificate authentication, else the
    /// local IP address of the SA's path (strongSwan's defaults).
    pub local_id: Option<Identity>,
    /// `None` accepts any identity the peer proves (with certificates: the one its
    /// certificate names).
    pub remote_id: Option<Identity>,
    pub local_auth: LocalAuth,
    pub remote_auth: RemoteAuth,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    /// Silence after which a liveness check is sent; `None` disables DPD.
    pub dpd_delay: Option<Duration>,
    pub ike_rekey_time: Duration,
    pub child_rekey_time: Duration,
    pub child_rekey_bytes: Option<u64>,
    /// Pretend to be behind a NAT so ESP is UDP-encapsulated (and IKE moves to 4500).
    pub force_encap: bool,
    /// Offer RFC 7383 fragmentation and use it when the peer supports it.
    pub fragmentation: bool,
    pub retransmit: Retransmit,
    /// How long a responder keeps an SA that finished IKE_SA_INIT but never authenticated.
    pub half_open_timeout: Duration,
}

/// How we prove who we are.
pub enum LocalAuth {
    Psk(Zeroizing<Vec<u8>>),
    Cert {
        key: Box<SigningKey>,
        /// End-entity first, then intermediates (sent as CERT payloads); parsed once, when
        /// the configuration is read.
        chain: Vec<PeerCert>,
    },
}

/// How the peer must prove who it is.
pub enum RemoteAuth {
    Psk(Zeroizing<Vec<u8>>),
    Cert(TrustAnchors),
}

/// Request retransmission: `first`, then each wait `factor` times longer, `tries`
/// retransmissions, and a last wait before the peer is declared unreachable (strongSwan's
/// scheme; its defaults are 4 s, 1.8, 5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retransmit {
    pub first: Duration,
    pub factor: f64,
    pub tries: u32,
}

impl Default for Retransmit {
    fn default() -> Self {
        Retransmit {
            first: Duration::from_secs(2),
            factor: 1.8,
            tries: 5,
        }
    }
}

impl Retransmit {
    /// The wait after the `attempt`-th transmission (0 = the first).
    pub fn wait(&self, attempt: u32) -> Duration {
        self.first
            .mul_f64(self.factor.powi(attempt.min(30) as i32))
            .min(Duration::from_secs(3600))
    }
}
