//! Oracle TNS (Transparent Network Substrate): the packets of a listener conversation.
//!
//! Only what a health check and a listener simulator need: CONNECT (with its connect
//! data inline or, past [`CONNECT_DATA_INLINE_MAX`] bytes, in a following DATA packet),
//! ACCEPT, REFUSE, REDIRECT, DATA and RESEND, in the classic layout where the header's
//! length is a u16 (every packet before the version negotiation completes uses it).
//!
//! Header: u16 BE length (header included), u16 packet checksum (0), u8 type, u8 flags,
//! u16 header checksum (0). All fields are big-endian.

use super::DecodeError;

/// Size of the packet header.
pub const HEADER_LEN: usize = 8;
/// The largest packet the u16 length field can describe.
pub const MAX_PACKET: usize = u16::MAX as usize;
/// Connect data longer than this goes in a DATA packet after the CONNECT (what Oracle
/// clients do, since old listeners read only that much from the CONNECT itself).
pub const CONNECT_DATA_INLINE_MAX: usize = 230;
/// Where the connect data starts in a CONNECT packet of the classic layout.
pub const CONNECT_DATA_OFFSET: u16 = 0x3A;
/// Where the accept data starts in the ACCEPT packets we build.
pub const ACCEPT_DATA_OFFSET: u16 = 0x20;

/// TNS protocol version we announce (Oracle 9i-era "312"): every listener from 8i to
/// 23ai answers it with the classic header layout.
pub const VERSION: u16 = 0x0138;
/// Oldest version we can speak.
pub const COMPATIBLE_VERSION: u16 = 0x012C;
/// Session data unit we announce; listeners send no packet larger than it.
pub const SDU: u16 = 8192;

/// Packet type codes.
pub mod kind {
    pub const CONNECT: u8 = 1;
    pub const ACCEPT: u8 = 2;
    pub const REFUSE: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const DATA: u8 = 6;
    pub const RESEND: u8 = 11;
}

/// Fixed part of a CONNECT body (from offset 8 to the end of the flags bytes).
const CONNECT_FIXED_END: usize = 34;
/// Fixed part of an ACCEPT body (from offset 8 to the end of the flags bytes).
const ACCEPT_FIXED_END: usize = 24;

/// A CONNECT packet. `data` holds the connect data when it is inside the packet; when
/// `data_len` is non-zero and `data` is empty, the data follows in DATA packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: u16,
    pub compatible_version: u16,
    pub service_options: u16,
    pub sdu: u16,
    pub tdu: u16,
    pub nt_characteristics: u16,
    pub line_turnaround: u16,
    pub value_of_one: u16,
    /// Declared length of the connect data.
    pub data_len: u16,
    pub max_receivable: u32,
    pub flags0: u8,
    pub flags1: u8,
    pub data: Vec<u8>,
}

impl Connect {
    /// A CONNECT with the parameters a thin client announces, carrying `data`
    /// (inline when it is short, else declared here and sent in a DATA packet).
    /// `data` must be at most `MAX_PACKET - HEADER_LEN - 2` bytes; longer is cut there.
    pub fn new(data: &[u8]) -> Connect {
        let data = &data[..data.len().min(MAX_PACKET - HEADER_LEN - 2)];
        let inline = data.len() <= CONNECT_DATA_INLINE_MAX;
        Connect {
            version: VERSION,
            compatible_version: COMPATIBLE_VERSION,
            service_options: 0,
            sdu: SDU,
            tdu: 0x7FFF,
            nt_characteristics: 0x7F08,
            line_turnaround: 0,
            value_of_one: 1,
            data_len: data.len() as u16,
            max_receivable: 0,
            flags0: 0x41,
            flags1: 0x41,
            data: if inline { data.to_vec() } else { Vec::new() },
        }
    }

    /// Whether the connect data is announced but not inside this packet.
    pub fn data_follows(&self) -> bool {
        self.data_len > 0 && self.data.is_empty()
    }
}

