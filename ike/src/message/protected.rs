//! Protected messages: the Encrypted payload (SK, RFC 7296 §3.14) and its fragments
//! (SKF, RFC 7383 §2.5).
//!
//! ```text
//! IKE header | SK header | IV | inner payloads, padding, pad length | ICV
//!  \______ associated data ____/ \____________ encrypted ___________/
//! IKE header | SKF header, Fragment Number, Total Fragments | IV | ... | ICV
//! ```
//! The padding fills the cipher's block (16 bytes for CBC, none for GCM) and is zeros.

use super::decode::{decode_chain, parse_header, Context};
use super::encode::{header, payload_chain};
use super::{payload_type, Message, MessageError, HEADER_LEN};
use crate::crypto::transform::Transform;
use crate::crypto::CryptoError;
use crate::fragment::{self, Added, Reassembly, Rejected, SKF_HEADER_LEN};

/// Bytes of the SK payload's generic header.
const SK_HEADER_LEN: usize = 4;

/// What a protected datagram turned into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protected {
    Complete(Message),
    /// An authenticated SKF fragment was taken (or was a duplicate of one held); the
    /// message is not complete yet.
    Partial,
}

/// Where an SKF fragment sits in its message.
#[derive(Clone, Copy)]
struct FragmentPosition {
    number: u16,
    total: u16,
}

impl Message {
    /// Header + one SK payload holding `self.payloads`, sealed with `out`. `iv` is
    /// [`Transform::iv_len`] bytes from the caller: a counter for GCM, random for CBC.
    pub fn encode_protected(&self, out: &Transform, iv: &[u8]) -> Result<Vec<u8>, MessageError> {
        let (first, inner) = payload_chain(&self.payloads)?;
        seal(self, out, iv, first, &inner, None)
    }

