//! The symmetric protection of IKE's Encrypted payload and of ESP, which have the same
//! shape: associated data in the clear (the IKE header through the SK payload header; the
//! ESP header), an IV, the encrypted data (plaintext, padding, trailer), and an ICV.
//!
//! - AES-GCM (RFC 4106 for ESP, RFC 5282 for IKE): the nonce is the 4-byte salt from the
//!   keying material followed by the 8-byte IV; the associated data is authenticated.
//! - AES-CBC with HMAC-SHA2 (RFC 3602, RFC 4868): the ICV is the truncated HMAC over
//!   associated data, IV and ciphertext (encrypt-then-MAC).
//!
//! Both work in place on caller-owned buffers and allocate nothing, so the ESP data path
//! can call them per packet.

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use subtle::ConstantTimeEq;

use super::CryptoError;
use crate::algorithms::{EncrAlg, IntegAlg};

/// One direction's keys for one SA (IKE or ESP).
pub struct Transform {
    cipher: Cipher,
}

enum Cipher {
    Gcm {
        key: Box<LessSafeKey>,
        salt: [u8; 4],
    },
    Cbc {
        aes: Aes,
        mac: hmac::Key,
        icv_len: usize,
    },
}

/// Boxed: the expanded key schedules are large, and a `Transform` lives as long as its SA.
enum Aes {
    Aes128(Box<aes::Aes128>),
    Aes256(Box<aes::Aes256>),
}

impl Aes {
    /// CBC encryption in place; `data` is block aligned (checked by the caller).
    fn cbc_encrypt(&self, iv: &[u8], data: &mut [u8]) {
        let mut chain = [0u8; AES_BLOCK];
        chain.copy_from_slice(iv);
        for block in data.chunks_exact_mut(AES_BLOCK) {
            for (byte, prev) in block.iter_mut().zip(chain) {
                *byte ^= prev;
            }
            let block = GenericArray::from_mut_slice(block);
            match self {
                Aes::Aes128(aes) => aes.encrypt_block(block),
                Aes::Aes256(aes) => aes.encrypt_block(block),
            }
            chain.copy_from_slice(block);
        }
    }

    /// CBC decryption in place, eight blocks at a time so AES-NI can pipeline them.
    fn cbc_decrypt(&self, iv: &[u8], data: &mut [u8]) {
        const PARALLEL: usize = 8;
        let mut chain = GenericArray::clone_from_slice(iv);
        let mut blocks = [GenericArray::default(); PARALLEL];
        for chunk in data.chunks_mut(AES_BLOCK * PARALLEL) {
            let count = chunk.len() / AES_BLOCK;
            for (block, bytes) in blocks.iter_mut().zip(chunk.chunks_exact(AES_BLOCK)) {
                block.copy_from_slice(bytes);
            }
            let next_chain = blocks[count - 1];
            match self {
                Aes::Aes128(aes) => aes.decrypt_blocks(&mut blocks[..count]),
                Aes::Aes256(aes) => aes.decrypt_blocks(&mut blocks[..count]),
            }
            for (i, bytes) in chunk.chunks_exact_mut(AES_BLOCK).enumerate() {
                let previous = if i == 0 { &chain } else { &blocks[i - 1] };
                // `bytes` still holds ciphertext block i, which block i + 1 needs next.
                let mut plain = blocks[i];
                for (p, c) in plain.iter_mut().zip(previous.iter()) {
                    *p ^= c;
                }
                blocks[i].copy_from_slice(bytes);
                bytes.copy_from_slice(&plain);
            }
            chain = next_chain;
        }
    }
}

const GCM_ICV_LEN: usize = 16;
const AES_BLOCK: usize = 16;

