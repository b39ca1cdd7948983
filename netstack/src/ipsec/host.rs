//! The IKE and ESP endpoints that every IPsec tunnel of the process shares: the IKE port
//! (500), the NAT-T port (4500: IKE behind the non-ESP marker, and UDP-encapsulated ESP)
//! and a raw ESP socket (IP protocol 50) for ESP without a NAT, plus the tables that hand
//! what arrives to the right tunnel: IKE by our SPI (or, for a new IKE_SA_INIT, by the
//! peer's address), ESP by SPI straight into the tunnel's data plane.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock, Weak};

use quinn_udp::RecvMeta;
use siteward_ike::message::{decode_header, ExchangeType};
use siteward_ike::sa::{Path, NAT_T_PORT};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::dataplane::{self, TunWriter, TunnelData};
use super::esp::{spi_of, InboundSa};
use super::raw::RawEsp;
use super::udp_encap::{classify, Udp4500, NAT_KEEPALIVE, NON_ESP_MARKER};
use crate::tunnel::RekeyTarget;
use crate::udp::UdpPort;

/// Datagrams received per system call.
const BATCH: usize = 32;
/// Largest datagram accepted (a GRO buffer holds several).
const DATAGRAM_BUFFER: usize = 64 * 1024;

/// What the network hands a tunnel's IKE task.
#[derive(Debug)]
pub(crate) enum ControlEvent {
    /// An IKE message (without the non-ESP marker) that arrived on `path`.
    Ike { path: Path, datagram: Vec<u8> },
    /// Outbound traffic found no CHILD_SA (`start = "trap"` initiates on it).
    Trigger,
    /// An operator asked for a rekey now.
    Rekey(RekeyTarget),
}

/// A tunnel that accepts IKE_SA_INIT from the peers its `remote_addrs` name (any, if
/// empty) on its `local_addrs` (any, if empty).
pub(crate) struct Responder {
    pub tunnel: String,
    pub remote: Vec<IpAddr>,
    pub local: Vec<IpAddr>,
    pub events: mpsc::Sender<ControlEvent>,
}

/// An inbound CHILD_SA and the tunnel it belongs to.
pub(crate) struct EspRoute {
    pub sa: Arc<InboundSa>,
    pub data: Arc<TunnelData>,
    pub child: Arc<dataplane::ChildPolicy>,
}

pub(crate) struct HostInner {
    pub ike_port: u16,
    ike: UdpPort,
    natt: UdpPort,
    raw: Option<RawEsp>,
    /// Our IKE SPI → the IKE task of the tunnel whose SA chose it.
    ike_routes: RwLock<HashMap<u64, mpsc::Sender<ControlEvent>>>,
    responders: RwLock<Vec<Responder>>,
    /// Behind an `Arc`: a packet's lookup takes one reference, not three.
    esp: RwLock<HashMap<u32, Arc<EspRoute>>>,
}

/// A handle on the shared endpoints; the last one released (or dropped) closes them.
pub(crate) struct Host {
    pub inner: Arc<HostInner>,
    cancel: CancellationToken,
    /// The receive tasks, which hold the sockets.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

static HOST: Mutex<Weak<Host>> = Mutex::new(Weak::new());

impl Host {
    /// The process's IKE endpoints, opened on `ike_port` by the first IPsec tunnel.
    pub fn acquire(ike_port: u16) -> Result<Arc<Host>, String> {
        let mut slot = HOST.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(host) = slot.upgrade() {
            if host.inner.ike_port != ike_port {
                return Err(format!(
                    "IPsec tunnels share one IKE port; another tunnel uses {}, this one asks for {ike_port}",
                    host.inner.ike_port
                ));
            }
            return Ok(host);
        }
        let ike =
            UdpPort::bind(ike_port).map_err(|e| format!("binding IKE port UDP {ike_port}: {e}"))?;
        let natt = UdpPort::bind(NAT_T_PORT)
            .map_err(|e| format!("binding NAT-T port UDP {NAT_T_PORT}: {e}"))?;
        let raw = match RawEsp::open() {
            Ok(raw) => Some(raw),
            Err(e) => {
                tracing::warn!(error = %e, "no raw ESP socket: ESP only in UDP (NAT-T) encapsulation");
                None
            }
        };
        let inner = Arc::new(HostInner {
            ike_port,
            ike,
            natt,
            raw,
            ike_routes: RwLock::new(HashMap::new()),
            responders: RwLock::new(Vec::new()),
            esp: RwLock::new(HashMap::new()),
        });
        let cancel = CancellationToken::new();
        let mut tasks = vec![
            tokio::spawn(receive_udp(inner.clone(), false, cancel.clone())),
            tokio::spawn(receive_udp(inner.clone(), true, cancel.clone())),
        ];
        if inner.raw.is_some() {
            tasks.push(tokio::spawn(receive_raw(inner.clone(), cancel.clone())));
        }
        let host = Arc::new(Host {
            inner,
            cancel,
            tasks: Mutex::new(tasks),
        });
        *slot = Arc::downgrade(&host);
        Ok(host)
    }

