//! The IPsec data plane's per-packet code, without I/O; IKE (`siteward-ike`) negotiates the
//! SAs and their keys, the tunnel feeds packets through them.
//!
//! - [`esp`]: ESP (RFC 4303) encapsulation and decapsulation in tunnel mode, the outbound
//!   and inbound SAs with their sequence numbers and counters.
//! - [`replay`]: the anti-replay window (RFC 4303 §3.4.3, RFC 6479).
//! - [`udp_encap`]: telling ESP, IKE and NAT keepalives apart on UDP port 4500 (RFC 3948).

pub mod esp;
pub mod replay;
pub mod udp_encap;
