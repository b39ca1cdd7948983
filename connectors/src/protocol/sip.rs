//! SIP (RFC 3261) messages: enough to send an OPTIONS request and to read the answer, over
//! UDP (one message per datagram) or a stream (framed by `Content-Length`).
//!
//! [`Message`] holds a start line, the headers in order and the body. `Content-Length` is
//! framing, not content: decoding turns it into the body's length and encoding writes it
//! from the body, so the two can never disagree. Header lookups understand the compact
//! forms (`v` for Via, `i` for Call-ID, ...) and ignore case.

use std::fmt;
use std::net::SocketAddr;

use super::DecodeError;

/// Largest message accepted (head and body together). A UDP datagram cannot exceed 64 KiB
/// anyway; on a stream this bounds what a peer can make us buffer.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The magic cookie every RFC 3261 branch starts with.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

const VERSION: &str = "SIP/2.0";

/// A request line or a status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

/// One SIP message. `headers` never contains `Content-Length` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a message cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("SIP {what} {value:?} is empty or contains characters it may not")]
    Invalid { what: &'static str, value: String },
}

impl Message {
    /// The value of the first header called `name` (case-insensitive, compact forms too).
    pub fn header(&self, name: &str) -> Option<&str> {
        let wanted = canonical_name(name);
        self.headers
            .iter()
            .find(|(n, _)| canonical_name(n).eq_ignore_ascii_case(wanted))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the headers called `name`, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let wanted = canonical_name(name);
        self.headers
            .iter()
            .filter(move |(n, _)| canonical_name(n).eq_ignore_ascii_case(wanted))
            .map(|(_, v)| v.as_str())
    }

    /// The status code, if this is a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The branch parameter of the topmost Via: the transaction key of RFC 3261 17.
    pub fn top_via_branch(&self) -> Option<&str> {
        let via = self.header("Via")?;
        let first = via.split(',').next()?;
        header_param(first, "branch")
    }

    /// The CSeq header as (number, method).
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let mut parts = self.header("CSeq")?.split_whitespace();
        let number = parts.next()?.parse().ok()?;
        let method = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        Some((number, method))
    }

    /// Whether this is a response to the request with this branch, Call-ID and CSeq.
    pub fn answers(&self, branch: &str, call_id: &str, cseq: (u32, &str)) -> bool {
        self.status().is_some()
            && self.top_via_branch() == Some(branch)
            && self.header("Call-ID") == Some(call_id)
            && self
                .cseq()
                .is_some_and(|(n, m)| n == cseq.0 && m.eq_ignore_ascii_case(cseq.1))
    }

    /// A response to this request as a UAS builds it (RFC 3261 8.2.6.2): Via, From, To,
    /// Call-ID and CSeq copied, a To tag added when missing. Used by test responders.
    pub fn response_to(&self, code: u16, reason: &str, to_tag: &str) -> Message {
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let canonical = canonical_name(name);
            if ["via", "from", "call-id", "cseq"]
                .iter()
                .any(|h| canonical.eq_ignore_ascii_case(h))
            {
                headers.push((name.clone(), value.clone()));
            } else if canonical.eq_ignore_ascii_case("to") {
                let value = if header_param(value, "tag").is_some() {
                    value.clone()
                } else {
                    format!("{value};tag={to_tag}")
                };
                headers.push((name.clone(), value));
            }
        }
        Message {
            start: StartLine::Response {
                code,
                reason: reason.to_string(),
            },
            headers,
            body: Vec::new(),
        }
    }

    /// The wire form, with `Content-Length` from the body. Refuses anything that would
    /// break the framing (line breaks in values, spaces in a URI, ...).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                check(is_token(method), "method", method)?;
                check(
                    !uri.is_empty() && !uri.bytes().any(|b| b <= b' ' || b == 0x7f),
                    "Request-URI",
                    uri,
                )?;
                out.extend_from_slice(format!("{method} {uri} {VERSION}\r\n").as_bytes());
            }
            StartLine::Response { code, reason } => {
                check((100..=699).contains(code), "status code", &code.to_string())?;
                check(is_field_text(reason), "reason phrase", reason)?;
                out.extend_from_slice(format!("{VERSION} {code} {reason}\r\n").as_bytes());
            }
        }
        for (name, value) in &self.headers {
            check(
                is_token(name) && !canonical_name(name).eq_ignore_ascii_case("content-length"),
                "header name",
                name,
            )?;
            check(
                is_field_text(value) && value.trim() == value,
                "header value",
                value,
            )?;
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        Ok(out)
    }
}

