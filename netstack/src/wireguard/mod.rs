//! WireGuard tunnels in user space: boringtun's `Tunn` for the protocol, our own TUN and
//! UDP I/O around it.
//!
//! Three tasks per tunnel share one [`Shared`]: `outbound` reads the TUN device (with TSO
//! offload, one read can yield dozens of MTU-sized packets), routes each packet to a peer
//! by its allowed IPs, encrypts, and sends runs of datagrams to one endpoint with UDP GSO;
//! `inbound` receives batches of datagrams (GRO/recvmmsg), authenticates and decrypts
//! them, and writes the packets to the TUN device coalesced (GRO); `timers` drives
//! handshakes, rekeying and keepalives. Buffers are allocated once per task.

mod dataplane;
mod drops;
pub mod keys;
mod peer;
pub mod uapi;

pub use drops::DropReason;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;
use siteward_config::{Host, HostPort, Tunnel as TunnelConfig, TunnelKind, WireguardPeer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::device::{self, Device, Fault};
use crate::netlink::Netlink;
use crate::tunnel::{
    BoxFuture, RekeyError, RekeyTarget, Tunnel, TunnelError, TunnelStatus, Update,
};
use crate::udp::UdpPort;
use drops::Drops;
use peer::{Peer, PeerTable, SessionConfig};
use uapi::{UapiDevice, UapiSource};

/// Handshakes per second (over all peers of a tunnel) before new ones must carry a cookie.
/// Each handshake is checked twice (here and in `Tunn`), hence twice WireGuard's usual 100.
const HANDSHAKE_RATE_LIMIT: u64 = 200;
/// A session older than this cannot carry data (WireGuard's Reject-After-Time).
const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);

/// State shared by a tunnel's tasks, its status and its UAPI socket.
pub(crate) struct Shared {
    name: String,
    interface: String,
    private_key: StaticSecret,
    public_key: PublicKey,
    listen_port: u16,
    peers: RwLock<Arc<PeerTable>>,
    rate_limiter: Arc<RateLimiter>,
    udp: UdpPort,
    tun: tun_rs::AsyncDevice,
    mtu: u16,
    drops: Drops,
    next_index: AtomicU32,
    /// Why the data plane stopped, if it did.
    fault: Fault,
}