impl Transform {
    /// `encr_keymat` is the cipher's key (plus the 4-byte salt for GCM), exactly
    /// [`EncrAlg::keymat_len`] bytes; `integ_key` is the HMAC key (empty for GCM).
    pub fn new(
        encr: EncrAlg,
        integ: Option<IntegAlg>,
        encr_keymat: &[u8],
        integ_key: &[u8],
    ) -> Result<Self, CryptoError> {
        expect_len("encryption key", encr_keymat, encr.keymat_len())?;
        let cipher = match (encr, integ) {
            (EncrAlg::AesGcm16 { key_bits }, None) => {
                let (key, salt) = encr_keymat.split_at(encr_keymat.len() - 4);
                let algorithm = if key_bits == 128 {
                    &aead::AES_128_GCM
                } else {
                    &aead::AES_256_GCM
                };
                let key = UnboundKey::new(algorithm, key)
                    .map_err(|_| CryptoError::Invalid("AES-GCM key rejected".into()))?;
                let mut salt_bytes = [0u8; 4];
                salt_bytes.copy_from_slice(salt);
                Cipher::Gcm {
                    key: Box::new(LessSafeKey::new(key)),
                    salt: salt_bytes,
                }
            }
            (EncrAlg::AesGcm16 { .. }, Some(_)) => {
                return Err(CryptoError::Invalid(
                    "AES-GCM takes no integrity algorithm".into(),
                ))
            }
            (EncrAlg::AesCbc { .. }, None) => {
                return Err(CryptoError::Invalid(
                    "AES-CBC needs an integrity algorithm".into(),
                ))
            }
            (EncrAlg::AesCbc { key_bits }, Some(integ)) => {
                expect_len("integrity key", integ_key, integ.key_len())?;
                let aes = if key_bits == 128 {
                    Aes::Aes128(Box::new(
                        aes::Aes128::new_from_slice(encr_keymat)
                            .map_err(|_| CryptoError::Invalid("AES-128 key rejected".into()))?,
                    ))
                } else {
                    Aes::Aes256(Box::new(
                        aes::Aes256::new_from_slice(encr_keymat)
                            .map_err(|_| CryptoError::Invalid("AES-256 key rejected".into()))?,
                    ))
                };
                let hash = match integ {
                    IntegAlg::HmacSha256_128 => hmac::HMAC_SHA256,
                    IntegAlg::HmacSha384_192 => hmac::HMAC_SHA384,
                    IntegAlg::HmacSha512_256 => hmac::HMAC_SHA512,
                };
                Cipher::Cbc {
                    aes,
                    mac: hmac::Key::new(hash, integ_key),
                    icv_len: integ.icv_len(),
                }
            }
        };
        Ok(Transform { cipher })
    }

    /// Bytes of IV sent with each message or packet.
    pub fn iv_len(&self) -> usize {
        match self.cipher {
            Cipher::Gcm { .. } => 8,
            Cipher::Cbc { .. } => AES_BLOCK,
        }
    }

    /// Bytes of the ICV that follows the encrypted data.
    pub fn icv_len(&self) -> usize {
        match self.cipher {
            Cipher::Gcm { .. } => GCM_ICV_LEN,
            Cipher::Cbc { icv_len, .. } => icv_len,
        }
    }

    /// The encrypted data's length must be a multiple of this (padding makes it so).
    pub fn block_len(&self) -> usize {
        match self.cipher {
            Cipher::Gcm { .. } => 1,
            Cipher::Cbc { .. } => AES_BLOCK,
        }
    }

    /// Encrypts `data` in place and writes the ICV. `iv` must be [`Self::iv_len`] bytes and
    /// never repeat under one key (for GCM a counter does; for CBC it must be
    /// unpredictable), `data` a multiple of [`Self::block_len`], `icv` [`Self::icv_len`].
    pub fn seal(
        &self,
        aad: &[u8],
        iv: &[u8],
        data: &mut [u8],
        icv: &mut [u8],
    ) -> Result<(), CryptoError> {
        expect_len("IV", iv, self.iv_len())?;
        expect_len("ICV", icv, self.icv_len())?;
        self.check_block_multiple(data)?;
        match &self.cipher {
            Cipher::Gcm { key, salt } => {
                let tag = key
                    .seal_in_place_separate_tag(gcm_nonce(salt, iv), Aad::from(aad), data)
                    .map_err(|_| CryptoError::Invalid("AES-GCM: message too long".into()))?;
                icv.copy_from_slice(tag.as_ref());
            }
            Cipher::Cbc { aes, mac, icv_len } => {
                aes.cbc_encrypt(iv, data);
                let tag = hmac_of(mac, aad, iv, data);
                icv.copy_from_slice(&tag.as_ref()[..*icv_len]);
            }
        }
        Ok(())
    }

