//! Decoding with `ipsec-parser`, guarded.
//!
//! ipsec-parser 0.7 walks the header and the generic payload chain correctly, and its
//! SA, KE, ID, CERT, CERTREQ, Nonce and TS body parsers take the right lengths. Its
//! other body parsers do not, so those bodies are read here:
//! - Authentication: the three reserved bytes end up in `auth_data` and its last three
//!   bytes are lost;
//! - Notify: the data is 4 bytes short (a NAT_DETECTION hash loses its tail);
//! - Delete: the SPIs are 4 bytes short;
//! - Vendor ID: 8 bytes short, and an ID under 8 bytes fails the whole message.
//!
//! It also tolerates what RFC 7296 §3.3 says to check, so the results are checked:
//! trailing bytes in a proposal or after the last proposal and traffic selector (it
//! stops and drops them), transform lengths below 8, selector lengths that do not match
//! their type, and counts that do not match the entries.

use ipsec_parser::{
    parse_ikev2_header, parse_ikev2_payload_certificate, parse_ikev2_payload_certificate_request,
    parse_ikev2_payload_generic, parse_ikev2_payload_ident_init, parse_ikev2_payload_ident_resp,
    parse_ikev2_payload_kex, parse_ikev2_payload_nonce, parse_ikev2_payload_sa,
    parse_ikev2_payload_ts, IkeV2PayloadContent, IkeV2Proposal, TrafficSelectorPayload,
};

use super::{
    payload_name, payload_type, transform_type, ts_type, ExchangeType, IdPayload, Message,
    MessageError, Notify, Payload, ProposalWire, TrafficSelector, TransformWire, HEADER_LEN,
    IKE_VERSION,
};

/// The fixed header only: enough to find the IKE SA and check the message ID before
/// decrypting anything. The result's `payloads` is empty. Checks the major version and
/// that the header's length is the datagram's.
pub fn decode_header(datagram: &[u8]) -> Result<Message, MessageError> {
    Ok(parse_header(datagram)?.0)
}

/// Whether the datagram's first payload is SK or SKF: it goes to
/// [`super::Decoder::decode_protected`], not to [`decode`].
pub fn is_protected(datagram: &[u8]) -> bool {
    matches!(
        datagram.get(16),
        Some(&payload_type::SK) | Some(&payload_type::SKF)
    )
}

/// Decodes an unprotected message (IKE_SA_INIT, or an error notify sent before keys
/// exist). A message whose first payload is SK or SKF is [`MessageError::Protected`].
pub fn decode(datagram: &[u8]) -> Result<Message, MessageError> {
    let (mut message, first) = parse_header(datagram)?;
    if first == payload_type::SK || first == payload_type::SKF {
        return Err(MessageError::Protected { first });
    }
    message.payloads = decode_chain(&datagram[HEADER_LEN..], first, Context::UNPROTECTED)?;
    Ok(message)
}

/// The header's fields (payloads empty) and the first payload's type.
pub(super) fn parse_header(datagram: &[u8]) -> Result<(Message, u8), MessageError> {
    if datagram.len() < HEADER_LEN {
        return Err(MessageError::TooShort {
            len: datagram.len(),
        });
    }
    let (_, header) = parse_ikev2_header(datagram).map_err(|_| MessageError::TooShort {
        len: datagram.len(),
    })?;
    if header.maj_ver != IKE_VERSION >> 4 {
        return Err(MessageError::UnsupportedVersion {
            major: header.maj_ver,
        });
    }
    if usize::try_from(header.length).ok() != Some(datagram.len()) {
        return Err(MessageError::LengthMismatch {
            header: header.length,
            actual: datagram.len(),
        });
    }
    let message = Message {
        spi_i: header.init_spi,
        spi_r: header.resp_spi,
        exchange: ExchangeType::from(header.exch_type.0),
        initiator: header.flags & super::flags::INITIATOR != 0,
        response: header.flags & super::flags::RESPONSE != 0,
        message_id: header.msg_id,
        payloads: Vec::new(),
    };
    Ok((message, header.next_payload.0))
}

/// Where a payload chain is, for error messages and [`MessageError::notify`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Context {
    /// "SK" or "SKF" when the chain was inside one.
    pub container: Option<&'static str>,
    pub authenticated: bool,
}