/// The listener handed the connection to a server: the service exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    pub version: u16,
    pub service_options: u16,
    pub sdu: u16,
    pub tdu: u16,
    pub value_of_one: u16,
    pub flags0: u8,
    pub flags1: u8,
    pub data: Vec<u8>,
}

impl Accept {
    /// The ACCEPT a listener sends for a version-312 CONNECT.
    pub fn new(sdu: u16) -> Accept {
        Accept {
            version: VERSION,
            service_options: 0,
            sdu,
            tdu: 0x7FFF,
            value_of_one: 1,
            flags0: 0x01,
            flags1: 0x00,
            data: Vec::new(),
        }
    }
}

/// The listener refused; `data` is its descriptor text, e.g.
/// `(DESCRIPTION=(TMP=)(VSNNUM=0)(ERR=12514)(ERROR_STACK=...))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refuse {
    pub user_reason: u8,
    pub system_reason: u8,
    pub data: Vec<u8>,
}

/// The listener sends the client elsewhere; `data` is an `(ADDRESS=...)` descriptor.
/// As with CONNECT, long data may be declared here and follow in a DATA packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub data_len: u16,
    pub data: Vec<u8>,
}

impl Redirect {
    pub fn new(data: &[u8]) -> Redirect {
        let data = &data[..data.len().min(MAX_PACKET - HEADER_LEN - 2)];
        Redirect {
            data_len: data.len() as u16,
            data: data.to_vec(),
        }
    }

    pub fn data_follows(&self) -> bool {
        self.data_len > 0 && self.data.is_empty()
    }
}

/// A DATA packet: u16 data flags, then payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    pub flags: u16,
    pub payload: Vec<u8>,
}

/// One TNS packet of the kinds a listener conversation uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    Accept(Accept),
    Refuse(Refuse),
    Redirect(Redirect),
    Data(Data),
    /// "Send your CONNECT again."
    Resend,
}

impl Packet {
    /// The packet's type name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::Accept(_) => "ACCEPT",
            Packet::Refuse(_) => "REFUSE",
            Packet::Redirect(_) => "REDIRECT",
            Packet::Data(_) => "DATA",
            Packet::Resend => "RESEND",
        }
    }

    /// The packet on the wire. Bodies too long for the u16 length are cut to fit
    /// (the constructors above never produce such bodies).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let kind = match self {
            Packet::Connect(c) => {
                put16(&mut body, c.version);
                put16(&mut body, c.compatible_version);
                put16(&mut body, c.service_options);
                put16(&mut body, c.sdu);
                put16(&mut body, c.tdu);
                put16(&mut body, c.nt_characteristics);
                put16(&mut body, c.line_turnaround);
                put16(&mut body, c.value_of_one);
                put16(&mut body, c.data_len);
                put16(&mut body, CONNECT_DATA_OFFSET);
                body.extend_from_slice(&c.max_receivable.to_be_bytes());
                body.push(c.flags0);
                body.push(c.flags1);
                // Trace cross-facility items and unique connection id: unused, zero.
                body.resize(usize::from(CONNECT_DATA_OFFSET) - HEADER_LEN, 0);
                body.extend_from_slice(&c.data);
                kind::CONNECT
            }
            Packet::Accept(a) => {
                put16(&mut body, a.version);
                put16(&mut body, a.service_options);
                put16(&mut body, a.sdu);
                put16(&mut body, a.tdu);
                put16(&mut body, a.value_of_one);
                put16(&mut body, clamp16(a.data.len()));
                put16(&mut body, ACCEPT_DATA_OFFSET);
                body.push(a.flags0);
                body.push(a.flags1);
                body.resize(usize::from(ACCEPT_DATA_OFFSET) - HEADER_LEN, 0);
                body.extend_from_slice(&a.data);
                kind::ACCEPT
            }
            Packet::Refuse(r) => {
                body.push(r.user_reason);
                body.push(r.system_reason);
                put16(&mut body, clamp16(r.data.len()));
                body.extend_from_slice(&r.data);
                kind::REFUSE
            }
            Packet::Redirect(r) => {
                put16(&mut body, r.data_len);
                body.extend_from_slice(&r.data);
                kind::REDIRECT
            }
            Packet::Data(d) => {
                put16(&mut body, d.flags);
                body.extend_from_slice(&d.payload);
                kind::DATA
            }
            Packet::Resend => kind::RESEND,
        };
        body.truncate(MAX_PACKET - HEADER_LEN);
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        put16(&mut out, (HEADER_LEN + body.len()) as u16);
        put16(&mut out, 0);
        out.push(kind);
        out.push(0);
        put16(&mut out, 0);
        out.extend_from_slice(&body);
        out
    }
}