    /// Checks the ICV and decrypts `data` in place. On any error `data` must be dropped:
    /// for GCM it may hold partial plaintext.
    pub fn open(
        &self,
        aad: &[u8],
        iv: &[u8],
        data: &mut [u8],
        icv: &[u8],
    ) -> Result<(), CryptoError> {
        expect_len("IV", iv, self.iv_len())?;
        expect_len("ICV", icv, self.icv_len())?;
        self.check_block_multiple(data)?;
        match &self.cipher {
            Cipher::Gcm { key, salt } => {
                let tag = aead::Tag::try_from(icv).map_err(|_| CryptoError::Integrity)?;
                key.open_in_place_separate_tag(gcm_nonce(salt, iv), Aad::from(aad), tag, data, 0..)
                    .map_err(|_| CryptoError::Integrity)?;
            }
            Cipher::Cbc { aes, mac, icv_len } => {
                // Encrypt-then-MAC: authenticate before touching the ciphertext.
                let tag = hmac_of(mac, aad, iv, data);
                if !bool::from(tag.as_ref()[..*icv_len].ct_eq(icv)) {
                    return Err(CryptoError::Integrity);
                }
                aes.cbc_decrypt(iv, data);
            }
        }
        Ok(())
    }

    fn check_block_multiple(&self, data: &[u8]) -> Result<(), CryptoError> {
        let block = self.block_len();
        if !data.len().is_multiple_of(block) {
            return Err(CryptoError::Invalid(format!(
                "encrypted data of {} bytes is not a multiple of the {block}-byte block",
                data.len()
            )));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.cipher {
            Cipher::Gcm { .. } => "aes-gcm-16",
            Cipher::Cbc { .. } => "aes-cbc+hmac",
        };
        write!(f, "Transform({kind}, keys ***)")
    }
}

fn gcm_nonce(salt: &[u8; 4], iv: &[u8]) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(salt);
    nonce[4..].copy_from_slice(iv);
    Nonce::assume_unique_for_key(nonce)
}

fn hmac_of(key: &hmac::Key, aad: &[u8], iv: &[u8], data: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(aad);
    context.update(iv);
    context.update(data);
    context.sign()
}

