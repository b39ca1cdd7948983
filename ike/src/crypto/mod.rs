//! IKE's and ESP's cryptography, on ring and the RustCrypto AES/CBC crates.
//!
//! - [`transform`]: the symmetric protection shared by IKE's Encrypted payload and ESP
//!   (AES-GCM, or AES-CBC with a truncated HMAC): one `seal`/`open` pair for both.

pub mod transform;

/// A cryptographic operation failed. The variants say what, never with key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("integrity check failed")]
    Integrity,
    #[error("{what}: wrong length {got}, expected {expected}")]
    Length {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("{0}")]
    Invalid(String),
}