    /// Gives this handle up. The last one stops the receive tasks and waits for them, so
    /// the sockets are closed when it returns: a tunnel restarted right after (a reload)
    /// binds the same ports again.
    pub async fn release(self: Arc<Self>) {
        let Some(host) = Arc::into_inner(self) else {
            return;
        };
        host.cancel.cancel();
        let tasks = std::mem::take(&mut *host.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl HostInner {
    pub fn add_responder(&self, responder: Responder) {
        self.responders
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(responder);
    }

    pub fn remove_responder(&self, tunnel: &str) {
        self.responders
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| r.tunnel != tunnel);
    }

    pub fn route_ike(&self, spi: u64, events: mpsc::Sender<ControlEvent>) {
        self.ike_routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spi, events);
    }

    pub fn unroute_ike(&self, spi: u64) {
        self.ike_routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&spi);
    }

    pub fn route_esp(&self, spi: u32, route: EspRoute) {
        self.esp
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spi, Arc::new(route));
    }

    pub fn unroute_esp(&self, spi: u32) {
        self.esp
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&spi);
    }

    /// Sends an IKE message on `path` (with the non-ESP marker on the NAT-T port).
    pub async fn send_ike(&self, path: Path, datagram: &[u8]) -> io::Result<()> {
        if path.is_nat_t() {
            let mut framed = Vec::with_capacity(datagram.len() + NON_ESP_MARKER.len());
            framed.extend_from_slice(&NON_ESP_MARKER);
            framed.extend_from_slice(datagram);
            self.natt
                .send_from(Some(path.local.ip()), path.remote, &framed, None)
                .await
        } else {
            self.ike
                .send_from(Some(path.local.ip()), path.remote, datagram, None)
                .await
        }
    }

    /// How many ESP packets one send may carry (UDP GSO on the NAT-T port).
    pub fn max_esp_segments(&self) -> usize {
        self.natt.max_segments()
    }

    /// Sends a NAT keepalive (RFC 3948 §2.3) on the NAT-T path.
    pub async fn send_nat_keepalive(&self, path: Path) -> io::Result<()> {
        self.natt
            .send_from(Some(path.local.ip()), path.remote, &NAT_KEEPALIVE, None)
            .await
    }

    /// Sends ESP packets to the peer: in UDP on the NAT-T port, or bare. With `segment`,
    /// `packets` holds several ESP packets of that size (GSO).
    pub async fn send_esp(
        &self,
        path: Path,
        encap: bool,
        packets: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        if encap {
            let remote = SocketAddr::new(path.remote.ip(), path.remote.port());
            return self
                .natt
                .send_from(Some(path.local.ip()), remote, packets, segment)
                .await;
        }
        let Some(raw) = &self.raw else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no raw ESP socket for unencapsulated ESP",
            ));
        };
        match segment {
            Some(size) => raw.send_batch(path.remote.ip(), packets, size).await,
            None => raw.send(path.remote.ip(), packets).await,
        }
    }

    /// Hands an IKE message to the tunnel it belongs to.
    fn dispatch_ike(&self, path: Path, datagram: &[u8]) {
        let Ok(header) = decode_header(datagram) else {
            return;
        };
        let events = if header.spi_r == 0
            && header.exchange == ExchangeType::IkeSaInit
            && !header.response
        {
            self.responder_for(path)
        } else {
            // The I flag marks the original initiator's messages: then our SPI is the
            // responder's.
            let ours = if header.initiator {
                header.spi_r
            } else {
                header.spi_i
            };
            self.ike_routes
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&ours)
                .cloned()
        };
        if let Some(events) = events {
            // A full queue means the tunnel is swamped: dropping is what UDP would do.
            let _ = events.try_send(ControlEvent::Ike {
                path,
                datagram: datagram.to_vec(),
            });
        }
    }

    /// The tunnel that answers an IKE_SA_INIT on `path`: one naming the peer's address
    /// before one that accepts any.
    fn responder_for(&self, path: Path) -> Option<mpsc::Sender<ControlEvent>> {
        let responders = self.responders.read().unwrap_or_else(|e| e.into_inner());
        let local_ok = |r: &&Responder| r.local.is_empty() || r.local.contains(&path.local.ip());
        responders
            .iter()
            .filter(local_ok)
            .find(|r| r.remote.contains(&path.remote.ip()))
            .or_else(|| {
                responders
                    .iter()
                    .filter(local_ok)
                    .find(|r| r.remote.is_empty())
            })
            .map(|r| r.events.clone())
    }

    fn esp_route(&self, spi: u32) -> Option<Arc<EspRoute>> {
        self.esp
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&spi)
            .cloned()
    }

    /// Decapsulates one ESP packet and queues its inner packet in `writer` for the
    /// tunnel's device; the caller flushes `writer` after its batch.
    async fn dispatch_esp(&self, packet: &mut [u8], writer: &mut TunWriter) {
        let Some(route) = spi_of(packet).and_then(|spi| self.esp_route(spi)) else {
            return;
        };
        dataplane::receive(&route, packet, writer).await;
    }
}