impl fmt::Display for StartLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartLine::Request { method, uri } => write!(f, "{method} {uri}"),
            StartLine::Response { code, reason } => write!(f, "{code} {reason}"),
        }
    }
}

fn check(ok: bool, what: &'static str, value: &str) -> Result<(), EncodeError> {
    if ok {
        Ok(())
    } else {
        Err(EncodeError::Invalid {
            what,
            value: value.to_string(),
        })
    }
}

/// RFC 3261 token characters (header names, methods).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

fn is_field_text(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() && c != '\t')
}

/// The long name of a compact header form (RFC 3261 7.3.3 and later RFCs).
fn canonical_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes().first().map(u8::to_ascii_lowercase) {
        Some(b'i') => "Call-ID",
        Some(b'm') => "Contact",
        Some(b'e') => "Content-Encoding",
        Some(b'l') => "Content-Length",
        Some(b'c') => "Content-Type",
        Some(b'f') => "From",
        Some(b's') => "Subject",
        Some(b'k') => "Supported",
        Some(b't') => "To",
        Some(b'v') => "Via",
        _ => name,
    }
}

/// The value of parameter `name` in a header value like `SIP/2.0/UDP h:p;branch=x;rport`.
/// A parameter without a value (`rport`) yields `""`.
pub fn header_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value.split(';').skip(1).find_map(|param| {
        let (key, val) = match param.split_once('=') {
            Some((k, v)) => (k, v),
            None => (param, ""),
        };
        key.trim().eq_ignore_ascii_case(name).then(|| val.trim())
    })
}

/// Decodes the first message on a stream (TCP, TLS). Returns it with the bytes used, or
/// `None` until the head and the `Content-Length` bytes of body have arrived. CRLF keep-alives
/// before a message (RFC 5626) are skipped. A missing `Content-Length` means an empty body.
pub fn decode_stream(buf: &[u8]) -> Result<Option<(Message, usize)>, DecodeError> {
    let skipped = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = buf.get(skipped..).unwrap_or_default();
    let Some(head) = parse_head(rest)? else {
        return Ok(None);
    };
    let body_len = head.content_length.unwrap_or(0);
    let total = head.head_len.saturating_add(body_len);
    if total > MAX_MESSAGE {
        return Err(DecodeError::TooLarge {
            size: total,
            limit: MAX_MESSAGE,
        });
    }
    let Some(body) = rest.get(head.head_len..total) else {
        return Ok(None);
    };
    Ok(Some((
        Message {
            start: head.start,
            headers: head.headers,
            body: body.to_vec(),
        },
        skipped.saturating_add(total),
    )))
}

/// Decodes one whole datagram (UDP). The body is the rest of the datagram, cut to
/// `Content-Length` if that is smaller; a larger `Content-Length` means a truncated message.
pub fn decode_datagram(datagram: &[u8]) -> Result<Message, DecodeError> {
    if datagram.len() > MAX_MESSAGE {
        return Err(DecodeError::TooLarge {
            size: datagram.len(),
            limit: MAX_MESSAGE,
        });
    }
    let skipped = datagram
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(datagram.len());
    let rest = datagram.get(skipped..).unwrap_or_default();
    let head = parse_head(rest)?.ok_or_else(|| {
        DecodeError::Invalid("SIP datagram ends before the end of its headers".into())
    })?;
    let after = rest.get(head.head_len..).unwrap_or_default();
    let body = match head.content_length {
        Some(len) => after.get(..len).ok_or_else(|| {
            DecodeError::Invalid(format!(
                "SIP datagram truncated: Content-Length {len}, {} bytes of body",
                after.len()
            ))
        })?,
        None => after,
    };
    Ok(Message {
        start: head.start,
        headers: head.headers,
        body: body.to_vec(),
    })
}

struct Head {
    start: StartLine,
    headers: Vec<(String, String)>,
    content_length: Option<usize>,
    /// Bytes up to and including the empty line.
    head_len: usize,
}

