//! One syslog message as a value: bytes in, no I/O, never panics.
//!
//! The format is chosen as rsyslog chooses it: after the PRI, `1 ` (VERSION 1) means RFC
//! 5424, parsed by its grammar (a message that breaks it is refused with the reason);
//! anything else is RFC 3164, parsed leniently, because what devices send as "BSD syslog"
//! varies: the timestamp may be missing, carry a year or fractions, be RFC 3339, or be
//! followed by a colon (Cisco); the hostname may be missing. As in rsyslog, a first word
//! made only of hostname characters and followed by a space is the hostname. The tag
//! (`app[pid]:` or `app:`) is taken only where it is unmistakable, so a message without
//! one keeps all its words.
//!
//! Trailing line ends and NULs are trimmed (senders often add them to datagrams). Text that
//! RFC 5424 does not require to be UTF-8 (a MSG without BOM, anything in RFC 3164) is
//! decoded lossily (invalid bytes become U+FFFD).

use std::net::{Ipv6Addr, SocketAddr};

use serde_json::{json, Map, Value};

use crate::protocol::ami::escape_prefix;

/// Largest PRI: facility 23 (local7) × 8 + severity 7.
pub const MAX_PRI: u32 = 191;

/// RFC 5424 field limits (§6).
const MAX_HOSTNAME: usize = 255;
const MAX_APP_NAME: usize = 48;
const MAX_PROCID: usize = 128;
const MAX_MSGID: usize = 32;
const MAX_SD_NAME: usize = 32;
/// `YYYY-MM-DDThh:mm:ss.ffffff+hh:mm`
const MAX_TIMESTAMP: usize = 32;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Facility names by code, as rsyslog names them.
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];
const MONTHS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Rfc5424,
    Rfc3164,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
        }
    }
}

/// A parsed message. Absent fields (RFC 5424's NILVALUE `-`, or what an RFC 3164 message
/// did not carry) are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogMessage {
    pub format: Format,
    /// 0..=23
    pub facility: u8,
    /// 0..=7
    pub severity: u8,
    /// As sent, not normalised: RFC 3164 timestamps have no year or zone.
    pub timestamp: Option<String>,
    pub hostname: Option<String>,
    /// RFC 3164: the tag before `[pid]`.
    pub app_name: Option<String>,
    /// RFC 3164: the `pid` of `tag[pid]`.
    pub procid: Option<String>,
    pub msgid: Option<String>,
    /// In the order sent, repeated SD-IDs and parameter names kept.
    pub structured_data: Vec<SdElement>,
    /// Without the UTF-8 BOM that announced it.
    pub message: String,
}

/// One RFC 5424 SD-ELEMENT: `[id name="value" ...]`, values unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement {
    pub id: String,
    pub params: Vec<(String, String)>,
}

/// Why a datagram or frame is not a syslog message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty syslog message")]
    Empty,
    #[error("no PRI: a syslog message starts with <0> to <191>, this one with {0}")]
    MissingPri(String),
    #[error("bad PRI {0}: expected <0> to <191>")]
    BadPri(String),
    #[error("PRI <{0}> is out of range (at most <191>)")]
    PriOutOfRange(u32),
    #[error("RFC 5424 {field}: {problem}")]
    Header {
        field: &'static str,
        problem: String,
    },
    #[error("RFC 5424 STRUCTURED-DATA at byte {offset}: {problem}")]
    StructuredData { offset: usize, problem: String },
    #[error("RFC 5424 MSG starts with a UTF-8 BOM but byte {offset} is not valid UTF-8")]
    MessageNotUtf8 { offset: usize },
}

impl SyslogMessage {
    pub fn facility_name(&self) -> &'static str {
        FACILITIES
            .get(usize::from(self.facility))
            .copied()
            .unwrap_or("unknown")
    }

    pub fn severity_name(&self) -> &'static str {
        SEVERITIES
            .get(usize::from(self.severity))
            .copied()
            .unwrap_or("unknown")
    }

    /// The event's payload: the fields, and who sent it. Structured data becomes an object
    /// of SD-ID → object of parameters; a name repeated within one SD-ID (RFC 5424 allows
    /// it) becomes an array of its values in order.
    pub fn to_json(&self, sender: SocketAddr) -> Value {
        json!({
            "format": self.format.as_str(),
            "facility": { "code": self.facility, "name": self.facility_name() },
            "severity": { "code": self.severity, "name": self.severity_name() },
            "timestamp": self.timestamp,
            "hostname": self.hostname,
            "app_name": self.app_name,
            "procid": self.procid,
            "msgid": self.msgid,
            "structured_data": structured_data_json(&self.structured_data),
            "message": self.message,
            "sender": sender.to_string(),
        })
    }
}

