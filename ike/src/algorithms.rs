//! The transforms Siteward negotiates, by their IANA "IKEv2 Transform Attribute" numbers.
//! One enum per transform type; crypto, the proposal parser and the message codec all use
//! these, so a new algorithm is added here first.

/// Transform type 1: encryption. Key sizes are in bits, as the Key Length attribute says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncrAlg {
    /// ENCR_AES_CBC (12), RFC 3602; needs an integrity algorithm.
    AesCbc { key_bits: u16 },
    /// ENCR_AES_GCM_16 (20), RFC 4106 (ESP) and RFC 5282 (IKE): AEAD with a 16-byte ICV.
    AesGcm16 { key_bits: u16 },
}

impl EncrAlg {
    pub const AES_CBC_ID: u16 = 12;
    pub const AES_GCM_16_ID: u16 = 20;

    pub fn transform_id(self) -> u16 {
        match self {
            EncrAlg::AesCbc { .. } => Self::AES_CBC_ID,
            EncrAlg::AesGcm16 { .. } => Self::AES_GCM_16_ID,
        }
    }

    /// The transform with its Key Length attribute; `None` for an unknown ID or a key size
    /// AES does not have.
    pub fn from_transform(id: u16, key_bits: Option<u16>) -> Option<Self> {
        let key_bits = key_bits?;
        if !matches!(key_bits, 128 | 256) {
            return None;
        }
        match id {
            Self::AES_CBC_ID => Some(EncrAlg::AesCbc { key_bits }),
            Self::AES_GCM_16_ID => Some(EncrAlg::AesGcm16 { key_bits }),
            _ => None,
        }
    }

    pub fn key_bits(self) -> u16 {
        match self {
            EncrAlg::AesCbc { key_bits } | EncrAlg::AesGcm16 { key_bits } => key_bits,
        }
    }

    pub fn is_aead(self) -> bool {
        matches!(self, EncrAlg::AesGcm16 { .. })
    }

    /// Bytes of keying material taken for this cipher: the key, plus the 4-byte salt for GCM
    /// (RFC 4106 §8.1, RFC 5282 §7.1).
    pub fn keymat_len(self) -> usize {
        let key = usize::from(self.key_bits()) / 8;
        if self.is_aead() {
            key + 4
        } else {
            key
        }
    }

    /// strongSwan's name (`aes256gcm16`, `aes128`).
    pub fn name(self) -> String {
        match self {
            EncrAlg::AesCbc { key_bits } => format!("aes{key_bits}"),
            EncrAlg::AesGcm16 { key_bits } => format!("aes{key_bits}gcm16"),
        }
    }
}

/// Transform type 3: integrity (not used with an AEAD cipher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntegAlg {
    /// AUTH_HMAC_SHA2_256_128 (12), RFC 4868.
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (13).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (14).
    HmacSha512_256,
}

impl IntegAlg {
    pub fn transform_id(self) -> u16 {
        match self {
            IntegAlg::HmacSha256_128 => 12,
            IntegAlg::HmacSha384_192 => 13,
            IntegAlg::HmacSha512_256 => 14,
        }
    }

    pub fn from_transform_id(id: u16) -> Option<Self> {
        match id {
            12 => Some(IntegAlg::HmacSha256_128),
            13 => Some(IntegAlg::HmacSha384_192),
            14 => Some(IntegAlg::HmacSha512_256),
            _ => None,
        }
    }

    /// Key length (RFC 4868: the hash's output length).
    pub fn key_len(self) -> usize {
        match self {
            IntegAlg::HmacSha256_128 => 32,
            IntegAlg::HmacSha384_192 => 48,
            IntegAlg::HmacSha512_256 => 64,
        }
    }

    /// Truncated ICV length.
    pub fn icv_len(self) -> usize {
        match self {
            IntegAlg::HmacSha256_128 => 16,
            IntegAlg::HmacSha384_192 => 24,
            IntegAlg::HmacSha512_256 => 32,
        }
    }

    /// strongSwan's name (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            IntegAlg::HmacSha256_128 => "sha256",
            IntegAlg::HmacSha384_192 => "sha384",
            IntegAlg::HmacSha512_256 => "sha512",
        }
    }
}

/// Transform type 2: pseudo-random function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrfAlg {
    /// PRF_HMAC_SHA2_256 (5).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7).
    HmacSha512,
}

