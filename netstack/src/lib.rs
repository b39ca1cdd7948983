//! Network plumbing shared by everything that opens sockets.
//!
//! Today: [`placement`], which puts a socket on a source address and/or an interface
//! (`SO_BINDTODEVICE`) so a health check can follow a tunnel. Tunnels (TUN devices,
//! WireGuard, IPsec, routes) land here next.
#![forbid(unsafe_code)]

pub mod placement;

pub use placement::{PlacementError, SocketPlacement};
