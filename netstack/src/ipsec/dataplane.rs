//! The ESP data plane of one tunnel: packets from its TUN device are checked against the
//! CHILD_SA's traffic selectors, encapsulated and sent to the peer; ESP from the peer
//! (handed over by the shared [`super::host`] receive loops, by SPI) is authenticated,
//! decrypted, checked against the selectors again (RFC 4301 §5.2: a peer may only send
//! what the SA covers) and written to the device.
//!
//! The outbound task reads the device; inbound work runs on the host's receive tasks, so
//! the two directions use both cores. Buffers are allocated once per task.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use siteward_ike::message::TrafficSelector;
use siteward_ike::sa::Path;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::esp::{EspError, OutboundSa, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, NEXT_HEADER_NONE};
use super::host::{ControlEvent, EspRoute, HostInner};

/// Why a packet was dropped; `as_str` is the `reason` label of
/// `siteward_tunnel_packets_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Outbound, for the tunnel's selectors, with no CHILD_SA up (yet).
    NoSa,
    /// Outbound outside the selectors (the CHILD_SA's, or the configured ones while none is up).
    NoRoute,
    /// Inbound, decrypted, but outside the CHILD_SA's selectors.
    SelectorMismatch,
    /// The kernel refused to send or write the packet.
    IoError,
    /// An ESP error (replay, integrity, padding, ...).
    Esp(EspError),
}

const LOCAL_REASONS: [DropReason; 4] = [
    DropReason::NoSa,
    DropReason::NoRoute,
    DropReason::SelectorMismatch,
    DropReason::IoError,
];

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoSa => "no_sa",
            DropReason::NoRoute => "no_route",
            DropReason::SelectorMismatch => "selector_mismatch",
            DropReason::IoError => "io_error",
            DropReason::Esp(e) => e.reason(),
        }
    }

    fn index(self) -> usize {
        match self {
            DropReason::Esp(e) => {
                LOCAL_REASONS.len() + EspError::ALL.iter().position(|x| *x == e).unwrap_or(0)
            }
            local => LOCAL_REASONS.iter().position(|x| *x == local).unwrap_or(0),
        }
    }

    fn all() -> impl Iterator<Item = DropReason> {
        LOCAL_REASONS
            .into_iter()
            .chain(EspError::ALL.into_iter().map(DropReason::Esp))
    }
}

#[derive(Default)]
pub(crate) struct Drops {
    counts: [AtomicU64; LOCAL_REASONS.len() + EspError::ALL.len()],
}

impl Drops {
    pub fn count(&self, reason: DropReason) {
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        DropReason::all()
            .map(|r| (r.as_str(), self.counts[r.index()].load(Ordering::Relaxed)))
            .collect()
    }
}

/// The selectors a CHILD_SA covers, from our side.
#[derive(Debug)]
pub(crate) struct ChildPolicy {
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
}

impl ChildPolicy {
    fn allows_outbound(&self, source: IpAddr, destination: IpAddr) -> bool {
        covers(&self.local_ts, source) && covers(&self.remote_ts, destination)
    }

    fn allows_inbound(&self, source: IpAddr, destination: IpAddr) -> bool {
        covers(&self.remote_ts, source) && covers(&self.local_ts, destination)
    }
}

fn covers(selectors: &[TrafficSelector], address: IpAddr) -> bool {
    selectors
        .iter()
        .any(|ts| ts.start <= address && address <= ts.end && same_family(ts.start, address))
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// The CHILD_SA that outbound traffic uses now.
pub(crate) struct OutboundChild {
    pub sa: OutboundSa,
    pub policy: Arc<ChildPolicy>,
    /// Follows the IKE SA when NAT-T moves it or the peer's NAT mapping changes.
    pub path: RwLock<Path>,
    pub encap: bool,
}

/// What a tunnel's data plane shares between its tasks and its IKE task.
pub(crate) struct TunnelData {
    pub name: String,
    pub tun: tun_rs::AsyncDevice,
    pub host: Arc<HostInner>,
    pub outbound: RwLock<Option<Arc<OutboundChild>>>,
    /// The configured selectors: what traffic without a CHILD_SA may start one (`trap`),
    /// and what is counted as `no_sa` rather than `no_route`.
    configured: ChildPolicy,
    pub drops: Drops,
    /// When ESP last arrived (ms since `epoch`), for DPD.
    last_inbound_ms: AtomicU64,
    /// When ESP was last sent (ms since `epoch`), for NAT keepalives.
    last_outbound_ms: AtomicU64,
    epoch: Instant,
    pub events: mpsc::Sender<ControlEvent>,
}

impl TunnelData {
    pub fn new(
        name: String,
        tun: tun_rs::AsyncDevice,
        host: Arc<HostInner>,
        configured: ChildPolicy,
        events: mpsc::Sender<ControlEvent>,
    ) -> TunnelData {
        TunnelData {
            name,
            tun,
            host,
            outbound: RwLock::new(None),
            configured,
            drops: Drops::default(),
            last_inbound_ms: AtomicU64::new(0),
            last_outbound_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            events,
        }
    }

    pub fn set_outbound(&self, child: Option<Arc<OutboundChild>>) {
        *self.outbound.write().unwrap_or_else(|e| e.into_inner()) = child;
    }

    fn current_outbound(&self) -> Option<Arc<OutboundChild>> {
        self.outbound
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// When ESP last arrived, if ever.
    pub fn last_inbound(&self) -> Option<Instant> {
        self.instant(&self.last_inbound_ms)
    }

    /// When ESP was last sent, if ever.
    pub fn last_outbound(&self) -> Option<Instant> {
        self.instant(&self.last_outbound_ms)
    }

    fn instant(&self, ms: &AtomicU64) -> Option<Instant> {
        match ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.epoch + std::time::Duration::from_millis(ms)),
        }
    }

    fn note(&self, ms: &AtomicU64) {
        let now = self.epoch.elapsed().as_millis() as u64;
        ms.store(now.max(1), Ordering::Relaxed);
    }
}

