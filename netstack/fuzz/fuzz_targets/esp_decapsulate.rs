//! Fuzzes ESP decapsulation with a fixed key. The first byte picks the suite (GCM or
//! CBC+HMAC) and the mode:
//! - raw: the rest goes into `decapsulate` as a packet off the wire;
//! - sealed: the rest is records `seq (4) | len (1) | decrypted payload (len)`, each sealed
//!   with the SA's key first, so the fuzzer reaches what only authentic packets reach
//!   (padding and trailer checks, the replay window) with contents of its choosing.
#![no_main]

use std::collections::HashSet;

use siteward_ike::algorithms::{EncrAlg, IntegAlg};
use siteward_ike::crypto::transform::Transform;
use siteward_netstack::ipsec::esp::{EspError, InboundSa, ESP_HEADER_LEN};

const SPI: u32 = 0x5157_0001;

fn transform(cbc: bool) -> Transform {
    if cbc {
        Transform::new(
            EncrAlg::AesCbc { key_bits: 256 },
            Some(IntegAlg::HmacSha256_128),
            &[0x11; 32],
            &[0x22; 32],
        )
    } else {
        Transform::new(EncrAlg::AesGcm16 { key_bits: 256 }, None, &[0x33; 36], &[])
    }
    .expect("fixed keys have the right lengths")
}

/// An authentic ESP packet around `decrypted`, cut to the cipher's block.
fn seal(sealer: &Transform, sequence: u32, decrypted: &[u8]) -> Vec<u8> {
    let data_len = decrypted.len() - decrypted.len() % sealer.block_len();
    let mut packet = SPI.to_be_bytes().to_vec();
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend(std::iter::repeat_n(0x44, sealer.iv_len()));
    packet.extend_from_slice(&decrypted[..data_len]);
    packet.extend(std::iter::repeat_n(0, sealer.icv_len()));
    let (header, rest) = packet.split_at_mut(ESP_HEADER_LEN);
    let (iv, rest) = rest.split_at_mut(sealer.iv_len());
    let (data, icv) = rest.split_at_mut(data_len);
    sealer
        .seal(header, iv, data, icv)
        .expect("layout built for the transform");
    packet
}

fn check_accepted(packet: &[u8], range: &std::ops::Range<usize>, sealer: &Transform) {
    let icv_start = packet.len() - sealer.icv_len();
    let pad_len = usize::from(packet[icv_start - 2]);
    assert_eq!(range.end + pad_len + 2, icv_start);
    assert_eq!(range.start, ESP_HEADER_LEN + sealer.iv_len());
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let cbc = mode & 1 == 1;
    let sealer = transform(cbc);
    let sa = InboundSa::new(SPI, transform(cbc), 64);
    if mode & 2 == 0 {
        let mut packet = rest.to_vec();
        if let Ok((range, _)) = sa.decapsulate(&mut packet) {
            check_accepted(&packet, &range, &sealer);
        }
        return;
    }
    let mut accepted = HashSet::new();
    while let [s0, s1, s2, s3, len, tail @ ..] = rest {
        let sequence = u32::from_be_bytes([*s0, *s1, *s2, *s3]);
        let (payload, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        let mut packet = seal(&sealer, sequence, payload);
        match sa.decapsulate(&mut packet) {
            Ok((range, _)) => {
                check_accepted(&packet, &range, &sealer);
                assert!(accepted.insert(sequence), "{sequence} accepted twice");
            }
            Err(EspError::Integrity) => panic!("an authentic packet failed its ICV"),
            Err(_) => {}
        }
    }
    assert_eq!(sa.auth_failures(), 0);
});
