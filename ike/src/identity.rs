//! IKE identities (RFC 7296 §3.5): what an ID payload carries, and what `local_id` and
//! `remote_id` say in the configuration.

use std::net::{Ipv4Addr, Ipv6Addr};

/// ID Type numbers of the ID payload.
pub mod id_type {
    pub const IPV4_ADDR: u8 = 1;
    pub const FQDN: u8 = 2;
    pub const RFC822_ADDR: u8 = 3;
    pub const IPV6_ADDR: u8 = 5;
    pub const DER_ASN1_DN: u8 = 9;
    pub const KEY_ID: u8 = 11;
}

/// One relative distinguished name component of a DN, e.g. `("CN", "gw1.example.net")`.
/// The attribute is the short name in upper case (`C`, `ST`, `L`, `O`, `OU`, `CN`,
/// `E` for emailAddress, ...), or the dotted OID when it has none.
pub type DnAttribute = (String, String);

/// An IKE identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    /// `ID_FQDN`, compared case-insensitively.
    Fqdn(String),
    /// `ID_RFC822_ADDR` (`user@example.net`).
    Email(String),
    /// `ID_DER_ASN1_DN`, as its attributes in order.
    Dn(Vec<DnAttribute>),
    /// `ID_KEY_ID`: opaque bytes.
    KeyId(Vec<u8>),
}