/// Parses the start line and headers, or `None` if the empty line has not arrived yet.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, DecodeError> {
    let mut start = None;
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut pos = 0usize;
    let head_len = loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_MESSAGE {
                return Err(DecodeError::TooLarge {
                    size: buf.len(),
                    limit: MAX_MESSAGE,
                });
            }
            if start.is_none() {
                // Fail early on a first line that cannot start a SIP message.
                check_start_prefix(rest)?;
            }
            return Ok(None);
        };
        let raw = rest.get(..newline).unwrap_or_default();
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        pos = pos.saturating_add(newline).saturating_add(1);
        if pos > MAX_MESSAGE {
            return Err(DecodeError::TooLarge {
                size: pos,
                limit: MAX_MESSAGE,
            });
        }
        if line.is_empty() {
            break pos;
        }
        if start.is_none() {
            // Checked as soon as it is complete, so a foreign protocol fails early.
            start = Some(parse_start_line(line)?);
        } else {
            lines.push(line);
        }
    };
    let Some(start) = start else {
        return Err(DecodeError::Invalid(
            "SIP message without a start line".into(),
        ));
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut content_length = None;
    for line in lines {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            // A folded continuation of the previous header (RFC 3261 7.3.1).
            let Some((_, value)) = headers.last_mut() else {
                return Err(DecodeError::Invalid(
                    "SIP header continuation before any header".into(),
                ));
            };
            let more = String::from_utf8_lossy(line);
            value.push(' ');
            value.push_str(more.trim());
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(DecodeError::Invalid(format!(
                "SIP header line without ':': {}",
                super::ami::escape_prefix(line, 60)
            )));
        };
        let name = String::from_utf8_lossy(line.get(..colon).unwrap_or_default())
            .trim()
            .to_string();
        if !is_token(&name) {
            return Err(DecodeError::Invalid(format!(
                "invalid SIP header name: {}",
                super::ami::escape_prefix(line, 60)
            )));
        }
        let value = String::from_utf8_lossy(line.get(colon + 1..).unwrap_or_default())
            .trim()
            .to_string();
        headers.push((name, value));
    }
    // Content-Length is framing: take it out of the headers (see the module docs).
    let mut kept = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if canonical_name(&name).eq_ignore_ascii_case("content-length") {
            let len: usize = value.parse().map_err(|_| {
                DecodeError::Invalid(format!("invalid SIP Content-Length {value:?}"))
            })?;
            if content_length.is_some_and(|previous| previous != len) {
                return Err(DecodeError::Invalid(
                    "conflicting SIP Content-Length headers".into(),
                ));
            }
            content_length = Some(len);
        } else {
            kept.push((name, value));
        }
    }
    Ok(Some(Head {
        start,
        headers: kept,
        content_length,
        head_len,
    }))
}

/// Rejects a partial first line that can be neither a status line nor a request line.
fn check_start_prefix(partial: &[u8]) -> Result<(), DecodeError> {
    let version = VERSION.as_bytes();
    let n = partial.len().min(version.len());
    let could_be_response = partial
        .get(..n)
        .zip(version.get(..n))
        .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b));
    let method_part = partial.split(|&b| b == b' ').next().unwrap_or_default();
    let could_be_request = method_part
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
    if could_be_response || could_be_request {
        Ok(())
    } else {
        Err(DecodeError::Invalid(format!(
            "not a SIP message: {}",
            super::ami::escape_prefix(partial, 40)
        )))
    }
}

fn parse_start_line(line: &[u8]) -> Result<StartLine, DecodeError> {
    let invalid = || {
        DecodeError::Invalid(format!(
            "not a SIP start line: {}",
            super::ami::escape_prefix(line, 60)
        ))
    };
    let text = std::str::from_utf8(line).map_err(|_| invalid())?;
    let (first, rest) = text.split_once(' ').ok_or_else(invalid)?;
    if first.eq_ignore_ascii_case(VERSION) {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let code: u16 = code.parse().map_err(|_| invalid())?;
        if !(100..=699).contains(&code) || !is_field_text(reason) {
            return Err(invalid());
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.trim().to_string(),
        });
    }
    let (uri, version) = rest.split_once(' ').ok_or_else(invalid)?;
    if !is_token(first) || uri.is_empty() || !version.eq_ignore_ascii_case(VERSION) {
        return Err(invalid());
    }
    Ok(StartLine::Request {
        method: first.to_string(),
        uri: uri.to_string(),
    })
}

/// Transport named in the Via header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViaTransport {
    Udp,
    Tcp,
}

impl ViaTransport {
    fn as_str(self) -> &'static str {
        match self {
            ViaTransport::Udp => "UDP",
            ViaTransport::Tcp => "TCP",
        }
    }
}

/// Everything that varies in a health-check OPTIONS request (RFC 3261 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsRequest {
    pub request_uri: String,
    pub transport: ViaTransport,
    /// The socket's real local address: Via sent-by, From and Contact host.
    pub local: SocketAddr,
    /// Starts with [`BRANCH_COOKIE`].
    pub branch: String,
    pub from_user: String,
    pub from_tag: String,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: String,
}