    /// RFC 7383: [`Message::encode_protected`], cut into SKF fragments whose datagrams
    /// are at most `max_datagram` bytes (from the IKE header on; the caller accounts for
    /// the non-ESP marker and the IP and UDP headers). A message that fits is one plain
    /// SK datagram. Each datagram's IV comes from `next_iv`.
    pub fn encode_fragments(
        &self,
        out: &Transform,
        max_datagram: usize,
        next_iv: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Vec<Vec<u8>>, MessageError> {
        let (first, inner) = payload_chain(&self.payloads)?;
        let mut iv = vec![0u8; out.iv_len()];
        let whole = HEADER_LEN
            + SK_HEADER_LEN
            + out.iv_len()
            + padded_len(inner.len(), out.block_len())
            + out.icv_len();
        if whole <= max_datagram {
            next_iv(&mut iv);
            return Ok(vec![seal(self, out, &iv, first, &inner, None)?]);
        }
        let per_fragment = fragment::max_fragment_plaintext(
            max_datagram,
            out.iv_len(),
            out.icv_len(),
            out.block_len(),
        )
        .ok_or_else(|| {
            MessageError::Encode(format!(
                "a {max_datagram}-byte datagram cannot hold an encrypted fragment"
            ))
        })?;
        let total = inner.len().div_ceil(per_fragment);
        let total = u16::try_from(total)
            .ok()
            .filter(|&t| t <= fragment::MAX_FRAGMENTS)
            .ok_or_else(|| {
                MessageError::Encode(format!(
                    "{} bytes would need {total} fragments of {per_fragment} (at most {})",
                    inner.len(),
                    fragment::MAX_FRAGMENTS
                ))
            })?;
        inner
            .chunks(per_fragment)
            .zip(1..=total)
            .map(|(chunk, number)| {
                next_iv(&mut iv);
                let next = if number == 1 {
                    first
                } else {
                    payload_type::NONE
                };
                seal(
                    self,
                    out,
                    &iv,
                    next,
                    chunk,
                    Some(FragmentPosition { number, total }),
                )
            })
            .collect()
    }
}

/// Plaintext, padding and the pad length byte, rounded up to whole blocks.
fn padded_len(plaintext: usize, block: usize) -> usize {
    (plaintext + 1).div_ceil(block.max(1)) * block.max(1)
}

/// Builds one SK or SKF datagram around `plaintext` and seals it in place.
fn seal(
    message: &Message,
    out: &Transform,
    iv: &[u8],
    next_payload: u8,
    plaintext: &[u8],
    fragment: Option<FragmentPosition>,
) -> Result<Vec<u8>, MessageError> {
    if iv.len() != out.iv_len() {
        return Err(MessageError::Encode(format!(
            "IV of {} bytes, the transform takes {}",
            iv.len(),
            out.iv_len()
        )));
    }
    let encrypted_len = padded_len(plaintext.len(), out.block_len());
    let pad_len = encrypted_len - plaintext.len() - 1;
    let (kind, payload_header_len) = match fragment {
        Some(_) => (payload_type::SKF, SKF_HEADER_LEN),
        None => (payload_type::SK, SK_HEADER_LEN),
    };
    let payload_len = payload_header_len + iv.len() + encrypted_len + out.icv_len();
    let payload_len_field = u16::try_from(payload_len).map_err(|_| {
        MessageError::Encode(format!(
            "encrypted payload of {payload_len} bytes exceeds the 16-bit length"
        ))
    })?;
    let aad_len = HEADER_LEN + payload_header_len;
    let mut datagram = Vec::with_capacity(HEADER_LEN + payload_len);
    datagram.extend_from_slice(&header(message, kind, HEADER_LEN + payload_len)?);
    datagram.extend_from_slice(&[next_payload, 0]);
    datagram.extend_from_slice(&payload_len_field.to_be_bytes());
    if let Some(position) = fragment {
        datagram.extend_from_slice(&position.number.to_be_bytes());
        datagram.extend_from_slice(&position.total.to_be_bytes());
    }
    datagram.extend_from_slice(iv);
    datagram.extend_from_slice(plaintext);
    datagram.resize(datagram.len() + pad_len, 0);
    datagram.push(pad_len as u8);
    datagram.resize(datagram.len() + out.icv_len(), 0);

    let (aad, rest) = datagram.split_at_mut(aad_len);
    let (iv_field, rest) = rest.split_at_mut(iv.len());
    let (data, icv) = rest.split_at_mut(encrypted_len);
    out.seal(aad, iv_field, data, icv).map_err(|e| {
        MessageError::Encode(format!("sealing the {} payload: {e}", kind_name(kind)))
    })?;
    Ok(datagram)
}

fn kind_name(kind: u8) -> &'static str {
    if kind == payload_type::SKF {
        "SKF"
    } else {
        "SK"
    }
}

/// Verifies and decrypts SK messages, and reassembles SKF fragments (RFC 7383 §2.6): per
/// message ID and direction, each fragment authenticated before it is stored, in any
/// order, duplicates ignored, memory bounded (see [`crate::fragment`]). One per IKE SA.
#[derive(Default)]
pub struct Decoder {
    reassembly: Reassembly,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("messages_in_reassembly", &self.reassembly.pending())
            .finish()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages with fragments held, and the plaintext bytes they hold.
    pub fn reassembly_load(&self) -> (usize, usize) {
        (self.reassembly.pending(), self.reassembly.bytes())
    }

