//! What an IPsec tunnel shows in `GET /api/v1/tunnels` and in metrics.

use std::net::SocketAddr;
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
    /// Inner bytes received and sent, over every CHILD_SA the tunnel had.
    pub bytes_in: u64,
    pub bytes_out: u64,
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
