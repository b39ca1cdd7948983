//! What every tunnel kind implements, and the set of running tunnels.
//!
//! A kind (WireGuard, IPsec) implements [`Tunnel`]: it starts from its
//! configuration, reports a [`TunnelStatus`], applies a changed configuration in place when
//! it can (a WireGuard peer added or removed without touching the others), and stops,
//! removing what it put into the system. [`Tunnels`] diffs a new configuration against the
//! running set, like the check engine does: added start, removed stop, changed update or
//! restart, unchanged are left alone.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::SystemTime;

use ipnet::IpNet;
use siteward_config::{Tunnel as TunnelConfig, TunnelKind};

use crate::ipsec::status::IpsecView;
use crate::ipsec::IpsecTunnel;
use crate::wireguard::WireguardTunnel;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A tunnel could not be started or changed; the message says which and why.
#[derive(Debug, thiserror::Error)]
#[error("tunnel {tunnel}: {message}")]
pub struct TunnelError {
    pub tunnel: String,
    pub message: String,
}

impl TunnelError {
    pub fn new(tunnel: &str, message: impl Into<String>) -> Self {
        TunnelError {
            tunnel: tunnel.to_string(),
            message: message.into(),
        }
    }
}

/// What [`Tunnel::update`] did with a changed configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// Applied in place; traffic of unchanged peers was not disturbed.
    Applied,
    /// This change needs the tunnel stopped and started again.
    NeedsRestart,
}

/// One tunnel kind's running instance.
pub trait Tunnel: Send + Sync {
    fn status(&self) -> TunnelStatus;
    /// Applies `config` (same name, changed) in place if the kind can.
    fn update<'a>(&'a self, config: &'a TunnelConfig)
        -> BoxFuture<'a, Result<Update, TunnelError>>;
    /// Stops the data plane and removes the device, routes and sockets.
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;
    /// Starts renegotiating `target` now, make-before-break (an operator's request).
    fn rekey(&self, target: RekeyTarget) -> Result<(), RekeyError>;
}

/// Which SAs an operator asks to rekey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RekeyTarget {
    /// Every CHILD_SA (IPsec) of the tunnel.
    Child,
    /// The IKE SA (IPsec).
    Ike,
}

impl RekeyTarget {
    pub fn parse(text: &str) -> Option<RekeyTarget> {
        match text {
            "child" => Some(RekeyTarget::Child),
            "ike" => Some(RekeyTarget::Ike),
            _ => None,
        }
    }
}

/// Why a rekey request was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RekeyError {
    #[error("no such tunnel")]
    NoSuchTunnel,
    #[error("the tunnel is not running: {0}")]
    NotRunning(String),
    #[error("{kind} tunnels have no {target} SA to rekey on request")]
    Unsupported {
        kind: &'static str,
        target: &'static str,
    },
    #[error("the tunnel has no established IKE SA to rekey")]
    NotEstablished,
    #[error("the tunnel's IKE task is busy; try again")]
    Busy,
}

/// A tunnel's state for the API and metrics.
#[derive(Debug, Clone)]
pub struct TunnelStatus {
    pub name: String,
    pub kind: &'static str,
    pub interface: String,
    /// The data plane runs (device and socket open).
    pub running: bool,
    /// Running, and at least one peer has a session young enough to carry traffic.
    pub up: bool,
    pub listen_port: Option<u16>,
    /// Why the tunnel is not running, if it failed to start.
    pub error: Option<String>,
    pub peers: Vec<PeerStatus>,
    /// Packets dropped, by reason (every reason listed, zeros included).
    pub dropped: Vec<(&'static str, u64)>,
    /// IKE and CHILD SAs, for an IPsec tunnel.
    pub ipsec: Option<IpsecView>,
}

#[derive(Debug, Clone)]
pub struct PeerStatus {
    pub name: String,
    /// Base64, as `wg` prints it.
    pub public_key: String,
    pub endpoint: Option<SocketAddr>,
    pub last_handshake: Option<SystemTime>,
    /// Bytes of the datagrams received from and sent to the peer.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub persistent_keepalive: Option<u16>,
    pub allowed_ips: Vec<IpNet>,
}

/// What [`Tunnels::apply`] did, by tunnel name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TunnelChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub updated: Vec<String>,
    pub restarted: Vec<String>,
    pub failed: Vec<String>,
    pub unchanged: usize,
}

struct Entry {
    config: TunnelConfig,
    state: EntryState,
}

enum EntryState {
    Running(Box<dyn Tunnel>),
    /// Could not start; kept so the API can say why. Retried at the next reload.
    Failed(String),
}

/// The running tunnels, in configuration order.
#[derive(Default)]
pub struct Tunnels {
    entries: tokio::sync::Mutex<Vec<Entry>>,
    /// Status snapshots read by the API and metrics without waiting on a reload.
    statuses: Mutex<Vec<TunnelStatus>>,
}

impl Tunnels {
    pub fn new() -> Self {
        Self::default()
    }

