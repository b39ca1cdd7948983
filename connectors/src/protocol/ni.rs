//! SAP NI (Network Interface) framing and the SAProuter messages carried in it.
//!
//! Every NI message is a u32 big-endian length followed by that many payload bytes.
//! Payloads used here:
//! - `NI_PING\0` / `NI_PONG\0`: the NI keep-alive, answered by any NI peer.
//! - `NI_ROUTE\0` ([`RouteRequest`]): ask a SAProuter to connect through to a target.
//!   Layout (as SAProuter, pysap and Wireshark's dissector know it): route version u8 (2),
//!   NI version u8 (40), entries u8, talk mode u8 (0 = NI_MSG_IO), two unused bytes,
//!   remaining hops u8, route length u32, route offset u32 (where the next hop to connect
//!   to starts in the route), then each hop as `host\0 service\0 password\0`.
//! - `NI_RTERR\0` ([`RouteError`]): the router's refusal: version u8, opcode u8 (0 = error
//!   information), one unused byte, return code i32 (e.g. -94 "permission denied"),
//!   text length u32, the error text (NUL-separated fields between `*ERR*` markers),
//!   and a trailing u32.
//!   After `NI_PONG` (route accepted) the router relays NI frames to the target.

use std::fmt;

use super::DecodeError;

/// Largest NI frame a probe or simulator accepts (SAProuter's own messages are a few
/// hundred bytes; this leaves room for an answer from the target).
pub const MAX_FRAME: usize = 64 * 1024;

pub const PING: &[u8] = b"NI_PING\0";
pub const PONG: &[u8] = b"NI_PONG\0";
pub const ROUTE_EYECATCHER: &[u8] = b"NI_ROUTE\0";
pub const ERROR_EYECATCHER: &[u8] = b"NI_RTERR\0";

/// Route request version SAProuter expects.
pub const ROUTE_VERSION: u8 = 2;
/// NI protocol version we announce (SAP NI 7.20 and later).
pub const NI_VERSION: u8 = 40;

/// Well-known SAProuter return codes.
pub mod rc {
    pub const HOST_UNKNOWN: i32 = -90;
    pub const SERVICE_UNKNOWN: i32 = -91;
    pub const CONNECTION_REFUSED: i32 = -92;
    pub const INTERNAL: i32 = -93;
    pub const PERMISSION_DENIED: i32 = -94;
}

/// `payload` framed for the wire. Payloads longer than u32::MAX cannot exist here.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of the first frame in `buf` and the bytes the frame used, or `None`
/// when more bytes are needed. Frames declaring more than `limit` bytes are refused
/// from their length field alone.
pub fn decode_frame(buf: &[u8], limit: usize) -> Result<Option<(&[u8], usize)>, DecodeError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > limit {
        return Err(DecodeError::TooLarge { size: len, limit });
    }
    let end = 4usize.saturating_add(len);
    Ok(buf.get(4..end).map(|payload| (payload, end)))
}

/// What an NI payload is, as far as a probe cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Ping,
    Pong,
    Route(&'a [u8]),
    RouteError(&'a [u8]),
    Other(&'a [u8]),
}

/// Sorts a payload by its eyecatcher (without decoding the body).
pub fn classify(payload: &[u8]) -> Message<'_> {
    if payload == PING {
        Message::Ping
    } else if payload == PONG {
        Message::Pong
    } else if payload.starts_with(ROUTE_EYECATCHER) {
        Message::Route(payload)
    } else if payload.starts_with(ERROR_EYECATCHER) {
        Message::RouteError(payload)
    } else {
        Message::Other(payload)
    }
}

/// A printable preview of bytes that were not what we expected, for details and logs.
pub fn preview(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(24)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect();
    if bytes.len() > 24 {
        format!("{shown}...")
    } else {
        shown
    }
}

/// One hop of a route. The password is never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RouteHop {
    pub host: String,
    /// Port number or service name, as text.
    pub service: String,
    pub password: String,
}