fn structured_data_json(elements: &[SdElement]) -> Value {
    let mut ids = Map::new();
    for element in elements {
        let params = ids
            .entry(element.id.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(params) = params else {
            continue;
        };
        for (name, value) in &element.params {
            match params.get_mut(name) {
                None => {
                    params.insert(name.clone(), Value::String(value.clone()));
                }
                Some(Value::Array(values)) => values.push(Value::String(value.clone())),
                Some(first) => {
                    *first = Value::Array(vec![first.take(), Value::String(value.clone())]);
                }
            }
        }
    }
    Value::Object(ids)
}

/// Parses one message (one datagram, or one frame of a TCP stream).
pub fn parse(input: &[u8]) -> Result<SyslogMessage, ParseError> {
    let input = trim_line_end(input);
    if input.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut cursor = Cursor { input, pos: 0 };
    let pri = parse_pri(&mut cursor)?;
    // Both fit in u8: pri <= 191.
    let facility = u8::try_from(pri / 8).unwrap_or(u8::MAX);
    let severity = u8::try_from(pri % 8).unwrap_or(u8::MAX);
    if cursor.rest().starts_with(b"1 ") {
        cursor.advance(2);
        parse_5424(cursor, facility, severity)
    } else {
        Ok(parse_3164(cursor, facility, severity))
    }
}

fn trim_line_end(input: &[u8]) -> &[u8] {
    let end = input
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r' | b'\0'))
        .map_or(0, |last| last + 1);
    input.get(..end).unwrap_or_default()
}

struct Cursor<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        self.input.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn advance(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.input.len());
    }

    /// Bytes up to (not including) the next space, or to the end.
    fn take_until_space(&mut self) -> &'a [u8] {
        let rest = self.rest();
        let len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        self.advance(len);
        rest.get(..len).unwrap_or_default()
    }
}

