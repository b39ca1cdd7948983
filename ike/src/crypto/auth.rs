//! The AUTH payload (RFC 7296 §2.15): what is signed, pre-shared-key MACs, and RFC 7427
//! digital signatures (RSA PKCS#1 v1.5 and RSASSA-PSS, ECDSA) on ring.

use p256::elliptic_curve::sec1::{FromEncodedPoint, ModulusSize, ToEncodedPoint};
use p256::elliptic_curve::{AffinePoint, CurveArithmetic, FieldBytesSize, SecretKey};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use subtle::ConstantTimeEq;
use x509_parser::prelude::{AlgorithmIdentifier, FromDer};
use x509_parser::signature_algorithm::RsaSsaPssParams;
use zeroize::Zeroizing;

use super::certs::{strip_leading_zeros, CertKey, EcCurve, PeerCert};
use super::dh::uncompressed_point;
use super::CryptoError;
use crate::algorithms::PrfAlg;
use crate::identity::push_der;

/// Auth Method: shared key message integrity code.
pub const AUTH_SHARED_KEY: u8 = 2;
/// Auth Method: digital signature, RFC 7427.
pub const AUTH_DIGITAL_SIGNATURE: u8 = 14; // RFC 7427

/// InitiatorSignedOctets / ResponderSignedOctets (§2.15): RealMessage | NonceOfPeer | prf(SK_px, IDx'),
/// where id_body is the ID payload body (ID type, 3 reserved bytes, identification data).
pub fn signed_octets(
    prf: PrfAlg,
    message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Vec<u8> {
    let id_mac = prf.compute(sk_p, &[id_body]);
    [message, peer_nonce, &id_mac].concat()
}

const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// prf(prf(Shared Secret, "Key Pad for IKEv2"), octets)
pub fn psk_auth(prf: PrfAlg, psk: &[u8], octets: &[u8]) -> Vec<u8> {
    let padded_key = Zeroizing::new(prf.compute(psk, &[KEY_PAD]));
    prf.compute(&padded_key, &[octets])
}

/// Checks a received PSK AUTH value in constant time.
pub fn verify_psk(
    prf: PrfAlg,
    psk: &[u8],
    octets: &[u8],
    received: &[u8],
) -> Result<(), CryptoError> {
    let expected = psk_auth(prf, psk, octets);
    // The length is public (the PRF's output length); only the contents need constant time.
    if expected.len() == received.len() && bool::from(expected.ct_eq(received)) {
        Ok(())
    } else {
        Err(CryptoError::Authentication("pre-shared key AUTH"))
    }
}

/// RFC 7427 hash algorithm numbers (for the SIGNATURE_HASH_ALGORITHMS notify, 16431).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureHash {
    Sha256 = 2,
    Sha384 = 3,
    Sha512 = 4,
}

impl SignatureHash {
    /// What Siteward announces in its SIGNATURE_HASH_ALGORITHMS notify.
    pub const ALL: [SignatureHash; 3] = [
        SignatureHash::Sha256,
        SignatureHash::Sha384,
        SignatureHash::Sha512,
    ];

    pub fn id(self) -> u16 {
        self as u16
    }

    /// `None` for hashes Siteward does not sign with (SHA-1, Identity, ...).
    pub fn from_id(id: u16) -> Option<SignatureHash> {
        SignatureHash::ALL.into_iter().find(|hash| hash.id() == id)
    }
}

/// Our private key for AUTH method 14.
pub struct SigningKey {
    key: PrivateKey,
    rng: SystemRandom,
}

enum PrivateKey {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair, EcCurve),
}

// RFC 7427 Appendix A: the AlgorithmIdentifier DER for each signature Siteward makes.
const SHA256_WITH_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];
const SHA384_WITH_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00,
];
const SHA512_WITH_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00,
];
const ECDSA_WITH_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
const ECDSA_WITH_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];

// DER of the OIDs private key files carry.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