impl Context {
    pub const UNPROTECTED: Context = Context {
        container: None,
        authenticated: false,
    };

    fn location(self, index: usize, kind: u8) -> String {
        let name = payload_name(kind);
        let place = match self.container {
            Some(container) => format!(" inside {container}"),
            None => String::new(),
        };
        if name == "unknown" {
            format!("payload {index} (type {kind}){place}")
        } else {
            format!("payload {index} ({name}){place}")
        }
    }

    fn error(self, location: String, problem: impl Into<String>) -> MessageError {
        MessageError::Malformed {
            location,
            problem: problem.into(),
            authenticated: self.authenticated,
        }
    }
}

/// Decodes a chain of payloads that starts with type `first` and must fill `data`.
/// SK and SKF are not allowed in it: an unprotected message has none after its first
/// payload, and a decrypted one has none inside.
pub(super) fn decode_chain(
    mut data: &[u8],
    first: u8,
    context: Context,
) -> Result<Vec<Payload>, MessageError> {
    let mut payloads = Vec::new();
    let mut kind = first;
    let mut index = 1;
    while kind != payload_type::NONE {
        let location = context.location(index, kind);
        if kind == payload_type::SK || kind == payload_type::SKF {
            return Err(context.error(location, "an encrypted payload cannot appear here"));
        }
        if data.is_empty() {
            return Err(context.error(location, "announced, but the message ends"));
        }
        let (rest, generic) = parse_ikev2_payload_generic(data).map_err(|_| {
            let problem = match data.get(2..4) {
                Some(length) => format!(
                    "length {} does not fit the {} bytes left",
                    u16::from_be_bytes([length[0], length[1]]),
                    data.len()
                ),
                None => format!("header truncated ({} bytes left)", data.len()),
            };
            context.error(location.clone(), problem)
        })?;
        let payload = decode_body(kind, generic.hdr.critical, generic.payload)
            .map_err(|problem| context.error(location, problem))?;
        payloads.push(payload);
        kind = generic.hdr.next_payload_type.0;
        data = rest;
        index += 1;
    }
    if !data.is_empty() {
        return Err(context.error(
            format!("after payload {}", index - 1),
            format!("{} bytes follow the last payload", data.len()),
        ));
    }
    Ok(payloads)
}

/// One payload body (after the 4-byte generic header). The error says what is wrong
/// with it; the caller adds where.
fn decode_body(kind: u8, critical: bool, body: &[u8]) -> Result<Payload, String> {
    use payload_type as t;
    // Bodies are at most 65,531 bytes: the generic header's length is 16 bits.
    let len = u16::try_from(body.len()).map_err(|_| "longer than 65,535 bytes".to_string())?;
    let payload = match kind {
        t::SA => match parse_ikev2_payload_sa(body, len) {
            Ok((&[], IkeV2PayloadContent::SA(proposals))) => {
                Payload::Sa(convert_proposals(&proposals)?)
            }
            Ok((rest, _)) => {
                return Err(format!(
                    "{} bytes do not form a proposal (bad length or transform count)",
                    rest.len()
                ))
            }
            Err(_) => return Err("no well-formed proposal".into()),
        },
        t::KE => match parse_ikev2_payload_kex(body, len) {
            Ok((_, IkeV2PayloadContent::KE(ke))) => Payload::Ke {
                group: ke.dh_group.0,
                data: ke.kex_data.to_vec(),
            },
            _ => return Err(too_short(body, 4)),
        },
        t::IDI | t::IDR => {
            let parsed = if kind == t::IDI {
                parse_ikev2_payload_ident_init(body, len)
            } else {
                parse_ikev2_payload_ident_resp(body, len)
            };
            let id = match parsed {
                Ok((_, IkeV2PayloadContent::IDi(id))) | Ok((_, IkeV2PayloadContent::IDr(id))) => {
                    IdPayload {
                        id_type: id.id_type.0,
                        data: id.ident_data.to_vec(),
                    }
                }
                _ => return Err(too_short(body, 4)),
            };
            if kind == t::IDI {
                Payload::IdI(id)
            } else {
                Payload::IdR(id)
            }
        }
        t::CERT => match parse_ikev2_payload_certificate(body, len) {
            Ok((_, IkeV2PayloadContent::Certificate(cert))) => Payload::Cert {
                encoding: cert.cert_encoding.0,
                data: cert.cert_data.to_vec(),
            },
            _ => return Err(too_short(body, 1)),
        },
        t::CERTREQ => match parse_ikev2_payload_certificate_request(body, len) {
            Ok((_, IkeV2PayloadContent::CertificateRequest(req))) => Payload::CertReq {
                encoding: req.cert_encoding.0,
                data: req.ca_data.to_vec(),
            },
            _ => return Err(too_short(body, 1)),
        },
        t::AUTH => {
            if body.len() < 4 {
                return Err(too_short(body, 4));
            }
            Payload::Auth {
                method: body[0],
                data: body[4..].to_vec(),
            }
        }
        t::NONCE => match parse_ikev2_payload_nonce(body, len) {
            Ok((_, IkeV2PayloadContent::Nonce(nonce))) => Payload::Nonce(nonce.nonce_data.to_vec()),
            _ => return Err("unreadable nonce".into()),
        },
        t::NOTIFY => Payload::Notify(decode_notify(body)?),
        t::DELETE => decode_delete(body)?,
        t::VENDOR => Payload::Vendor(body.to_vec()),
        t::TSI => Payload::TsI(decode_selectors(body, len)?),
        t::TSR => Payload::TsR(decode_selectors(body, len)?),
        _ => Payload::Unknown {
            kind,
            critical,
            data: body.to_vec(),
        },
    };
    Ok(payload)
}

