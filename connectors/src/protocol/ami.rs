//! Asterisk Manager Interface (AMI): the greeting banner and `Key: Value` messages.
//!
//! A session starts with one banner line (`Asterisk Call Manager/7.0.3\r\n`, where the
//! version is the AMI protocol version, not Asterisk's). After it, both directions carry
//! messages: `Key: Value\r\n` lines ended by an empty line. Clients send `Action:`
//! messages; the server answers with `Response:` messages that echo the action's
//! `ActionID`, and may interleave unsolicited `Event:` messages at any time.
//!
//! [`Message`] is general (ordered pairs, repeated keys kept) so the health probe, the
//! simulator and a persistent event client share one codec. Decoding is incremental:
//! [`decode_message`] finds the first complete message in a buffer and says how many bytes
//! it used; [`Decoder`] wraps that around a bounded buffer for callers that read chunks.

use std::fmt;

use super::DecodeError;

/// Largest message (or banner line) accepted; a hostile peer cannot make us hold more.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Longest banner line accepted (real banners are about 30 bytes).
pub const MAX_BANNER: usize = 256;

/// What every AMI banner starts with.
pub const BANNER_PREFIX: &str = "Asterisk Call Manager/";

/// Keys whose values are credentials: hidden from `Debug` output.
const SECRET_KEYS: [&str; 2] = ["secret", "key"];

/// The server's greeting line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// The AMI protocol version after the slash, e.g. `7.0.3`.
    pub version: String,
}

impl Banner {
    pub fn encode(&self) -> Vec<u8> {
        format!("{BANNER_PREFIX}{}\r\n", self.version).into_bytes()
    }
}

impl fmt::Display for Banner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{BANNER_PREFIX}{}", self.version)
    }
}

/// Decodes the banner at the start of `buf`. Returns the banner and the bytes it used, or
/// `None` while the line is incomplete. Bytes that cannot become a banner fail at once
/// (without waiting for a line end), so a peer speaking another protocol is seen early.
pub fn decode_banner(buf: &[u8]) -> Result<Option<(Banner, usize)>, DecodeError> {
    let prefix = BANNER_PREFIX.as_bytes();
    let compared = buf.len().min(prefix.len());
    if buf.get(..compared) != prefix.get(..compared) {
        return Err(DecodeError::Invalid(format!(
            "not an AMI banner: {}",
            escape_prefix(buf, 40)
        )));
    }
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_BANNER {
            return Err(DecodeError::TooLarge {
                size: buf.len(),
                limit: MAX_BANNER,
            });
        }
        return Ok(None);
    };
    if newline > MAX_BANNER {
        return Err(DecodeError::TooLarge {
            size: newline,
            limit: MAX_BANNER,
        });
    }
    let line = strip_cr(buf.get(..newline).unwrap_or_default());
    let version = line.get(prefix.len()..).unwrap_or_default();
    let version = std::str::from_utf8(version)
        .map_err(|_| DecodeError::Invalid("AMI banner version is not UTF-8".into()))?
        .trim();
    if version.is_empty() || version.chars().any(|c| c.is_control()) {
        return Err(DecodeError::Invalid(format!(
            "AMI banner without a usable version: {}",
            escape_prefix(line, 60)
        )));
    }
    Ok(Some((
        Banner {
            version: version.to_string(),
        },
        newline + 1,
    )))
}

/// One AMI message: ordered `Key: Value` pairs. Keys compare case-insensitively; a key may
/// repeat (e.g. `Variable:` in Originate), so pairs are kept as sent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Message {
    fields: Vec<(String, String)>,
}