impl RouteHop {
    pub fn new(host: impl Into<String>, service: impl Into<String>) -> RouteHop {
        RouteHop {
            host: host.into(),
            service: service.into(),
            password: String::new(),
        }
    }

    /// Length of the hop in the route string.
    fn wire_len(&self) -> usize {
        self.host.len() + self.service.len() + self.password.len() + 3
    }
}

impl fmt::Debug for RouteHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteHop")
            .field("host", &self.host)
            .field("service", &self.service)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .finish()
    }
}

/// An `NI_ROUTE` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRequest {
    pub version: u8,
    pub ni_version: u8,
    /// 0 = NI_MSG_IO (NI frames relayed), 1 = NI_RAW_IO.
    pub talk_mode: u8,
    /// Hops still to connect to after the router receiving the request.
    pub rest_nodes: u8,
    /// Byte offset in the route string of the hop the receiving router connects to.
    pub offset: u32,
    pub hops: Vec<RouteHop>,
}

impl RouteRequest {
    /// The request a client sends to the first router: `hops[0]` is that router itself,
    /// the router connects to `hops[1]`. At most 255 hops are kept.
    pub fn new(mut hops: Vec<RouteHop>) -> RouteRequest {
        hops.truncate(usize::from(u8::MAX));
        let offset = hops.first().map(RouteHop::wire_len).unwrap_or(0);
        RouteRequest {
            version: ROUTE_VERSION,
            ni_version: NI_VERSION,
            talk_mode: 0,
            rest_nodes: hops.len().saturating_sub(1) as u8,
            offset: offset as u32,
            hops,
        }
    }

    /// Index of the hop the receiving router must connect to (the one at `offset`).
    pub fn next_hop(&self) -> Option<usize> {
        let mut at = 0usize;
        for (i, hop) in self.hops.iter().enumerate() {
            if at == self.offset as usize {
                return Some(i);
            }
            at += hop.wire_len();
        }
        None
    }

    /// The request a router passes on after connecting to the next hop: one hop further.
    pub fn forwarded(&self) -> Option<RouteRequest> {
        let next = self.next_hop()?;
        let hop = self.hops.get(next)?;
        Some(RouteRequest {
            offset: self
                .offset
                .checked_add(u32::try_from(hop.wire_len()).ok()?)?,
            rest_nodes: self.rest_nodes.checked_sub(1)?,
            ..self.clone()
        })
    }

    /// The `NI_ROUTE` payload (frame it with [`encode_frame`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut route = Vec::new();
        for hop in &self.hops {
            for part in [&hop.host, &hop.service, &hop.password] {
                route.extend_from_slice(part.as_bytes());
                route.push(0);
            }
        }
        let mut out = ROUTE_EYECATCHER.to_vec();
        out.extend_from_slice(&[
            self.version,
            self.ni_version,
            self.hops.len().min(255) as u8,
            self.talk_mode,
            0,
            0,
            self.rest_nodes,
        ]);
        out.extend_from_slice(&(route.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&route);
        out
    }

