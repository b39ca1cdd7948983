//! IKEv2 messages (RFC 7296 §3): the values the state machine reads and builds, the
//! encoder, and the decoder.
//!
//! Decoding uses `ipsec-parser` for the header, the payload chain and the payload bodies
//! it gets right; the Authentication, Notify, Delete and Vendor ID bodies are read here
//! because ipsec-parser 0.7 takes the wrong lengths for them (see [`decode`]'s module).
//! Encoding is Siteward's own. Protected messages (the SK payload, and its RFC 7383
//! fragments) are sealed and opened with [`crate::crypto::transform::Transform`].
//!
//! - [`decode_header`]: the fixed header, to find the IKE SA and check the message ID.
//! - [`decode`]: an unprotected message (IKE_SA_INIT, and errors sent before keys exist).
//! - [`Decoder::decode_protected`]: verifies, decrypts and reassembles SK/SKF messages.
//! - [`Message::encode`], [`Message::encode_protected`], [`Message::encode_fragments`].

mod decode;
mod encode;
mod protected;

pub use crate::ts::TrafficSelector;
pub use decode::{decode, decode_header, is_protected};
pub use protected::{Decoder, Protected};

/// The version byte: major 2, minor 0.
pub const IKE_VERSION: u8 = 0x20;

/// Bytes of the fixed IKE header.
pub const HEADER_LEN: usize = 28;

/// Header flag bits (RFC 7296 §3.1).
pub mod flags {
    /// Sent by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// The sender could speak a higher major version (Siteward never sets it).
    pub const VERSION: u8 = 0x10;
    /// The message is a response.
    pub const RESPONSE: u8 = 0x20;
}

/// Payload type numbers (IANA "IKEv2 Payload Types").
pub mod payload_type {
    pub const NONE: u8 = 0;
    pub const SA: u8 = 33;
    pub const KE: u8 = 34;
    pub const IDI: u8 = 35;
    pub const IDR: u8 = 36;
    pub const CERT: u8 = 37;
    pub const CERTREQ: u8 = 38;
    pub const AUTH: u8 = 39;
    pub const NONCE: u8 = 40;
    pub const NOTIFY: u8 = 41;
    pub const DELETE: u8 = 42;
    pub const VENDOR: u8 = 43;
    pub const TSI: u8 = 44;
    pub const TSR: u8 = 45;
    /// Encrypted and Authenticated.
    pub const SK: u8 = 46;
    /// Encrypted and Authenticated Fragment (RFC 7383).
    pub const SKF: u8 = 53;
}

/// Security protocol IDs of proposals, notifies and deletes.
pub mod protocol {
    pub const IKE: u8 = 1;
    pub const AH: u8 = 2;
    pub const ESP: u8 = 3;
}

/// Transform type numbers (RFC 7296 §3.3.2).
pub mod transform_type {
    pub const ENCR: u8 = 1;
    pub const PRF: u8 = 2;
    pub const INTEG: u8 = 3;
    pub const DH: u8 = 4;
    pub const ESN: u8 = 5;
}

