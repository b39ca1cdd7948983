//! Key derivation: the IKE SA's keys (RFC 7296 §2.14), their rekeying (§2.18), and the
//! CHILD_SA's KEYMAT (§2.17).

use zeroize::Zeroizing;

use super::transform::Transform;
use super::CryptoError;
use crate::algorithms::{EncrAlg, IntegAlg, PrfAlg};
use crate::proposal::{EspSuite, IkeSuite};

/// The seven keys of an IKE SA.
pub struct IkeKeys {
    /// Derives CHILD_SA keys and the next IKE SA's SKEYSEED.
    pub sk_d: Zeroizing<Vec<u8>>,
    /// Integrity, initiator to responder (empty with AEAD).
    pub sk_ai: Zeroizing<Vec<u8>>,
    /// Integrity, responder to initiator (empty with AEAD).
    pub sk_ar: Zeroizing<Vec<u8>>,
    /// Encryption (with the 4-byte salt for GCM), initiator to responder.
    pub sk_ei: Zeroizing<Vec<u8>>,
    /// Encryption, responder to initiator.
    pub sk_er: Zeroizing<Vec<u8>>,
    /// Goes into the initiator's AUTH payload.
    pub sk_pi: Zeroizing<Vec<u8>>,
    /// Goes into the responder's AUTH payload.
    pub sk_pr: Zeroizing<Vec<u8>>,
}

impl IkeKeys {
    /// SKEYSEED = prf(Ni | Nr, g^ir); {SK_d|SK_ai|SK_ar|SK_ei|SK_er|SK_pi|SK_pr} = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr) (§2.14).
    /// With AEAD, SK_ai/SK_ar are empty and each SK_e is key+4-byte salt (EncrAlg::keymat_len).
    pub fn derive(
        suite: &IkeSuite,
        shared: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> IkeKeys {
        let skeyseed = skeyseed(suite.prf, shared, ni, nr);
        Self::expand(suite, &skeyseed, ni, nr, spi_i, spi_r)
    }

    /// IKE SA rekey (§2.18): SKEYSEED = prf_old(SK_d_old, g^ir(new) | Ni | Nr), then prf+ with the new suite's PRF.
    #[allow(clippy::too_many_arguments)]
    pub fn derive_rekey(
        suite: &IkeSuite,
        old_prf: PrfAlg,
        old_sk_d: &[u8],
        shared: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> IkeKeys {
        let skeyseed = Zeroizing::new(old_prf.compute(old_sk_d, &[shared, ni, nr]));
        Self::expand(suite, &skeyseed, ni, nr, spi_i, spi_r)
    }

    /// The keys from SKEYSEED: prf+(SKEYSEED, Ni | Nr | SPIi | SPIr), cut in the order of §2.14.
    fn expand(
        suite: &IkeSuite,
        skeyseed: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> IkeKeys {
        let prf_len = suite.prf.output_len();
        let integ_len = suite.integ.map_or(0, |integ| integ.key_len());
        let encr_len = suite.encr.keymat_len();
        let lengths = [
            prf_len, integ_len, integ_len, encr_len, encr_len, prf_len, prf_len,
        ];
        let keymat = suite.prf.plus(
            skeyseed,
            &[ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()],
            lengths.iter().sum(),
        );
        let [sk_d, sk_ai, sk_ar, sk_ei, sk_er, sk_pi, sk_pr] = split(&keymat, lengths);
        IkeKeys {
            sk_d,
            sk_ai,
            sk_ar,
            sk_ei,
            sk_er,
            sk_pi,
            sk_pr,
        }
    }

    /// (outbound, inbound) Transforms for the SK payload (crate::crypto::transform::Transform).
    pub fn transforms(
        &self,
        suite: &IkeSuite,
        initiator: bool,
    ) -> Result<(Transform, Transform), CryptoError> {
        directional(
            suite.encr,
            suite.integ,
            (&self.sk_ei, &self.sk_ai),
            (&self.sk_er, &self.sk_ar),
            initiator,
        )
    }
}

impl std::fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IkeKeys(***)")
    }
}

/// A CHILD_SA's keys, in the order KEYMAT yields them.
pub struct ChildKeys {
    /// Encryption (with the 4-byte salt for GCM), initiator to responder.
    pub encr_i: Zeroizing<Vec<u8>>,
    /// Integrity, initiator to responder (empty with AEAD).
    pub integ_i: Zeroizing<Vec<u8>>,
    /// Encryption, responder to initiator.
    pub encr_r: Zeroizing<Vec<u8>>,
    /// Integrity, responder to initiator.
    pub integ_r: Zeroizing<Vec<u8>>,
}

impl ChildKeys {
    /// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (§2.17); order: encr_i, integ_i, encr_r, integ_r.
    pub fn derive(
        prf: PrfAlg,
        sk_d: &[u8],
        suite: &EspSuite,
        pfs_shared: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
    ) -> ChildKeys {
        let encr_len = suite.encr.keymat_len();
        let integ_len = suite.integ.map_or(0, |integ| integ.key_len());
        let lengths = [encr_len, integ_len, encr_len, integ_len];
        let seed: Vec<&[u8]> = pfs_shared.into_iter().chain([ni, nr]).collect();
        let keymat = prf.plus(sk_d, &seed, lengths.iter().sum());
        let [encr_i, integ_i, encr_r, integ_r] = split(&keymat, lengths);
        ChildKeys {
            encr_i,
            integ_i,
            encr_r,
            integ_r,
        }
    }

