//! What an IPsec tunnel shows in `GET /api/v1/tunnels` and in metrics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The IKE side of an IPsec tunnel's status.
#[derive(Debug, Clone, Default)]
pub struct IpsecView {
    pub ike_sas: Vec<IkeSaView>,
    /// Why the last IKE SA failed or was closed, in plain words (cleared when one comes up).
    pub last_failure: Option<String>,
    pub ike_rekeys: u64,
    pub child_rekeys: u64,
    pub auth_failures: u64,
    /// Replayed ESP packets dropped, over every CHILD_SA the tunnel had.
    pub replay_drops: u64,
}

#[derive(Debug, Clone)]
pub struct IkeSaView {
    pub state: &'static str,
    /// We initiated this IKE SA (or its last rekey).
    pub initiator: bool,
    pub spi_i: u64,
    pub spi_r: u64,
    /// As swanctl prints them, once negotiated.
    pub algorithms: Option<String>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// UDP-encapsulated (NAT detected or forced).
    pub nat_t: bool,
    pub established: Option<SystemTime>,
    pub rekey_due: Option<SystemTime>,
    pub children: Vec<ChildSaView>,
}

#[derive(Debug, Clone)]
pub struct ChildSaView {
    pub spi_in: u32,
    pub spi_out: u32,
    pub algorithms: String,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub established: SystemTime,
    pub rekey_due: SystemTime,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub replay_drops: u64,
    /// ESP in UDP (RFC 3948) rather than bare IP protocol 50.
    pub encap: bool,
    /// Replaced by a rekey, waiting for its Delete.
    pub rekeyed: bool,
}

/// Counters kept across SAs (the SAs come and go with rekeys).
#[derive(Debug, Default)]
pub struct IpsecCounters {
    pub ike_rekeys: AtomicU64,
    pub child_rekeys: AtomicU64,
    pub auth_failures: AtomicU64,
    /// Of CHILD_SAs already removed; the live ones are added when reading.
    pub retired_replay_drops: AtomicU64,
    pub retired_bytes_in: AtomicU64,
    pub retired_bytes_out: AtomicU64,
}

impl IpsecCounters {
    /// Fills the view's totals from the counters and its live CHILD_SAs.
    pub fn complete(&self, view: &mut IpsecView) {
        let live_replays: u64 = view
            .ike_sas
            .iter()
            .flat_map(|sa| &sa.children)
            .map(|c| c.replay_drops)
            .sum();
        view.ike_rekeys = self.ike_rekeys.load(Ordering::Relaxed);
        view.child_rekeys = self.child_rekeys.load(Ordering::Relaxed);
        view.auth_failures = self.auth_failures.load(Ordering::Relaxed);
        view.replay_drops = self.retired_replay_drops.load(Ordering::Relaxed) + live_replays;
    }

    /// Bytes (received, sent) of the tunnel's ESP, over every CHILD_SA it had.
    pub fn bytes(&self, view: &IpsecView) -> (u64, u64) {
        let children = view.ike_sas.iter().flat_map(|sa| &sa.children);
        let (live_in, live_out) =
            children.fold((0, 0), |(i, o), c| (i + c.bytes_in, o + c.bytes_out));
        (
            self.retired_bytes_in.load(Ordering::Relaxed) + live_in,
            self.retired_bytes_out.load(Ordering::Relaxed) + live_out,
        )
    }
}