impl PrfAlg {
    pub fn transform_id(self) -> u16 {
        match self {
            PrfAlg::HmacSha256 => 5,
            PrfAlg::HmacSha384 => 6,
            PrfAlg::HmacSha512 => 7,
        }
    }

    pub fn from_transform_id(id: u16) -> Option<Self> {
        match id {
            5 => Some(PrfAlg::HmacSha256),
            6 => Some(PrfAlg::HmacSha384),
            7 => Some(PrfAlg::HmacSha512),
            _ => None,
        }
    }

    /// Output length, which is also the preferred key length (SK_d, SK_pi, SK_pr).
    pub fn output_len(self) -> usize {
        match self {
            PrfAlg::HmacSha256 => 32,
            PrfAlg::HmacSha384 => 48,
            PrfAlg::HmacSha512 => 64,
        }
    }

    /// strongSwan's name (`prfsha256`).
    pub fn name(self) -> &'static str {
        match self {
            PrfAlg::HmacSha256 => "prfsha256",
            PrfAlg::HmacSha384 => "prfsha384",
            PrfAlg::HmacSha512 => "prfsha512",
        }
    }
}

/// Transform type 4: Diffie-Hellman group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 2048-bit MODP group (14), RFC 3526.
    Modp2048,
    /// 256-bit random ECP group (19), RFC 5903.
    Ecp256,
    /// 384-bit random ECP group (20), RFC 5903.
    Ecp384,
    /// Curve25519 (31), RFC 8031.
    Curve25519,
}

impl DhGroup {
    pub fn id(self) -> u16 {
        match self {
            DhGroup::Modp2048 => 14,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::Curve25519 => 31,
        }
    }

    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            14 => Some(DhGroup::Modp2048),
            19 => Some(DhGroup::Ecp256),
            20 => Some(DhGroup::Ecp384),
            31 => Some(DhGroup::Curve25519),
            _ => None,
        }
    }

    /// Length of the Key Exchange payload's data for this group.
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Modp2048 => 256,
            DhGroup::Ecp256 => 64,
            DhGroup::Ecp384 => 96,
            DhGroup::Curve25519 => 32,
        }
    }

    /// strongSwan's name (`x25519`, `ecp256`, `modp2048`).
    pub fn name(self) -> &'static str {
        match self {
            DhGroup::Modp2048 => "modp2048",
            DhGroup::Ecp256 => "ecp256",
            DhGroup::Ecp384 => "ecp384",
            DhGroup::Curve25519 => "x25519",
        }
    }
}

/// Transform type 5: extended sequence numbers (ESP only). Siteward offers and accepts
/// only 32-bit sequence numbers: its CHILD_SAs rekey long before 2^32 packets.
pub const NO_ESN: u16 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_ids_round_trip() {
        for encr in [
            EncrAlg::AesCbc { key_bits: 128 },
            EncrAlg::AesCbc { key_bits: 256 },
            EncrAlg::AesGcm16 { key_bits: 128 },
            EncrAlg::AesGcm16 { key_bits: 256 },
        ] {
            assert_eq!(
                EncrAlg::from_transform(encr.transform_id(), Some(encr.key_bits())),
                Some(encr)
            );
        }
        assert_eq!(EncrAlg::from_transform(20, Some(192)), None);
        assert_eq!(EncrAlg::from_transform(20, None), None);
        for integ in [
            IntegAlg::HmacSha256_128,
            IntegAlg::HmacSha384_192,
            IntegAlg::HmacSha512_256,
        ] {
            assert_eq!(
                IntegAlg::from_transform_id(integ.transform_id()),
                Some(integ)
            );
        }
        for prf in [PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512] {
            assert_eq!(PrfAlg::from_transform_id(prf.transform_id()), Some(prf));
        }
        for group in [
            DhGroup::Modp2048,
            DhGroup::Ecp256,
            DhGroup::Ecp384,
            DhGroup::Curve25519,
        ] {
            assert_eq!(DhGroup::from_id(group.id()), Some(group));
        }
    }

    #[test]
    fn gcm_keymat_includes_the_salt() {
        assert_eq!(EncrAlg::AesGcm16 { key_bits: 256 }.keymat_len(), 36);
        assert_eq!(EncrAlg::AesCbc { key_bits: 256 }.keymat_len(), 32);
    }
}