/// Traffic selector types (RFC 7296 §3.13.1).
pub mod ts_type {
    pub const IPV4_ADDR_RANGE: u8 = 7;
    pub const IPV6_ADDR_RANGE: u8 = 8;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeType {
    IkeSaInit,
    IkeAuth,
    CreateChildSa,
    Informational,
    /// Any other number (IKE_SESSION_RESUME, IKE_INTERMEDIATE, ...): the state machine
    /// answers or drops these, the codec only carries them.
    Other(u8),
}

impl ExchangeType {
    pub fn number(self) -> u8 {
        match self {
            ExchangeType::IkeSaInit => 34,
            ExchangeType::IkeAuth => 35,
            ExchangeType::CreateChildSa => 36,
            ExchangeType::Informational => 37,
            ExchangeType::Other(n) => n,
        }
    }
}

impl From<u8> for ExchangeType {
    fn from(n: u8) -> Self {
        match n {
            34 => ExchangeType::IkeSaInit,
            35 => ExchangeType::IkeAuth,
            36 => ExchangeType::CreateChildSa,
            37 => ExchangeType::Informational,
            other => ExchangeType::Other(other),
        }
    }
}

/// One IKE message: the header's fields and the payloads in order. For a protected
/// message `payloads` are the ones inside the SK payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub spi_i: u64,
    pub spi_r: u64,
    pub exchange: ExchangeType,
    /// The I flag: sent by the IKE SA's original initiator.
    pub initiator: bool,
    /// The R flag.
    pub response: bool,
    pub message_id: u32,
    pub payloads: Vec<Payload>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Sa(Vec<ProposalWire>),
    Ke {
        group: u16,
        data: Vec<u8>,
    },
    IdI(IdPayload),
    IdR(IdPayload),
    Cert {
        encoding: u8,
        data: Vec<u8>,
    },
    CertReq {
        encoding: u8,
        data: Vec<u8>,
    },
    Auth {
        method: u8,
        data: Vec<u8>,
    },
    Nonce(Vec<u8>),
    Notify(Notify),
    Delete {
        protocol: u8,
        spis: Vec<Vec<u8>>,
    },
    Vendor(Vec<u8>),
    TsI(Vec<TrafficSelector>),
    TsR(Vec<TrafficSelector>),
    /// A payload type Siteward does not parse (CP, EAP, ...), with its body. An inbound
    /// one with the critical bit set must be answered with UNSUPPORTED_CRITICAL_PAYLOAD.
    /// Encoding writes `kind` and the body as they are, so `kind` should not be one of the
    /// types above (the decoder would read it back as that type).
    Unknown {
        kind: u8,
        critical: bool,
        data: Vec<u8>,
    },
}

impl Payload {
    /// The payload type number.
    pub fn kind(&self) -> u8 {
        use payload_type as t;
        match self {
            Payload::Sa(_) => t::SA,
            Payload::Ke { .. } => t::KE,
            Payload::IdI(_) => t::IDI,
            Payload::IdR(_) => t::IDR,
            Payload::Cert { .. } => t::CERT,
            Payload::CertReq { .. } => t::CERTREQ,
            Payload::Auth { .. } => t::AUTH,
            Payload::Nonce(_) => t::NONCE,
            Payload::Notify(_) => t::NOTIFY,
            Payload::Delete { .. } => t::DELETE,
            Payload::Vendor(_) => t::VENDOR,
            Payload::TsI(_) => t::TSI,
            Payload::TsR(_) => t::TSR,
            Payload::Unknown { kind, .. } => *kind,
        }
    }
}

/// The name RFC 7296 uses for a payload type, for error messages.
pub fn payload_name(kind: u8) -> &'static str {
    use payload_type as t;
    match kind {
        t::SA => "SA",
        t::KE => "KE",
        t::IDI => "IDi",
        t::IDR => "IDr",
        t::CERT => "CERT",
        t::CERTREQ => "CERTREQ",
        t::AUTH => "AUTH",
        t::NONCE => "Nonce",
        t::NOTIFY => "Notify",
        t::DELETE => "Delete",
        t::VENDOR => "Vendor ID",
        t::TSI => "TSi",
        t::TSR => "TSr",
        t::SK => "SK",
        47 => "CP",
        48 => "EAP",
        t::SKF => "SKF",
        _ => "unknown",
    }
}

/// An Identification payload (IDi or IDr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPayload {
    /// See [`crate::identity::id_type`].
    pub id_type: u8,
    pub data: Vec<u8>,
}

impl IdPayload {
    /// The payload body without the generic header (type, three reserved bytes, data):
    /// what RFC 7296 §2.15 signs as RestOfInitIDPayload / RestOfRespIDPayload.
    pub fn body(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(4 + self.data.len());
        body.extend_from_slice(&[self.id_type, 0, 0, 0]);
        body.extend_from_slice(&self.data);
        body
    }
}

