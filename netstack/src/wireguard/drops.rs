//! Why packets were dropped, counted per tunnel for `siteward_tunnel_packets_dropped_total`.

use std::sync::atomic::{AtomicU64, Ordering};

use boringtun::noise::errors::WireGuardError;

/// A reason a packet was dropped; its `as_str` is the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A packet from the TUN device to an address no peer's allowed IPs cover.
    NoRoute,
    /// A packet for a peer that has no endpoint yet (it has not contacted us).
    NoEndpoint,
    /// A datagram that is not a WireGuard message (wrong type or length).
    InvalidPacket,
    /// A handshake message whose MAC does not match our public key.
    InvalidMac,
    /// A handshake from a key, or data for a session index, that no peer has.
    UnknownPeer,
    /// A data packet or handshake seen before (counter or timestamp replayed).
    Replay,
    /// A data packet that failed authentication, or arrived for an expired session.
    DecryptFailed,
    /// A decrypted packet whose source address is outside the peer's allowed IPs.
    SourceNotAllowed,
    /// A handshake refused with a cookie because the tunnel is under load.
    UnderLoad,
    /// A handshake message that did not complete (wrong key, unexpected, malformed).
    HandshakeFailed,
    /// The kernel refused to send or write the packet.
    IoError,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::NoRoute,
        DropReason::NoEndpoint,
        DropReason::InvalidPacket,
        DropReason::InvalidMac,
        DropReason::UnknownPeer,
        DropReason::Replay,
        DropReason::DecryptFailed,
        DropReason::SourceNotAllowed,
        DropReason::UnderLoad,
        DropReason::HandshakeFailed,
        DropReason::IoError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoRoute => "no_route",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::InvalidPacket => "invalid_packet",
            DropReason::InvalidMac => "invalid_mac",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::Replay => "replay",
            DropReason::DecryptFailed => "decrypt_failed",
            DropReason::SourceNotAllowed => "source_not_allowed",
            DropReason::UnderLoad => "under_load",
            DropReason::HandshakeFailed => "handshake_failed",
            DropReason::IoError => "io_error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The reason for a packet boringtun rejected.
    pub fn of(error: &WireGuardError) -> DropReason {
        match error {
            WireGuardError::InvalidMac => DropReason::InvalidMac,
            WireGuardError::DuplicateCounter | WireGuardError::WrongTai64nTimestamp => {
                DropReason::Replay
            }
            WireGuardError::InvalidAeadTag
            | WireGuardError::InvalidCounter
            | WireGuardError::NoCurrentSession
            | WireGuardError::ConnectionExpired => DropReason::DecryptFailed,
            WireGuardError::WrongIndex => DropReason::UnknownPeer,
            WireGuardError::UnderLoad => DropReason::UnderLoad,
            WireGuardError::InvalidPacket
            | WireGuardError::IncorrectPacketLength
            | WireGuardError::WrongPacketType => DropReason::InvalidPacket,
            WireGuardError::DestinationBufferTooSmall
            | WireGuardError::UnexpectedPacket
            | WireGuardError::WrongKey
            | WireGuardError::InvalidTai64nTimestamp
            | WireGuardError::LockFailed => DropReason::HandshakeFailed,
        }
    }
}

/// Per-reason counters.
#[derive(Default)]
pub struct Drops([AtomicU64; DropReason::ALL.len()]);

impl Drops {
    pub fn count(&self, reason: DropReason) {
        self.0[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.0[r.index()].load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_in_index_order() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let drops = Drops::default();
        drops.count(DropReason::Replay);
        drops.count(DropReason::Replay);
        assert!(drops.snapshot().contains(&("replay", 2)));
        assert!(drops.snapshot().contains(&("no_route", 0)));
    }
}