/// The bytes a client sends to present `connect_data`: a CONNECT, followed by a DATA
/// packet carrying the data when it is longer than [`CONNECT_DATA_INLINE_MAX`].
pub fn encode_connect(connect_data: &[u8]) -> Vec<u8> {
    let connect = Connect::new(connect_data);
    let mut out = Packet::Connect(connect.clone()).encode();
    if connect.data_follows() {
        let payload = connect_data[..usize::from(connect.data_len)].to_vec();
        out.extend(Packet::Data(Data { flags: 0, payload }).encode());
    }
    out
}

/// Decodes the first packet in `buf`. Returns the packet and the bytes it used, or
/// `None` when more bytes are needed. Packets declaring more than `limit` bytes are
/// refused before they are read.
pub fn decode_packet(buf: &[u8], limit: usize) -> Result<Option<(Packet, usize)>, DecodeError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return match buf.len() {
            // The length field alone can already disqualify the packet.
            2.. if usize::from(u16::from_be_bytes([buf[0], buf[1]])) > limit => {
                Err(DecodeError::TooLarge {
                    size: usize::from(u16::from_be_bytes([buf[0], buf[1]])),
                    limit,
                })
            }
            _ => Ok(None),
        };
    };
    let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
    if len < HEADER_LEN {
        return Err(DecodeError::Invalid(format!(
            "TNS packet length {len} is shorter than its header"
        )));
    }
    if len > limit {
        return Err(DecodeError::TooLarge { size: len, limit });
    }
    let kind = header[4];
    if !matches!(
        kind,
        kind::CONNECT | kind::ACCEPT | kind::REFUSE | kind::REDIRECT | kind::DATA | kind::RESEND
    ) {
        return Err(DecodeError::Invalid(format!(
            "unexpected TNS packet type {kind}"
        )));
    }
    let Some(packet) = buf.get(..len) else {
        return Ok(None);
    };
    let body = Body(packet);
    let decoded = match kind {
        kind::CONNECT => Packet::Connect(decode_connect(body)?),
        kind::ACCEPT => Packet::Accept(decode_accept(body)?),
        kind::REFUSE => {
            let data_len = usize::from(body.u16_at(10, "REFUSE")?);
            Packet::Refuse(Refuse {
                user_reason: body.u8_at(8, "REFUSE")?,
                system_reason: body.u8_at(9, "REFUSE")?,
                data: body.slice(12, data_len, "REFUSE data")?.to_vec(),
            })
        }
        kind::REDIRECT => {
            let data_len = body.u16_at(8, "REDIRECT")?;
            let data = body.inline_data(10, data_len, "REDIRECT data")?;
            Packet::Redirect(Redirect { data_len, data })
        }
        kind::DATA => Packet::Data(Data {
            flags: body.u16_at(8, "DATA")?,
            payload: packet.get(10..).unwrap_or_default().to_vec(),
        }),
        _ => Packet::Resend,
    };
    Ok(Some((decoded, len)))
}