/// A Notify payload. `spi` is empty unless the notify concerns a CHILD_SA (REKEY_SA,
/// INVALID_SPI, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// 0 when no SA is concerned, else [`protocol`].
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub kind: u16,
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify about the IKE SA or the exchange (no protocol, no SPI).
    pub fn new(kind: u16, data: Vec<u8>) -> Self {
        Notify {
            protocol: 0,
            spi: Vec::new(),
            kind,
            data,
        }
    }

    /// Types below 16384 are errors (RFC 7296 §3.10.1).
    pub fn is_error(&self) -> bool {
        self.kind < 16384
    }
}

/// Notify message types (IANA "IKEv2 Notify Message Types").
pub mod notify {
    pub const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;
    pub const INVALID_IKE_SPI: u16 = 4;
    pub const INVALID_MAJOR_VERSION: u16 = 5;
    pub const INVALID_SYNTAX: u16 = 7;
    pub const INVALID_MESSAGE_ID: u16 = 9;
    pub const INVALID_SPI: u16 = 11;
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    pub const INVALID_KE_PAYLOAD: u16 = 17;
    pub const AUTHENTICATION_FAILED: u16 = 24;
    pub const SINGLE_PAIR_REQUIRED: u16 = 34;
    pub const NO_ADDITIONAL_SAS: u16 = 35;
    pub const INTERNAL_ADDRESS_FAILURE: u16 = 36;
    pub const FAILED_CP_REQUIRED: u16 = 37;
    pub const TS_UNACCEPTABLE: u16 = 38;
    pub const INVALID_SELECTORS: u16 = 39;
    pub const TEMPORARY_FAILURE: u16 = 43;
    pub const CHILD_SA_NOT_FOUND: u16 = 44;
    pub const INITIAL_CONTACT: u16 = 16384;
    pub const SET_WINDOW_SIZE: u16 = 16385;
    pub const ADDITIONAL_TS_POSSIBLE: u16 = 16386;
    pub const IPCOMP_SUPPORTED: u16 = 16387;
    pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
    pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
    pub const COOKIE: u16 = 16390;
    pub const USE_TRANSPORT_MODE: u16 = 16391;
    pub const REKEY_SA: u16 = 16393;
    pub const ESP_TFC_PADDING_NOT_SUPPORTED: u16 = 16394;
    pub const NON_FIRST_FRAGMENTS_ALSO: u16 = 16395;
    pub const MOBIKE_SUPPORTED: u16 = 16396;
    pub const IKEV2_FRAGMENTATION_SUPPORTED: u16 = 16430;
    pub const SIGNATURE_HASH_ALGORITHMS: u16 = 16431;

