//! Pure codecs for the wire formats the probes and simulators speak. No I/O here:
//! every function takes bytes and returns a value or a [`DecodeError`], never panics,
//! and is covered by unit, property and fuzz tests.

/// Why bytes from a peer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// More bytes are needed to complete the message.
    #[error("incomplete message")]
    Incomplete,
    /// The bytes can never form a valid message.
    #[error("{0}")]
    Invalid(String),
    /// The message is larger than the decoder accepts.
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
}

pub mod ami;
pub mod ni;
pub mod sip;
pub mod tns;