impl OptionsRequest {
    /// A request with fresh random branch, tag and Call-ID.
    pub fn new(
        request_uri: String,
        transport: ViaTransport,
        local: SocketAddr,
        from_user: String,
    ) -> Self {
        OptionsRequest {
            request_uri,
            transport,
            local,
            branch: format!("{BRANCH_COOKIE}{:016x}", rand::random::<u64>()),
            from_user,
            from_tag: format!("{:08x}", rand::random::<u32>()),
            call_id: format!("{:016x}@siteward", rand::random::<u64>()),
            cseq: 1,
            user_agent: "siteward".to_string(),
        }
    }

    /// The request as a [`Message`], headers in the order RFC 3261 suggests.
    pub fn to_message(&self) -> Message {
        let host = match self.local {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        let transport = self.transport.as_str();
        let headers = [
            (
                "Via",
                format!(
                    "{VERSION}/{transport} {};branch={};rport",
                    self.local, self.branch
                ),
            ),
            ("Max-Forwards", "70".to_string()),
            (
                "From",
                format!("<sip:{}@{host}>;tag={}", self.from_user, self.from_tag),
            ),
            ("To", format!("<{}>", self.request_uri)),
            ("Call-ID", self.call_id.clone()),
            ("CSeq", format!("{} OPTIONS", self.cseq)),
            (
                "Contact",
                format!(
                    "<sip:{}@{};transport={}>",
                    self.from_user,
                    self.local,
                    transport.to_ascii_lowercase()
                ),
            ),
            ("User-Agent", self.user_agent.clone()),
            ("Accept", "application/sdp".to_string()),
        ];
        Message {
            start: StartLine::Request {
                method: "OPTIONS".to_string(),
                uri: self.request_uri.clone(),
            },
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
            body: Vec::new(),
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        check(
            !self.from_user.is_empty()
                && self
                    .from_user
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/%".contains(&b)),
            "From user",
            &self.from_user,
        )?;
        self.to_message().encode()
    }

    /// Whether `response` answers this request (RFC 3261 17.1.3).
    pub fn is_answered_by(&self, response: &Message) -> bool {
        response.answers(&self.branch, &self.call_id, (self.cseq, "OPTIONS"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request() -> OptionsRequest {
        OptionsRequest::new(
            "sip:pbx.example:5060".into(),
            ViaTransport::Udp,
            "192.0.2.7:40123".parse().unwrap(),
            "siteward".into(),
        )
    }

    const KAMAILIO_200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.7:40123;branch=z9hG4bKabc;rport=40123;received=192.0.2.7\r\n\
From: <sip:siteward@192.0.2.7>;tag=1234\r\n\
To: <sip:pbx.example:5060>;tag=a6a1c5f60faecf035a1ae5b6e96e979a-1234\r\n\
Call-ID: c1@siteward\r\n\
CSeq: 1 OPTIONS\r\n\
Accept: */*\r\n\
Accept-Encoding: \r\n\
Server: kamailio (5.7.4 (x86_64/linux))\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn options_request_has_the_rfc_3261_headers() {
        let req = request();
        let wire = String::from_utf8(req.encode().unwrap()).unwrap();
        assert!(wire.starts_with("OPTIONS sip:pbx.example:5060 SIP/2.0\r\n"));
        let via = format!(
            "Via: SIP/2.0/UDP 192.0.2.7:40123;branch={};rport\r\n",
            req.branch
        );
        assert!(wire.contains(&via), "{wire}");
        assert!(req.branch.starts_with("z9hG4bK") && req.branch.len() > 7);
        for h in [
            "Max-Forwards: 70\r\n",
            "CSeq: 1 OPTIONS\r\n",
            "User-Agent: siteward\r\n",
            "Accept: application/sdp\r\n",
            "To: <sip:pbx.example:5060>\r\n",
        ] {
            assert!(wire.contains(h), "{h} missing in {wire}");
        }
        assert!(wire.contains(&format!(
            "From: <sip:siteward@192.0.2.7>;tag={}",
            req.from_tag
        )));
        assert!(wire.contains(&format!("Call-ID: {}\r\n", req.call_id)));
        assert!(wire.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let req = OptionsRequest::new(
            "sip:[::1]:5060".into(),
            ViaTransport::Tcp,
            "[::1]:5070".parse().unwrap(),
            "siteward".into(),
        );
        let wire = String::from_utf8(req.encode().unwrap()).unwrap();
        assert!(wire.contains("Via: SIP/2.0/TCP [::1]:5070;branch="));
        assert!(wire.contains("From: <sip:siteward@[::1]>;tag="));
    }

    #[test]
    fn encode_refuses_header_injection() {
        let mut req = request();
        req.from_user = "x>\r\nEvil: 1".into();
        assert!(req.encode().is_err());
        let mut req = request();
        req.request_uri = "sip:a b".into();
        assert!(req.encode().is_err());
        let mut message = request().to_message();
        message.headers.push(("X".into(), "a\r\nb".into()));
        assert!(message.encode().is_err());
    }

    #[test]
    fn decodes_a_kamailio_response() {
        let m = decode_datagram(KAMAILIO_200).unwrap();
        assert_eq!(
            m.start,
            StartLine::Response {
                code: 200,
                reason: "OK".into()
            }
        );
        assert_eq!(m.top_via_branch(), Some("z9hG4bKabc"));
        assert_eq!(m.header("call-id"), Some("c1@siteward"));
        assert_eq!(m.cseq(), Some((1, "OPTIONS")));
        assert_eq!(m.header("Server"), Some("kamailio (5.7.4 (x86_64/linux))"));
        assert_eq!(m.header("Accept-Encoding"), Some(""));
        assert_eq!(m.header("Content-Length"), None);
        assert!(m.answers("z9hG4bKabc", "c1@siteward", (1, "OPTIONS")));
        assert!(!m.answers("z9hG4bKabd", "c1@siteward", (1, "OPTIONS")));
        assert!(!m.answers("z9hG4bKabc", "c2@siteward", (1, "OPTIONS")));
        assert!(!m.answers("z9hG4bKabc", "c1@siteward", (2, "OPTIONS")));
        let (streamed, used) = decode_stream(KAMAILIO_200).unwrap().unwrap();
        assert_eq!(used, KAMAILIO_200.len());
        assert_eq!(streamed, m);
    }

    #[test]
    fn compact_forms_folding_and_bare_lf() {
        let wire = b"SIP/2.0 100 Trying\n\
v: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bKx, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKy\n\
i: abc\n\
Server: Some\n  Folded Server\n\
l: 4\n\nbody";
        let (m, used) = decode_stream(wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(m.status(), Some(100));
        assert_eq!(m.top_via_branch(), Some("z9hG4bKx"));
        assert_eq!(m.header("Call-ID"), Some("abc"));
        assert_eq!(m.header("Server"), Some("Some Folded Server"));
        assert_eq!(m.body, b"body");
    }

    #[test]
    fn stream_waits_for_body_and_splits_messages() {
        let mut wire = b"\r\n\r\nSIP/2.0 180 Ringing\r\nContent-Length: 3\r\n\r\nabc".to_vec();
        let first_len = wire.len();
        wire.extend_from_slice(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        for end in 0..first_len {
            assert_eq!(decode_stream(&wire[..end]).unwrap(), None, "at {end}");
        }
        let (m, used) = decode_stream(&wire).unwrap().unwrap();
        assert_eq!(used, first_len);
        assert_eq!(m.body, b"abc");
        let (m, _) = decode_stream(&wire[used..]).unwrap().unwrap();
        assert_eq!(m.status(), Some(200));
    }

    #[test]
    fn truncated_datagrams_are_invalid() {
        for end in 0..KAMAILIO_200.len() - 4 {
            assert!(decode_datagram(&KAMAILIO_200[..end]).is_err(), "at {end}");
        }
        let short_body = b"SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert!(matches!(
            decode_datagram(short_body),
            Err(DecodeError::Invalid(m)) if m.contains("truncated")
        ));
        // A longer datagram than Content-Length says: the rest is ignored.
        let long_body = b"SIP/2.0 200 OK\r\nContent-Length: 1\r\n\r\nabc";
        assert_eq!(decode_datagram(long_body).unwrap().body, b"a");
    }

    #[test]
    fn garbage_is_invalid() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            b"SIP/2.0 20 OK\r\n\r\n",
            b"SIP/2.0 999 Odd\r\n\r\n",
            b"SIP/2.0 200 OK\r\nno colon here\r\n\r\n",
            b"SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"SIP/2.0 200 OK\r\nl: 1\r\nContent-Length: 2\r\n\r\nab",
            b"\x16\x03\x01\x02\x00\x01",
            b" folded: first\r\n\r\n",
        ] {
            assert!(
                decode_datagram(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(
                !matches!(decode_stream(bad), Ok(Some(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Garbage fails at once on a stream, without waiting for the end of the head.
        assert!(decode_stream(b"\x00\x01\x02").is_err());
        assert!(decode_stream(b"SSH-2.0-OpenSSH_9.6\r\n").is_err());
    }

    #[test]
    fn oversized_messages_are_refused() {
        let mut wire = b"SIP/2.0 200 OK\r\n".to_vec();
        while wire.len() <= MAX_MESSAGE {
            wire.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        assert!(matches!(
            decode_stream(&wire),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_datagram(&wire),
            Err(DecodeError::TooLarge { .. })
        ));
        let big_body = b"SIP/2.0 200 OK\r\nContent-Length: 99999999999\r\n\r\n";
        assert!(matches!(
            decode_stream(big_body),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn response_to_copies_the_transaction_headers() {
        let req = request();
        let wire = req.encode().unwrap();
        let parsed = decode_datagram(&wire).unwrap();
        let response = parsed.response_to(404, "Not Found", "t1");
        let decoded = decode_datagram(&response.encode().unwrap()).unwrap();
        assert!(req.is_answered_by(&decoded));
        assert_eq!(decoded.status(), Some(404));
        assert_eq!(decoded.header("To"), Some("<sip:pbx.example:5060>;tag=t1"));
        assert_eq!(decoded.header("Contact"), None);
    }

    #[test]
    fn header_params() {
        let via = "SIP/2.0/UDP h:1;rport=5;branch=z9hG4bK1;received=1.2.3.4";
        assert_eq!(header_param(via, "branch"), Some("z9hG4bK1"));
        assert_eq!(header_param(via, "RPORT"), Some("5"));
        assert_eq!(header_param("SIP/2.0/UDP h;rport", "rport"), Some(""));
        assert_eq!(header_param(via, "maddr"), None);
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9-]{0,12}".prop_filter("not Content-Length", |n| {
            !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("l")
        })
    }

    fn start_line() -> impl Strategy<Value = StartLine> {
        prop_oneof![
            (token(), "sip:[a-z0-9.@:;=]{1,30}")
                .prop_map(|(method, uri)| StartLine::Request { method, uri }),
            (100u16..700, "([!-~]([ -~]{0,20}[!-~])?)?")
                .prop_map(|(code, reason)| StartLine::Response { code, reason }),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        (
            start_line(),
            prop::collection::vec((token(), "([!-~]([ -~]{0,30}[!-~])?)?"), 0..10),
            prop::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(start, headers, body)| Message {
                start,
                headers,
                body,
            })
    }

    proptest! {
        #[test]
        fn stream_round_trips(message in message(), trailing in prop::collection::vec(any::<u8>(), 0..32)) {
            let mut wire = message.encode().unwrap();
            let len = wire.len();
            wire.extend_from_slice(&trailing);
            let (decoded, used) = decode_stream(&wire).unwrap().unwrap();
            prop_assert_eq!(used, len);
            prop_assert_eq!(decoded, message);
        }

        #[test]
        fn datagram_round_trips(message in message()) {
            let wire = message.encode().unwrap();
            prop_assert_eq!(decode_datagram(&wire).unwrap(), message);
        }

        #[test]
        fn options_requests_are_answered_by_their_responses(
            user in "[a-z0-9._-]{1,12}",
            port in 1u16..,
            tcp in any::<bool>(),
            code in 100u16..700,
        ) {
            let transport = if tcp { ViaTransport::Tcp } else { ViaTransport::Udp };
            let req = OptionsRequest::new(
                format!("sip:pbx:{port}"), transport, ([10, 0, 0, 1], port).into(), user);
            let parsed = decode_datagram(&req.encode().unwrap()).unwrap();
            prop_assert!(req.is_answered_by(&parsed.response_to(code, "X", "t")));
            prop_assert!(!req.is_answered_by(&parsed));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_datagram(&bytes);
            if let Ok(Some((_, used))) = decode_stream(&bytes) {
                prop_assert!(used <= bytes.len());
            }
        }

        #[test]
        fn decoding_sip_like_text_never_panics(text in "(SIP/2.0 [0-9]{3} [A-Za-z ]{0,8}|OPTIONS sip:x SIP/2.0)(\r?\n[A-Za-z: ;=0-9\t-]{0,30}){0,8}(\r\n\r\n)?[a-z]{0,8}") {
            let _ = decode_datagram(text.as_bytes());
            let _ = decode_stream(text.as_bytes());
        }
    }
}
