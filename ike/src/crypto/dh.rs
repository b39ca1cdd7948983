//! Diffie-Hellman for the Key Exchange payload: MODP 2048 (RFC 3526), ECP 256/384
//! (RFC 5903) and Curve25519 (RFC 8031), with the peer-value checks RFC 7296 §5 and
//! SP 800-56A ask for.
//!
//! ring's ECDH only offers ephemeral keys it generates itself, which leaves the RFC
//! known-answer vectors untestable; the RustCrypto curves (`p256`, `p384`, `x25519-dalek`)
//! take fixed keys and are constant time. MODP uses crypto-bigint's constant-time
//! Montgomery exponentiation, so the private exponent does not leak through timing.

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Encoding, U2048};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::CryptoError;
use crate::algorithms::DhGroup;

/// The RFC 3526 2048-bit MODP prime (group 14); the generator is 2.
const MODP2048_PRIME: U2048 = U2048::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
));

/// Bits of the MODP private exponent. RFC 3526 §8 asks for twice the group's ~110-bit
/// strength; 512 bits leave a wide margin and keep the exponentiation fast.
const MODP_EXPONENT_BITS: usize = 512;

/// Our half of one Diffie-Hellman exchange. Used once: [`DhPrivate::agree`] consumes it.
pub struct DhPrivate {
    key: PrivateKey,
}

enum PrivateKey {
    /// Boxed: the exponent is zeroized on drop by crypto-bigint's `Zeroize` below.
    Modp(Box<Zeroizing<U2048>>),
    Ecp256(p256::SecretKey),
    Ecp384(p384::SecretKey),
    Curve25519(x25519_dalek::StaticSecret),
}