/// The source and destination of an IP packet, and its ESP next-header value.
fn addresses(packet: &[u8]) -> Option<(IpAddr, IpAddr, u8)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let source: [u8; 4] = packet[12..16].try_into().ok()?;
            let destination: [u8; 4] = packet[16..20].try_into().ok()?;
            Some((source.into(), destination.into(), NEXT_HEADER_IPV4))
        }
        6 if packet.len() >= 40 => {
            let source: [u8; 16] = packet[8..24].try_into().ok()?;
            let destination: [u8; 16] = packet[24..40].try_into().ok()?;
            Some((source.into(), destination.into(), NEXT_HEADER_IPV6))
        }
        _ => None,
    }
}

/// Largest packet read from the device, plus room for ESP around it.
const BUFFER: usize = 65536;

/// Reads the device and sends each packet through the current CHILD_SA.
pub(crate) async fn outbound(data: Arc<TunnelData>, cancel: CancellationToken) {
    let mut buffer = vec![0u8; BUFFER];
    loop {
        // Read at the offset ESP puts the inner packet, so encapsulation needs no copy.
        let child = data.current_outbound();
        let offset = child.as_ref().map(|c| c.sa.inner_offset()).unwrap_or(64);
        let read = tokio::select! {
            _ = cancel.cancelled() => return,
            read = data.tun.recv(&mut buffer[offset..BUFFER - 256]) => read,
        };
        let len = match read {
            Ok(len) => len,
            Err(e) => {
                tracing::warn!(tunnel = %data.name, error = %e, "reading the TUN device failed");
                data.drops.count(DropReason::IoError);
                continue;
            }
        };
        let Some((source, destination, next_header)) = addresses(&buffer[offset..offset + len])
        else {
            continue;
        };
        // The SA may have changed while we waited: take the one current now.
        let child = match data.current_outbound() {
            Some(now) => {
                if now.sa.inner_offset() != offset {
                    buffer.copy_within(offset..offset + len, now.sa.inner_offset());
                }
                now
            }
            None => {
                // Only traffic the tunnel is for asks for a CHILD_SA (the kernel sends
                // its own packets, such as IPv6 router solicitations, into the device).
                if data.configured.allows_outbound(source, destination) {
                    data.drops.count(DropReason::NoSa);
                    let _ = data.events.try_send(ControlEvent::Trigger);
                } else {
                    data.drops.count(DropReason::NoRoute);
                }
                continue;
            }
        };
        if !child.policy.allows_outbound(source, destination) {
            data.drops.count(DropReason::NoRoute);
            continue;
        }
        let total = match child.sa.encapsulate_in_place(&mut buffer, len, next_header) {
            Ok(total) => total,
            Err(e) => {
                data.drops.count(DropReason::Esp(e));
                if e == EspError::SequenceExhausted {
                    let _ = data.events.try_send(ControlEvent::Trigger);
                }
                continue;
            }
        };
        let path = *child.path.read().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = data
            .host
            .send_esp(path, child.encap, &buffer[..total], None)
            .await
        {
            tracing::debug!(tunnel = %data.name, error = %e, "sending ESP failed");
            data.drops.count(DropReason::IoError);
        } else {
            data.note(&data.last_outbound_ms);
        }
    }
}

/// One ESP packet from the peer, for `route`'s SA.
pub(crate) async fn receive(route: &EspRoute, packet: &mut [u8]) {
    let data = &route.data;
    let (inner, next_header) = match route.sa.decapsulate(packet) {
        Ok(done) => done,
        Err(e) => {
            data.drops.count(DropReason::Esp(e));
            return;
        }
    };
    data.note(&data.last_inbound_ms);
    if next_header == NEXT_HEADER_NONE {
        return;
    }
    let inner = &packet[inner];
    let allowed = addresses(inner).is_some_and(|(source, destination, kind)| {
        kind == next_header && route.child.allows_inbound(source, destination)
    });
    if !allowed {
        data.drops.count(DropReason::SelectorMismatch);
        return;
    }
    if let Err(e) = data.tun.send(inner).await {
        tracing::debug!(tunnel = %data.name, error = %e, "writing to the TUN device failed");
        data.drops.count(DropReason::IoError);
    }
}