impl Shared {
    fn table(&self) -> Arc<PeerTable> {
        self.peers.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl UapiSource for Shared {
    fn uapi_device(&self) -> UapiDevice {
        UapiDevice {
            private_key: self.private_key.to_bytes(),
            listen_port: self.listen_port,
            peers: self.table().peers.iter().map(|p| p.uapi()).collect(),
        }
    }
}

/// A running WireGuard tunnel.
pub struct WireguardTunnel {
    shared: Arc<Shared>,
    config: Mutex<siteward_config::WireguardTunnel>,
    netlink: Netlink,
    ifindex: u32,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl WireguardTunnel {
    /// Creates the TUN device, its addresses and routes, the UDP socket and the UAPI
    /// socket, and starts the data plane.
    pub async fn start(config: &TunnelConfig) -> Result<Self, TunnelError> {
        Self::start_with_uapi_dir(config, Path::new(uapi::SOCKET_DIR)).await
    }

    pub async fn start_with_uapi_dir(
        config: &TunnelConfig,
        uapi_dir: &Path,
    ) -> Result<Self, TunnelError> {
        let fail = |what: String| TunnelError::new(&config.name, what);
        let TunnelKind::Wireguard(wg) = &config.kind else {
            return Err(fail(format!(
                "not a WireGuard tunnel: {}",
                config.kind.as_str()
            )));
        };

        let private_key = StaticSecret::from(*wg.private_key.expose());
        let public_key = PublicKey::from(&private_key);
        let udp = UdpPort::bind(wg.listen_port.unwrap_or(0)).map_err(|e| {
            fail(format!(
                "binding UDP port {}: {e}",
                wg.listen_port.unwrap_or(0)
            ))
        })?;
        let listen_port = udp
            .local_port()
            .map_err(|e| fail(format!("reading the bound UDP port: {e}")))?;

        let Device {
            tun,
            netlink,
            index: ifindex,
        } = device::open(&config.name, &config.interface, wg.mtu, &wg.addresses).await?;

        let rate_limiter = Arc::new(RateLimiter::new(&public_key, HANDSHAKE_RATE_LIMIT));
        let shared = Arc::new(Shared {
            name: config.name.clone(),
            interface: config.interface.clone(),
            private_key,
            public_key,
            listen_port,
            peers: RwLock::new(Arc::new(PeerTable::default())),
            rate_limiter,
            udp,
            tun,
            mtu: wg.mtu,
            drops: Drops::default(),
            next_index: AtomicU32::new(1),
            fault: Fault::default(),
        });
        let mut peers = Vec::with_capacity(wg.peers.len());
        for peer_config in &wg.peers {
            let endpoint = resolve_endpoint(&config.name, peer_config).await;
            peers.push(Arc::new(new_peer(&shared, peer_config, endpoint)));
        }
        for net in routes_of(&wg.peers) {
            netlink
                .add_route(ifindex, net)
                .await
                .map_err(|e| fail(format!("on {}: {e}", config.interface)))?;
        }
        *shared.peers.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(PeerTable::new(peers));

        let listener = uapi::bind(uapi_dir, &config.interface).await.map_err(|e| {
            fail(format!(
                "opening the UAPI socket in {}: {e}",
                uapi_dir.display()
            ))
        })?;

        let cancel = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(dataplane::outbound(shared.clone(), cancel.clone())),
            tokio::spawn(dataplane::inbound(shared.clone(), cancel.clone())),
            tokio::spawn(dataplane::timers(shared.clone(), cancel.clone())),
            tokio::spawn(uapi::serve(
                listener,
                uapi::socket_path(uapi_dir, &config.interface),
                shared.clone() as Arc<dyn UapiSource>,
                cancel.clone(),
            )),
        ];
        tracing::info!(
            tunnel = %config.name,
            interface = %config.interface,
            listen_port,
            peers = wg.peers.len(),
            "tunnel started"
        );
        Ok(WireguardTunnel {
            shared,
            config: Mutex::new(wg.clone()),
            netlink,
            ifindex,
            cancel,
            tasks,
        })
    }

    async fn update_peers(
        &self,
        new: &siteward_config::WireguardTunnel,
    ) -> Result<Update, TunnelError> {
        let old = self
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let device_changed = old.private_key != new.private_key
            || old.listen_port != new.listen_port
            || old.addresses != new.addresses
            || old.mtu != new.mtu;
        if device_changed {
            return Ok(Update::NeedsRestart);
        }
        let table = self.shared.table();
        let mut peers = Vec::with_capacity(new.peers.len());
        for peer_config in &new.peers {
            let previous = old.peers.iter().find(|p| p.name == peer_config.name);
            let running = table.by_name(&peer_config.name);
            let peer = match (previous, running) {
                (Some(previous), Some(running))
                    if running.session_config == SessionConfig::of(peer_config) =>
                {
                    // Same keys: keep the session, so its traffic never notices.
                    running.set_allowed_ips(peer_config.allowed_ips.clone());
                    if previous.endpoint != peer_config.endpoint {
                        running
                            .set_endpoint(resolve_endpoint(&self.shared.name, peer_config).await);
                    }
                    running.clone()
                }
                _ => {
                    let endpoint = resolve_endpoint(&self.shared.name, peer_config).await;
                    Arc::new(new_peer(&self.shared, peer_config, endpoint))
                }
            };
            peers.push(peer);
        }

        let before: HashSet<IpNet> = routes_of(&old.peers).collect();
        let after: HashSet<IpNet> = routes_of(&new.peers).collect();
        let fail = |e: crate::netlink::NetlinkError| {
            TunnelError::new(
                &self.shared.name,
                format!("on {}: {e}", self.shared.interface),
            )
        };
        for net in after.difference(&before) {
            self.netlink
                .add_route(self.ifindex, *net)
                .await
                .map_err(fail)?;
        }
        *self.shared.peers.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(PeerTable::new(peers));
        for net in before.difference(&after) {
            self.netlink
                .remove_route(self.ifindex, *net)
                .await
                .map_err(fail)?;
        }
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = new.clone();
        tracing::info!(tunnel = %self.shared.name, peers = new.peers.len(), "tunnel peers updated");
        Ok(Update::Applied)
    }
}

impl Tunnel for WireguardTunnel {
    fn status(&self) -> TunnelStatus {
        let table = self.shared.table();
        let peers: Vec<_> = table.peers.iter().map(|p| p.status()).collect();
        let fault = self.shared.fault.get();
        let running = fault.is_none();
        let now = SystemTime::now();
        let up = running
            && peers.iter().any(|p| {
                p.last_handshake
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age < REJECT_AFTER_TIME)
            });
        TunnelStatus {
            name: self.shared.name.clone(),
            kind: "wireguard",
            interface: self.shared.interface.clone(),
            running,
            up,
            listen_port: Some(self.shared.listen_port),
            error: fault,
            peers,
            dropped: self.shared.drops.snapshot(),
            ipsec: None,
        }
    }

    fn update<'a>(
        &'a self,
        config: &'a TunnelConfig,
    ) -> BoxFuture<'a, Result<Update, TunnelError>> {
        Box::pin(async move {
            if config.interface != self.shared.interface {
                return Ok(Update::NeedsRestart);
            }
            // Another kind now: only a new tunnel can be it.
            let TunnelKind::Wireguard(wg) = &config.kind else {
                return Ok(Update::NeedsRestart);
            };
            self.update_peers(wg).await
        })
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.cancel.cancel();
            for task in self.tasks {
                let _ = task.await;
            }
            // Closing the TUN device (the last reference to `shared`) removes the interface,
            // and the kernel removes its addresses and routes with it.
        })
    }

    /// WireGuard renews its session keys by itself every two minutes of traffic; there is
    /// no SA an operator could ask to renew.
    fn rekey(&self, target: RekeyTarget) -> Result<(), RekeyError> {
        Err(RekeyError::Unsupported {
            kind: "wireguard",
            target: match target {
                RekeyTarget::Child => "CHILD",
                RekeyTarget::Ike => "IKE",
            },
        })
    }
}