impl SigningKey {
    /// RSA (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`) or ECDSA P-256/P-384 (SEC1
    /// `EC PRIVATE KEY` or PKCS#8). Errors describe the problem, never the key.
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, CryptoError> {
        let rng = SystemRandom::new();
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| {
            CryptoError::PrivateKey(
                "no readable RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY block".into(),
            )
        })?;
        let rejected = |what: &str, e: ring::error::KeyRejected| {
            CryptoError::PrivateKey(format!("{what} key rejected: {e}"))
        };
        let key = match &der {
            PrivateKeyDer::Pkcs1(pkcs1) => PrivateKey::Rsa(
                RsaKeyPair::from_der(pkcs1.secret_pkcs1_der()).map_err(|e| rejected("RSA", e))?,
            ),
            PrivateKeyDer::Sec1(sec1) => ecdsa_key(sec1.secret_sec1_der(), None, &rng)?,
            PrivateKeyDer::Pkcs8(pkcs8) => {
                let pkcs8 = pkcs8.secret_pkcs8_der();
                let parts = pkcs8_parts(pkcs8).ok_or_else(|| {
                    CryptoError::PrivateKey("malformed PKCS#8 PRIVATE KEY".into())
                })?;
                match parts.algorithm {
                    OID_RSA_ENCRYPTION => PrivateKey::Rsa(
                        RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| rejected("RSA", e))?,
                    ),
                    OID_EC_PUBLIC_KEY => ecdsa_key(parts.private_key, parts.curve, &rng)?,
                    other => {
                        return Err(CryptoError::PrivateKey(format!(
                            "unsupported key algorithm (OID {}); use RSA or ECDSA P-256/P-384",
                            oid_text(other)
                        )))
                    }
                }
            }
            _ => {
                return Err(CryptoError::PrivateKey(
                    "unsupported private key format".into(),
                ))
            }
        };
        Ok(SigningKey { key, rng })
    }

    /// The AUTH payload data for method 14: 1-byte length | AlgorithmIdentifier DER | signature.
    /// RSA: sha256/384/512WithRSAEncryption (PKCS#1 v1.5) picked from `peer_hashes` (the peer's
    /// SIGNATURE_HASH_ALGORITHMS; prefer SHA-256 if present; SHA-256 if the peer sent none);
    /// ECDSA: ecdsa-with-SHA256 for P-256, -SHA384 for P-384 (DER signature).
    pub fn sign(
        &self,
        octets: &[u8],
        peer_hashes: &[SignatureHash],
    ) -> Result<Vec<u8>, CryptoError> {
        let failed = |what: &str| CryptoError::Invalid(format!("{what} signing failed"));
        let (algorithm, signature) = match &self.key {
            PrivateKey::Rsa(pair) => {
                let hash = [
                    SignatureHash::Sha256,
                    SignatureHash::Sha384,
                    SignatureHash::Sha512,
                ]
                .into_iter()
                .find(|hash| peer_hashes.contains(hash))
                .unwrap_or(SignatureHash::Sha256);
                let (algorithm, padding): (_, &'static dyn signature::RsaEncoding) = match hash {
                    SignatureHash::Sha256 => (SHA256_WITH_RSA, &signature::RSA_PKCS1_SHA256),
                    SignatureHash::Sha384 => (SHA384_WITH_RSA, &signature::RSA_PKCS1_SHA384),
                    SignatureHash::Sha512 => (SHA512_WITH_RSA, &signature::RSA_PKCS1_SHA512),
                };
                let mut signature = vec![0u8; pair.public().modulus_len()];
                pair.sign(padding, &self.rng, octets, &mut signature)
                    .map_err(|_| failed("RSA"))?;
                (algorithm, signature)
            }
            PrivateKey::Ecdsa(pair, curve) => {
                let algorithm = match curve {
                    EcCurve::P256 => ECDSA_WITH_SHA256,
                    EcCurve::P384 => ECDSA_WITH_SHA384,
                };
                let signature = pair.sign(&self.rng, octets).map_err(|_| failed("ECDSA"))?;
                (algorithm, signature.as_ref().to_vec())
            }
        };
        let mut auth_data = Vec::with_capacity(1 + algorithm.len() + signature.len());
        auth_data.push(algorithm.len() as u8);
        auth_data.extend_from_slice(algorithm);
        auth_data.extend_from_slice(&signature);
        Ok(auth_data)
    }

    /// Whether this key's certificate public key matches (checked when the tunnel starts).
    pub fn matches_certificate(&self, cert: &PeerCert) -> bool {
        match (&self.key, cert.key()) {
            (PrivateKey::Rsa(pair), CertKey::Rsa { modulus, exponent }) => {
                let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
                strip_leading_zeros(&public.n) == modulus.as_slice()
                    && strip_leading_zeros(&public.e) == exponent.as_slice()
            }
            (
                PrivateKey::Ecdsa(pair, curve),
                CertKey::Ec {
                    curve: cert_curve,
                    point,
                },
            ) => curve == cert_curve && pair.public_key().as_ref() == point.as_slice(),
            _ => false,
        }
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.key {
            PrivateKey::Rsa(_) => "RSA",
            PrivateKey::Ecdsa(_, EcCurve::P256) => "ECDSA P-256",
            PrivateKey::Ecdsa(_, EcCurve::P384) => "ECDSA P-384",
        };
        write!(f, "SigningKey({kind}, ***)")
    }
}

