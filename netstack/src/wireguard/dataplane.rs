//! The three data-plane tasks of a tunnel. See the module documentation of
//! [`super`] for how they divide the work.

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use quinn_udp::RecvMeta;
use tokio_util::sync::CancellationToken;
use tun_rs::{GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

use super::drops::DropReason;
use super::peer::{Peer, PeerTable};
use super::Shared;
use crate::device::is_fatal;

/// WireGuard adds 32 bytes (header and tag) and pads the payload to 16 bytes.
const OVERHEAD: usize = 32 + 16;
/// The smallest buffer boringtun writes a handshake message into.
const MIN_MESSAGE_BUFFER: usize = 148;
/// Largest datagram (and largest TUN write after coalescing).
const MAX_DATAGRAM: usize = 65_535;
/// Receive buffers handed to one recvmmsg; each may hold a GRO train of datagrams.
const RECV_BATCH: usize = 8;
/// Decrypted packets written to the TUN device per batch. Each slot can grow to 64 KiB
/// when GRO coalesces a flow into it, so this bounds the receive path's memory (64 slots:
/// 4 MiB at most) while still batching well.
const TUN_WRITE_BATCH: usize = 64;
/// WireGuard's timer granularity.
const TIMER_TICK: Duration = Duration::from_millis(250);
/// Most bytes one GSO send may carry: an IPv4 datagram's payload limit (65535 less the
/// IP and UDP headers); the kernel refuses a larger train with EMSGSIZE.
const MAX_GSO_BYTES: usize = 65_535 - 20 - 8;
/// Data message type in the first byte of a WireGuard message.
const MESSAGE_DATA: u8 = 4;

/// TUN -> peers: read, route by allowed IPs, encrypt, send runs of datagrams with GSO.
pub(super) async fn outbound(shared: Arc<Shared>, cancel: CancellationToken) {
    let mtu = usize::from(shared.mtu);
    let slot = (mtu + OVERHEAD).max(MIN_MESSAGE_BUFFER);
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + MAX_DATAGRAM];
    let mut packets = vec![vec![0u8; mtu + OVERHEAD]; IDEAL_BATCH_SIZE];
    let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
    let mut out = vec![0u8; slot * IDEAL_BATCH_SIZE];
    let max_segments = shared.udp.max_segments();

    loop {
        let read = tokio::select! {
            _ = cancel.cancelled() => return,
            read = shared.tun.recv_multiple(&mut original, &mut packets, &mut sizes, 0) => read,
        };
        let count = match read {
            Ok(count) => count,
            Err(e) if is_fatal(&e) => {
                // The device is gone or broken: stop, and let the status say why.
                shared
                    .fault
                    .record(&shared.name, format!("reading the TUN device: {e}"));
                return;
            }
            Err(e) => {
                // A packet tun-rs could not parse or split: drop it, keep reading.
                tracing::debug!(tunnel = %shared.name, error = %e, "TUN read");
                shared.drops.count(DropReason::InvalidPacket);
                continue;
            }
        };
        let table = shared.table();
        let mut sender = RunSender::new(max_segments);
        let mut pos = 0;
        let mut last: Option<(IpAddr, Arc<Peer>)> = None;
        for (packet, &size) in packets.iter().zip(&sizes).take(count) {
            let packet = &packet[..size];
            let Some(destination) = Tunn::dst_address(packet) else {
                shared.drops.count(DropReason::InvalidPacket);
                continue;
            };
            // Segments of one TSO read share their destination: route it once.
            let peer = match &last {
                Some((ip, peer)) if *ip == destination => peer.clone(),
                _ => match table.routes.lookup(destination) {
                    Some(peer) => {
                        last = Some((destination, peer.clone()));
                        peer.clone()
                    }
                    None => {
                        shared.drops.count(DropReason::NoRoute);
                        continue;
                    }
                },
            };
            let Some(endpoint) = peer.endpoint() else {
                shared.drops.count(DropReason::NoEndpoint);
                continue;
            };
            let dst = &mut out[pos..pos + slot];
            let len = match peer.tunn().encapsulate(packet, dst) {
                TunnResult::WriteToNetwork(message) => message.len(),
                TunnResult::Done => continue, // queued until the handshake completes
                TunnResult::Err(e) => {
                    shared.drops.count(DropReason::of(&e));
                    continue;
                }
                TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => continue,
            };
            peer.count_tx(len);
            if out[pos] != MESSAGE_DATA {
                // A handshake initiation (no session yet): on its own, now.
                sender.flush(&shared, &out).await;
                send_one(&shared, endpoint, &out[pos..pos + len]).await;
                continue;
            }
            sender.push(&shared, &out, endpoint, pos, len).await;
            pos += len;
        }
        sender.flush(&shared, &out).await;
    }
}