/// Receives on the IKE port (`natt` false) or the NAT-T port.
async fn receive_udp(inner: Arc<HostInner>, natt: bool, cancel: CancellationToken) {
    let socket = if natt { &inner.natt } else { &inner.ike };
    let mut storage = vec![vec![0u8; DATAGRAM_BUFFER]; BATCH];
    let mut meta = vec![RecvMeta::default(); BATCH];
    let mut writer = TunWriter::default();
    loop {
        let count = {
            let mut slices: Vec<IoSliceMut<'_>> =
                storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            tokio::select! {
                _ = cancel.cancelled() => return,
                received = socket.recv(&mut slices, &mut meta) => match received {
                    Ok(count) => count,
                    Err(e) => {
                        tracing::warn!(error = %e, natt, "IPsec UDP receive failed");
                        continue;
                    }
                },
            }
        };
        for (buffer, meta) in storage.iter_mut().zip(&meta).take(count) {
            let local_port = if natt { NAT_T_PORT } else { inner.ike_port };
            let Some(local_ip) = meta.dst_ip.map(|ip| ip.to_canonical()) else {
                continue;
            };
            let path = Path {
                local: SocketAddr::new(local_ip, local_port),
                remote: SocketAddr::new(meta.addr.ip().to_canonical(), meta.addr.port()),
            };
            let stride = meta.stride.max(1);
            for datagram in buffer[..meta.len].chunks_mut(stride) {
                if !natt {
                    inner.dispatch_ike(path, datagram);
                    continue;
                }
                match classify(datagram) {
                    Udp4500::Ike(ike) => inner.dispatch_ike(path, ike),
                    Udp4500::Esp(_) => inner.dispatch_esp(datagram, &mut writer).await,
                    Udp4500::Keepalive | Udp4500::Invalid => {}
                }
            }
        }
        writer.flush().await;
    }
}

async fn receive_raw(inner: Arc<HostInner>, cancel: CancellationToken) {
    let Some(raw) = &inner.raw else {
        return;
    };
    let mut buffer = vec![0u8; DATAGRAM_BUFFER];
    let mut writer = TunWriter::default();
    loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => return,
            received = raw.recv(&mut buffer) => received,
        };
        match received {
            Ok(esp) => {
                let esp = esp.clone();
                inner.dispatch_esp(&mut buffer[esp], &mut writer).await;
                // Drain the burst behind it, so its packets reach the device in one
                // coalesced write.
                for _ in 1..BATCH * 2 {
                    match raw.try_recv(&mut buffer) {
                        Ok(Some(esp)) => inner.dispatch_esp(&mut buffer[esp], &mut writer).await,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "raw ESP receive failed");
                            break;
                        }
                    }
                }
                writer.flush().await;
            }
            Err(e) => tracing::warn!(error = %e, "raw ESP receive failed"),
        }
    }
}