    /// Verifies and decrypts an SK message with the peer's `inbound` keys, or takes one
    /// SKF fragment of one. An integrity failure changes nothing here.
    pub fn decode_protected(
        &mut self,
        datagram: &[u8],
        inbound: &Transform,
    ) -> Result<Protected, MessageError> {
        let (mut message, first) = parse_header(datagram)?;
        let payload_header_len = match first {
            payload_type::SK => SK_HEADER_LEN,
            payload_type::SKF => SKF_HEADER_LEN,
            other => return Err(MessageError::NotProtected { first: other }),
        };
        let name = kind_name(first);
        let unauthenticated = |problem: String| MessageError::Malformed {
            location: format!("payload 1 ({name})"),
            problem,
            authenticated: false,
        };
        let body = &datagram[HEADER_LEN..];
        if body.len() < payload_header_len {
            return Err(unauthenticated(format!(
                "{} bytes cannot hold its header",
                body.len()
            )));
        }
        let next_payload = body[0];
        let declared = usize::from(u16::from_be_bytes([body[2], body[3]]));
        if declared != body.len() {
            return Err(unauthenticated(format!(
                "length {declared}, but {} bytes follow the IKE header (it must be the last payload)",
                body.len()
            )));
        }
        let position = if first == payload_type::SKF {
            let number = u16::from_be_bytes([body[4], body[5]]);
            let total = u16::from_be_bytes([body[6], body[7]]);
            fragment::check_numbers(number, total).map_err(unauthenticated)?;
            Some(FragmentPosition { number, total })
        } else {
            None
        };
        let what = match position {
            Some(p) => format!("SKF fragment {} of {}", p.number, p.total),
            None => "SK payload".to_string(),
        };
        let plaintext = open(datagram, HEADER_LEN + payload_header_len, inbound, &what)?;
        let (first_inner, plaintext) = match position {
            None => (next_payload, plaintext),
            Some(FragmentPosition { number, total }) => {
                let added = self.reassembly.add(
                    message.message_id,
                    message.response,
                    number,
                    total,
                    next_payload,
                    plaintext,
                );
                match added {
                    Ok(Added::Complete {
                        first_payload,
                        plaintext,
                    }) => (first_payload, plaintext),
                    Ok(Added::Stored | Added::Duplicate) => return Ok(Protected::Partial),
                    Err(Rejected::StaleTotal { held }) => {
                        return Err(MessageError::Fragment {
                            what,
                            problem: format!(
                                "dropped: {held} fragments are being reassembled for this message"
                            ),
                        })
                    }
                    Err(Rejected::TooLarge) => {
                        return Err(MessageError::Fragment {
                            what,
                            problem: format!(
                                "message dropped: it exceeds {} bytes",
                                fragment::MAX_MESSAGE_BYTES
                            ),
                        })
                    }
                }
            }
        };
        let context = Context {
            container: Some(name),
            authenticated: true,
        };
        message.payloads = decode_chain(&plaintext, first_inner, context)?;
        Ok(Protected::Complete(message))
    }
}

/// Checks and decrypts what follows the associated data (`datagram[..aad_len]`): IV,
/// encrypted data, ICV. Returns the plaintext without padding.
fn open(
    datagram: &[u8],
    aad_len: usize,
    inbound: &Transform,
    what: &str,
) -> Result<Vec<u8>, MessageError> {
    let (aad, rest) = datagram.split_at(aad_len);
    let (iv_len, icv_len) = (inbound.iv_len(), inbound.icv_len());
    if rest.len() < iv_len + 1 + icv_len {
        return Err(MessageError::Malformed {
            location: what.to_string(),
            problem: format!(
                "{} bytes cannot hold the {iv_len}-byte IV, a pad length and the {icv_len}-byte ICV",
                rest.len()
            ),
            authenticated: false,
        });
    }
    let (iv, rest) = rest.split_at(iv_len);
    let (encrypted, icv) = rest.split_at(rest.len() - icv_len);
    let mut data = encrypted.to_vec();
    inbound.open(aad, iv, &mut data, icv).map_err(|e| match e {
        CryptoError::Integrity => MessageError::Integrity {
            what: what.to_string(),
        },
        other => MessageError::Malformed {
            location: what.to_string(),
            problem: other.to_string(),
            authenticated: false,
        },
    })?;
    let pad_len = usize::from(data[data.len() - 1]);
    if pad_len + 1 > data.len() {
        return Err(MessageError::Malformed {
            location: what.to_string(),
            problem: format!(
                "pad length {pad_len} exceeds the {} decrypted bytes",
                data.len()
            ),
            authenticated: true,
        });
    }
    data.truncate(data.len() - pad_len - 1);
    Ok(data)
}