/// What kind of message, by its first distinguishing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A client request (`Action:`).
    Action(&'a str),
    /// A server answer to an action (`Response:`).
    Response(&'a str),
    /// An unsolicited server notification (`Event:`).
    Event(&'a str),
    /// None of those keys.
    Other,
}

/// Why a message cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("AMI key {0:?} is empty or contains ':' or control characters")]
    InvalidKey(String),
    /// The value is not shown: it may be a secret.
    #[error("the value of AMI key {0:?} contains a line break or control character")]
    InvalidValue(String),
}

impl Message {
    pub fn new() -> Self {
        Message::default()
    }

    /// A request starting with `Action: <name>`.
    pub fn action(name: &str) -> Self {
        Message::new().with("Action", name)
    }

    /// Adds a pair (builder style).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.push(key, value);
        self
    }

    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.fields.push((key.into(), value.into()));
    }

    /// The value of the first pair with `key` (case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn kind(&self) -> Kind<'_> {
        if let Some(v) = self.get("Response") {
            Kind::Response(v)
        } else if let Some(v) = self.get("Event") {
            Kind::Event(v)
        } else if let Some(v) = self.get("Action") {
            Kind::Action(v)
        } else {
            Kind::Other
        }
    }

    pub fn action_id(&self) -> Option<&str> {
        self.get("ActionID")
    }

    /// The wire form: each pair as `Key: Value\r\n`, then an empty line. Refuses keys and
    /// values that would break the framing (a value with CR/LF could inject keys).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(
            self.fields
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>()
                + 2,
        );
        for (key, value) in &self.fields {
            if !valid_key(key) {
                return Err(EncodeError::InvalidKey(key.clone()));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(EncodeError::InvalidValue(key.clone()));
            }
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(out)
    }
}

/// Credentials (`Secret`, `Key`) are shown as `***`, so a logged Login leaks nothing.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.fields {
            if SECRET_KEYS.iter().any(|s| key.eq_ignore_ascii_case(s)) {
                map.entry(key, &"***");
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.trim() == key && !key.chars().any(|c| c == ':' || c.is_control())
}

/// Decodes the first message in `buf`. Returns it with the number of bytes used (including
/// any blank lines before it), or `None` until the terminating empty line has arrived.
/// Lines may end in CRLF (the standard) or a bare LF. Values keep any ':' they contain.
/// Non-UTF-8 bytes (e.g. a Latin-1 caller name) are replaced, not refused.
pub fn decode_message(buf: &[u8]) -> Result<Option<(Message, usize)>, DecodeError> {
    let mut message = Message::new();
    let mut pos = 0usize;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_MESSAGE {
                return Err(DecodeError::TooLarge {
                    size: buf.len(),
                    limit: MAX_MESSAGE,
                });
            }
            return Ok(None);
        };
        let line = strip_cr(rest.get(..newline).unwrap_or_default());
        pos = pos.saturating_add(newline).saturating_add(1);
        if pos > MAX_MESSAGE {
            return Err(DecodeError::TooLarge {
                size: pos,
                limit: MAX_MESSAGE,
            });
        }
        if line.is_empty() {
            if message.is_empty() {
                // Blank lines between messages carry nothing; skip them.
                continue;
            }
            return Ok(Some((message, pos)));
        }
        let (key, value) = parse_line(line)?;
        message.fields.push((key, value));
    }
}

fn parse_line(line: &[u8]) -> Result<(String, String), DecodeError> {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(DecodeError::Invalid(format!(
            "AMI line without ':': {}",
            escape_prefix(line, 60)
        )));
    };
    let key = String::from_utf8_lossy(line.get(..colon).unwrap_or_default());
    let key = key.trim();
    if !valid_key(key) {
        return Err(DecodeError::Invalid(format!(
            "AMI line with an invalid key: {}",
            escape_prefix(line, 60)
        )));
    }
    let value = String::from_utf8_lossy(line.get(colon + 1..).unwrap_or_default());
    Ok((key.to_string(), value.trim().to_string()))
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// At most `max` bytes of `bytes`, printable, for error messages about a peer's answer.
pub fn escape_prefix(bytes: &[u8], max: usize) -> String {
    let shown = bytes.get(..bytes.len().min(max)).unwrap_or_default();
    let mut text: String = shown
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if bytes.len() > max {
        text.push_str("...");
    }
    format!("\"{text}\"")
}

