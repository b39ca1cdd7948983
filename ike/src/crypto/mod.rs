//! IKE's and ESP's cryptography, on ring and the RustCrypto AES/CBC crates.
//!
//! - [`transform`]: the symmetric protection shared by IKE's Encrypted payload and ESP
//!   (AES-GCM, or AES-CBC with a truncated HMAC): one `seal`/`open` pair for both.

pub mod auth;
pub mod certs;
pub mod dh;
pub mod keys;
pub mod prf;
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
    /// AUTH data (a PSK MAC or a signature) that does not verify; says which kind.
    #[error("{0} does not verify")]
    Authentication(&'static str),
    /// A signature algorithm the peer used that Siteward cannot check, named by OID.
    #[error("unsupported signature algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// A certificate that cannot be parsed, or a chain that does not validate.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A private key file that cannot be used; never quotes the key.
    #[error("private key: {0}")]
    PrivateKey(String),
}
