//! Network plumbing: where sockets leave the box, and the tunnels that carry them.
//!
//! - [`placement`] puts a socket on a source address and/or an interface
//!   (`SO_BINDTODEVICE`), so a health check can follow a tunnel.
//! - [`tunnel`] is what every tunnel kind implements, and the running set of tunnels that
//!   a configuration reload is diffed against.
//! - [`wireguard`] is the user-space WireGuard kind (boringtun, TUN, batched UDP, UAPI).
//! - [`udp`] is batched UDP I/O (GSO/GRO) shared by the tunnel kinds.
//! - [`ipsec`] is the user-space IPsec kind: ESP per packet, the shared IKE/ESP
//!   endpoints, each tunnel's IKE task and data plane.
//! - [`netlink`] sets addresses, link state and routes; [`allowed_ips`] is the
//!   longest-prefix table of cryptokey routing.
#![forbid(unsafe_code)]

pub mod allowed_ips;
mod device;
pub mod ipsec;
pub mod netlink;
pub mod placement;
pub mod reactor;
pub mod tunnel;
pub mod udp;
pub mod wireguard;

pub use placement::{PlacementError, SocketPlacement};
pub use tunnel::{
    PeerStatus, RekeyError, RekeyTarget, TunnelChanges, TunnelError, TunnelStatus, Tunnels,
};