/// An ECDSA key from a SEC1 ECPrivateKey. ring takes only PKCS#8 with the public key
/// inside, which SEC1 files may lack, so the key is rebuilt in that form from the scalar.
/// `pkcs8_curve` is the curve OID from a PKCS#8 wrapper, if any.
fn ecdsa_key(
    sec1: &[u8],
    pkcs8_curve: Option<&[u8]>,
    rng: &SystemRandom,
) -> Result<PrivateKey, CryptoError> {
    let malformed = || CryptoError::PrivateKey("malformed EC PRIVATE KEY".into());
    let (scalar, sec1_curve) = sec1_parts(sec1).ok_or_else(malformed)?;
    let curve = match pkcs8_curve.or(sec1_curve) {
        Some(OID_P256) => EcCurve::P256,
        Some(OID_P384) => EcCurve::P384,
        Some(other) => {
            return Err(CryptoError::PrivateKey(format!(
                "unsupported curve (OID {}); use P-256 or P-384",
                oid_text(other)
            )))
        }
        None if scalar.len() == 32 => EcCurve::P256,
        None if scalar.len() == 48 => EcCurve::P384,
        None => return Err(malformed()),
    };
    // The scalar at the curve's field length, and the uncompressed public point.
    let (key_material, curve_oid, signing) = match curve {
        EcCurve::P256 => (
            p256::SecretKey::from_slice(scalar).map(|secret| ec_key_material(&secret)),
            OID_P256,
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        ),
        EcCurve::P384 => (
            p384::SecretKey::from_slice(scalar).map(|secret| ec_key_material(&secret)),
            OID_P384,
            &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        ),
    };
    let (scalar, point) = key_material
        .map_err(|_| CryptoError::PrivateKey("EC private scalar out of range".into()))?;
    // ECPrivateKey { version 1, privateKey, [1] publicKey } inside PKCS#8 (RFC 5915, 5208).
    let public_bits = der(0x03, &[&[0u8][..], &point].concat());
    let ec_private_key = Zeroizing::new(der(
        0x30,
        &[
            &der(0x02, &[1])[..],
            &Zeroizing::new(der(0x04, &scalar)),
            &der(0xa1, &public_bits),
        ]
        .concat(),
    ));
    let algorithm = der(
        0x30,
        &[der(0x06, OID_EC_PUBLIC_KEY), der(0x06, curve_oid)].concat(),
    );
    let pkcs8 = Zeroizing::new(der(
        0x30,
        &Zeroizing::new(
            [
                &der(0x02, &[0])[..],
                &algorithm,
                &Zeroizing::new(der(0x04, &ec_private_key)),
            ]
            .concat(),
        ),
    ));
    let pair = EcdsaKeyPair::from_pkcs8(signing, &pkcs8, rng)
        .map_err(|e| CryptoError::PrivateKey(format!("ECDSA key rejected: {e}")))?;
    Ok(PrivateKey::Ecdsa(pair, curve))
}

/// The private scalar at the curve's field length and the uncompressed public point.
fn ec_key_material<C>(secret: &SecretKey<C>) -> (Zeroizing<Vec<u8>>, Vec<u8>)
where
    C: CurveArithmetic,
    AffinePoint<C>: FromEncodedPoint<C> + ToEncodedPoint<C>,
    FieldBytesSize<C>: ModulusSize,
{
    (
        Zeroizing::new(secret.to_bytes().to_vec()),
        uncompressed_point(secret),
    )
}

/// What a PKCS#8 PrivateKeyInfo holds, as DER contents.
struct Pkcs8Parts<'a> {
    algorithm: &'a [u8],
    /// The algorithm's OID parameter: the curve, for EC keys.
    curve: Option<&'a [u8]>,
    private_key: &'a [u8],
}