    /// Decodes an `NI_ROUTE` payload (one whole frame's payload).
    pub fn decode(payload: &[u8]) -> Result<RouteRequest, DecodeError> {
        let body = payload.strip_prefix(ROUTE_EYECATCHER).ok_or_else(|| {
            DecodeError::Invalid(format!("not an NI_ROUTE message: {}", preview(payload)))
        })?;
        let Some(fixed) = body.get(..15) else {
            return Err(DecodeError::Invalid(format!(
                "NI_ROUTE of {} bytes is truncated",
                payload.len()
            )));
        };
        let entries = usize::from(fixed[2]);
        let length = u32::from_be_bytes([fixed[7], fixed[8], fixed[9], fixed[10]]);
        let offset = u32::from_be_bytes([fixed[11], fixed[12], fixed[13], fixed[14]]);
        let route = &body[15..];
        if usize::try_from(length).ok() != Some(route.len()) {
            return Err(DecodeError::Invalid(format!(
                "NI_ROUTE route length {length} does not match its {} bytes",
                route.len()
            )));
        }
        let mut parts = route.split(|&b| b == 0);
        let mut text = |what: &str| -> Result<String, DecodeError> {
            let part = parts.next().ok_or_else(|| {
                DecodeError::Invalid(format!("NI_ROUTE hop is missing its {what}"))
            })?;
            String::from_utf8(part.to_vec())
                .map_err(|_| DecodeError::Invalid(format!("NI_ROUTE hop {what} is not text")))
        };
        let mut hops = Vec::with_capacity(entries);
        for _ in 0..entries {
            hops.push(RouteHop {
                host: text("host")?,
                service: text("service")?,
                password: text("password")?,
            });
        }
        // After the last hop's terminator only the empty tail of the split remains.
        if parts.next() != Some(&[][..]) || parts.next().is_some() {
            return Err(DecodeError::Invalid(format!(
                "NI_ROUTE route does not hold exactly {entries} hops"
            )));
        }
        Ok(RouteRequest {
            version: fixed[0],
            ni_version: fixed[1],
            talk_mode: fixed[3],
            rest_nodes: fixed[6],
            offset,
            hops,
        })
    }
}

/// An `NI_RTERR` message: the router could not (or would not) route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    pub version: u8,
    /// 0 = error information; other opcodes are control messages.
    pub opcode: u8,
    pub return_code: i32,
    /// The raw error text: NUL-separated fields.
    pub text: Vec<u8>,
}

/// Field positions in SAProuter's error text (`*ERR*`, counter, error, return code,
/// component, release, version, module, line, detail, time, ...).
const TEXT_ERROR: usize = 2;
const TEXT_DETAIL: usize = 9;

impl RouteError {
    /// An error as SAProuter builds it: the text holds the fields its clients show.
    pub fn new(return_code: i32, error: &str, detail: &str) -> RouteError {
        let rc = return_code.to_string();
        let ni = NI_VERSION.to_string();
        let fields: [&str; 21] = [
            "*ERR*",
            "1",
            error,
            &rc,
            "NI (network interface)",
            &ni,
            &ni,
            "nirout.cpp",
            "0",
            detail,
            "",
            "",
            "",
            "",
            "1",
            "",
            "",
            "",
            "",
            "",
            "*ERR*",
        ];
        let mut text = Vec::new();
        for f in fields {
            text.extend_from_slice(f.as_bytes());
            text.push(0);
        }
        RouteError {
            version: ROUTE_VERSION,
            opcode: 0,
            return_code,
            text,
        }
    }

    fn field(&self, index: usize) -> Option<String> {
        let part = self.text.split(|&b| b == 0).nth(index)?;
        let s = String::from_utf8_lossy(part).trim().to_string();
        (!s.is_empty()).then_some(s)
    }

    /// The error line of the text, e.g. "route permission denied (10.0.0.1 to sapgw01, 3300)".
    pub fn error(&self) -> Option<String> {
        self.field(TEXT_ERROR)
    }

    /// The detail line of the text, when there is one.
    pub fn detail(&self) -> Option<String> {
        self.field(TEXT_DETAIL)
    }

    /// The `NI_RTERR` payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = ERROR_EYECATCHER.to_vec();
        out.extend_from_slice(&[self.version, self.opcode, 0]);
        out.extend_from_slice(&self.return_code.to_be_bytes());
        out.extend_from_slice(&(self.text.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.text);
        out.extend_from_slice(&0u32.to_be_bytes());
        out
    }

