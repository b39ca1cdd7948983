//! The ESP data plane of one tunnel: packets from its TUN device are checked against the
//! CHILD_SA's traffic selectors, encapsulated and sent to the peer; ESP from the peer
//! (handed over by the shared [`super::host`] receive loops, by SPI) is authenticated,
//! decrypted, checked against the selectors again (RFC 4301 §5.2: a peer may only send
//! what the SA covers) and written to the device.
//!
//! The outbound task reads the device; inbound work runs on the host's receive tasks, so
//! the two directions use both cores. Buffers are allocated once per task.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use siteward_ike::message::TrafficSelector;
use siteward_ike::sa::Path;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use tun_rs::{GROTable, VIRTIO_NET_HDR_LEN};

use super::esp::{
    EspError, OutboundSa, MAX_OVERHEAD, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, NEXT_HEADER_NONE,
};
use super::host::{ControlEvent, EspRoute, HostInner};
use crate::device::{is_fatal, Fault};

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
    /// The device's MTU: the largest inner packet.
    pub mtu: u16,
    pub host: Arc<HostInner>,
    pub outbound: RwLock<Option<Arc<OutboundChild>>>,
    /// The configured selectors: what traffic without a CHILD_SA may start one (`trap`),
    /// and what is counted as `no_sa` rather than `no_route`.
    configured: ChildPolicy,
    pub drops: Drops,
    /// Why the outbound task stopped, if it did.
    pub fault: Fault,
    /// When ESP last arrived (ms since `epoch`), for DPD.
    last_inbound_ms: AtomicU64,
    /// When ESP was last sent (ms since `epoch`), for NAT keepalives.
    last_outbound_ms: AtomicU64,
    /// A [`ControlEvent::Trigger`] is queued and not yet taken: traffic without a
    /// CHILD_SA sends one, not one per packet (which would crowd the peer's IKE messages
    /// out of the queue).
    trigger_pending: AtomicBool,
    epoch: Instant,
    pub events: mpsc::Sender<ControlEvent>,
}