fn decode_connect(body: Body<'_>) -> Result<Connect, DecodeError> {
    const W: &str = "CONNECT";
    if body.0.len() < CONNECT_FIXED_END {
        return Err(DecodeError::Invalid(format!(
            "TNS CONNECT of {} bytes is shorter than its fixed fields",
            body.0.len()
        )));
    }
    let data_len = body.u16_at(24, W)?;
    let offset = usize::from(body.u16_at(26, W)?);
    if data_len > 0 && offset < CONNECT_FIXED_END {
        return Err(DecodeError::Invalid(format!(
            "TNS CONNECT data offset {offset} points into its fixed fields"
        )));
    }
    Ok(Connect {
        version: body.u16_at(8, W)?,
        compatible_version: body.u16_at(10, W)?,
        service_options: body.u16_at(12, W)?,
        sdu: body.u16_at(14, W)?,
        tdu: body.u16_at(16, W)?,
        nt_characteristics: body.u16_at(18, W)?,
        line_turnaround: body.u16_at(20, W)?,
        value_of_one: body.u16_at(22, W)?,
        data_len,
        max_receivable: body.u32_at(28, W)?,
        flags0: body.u8_at(32, W)?,
        flags1: body.u8_at(33, W)?,
        data: body.inline_data(offset, data_len, "CONNECT data")?,
    })
}

fn decode_accept(body: Body<'_>) -> Result<Accept, DecodeError> {
    const W: &str = "ACCEPT";
    if body.0.len() < ACCEPT_FIXED_END {
        return Err(DecodeError::Invalid(format!(
            "TNS ACCEPT of {} bytes is shorter than its fixed fields",
            body.0.len()
        )));
    }
    let data_len = usize::from(body.u16_at(18, W)?);
    let offset = usize::from(body.u16_at(20, W)?);
    let data = if data_len == 0 {
        Vec::new()
    } else {
        if offset < ACCEPT_FIXED_END {
            return Err(DecodeError::Invalid(format!(
                "TNS ACCEPT data offset {offset} points into its fixed fields"
            )));
        }
        body.slice(offset, data_len, "ACCEPT data")?.to_vec()
    };
    Ok(Accept {
        version: body.u16_at(8, W)?,
        service_options: body.u16_at(10, W)?,
        sdu: body.u16_at(12, W)?,
        tdu: body.u16_at(14, W)?,
        value_of_one: body.u16_at(16, W)?,
        flags0: body.u8_at(22, W)?,
        flags1: body.u8_at(23, W)?,
        data,
    })
}

/// A whole packet (header included), read with bounds checks.
#[derive(Clone, Copy)]
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn short(&self, what: &str) -> DecodeError {
        DecodeError::Invalid(format!(
            "TNS {what} packet of {} bytes is truncated",
            self.0.len()
        ))
    }

    fn u8_at(&self, at: usize, what: &str) -> Result<u8, DecodeError> {
        self.0.get(at).copied().ok_or_else(|| self.short(what))
    }

    fn u16_at(&self, at: usize, what: &str) -> Result<u16, DecodeError> {
        let b = self
            .0
            .get(at..at.saturating_add(2))
            .ok_or_else(|| self.short(what))?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32_at(&self, at: usize, what: &str) -> Result<u32, DecodeError> {
        let b = self
            .0
            .get(at..at.saturating_add(4))
            .ok_or_else(|| self.short(what))?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn slice(&self, at: usize, len: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        self.0.get(at..at.saturating_add(len)).ok_or_else(|| {
            DecodeError::Invalid(format!(
                "TNS {what} ({len} bytes at offset {at}) overruns the {}-byte packet",
                self.0.len()
            ))
        })
    }

    /// Data announced with a length that is either all in this packet or (when the
    /// packet ends before the offset) entirely in following DATA packets.
    fn inline_data(&self, at: usize, len: u16, what: &str) -> Result<Vec<u8>, DecodeError> {
        if len == 0 || self.0.len() <= at {
            return Ok(Vec::new());
        }
        Ok(self.slice(at, usize::from(len), what)?.to_vec())
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn clamp16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// The value of `(KEY=value)` in a TNS descriptor, `KEY` matched case-insensitively;
/// for a nested value such as `(ADDRESS=(...)(...))` the whole balanced text is returned.
pub fn descriptor_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let (_, value_start, value_end) = find_clause(text, key)?;
    text.get(value_start..value_end)
}

/// The whole first `(KEY=...)` clause of a descriptor, parentheses included.
pub fn descriptor_clause<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let (start, _, value_end) = find_clause(text, key)?;
    text.get(start..value_end.checked_add(1)?)
}

/// Byte positions of the first `(KEY=value)`: its `(`, the value's start and the value's
/// end (the index of the closing `)`).
fn find_clause(text: &str, key: &str) -> Option<(usize, usize, usize)> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = bytes.get(from..)?.iter().position(|&b| b == b'(') {
        let open = from + pos;
        let start = open + 1;
        let name_end = start + bytes.get(start..)?.iter().position(|&b| b == b'=')?;
        let name = text.get(start..name_end)?.trim();
        if name.eq_ignore_ascii_case(key) {
            let value_start = name_end + 1;
            let mut depth = 0usize;
            for (i, &b) in bytes.get(value_start..)?.iter().enumerate() {
                match b {
                    b'(' => depth += 1,
                    b')' if depth == 0 => return Some((open, value_start, value_start + i)),
                    b')' => depth -= 1,
                    _ => {}
                }
            }
            return None;
        }
        from = start;
    }
    None
}

