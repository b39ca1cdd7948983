//! IKE's and ESP's cryptography, on ring and the RustCrypto AES/CBC crates.
//!
//! - [`transform`]: the symmetric protection shared by IKE's Encrypted payload and ESP
//!   (AES-GCM, or AES-CBC with a truncated HMAC): one `seal`/`open` pair for both.
//! - [`prf`]: `PrfAlg::compute` and prf+ (§2.13).
//! - [`dh`]: the Key Exchange groups 14, 19, 20 and 31 with their peer-value checks.
//! - [`keys`]: SKEYSEED and the IKE SA's keys (§2.14), IKE rekey (§2.18), CHILD_SA KEYMAT
//!   (§2.17), and the `Transform`s built from them.
//! - [`auth`]: the AUTH payload: signed octets, PSK (§2.15), RFC 7427 signatures.
//! - [`certs`]: CA certificates, chain validation, identity matching, CERTREQ data.

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