    /// (outbound, inbound) ESP Transforms for the side that was initiator (`initiator = true`) or responder of the exchange.
    pub fn transforms(
        &self,
        suite: &EspSuite,
        initiator: bool,
    ) -> Result<(Transform, Transform), CryptoError> {
        directional(
            suite.encr,
            suite.integ,
            (&self.encr_i, &self.integ_i),
            (&self.encr_r, &self.integ_r),
            initiator,
        )
    }
}

impl std::fmt::Debug for ChildKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChildKeys(***)")
    }
}

/// (outbound, inbound) from the (encryption, integrity) keys of each direction.
fn directional(
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    from_initiator: (&[u8], &[u8]),
    from_responder: (&[u8], &[u8]),
    initiator: bool,
) -> Result<(Transform, Transform), CryptoError> {
    let from_initiator = Transform::new(encr, integ, from_initiator.0, from_initiator.1)?;
    let from_responder = Transform::new(encr, integ, from_responder.0, from_responder.1)?;
    Ok(if initiator {
        (from_initiator, from_responder)
    } else {
        (from_responder, from_initiator)
    })
}

/// SKEYSEED = prf(Ni | Nr, g^ir) (§2.14).
fn skeyseed(prf: PrfAlg, shared: &[u8], ni: &[u8], nr: &[u8]) -> Zeroizing<Vec<u8>> {
    let nonces = Zeroizing::new([ni, nr].concat());
    Zeroizing::new(prf.compute(&nonces, &[shared]))
}