/// What a listener's REFUSE text says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefuseText {
    /// `ERR=`: 0 for an answered ping, else the TNS error code.
    pub err: Option<u32>,
    /// `VSNNUM=`: the listener's version, hex-packed into a decimal (0 on modern ones).
    pub vsnnum: Option<u32>,
    /// `ALIAS=`: the listener's name.
    pub alias: Option<String>,
}

impl RefuseText {
    pub fn parse(data: &[u8]) -> RefuseText {
        let text = String::from_utf8_lossy(data);
        let number = |key| descriptor_value(&text, key).and_then(|v| v.trim().parse().ok());
        RefuseText {
            err: number("ERR"),
            vsnnum: number("VSNNUM"),
            alias: descriptor_value(&text, "ALIAS").map(|a| a.trim().to_string()),
        }
    }
}

/// A VSNNUM as Oracle's five-part version (8.4.8.4.8 bits, as in OCI and ODPI-C):
/// 0x09200000 = 153092096 is "9.2.0.0.0", 153092864 = 0x09200300 is "9.2.0.3.0".
pub fn vsnnum_version(vsnnum: u32) -> String {
    format!(
        "{}.{}.{}.{}.{}",
        vsnnum >> 24,
        (vsnnum >> 20) & 0xF,
        (vsnnum >> 12) & 0xFF,
        (vsnnum >> 8) & 0xF,
        vsnnum & 0xFF
    )
}

/// The VSNNUM of a version given as its first four parts (the inverse of [`vsnnum_version`]).
pub fn vsnnum(major: u8, minor: u8, patch: u8, component: u8, release: u8) -> u32 {
    (u32::from(major) << 24)
        | (u32::from(minor & 0xF) << 20)
        | (u32::from(patch) << 12)
        | (u32::from(component & 0xF) << 8)
        | u32::from(release)
}