    /// The RFC's name, for status text and logs (`NO_PROPOSAL_CHOSEN`).
    pub fn name(kind: u16) -> Option<&'static str> {
        Some(match kind {
            UNSUPPORTED_CRITICAL_PAYLOAD => "UNSUPPORTED_CRITICAL_PAYLOAD",
            INVALID_IKE_SPI => "INVALID_IKE_SPI",
            INVALID_MAJOR_VERSION => "INVALID_MAJOR_VERSION",
            INVALID_SYNTAX => "INVALID_SYNTAX",
            INVALID_MESSAGE_ID => "INVALID_MESSAGE_ID",
            INVALID_SPI => "INVALID_SPI",
            NO_PROPOSAL_CHOSEN => "NO_PROPOSAL_CHOSEN",
            INVALID_KE_PAYLOAD => "INVALID_KE_PAYLOAD",
            AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED",
            SINGLE_PAIR_REQUIRED => "SINGLE_PAIR_REQUIRED",
            NO_ADDITIONAL_SAS => "NO_ADDITIONAL_SAS",
            INTERNAL_ADDRESS_FAILURE => "INTERNAL_ADDRESS_FAILURE",
            FAILED_CP_REQUIRED => "FAILED_CP_REQUIRED",
            TS_UNACCEPTABLE => "TS_UNACCEPTABLE",
            INVALID_SELECTORS => "INVALID_SELECTORS",
            TEMPORARY_FAILURE => "TEMPORARY_FAILURE",
            CHILD_SA_NOT_FOUND => "CHILD_SA_NOT_FOUND",
            INITIAL_CONTACT => "INITIAL_CONTACT",
            SET_WINDOW_SIZE => "SET_WINDOW_SIZE",
            ADDITIONAL_TS_POSSIBLE => "ADDITIONAL_TS_POSSIBLE",
            IPCOMP_SUPPORTED => "IPCOMP_SUPPORTED",
            NAT_DETECTION_SOURCE_IP => "NAT_DETECTION_SOURCE_IP",
            NAT_DETECTION_DESTINATION_IP => "NAT_DETECTION_DESTINATION_IP",
            COOKIE => "COOKIE",
            USE_TRANSPORT_MODE => "USE_TRANSPORT_MODE",
            REKEY_SA => "REKEY_SA",
            ESP_TFC_PADDING_NOT_SUPPORTED => "ESP_TFC_PADDING_NOT_SUPPORTED",
            NON_FIRST_FRAGMENTS_ALSO => "NON_FIRST_FRAGMENTS_ALSO",
            MOBIKE_SUPPORTED => "MOBIKE_SUPPORTED",
            IKEV2_FRAGMENTATION_SUPPORTED => "IKEV2_FRAGMENTATION_SUPPORTED",
            SIGNATURE_HASH_ALGORITHMS => "SIGNATURE_HASH_ALGORITHMS",
            _ => return None,
        })
    }
}

/// A proposal as it is on the wire: numbered, for one protocol, with its SPI (empty in
/// IKE_SA_INIT, 8 bytes for an IKE rekey, 4 for ESP) and transforms in the sender's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalWire {
    pub number: u8,
    /// [`protocol::IKE`] or [`protocol::ESP`].
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub transforms: Vec<TransformWire>,
}

/// One transform. A received transform that carried an attribute other than Key Length
/// is left out when decoding: RFC 7296 §3.3.6 makes it unacceptable, and the other
/// transforms of its type are still considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransformWire {
    /// [`transform_type`].
    pub kind: u8,
    pub id: u16,
    /// The Key Length attribute, in bits.
    pub key_len: Option<u16>,
}

/// Why a datagram could not be decoded or a message encoded. Says what and where (which
/// payload); never carries key material or decrypted bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("datagram of {len} bytes is shorter than the {HEADER_LEN}-byte IKE header")]
    TooShort { len: usize },
    #[error("IKE major version {major} is not supported (only 2 is)")]
    UnsupportedVersion { major: u8 },
    #[error("header length {header} does not match the {actual}-byte datagram")]
    LengthMismatch { header: u32, actual: usize },
    #[error("{location}: {problem}")]
    Malformed {
        location: String,
        problem: String,
        /// The bytes passed the integrity check: the peer, not an attacker, sent them
        /// (the answer to a request is then INVALID_SYNTAX).
        authenticated: bool,
    },
    #[error("message is protected (first payload {}); it needs the IKE SA's keys", payload_name(*first))]
    Protected { first: u8 },
    #[error("message is not protected: its first payload is {} ({first})", payload_name(*first))]
    NotProtected { first: u8 },
    #[error("integrity check failed on the {what}")]
    Integrity { what: String },
    #[error("{what}: {problem}")]
    Fragment { what: String, problem: String },
    #[error("cannot encode the message: {0}")]
    Encode(String),
}

impl MessageError {
    /// The notify a responder sends back for this error, if any (RFC 7296 §2.21):
    /// INVALID_MAJOR_VERSION for another major version, INVALID_SYNTAX for an
    /// authenticated message it cannot parse. Everything else is dropped silently.
    pub fn notify(&self) -> Option<u16> {
        match self {
            MessageError::UnsupportedVersion { .. } => Some(notify::INVALID_MAJOR_VERSION),
            MessageError::Malformed {
                authenticated: true,
                ..
            } => Some(notify::INVALID_SYNTAX),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
