//! Key derivation: the IKE SA's keys (RFC 7296 §2.14), their rekeying (§2.18), and the
//! CHILD_SA's KEYMAT (§2.17).

use zeroize::Zeroizing;

use super::transform::Transform;
use super::CryptoError;
use crate::algorithms::PrfAlg;
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
        let nonces = Zeroizing::new([ni, nr].concat());
        let skeyseed = Zeroizing::new(suite.prf.compute(&nonces, &[shared]));
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
        let from_initiator = Transform::new(suite.encr, suite.integ, &self.sk_ei, &self.sk_ai)?;
        let from_responder = Transform::new(suite.encr, suite.integ, &self.sk_er, &self.sk_ar)?;
        Ok(if initiator {
            (from_initiator, from_responder)
        } else {
            (from_responder, from_initiator)
        })
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
        let from_initiator = Transform::new(suite.encr, suite.integ, &self.encr_i, &self.integ_i)?;
        let from_responder = Transform::new(suite.encr, suite.integ, &self.encr_r, &self.integ_r)?;
        Ok(if initiator {
            (from_initiator, from_responder)
        } else {
            (from_responder, from_initiator)
        })
    }
}

impl std::fmt::Debug for ChildKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChildKeys(***)")
    }
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
