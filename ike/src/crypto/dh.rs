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
use p256::elliptic_curve::ecdh::diffie_hellman;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ModulusSize, ToEncodedPoint};
use p256::elliptic_curve::{AffinePoint, CurveArithmetic, FieldBytesSize, PublicKey, SecretKey};
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
    /// Boxed to keep the enum small; `Zeroizing` wipes the exponent on drop.
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
            // Uncompressed SEC1 is 0x04 | x | y; IKE carries x | y.
            PrivateKey::Ecp256(secret) => uncompressed_point(secret)[1..].to_vec(),
            PrivateKey::Ecp384(secret) => uncompressed_point(secret)[1..].to_vec(),
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
            PrivateKey::Ecp256(secret) => ecdh_x(secret, peer_public)
                .ok_or_else(|| invalid("public value is not a point on the curve")),
            PrivateKey::Ecp384(secret) => ecdh_x(secret, peer_public)
                .ok_or_else(|| invalid("public value is not a point on the curve")),
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

/// The uncompressed SEC1 point (0x04 | x | y) of a P-256 or P-384 private key.
pub(crate) fn uncompressed_point<C>(secret: &SecretKey<C>) -> Vec<u8>
where
    C: CurveArithmetic,
    AffinePoint<C>: FromEncodedPoint<C> + ToEncodedPoint<C>,
    FieldBytesSize<C>: ModulusSize,
{
    secret
        .public_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

/// The x coordinate of `secret` times the peer's point, given as IKE carries it (x | y);
/// `None` if that is not a point on the curve. The parse rejects the identity too.
fn ecdh_x<C>(secret: &SecretKey<C>, peer_x_y: &[u8]) -> Option<Zeroizing<Vec<u8>>>
where
    C: CurveArithmetic,
    AffinePoint<C>: FromEncodedPoint<C> + ToEncodedPoint<C>,
    FieldBytesSize<C>: ModulusSize,
{
    let sec1 = [&[0x04u8][..], peer_x_y].concat();
    let peer = PublicKey::<C>::from_sec1_bytes(&sec1).ok()?;
    let shared = diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
    Some(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::tests::unhex;

    const ALL_GROUPS: [DhGroup; 4] = [
        DhGroup::Modp2048,
        DhGroup::Ecp256,
        DhGroup::Ecp384,
        DhGroup::Curve25519,
    ];

    #[test]
    fn every_group_agrees_with_itself_both_ways() {
        for group in ALL_GROUPS {
            let (a, a_public) = DhPrivate::generate(group).unwrap();
            let (b, b_public) = DhPrivate::generate(group).unwrap();
            assert_eq!(a.group(), group);
            assert_eq!(a_public.len(), group.public_len(), "{group:?}");
            assert_ne!(a_public, b_public);
            let shared_a = a.agree(&b_public).unwrap();
            let shared_b = b.agree(&a_public).unwrap();
            assert_eq!(shared_a, shared_b, "{group:?}");
            let expected_len = match group {
                DhGroup::Modp2048 => 256,
                DhGroup::Ecp256 | DhGroup::Curve25519 => 32,
                DhGroup::Ecp384 => 48,
            };
            assert_eq!(shared_a.len(), expected_len, "{group:?}");
        }
    }

    /// RFC 7748 §6.1, both sides.
    #[test]
    fn x25519_rfc7748_known_answer() {
        let alice_private = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
        let alice_public = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
        let bob_private = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
        let bob_public = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
        let shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
        for (private, public, peer) in [
            (alice_private, alice_public, bob_public),
            (bob_private, bob_public, alice_public),
        ] {
            let (key, own_public) = DhPrivate::from_private(DhGroup::Curve25519, &unhex(private));
            assert_eq!(hex::encode(own_public), public);
            assert_eq!(
                hex::encode(key.agree(&unhex(peer)).unwrap().as_slice()),
                shared
            );
        }
    }

    /// RFC 5903 §8.1 and §8.2: the Key Exchange data is x | y, g^ir is x only.
    #[test]
    fn ecp_rfc5903_known_answers() {
        let vectors = [
            (
                DhGroup::Ecp256,
                "c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433",
                "dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef945d0c3772581180\
                 5271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58389e0577b8990bb3",
                "c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53",
                "d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63\
                 56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab",
                "d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de",
            ),
            (
                DhGroup::Ecp384,
                "099f3c7034d4a2c699884d73a375a67f7624ef7c6b3c0f160647b67414dce655\
                 e35b538041e649ee3faef896783ab194",
                "667842d7d180ac2cde6f74f37551f55755c7645c20ef73e31634fe72b4c55ee6\
                 de3ac808acb4bdb4c88732aee95f41aa\
                 9482ed1fc0eeb9cafc4984625ccfc23f65032149e0e144ada024181535a0f38e\
                 eb9fcff3c2c947dae69b4c634573a81c",
                "41cb0779b4bdb85d47846725fbec3c9430fab46cc8dc5060855cc9bda0aa2942\
                 e0308312916b8ed2960e4bd55a7448fc",
                "e558dbef53eecde3d3fccfc1aea08a89a987475d12fd950d83cfa41732bc509d\
                 0d1ac43a0336def96fda41d0774a3571\
                 dcfbec7aacf3196472169e838430367f66eebe3c6e70c416dd5f0c68759dd1ff\
                 f83fa40142209dff5eaad96db9e6386c",
                "11187331c279962d93d604243fd592cb9d0a926f422e47187521287e7156c5c4\
                 d603135569b9e9d09cf5d4a270f59746",
            ),
        ];
        for (group, i, g_i, r, g_r, g_ir) in vectors {
            for (private, public, peer) in [(i, g_i, g_r), (r, g_r, g_i)] {
                let (key, own_public) = DhPrivate::from_private(group, &unhex(private));
                assert_eq!(hex::encode(own_public), public, "{group:?}");
                let shared = key.agree(&unhex(peer)).unwrap();
                assert_eq!(hex::encode(shared.as_slice()), g_ir, "{group:?}");
            }
        }
    }

    // Expected values: the output of ike/tests/vectors/gen_ike_vectors.py (Python pow()
    // with the RFC 3526 prime), pasted unchanged.
    const MODP_PRIVATE_A: &str = "\
    9dc2e70c31567ba0c5ea0f34597ea3c8ed12375c81a6cbf0153a5f84a9cef318\
    3d6287acd1f61b40658aafd4f91e43688db2d7fc21466b90b5daff24496e93b8";
    const MODP_PUBLIC_A: &str = "\
    cf1025a9d0c57869083021a151cadcb4f9e1a177b3e094081d5d0773e9dc9cfa\
    79c95ebf6c455cfcebf7e1423d26b8ad2778ffafffef7325f8c6b603c3e60a82\
    94eb9dcfe77346f52e6e0feb6f594b33c23b74ac71bf69d186cf7a8d5c6ff93d\
    1f1f02493a57f752a0cea63dcf41698a9ead258e90543c568b7a17843484f4ac\
    dea715ac291c88ce0ae64484a33acfdc6ef570ba19b6aeb24cd5bc827acd6bfc\
    44b2fcd17c71d06f13bfdf00f04ff3d1431d52183378ce026d842afc0f3cd040\
    02f77e4bd1d31f482d3750414cfa2bebb6378eb6f599724b7cd12e02ae2cc9a8\
    5635f9e4db8be50e20232ba9bb1a5a1347f6438f0f454e5fde570848c8ca70bb";
    const MODP_PUBLIC_B: &str = "\
    63a0461224bedbc336a5049219dc957d9cb152745f7d4f0b8adc5c4c90f7d8dd\
    80481feb102d6655e60cecee189e48cb0790fdd00406313f261076716fcbb0ff\
    893c4121b96f52ca51c34e7637272d4b4cd6ca29e24f56787e5552cc4b9de4d3\
    cd7ad53917b13926286ab82d9f3d19c07ae238d8960e77d2e349c4ddfc230f35\
    54c86ca2b30b35308d861626a8ec546891152b65bb42d662b70078c87d0a29f0\
    1becc800872b0f7bd7986d796afe9813e0a9e4357aa47657cccce6c23b94dadf\
    069369684bdc8a40a446311ff3e40f9a36032bac738d2b75c1987c1c5ce4ba58\
    031c729d983f3f21ec8c234e392b9b13c8114b8b3f9ba30cf88bdda5d0f6b4be";
    const MODP_SHARED: &str = "\
    abb8b98e58b3822543e9d7ac53a7a26874ff07d768ed044bf690c3d979d7a30c\
    c4ac5680f5fa6717a8ed86ab6058857c4c013bc671c144cbcf6fd53c01bad63c\
    5eafa85835eb7e244eaf0fd9122e11b98550c028a87ab0b8a9f658ab646192de\
    ebfb128b881dedd3703ff1a5a638d48b04db90fa0e5478fffa4132988cadbc69\
    5a6edb74a44663fe6deafc7a228a6fc8242788b1340e913d5f1c3541273ac517\
    964b21c635b3a427d1f3af0a25ed38bdeefd35e9062f1412fbc04d295497dc87\
    176ef58ef956b022736983860f9847f3cef36ecda77942fa07a7d885b8b7406d\
    e8d20fd063eb8b9b5f604dfd06a64ede3d62f9c75cf15596eaf9762782cf26c1";

    #[test]
    fn modp2048_known_answer() {
        let (key, public) = DhPrivate::from_private(DhGroup::Modp2048, &unhex(MODP_PRIVATE_A));
        assert_eq!(hex::encode(public), MODP_PUBLIC_A);
        let shared = key.agree(&unhex(MODP_PUBLIC_B)).unwrap();
        assert_eq!(hex::encode(shared.as_slice()), MODP_SHARED);
    }

    fn agree_fresh(group: DhGroup, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        DhPrivate::generate(group).unwrap().0.agree(peer)
    }

    #[test]
    fn wrong_lengths_are_rejected() {
        for group in ALL_GROUPS {
            let (_, valid) = DhPrivate::generate(group).unwrap();
            for bad in [
                &[][..],
                &valid[..valid.len() - 1],
                &[valid.clone(), vec![0]].concat(),
            ] {
                assert!(
                    matches!(agree_fresh(group, bad), Err(CryptoError::Length { .. })),
                    "{group:?} with {} bytes",
                    bad.len()
                );
            }
        }
    }

    #[test]
    fn modp_degenerate_publics_are_rejected() {
        let p = MODP2048_PRIME.to_be_bytes();
        let p_minus_1 = MODP2048_PRIME.wrapping_sub(&U2048::ONE).to_be_bytes();
        let mut one = [0u8; 256];
        one[255] = 1;
        for bad in [[0u8; 256], one, p_minus_1, p, [0xff; 256]] {
            assert!(
                matches!(
                    agree_fresh(DhGroup::Modp2048, &bad),
                    Err(CryptoError::Invalid(_))
                ),
                "{}",
                hex::encode(&bad[248..])
            );
        }
        let mut two = [0u8; 256];
        two[255] = 2;
        assert!(agree_fresh(DhGroup::Modp2048, &two).is_ok());
    }

    #[test]
    fn ecp_points_off_the_curve_are_rejected() {
        for group in [DhGroup::Ecp256, DhGroup::Ecp384] {
            let (_, mut public) = DhPrivate::generate(group).unwrap();
            let last = public.len() - 1;
            public[last] ^= 1; // y no longer fits x
            assert!(matches!(
                agree_fresh(group, &public),
                Err(CryptoError::Invalid(_))
            ));
            let zeros = vec![0u8; group.public_len()];
            assert!(matches!(
                agree_fresh(group, &zeros),
                Err(CryptoError::Invalid(_))
            ));
            let big = vec![0xffu8; group.public_len()]; // coordinates above the field prime
            assert!(matches!(
                agree_fresh(group, &big),
                Err(CryptoError::Invalid(_))
            ));
        }
    }

    /// RFC 7748 §6.1: low-order points give an all-zero result.
    #[test]
    fn x25519_low_order_publics_are_rejected() {
        let mut one = [0u8; 32];
        one[0] = 1;
        let order_eight = unhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
        for bad in [&[0u8; 32][..], &one, &order_eight] {
            assert!(
                matches!(
                    agree_fresh(DhGroup::Curve25519, bad),
                    Err(CryptoError::Invalid(_))
                ),
                "{}",
                hex::encode(bad)
            );
        }
    }

    #[test]
    fn debug_names_the_group_only() {
        let (key, _) = DhPrivate::from_private(DhGroup::Curve25519, &[0x41; 32]);
        assert_eq!(format!("{key:?}"), "DhPrivate(x25519, ***)");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_peer_values_never_panic(
            group in proptest::sample::select(ALL_GROUPS.to_vec()),
            peer in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            let _ = agree_fresh(group, &peer);
        }
    }
}