/// An incremental decoder: feed it bytes as they arrive, take messages out as they complete.
/// Its buffer never holds more than one maximum-size message plus one read.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Appends bytes read from the peer.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Room for the next read: the caller should read at most this many bytes, so the
    /// buffer stays bounded. Zero means the pending bytes already exceed a message.
    pub fn room(&self) -> usize {
        MAX_MESSAGE.saturating_sub(self.buf.len()).saturating_add(1)
    }

    /// Bytes received but not yet part of a complete message.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the banner off the front of the buffer, if complete.
    pub fn next_banner(&mut self) -> Result<Option<Banner>, DecodeError> {
        let decoded = decode_banner(&self.buf)?;
        Ok(decoded.map(|(banner, used)| {
            self.buf.drain(..used);
            banner
        }))
    }

    /// Takes the next complete message off the front of the buffer, if there is one.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        let decoded = decode_message(&self.buf)?;
        Ok(decoded.map(|(message, used)| {
            self.buf.drain(..used);
            message
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_a_banner() {
        let (banner, used) = decode_banner(b"Asterisk Call Manager/7.0.3\r\nResponse")
            .unwrap()
            .unwrap();
        assert_eq!(banner.version, "7.0.3");
        assert_eq!(used, 29);
        assert_eq!(banner.to_string(), "Asterisk Call Manager/7.0.3");
    }

    #[test]
    fn partial_banner_waits_and_foreign_protocol_fails_early() {
        assert_eq!(decode_banner(b"Asterisk Call").unwrap(), None);
        assert_eq!(decode_banner(b"").unwrap(), None);
        let err = decode_banner(b"SSH-2.0-OpenSSH_9.6").unwrap_err();
        assert!(
            matches!(&err, DecodeError::Invalid(m) if m.contains("SSH-2.0")),
            "{err}"
        );
        let err = decode_banner(b"\x16\x03\x01\x00").unwrap_err();
        assert!(matches!(err, DecodeError::Invalid(_)));
    }

    #[test]
    fn banner_without_version_or_too_long_is_refused() {
        assert!(matches!(
            decode_banner(b"Asterisk Call Manager/\r\n"),
            Err(DecodeError::Invalid(_))
        ));
        let mut long = BANNER_PREFIX.as_bytes().to_vec();
        long.extend(std::iter::repeat_n(b'9', MAX_BANNER));
        assert!(matches!(
            decode_banner(&long),
            Err(DecodeError::TooLarge { .. })
        ));
        long.extend_from_slice(b"\r\n");
        assert!(matches!(
            decode_banner(&long),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn decodes_a_response_with_colons_in_values_and_any_key_case() {
        let wire =
            b"Response: Success\r\nactionid: probe-1\r\nMessage: at 12:30: ok\r\n\r\nEvent: X\r\n";
        let (message, used) = decode_message(wire).unwrap().unwrap();
        assert_eq!(used, wire.len() - "Event: X\r\n".len());
        assert_eq!(message.kind(), Kind::Response("Success"));
        assert_eq!(message.action_id(), Some("probe-1"));
        assert_eq!(message.get("MESSAGE"), Some("at 12:30: ok"));
    }

    #[test]
    fn accepts_bare_lf_and_skips_blank_lines_between_messages() {
        let wire = b"\r\n\nEvent: FullyBooted\nStatus: Fully Booted\n\n";
        let (message, used) = decode_message(wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(message.kind(), Kind::Event("FullyBooted"));
        assert_eq!(message.get("status"), Some("Fully Booted"));
    }

    #[test]
    fn repeated_keys_are_kept_in_order() {
        let wire = b"Action: Originate\r\nVariable: a=1\r\nVariable: b=2\r\n\r\n";
        let (message, _) = decode_message(wire).unwrap().unwrap();
        assert_eq!(
            message.get_all("variable").collect::<Vec<_>>(),
            ["a=1", "b=2"]
        );
        assert_eq!(message.kind(), Kind::Action("Originate"));
    }

    #[test]
    fn truncated_messages_are_incomplete() {
        let wire = b"Response: Success\r\nPing: Pong\r\n\r\n";
        for end in 0..wire.len() {
            assert_eq!(decode_message(&wire[..end]).unwrap(), None, "at {end}");
        }
    }

    #[test]
    fn garbage_lines_are_invalid() {
        assert!(matches!(
            decode_message(b"hello world\r\n\r\n"),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            decode_message(b": no key\r\n\r\n"),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            decode_message(b"Bad\x01Key: v\r\n\r\n"),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn oversized_messages_are_refused() {
        let mut wire = b"Event: Big\r\n".to_vec();
        while wire.len() <= MAX_MESSAGE {
            wire.extend_from_slice(b"Filler: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
        }
        assert!(matches!(
            decode_message(&wire),
            Err(DecodeError::TooLarge { .. })
        ));
        wire.extend_from_slice(b"\r\n");
        assert!(matches!(
            decode_message(&wire),
            Err(DecodeError::TooLarge { .. })
        ));
        // One endless line, no newline at all.
        let line = vec![b'x'; MAX_MESSAGE + 1];
        assert!(matches!(
            decode_message(&line),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn encode_refuses_injection() {
        let login = Message::action("Login").with("Secret", "pw\r\nAction: Originate");
        let err = login.encode().unwrap_err();
        assert_eq!(err, EncodeError::InvalidValue("Secret".into()));
        assert!(!err.to_string().contains("Originate"));
        assert!(Message::new().with("Bad: key", "v").encode().is_err());
        assert!(Message::new().with("", "v").encode().is_err());
    }

    #[test]
    fn debug_hides_credentials() {
        let login = Message::action("Login")
            .with("Username", "admin")
            .with("secret", "hunter2")
            .with("Key", "md5digest");
        let shown = format!("{login:?}");
        assert!(shown.contains("admin"));
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("md5digest"));
    }

    #[test]
    fn decoder_takes_banner_then_messages_across_chunks() {
        let wire = b"Asterisk Call Manager/7.0.3\r\nEvent: A\r\n\r\nResponse: Success\r\nActionID: 1\r\n\r\n";
        let mut decoder = Decoder::new();
        let mut banner = None;
        let mut messages = Vec::new();
        for chunk in wire.chunks(3) {
            decoder.feed(chunk);
            if banner.is_none() {
                banner = decoder.next_banner().unwrap();
                if banner.is_none() {
                    continue;
                }
            }
            while let Some(m) = decoder.next_message().unwrap() {
                messages.push(m);
            }
        }
        assert_eq!(banner.unwrap().version, "7.0.3");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].action_id(), Some("1"));
        assert!(decoder.pending().is_empty());
        assert_eq!(decoder.room(), MAX_MESSAGE + 1);
    }

    fn key() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9_()-]{0,15}"
    }

    fn value() -> impl Strategy<Value = String> {
        // Printable text, colons included; no surrounding whitespace (it is trimmed).
        "([!-~]([ -~]{0,38}[!-~])?)?"
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(
            fields in prop::collection::vec((key(), value()), 1..12),
            trailing in prop::collection::vec(any::<u8>(), 0..32),
        ) {
            let mut message = Message::new();
            for (k, v) in fields {
                message.push(k, v);
            }
            let mut wire = message.encode().unwrap();
            let len = wire.len();
            wire.extend_from_slice(&trailing);
            let (decoded, used) = decode_message(&wire).unwrap().unwrap();
            prop_assert_eq!(used, len);
            prop_assert_eq!(decoded, message);
        }

        #[test]
        fn banner_round_trips(version in "[0-9]{1,3}(\\.[0-9]{1,3}){0,3}") {
            let banner = Banner { version };
            let wire = banner.encode();
            let (decoded, used) = decode_banner(&wire).unwrap().unwrap();
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(decoded, banner);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_message(&bytes);
            let _ = decode_banner(&bytes);
            let mut decoder = Decoder::new();
            decoder.feed(&bytes);
            while let Ok(Some(_)) = decoder.next_message() {}
        }

        #[test]
        fn decoded_messages_never_exceed_the_limit(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(Some((_, used))) = decode_message(&bytes) {
                prop_assert!(used <= bytes.len());
                prop_assert!(used <= MAX_MESSAGE);
            }
        }
    }
}