/// Groups consecutive datagrams to one endpoint into GSO sends: all of one size, the last
/// possibly shorter.
struct RunSender {
    max_segments: usize,
    run: Option<Run>,
}

struct Run {
    to: SocketAddr,
    start: usize,
    segment: usize,
    count: usize,
    /// Length of the final datagram; shorter than `segment` ends the run.
    last: usize,
}

impl Run {
    fn end(&self) -> usize {
        self.start + self.segment * (self.count - 1) + self.last
    }

    /// Whether a datagram of `len` bytes written at `at` for `to` can join this run: same
    /// destination, right after it, no longer than the segment size, not after a shorter
    /// final datagram, within the kernel's segment count and total size limits.
    fn accepts(&self, to: SocketAddr, at: usize, len: usize, max_segments: usize) -> bool {
        self.to == to
            && self.last == self.segment
            && len <= self.segment
            && self.count < max_segments
            && self.end() == at
            && at + len - self.start <= MAX_GSO_BYTES
    }
}

impl RunSender {
    fn new(max_segments: usize) -> Self {
        RunSender {
            max_segments,
            run: None,
        }
    }

    async fn push(&mut self, shared: &Shared, out: &[u8], to: SocketAddr, at: usize, len: usize) {
        if let Some(run) = &mut self.run {
            if run.accepts(to, at, len, self.max_segments) {
                run.count += 1;
                run.last = len;
                return;
            }
            self.flush(shared, out).await;
        }
        self.run = Some(Run {
            to,
            start: at,
            segment: len,
            count: 1,
            last: len,
        });
    }

    async fn flush(&mut self, shared: &Shared, out: &[u8]) {
        let Some(run) = self.run.take() else { return };
        let contents = &out[run.start..run.end()];
        let segment = (run.count > 1).then_some(run.segment);
        if let Err(e) = shared.udp.send(run.to, contents, segment).await {
            tracing::debug!(tunnel = %shared.name, to = %run.to, error = %e, "UDP send");
            for _ in 0..run.count {
                shared.drops.count(DropReason::IoError);
            }
        }
    }
}

async fn send_one(shared: &Shared, to: SocketAddr, message: &[u8]) {
    if let Err(e) = shared.udp.send(to, message, None).await {
        tracing::debug!(tunnel = %shared.name, %to, error = %e, "UDP send");
        shared.drops.count(DropReason::IoError);
    }
}

/// Peers -> TUN: receive batches, authenticate and decrypt, write coalesced to the TUN.
pub(super) async fn inbound(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut receive = vec![0u8; MAX_DATAGRAM * RECV_BATCH];
    let mut meta = [RecvMeta::default(); RECV_BATCH];
    let mut to_tun: Vec<Vec<u8>> = (0..TUN_WRITE_BATCH)
        .map(|_| Vec::with_capacity(VIRTIO_NET_HDR_LEN + MAX_DATAGRAM))
        .collect();
    let mut gro = GROTable::default();
    let mut replies = Replies::default();

    loop {
        let received = {
            let mut chunks = receive.chunks_mut(MAX_DATAGRAM).map(IoSliceMut::new);
            let mut slices: [IoSliceMut<'_>; RECV_BATCH] = std::array::from_fn(|_| {
                chunks
                    .next()
                    .expect("the receive buffer holds RECV_BATCH chunks")
            });
            tokio::select! {
                _ = cancel.cancelled() => return,
                received = shared.udp.recv(&mut slices, &mut meta) => received,
            }
        };
        let count = match received {
            Ok(count) => count,
            Err(e) if is_fatal(&e) => {
                shared
                    .fault
                    .record(&shared.name, format!("receiving on the UDP socket: {e}"));
                return;
            }
            Err(e) => {
                tracing::debug!(tunnel = %shared.name, error = %e, "UDP receive");
                continue;
            }
        };
        let table = shared.table();
        let mut pending = 0;
        for (buffer, meta) in receive.chunks(MAX_DATAGRAM).zip(&meta).take(count) {
            let from = canonical(meta.addr);
            let stride = meta.stride.max(1);
            for datagram in buffer[..meta.len].chunks(stride) {
                if pending == to_tun.len() {
                    write_tun(&shared, &mut gro, &mut to_tun[..pending]).await;
                    pending = 0;
                }
                let slot = &mut to_tun[pending];
                if receive_one(&shared, &table, datagram, from, slot, &mut replies) {
                    pending += 1;
                }
            }
        }
        write_tun(&shared, &mut gro, &mut to_tun[..pending]).await;
        replies.send(&shared).await;
    }
}