fn too_short(body: &[u8], minimum: usize) -> String {
    format!(
        "body of {} bytes is shorter than its {minimum}-byte fixed part",
        body.len()
    )
}

fn decode_notify(body: &[u8]) -> Result<Notify, String> {
    if body.len() < 4 {
        return Err(too_short(body, 4));
    }
    let spi_size = usize::from(body[1]);
    let kind = u16::from_be_bytes([body[2], body[3]]);
    let Some(spi) = body.get(4..4 + spi_size) else {
        return Err(format!(
            "SPI size {spi_size} exceeds the {} bytes after the fixed part",
            body.len() - 4
        ));
    };
    Ok(Notify {
        protocol: body[0],
        spi: spi.to_vec(),
        kind,
        data: body[4 + spi_size..].to_vec(),
    })
}

fn decode_delete(body: &[u8]) -> Result<Payload, String> {
    if body.len() < 4 {
        return Err(too_short(body, 4));
    }
    let spi_size = usize::from(body[1]);
    let count = usize::from(u16::from_be_bytes([body[2], body[3]]));
    let spis = &body[4..];
    if spi_size * count != spis.len() || (spi_size == 0 && count != 0) {
        return Err(format!(
            "{count} SPIs of {spi_size} bytes do not fill the {} bytes given",
            spis.len()
        ));
    }
    let spis = if spi_size == 0 {
        Vec::new()
    } else {
        spis.chunks_exact(spi_size).map(<[u8]>::to_vec).collect()
    };
    Ok(Payload::Delete {
        protocol: body[0],
        spis,
    })
}

/// ipsec-parser's proposals, with the lengths and counts it does not check checked.
fn convert_proposals(proposals: &[IkeV2Proposal]) -> Result<Vec<ProposalWire>, String> {
    proposals
        .iter()
        .map(|proposal| {
            let number = proposal.proposal_num;
            let transform_bytes: usize = proposal
                .transforms
                .iter()
                .map(|t| usize::from(t.transform_length))
                .sum();
            let expected = usize::from(proposal.proposal_length)
                .checked_sub(8 + usize::from(proposal.spi_size));
            if proposal.transforms.iter().any(|t| t.transform_length < 8)
                || Some(transform_bytes) != expected
            {
                return Err(format!(
                    "proposal {number}: its length {} does not match its {} transforms",
                    proposal.proposal_length, proposal.num_transforms
                ));
            }
            let mut transforms = Vec::with_capacity(proposal.transforms.len());
            for raw in &proposal.transforms {
                let kind = raw.transform_type.0;
                let attributes = raw.attributes.unwrap_or(&[]);
                match key_length(attributes).map_err(|problem| {
                    format!("proposal {number}, transform type {kind}: {problem}")
                })? {
                    Attributes::KeyLength(key_len) => transforms.push(TransformWire {
                        kind,
                        id: raw.transform_id,
                        key_len,
                    }),
                    // RFC 7296 §3.3.6: a transform with an attribute we do not understand
                    // is unacceptable. Leaving it out says so, unless its type is one we
                    // do not know either: then it stays, so the proposal is rejected for
                    // the type.
                    Attributes::Unknown if kind <= transform_type::ESN => {}
                    Attributes::Unknown => transforms.push(TransformWire {
                        kind,
                        id: raw.transform_id,
                        key_len: None,
                    }),
                }
            }
            Ok(ProposalWire {
                number,
                protocol: proposal.protocol_id.0,
                spi: proposal.spi.unwrap_or(&[]).to_vec(),
                transforms,
            })
        })
        .collect()
}