fn pkcs8_parts(pkcs8: &[u8]) -> Option<Pkcs8Parts<'_>> {
    let (0x30, info, _) = der_element(pkcs8)? else {
        return None;
    };
    let (0x02, _version, rest) = der_element(info)? else {
        return None;
    };
    let (0x30, algorithm, rest) = der_element(rest)? else {
        return None;
    };
    let (0x04, private_key, _) = der_element(rest)? else {
        return None;
    };
    let (0x06, oid, parameters) = der_element(algorithm)? else {
        return None;
    };
    let curve = match der_element(parameters) {
        Some((0x06, curve, _)) => Some(curve),
        _ => None,
    };
    Some(Pkcs8Parts {
        algorithm: oid,
        curve,
        private_key,
    })
}

/// From a SEC1 ECPrivateKey: the private scalar and the curve OID if the key names it.
fn sec1_parts(sec1: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let (0x30, key, _) = der_element(sec1)? else {
        return None;
    };
    let (0x02, [1], rest) = der_element(key)? else {
        return None;
    };
    let (0x04, scalar, rest) = der_element(rest)? else {
        return None;
    };
    let curve = match der_element(rest) {
        Some((0xa0, parameters, _)) => match der_element(parameters) {
            Some((0x06, oid, _)) => Some(oid),
            _ => None,
        },
        _ => None,
    };
    Some((scalar, curve))
}

/// One DER element of `input`: its tag, its contents, and what follows it. `None` if the
/// header or length is malformed or runs past the input.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (len_bytes, rest) = rest.split_at_checked(count)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |len, &byte| (len << 8) | usize::from(byte));
        (len, rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// A DER element with a definite length.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    push_der(&mut out, tag, contents);
    out
}

/// An OID's DER contents in dotted form, for error messages.
fn oid_text(oid: &[u8]) -> String {
    x509_parser::der_parser::oid::Oid::new(oid.into()).to_id_string()
}

