//! Peers and the table the data plane looks them up in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use base64::Engine as _;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::Tunn;
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;
use siteward_config::WireguardPeer;

use crate::allowed_ips::AllowedIps;
use crate::tunnel::PeerStatus;
use crate::wireguard::uapi::UapiPeer;

/// One peer: its WireGuard state machine and counters. Shared by the data-plane tasks
/// and kept across reloads that do not change its keys or keepalive.
pub struct Peer {
    pub name: String,
    pub public_key: [u8; 32],
    /// Identifies the peer in the receiver index of its sessions (`index << 8 | session`).
    pub index: u32,
    /// The part of the configuration that, when changed, needs a new [`Tunn`].
    pub session_config: SessionConfig,
    pub tunn: Mutex<Tunn>,
    /// Where to send: configured, then wherever the peer last spoke from (roaming).
    pub endpoint: RwLock<Option<SocketAddr>>,
    pub allowed_ips: RwLock<Vec<IpNet>>,
    pub rx_bytes: AtomicU64,
    pub tx_bytes: AtomicU64,
}

/// Keys and keepalive: a change to any of them starts the peer afresh.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub public_key: [u8; 32],
    pub preshared_key: Option<[u8; 32]>,
    pub persistent_keepalive: Option<u16>,
}

impl SessionConfig {
    pub fn of(config: &WireguardPeer) -> Self {
        SessionConfig {
            public_key: config.public_key.0,
            preshared_key: config.preshared_key.as_ref().map(|k| *k.expose()),
            persistent_keepalive: config.persistent_keepalive,
        }
    }
}

impl Peer {
    pub fn new(
        config: &WireguardPeer,
        endpoint: Option<SocketAddr>,
        index: u32,
        private_key: &StaticSecret,
        rate_limiter: &Arc<RateLimiter>,
    ) -> Self {
        let session_config = SessionConfig::of(config);
        let tunn = Tunn::new(
            private_key.clone(),
            PublicKey::from(session_config.public_key),
            session_config.preshared_key,
            session_config.persistent_keepalive,
            index,
            Some(rate_limiter.clone()),
        );
        Peer {
            name: config.name.clone(),
            public_key: session_config.public_key,
            index,
            session_config,
            tunn: Mutex::new(tunn),
            endpoint: RwLock::new(endpoint),
            allowed_ips: RwLock::new(config.allowed_ips.clone()),
            rx_bytes: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
        }
    }

    pub fn tunn(&self) -> std::sync::MutexGuard<'_, Tunn> {
        self.tunn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn endpoint(&self) -> Option<SocketAddr> {
        *self.endpoint.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows a peer that now speaks from `from` (after it authenticated).
    pub fn roam(&self, from: SocketAddr) {
        if self.endpoint() != Some(from) {
            *self.endpoint.write().unwrap_or_else(|e| e.into_inner()) = Some(from);
        }
    }

    pub fn set_endpoint(&self, endpoint: Option<SocketAddr>) {
        *self.endpoint.write().unwrap_or_else(|e| e.into_inner()) = endpoint;
    }

    pub fn set_allowed_ips(&self, allowed_ips: Vec<IpNet>) {
        *self.allowed_ips.write().unwrap_or_else(|e| e.into_inner()) = allowed_ips;
    }

    pub fn allowed_ips(&self) -> Vec<IpNet> {
        self.allowed_ips
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn last_handshake(&self) -> Option<SystemTime> {
        let since = self.tunn().time_since_last_handshake()?;
        SystemTime::now().checked_sub(since)
    }

    pub fn count_rx(&self, bytes: usize) {
        self.rx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn count_tx(&self, bytes: usize) {
        self.tx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn status(&self) -> PeerStatus {
        PeerStatus {
            name: self.name.clone(),
            public_key: base64::engine::general_purpose::STANDARD.encode(self.public_key),
            endpoint: self.endpoint(),
            last_handshake: self.last_handshake(),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            persistent_keepalive: self.session_config.persistent_keepalive,
            allowed_ips: self.allowed_ips(),
        }
    }

    pub fn uapi(&self) -> UapiPeer {
        UapiPeer {
            public_key: self.public_key,
            preshared_key: self.session_config.preshared_key,
            endpoint: self.endpoint(),
            last_handshake: self.last_handshake(),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            persistent_keepalive: self.session_config.persistent_keepalive.unwrap_or(0),
            allowed_ips: self.allowed_ips(),
        }
    }
}

/// The peers of one tunnel, indexed three ways. Rebuilt (not mutated) when the peers
/// change, and swapped in whole, so the data path reads it without locking each peer map.
#[derive(Default)]
pub struct PeerTable {
    /// In configuration order.
    pub peers: Vec<Arc<Peer>>,
    by_index: HashMap<u32, Arc<Peer>>,
    by_key: HashMap<[u8; 32], Arc<Peer>>,
    pub routes: AllowedIps<Arc<Peer>>,
}

impl PeerTable {
    pub fn new(peers: Vec<Arc<Peer>>) -> Self {
        let mut table = PeerTable::default();
        for peer in &peers {
            table.by_index.insert(peer.index, peer.clone());
            table.by_key.insert(peer.public_key, peer.clone());
            for net in peer.allowed_ips() {
                table.routes.insert(net, peer.clone());
            }
        }
        table.peers = peers;
        table
    }

    /// The peer a session's receiver index belongs to.
    pub fn by_receiver_index(&self, receiver_index: u32) -> Option<&Arc<Peer>> {
        self.by_index.get(&(receiver_index >> 8))
    }

    pub fn by_key(&self, public_key: &[u8; 32]) -> Option<&Arc<Peer>> {
        self.by_key.get(public_key)
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Peer>> {
        self.peers.iter().find(|p| p.name == name)
    }
}