fn new_peer(shared: &Shared, config: &WireguardPeer, endpoint: Option<SocketAddr>) -> Peer {
    let index = shared
        .next_index
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Peer::new(
        config,
        endpoint,
        index,
        &shared.private_key,
        &shared.rate_limiter,
    )
}

/// Every network routed into the tunnel.
fn routes_of(peers: &[WireguardPeer]) -> impl Iterator<Item = IpNet> + '_ {
    peers.iter().flat_map(|p| p.allowed_ips.iter().copied())
}

/// The peer's configured endpoint, a name resolved now. A name that does not resolve
/// leaves the peer waiting to be contacted, with a warning.
async fn resolve_endpoint(tunnel: &str, peer: &WireguardPeer) -> Option<SocketAddr> {
    let HostPort { host, port } = peer.endpoint.as_ref()?;
    match host {
        Host::Ip(ip) => Some(SocketAddr::new(*ip, *port)),
        Host::Name(name) => match tokio::net::lookup_host((name.as_str(), *port)).await {
            Ok(mut addrs) => addrs.next(),
            Err(e) => {
                tracing::warn!(tunnel, peer = %peer.name, endpoint = %name, error = %e,
                    "endpoint does not resolve; waiting for the peer to make contact");
                None
            }
        },
    }
}
