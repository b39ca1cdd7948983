//! User-space IPsec: IKE (`siteward-ike`) negotiates the SAs and their keys, ESP runs
//! here over the tunnel's TUN device.
//!
//! - [`tunnel`]: `IpsecTunnel`, the `Tunnel` implementation: TUN device, routes to
//!   `remote_ts`, the IKE task and the outbound data plane.
//! - [`host`]: the IKE port, NAT-T port and raw ESP socket every IPsec tunnel of the
//!   process shares, and the tables that route what arrives (IKE by our SPI, a new
//!   IKE_SA_INIT by the peer's address, ESP by SPI).
//! - [`control`]: a tunnel's IKE task: the IKE SA state machines, their timers, and
//!   installing CHILD_SAs into the data plane.
//! - [`dataplane`]: outbound (TUN → selectors → ESP → peer) and inbound (ESP → selectors
//!   → TUN) per packet, with drop reasons.
//! - [`settings`]: the tunnel's configuration turned into an IKE `SaConfig`.
//! - [`status`]: what the API and metrics show of IKE and CHILD SAs.
//! - [`esp`]: ESP (RFC 4303) encapsulation and decapsulation in tunnel mode, the outbound
//!   and inbound SAs with their sequence numbers and counters.
//! - [`replay`]: the anti-replay window (RFC 4303 §3.4.3, RFC 6479).
//! - [`udp_encap`]: telling ESP, IKE and NAT keepalives apart on UDP port 4500 (RFC 3948).
//! - [`raw`]: bare ESP (IP protocol 50) on raw sockets.

mod control;
mod dataplane;
pub mod esp;
mod host;
mod raw;
mod replay;
mod settings;
pub mod status;
mod tunnel;
mod udp_encap;

pub use tunnel::IpsecTunnel;