/// Messages the receive path must send (handshake responses, cookies, packets that were
/// waiting for a session). Rare, so they are copied rather than sent from the batch.
#[derive(Default)]
struct Replies(Vec<(SocketAddr, Vec<u8>)>);

impl Replies {
    fn push(&mut self, to: SocketAddr, message: &[u8]) {
        self.0.push((to, message.to_vec()));
    }

    async fn send(&mut self, shared: &Shared) {
        for (to, message) in self.0.drain(..) {
            send_one(shared, to, &message).await;
        }
    }
}

/// Handles one datagram; true if it left a packet in `slot` for the TUN device.
fn receive_one(
    shared: &Shared,
    table: &PeerTable,
    datagram: &[u8],
    from: SocketAddr,
    slot: &mut Vec<u8>,
    replies: &mut Replies,
) -> bool {
    let mut cookie = [0u8; MIN_MESSAGE_BUFFER];
    let peer = match shared
        .rate_limiter
        .verify_packet(Some(from.ip()), datagram, &mut cookie)
    {
        Ok(Packet::HandshakeInit(init)) => {
            match parse_handshake_anon(&shared.private_key, &shared.public_key, &init) {
                Ok(half) => table.by_key(&half.peer_static_public),
                Err(e) => {
                    shared.drops.count(DropReason::of(&e));
                    return false;
                }
            }
        }
        Ok(Packet::HandshakeResponse(response)) => table.by_receiver_index(response.receiver_idx),
        Ok(Packet::PacketCookieReply(reply)) => table.by_receiver_index(reply.receiver_idx),
        Ok(Packet::PacketData(data)) => table.by_receiver_index(data.receiver_idx),
        Err(TunnResult::WriteToNetwork(message)) => {
            replies.push(from, message);
            shared.drops.count(DropReason::UnderLoad);
            return false;
        }
        Err(TunnResult::Err(e)) => {
            shared.drops.count(DropReason::of(&e));
            return false;
        }
        Err(_) => return false,
    };
    let Some(peer) = peer else {
        shared.drops.count(DropReason::UnknownPeer);
        return false;
    };

    slot.clear();
    slot.resize(
        VIRTIO_NET_HDR_LEN + datagram.len().max(MIN_MESSAGE_BUFFER),
        0,
    );
    let mut tunn = peer.tunn();
    match tunn.decapsulate(Some(from.ip()), datagram, &mut slot[VIRTIO_NET_HDR_LEN..]) {
        TunnResult::WriteToTunnelV4(packet, source) => {
            let len = packet.len();
            deliver(
                shared,
                table,
                peer,
                IpAddr::V4(source),
                from,
                datagram,
                slot,
                len,
            )
        }
        TunnResult::WriteToTunnelV6(packet, source) => {
            let len = packet.len();
            deliver(
                shared,
                table,
                peer,
                IpAddr::V6(source),
                from,
                datagram,
                slot,
                len,
            )
        }
        TunnResult::WriteToNetwork(message) => {
            // A handshake answered: reply, then send what waited for the session.
            peer.roam(from);
            peer.count_rx(datagram.len());
            peer.count_tx(message.len());
            replies.push(from, message);
            let mut buffer = [0u8; MAX_DATAGRAM];
            while let TunnResult::WriteToNetwork(queued) = tunn.decapsulate(None, &[], &mut buffer)
            {
                peer.count_tx(queued.len());
                replies.push(from, queued);
            }
            false
        }
        TunnResult::Done => {
            // A keepalive, a handshake response or a cookie: authenticated, no packet.
            peer.roam(from);
            peer.count_rx(datagram.len());
            false
        }
        TunnResult::Err(WireGuardError::ConnectionExpired) => false,
        TunnResult::Err(e) => {
            shared.drops.count(DropReason::of(&e));
            false
        }
    }
}