fn expect_len(what: &'static str, value: &[u8], expected: usize) -> Result<(), CryptoError> {
    if value.len() != expected {
        return Err(CryptoError::Length {
            what,
            got: value.len(),
            expected,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    /// GCM specification test case 16 (AES-256, 96-bit IV, with AAD), split the way
    /// RFC 4106 splits the nonce: 4 bytes of salt from the keymat, 8 bytes of IV.
    #[test]
    fn aes256_gcm_known_answer() {
        let key = unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        let keymat = [key.as_slice(), &unhex("cafebabe")].concat();
        let t = Transform::new(EncrAlg::AesGcm16 { key_bits: 256 }, None, &keymat, &[]).unwrap();
        let aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let iv = unhex("facedbaddecaf888");
        let plain = unhex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let mut data = plain.clone();
        let mut icv = [0u8; 16];
        t.seal(&aad, &iv, &mut data, &mut icv).unwrap();
        assert_eq!(
            data,
            unhex(
                "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
                 8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
            )
        );
        assert_eq!(icv.to_vec(), unhex("76fc6ece0f4e1768cddf8853bb2d551b"));
        t.open(&aad, &iv, &mut data, &icv).unwrap();
        assert_eq!(data, plain);
    }

    /// RFC 3602 §4 case #2 (AES-128-CBC), with the HMAC-SHA-256-128 ICV over
    /// aad | IV | ciphertext computed independently (Python `cryptography`).
    #[test]
    fn aes128_cbc_hmac_known_answer() {
        let key = unhex("c286696d887c9aa0611bbb3e2025a45a");
        let integ_key = [0x0bu8; 32];
        let t = Transform::new(
            EncrAlg::AesCbc { key_bits: 128 },
            Some(IntegAlg::HmacSha256_128),
            &key,
            &integ_key,
        )
        .unwrap();
        let iv = unhex("562e17996d093d28ddb3ba695a2e6f58");
        let plain = unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        let aad = unhex("0000100100000001");
        let mut data = plain.clone();
        let mut icv = [0u8; 16];
        t.seal(&aad, &iv, &mut data, &mut icv).unwrap();
        assert_eq!(
            data,
            unhex("d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1")
        );
        assert_eq!(icv.to_vec(), unhex(EXPECTED_CBC_ICV));
        t.open(&aad, &iv, &mut data, &icv).unwrap();
        assert_eq!(data, plain);
    }

    const EXPECTED_CBC_ICV: &str = "861597d0246052d7ccad58dafea4a492";

    /// Longer than one eight-block decryption chunk, and not a multiple of it.
    #[test]
    fn cbc_round_trips_across_decryption_chunks() {
        let t = Transform::new(
            EncrAlg::AesCbc { key_bits: 256 },
            Some(IntegAlg::HmacSha256_128),
            &[0x11; 32],
            &[0x22; 32],
        )
        .unwrap();
        let plain: Vec<u8> = (0..16 * 19).map(|i| i as u8).collect();
        let mut data = plain.clone();
        let mut icv = [0u8; 16];
        t.seal(b"hdr", &[0x33; 16], &mut data, &mut icv).unwrap();
        assert_ne!(data, plain);
        t.open(b"hdr", &[0x33; 16], &mut data, &icv).unwrap();
        assert_eq!(data, plain);
    }

    #[test]
    fn tampering_anywhere_is_caught() {
        for (encr, integ, keymat_len, integ_len) in [
            (EncrAlg::AesGcm16 { key_bits: 256 }, None, 36, 0),
            (
                EncrAlg::AesCbc { key_bits: 256 },
                Some(IntegAlg::HmacSha512_256),
                32,
                64,
            ),
        ] {
            let t =
                Transform::new(encr, integ, &vec![7u8; keymat_len], &vec![9u8; integ_len]).unwrap();
            let aad = [1u8; 8];
            let iv = vec![3u8; t.iv_len()];
            let mut data = vec![5u8; 64];
            let mut icv = vec![0u8; t.icv_len()];
            t.seal(&aad, &iv, &mut data, &mut icv).unwrap();
            for part in 0..4 {
                let (mut aad2, mut iv2, mut data2, mut icv2) =
                    (aad.to_vec(), iv.clone(), data.clone(), icv.clone());
                match part {
                    0 => aad2[0] ^= 1,
                    1 => iv2[0] ^= 1,
                    2 => data2[10] ^= 1,
                    _ => icv2[0] ^= 1,
                }
                assert_eq!(
                    t.open(&aad2, &iv2, &mut data2, &icv2),
                    Err(CryptoError::Integrity),
                    "{encr:?} part {part}"
                );
            }
        }
    }

    #[test]
    fn wrong_lengths_are_errors_not_panics() {
        assert!(matches!(
            Transform::new(EncrAlg::AesGcm16 { key_bits: 256 }, None, &[0; 32], &[]),
            Err(CryptoError::Length { .. })
        ));
        assert!(Transform::new(EncrAlg::AesCbc { key_bits: 256 }, None, &[0; 32], &[]).is_err());
        let t = Transform::new(
            EncrAlg::AesCbc { key_bits: 256 },
            Some(IntegAlg::HmacSha256_128),
            &[0; 32],
            &[0; 32],
        )
        .unwrap();
        let mut data = [0u8; 15];
        let mut icv = [0u8; 16];
        assert!(t.seal(&[], &[0; 16], &mut data, &mut icv).is_err());
        assert!(t.open(&[], &[0; 8], &mut [0u8; 16], &icv).is_err());
        assert!(t.open(&[], &[0; 16], &mut [0u8; 16], &[0; 3]).is_err());
    }

    #[test]
    fn debug_hides_keys() {
        let t =
            Transform::new(EncrAlg::AesGcm16 { key_bits: 128 }, None, &[0x41; 20], &[]).unwrap();
        assert_eq!(format!("{t:?}"), "Transform(aes-gcm-16, keys ***)");
    }
}
