//! IKEv2 (RFC 7296) without I/O: the algorithms Siteward speaks, proposals written the way
//! strongSwan users write them, identities, the message codec, key derivation and
//! authentication, and the IKE SA state machine. Bytes and time go in, bytes to send and
//! SA events come out; `siteward-netstack` owns the sockets and the ESP data plane.
//!
//! - [`algorithms`]: the transforms (encryption, integrity, PRF, DH group) by IANA number.
//! - [`proposal`]: IKE and ESP proposals (`aes256gcm16-prfsha256-x25519`).
//! - [`identity`]: IKE identities (`ID_FQDN`, `ID_IPV4_ADDR`, DNs, ...).
//! - [`crypto`]: the symmetric transforms shared by IKE's SK payload and ESP, and the rest
//!   of IKE's cryptography.
//! - [`message`]: the message codec (payloads, the SK payload, RFC 7383 fragments).
//! - [`negotiate`]: proposals on the wire and choosing from them.
//! - [`ts`]: traffic selectors and their narrowing.
//! - [`fragment`]: fragment sizing and reassembly for [`message`].
//! - [`sa`]: the IKE SA state machine (every exchange, both roles, timers).
//! - [`cookie`]: stateless cookies for a responder under a flood of IKE_SA_INIT.
#![forbid(unsafe_code)]

pub mod algorithms;
pub mod cookie;
pub mod crypto;
pub(crate) mod fragment;
pub mod identity;
pub mod message;
pub mod negotiate;
pub mod proposal;
pub mod sa;
pub mod ts;