/// Accepts a decrypted packet if its source is one the peer may use (cryptokey routing).
#[allow(clippy::too_many_arguments)]
fn deliver(
    shared: &Shared,
    table: &PeerTable,
    peer: &Arc<Peer>,
    source: IpAddr,
    from: SocketAddr,
    datagram: &[u8],
    slot: &mut Vec<u8>,
    len: usize,
) -> bool {
    let allowed = table
        .routes
        .lookup(source)
        .is_some_and(|owner| Arc::ptr_eq(owner, peer));
    if !allowed {
        shared.drops.count(DropReason::SourceNotAllowed);
        return false;
    }
    peer.roam(from);
    peer.count_rx(datagram.len());
    slot.truncate(VIRTIO_NET_HDR_LEN + len);
    true
}

async fn write_tun(shared: &Shared, gro: &mut GROTable, packets: &mut [Vec<u8>]) {
    if packets.is_empty() {
        return;
    }
    if let Err(e) = shared
        .tun
        .send_multiple(gro, packets, VIRTIO_NET_HDR_LEN)
        .await
    {
        tracing::debug!(tunnel = %shared.name, error = %e, "TUN write");
        shared.drops.count(DropReason::IoError);
    }
}

/// Handshake retries, rekeying, keepalives; the rate limiter's one-second window.
pub(super) async fn timers(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    let mut ticks: u32 = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(4) {
            shared.rate_limiter.reset_count();
        }
        for peer in shared.table().peers.iter() {
            let message = match peer.tunn().update_timers(&mut buffer) {
                TunnResult::WriteToNetwork(message) => message.len(),
                _ => continue,
            };
            match peer.endpoint() {
                Some(to) => {
                    peer.count_tx(message);
                    send_one(&shared, to, &buffer[..message]).await;
                }
                None => shared.drops.count(DropReason::NoEndpoint),
            }
        }
    }
}

/// IPv4 peers reach a dual-stack socket as `::ffff:a.b.c.d`; name them as IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(segment: usize, count: usize, last: usize) -> Run {
        Run {
            to: "192.0.2.1:51820".parse().unwrap(),
            start: 0,
            segment,
            count,
            last,
        }
    }

    #[test]
    fn runs_take_equal_then_one_shorter_datagram() {
        let to = "192.0.2.1:51820".parse().unwrap();
        let r = run(1456, 2, 1456);
        assert!(r.accepts(to, 2912, 1456, 64));
        assert!(r.accepts(to, 2912, 100, 64));
        // Longer than the segment, not adjacent, another endpoint: a new run.
        assert!(!r.accepts(to, 2912, 1500, 64));
        assert!(!r.accepts(to, 3000, 1456, 64));
        assert!(!r.accepts("192.0.2.2:51820".parse().unwrap(), 2912, 1456, 64));
        // Nothing follows a shorter final datagram.
        assert!(!run(1456, 3, 100).accepts(to, 3012, 100, 64));
        // The segment count limit.
        assert!(!r.accepts(to, 2912, 1456, 2));
    }

    #[test]
    fn runs_stay_within_the_datagram_size_limit() {
        // 45 full WireGuard messages of a 1420-byte MTU are 65,520 bytes: one too many.
        let to = "192.0.2.1:51820".parse().unwrap();
        let r = run(1456, 44, 1456);
        assert!(!r.accepts(to, 44 * 1456, 1456, 64));
        assert!(r.accepts(to, 44 * 1456, 1000, 64));
    }
}