enum Attributes {
    KeyLength(Option<u16>),
    /// Something besides one Key Length attribute.
    Unknown,
}

/// Reads a transform's attributes (RFC 7296 §3.3.5): the only one defined is Key Length
/// (type 14, in the short TV form).
fn key_length(mut attributes: &[u8]) -> Result<Attributes, String> {
    const KEY_LENGTH: u16 = 14;
    const TV_FORMAT: u16 = 0x8000;
    let mut key_len = None;
    let mut unknown = false;
    while !attributes.is_empty() {
        let Some(head) = attributes.get(..4) else {
            return Err(format!(
                "{} bytes left do not hold an attribute",
                attributes.len()
            ));
        };
        let type_field = u16::from_be_bytes([head[0], head[1]]);
        let value = u16::from_be_bytes([head[2], head[3]]);
        if type_field & TV_FORMAT != 0 {
            if type_field & !TV_FORMAT == KEY_LENGTH && key_len.is_none() {
                key_len = Some(value);
            } else {
                unknown = true;
            }
            attributes = &attributes[4..];
        } else {
            let end = 4 + usize::from(value);
            if attributes.len() < end {
                return Err(format!(
                    "attribute of {value} bytes exceeds the {} bytes left",
                    attributes.len() - 4
                ));
            }
            unknown = true;
            attributes = &attributes[end..];
        }
    }
    Ok(if unknown {
        Attributes::Unknown
    } else {
        Attributes::KeyLength(key_len)
    })
}

/// A TSi or TSr body. ipsec-parser reads the selectors; the type and length of each are
/// checked first, since it ignores the length and stops without error at an unknown
/// type.
fn decode_selectors(body: &[u8], len: u16) -> Result<Vec<TrafficSelector>, String> {
    if body.len() < 4 {
        return Err(too_short(body, 4));
    }
    let count = usize::from(body[0]);
    let mut rest = &body[4..];
    let mut found = 0;
    while !rest.is_empty() {
        let Some(head) = rest.get(..4) else {
            return Err(format!(
                "selector {}: {} bytes do not hold a header",
                found + 1,
                rest.len()
            ));
        };
        let expected = match head[0] {
            ts_type::IPV4_ADDR_RANGE => 16,
            ts_type::IPV6_ADDR_RANGE => 40,
            other => {
                return Err(format!(
                    "selector {}: type {other} is not supported (only IPv4 and IPv6 ranges)",
                    found + 1
                ))
            }
        };
        let length = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if length != expected || rest.len() < expected {
            return Err(format!(
                "selector {}: length {length} (expected {expected}, {} bytes left)",
                found + 1,
                rest.len()
            ));
        }
        rest = &rest[expected..];
        found += 1;
    }
    if found != count || count == 0 {
        return Err(format!(
            "announces {count} selectors but holds {found} (at least one is needed)"
        ));
    }
    let parsed: TrafficSelectorPayload = match parse_ikev2_payload_ts(body, len) {
        Ok((_, parsed)) => parsed,
        Err(_) => return Err("unreadable traffic selectors".into()),
    };
    if parsed.ts.len() != count {
        return Err(format!("{} of {count} selectors readable", parsed.ts.len()));
    }
    parsed
        .ts
        .iter()
        .enumerate()
        .map(|(i, ts)| match (ts.get_start_addr(), ts.get_end_addr()) {
            (Some(start), Some(end)) => Ok(TrafficSelector {
                protocol: ts.ip_proto_id,
                start_port: ts.start_port,
                end_port: ts.end_port,
                start,
                end,
            }),
            _ => Err(format!("selector {}: no address range", i + 1)),
        })
        .collect()
}