impl DhPrivate {
    /// A fresh key pair; the Vec is the Key Exchange payload's data as IKE carries it
    /// (modp: 256-byte big-endian; ecp256/384: x||y without 0x04 per RFC 5903 §7; x25519: 32 bytes).
    pub fn generate(group: DhGroup) -> Result<(DhPrivate, Vec<u8>), CryptoError> {
        let rng = SystemRandom::new();
        let key = match group {
            DhGroup::Modp2048 => {
                let mut bytes = Zeroizing::new([0u8; 256]);
                fill(&rng, &mut bytes[256 - MODP_EXPONENT_BITS / 8..])?;
                PrivateKey::Modp(Box::new(Zeroizing::new(U2048::from_be_slice(&bytes[..]))))
            }
            DhGroup::Ecp256 => PrivateKey::Ecp256(random_scalar(&rng, 32, |bytes| {
                p256::SecretKey::from_slice(bytes).ok()
            })?),
            DhGroup::Ecp384 => PrivateKey::Ecp384(random_scalar(&rng, 48, |bytes| {
                p384::SecretKey::from_slice(bytes).ok()
            })?),
            DhGroup::Curve25519 => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                fill(&rng, &mut bytes[..])?;
                PrivateKey::Curve25519(x25519_dalek::StaticSecret::from(*bytes))
            }
        };
        let private = DhPrivate { key };
        let public = private.public_value();
        Ok((private, public))
    }

    pub fn group(&self) -> DhGroup {
        match self.key {
            PrivateKey::Modp(_) => DhGroup::Modp2048,
            PrivateKey::Ecp256(_) => DhGroup::Ecp256,
            PrivateKey::Ecp384(_) => DhGroup::Ecp384,
            PrivateKey::Curve25519(_) => DhGroup::Curve25519,
        }
    }

    /// The Key Exchange data for this private key.
    fn public_value(&self) -> Vec<u8> {
        match &self.key {
            PrivateKey::Modp(exponent) => {
                modp_pow(&U2048::from(2u8), exponent).to_be_bytes().to_vec()
            }
            PrivateKey::Ecp256(secret) => {
                // Uncompressed SEC1 is 0x04 | x | y; IKE carries x | y.
                secret.public_key().to_encoded_point(false).as_bytes()[1..].to_vec()
            }
            PrivateKey::Ecp384(secret) => {
                secret.public_key().to_encoded_point(false).as_bytes()[1..].to_vec()
            }
            PrivateKey::Curve25519(secret) => {
                x25519_dalek::PublicKey::from(secret).as_bytes().to_vec()
            }
        }
    }

    /// g^ir as IKE uses it (modp: left-padded to 256 bytes; ecp: x coordinate only, RFC 5903 §7;
    /// x25519: 32 bytes, all-zero result rejected). Rejects wrong lengths, points not on the
    /// curve, and 0, 1, p-1 for modp (RFC 7296 / SP 800-56A checks).
    pub fn agree(self, peer_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let group = self.group();
        if peer_public.len() != group.public_len() {
            return Err(CryptoError::Length {
                what: "peer's Key Exchange data",
                got: peer_public.len(),
                expected: group.public_len(),
            });
        }
        let invalid = |why: &str| CryptoError::Invalid(format!("{} {why}", group.name()));
        match &self.key {
            PrivateKey::Modp(exponent) => {
                let peer = U2048::from_be_slice(peer_public);
                let p_minus_1 = MODP2048_PRIME.wrapping_sub(&U2048::ONE);
                // 1 < y < p - 1: excludes the values of order 1 and 2, and anything >= p.
                if peer <= U2048::ONE || peer >= p_minus_1 {
                    return Err(invalid("public value is 0, 1, p-1 or not below p"));
                }
                let shared = Zeroizing::new(modp_pow(&peer, exponent));
                if *shared == U2048::ONE || *shared == p_minus_1 {
                    return Err(invalid("shared secret is degenerate"));
                }
                Ok(Zeroizing::new(shared.to_be_bytes().to_vec()))
            }
            PrivateKey::Ecp256(secret) => {
                let peer = p256::PublicKey::from_sec1_bytes(&sec1_uncompressed(peer_public))
                    .map_err(|_| invalid("public value is not a point on the curve"))?;
                let shared =
                    p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            PrivateKey::Ecp384(secret) => {
                let peer = p384::PublicKey::from_sec1_bytes(&sec1_uncompressed(peer_public))
                    .map_err(|_| invalid("public value is not a point on the curve"))?;
                let shared =
                    p384::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            PrivateKey::Curve25519(secret) => {
                let mut bytes = [0u8; 32];
                bytes.copy_from_slice(peer_public);
                let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(bytes));
                // RFC 8031 §2.1 / RFC 7748 §6.1: a low-order peer value gives all zeros.
                if !shared.was_contributory() {
                    return Err(invalid(
                        "shared secret is all zeros (low-order public value)",
                    ));
                }
                Ok(Zeroizing::new(shared.as_bytes().to_vec()))
            }
        }
    }

    /// A key pair from a fixed private value, for the RFC known-answer vectors.
    #[cfg(test)]
    fn from_private(group: DhGroup, private: &[u8]) -> (DhPrivate, Vec<u8>) {
        let key = match group {
            DhGroup::Modp2048 => {
                let mut bytes = [0u8; 256];
                bytes[256 - private.len()..].copy_from_slice(private);
                PrivateKey::Modp(Box::new(Zeroizing::new(U2048::from_be_slice(&bytes))))
            }
            DhGroup::Ecp256 => PrivateKey::Ecp256(p256::SecretKey::from_slice(private).unwrap()),
            DhGroup::Ecp384 => PrivateKey::Ecp384(p384::SecretKey::from_slice(private).unwrap()),
            DhGroup::Curve25519 => PrivateKey::Curve25519(x25519_dalek::StaticSecret::from(
                <[u8; 32]>::try_from(private).unwrap(),
            )),
        };
        let private = DhPrivate { key };
        let public = private.public_value();
        (private, public)
    }
}

impl std::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DhPrivate({}, ***)", self.group().name())
    }
}

fn modp_pow(base: &U2048, exponent: &U2048) -> U2048 {
    let params = DynResidueParams::new(&MODP2048_PRIME);
    DynResidue::new(base, params)
        .pow_bounded_exp(exponent, MODP_EXPONENT_BITS)
        .retrieve()
}

fn sec1_uncompressed(x_y: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(1 + x_y.len());
    point.push(0x04);
    point.extend_from_slice(x_y);
    point
}

fn fill(rng: &SystemRandom, bytes: &mut [u8]) -> Result<(), CryptoError> {
    rng.fill(bytes)
        .map_err(|_| CryptoError::Invalid("the system random generator failed".into()))
}

/// A uniformly random non-zero scalar below the curve order, by rejection sampling of
/// `len` random bytes (a draw is rejected with probability below 2^-32 for these curves).
fn random_scalar<K>(
    rng: &SystemRandom,
    len: usize,
    from_bytes: impl Fn(&[u8]) -> Option<K>,
) -> Result<K, CryptoError> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    for _ in 0..16 {
        fill(rng, &mut bytes)?;
        if let Some(key) = from_bytes(&bytes) {
            return Ok(key);
        }
    }
    Err(CryptoError::Invalid(
        "no valid private scalar in 16 random draws".into(),
    ))
}