    /// Brings the running set in line with `configs`.
    pub async fn apply(&self, configs: &[TunnelConfig]) -> TunnelChanges {
        let mut entries = self.entries.lock().await;
        let mut changes = TunnelChanges::default();
        let mut old: Vec<Entry> = std::mem::take(&mut *entries);

        // Stop the removed ones first: a new tunnel may reuse their port or interface.
        let mut kept = Vec::new();
        for entry in old.drain(..) {
            if configs.iter().any(|c| c.name == entry.config.name) {
                kept.push(entry);
            } else {
                changes.removed.push(entry.config.name.clone());
                stop_entry(entry).await;
            }
        }

        // Changed and unchanged tunnels in place first, then every added one at once: a box
        // that starts with hundreds of tunnels does not bring them up one by one.
        let mut placed: Vec<Option<Entry>> = Vec::with_capacity(configs.len());
        let mut added = Vec::new();
        for (index, config) in configs.iter().enumerate() {
            let position = kept.iter().position(|e| e.config.name == config.name);
            let entry = match position.map(|i| kept.swap_remove(i)) {
                None => {
                    added.push(index);
                    None
                }
                Some(entry)
                    if entry.config == *config && !matches!(entry.state, EntryState::Failed(_)) =>
                {
                    changes.unchanged += 1;
                    Some(entry)
                }
                Some(entry) => Some(self.change(entry, config, &mut changes).await),
            };
            placed.push(entry);
        }
        let started =
            futures_util::future::join_all(added.iter().map(|&i| start_entry(&configs[i]))).await;
        for (index, entry) in added.into_iter().zip(started) {
            let name = configs[index].name.clone();
            if matches!(entry.state, EntryState::Failed(_)) {
                changes.failed.push(name);
            } else {
                changes.added.push(name);
            }
            placed[index] = Some(entry);
        }
        entries.extend(placed.into_iter().flatten());
        self.refresh_locked(&entries);
        changes
    }

    async fn change(
        &self,
        entry: Entry,
        config: &TunnelConfig,
        changes: &mut TunnelChanges,
    ) -> Entry {
        if let EntryState::Running(tunnel) = &entry.state {
            if entry.config.kind.as_str() == config.kind.as_str() {
                match tunnel.update(config).await {
                    Ok(Update::Applied) => {
                        changes.updated.push(config.name.clone());
                        return Entry {
                            config: config.clone(),
                            state: entry.state,
                        };
                    }
                    Ok(Update::NeedsRestart) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "updating in place failed; restarting the tunnel")
                    }
                }
            }
        }
        stop_entry(entry).await;
        let entry = start_entry(config).await;
        if matches!(entry.state, EntryState::Failed(_)) {
            changes.failed.push(config.name.clone());
        } else {
            changes.restarted.push(config.name.clone());
        }
        entry
    }

    /// Stops every tunnel.
    pub async fn shutdown(&self) {
        let mut entries = self.entries.lock().await;
        for entry in entries.drain(..) {
            stop_entry(entry).await;
        }
        self.refresh_locked(&entries);
    }

    /// Asks tunnel `name` to rekey `target` now.
    pub async fn rekey(&self, name: &str, target: RekeyTarget) -> Result<(), RekeyError> {
        let entries = self.entries.lock().await;
        let entry = entries
            .iter()
            .find(|e| e.config.name == name)
            .ok_or(RekeyError::NoSuchTunnel)?;
        match &entry.state {
            EntryState::Running(tunnel) => tunnel.rekey(target),
            EntryState::Failed(error) => Err(RekeyError::NotRunning(error.clone())),
        }
    }

    /// Every tunnel's status, in configuration order.
    pub fn statuses(&self) -> Vec<TunnelStatus> {
        // Cheap while no reload runs; during one, the last snapshot is good enough.
        if let Ok(entries) = self.entries.try_lock() {
            self.refresh_locked(&entries);
        }
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn refresh_locked(&self, entries: &[Entry]) {
        let statuses = entries.iter().map(entry_status).collect();
        *self.statuses.lock().unwrap_or_else(|e| e.into_inner()) = statuses;
    }
}

fn entry_status(entry: &Entry) -> TunnelStatus {
    match &entry.state {
        EntryState::Running(tunnel) => tunnel.status(),
        EntryState::Failed(error) => TunnelStatus {
            name: entry.config.name.clone(),
            kind: entry.config.kind.as_str(),
            interface: entry.config.interface.clone(),
            running: false,
            up: false,
            listen_port: None,
            error: Some(error.clone()),
            peers: Vec::new(),
            dropped: Vec::new(),
            ipsec: None,
        },
    }
}

async fn start_entry(config: &TunnelConfig) -> Entry {
    let started: Result<Box<dyn Tunnel>, TunnelError> = match &config.kind {
        TunnelKind::Wireguard(_) => WireguardTunnel::start(config)
            .await
            .map(|t| Box::new(t) as Box<dyn Tunnel>),
        TunnelKind::Ipsec(_) => IpsecTunnel::start(config)
            .await
            .map(|t| Box::new(t) as Box<dyn Tunnel>),
    };
    let state = match started {
        Ok(tunnel) => EntryState::Running(tunnel),
        Err(e) => {
            tracing::error!(tunnel = %config.name, error = %e.message, "tunnel failed to start");
            EntryState::Failed(e.message)
        }
    };
    Entry {
        config: config.clone(),
        state,
    }
}

async fn stop_entry(entry: Entry) {
    if let EntryState::Running(tunnel) = entry.state {
        tunnel.stop().await;
        tracing::info!(tunnel = %entry.config.name, "tunnel stopped");
    }
}