    /// Decodes an `NI_RTERR` payload. The trailing u32 is optional (routers differ).
    pub fn decode(payload: &[u8]) -> Result<RouteError, DecodeError> {
        let body = payload.strip_prefix(ERROR_EYECATCHER).ok_or_else(|| {
            DecodeError::Invalid(format!("not an NI_RTERR message: {}", preview(payload)))
        })?;
        let Some(fixed) = body.get(..7) else {
            return Err(DecodeError::Invalid(format!(
                "NI_RTERR of {} bytes is truncated",
                payload.len()
            )));
        };
        let return_code = i32::from_be_bytes([fixed[3], fixed[4], fixed[5], fixed[6]]);
        let text = match body.get(7..11) {
            None => Vec::new(),
            Some(len) => {
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                body.get(11..11usize.saturating_add(len))
                    .ok_or_else(|| {
                        DecodeError::Invalid(format!(
                            "NI_RTERR text of {len} bytes overruns the {}-byte message",
                            payload.len()
                        ))
                    })?
                    .to_vec()
            }
        };
        Ok(RouteError {
            version: fixed[0],
            opcode: fixed[1],
            return_code,
            text,
        })
    }
}

/// The meaning of a SAProuter/NI return code (SAP Note 63342).
pub fn return_code_meaning(code: i32) -> &'static str {
    match code {
        -1 => "NI internal error",
        -2 => "host name unknown",
        -3 => "service unknown",
        -5 => "time limit reached",
        -6 => "connection to partner broken",
        -8 => "invalid parameters",
        -10 => "connection setup failed",
        -13 => "invalid version",
        -20 => "requested package too large",
        -90 => "route host name unknown",
        -91 => "route service unknown",
        -92 => "connection refused by the next hop",
        -93 => "SAProuter internal error",
        -94 => "route not permitted",
        -95 => "connection terminated",
        -96 => "invalid client version",
        -97 => "connection cancelled by the administrator",
        -98 => "SAProuter shutting down",
        -99 => "information request refused",
        -100 => "maximum number of clients reached",
        -101 => "talk mode not allowed",
        -102 => "client not available",
        -103 => "error in external library",
        -104 => "SNC error",
        _ => "unknown NI error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route() -> RouteRequest {
        let mut last = RouteHop::new("sapgw01", "3300");
        last.password = "s3cret".into();
        RouteRequest::new(vec![RouteHop::new("router", "3299"), last])
    }

    #[test]
    fn frames_round_trip_and_wait_for_more() {
        let frame = encode_frame(PING);
        assert_eq!(&frame[..4], &[0, 0, 0, 8]);
        assert_eq!(decode_frame(&frame, MAX_FRAME), Ok(Some((PING, 12))));
        for cut in 0..frame.len() {
            assert_eq!(decode_frame(&frame[..cut], MAX_FRAME), Ok(None));
        }
    }

    #[test]
    fn oversized_frames_are_refused() {
        assert_eq!(
            decode_frame(b"HTTP/1.1", MAX_FRAME),
            Err(DecodeError::TooLarge {
                size: 0x48545450,
                limit: MAX_FRAME
            })
        );
    }

    #[test]
    fn route_request_matches_the_saprouter_layout() {
        let bytes = route().encode();
        let route_len = "router\x003299\0\0sapgw01\x003300\0s3cret\0".len();
        let mut expected = b"NI_ROUTE\0".to_vec();
        expected.extend_from_slice(&[2, 40, 2, 0, 0, 0, 1]);
        expected.extend_from_slice(&(route_len as u32).to_be_bytes());
        expected.extend_from_slice(&13u32.to_be_bytes());
        expected.extend_from_slice(b"router\x003299\0\0sapgw01\x003300\0s3cret\0");
        assert_eq!(bytes, expected);
        let decoded = RouteRequest::decode(&bytes).unwrap();
        assert_eq!(decoded, route());
        assert_eq!(decoded.next_hop(), Some(1));
        let forwarded = decoded.forwarded().unwrap();
        assert_eq!(forwarded.rest_nodes, 0);
        assert_eq!(forwarded.next_hop(), None);
        assert!(!format!("{decoded:?}").contains("s3cret"));
    }

    #[test]
    fn route_request_rejects_bad_routes() {
        let mut bytes = route().encode();
        bytes.pop();
        assert!(RouteRequest::decode(&bytes).is_err());
        let mut bytes = route().encode();
        bytes[11] = 3; // claims three entries
        assert!(RouteRequest::decode(&bytes).is_err());
        assert!(RouteRequest::decode(b"NI_ROUTE\0\x02").is_err());
        assert!(RouteRequest::decode(b"NI_PONG\0").is_err());
    }

    #[test]
    fn route_error_round_trips_and_shows_its_text() {
        let e = RouteError::new(-94, "route permission denied (a to b, 3300)", "");
        let decoded = RouteError::decode(&e.encode()).unwrap();
        assert_eq!(decoded, e);
        assert_eq!(decoded.return_code, -94);
        assert_eq!(
            decoded.error().as_deref(),
            Some("route permission denied (a to b, 3300)")
        );
        assert_eq!(decoded.detail(), None);
        assert_eq!(
            return_code_meaning(-92),
            "connection refused by the next hop"
        );
    }

    #[test]
    fn route_error_without_text_decodes() {
        let mut bytes = b"NI_RTERR\0\x02\x00\x00".to_vec();
        bytes.extend_from_slice(&(-92i32).to_be_bytes());
        let e = RouteError::decode(&bytes).unwrap();
        assert_eq!(e.return_code, -92);
        assert!(e.text.is_empty());
        bytes.extend_from_slice(&100u32.to_be_bytes());
        assert!(RouteError::decode(&bytes).is_err());
        assert!(RouteError::decode(b"NI_RTERR\0\x02").is_err());
    }

    #[test]
    fn classify_sorts_payloads() {
        assert_eq!(classify(PING), Message::Ping);
        assert_eq!(classify(PONG), Message::Pong);
        assert!(matches!(classify(&route().encode()), Message::Route(_)));
        assert_eq!(classify(b"hello"), Message::Other(b"hello"));
        assert_eq!(preview(b"ab\0c"), "ab.c");
    }

    fn arb_text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._-]{0,20}"
    }

    proptest! {
        #[test]
        fn frame_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let frame = encode_frame(&payload);
            let (decoded, used) = decode_frame(&frame, MAX_FRAME).unwrap().unwrap();
            prop_assert_eq!(decoded, &payload[..]);
            prop_assert_eq!(used, frame.len());
        }

        #[test]
        fn route_round_trip(hops in proptest::collection::vec((arb_text(), arb_text(), arb_text()), 1..8)) {
            let hops: Vec<RouteHop> = hops
                .into_iter()
                .map(|(host, service, password)| RouteHop { host, service, password })
                .collect();
            let request = RouteRequest::new(hops);
            prop_assert_eq!(RouteRequest::decode(&request.encode()).unwrap(), request);
        }

        #[test]
        fn route_error_round_trip(rc in any::<i32>(), error in arb_text(), detail in arb_text()) {
            let e = RouteError::new(rc, &error, &detail);
            prop_assert_eq!(RouteError::decode(&e.encode()).unwrap(), e);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), limit in 0usize..100_000) {
            let _ = decode_frame(&bytes, limit);
            let _ = classify(&bytes);
            let _ = preview(&bytes);
            let mut route = ROUTE_EYECATCHER.to_vec();
            route.extend_from_slice(&bytes);
            if let Ok(r) = RouteRequest::decode(&route) {
                let _ = r.next_hop();
                let _ = r.forwarded();
            }
            let mut err = ERROR_EYECATCHER.to_vec();
            err.extend_from_slice(&bytes);
            if let Ok(e) = RouteError::decode(&err) {
                let _ = (e.error(), e.detail());
            }
        }
    }
}
