//! IKE's pseudo-random function and prf+ (RFC 7296 §2.13), on ring's HMAC.

use ring::hmac;
use zeroize::Zeroizing;

use crate::algorithms::PrfAlg;

impl PrfAlg {
    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            PrfAlg::HmacSha256 => hmac::HMAC_SHA256,
            PrfAlg::HmacSha384 => hmac::HMAC_SHA384,
            PrfAlg::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    /// `prf(key, data[0] | data[1] | ...)`: the pieces are hashed in order without being
    /// copied together. HMAC takes keys of any length, so nonces serve as keys as they are.
    pub fn compute(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        let key = hmac::Key::new(self.hmac_algorithm(), key);
        sign_parts(&key, data).as_ref().to_vec()
    }

    /// `prf+(key, seed)` truncated to `len` bytes:
    /// `T1 = prf(K, S | 0x01)`, `Tn = prf(K, Tn-1 | S | n)`, output `T1 | T2 | ...`.
    ///
    /// The one-byte counter limits the output to 255 blocks; every key IKE derives is far
    /// shorter (at most a few hundred bytes), so asking for more is a programming error.
    pub fn plus(self, key: &[u8], seed: &[&[u8]], len: usize) -> Zeroizing<Vec<u8>> {
        let block_len = self.output_len();
        assert!(
            len <= 255 * block_len,
            "prf+ asked for {len} bytes, more than 255 blocks of {block_len}"
        );
        let key = hmac::Key::new(self.hmac_algorithm(), key);
        let mut out = Zeroizing::new(Vec::with_capacity(len.next_multiple_of(block_len)));
        let mut previous = Zeroizing::new(Vec::new());
        let mut counter: u8 = 1;
        while out.len() < len {
            let mut parts: Vec<&[u8]> = Vec::with_capacity(seed.len() + 2);
            parts.push(&previous);
            parts.extend_from_slice(seed);
            let counter_byte = [counter];
            parts.push(&counter_byte);
            let block = sign_parts(&key, &parts);
            previous = Zeroizing::new(block.as_ref().to_vec());
            out.extend_from_slice(&previous);
            counter = counter.wrapping_add(1);
        }
        out.truncate(len);
        out
    }
}

fn sign_parts(key: &hmac::Key, parts: &[&[u8]]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    for part in parts {
        context.update(part);
    }
    context.sign()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 (a key shorter than the block, data split in two pieces).
    #[test]
    fn compute_matches_rfc4231() {
        let data: [&[u8]; 2] = [b"what do ya want ", b"for nothing?"];
        assert_eq!(
            hex::encode(PrfAlg::HmacSha256.compute(b"Jefe", &data)),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(PrfAlg::HmacSha512.compute(b"Jefe", &data)),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    #[test]
    fn plus_output_is_a_prefix_of_longer_output() {
        let short = PrfAlg::HmacSha384.plus(b"key", &[b"seed"], 50);
        let long = PrfAlg::HmacSha384.plus(b"key", &[b"se", b"ed"], 200);
        assert_eq!(short.len(), 50);
        assert_eq!(long.len(), 200);
        assert_eq!(short[..], long[..50]);
        // The first block is prf(K, S | 0x01).
        assert_eq!(
            long[..48],
            PrfAlg::HmacSha384.compute(b"key", &[b"seed", &[1]])[..]
        );
    }
}
