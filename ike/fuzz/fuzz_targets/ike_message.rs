//! Fuzzes the IKE message decoder: unprotected messages, and the protected path with a
//! fixed, known AES-GCM key, so that inputs get past the integrity check into the
//! padding, the inner payload chain and fragment reassembly.
//!
//! The first byte picks what the rest is:
//! - 0: a datagram, given to `decode`, `decode_header` and `decode_protected` as it is;
//! - 1: a first inner payload type, then the plaintext of an SK payload (inner payloads,
//!   padding, pad length), sealed here;
//! - 2: a first inner payload type, then fragments, each `number, total, length, bytes`,
//!   sealed here as SKF payloads and fed to one decoder.
#![no_main]

use siteward_ike::algorithms::EncrAlg;
use siteward_ike::crypto::transform::Transform;
use siteward_ike::message::{
    decode, decode_header, payload_type, Decoder, ExchangeType, Message, Protected, HEADER_LEN,
};

const KEY: [u8; 36] = [0x42; 36];

fn transform() -> Transform {
    Transform::new(EncrAlg::AesGcm16 { key_bits: 256 }, None, &KEY, &[])
        .expect("a 36-byte AES-256-GCM key and salt")
}

/// An SK (no fragment) or SKF datagram around `plaintext`, sealed with [`KEY`].
fn seal(t: &Transform, next: u8, fragment: Option<(u16, u16)>, plaintext: &[u8]) -> Vec<u8> {
    let template = Message {
        spi_i: 1,
        spi_r: 2,
        exchange: ExchangeType::IkeAuth,
        initiator: true,
        response: false,
        message_id: 1,
        payloads: vec![],
    };
    let mut datagram = template.encode();
    let header_len = if fragment.is_some() { 8 } else { 4 };
    let iv = [7u8; 8];
    let payload_len = header_len + iv.len() + plaintext.len() + t.icv_len();
    let Ok(payload_len_field) = u16::try_from(payload_len) else {
        return Vec::new();
    };
    datagram[16] = if fragment.is_some() {
        payload_type::SKF
    } else {
        payload_type::SK
    };
    datagram[24..28].copy_from_slice(&((HEADER_LEN + payload_len) as u32).to_be_bytes());
    datagram.extend_from_slice(&[next, 0]);
    datagram.extend_from_slice(&payload_len_field.to_be_bytes());
    if let Some((number, total)) = fragment {
        datagram.extend_from_slice(&number.to_be_bytes());
        datagram.extend_from_slice(&total.to_be_bytes());
    }
    let mut data = plaintext.to_vec();
    let mut icv = vec![0u8; t.icv_len()];
    t.seal(&datagram, &iv, &mut data, &mut icv)
        .expect("GCM seals any length");
    datagram.extend_from_slice(&iv);
    datagram.extend_from_slice(&data);
    datagram.extend_from_slice(&icv);
    datagram
}

/// A decoded message encodes, and its encoding decodes to the same message.
fn check_round_trip(t: &Transform, message: &Message) {
    let plain = message.try_encode().expect("a decoded message encodes");
    assert_eq!(decode(&plain).as_ref(), Ok(message));
    let sealed = message
        .encode_protected(t, &[9u8; 8])
        .expect("a decoded message seals");
    assert_eq!(
        Decoder::new().decode_protected(&sealed, t),
        Ok(Protected::Complete(message.clone()))
    );
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let t = transform();
    match mode % 3 {
        0 => {
            let _ = decode_header(rest);
            if let Ok(message) = decode(rest) {
                check_round_trip(&t, &message);
            }
            let _ = Decoder::new().decode_protected(rest, &t);
        }
        1 => {
            let Some((&next, plaintext)) = rest.split_first() else {
                return;
            };
            let datagram = seal(&t, next, None, plaintext);
            if let Ok(Protected::Complete(message)) = Decoder::new().decode_protected(&datagram, &t)
            {
                check_round_trip(&t, &message);
            }
        }
        _ => {
            let Some((&next, mut records)) = rest.split_first() else {
                return;
            };
            let mut decoder = Decoder::new();
            while let [number, total, len, tail @ ..] = records {
                let len = usize::from(*len).min(tail.len());
                let (chunk, after) = tail.split_at(len);
                let position = (u16::from(*number), u16::from(*total));
                let next = if *number == 1 { next } else { 0 };
                let datagram = seal(&t, next, Some(position), chunk);
                if let Ok(Protected::Complete(message)) = decoder.decode_protected(&datagram, &t) {
                    check_round_trip(&t, &message);
                }
                records = after;
            }
        }
    }
});