/// Cuts `keymat` into consecutive keys of the given lengths (which sum to its length).
fn split<const N: usize>(keymat: &[u8], lengths: [usize; N]) -> [Zeroizing<Vec<u8>>; N] {
    let mut rest = keymat;
    lengths.map(|len| {
        let (key, tail) = rest.split_at(len);
        rest = tail;
        Zeroizing::new(key.to_vec())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::algorithms::DhGroup;

    /// `len` bytes `start, start + step, ...` (mod 256), as gen_ike_vectors.py makes its inputs.
    pub(crate) fn pattern(len: usize, start: u8, step: u8) -> Vec<u8> {
        (0..len)
            .map(|i| start.wrapping_add((i as u8).wrapping_mul(step)))
            .collect()
    }

    pub(crate) fn unhex(text: &str) -> Vec<u8> {
        hex::decode(text).unwrap()
    }

    const GCM_SUITE: IkeSuite = IkeSuite {
        encr: EncrAlg::AesGcm16 { key_bits: 256 },
        integ: None,
        prf: PrfAlg::HmacSha256,
        dh: DhGroup::Curve25519,
    };
    const CBC_SUITE: IkeSuite = IkeSuite {
        encr: EncrAlg::AesCbc { key_bits: 256 },
        integ: Some(IntegAlg::HmacSha256_128),
        prf: PrfAlg::HmacSha384,
        dh: DhGroup::Modp2048,
    };
    const SPI_I: u64 = 0x0102030405060708;
    const SPI_R: u64 = 0x1112131415161718;

    // Expected values: the output of ike/tests/vectors/gen_ike_vectors.py (Python hmac and
    // hashlib), pasted unchanged.
    const GCM_SKEYSEED: &str = "f0a137748368da9ed974169e0f62a372d11c0995f83bb780979827817f2acf61";
    const GCM_SK_D: &str = "b03576a700299bd9d732e02809092eb5d070d1bb79b388edbf7bd6fd659ca5fe";
    const GCM_SK_AI: &str = "";
    const GCM_SK_AR: &str = "";
    const GCM_SK_EI: &str = "\
    0e58b24dbf2e1e54a44e350a729e9b934fbdfa18c234a588cb8bea224695ff33\
    4d5174b2";
    const GCM_SK_ER: &str = "\
    ce1afdbc2b632cf2c24bc7723fa0d89eaddaa4c42f53ff1d8f53d70d8e2fb0f9\
    ffac39a9";
    const GCM_SK_PI: &str = "b4abc41c4cb40d7c732dfb5d75f99ac9b5ddf9185b0aef12c9d4606cae031e6d";
    const GCM_SK_PR: &str = "cc3570e38705eb11b5c3414e011333a977c2a55062a2083f528d6519953c2cce";
    const CBC_SKEYSEED: &str = "\
    3f7417184ac92dad3663e53e6cee27dfcf640db294d4403d55e8ce71458b06b9\
    92d3bc40057bddd067d03a3630a1d606";
    const CBC_SK_D: &str = "\
    1d3ca40ad2e486ac9f8855928a77b9c23f7e11c640b847645af5789d70e7d98f\
    b975a61c1d8f47553c1a24a45d3fcf85";
    const CBC_SK_AI: &str = "19c135399f2f7a546204c8d740c9b06a059ec3735eedc31355d53f231e217f2b";
    const CBC_SK_AR: &str = "40bb3f2c44c5b411c8719ff4a415e9f936f3cf829069e96418068cc3b80aa3d7";
    const CBC_SK_EI: &str = "2f33935e254b8b03f9e9e2a024e43f8b488462b1b0b59d6e003c5c1f10337dd2";
    const CBC_SK_ER: &str = "e9741a5b2e5cff475deef0f533f74b7e0327194ab7bf069c1a88fe9d5282ae3b";
    const CBC_SK_PI: &str = "\
    50e756699cfb175fe651cfb9f5f95d770d9106431edc0b1105e4ad6426680082\
    31e7126bd27185776ba828c9c31f10ac";
    const CBC_SK_PR: &str = "\
    a1af19cf233f519fa80660ba24029a7b32adbd44f38e012e4673d76f860f577b\
    f455d9ada0d98f29aa42832dbc55da10";
    const REKEY_SKEYSEED: &str = "d1b1618276e4d012a80fbf59b88b7e5d8d1a9de2a6019e269fc159a1e86b6a20";
    const REKEY_SK_D: &str = "\
    3f7ec32f457fc6dc3aa0cf247f8c8f438bce68c6f7a158c607cb6412b6a14d32\
    bafa8003c52ffc6898648b4352bbb2bb";
    const REKEY_SK_AI: &str = "";
    const REKEY_SK_AR: &str = "";
    const REKEY_SK_EI: &str = "\
    ba94c601f72961825164205d274e2819357c34c941bbd30c3ac4906f750d2bd5\
    e5e8b962";
    const REKEY_SK_ER: &str = "\
    e4f94f50fb807e036807f6e56ced36090692182f43047c839f285b61a082a5f4\
    1f6b95b1";
    const REKEY_SK_PI: &str = "\
    6e4f0963598e109950d49be75a4ffc6d1dce0fb366d387087027321bac6e931e\
    56bde06a203a5a03d7012825319526bd";
    const REKEY_SK_PR: &str = "\
    b4c2e484f3afd584ae473e32b4ec21e7c28790b8004f80529a1d60abe920f3ea\
    33f659cec9c12ea44315ea8aa6e6326f";
    const CHILD_GCM_ENCR_I: &str = "\
    bfa5c8700a6bf47b6d1073a0beb90e7c6db9965fc4a93464addae3267a7d907b\
    71a8887f";
    const CHILD_GCM_INTEG_I: &str = "";
    const CHILD_GCM_ENCR_R: &str = "\
    15024bcd87731ff64471504d04b43bd433bbbd7551b7ec08b794ec0598592bac\
    c5ce060f";
    const CHILD_GCM_INTEG_R: &str = "";
    const CHILD_CBC_PFS_ENCR_I: &str =
        "b4bad3e12dff9ae65e9608fe5bff9cce10e34ed091dd5ba751bbe4713d46122a";
    const CHILD_CBC_PFS_INTEG_I: &str =
        "5dd2a8c987113b855832834082896ba68dab227e4dc38ea0e6a336354b0f6dda";
    const CHILD_CBC_PFS_ENCR_R: &str =
        "d60ccfee7f60024677bc0749aea9e75f35cf048803f48534c32eefd23150a0d6";
    const CHILD_CBC_PFS_INTEG_R: &str =
        "aedadb96061d9504d136e1d5cfac85028c8476dd91cfd0574235dc2c1704d8f9";

    fn assert_ike_keys(keys: &IkeKeys, expected: [&str; 7]) {
        let actual = [
            &keys.sk_d,
            &keys.sk_ai,
            &keys.sk_ar,
            &keys.sk_ei,
            &keys.sk_er,
            &keys.sk_pi,
            &keys.sk_pr,
        ];
        let names = ["SK_d", "SK_ai", "SK_ar", "SK_ei", "SK_er", "SK_pi", "SK_pr"];
        for ((name, key), expected) in names.iter().zip(actual).zip(expected) {
            assert_eq!(hex::encode(key.as_slice()), expected, "{name}");
        }
    }

    /// aes256gcm16-prfsha256 (no SK_a, 36-byte SK_e) and aes256-sha256-prfsha384 with a
    /// MODP-sized shared secret and nonces of different lengths.
    #[test]
    fn ike_keys_known_answers() {
        let vectors = [
            (
                GCM_SUITE,
                [
                    pattern(32, 0x01, 7),
                    pattern(32, 0x10, 3),
                    pattern(32, 0x80, 5),
                ],
                GCM_SKEYSEED,
                [
                    GCM_SK_D, GCM_SK_AI, GCM_SK_AR, GCM_SK_EI, GCM_SK_ER, GCM_SK_PI, GCM_SK_PR,
                ],
            ),
            (
                CBC_SUITE,
                [
                    pattern(256, 0x33, 11),
                    pattern(16, 0x21, 1),
                    pattern(24, 0x42, 9),
                ],
                CBC_SKEYSEED,
                [
                    CBC_SK_D, CBC_SK_AI, CBC_SK_AR, CBC_SK_EI, CBC_SK_ER, CBC_SK_PI, CBC_SK_PR,
                ],
            ),
        ];
        for (suite, [shared, ni, nr], expected_skeyseed, expected_keys) in vectors {
            let seed = skeyseed(suite.prf, &shared, &ni, &nr);
            assert_eq!(hex::encode(seed.as_slice()), expected_skeyseed);
            let keys = IkeKeys::derive(&suite, &shared, &ni, &nr, SPI_I, SPI_R);
            assert_ike_keys(&keys, expected_keys);
        }
    }

    #[test]
    fn key_lengths_follow_the_suite() {
        let keys = IkeKeys::derive(&GCM_SUITE, &[1; 32], &[2; 32], &[3; 32], 1, 2);
        assert_eq!(keys.sk_ei.len(), 36);
        assert_eq!(keys.sk_er.len(), 36);
        assert!(keys.sk_ai.is_empty() && keys.sk_ar.is_empty());
        assert_eq!(
            (keys.sk_d.len(), keys.sk_pi.len(), keys.sk_pr.len()),
            (32, 32, 32)
        );

        let keys = IkeKeys::derive(&CBC_SUITE, &[1; 256], &[2; 32], &[3; 32], 1, 2);
        assert_eq!((keys.sk_ei.len(), keys.sk_er.len()), (32, 32));
        assert_eq!((keys.sk_ai.len(), keys.sk_ar.len()), (32, 32));
        assert_eq!(
            (keys.sk_d.len(), keys.sk_pi.len(), keys.sk_pr.len()),
            (48, 48, 48)
        );
    }

    /// The old SA's PRF makes SKEYSEED from the old SK_d; the new suite's PRF expands it.
    #[test]
    fn ike_rekey_known_answer() {
        let suite = IkeSuite {
            prf: PrfAlg::HmacSha384,
            ..GCM_SUITE
        };
        let (old_sk_d, shared) = (pattern(32, 0x5A, 13), pattern(32, 0x07, 29));
        let (ni, nr) = (pattern(32, 0x99, 7), pattern(32, 0x0F, 17));
        let keys = IkeKeys::derive_rekey(
            &suite,
            PrfAlg::HmacSha256,
            &old_sk_d,
            &shared,
            &ni,
            &nr,
            0xA1A2A3A4A5A6A7A8,
            0xB1B2B3B4B5B6B7B8,
        );
        assert_eq!(
            hex::encode(PrfAlg::HmacSha256.compute(&old_sk_d, &[&shared, &ni, &nr])),
            REKEY_SKEYSEED
        );
        assert_ike_keys(
            &keys,
            [
                REKEY_SK_D,
                REKEY_SK_AI,
                REKEY_SK_AR,
                REKEY_SK_EI,
                REKEY_SK_ER,
                REKEY_SK_PI,
                REKEY_SK_PR,
            ],
        );
    }

    fn assert_child_keys(keys: &ChildKeys, expected: [&str; 4]) {
        let actual = [&keys.encr_i, &keys.integ_i, &keys.encr_r, &keys.integ_r];
        for (index, (key, expected)) in actual.iter().zip(expected).enumerate() {
            assert_eq!(hex::encode(key.as_slice()), expected, "key {index}");
        }
    }

    const ESP_GCM: EspSuite = EspSuite {
        encr: EncrAlg::AesGcm16 { key_bits: 256 },
        integ: None,
        dh: None,
    };
    const ESP_CBC_PFS: EspSuite = EspSuite {
        encr: EncrAlg::AesCbc { key_bits: 256 },
        integ: Some(IntegAlg::HmacSha256_128),
        dh: Some(DhGroup::Curve25519),
    };

    #[test]
    fn child_keys_known_answer() {
        let sk_d = pattern(32, 0xC3, 19);
        let (ni, nr) = (pattern(32, 0x31, 3), pattern(32, 0x64, 23));
        let keys = ChildKeys::derive(PrfAlg::HmacSha256, &sk_d, &ESP_GCM, None, &ni, &nr);
        assert_child_keys(
            &keys,
            [
                CHILD_GCM_ENCR_I,
                CHILD_GCM_INTEG_I,
                CHILD_GCM_ENCR_R,
                CHILD_GCM_INTEG_R,
            ],
        );
        let pfs = pattern(32, 0xE0, 31);
        let keys = ChildKeys::derive(
            PrfAlg::HmacSha256,
            &sk_d,
            &ESP_CBC_PFS,
            Some(&pfs),
            &ni,
            &nr,
        );
        assert_child_keys(
            &keys,
            [
                CHILD_CBC_PFS_ENCR_I,
                CHILD_CBC_PFS_INTEG_I,
                CHILD_CBC_PFS_ENCR_R,
                CHILD_CBC_PFS_INTEG_R,
            ],
        );
    }

    /// What one side seals, the other opens; a side cannot open its own output.
    fn assert_paired(initiator: (Transform, Transform), responder: (Transform, Transform)) {
        let (i_out, i_in) = initiator;
        let (r_out, r_in) = responder;
        for (sender, receiver, own_inbound) in [(&i_out, &r_in, &i_in), (&r_out, &i_in, &r_in)] {
            let iv = vec![7u8; sender.iv_len()];
            let plain = vec![0x42u8; 32];
            let mut data = plain.clone();
            let mut icv = vec![0u8; sender.icv_len()];
            sender.seal(b"hdr", &iv, &mut data, &mut icv).unwrap();
            assert_eq!(
                own_inbound.open(b"hdr", &iv, &mut data.clone(), &icv),
                Err(CryptoError::Integrity)
            );
            receiver.open(b"hdr", &iv, &mut data, &icv).unwrap();
            assert_eq!(data, plain);
        }
    }

    #[test]
    fn transforms_pair_up_across_initiator_and_responder() {
        for suite in [GCM_SUITE, CBC_SUITE] {
            let keys = IkeKeys::derive(&suite, &[9; 32], &[1; 32], &[2; 32], 3, 4);
            assert_paired(
                keys.transforms(&suite, true).unwrap(),
                keys.transforms(&suite, false).unwrap(),
            );
        }
        for suite in [ESP_GCM, ESP_CBC_PFS] {
            let keys = ChildKeys::derive(
                PrfAlg::HmacSha512,
                &[5; 64],
                &suite,
                None,
                &[1; 32],
                &[2; 32],
            );
            assert_paired(
                keys.transforms(&suite, true).unwrap(),
                keys.transforms(&suite, false).unwrap(),
            );
        }
    }

    #[test]
    fn debug_hides_keys() {
        let keys = IkeKeys::derive(&GCM_SUITE, &[0x41; 32], &[1; 32], &[2; 32], 3, 4);
        assert_eq!(format!("{keys:?}"), "IkeKeys(***)");
        let child = ChildKeys::derive(
            PrfAlg::HmacSha256,
            &keys.sk_d,
            &ESP_GCM,
            None,
            &[1; 8],
            &[2; 8],
        );
        assert_eq!(format!("{child:?}"), "ChildKeys(***)");
    }
}