/// The signature schemes RFC 7427 AUTH data may name, as Siteward checks them.
enum Scheme {
    RsaPkcs1(&'static signature::RsaParameters),
    RsaPss(&'static signature::RsaParameters),
    Ecdsa {
        p256: &'static signature::EcdsaVerificationAlgorithm,
        p384: &'static signature::EcdsaVerificationAlgorithm,
    },
}

const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const OID_SHA512: &str = "2.16.840.1.101.3.4.2.3";
const OID_MGF1: &str = "1.2.840.113549.1.1.8";
const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";

/// Verifies AUTH method-14 data against the certificate's public key. Accepts
/// sha256/384/512WithRSAEncryption, RSASSA-PSS (SHA-256/384/512), ecdsa-with-SHA256/384/512
/// as ring can verify them; anything else is an error naming the algorithm OID.
pub fn verify_signature(
    cert: &PeerCert,
    auth_data: &[u8],
    octets: &[u8],
) -> Result<(), CryptoError> {
    let malformed = |why: &str| CryptoError::Invalid(format!("signature AUTH data: {why}"));
    let (&algorithm_len, rest) = auth_data.split_first().ok_or_else(|| malformed("empty"))?;
    let (algorithm_der, signature) = rest
        .split_at_checked(usize::from(algorithm_len))
        .ok_or_else(|| malformed("shorter than its AlgorithmIdentifier length"))?;
    if signature.is_empty() {
        return Err(malformed("no signature after the AlgorithmIdentifier"));
    }
    let algorithm = match AlgorithmIdentifier::from_der(algorithm_der) {
        Ok(([], algorithm)) => algorithm,
        _ => return Err(malformed("AlgorithmIdentifier is not valid DER")),
    };
    let oid = algorithm.algorithm.to_id_string();
    let scheme = match oid.as_str() {
        "1.2.840.113549.1.1.11" => Scheme::RsaPkcs1(&signature::RSA_PKCS1_2048_8192_SHA256),
        "1.2.840.113549.1.1.12" => Scheme::RsaPkcs1(&signature::RSA_PKCS1_2048_8192_SHA384),
        "1.2.840.113549.1.1.13" => Scheme::RsaPkcs1(&signature::RSA_PKCS1_2048_8192_SHA512),
        OID_RSASSA_PSS => Scheme::RsaPss(pss_parameters(&algorithm)?),
        "1.2.840.10045.4.3.2" => Scheme::Ecdsa {
            p256: &signature::ECDSA_P256_SHA256_ASN1,
            p384: &signature::ECDSA_P384_SHA256_ASN1,
        },
        "1.2.840.10045.4.3.3" => Scheme::Ecdsa {
            p256: &signature::ECDSA_P256_SHA384_ASN1,
            p384: &signature::ECDSA_P384_SHA384_ASN1,
        },
        "1.2.840.10045.4.3.4" => {
            return Err(CryptoError::UnsupportedAlgorithm(
                "ecdsa-with-SHA512 (1.2.840.10045.4.3.4)".into(),
            ))
        }
        _ => return Err(CryptoError::UnsupportedAlgorithm(oid)),
    };
    let does_not_verify = |_| CryptoError::Authentication("signature AUTH");
    match (scheme, cert.key()) {
        (
            Scheme::RsaPkcs1(parameters) | Scheme::RsaPss(parameters),
            CertKey::Rsa { modulus, exponent },
        ) => {
            let bits = modulus.len() * 8;
            if bits < 2048 {
                return Err(CryptoError::Invalid(format!(
                    "the certificate's RSA key has about {bits} bits; at least 2048 are required"
                )));
            }
            RsaPublicKeyComponents {
                n: modulus.as_slice(),
                e: exponent.as_slice(),
            }
            .verify(parameters, octets, signature)
            .map_err(does_not_verify)
        }
        (Scheme::Ecdsa { p256, p384 }, CertKey::Ec { curve, point }) => {
            let algorithm = match curve {
                EcCurve::P256 => p256,
                EcCurve::P384 => p384,
            };
            signature::UnparsedPublicKey::new(algorithm, point)
                .verify(octets, signature)
                .map_err(does_not_verify)
        }
        (_, CertKey::Other(key_algorithm)) => Err(CryptoError::UnsupportedAlgorithm(format!(
            "certificate key {key_algorithm}"
        ))),
        (_, _) => Err(CryptoError::Invalid(format!(
            "signature algorithm {oid} does not fit the certificate's key type"
        ))),
    }
}

/// ring verifies RSASSA-PSS with MGF1 over the same hash and a salt as long as the hash,
/// the parameters strongSwan and OpenSSL use by default.
fn pss_parameters(
    algorithm: &AlgorithmIdentifier<'_>,
) -> Result<&'static signature::RsaParameters, CryptoError> {
    let unsupported = |detail: String| {
        CryptoError::UnsupportedAlgorithm(format!("RSASSA-PSS ({OID_RSASSA_PSS}) with {detail}"))
    };
    let parameters = algorithm
        .parameters
        .as_ref()
        .and_then(|any| RsaSsaPssParams::try_from(any).ok())
        .ok_or_else(|| unsupported("missing or malformed parameters".into()))?;
    let hash = parameters.hash_algorithm_oid().to_id_string();
    let (ring_parameters, hash_len): (&'static signature::RsaParameters, u32) = match hash.as_str()
    {
        OID_SHA256 => (&signature::RSA_PSS_2048_8192_SHA256, 32),
        OID_SHA384 => (&signature::RSA_PSS_2048_8192_SHA384, 48),
        OID_SHA512 => (&signature::RSA_PSS_2048_8192_SHA512, 64),
        _ => return Err(unsupported(format!("hash {hash}"))),
    };
    let mask = parameters
        .mask_gen_algorithm()
        .map_err(|_| unsupported("a malformed mask generation function".into()))?;
    if mask.mgf.to_id_string() != OID_MGF1 || mask.hash.to_id_string() != hash {
        return Err(unsupported(format!(
            "mask generation {} over {}",
            mask.mgf.to_id_string(),
            mask.hash.to_id_string()
        )));
    }
    if parameters.salt_length() != hash_len || parameters.trailer_field() != 1 {
        return Err(unsupported(format!(
            "salt length {} (only the hash length, {hash_len}, is supported)",
            parameters.salt_length()
        )));
    }
    Ok(ring_parameters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::certs::certs_from_pem;
    use crate::crypto::keys::tests::{pattern, unhex};

    // Expected values: the output of ike/tests/vectors/gen_ike_vectors.py (Python hmac),
    // pasted unchanged.
    const PSK_SIGNED_OCTETS: &str = "\
    202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\
    404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f\
    606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f\
    808182838485868788898a8b8c8d8e8f9091929394959697a0a3a6a9acafb2b5\
    b8bbbec1c4c7cacdd0d3d6d9dcdfe2e5e8ebeef1f4f7fafda8f23f4ec8a8268c\
    1606bc4958f2c2e1c2832ea538947d0cc810bb11750653bd";
    const PSK_AUTH: &str = "0eac2e04212adc30faacfe56ea5e03241e478de5241dcaec06c3f681ef6f79f1";

    #[test]
    fn psk_auth_known_answer() {
        let id_body = [&[2u8, 0, 0, 0][..], b"gw1.example.net"].concat();
        let octets = signed_octets(
            PrfAlg::HmacSha256,
            &pattern(120, 0x20, 1),
            &pattern(32, 0xA0, 3),
            &pattern(32, 0x44, 7),
            &id_body,
        );
        assert_eq!(hex::encode(&octets), PSK_SIGNED_OCTETS);
        let psk = b"correct horse battery staple";
        let auth = psk_auth(PrfAlg::HmacSha256, psk, &octets);
        assert_eq!(hex::encode(&auth), PSK_AUTH);
        assert_eq!(verify_psk(PrfAlg::HmacSha256, psk, &octets, &auth), Ok(()));
    }

    #[test]
    fn wrong_psk_auth_is_rejected() {
        let octets = b"signed octets";
        let auth = psk_auth(PrfAlg::HmacSha384, b"secret", octets);
        let fails = |psk: &[u8], octets: &[u8], received: &[u8]| {
            verify_psk(PrfAlg::HmacSha384, psk, octets, received)
                == Err(CryptoError::Authentication("pre-shared key AUTH"))
        };
        assert!(fails(b"Secret", octets, &auth));
        assert!(fails(b"secret", b"signed octetz", &auth));
        assert!(fails(b"secret", octets, &auth[..auth.len() - 1]));
        assert!(fails(b"secret", octets, &[]));
        let mut flipped = auth.clone();
        flipped[0] ^= 0x80;
        assert!(fails(b"secret", octets, &flipped));
    }

    /// A self-signed certificate for `key` (rcgen), parsed.
    fn cert_for(key: &rcgen::KeyPair) -> PeerCert {
        let cert = rcgen::CertificateParams::new(vec!["gw1.example.net".to_string()])
            .unwrap()
            .self_signed(key)
            .unwrap();
        PeerCert::from_der(cert.der().to_vec()).unwrap()
    }

    const RSA_PKCS8: &str = include_str!("../../tests/vectors/rsa2048.pkcs8.pem");
    const RSA_PKCS1: &str = include_str!("../../tests/vectors/rsa2048.pkcs1.pem");
    const P256_SEC1: &str = include_str!("../../tests/vectors/p256.sec1.pem");
    const P256_PKCS8: &str = include_str!("../../tests/vectors/p256.pkcs8.pem");
    const P384_SEC1_NO_PUBLIC: &str = include_str!("../../tests/vectors/p384.sec1-no-public.pem");
    const P384_PKCS8: &str = include_str!("../../tests/vectors/p384.pkcs8.pem");
    const PSS_CERT: &str = include_str!("../../tests/vectors/pss-cert.pem");

    /// (name, signing key PEM, rcgen key for the certificate, expected AlgorithmIdentifier)
    fn signing_keys() -> Vec<(&'static str, String, rcgen::KeyPair, &'static [u8])> {
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        vec![
            (
                "RSA PKCS#8",
                RSA_PKCS8.into(),
                rcgen::KeyPair::from_pem(RSA_PKCS8).unwrap(),
                SHA256_WITH_RSA,
            ),
            (
                "RSA PKCS#1",
                RSA_PKCS1.into(),
                rcgen::KeyPair::from_pem(RSA_PKCS8).unwrap(),
                SHA256_WITH_RSA,
            ),
            ("P-256 rcgen", p256.serialize_pem(), p256, ECDSA_WITH_SHA256),
            ("P-384 rcgen", p384.serialize_pem(), p384, ECDSA_WITH_SHA384),
            (
                "P-256 SEC1",
                P256_SEC1.into(),
                rcgen::KeyPair::from_pem(P256_PKCS8).unwrap(),
                ECDSA_WITH_SHA256,
            ),
            (
                "P-384 SEC1 without public key",
                P384_SEC1_NO_PUBLIC.into(),
                rcgen::KeyPair::from_pem(P384_PKCS8).unwrap(),
                ECDSA_WITH_SHA384,
            ),
        ]
    }

    #[test]
    fn rfc7427_signatures_verify_and_tampering_fails() {
        let octets = pattern(300, 0x11, 7);
        for (name, pem, rcgen_key, algorithm) in signing_keys() {
            let key = SigningKey::from_pem(pem.as_bytes()).unwrap();
            let cert = cert_for(&rcgen_key);
            assert!(key.matches_certificate(&cert), "{name}");
            let auth = key.sign(&octets, &SignatureHash::ALL).unwrap();
            assert_eq!(usize::from(auth[0]), algorithm.len(), "{name}");
            assert_eq!(&auth[1..=algorithm.len()], algorithm, "{name}");
            assert_eq!(verify_signature(&cert, &auth, &octets), Ok(()), "{name}");

            let mut tampered_octets = octets.clone();
            tampered_octets[150] ^= 1;
            assert_eq!(
                verify_signature(&cert, &auth, &tampered_octets),
                Err(CryptoError::Authentication("signature AUTH")),
                "{name}"
            );
            let mut tampered_signature = auth.clone();
            let last = tampered_signature.len() - 1;
            tampered_signature[last] ^= 1;
            assert!(
                verify_signature(&cert, &tampered_signature, &octets).is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn keys_do_not_match_other_certificates() {
        let keys = signing_keys();
        let certs: Vec<PeerCert> = keys.iter().map(|(_, _, key, _)| cert_for(key)).collect();
        for (index, (name, pem, _, _)) in keys.iter().enumerate() {
            let key = SigningKey::from_pem(pem.as_bytes()).unwrap();
            for (other, cert) in certs.iter().enumerate() {
                // The two RSA entries share one key.
                let same_key = index == other || (index < 2 && other < 2);
                assert_eq!(key.matches_certificate(cert), same_key, "{name} vs {other}");
            }
        }
    }

    #[test]
    fn rsa_hash_follows_the_peers_list() {
        let key = SigningKey::from_pem(RSA_PKCS8.as_bytes()).unwrap();
        let cert = certs_from_pem(PSS_CERT.as_bytes()).unwrap().remove(0);
        for (peer_hashes, expected) in [
            (&[][..], SHA256_WITH_RSA),
            (
                &[SignatureHash::Sha512, SignatureHash::Sha256][..],
                SHA256_WITH_RSA,
            ),
            (
                &[SignatureHash::Sha512, SignatureHash::Sha384][..],
                SHA384_WITH_RSA,
            ),
            (&[SignatureHash::Sha512][..], SHA512_WITH_RSA),
        ] {
            let auth = key.sign(b"octets", peer_hashes).unwrap();
            assert_eq!(&auth[1..=expected.len()], expected, "{peer_hashes:?}");
            assert_eq!(verify_signature(&cert, &auth, b"octets"), Ok(()));
        }
    }

    // RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32) made by Python's `cryptography` with the key
    // of pss-cert.pem: the output of ike/tests/vectors/gen_ike_vectors.py, pasted unchanged.
    const PSS_OCTETS: &[u8] = b"IKE_AUTH signed octets for the RSASSA-PSS known answer";
    const PSS_AUTH_DATA: &str = "\
    43304106092a864886f70d01010a3034a00f300d060960864801650304020105\
    00a11c301a06092a864886f70d010108300d06096086480165030402010500a2\
    030201204134de3c78c6ab52982f70747ecf192d26d662ad1a15a641ed4bfc69\
    82f018b80b6fb86d608588171107ceed09be0236403bb7163e30acbaabc9479a\
    f7e64beb46d5739e1304e21fa918fcaa34b2f259dc7478bbfe1fbf9007cfacfa\
    d31a045cf413eb885e5c6a4dfaf180064809f07efc38deb74754f2afbfb574f4\
    82ce1fd015bf5cd086ce83fadad60e300e6f66a229e5f14e763044c3f4df61da\
    0caf9d0a11bd4059a9e1bc653840a65823cc03f16a6f409adf317a7fd4e43ea3\
    fc6560bc3b3639465d0a120184ce60a9556ed6378181e8fa39f61db1432aa871\
    a3a6ed292b62f26c43fe98587e848d6eca0a3e1d0fbf72021f6aedae5460f6e5\
    f07f79f2";

    #[test]
    fn rsassa_pss_from_python_verifies() {
        let cert = certs_from_pem(PSS_CERT.as_bytes()).unwrap().remove(0);
        let auth = unhex(PSS_AUTH_DATA);
        assert_eq!(verify_signature(&cert, &auth, PSS_OCTETS), Ok(()));
        assert_eq!(
            verify_signature(&cert, &auth, b"other octets"),
            Err(CryptoError::Authentication("signature AUTH"))
        );
        // The same key signs PKCS#1 v1.5 for us, and matches the certificate.
        assert!(SigningKey::from_pem(RSA_PKCS1.as_bytes())
            .unwrap()
            .matches_certificate(&cert));
    }

    #[test]
    fn unsupported_or_malformed_auth_data_is_an_error() {
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = cert_for(&p256);
        let signature = [0x30u8; 70];
        let with_algorithm =
            |algorithm: &[u8]| [&[algorithm.len() as u8][..], algorithm, &signature].concat();
        // sha1WithRSAEncryption and ecdsa-with-SHA512: named in the error.
        let sha1_rsa = unhex("300d06092a864886f70d0101050500");
        assert_eq!(
            verify_signature(&cert, &with_algorithm(&sha1_rsa), b"x"),
            Err(CryptoError::UnsupportedAlgorithm(
                "1.2.840.113549.1.1.5".into()
            ))
        );
        let ecdsa_sha512 = unhex("300a06082a8648ce3d040304");
        let error = verify_signature(&cert, &with_algorithm(&ecdsa_sha512), b"x").unwrap_err();
        assert!(error.to_string().contains("1.2.840.10045.4.3.4"), "{error}");
        // An RSA algorithm against an ECDSA certificate.
        assert!(matches!(
            verify_signature(&cert, &with_algorithm(SHA256_WITH_RSA), b"x"),
            Err(CryptoError::Invalid(_))
        ));
        for garbage in [
            &[][..],
            &[0x00],
            &[0x0c],
            &[0xff, 0x30, 0x0a],
            &with_algorithm(&[0x30, 0x03, 0x06, 0x01])[..],
            &with_algorithm(ECDSA_WITH_SHA256)[..1 + ECDSA_WITH_SHA256.len()],
        ] {
            assert!(
                verify_signature(&cert, garbage, b"x").is_err(),
                "{garbage:02x?}"
            );
        }
    }

    #[test]
    fn unreadable_private_keys_are_errors_without_key_material() {
        let truncated = &P256_SEC1[..P256_SEC1.len() / 2];
        let mut corrupted = P256_PKCS8.to_string();
        corrupted.replace_range(40..60, "AAAAAAAAAAAAAAAAAAAA");
        for bad in [
            "",
            "not a key",
            truncated,
            corrupted.as_str(),
            PSS_CERT,
            "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
            "-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n",
        ] {
            let error = SigningKey::from_pem(bad.as_bytes()).unwrap_err();
            assert!(matches!(error, CryptoError::PrivateKey(_)), "{error}");
            let text = error.to_string();
            assert!(!text.contains("MIG") && !text.contains("AAAA"), "{text}");
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let key = SigningKey::from_pem(P256_SEC1.as_bytes()).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(ECDSA P-256, ***)");
    }

    #[test]
    fn signature_hash_ids_are_rfc7427s() {
        assert_eq!(SignatureHash::from_id(2), Some(SignatureHash::Sha256));
        assert_eq!(SignatureHash::from_id(4), Some(SignatureHash::Sha512));
        assert_eq!(SignatureHash::from_id(1), None); // SHA-1
        assert_eq!(SignatureHash::Sha384.id(), 3);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_auth_data_and_pem_never_panic(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        ) {
            let cert = certs_from_pem(PSS_CERT.as_bytes()).unwrap().remove(0);
            let _ = verify_signature(&cert, &data, b"octets");
            // The DER parsers behind the PEM layer.
            let _ = ecdsa_key(&data, None, &SystemRandom::new());
            let _ = pkcs8_parts(&data);
            let _ = SigningKey::from_pem(&data);
        }
    }
}