impl TunnelData {
    pub fn new(
        name: String,
        tun: tun_rs::AsyncDevice,
        mtu: u16,
        host: Arc<HostInner>,
        configured: ChildPolicy,
        events: mpsc::Sender<ControlEvent>,
    ) -> TunnelData {
        TunnelData {
            name,
            tun,
            mtu,
            host,
            outbound: RwLock::new(None),
            configured,
            drops: Drops::default(),
            fault: Fault::default(),
            last_inbound_ms: AtomicU64::new(0),
            last_outbound_ms: AtomicU64::new(0),
            trigger_pending: AtomicBool::new(false),
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

    /// Asks the IKE task for a CHILD_SA, unless that is already asked.
    fn trigger(&self) {
        if !self.trigger_pending.swap(true, Ordering::AcqRel)
            && self.events.try_send(ControlEvent::Trigger).is_err()
        {
            // The queue is full: let the next packet ask again.
            self.trigger_pending.store(false, Ordering::Release);
        }
    }

    /// The IKE task took the trigger: the next packet without a CHILD_SA may send another.
    pub fn trigger_taken(&self) {
        self.trigger_pending.store(false, Ordering::Release);
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

/// Packets one TUN read may split into: a 64 KiB TSO read at the smallest MSS the MTU
/// allows (1280 - 40) is 53 segments.
const SEGMENTS_PER_READ: usize = 64;
/// Most bytes one GSO send may carry (an IPv4 datagram's payload limit).
const MAX_GSO_BYTES: usize = 65_535 - 20 - 8;
/// Decrypted packets gathered for one coalesced write to the TUN device (GRO); each slot
/// can grow to 64 KiB when a flow is coalesced into it.
const TUN_WRITE_BATCH: usize = 64;

/// Reads the device (TSO-sized reads split into MTU-sized packets), encrypts each packet
/// with the current CHILD_SA into one buffer, and sends runs of equal-sized ESP packets
/// with one system call (UDP GSO; bare ESP one by one).
pub(crate) async fn outbound(data: Arc<TunnelData>, cancel: CancellationToken) {
    let slot = usize::from(data.mtu) + MAX_OVERHEAD;
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + 65_535];
    // Fresh zeroed allocations (not clones) stay untouched until used, so an idle tunnel
    // costs little resident memory.
    let mut packets: Vec<Vec<u8>> = (0..SEGMENTS_PER_READ)
        .map(|_| vec![0u8; usize::from(data.mtu)])
        .collect();
    let mut sizes = vec![0usize; SEGMENTS_PER_READ];
    let mut out = vec![0u8; slot * SEGMENTS_PER_READ];
    let max_segments = data.host.max_esp_segments();
    loop {
        let read = tokio::select! {
            _ = cancel.cancelled() => return,
            read = data.tun.recv_multiple(&mut original, &mut packets, &mut sizes, 0) => read,
        };
        let count = match read {
            Ok(count) => count,
            Err(e) if is_fatal(&e) => {
                // The device is gone or broken: stop, and let the status say why.
                data.fault
                    .record(&data.name, format!("reading the TUN device: {e}"));
                return;
            }
            Err(e) => {
                tracing::debug!(tunnel = %data.name, error = %e, "reading the TUN device failed");
                data.drops.count(DropReason::IoError);
                continue;
            }
        };
        let child = data.current_outbound();
        let mut run = EspRun::new(max_segments);
        for (packet, &size) in packets.iter().zip(&sizes).take(count) {
            let inner = &packet[..size];
            let Some((source, destination, next_header)) = addresses(inner) else {
                continue;
            };
            let Some(child) = &child else {
                // Only traffic the tunnel is for asks for a CHILD_SA (the kernel sends
                // its own packets, such as IPv6 router solicitations, into the device).
                if data.configured.allows_outbound(source, destination) {
                    data.drops.count(DropReason::NoSa);
                    data.trigger();
                } else {
                    data.drops.count(DropReason::NoRoute);
                }
                continue;
            };
            if !child.policy.allows_outbound(source, destination) {
                data.drops.count(DropReason::NoRoute);
                continue;
            }
            let at = run.end();
            let len = match child
                .sa
                .encapsulate(inner, next_header, &mut out[at..at + slot])
            {
                Ok(len) => len,
                Err(e) => {
                    data.drops.count(DropReason::Esp(e));
                    if e == EspError::SequenceExhausted {
                        data.trigger();
                    }
                    continue;
                }
            };
            if !run.accepts(len) {
                run.flush(&data, child, &out).await;
                // Start the next run at the front: move this packet there.
                out.copy_within(at..at + len, 0);
            }
            run.push(len);
        }
        if let Some(child) = &child {
            run.flush(&data, child, &out).await;
        }
    }
}

/// Consecutive ESP packets at the front of the output buffer, all of one size but the
/// last, which may be shorter: what one GSO send carries.
struct EspRun {
    max_segments: usize,
    segment: usize,
    count: usize,
    last: usize,
}

impl EspRun {
    fn new(max_segments: usize) -> Self {
        EspRun {
            max_segments,
            segment: 0,
            count: 0,
            last: 0,
        }
    }

    /// Where the next packet goes.
    fn end(&self) -> usize {
        match self.count {
            0 => 0,
            n => self.segment * (n - 1) + self.last,
        }
    }

    fn accepts(&self, len: usize) -> bool {
        self.count == 0
            || (self.last == self.segment
                && len <= self.segment
                && self.count < self.max_segments
                && self.end() + len <= MAX_GSO_BYTES)
    }

    fn push(&mut self, len: usize) {
        if self.count == 0 {
            self.segment = len;
        }
        self.count += 1;
        self.last = len;
    }

    async fn flush(&mut self, data: &TunnelData, child: &OutboundChild, out: &[u8]) {
        if self.count == 0 {
            return;
        }
        let path = *child.path.read().unwrap_or_else(|e| e.into_inner());
        let segment = (self.count > 1).then_some(self.segment);
        match data
            .host
            .send_esp(path, child.encap, &out[..self.end()], segment)
            .await
        {
            Ok(()) => data.note(&data.last_outbound_ms),
            Err(e) => {
                tracing::debug!(tunnel = %data.name, error = %e, "sending ESP failed");
                for _ in 0..self.count {
                    data.drops.count(DropReason::IoError);
                }
            }
        }
        self.count = 0;
    }
}

/// Decrypted packets waiting for one coalesced write to a tunnel's device. Each of the
/// host's receive tasks owns one and uses it for whichever tunnel its packets are for, so
/// the GRO table and the slots cost memory per task, not per tunnel.
pub(crate) struct TunWriter {
    gro: GROTable,
    /// Slots with [`VIRTIO_NET_HDR_LEN`] bytes of room in front; `used` of them hold a
    /// packet for `tunnel`. A slot keeps its capacity between batches.
    slots: Vec<Vec<u8>>,
    used: usize,
    tunnel: Option<Arc<TunnelData>>,
}

impl Default for TunWriter {
    fn default() -> Self {
        TunWriter {
            gro: GROTable::default(),
            slots: (0..TUN_WRITE_BATCH)
                .map(|_| Vec::with_capacity(VIRTIO_NET_HDR_LEN + 2048))
                .collect(),
            used: 0,
            tunnel: None,
        }
    }
}

impl TunWriter {
    /// Writes what is queued to its tunnel's device.
    pub(crate) async fn flush(&mut self) {
        let Some(data) = self.tunnel.take() else {
            return;
        };
        if self.used == 0 {
            return;
        }
        if let Err(e) = data
            .tun
            .send_multiple(
                &mut self.gro,
                &mut self.slots[..self.used],
                VIRTIO_NET_HDR_LEN,
            )
            .await
        {
            tracing::debug!(tunnel = %data.name, error = %e, "writing to the TUN device failed");
            data.drops.count(DropReason::IoError);
        }
        self.used = 0;
    }

    async fn queue(&mut self, data: &Arc<TunnelData>, packet: &[u8]) {
        let same = self.tunnel.as_ref().is_some_and(|t| Arc::ptr_eq(t, data));
        if !same || self.used == self.slots.len() {
            self.flush().await;
        }
        if self.tunnel.is_none() {
            self.tunnel = Some(data.clone());
        }
        let slot = &mut self.slots[self.used];
        slot.clear();
        slot.resize(VIRTIO_NET_HDR_LEN, 0);
        slot.extend_from_slice(packet);
        self.used += 1;
    }
}

/// One ESP packet from the peer, for `route`'s SA: decrypted in place, checked, and queued
/// in `writer` for the tunnel's device (the caller flushes it after its batch).
pub(crate) async fn receive(route: &EspRoute, packet: &mut [u8], writer: &mut TunWriter) {
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
    writer.queue(data, inner).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(max_segments: usize, lens: &[usize]) -> (EspRun, Vec<bool>) {
        let mut run = EspRun::new(max_segments);
        let mut accepted = Vec::new();
        for &len in lens {
            let ok = run.accepts(len);
            accepted.push(ok);
            if ok {
                run.push(len);
            }
        }
        (run, accepted)
    }

    #[test]
    fn a_run_takes_equal_packets_then_one_shorter() {
        let (run, accepted) = run_of(64, &[1436, 1436, 1436, 900, 900]);
        assert_eq!(accepted, [true, true, true, true, false]);
        assert_eq!((run.segment, run.count, run.last), (1436, 4, 900));
        assert_eq!(run.end(), 3 * 1436 + 900);
    }

    #[test]
    fn a_longer_packet_starts_a_new_run() {
        let (_, accepted) = run_of(64, &[900, 1436]);
        assert_eq!(accepted, [true, false]);
    }

    #[test]
    fn a_run_stays_within_the_segment_count_and_the_datagram_limit() {
        let (_, accepted) = run_of(3, &[100, 100, 100, 100]);
        assert_eq!(accepted, [true, true, true, false]);
        let lens = vec![1500; 60];
        let (run, accepted) = run_of(64, &lens);
        let taken = accepted.iter().filter(|a| **a).count();
        assert_eq!(taken, MAX_GSO_BYTES / 1500);
        assert!(run.end() <= MAX_GSO_BYTES);
    }
}
