//! The encoder: payload bodies, the generic-header chain, the fixed header.

use super::{
    flags, payload_type, ts_type, Message, MessageError, Payload, ProposalWire, TrafficSelector,
    HEADER_LEN, IKE_VERSION,
};

impl Message {
    /// Unprotected encoding (IKE_SA_INIT, and replies sent before keys exist).
    ///
    /// Returns an empty datagram when the message cannot be encoded: a payload over the
    /// 65,531 bytes a 16-bit length allows (which no UDP datagram could carry anyway), more
    /// than 255 proposals, transforms, selectors or SPI bytes, SPIs of differing sizes in
    /// one Delete, or a selector whose ends differ in family. [`Message::try_encode`] says
    /// which.
    pub fn encode(&self) -> Vec<u8> {
        self.try_encode().unwrap_or_default()
    }

    /// [`Message::encode`], with the reason when the message cannot be encoded.
    pub fn try_encode(&self) -> Result<Vec<u8>, MessageError> {
        let (first, chain) = payload_chain(&self.payloads)?;
        let length = HEADER_LEN + chain.len();
        let mut datagram = Vec::with_capacity(length);
        datagram.extend_from_slice(&header(self, first, length)?);
        datagram.extend_from_slice(&chain);
        Ok(datagram)
    }
}

/// The fixed header with `first` as its next payload and `length` as the message length.
pub(super) fn header(
    message: &Message,
    first: u8,
    length: usize,
) -> Result<[u8; HEADER_LEN], MessageError> {
    let length = u32::try_from(length)
        .map_err(|_| MessageError::Encode(format!("message of {length} bytes")))?;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&message.spi_i.to_be_bytes());
    header[8..16].copy_from_slice(&message.spi_r.to_be_bytes());
    header[16] = first;
    header[17] = IKE_VERSION;
    header[18] = message.exchange.number();
    header[19] = if message.initiator {
        flags::INITIATOR
    } else {
        0
    } | if message.response { flags::RESPONSE } else { 0 };
    header[20..24].copy_from_slice(&message.message_id.to_be_bytes());
    header[24..28].copy_from_slice(&length.to_be_bytes());
    Ok(header)
}

/// The payloads, each behind its generic header linking to the next; returns the first
/// payload's type (0 for none) and the bytes.
pub(super) fn payload_chain(payloads: &[Payload]) -> Result<(u8, Vec<u8>), MessageError> {
    let mut chain = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let body = body(payload).map_err(|problem| {
            MessageError::Encode(format!(
                "payload {} ({}): {problem}",
                i + 1,
                super::payload_name(payload.kind())
            ))
        })?;
        let length = u16::try_from(4 + body.len()).map_err(|_| {
            MessageError::Encode(format!(
                "payload {} ({}) of {} bytes exceeds the 16-bit length",
                i + 1,
                super::payload_name(payload.kind()),
                body.len()
            ))
        })?;
        let next = payloads
            .get(i + 1)
            .map_or(payload_type::NONE, Payload::kind);
        let critical = matches!(payload, Payload::Unknown { critical: true, .. });
        chain.push(next);
        chain.push(if critical { 0x80 } else { 0 });
        chain.extend_from_slice(&length.to_be_bytes());
        chain.extend_from_slice(&body);
    }
    let first = payloads.first().map_or(payload_type::NONE, Payload::kind);
    Ok((first, chain))
}

fn count_u8(what: &str, n: usize) -> Result<u8, String> {
    u8::try_from(n).map_err(|_| format!("{n} {what} (at most 255)"))
}