/// The meaning of the TNS error codes a listener sends in a REFUSE.
pub fn error_meaning(code: u32) -> &'static str {
    match code {
        0 => "no error",
        1169 => "listener name not recognised",
        1189 => "listener could not authenticate the user",
        12500 => "listener failed to start a dedicated server process",
        12502 => "listener received no CONNECT_DATA from client",
        12504 => "listener was not given the SERVICE_NAME in CONNECT_DATA",
        12505 => "SID unknown to the listener",
        12508 => "listener could not resolve the COMMAND given",
        12514 => "service unknown to the listener",
        12516 => "listener found no handler with a matching protocol stack",
        12518 => "listener could not hand off the connection",
        12519 => "no appropriate service handler found",
        12520 => "listener found no handler for the requested server type",
        12521 => "instance unknown to the listener",
        12526 => "all instances are in restricted mode",
        12527 => "all instances are in restricted mode or blocking new connections",
        12528 => "all instances are blocking new connections",
        12529 => "connect request rejected by a connection filter rule",
        12564 => "connection refused",
        _ => "see the Oracle error reference",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(buf: &[u8]) -> Packet {
        let (p, used) = decode_packet(buf, MAX_PACKET).unwrap().unwrap();
        assert_eq!(used, buf.len());
        p
    }

    #[test]
    fn connect_has_the_classic_layout() {
        let data = b"(CONNECT_DATA=(COMMAND=ping))";
        let bytes = encode_connect(data);
        assert_eq!(bytes.len(), 58 + data.len());
        assert_eq!(&bytes[..8], &[0, 58 + data.len() as u8, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&bytes[8..12], &[0x01, 0x38, 0x01, 0x2C]);
        assert_eq!(&bytes[24..28], &[0, data.len() as u8, 0, 0x3A]);
        assert_eq!(&bytes[58..], data);
        match one(&bytes) {
            Packet::Connect(c) => {
                assert_eq!(c.data, data);
                assert!(!c.data_follows());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_connect_data_goes_in_a_data_packet() {
        let data = vec![b'x'; 300];
        let bytes = encode_connect(&data);
        let (first, used) = decode_packet(&bytes, MAX_PACKET).unwrap().unwrap();
        assert_eq!(used, 58);
        let Packet::Connect(c) = first else {
            panic!("{first:?}")
        };
        assert!(c.data_follows());
        assert_eq!(c.data_len, 300);
        let (second, used2) = decode_packet(&bytes[used..], MAX_PACKET).unwrap().unwrap();
        assert_eq!(used + used2, bytes.len());
        assert_eq!(
            second,
            Packet::Data(Data {
                flags: 0,
                payload: data
            })
        );
    }

    #[test]
    fn refuse_from_a_listener_decodes() {
        let text = b"(DESCRIPTION=(TMP=)(VSNNUM=153092864)(ERR=0)(ALIAS=LISTENER))";
        let mut bytes = vec![0, (12 + text.len()) as u8, 0, 0, 4, 0, 0, 0, 0x22, 0, 0];
        bytes.push(text.len() as u8);
        bytes.extend_from_slice(text);
        let Packet::Refuse(r) = one(&bytes) else {
            panic!()
        };
        assert_eq!(r.user_reason, 0x22);
        let parsed = RefuseText::parse(&r.data);
        assert_eq!(parsed.err, Some(0));
        assert_eq!(parsed.vsnnum, Some(153092864));
        assert_eq!(parsed.alias.as_deref(), Some("LISTENER"));
        // The value listeners of 9.2.0.3 send (0x09200300).
        assert_eq!(vsnnum_version(153092864), "9.2.0.3.0");
    }

    #[test]
    fn vsnnum_examples() {
        assert_eq!(vsnnum_version(0x0A200100), "10.2.0.1.0");
        assert_eq!(vsnnum_version(0x09200000), "9.2.0.0.0");
        assert_eq!(vsnnum(19, 0, 0, 0, 0), 0x13000000);
        assert_eq!(vsnnum_version(vsnnum(11, 2, 0, 4, 0)), "11.2.0.4.0");
    }

    #[test]
    fn descriptor_values_nest() {
        let t = "(DESCRIPTION=(ADDRESS=(PROTOCOL=tcp)(HOST=db2)(PORT=1522))(CONNECT_DATA=(service_name=ORCL)))";
        assert_eq!(descriptor_value(t, "SERVICE_NAME"), Some("ORCL"));
        assert_eq!(descriptor_value(t, "host"), Some("db2"));
        assert_eq!(
            descriptor_value(t, "ADDRESS"),
            Some("(PROTOCOL=tcp)(HOST=db2)(PORT=1522)")
        );
        assert_eq!(
            descriptor_clause(t, "address"),
            Some("(ADDRESS=(PROTOCOL=tcp)(HOST=db2)(PORT=1522))")
        );
        assert_eq!(descriptor_value(t, "SID"), None);
        assert_eq!(descriptor_value("(ERR=12", "ERR"), None);
        assert_eq!(descriptor_value("((((=", "X"), None);
    }

    #[test]
    fn truncated_packets_ask_for_more() {
        let bytes = Packet::Refuse(Refuse {
            user_reason: 1,
            system_reason: 2,
            data: b"(ERR=12514)".to_vec(),
        })
        .encode();
        for cut in 0..bytes.len() {
            assert_eq!(decode_packet(&bytes[..cut], MAX_PACKET), Ok(None), "{cut}");
        }
    }

    #[test]
    fn oversized_packets_are_refused_from_the_length_field() {
        let bytes = [0x40, 0x00];
        assert_eq!(
            decode_packet(&bytes, 8192),
            Err(DecodeError::TooLarge {
                size: 0x4000,
                limit: 8192
            })
        );
    }

    #[test]
    fn garbage_is_invalid() {
        assert!(matches!(
            decode_packet(b"\x00\x10\x00\x00\x63\x00\x00\x00garbage!", MAX_PACKET),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            decode_packet(b"\x00\x04\x00\x00\x04\x00\x00\x00", MAX_PACKET),
            Err(DecodeError::Invalid(_))
        ));
        // A REFUSE whose data length overruns the packet.
        assert!(matches!(
            decode_packet(
                b"\x00\x0e\x00\x00\x04\x00\x00\x00\x01\x00\x00\x40ab",
                MAX_PACKET
            ),
            Err(DecodeError::Invalid(_))
        ));
        // HTTP instead of TNS: the "length" is too large for our SDU.
        assert!(matches!(
            decode_packet(b"HTTP/1.1 400 Bad Request\r\n", SDU as usize),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    fn arb_packet() -> impl Strategy<Value = Packet> {
        let bytes = |max| proptest::collection::vec(any::<u8>(), 0..max);
        prop_oneof![
            bytes(600).prop_map(|d| Packet::Connect(Connect::new(&d))),
            (any::<u16>(), any::<u8>(), bytes(300)).prop_map(|(sdu, f, data)| {
                let mut a = Accept::new(sdu);
                a.flags1 = f;
                a.data = data;
                Packet::Accept(a)
            }),
            (any::<u8>(), any::<u8>(), bytes(300)).prop_map(|(u, s, data)| {
                Packet::Refuse(Refuse {
                    user_reason: u,
                    system_reason: s,
                    data,
                })
            }),
            bytes(300).prop_map(|d| Packet::Redirect(Redirect::new(&d))),
            (any::<u16>(), bytes(300))
                .prop_map(|(flags, payload)| Packet::Data(Data { flags, payload })),
            Just(Packet::Resend),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(p in arb_packet()) {
            let bytes = p.encode();
            let (decoded, used) = decode_packet(&bytes, MAX_PACKET).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(decoded, p);
        }

        #[test]
        fn connect_data_survives_either_path(d in proptest::collection::vec(any::<u8>(), 1..1000)) {
            let bytes = encode_connect(&d);
            let (first, used) = decode_packet(&bytes, MAX_PACKET).unwrap().unwrap();
            let Packet::Connect(c) = first else { panic!() };
            let data = if c.data_follows() {
                match decode_packet(&bytes[used..], MAX_PACKET).unwrap().unwrap().0 {
                    Packet::Data(d) => d.payload,
                    other => panic!("{other:?}"),
                }
            } else {
                c.data
            };
            prop_assert_eq!(data, d);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), limit in 0usize..70000) {
            let _ = decode_packet(&bytes, limit);
            let text = String::from_utf8_lossy(&bytes);
            let _ = descriptor_value(&text, "ERR");
            let _ = descriptor_clause(&text, "ADDRESS");
            let _ = RefuseText::parse(&bytes);
        }

        #[test]
        fn decode_never_panics_on_typed_headers(
            kind in prop_oneof![Just(1u8), Just(2), Just(4), Just(5), Just(6), Just(11)],
            rest in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let len = (HEADER_LEN + rest.len()) as u16;
            let mut bytes = len.to_be_bytes().to_vec();
            bytes.extend_from_slice(&[0, 0, kind, 0, 0, 0]);
            bytes.extend_from_slice(&rest);
            let _ = decode_packet(&bytes, MAX_PACKET);
        }
    }
}