fn parse_pri(cursor: &mut Cursor) -> Result<u32, ParseError> {
    if cursor.peek() != Some(b'<') {
        return Err(ParseError::MissingPri(escape_prefix(cursor.rest(), 20)));
    }
    let rest = cursor.rest();
    let digits = rest
        .get(1..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let bad = || ParseError::BadPri(escape_prefix(rest, 8));
    if digits == 0 || digits > 3 || rest.get(1 + digits) != Some(&b'>') {
        return Err(bad());
    }
    let pri = decimal(rest.get(1..1 + digits).unwrap_or_default()).ok_or_else(bad)?;
    if pri > MAX_PRI {
        return Err(ParseError::PriOutOfRange(pri));
    }
    cursor.advance(digits + 2);
    Ok(pri)
}

/// The value of a run of ASCII digits (at most 9, so it fits); `None` if empty or not digits.
fn decimal(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
}

// ---- RFC 5424 ----

fn parse_5424(mut cursor: Cursor, facility: u8, severity: u8) -> Result<SyslogMessage, ParseError> {
    let timestamp = header_field(&mut cursor, "TIMESTAMP", MAX_TIMESTAMP)?;
    if let Some(timestamp) = &timestamp {
        if rfc3339_len(timestamp.as_bytes()) != Some(timestamp.len()) {
            return Err(ParseError::Header {
                field: "TIMESTAMP",
                problem: format!(
                    "{} is not an RFC 3339 time (YYYY-MM-DDThh:mm:ss[.ffffff](Z|+hh:mm))",
                    escape_prefix(timestamp.as_bytes(), MAX_TIMESTAMP)
                ),
            });
        }
    }
    let hostname = header_field(&mut cursor, "HOSTNAME", MAX_HOSTNAME)?;
    let app_name = header_field(&mut cursor, "APP-NAME", MAX_APP_NAME)?;
    let procid = header_field(&mut cursor, "PROCID", MAX_PROCID)?;
    let msgid = header_field(&mut cursor, "MSGID", MAX_MSGID)?;
    let structured_data = structured_data(&mut cursor)?;
    let message = match cursor.bump() {
        None => String::new(),
        Some(b' ') => message_5424(&cursor)?,
        Some(other) => {
            return Err(ParseError::StructuredData {
                offset: cursor.pos - 1,
                problem: format!(
                    "expected a space or the end after it, found {}",
                    escape_prefix(&[other], 1)
                ),
            })
        }
    };
    Ok(SyslogMessage {
        format: Format::Rfc5424,
        facility,
        severity,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        structured_data,
        message,
    })
}

/// One space-terminated header field of printable US-ASCII; `-` is NILVALUE.
fn header_field(
    cursor: &mut Cursor,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, ParseError> {
    let problem = |problem: String| ParseError::Header { field, problem };
    let at_end = cursor.peek().is_none();
    let token = cursor.take_until_space();
    if token.is_empty() {
        return Err(problem(if at_end {
            "missing: the header ends before it".into()
        } else {
            "empty (two spaces in a row)".into()
        }));
    }
    if token.len() > max {
        return Err(problem(format!(
            "{} bytes, at most {max}: {}",
            token.len(),
            escape_prefix(token, 40)
        )));
    }
    if let Some(bad) = token.iter().find(|b| !is_print_us_ascii(**b)) {
        return Err(problem(format!(
            "byte {} is not printable US-ASCII: {}",
            escape_prefix(&[*bad], 1),
            escape_prefix(token, 40)
        )));
    }
    if cursor.bump() != Some(b' ') {
        return Err(problem(
            "the message ends after it (STRUCTURED-DATA is required)".into(),
        ));
    }
    Ok((token != b"-").then(|| ascii_string(token)))
}

fn is_print_us_ascii(byte: u8) -> bool {
    (33..=126).contains(&byte)
}

fn ascii_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn structured_data(cursor: &mut Cursor) -> Result<Vec<SdElement>, ParseError> {
    let error = |cursor: &Cursor, problem: String| ParseError::StructuredData {
        offset: cursor.pos,
        problem,
    };
    match cursor.peek() {
        Some(b'-') => {
            cursor.advance(1);
            return Ok(Vec::new());
        }
        Some(b'[') => {}
        None => return Err(error(cursor, "missing: the message ends before it".into())),
        Some(other) => {
            return Err(error(
                cursor,
                format!("expected '[' or '-', found {}", escape_prefix(&[other], 1)),
            ))
        }
    }
    let mut elements = Vec::new();
    while cursor.peek() == Some(b'[') {
        cursor.advance(1);
        let id = sd_name(cursor, "SD-ID")?;
        let mut params = Vec::new();
        loop {
            match cursor.bump() {
                Some(b']') => break,
                Some(b' ') => {
                    let name = sd_name(cursor, "PARAM-NAME")?;
                    if cursor.bump() != Some(b'=') || cursor.bump() != Some(b'"') {
                        return Err(error(
                            cursor,
                            format!("expected =\"value\" after parameter {name} of [{id}"),
                        ));
                    }
                    let value = param_value(cursor, &id, &name)?;
                    params.push((name, value));
                }
                None => return Err(error(cursor, format!("[{id} is not closed with ']'"))),
                Some(other) => {
                    return Err(error(
                        cursor,
                        format!(
                            "expected ' ' or ']' in [{id}, found {}",
                            escape_prefix(&[other], 1)
                        ),
                    ))
                }
            }
        }
        elements.push(SdElement { id, params });
    }
    Ok(elements)
}

/// SD-NAME: 1 to 32 printable US-ASCII, except `=`, space, `]` and `"`.
fn sd_name(cursor: &mut Cursor, what: &str) -> Result<String, ParseError> {
    let rest = cursor.rest();
    let len = rest
        .iter()
        .take_while(|&&b| is_print_us_ascii(b) && !matches!(b, b'=' | b']' | b'"'))
        .count();
    let name = rest.get(..len).unwrap_or_default();
    if name.is_empty() || name.len() > MAX_SD_NAME {
        return Err(ParseError::StructuredData {
            offset: cursor.pos,
            problem: format!(
                "{what} must be 1 to {MAX_SD_NAME} printable characters, found {}",
                escape_prefix(rest, 40)
            ),
        });
    }
    cursor.advance(len);
    Ok(ascii_string(name))
}

/// The value after the opening quote, up to the closing one, with `\"`, `\\` and `\]`
/// unescaped (any other backslash is kept, as RFC 5424 §6.3.3 says).
fn param_value(cursor: &mut Cursor, id: &str, name: &str) -> Result<String, ParseError> {
    let start = cursor.pos;
    let mut value = Vec::new();
    loop {
        match cursor.bump() {
            None => {
                return Err(ParseError::StructuredData {
                    offset: start,
                    problem: format!("the value of {name} in [{id} has no closing quote"),
                })
            }
            Some(b'"') => break,
            Some(b'\\') => match cursor.peek() {
                Some(escaped @ (b'"' | b'\\' | b']')) => {
                    value.push(escaped);
                    cursor.advance(1);
                }
                _ => value.push(b'\\'),
            },
            Some(byte) => value.push(byte),
        }
    }
    String::from_utf8(value).map_err(|e| ParseError::StructuredData {
        offset: start + e.utf8_error().valid_up_to(),
        problem: format!("the value of {name} in [{id} is not UTF-8"),
    })
}

fn message_5424(cursor: &Cursor) -> Result<String, ParseError> {
    let rest = cursor.rest();
    match rest.strip_prefix(BOM) {
        Some(text) => {
            std::str::from_utf8(text)
                .map(str::to_string)
                .map_err(|e| ParseError::MessageNotUtf8 {
                    offset: cursor.pos + BOM.len() + e.valid_up_to(),
                })
        }
        None => Ok(String::from_utf8_lossy(rest).into_owned()),
    }
}

/// The length of the RFC 3339 timestamp (RFC 5424 §6.2.3) at the start of `bytes`.
fn rfc3339_len(bytes: &[u8]) -> Option<usize> {
    let number = |at: usize, len: usize, max: u32| -> Option<u32> {
        decimal(bytes.get(at..at + len)?).filter(|n| *n <= max)
    };
    let separator = |at: usize, byte: u8| (bytes.get(at) == Some(&byte)).then_some(());
    number(0, 4, 9999)?;
    separator(4, b'-')?;
    number(5, 2, 12).filter(|m| *m >= 1)?;
    separator(7, b'-')?;
    number(8, 2, 31).filter(|d| *d >= 1)?;
    separator(10, b'T')?;
    number(11, 2, 23)?;
    separator(13, b':')?;
    number(14, 2, 59)?;
    separator(16, b':')?;
    number(17, 2, 60)?;
    let mut pos = 19;
    if bytes.get(pos) == Some(&b'.') {
        let fraction = bytes
            .get(pos + 1..)?
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if !(1..=6).contains(&fraction) {
            return None;
        }
        pos += 1 + fraction;
    }
    match bytes.get(pos)? {
        b'Z' => Some(pos + 1),
        b'+' | b'-' => {
            number(pos + 1, 2, 23)?;
            separator(pos + 3, b':')?;
            number(pos + 4, 2, 59)?;
            Some(pos + 6)
        }
        _ => None,
    }
}

// ---- RFC 3164 ----

fn parse_3164(mut cursor: Cursor, facility: u8, severity: u8) -> SyslogMessage {
    let timestamp = bsd_timestamp(&mut cursor);
    let hostname = bsd_hostname(&mut cursor);
    let (app_name, procid) = bsd_tag(&mut cursor);
    SyslogMessage {
        format: Format::Rfc3164,
        facility,
        severity,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid: None,
        structured_data: Vec::new(),
        message: String::from_utf8_lossy(cursor.rest()).into_owned(),
    }
}

/// An RFC 3339 or BSD timestamp, with the space after it; a leading space is tolerated
/// (HP ProCurve sends one).
fn bsd_timestamp(cursor: &mut Cursor) -> Option<String> {
    let rest = cursor.rest();
    let (skip, (len, used)) = match rfc3339_len(rest) {
        Some(len) if matches!(rest.get(len), None | Some(b' ')) => {
            (0, (len, (len + 1).min(rest.len())))
        }
        _ => match bsd_time_len(rest) {
            Some(found) => (0, found),
            None if rest.first() == Some(&b' ') => {
                (1, bsd_time_len(rest.get(1..).unwrap_or_default())?)
            }
            None => return None,
        },
    };
    let timestamp = String::from_utf8_lossy(rest.get(skip..skip + len)?).into_owned();
    cursor.advance(skip + used);
    Some(timestamp)
}

/// `[yyyy ]Mmm [ ]d[d] [yyyy ]hh:mm:ss[.fff][:]` followed by a space or the end, as
/// rsyslog accepts it: the timestamp's length and the bytes it uses with its separator.
fn bsd_time_len(bytes: &[u8]) -> Option<(usize, usize)> {
    let number = |at: usize, max_digits: usize| -> Option<(u32, usize)> {
        let digits = bytes
            .get(at..)?
            .iter()
            .take(max_digits)
            .take_while(|b| b.is_ascii_digit())
            .count();
        Some((decimal(bytes.get(at..at + digits)?)?, digits))
    };
    let space = |at: usize| (bytes.get(at) == Some(&b' ')).then_some(at + 1);
    let mut pos = 0;
    let mut year = None;
    if bytes.first().is_some_and(u8::is_ascii_digit) {
        // A year first (Brocade).
        let (y, len) = number(0, 4)?;
        if !(1970..=2100).contains(&y) {
            return None;
        }
        year = Some(y);
        pos = space(len)?;
    }
    let month = bytes.get(pos..pos + 3)?.to_ascii_lowercase();
    if !MONTHS.iter().any(|m| m.as_slice() == month.as_slice()) {
        return None;
    }
    pos = space(pos + 3)?;
    if bytes.get(pos) == Some(&b' ') {
        pos += 1;
    }
    let (day, len) = number(pos, 2)?;
    if !(1..=31).contains(&day) {
        return None;
    }
    pos = space(pos + len)?;
    let (mut hour, mut len) = number(pos, 4)?;
    if year.is_none() && (1970..=2100).contains(&hour) {
        // "Mmm dd yyyy hh:mm:ss" (Cisco).
        pos = space(pos + len)?;
        (hour, len) = number(pos, 2)?;
    }
    if hour > 23 {
        return None;
    }
    pos += len;
    for max in [59, 60] {
        if bytes.get(pos) != Some(&b':') {
            return None;
        }
        let (value, len) = number(pos + 1, 2)?;
        if value > max {
            return None;
        }
        pos += 1 + len;
    }
    if bytes.get(pos) == Some(&b'.') {
        let (_, len) = number(pos + 1, 9)?;
        pos += 1 + len;
    }
    let end = pos;
    if bytes.get(pos) == Some(&b':') {
        pos += 1;
    }
    match bytes.get(pos) {
        None => Some((end, pos)),
        Some(b' ') => Some((end, pos + 1)),
        Some(_) => None,
    }
}

/// rsyslog's rule: a first word of letters, digits, `.`, `_` and `-` that ends in a letter
/// or digit and is followed by a space (or is all that is left) is the hostname. An IPv6
/// address followed by a space is one too.
fn bsd_hostname(cursor: &mut Cursor) -> Option<String> {
    let rest = cursor.rest();
    let len = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        .count();
    let word = rest.get(..len).unwrap_or_default();
    if len > 0 && len <= MAX_HOSTNAME {
        if len == rest.len() {
            cursor.advance(len);
            return Some(ascii_string(word));
        }
        let ends_alphanumeric = word.last().is_some_and(u8::is_ascii_alphanumeric);
        if ends_alphanumeric && rest.get(len) == Some(&b' ') {
            cursor.advance(len + 1);
            return Some(ascii_string(word));
        }
    }
    let token_len = rest.iter().position(|&b| b == b' ')?;
    let token = std::str::from_utf8(rest.get(..token_len)?).ok()?;
    token.parse::<Ipv6Addr>().ok()?;
    cursor.advance(token_len + 1);
    Some(token.to_string())
}

/// `app[pid]:`, `app[pid] ` or `app:`, and the space after it: (app, pid). A first word
/// that is none of these stays in the message.
fn bsd_tag(cursor: &mut Cursor) -> (Option<String>, Option<String>) {
    let rest = cursor.rest();
    let len = rest
        .iter()
        .position(|&b| b == b' ' || b == b':')
        .unwrap_or(rest.len());
    let token = rest.get(..len).unwrap_or_default();
    let terminator = rest.get(len).copied();
    let bracketed = token.strip_suffix(b"]").and_then(|inner| {
        let open = inner.iter().position(|&b| b == b'[')?;
        Some((inner.get(..open)?, inner.get(open + 1..)?))
    });
    let (name, pid) = match bracketed {
        Some((name, pid)) if !name.is_empty() => (name, Some(pid)),
        _ if terminator == Some(b':') && !token.is_empty() => (token, None),
        _ => return (None, None),
    };
    let mut used = len;
    if terminator == Some(b':') {
        used += 1;
    }
    if rest.get(used) == Some(&b' ') {
        used += 1;
    }
    cursor.advance(used);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        Some(text(name)),
        pid.filter(|pid| !pid.is_empty()).map(text),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(line: &str) -> SyslogMessage {
        parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    fn sd(id: &str, params: &[(&str, &str)]) -> SdElement {
        SdElement {
            id: id.into(),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    // RFC 5424 §6.5, examples 1 to 4.

    #[test]
    fn rfc5424_example_with_bom_and_no_structured_data() {
        let m = parse(
            b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \
              \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8",
        )
        .unwrap();
        assert_eq!(
            m,
            SyslogMessage {
                format: Format::Rfc5424,
                facility: 4,
                severity: 2,
                timestamp: some("2003-10-11T22:14:15.003Z"),
                hostname: some("mymachine.example.com"),
                app_name: some("su"),
                procid: None,
                msgid: some("ID47"),
                structured_data: vec![],
                message: "'su root' failed for lonvick on /dev/pts/8".into(),
            }
        );
        assert_eq!((m.facility_name(), m.severity_name()), ("auth", "crit"));
    }

    #[test]
    fn rfc5424_example_with_offset_and_nil_fields() {
        let m = ok("<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.");
        assert_eq!((m.facility, m.severity), (20, 5));
        assert_eq!(m.facility_name(), "local4");
        assert_eq!(m.timestamp, some("2003-08-24T05:14:15.000003-07:00"));
        assert_eq!(m.hostname, some("192.0.2.1"));
        assert_eq!(m.procid, some("8710"));
        assert_eq!(m.msgid, None);
        assert_eq!(m.message, "%% It's time to make the do-nuts.");
    }

    #[test]
    fn rfc5424_examples_with_structured_data() {
        let m = ok("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] An application event log entry...");
        assert_eq!(
            m.structured_data,
            [sd(
                "exampleSDID@32473",
                &[
                    ("iut", "3"),
                    ("eventSource", "Application"),
                    ("eventID", "1011")
                ]
            )]
        );
        assert_eq!(m.message, "An application event log entry...");

        let m = ok("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]");
        assert_eq!(m.structured_data.len(), 2);
        assert_eq!(
            m.structured_data[1],
            sd("examplePriority@32473", &[("class", "high")])
        );
        assert_eq!(m.message, "");
    }

    #[test]
    fn param_values_are_unescaped_and_other_backslashes_kept() {
        let m = ok(r#"<13>1 - - - - - [x@1 q="a\"b" s="c\\d" b="e\]f" n="g\nh" r="[i]"] msg"#);
        assert_eq!(
            m.structured_data,
            [sd(
                "x@1",
                &[
                    ("q", "a\"b"),
                    ("s", "c\\d"),
                    ("b", "e]f"),
                    ("n", "g\\nh"),
                    ("r", "[i]")
                ]
            )]
        );
        assert_eq!(m.timestamp, None);
        assert_eq!(m.hostname, None);
    }

    #[test]
    fn util_linux_logger_lines() {
        // What `logger --rfc5424 --sd-id zoo@123 --sd-param tiger="hungry"` sends.
        let m = ok("<13>1 2024-05-02T10:11:12.345678+02:00 box myapp - - [timeQuality tzKnown=\"1\" isSynced=\"0\"][zoo@123 tiger=\"hungry\"] message");
        assert_eq!(m.structured_data[0].id, "timeQuality");
        assert_eq!(m.structured_data[1], sd("zoo@123", &[("tiger", "hungry")]));
        assert_eq!(m.app_name, some("myapp"));
        assert_eq!(m.message, "message");
        // `logger --rfc3164`.
        let m = ok("<13>May  2 10:11:12 box myapp: message");
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!(m.timestamp, some("May  2 10:11:12"));
        assert_eq!(m.hostname, some("box"));
        assert_eq!(m.app_name, some("myapp"));
        assert_eq!(m.message, "message");
    }

    #[test]
    fn trailing_line_ends_and_nuls_are_trimmed() {
        assert_eq!(ok("<13>1 - - - - - - hello\r\n").message, "hello");
        assert_eq!(ok("<13>May  2 10:11:12 box app: hi\n\0").message, "hi");
    }

    #[test]
    fn json_has_every_field_and_merges_structured_data() {
        let m = ok(
            r#"<14>1 2024-01-02T03:04:05Z host app 42 ID1 [a@1 k="1" k="2" j="x"][b@2][a@1 k="3"] text"#,
        );
        let sender: SocketAddr = "192.0.2.7:5140".parse().unwrap();
        assert_eq!(
            m.to_json(sender),
            json!({
                "format": "rfc5424",
                "facility": {"code": 1, "name": "user"},
                "severity": {"code": 6, "name": "info"},
                "timestamp": "2024-01-02T03:04:05Z",
                "hostname": "host",
                "app_name": "app",
                "procid": "42",
                "msgid": "ID1",
                "structured_data": {"a@1": {"k": ["1", "2", "3"], "j": "x"}, "b@2": {}},
                "message": "text",
                "sender": "192.0.2.7:5140",
            })
        );
    }

    // RFC 3164 as devices send it.

    #[test]
    fn rfc3164_example() {
        let m = ok("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(
            m,
            SyslogMessage {
                format: Format::Rfc3164,
                facility: 4,
                severity: 2,
                timestamp: some("Oct 11 22:14:15"),
                hostname: some("mymachine"),
                app_name: some("su"),
                procid: None,
                msgid: None,
                structured_data: vec![],
                message: "'su root' failed for lonvick on /dev/pts/8".into(),
            }
        );
    }

    #[test]
    fn rfc3164_tag_with_pid_and_no_tag() {
        let m = ok("<86>Mar  3 04:05:06 web-01 CRON[123]: pam_unix(cron:session): session opened");
        assert_eq!(m.hostname, some("web-01"));
        assert_eq!((m.app_name, m.procid), (some("CRON"), some("123")));
        assert_eq!(m.message, "pam_unix(cron:session): session opened");
        // No tag: every word stays in the message.
        let m = ok("<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!");
        assert_eq!(m.hostname, some("10.0.0.99"));
        assert_eq!((m.app_name, m.procid), (None, None));
        assert_eq!(m.message, "Use the BFG!");
    }

    #[test]
    fn rfc3164_without_hostname_or_timestamp() {
        let m = ok("<30>Mar  3 04:05:06 systemd[1]: Started Session 5.");
        assert_eq!(m.hostname, None);
        assert_eq!((m.app_name, m.procid), (some("systemd"), some("1")));
        assert_eq!(m.message, "Started Session 5.");
        let m = ok("<38>sshd[1234]: Accepted publickey for root");
        assert_eq!(m.timestamp, None);
        assert_eq!(m.hostname, None);
        assert_eq!(m.app_name, some("sshd"));
        assert_eq!(m.message, "Accepted publickey for root");
        let m = ok("<6>kernel: [    1.234] usb 1-1: new high-speed USB device");
        assert_eq!(m.app_name, some("kernel"));
        assert_eq!(m.message, "[    1.234] usb 1-1: new high-speed USB device");
        let m = ok("<13>");
        assert_eq!((m.hostname, m.message), (None, String::new()));
    }

    #[test]
    fn rfc3164_timestamp_variants() {
        // Cisco: year, fractions and a colon after the timestamp; no hostname.
        let m =
            ok("<189>Jan 12 2024 10:11:12.123: %SYS-5-CONFIG_I: Configured from console by vty0");
        assert_eq!(m.timestamp, some("Jan 12 2024 10:11:12.123"));
        assert_eq!(m.hostname, None);
        assert_eq!(m.app_name, some("%SYS-5-CONFIG_I"));
        assert_eq!(m.message, "Configured from console by vty0");
        // A year first (Brocade), lower-case month, one-digit day.
        let m = ok("<13>2024 jan 5 01:02:03 sw1 app: x");
        assert_eq!(m.timestamp, some("2024 jan 5 01:02:03"));
        assert_eq!(m.hostname, some("sw1"));
        // A leading space (HP ProCurve).
        let m = ok("<14> Jan  1 00:00:00 switch1 hello");
        assert_eq!(m.timestamp, some("Jan  1 00:00:00"));
        assert_eq!(m.hostname, some("switch1"));
        assert_eq!(m.message, "hello");
        // RFC 3339 in an RFC 3164 message (rsyslog's forwarding format).
        let m = ok("<30>2024-03-01T12:00:00.123456+01:00 web01 nginx[88]: GET /");
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!(m.timestamp, some("2024-03-01T12:00:00.123456+01:00"));
        assert_eq!(m.hostname, some("web01"));
        assert_eq!((m.app_name, m.procid), (some("nginx"), some("88")));
        // Not a timestamp: left in place.
        let m = ok("<13>Foo 12 10:11:12 host app: x");
        assert_eq!(m.timestamp, None);
        assert_eq!(m.hostname, some("Foo"));
        let m = ok("<13>Jan 32 10:11:12 host app: x");
        assert_eq!(m.timestamp, None);
    }

    #[test]
    fn rfc3164_ipv6_hostname_and_non_utf8_content() {
        let m = parse(b"<13>Jan  1 00:00:00 2001:db8::1 app: caf\xE9").unwrap();
        assert_eq!(m.hostname, some("2001:db8::1"));
        assert_eq!(m.app_name, some("app"));
        assert_eq!(m.message, "caf\u{FFFD}");
    }

    // Malformed input.

    #[test]
    fn pri_is_required_and_bounded() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"\n\0"), Err(ParseError::Empty));
        let err = parse(b"hello world").unwrap_err();
        assert!(matches!(err, ParseError::MissingPri(_)), "{err}");
        assert!(err.to_string().contains("hello world"), "{err}");
        assert_eq!(
            parse(b"<192>1 - - - - - -"),
            Err(ParseError::PriOutOfRange(192))
        );
        assert_eq!(parse(b"<999>x"), Err(ParseError::PriOutOfRange(999)));
        for bad in [&b"<>x"[..], b"<1234>x", b"<13", b"<1x>", b"<-1>"] {
            assert!(
                matches!(parse(bad), Err(ParseError::BadPri(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(ok("<0>1 - - - - - -").facility_name(), "kern");
        assert_eq!(ok("<191>x").facility_name(), "local7");
    }

    #[test]
    fn bad_rfc5424_headers_say_which_field() {
        let field_of = |line: &str| match parse(line.as_bytes()) {
            Err(ParseError::Header { field, .. }) => field,
            other => panic!("{line:?}: {other:?}"),
        };
        assert_eq!(
            field_of("<13>1 2003-13-11T22:14:15Z h a p m -"),
            "TIMESTAMP"
        );
        assert_eq!(
            field_of("<13>1 2003-10-11 22:14:15Z h a p m -"),
            "TIMESTAMP"
        );
        assert_eq!(field_of("<13>1 2003-10-11T22:14:15 h a p m -"), "TIMESTAMP");
        assert_eq!(
            field_of("<13>1 2003-10-11T22:14:15.1234567Z h a p m -"),
            "TIMESTAMP"
        );
        assert_eq!(field_of("<13>1 -  a p m -"), "HOSTNAME");
        assert_eq!(field_of("<13>1 - h"), "HOSTNAME");
        assert_eq!(field_of("<13>1 - h a p"), "PROCID");
        assert_eq!(field_of("<13>1 - h a p "), "MSGID");
        let long_app = format!("<13>1 - h {} p m -", "a".repeat(49));
        assert_eq!(field_of(&long_app), "APP-NAME");
        let err = parse(b"<13>1 - h\xC3\xA9 a p m -").unwrap_err();
        assert!(err.to_string().contains("HOSTNAME"), "{err}");
        assert!(err.to_string().contains("not printable US-ASCII"), "{err}");
    }

    #[test]
    fn bad_structured_data_is_refused() {
        for line in [
            "<13>1 - - - - - ",
            "<13>1 - - - - - x",
            "<13>1 - - - - - [",
            "<13>1 - - - - - []",
            "<13>1 - - - - - [id",
            "<13>1 - - - - - [id a=\"unterminated]",
            "<13>1 - - - - - [id a=unquoted]",
            "<13>1 - - - - - [id a]",
            "<13>1 - - - - - [id  a=\"1\"]",
            "<13>1 - - - - - [id a=\"1\"]x",
            "<13>1 - - - - - -x",
            "<13>1 - - - - - [id =\"1\"]",
            "<13>1 - - - - - [abcdefghijklmnopqrstuvwxyz0123456789 a=\"1\"]",
        ] {
            assert!(
                matches!(
                    parse(line.as_bytes()),
                    Err(ParseError::StructuredData { .. })
                ),
                "{line:?}: {:?}",
                parse(line.as_bytes())
            );
        }
        let err = parse(b"<13>1 - - - - - [id a=\"\xFF\"]").unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn a_bom_promises_utf8() {
        assert_eq!(
            parse(b"<13>1 - - - - - - \xEF\xBB\xBFok\xFF"),
            Err(ParseError::MessageNotUtf8 { offset: 23 })
        );
        // Without a BOM any octets are allowed (decoded lossily).
        assert_eq!(ok_bytes(b"<13>1 - - - - - - ok\xFF").message, "ok\u{FFFD}");
    }

    fn ok_bytes(bytes: &[u8]) -> SyslogMessage {
        parse(bytes).unwrap()
    }

    // Properties.

    fn print_ascii(max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[!-~]{{1,{max}}}"))
            .expect("a valid regex")
            .prop_filter("not NILVALUE", |s| s != "-")
    }

    fn sd_name() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[!#-<>-\\\\^-~]{1,32}").expect("a valid regex")
    }

    fn timestamp() -> impl Strategy<Value = String> {
        (
            (0u32..10000, 1u32..=12, 1u32..=31),
            (0u32..24, 0u32..60, 0u32..=60),
            prop::option::of(proptest::string::string_regex("[0-9]{1,6}").expect("regex")),
            prop_oneof![
                Just("Z".to_string()),
                (prop_oneof![Just('+'), Just('-')], 0u32..24, 0u32..60)
                    .prop_map(|(sign, h, m)| format!("{sign}{h:02}:{m:02}")),
            ],
        )
            .prop_map(|((y, mo, d), (h, mi, s), fraction, offset)| {
                let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{fraction}{offset}")
            })
    }

    fn escape_value(value: &str) -> String {
        let mut escaped = String::new();
        for c in value.chars() {
            if matches!(c, '"' | '\\' | ']') {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        escaped
    }

    fn nil(field: &Option<String>) -> &str {
        field.as_deref().unwrap_or("-")
    }

    fn encode_5424(m: &SyslogMessage, bom: bool) -> Vec<u8> {
        let mut line = format!(
            "<{}>1 {} {} {} {} {} ",
            u32::from(m.facility) * 8 + u32::from(m.severity),
            nil(&m.timestamp),
            nil(&m.hostname),
            nil(&m.app_name),
            nil(&m.procid),
            nil(&m.msgid),
        )
        .into_bytes();
        if m.structured_data.is_empty() {
            line.push(b'-');
        }
        for element in &m.structured_data {
            line.extend_from_slice(format!("[{}", element.id).as_bytes());
            for (name, value) in &element.params {
                line.extend_from_slice(format!(" {name}=\"{}\"", escape_value(value)).as_bytes());
            }
            line.push(b']');
        }
        if bom || !m.message.is_empty() {
            line.push(b' ');
            if bom {
                line.extend_from_slice(BOM);
            }
            line.extend_from_slice(m.message.as_bytes());
        }
        line
    }

    fn message_5424() -> impl Strategy<Value = (SyslogMessage, bool)> {
        (
            (0u8..24, 0u8..8),
            prop::option::of(timestamp()),
            prop::option::of(print_ascii(MAX_HOSTNAME)),
            prop::option::of(print_ascii(MAX_APP_NAME)),
            prop::option::of(print_ascii(MAX_PROCID)),
            prop::option::of(print_ascii(MAX_MSGID)),
            prop::collection::vec(
                (
                    sd_name(),
                    prop::collection::vec((sd_name(), any::<String>()), 0..4),
                ),
                0..4,
            ),
            any::<String>().prop_filter("no leading BOM or trailing line end", |m| {
                !m.starts_with('\u{FEFF}') && !m.ends_with(['\n', '\r', '\0'])
            }),
            any::<bool>(),
        )
            .prop_map(
                |(
                    (facility, severity),
                    timestamp,
                    hostname,
                    app_name,
                    procid,
                    msgid,
                    sd,
                    message,
                    bom,
                )| {
                    let message = SyslogMessage {
                        format: Format::Rfc5424,
                        facility,
                        severity,
                        timestamp,
                        hostname,
                        app_name,
                        procid,
                        msgid,
                        structured_data: sd
                            .into_iter()
                            .map(|(id, params)| SdElement { id, params })
                            .collect(),
                        message,
                    };
                    (message, bom)
                },
            )
    }

    proptest! {
        #[test]
        fn generated_rfc5424_messages_round_trip((message, bom) in message_5424()) {
            let wire = encode_5424(&message, bom);
            prop_assert_eq!(parse(&wire), Ok(message));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn arbitrary_bytes_after_a_header_never_panic(
            prefix in prop_oneof![
                Just(&b"<13>1 "[..]),
                Just(&b"<13>1 - - - - - ["[..]),
                Just(&b"<13>"[..]),
                Just(&b"<13>Jan  1 "[..]),
            ],
            bytes in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut wire = prefix.to_vec();
            wire.extend_from_slice(&bytes);
            if let Ok(m) = parse(&wire) {
                prop_assert!(m.facility == 1 && m.severity == 5);
            }
        }

        #[test]
        fn rfc3164_after_a_valid_pri_always_parses(text in "[ -~]{0,120}") {
            let line = format!("<13>{text}");
            prop_assume!(!line.starts_with("<13>1 "));
            let m = parse(line.as_bytes());
            prop_assert!(m.is_ok(), "{:?}", m);
        }
    }
}