fn body(payload: &Payload) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match payload {
        Payload::Sa(proposals) => {
            for (i, proposal) in proposals.iter().enumerate() {
                let last = i + 1 == proposals.len();
                write_proposal(&mut out, proposal, last)?;
            }
        }
        Payload::Ke { group, data } => {
            out.extend_from_slice(&group.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(data);
        }
        Payload::IdI(id) | Payload::IdR(id) => out = id.body(),
        Payload::Cert { encoding, data } | Payload::CertReq { encoding, data } => {
            out.push(*encoding);
            out.extend_from_slice(data);
        }
        Payload::Auth { method, data } => {
            out.extend_from_slice(&[*method, 0, 0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Nonce(data) | Payload::Vendor(data) => out.extend_from_slice(data),
        Payload::Notify(notify) => {
            out.push(notify.protocol);
            out.push(count_u8("SPI bytes", notify.spi.len())?);
            out.extend_from_slice(&notify.kind.to_be_bytes());
            out.extend_from_slice(&notify.spi);
            out.extend_from_slice(&notify.data);
        }
        Payload::Delete { protocol, spis } => {
            let size = spis.first().map_or(0, Vec::len);
            if spis.iter().any(|spi| spi.len() != size) || (size == 0 && !spis.is_empty()) {
                return Err("SPIs of one Delete must have one non-zero size".into());
            }
            let count = u16::try_from(spis.len()).map_err(|_| "too many SPIs".to_string())?;
            out.push(*protocol);
            out.push(count_u8("SPI bytes", size)?);
            out.extend_from_slice(&count.to_be_bytes());
            for spi in spis {
                out.extend_from_slice(spi);
            }
        }
        Payload::TsI(selectors) | Payload::TsR(selectors) => {
            out.push(count_u8("traffic selectors", selectors.len())?);
            out.extend_from_slice(&[0, 0, 0]);
            for ts in selectors {
                write_selector(&mut out, ts)?;
            }
        }
        Payload::Unknown { data, .. } => out.extend_from_slice(data),
    }
    Ok(out)
}

fn write_proposal(out: &mut Vec<u8>, proposal: &ProposalWire, last: bool) -> Result<(), String> {
    let start = out.len();
    out.push(if last { 0 } else { 2 });
    out.push(0);
    out.extend_from_slice(&[0, 0]); // length, filled in below
    out.push(proposal.number);
    out.push(proposal.protocol);
    out.push(count_u8("SPI bytes", proposal.spi.len())?);
    out.push(count_u8("transforms", proposal.transforms.len())?);
    out.extend_from_slice(&proposal.spi);
    for (i, transform) in proposal.transforms.iter().enumerate() {
        let last = i + 1 == proposal.transforms.len();
        let length: u16 = if transform.key_len.is_some() { 12 } else { 8 };
        out.push(if last { 0 } else { 3 });
        out.push(0);
        out.extend_from_slice(&length.to_be_bytes());
        out.push(transform.kind);
        out.push(0);
        out.extend_from_slice(&transform.id.to_be_bytes());
        if let Some(bits) = transform.key_len {
            out.extend_from_slice(&0x800e_u16.to_be_bytes());
            out.extend_from_slice(&bits.to_be_bytes());
        }
    }
    let length = u16::try_from(out.len() - start)
        .map_err(|_| format!("proposal {} exceeds 65,535 bytes", proposal.number))?;
    out[start + 2..start + 4].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

fn write_selector(out: &mut Vec<u8>, ts: &TrafficSelector) -> Result<(), String> {
    use std::net::IpAddr;
    let (kind, length, start, end): (u8, u16, Vec<u8>, Vec<u8>) = match (ts.start, ts.end) {
        (IpAddr::V4(start), IpAddr::V4(end)) => (
            ts_type::IPV4_ADDR_RANGE,
            16,
            start.octets().to_vec(),
            end.octets().to_vec(),
        ),
        (IpAddr::V6(start), IpAddr::V6(end)) => (
            ts_type::IPV6_ADDR_RANGE,
            40,
            start.octets().to_vec(),
            end.octets().to_vec(),
        ),
        _ => return Err("a traffic selector's start and end differ in address family".into()),
    };
    out.push(kind);
    out.push(ts.protocol);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&ts.start_port.to_be_bytes());
    out.extend_from_slice(&ts.end_port.to_be_bytes());
    out.extend_from_slice(&start);
    out.extend_from_slice(&end);
    Ok(())
}
