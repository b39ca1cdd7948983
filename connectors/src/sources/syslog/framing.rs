//! Syslog over TCP (RFC 6587): splits a byte stream into messages, fed as bytes arrive.
//!
//! Each frame says how it is framed by its first byte, as rsyslog decides it:
//! - a digit: octet counting, `MSG-LEN SP MSG`, where MSG may hold any byte;
//! - anything else: non-transparent framing, the message runs to an LF (a CR before it is
//!   dropped) or a NUL. Empty lines are skipped.
//!
//! A frame longer than the limit is an error, and so is a bad octet count: the framing is
//! lost, so the caller closes the connection.

use bytes::{Buf, Bytes, BytesMut};

use crate::protocol::ami::escape_prefix;

/// Why the stream cannot be split any further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("an octet-counted frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: u64, max: usize },
    #[error("no line end within {max} bytes (the limit of a message)")]
    LineTooLong { max: usize },
    #[error("bad octet count: {0}")]
    BadOctetCount(String),
    #[error("the stream ended inside an octet-counted frame ({got} of {expected} bytes)")]
    Truncated { expected: usize, got: usize },
}

/// The incremental decoder of one connection. It holds at most one frame under way plus
/// what was fed since the last [`FrameDecoder::next_frame`] that returned `None`.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max: usize,
    /// How much of `buf` is known to hold no line end (not rescanned as bytes arrive).
    scanned: usize,
}

impl FrameDecoder {
    pub fn new(max_message_bytes: usize) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            max: max_message_bytes,
            scanned: 0,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes fed but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            let Some(&first) = self.buf.first() else {
                return Ok(None);
            };
            if first.is_ascii_digit() {
                return self.octet_counted();
            }
            match self.line()? {
                Some(frame) if frame.is_empty() => continue,
                other => return Ok(other),
            }
        }
    }

    /// The stream ended: the last frame, if a line without its line end is left (rsyslog
    /// takes it too). An octet-counted frame cut short is an error.
    pub fn finish(&mut self) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.next_frame()? {
            return Ok(Some(frame));
        }
        let rest = std::mem::take(&mut self.buf);
        self.scanned = 0;
        match rest.first() {
            None => Ok(None),
            Some(first) if first.is_ascii_digit() => {
                let (expected, header) = match octet_count(&rest, self.max)? {
                    Some(found) => found,
                    None => {
                        return Err(FrameError::BadOctetCount(format!(
                            "the stream ended in it: {}",
                            escape_prefix(&rest, 12)
                        )))
                    }
                };
                Err(FrameError::Truncated {
                    expected,
                    got: rest.len().saturating_sub(header),
                })
            }
            Some(_) => {
                let line = rest.strip_suffix(b"\r").unwrap_or(&rest);
                if line.len() > self.max {
                    return Err(FrameError::LineTooLong { max: self.max });
                }
                Ok((!line.is_empty()).then(|| Bytes::copy_from_slice(line)))
            }
        }
    }

    fn octet_counted(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some((len, header)) = octet_count(&self.buf, self.max)? else {
            return Ok(None);
        };
        let total = header.saturating_add(len);
        if self.buf.len() < total {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total);
        frame.advance(header);
        self.scanned = 0;
        Ok(Some(frame.freeze()))
    }

    fn line(&mut self) -> Result<Option<Bytes>, FrameError> {
        let unscanned = self.buf.get(self.scanned..).unwrap_or_default();
        let Some(end) = unscanned.iter().position(|&b| b == b'\n' || b == b'\0') else {
            self.scanned = self.buf.len();
            // One more byte than a message: a CR that its LF will drop.
            if self.buf.len() > self.max.saturating_add(1) {
                return Err(FrameError::LineTooLong { max: self.max });
            }
            return Ok(None);
        };
        let end = self.scanned + end;
        let terminator = self.buf.get(end).copied();
        let mut frame = self.buf.split_to(end + 1);
        self.scanned = 0;
        frame.truncate(end);
        if terminator == Some(b'\n') && frame.last() == Some(&b'\r') {
            frame.truncate(end - 1);
        }
        if frame.len() > self.max {
            return Err(FrameError::LineTooLong { max: self.max });
        }
        Ok(Some(frame.freeze()))
    }
}

/// `MSG-LEN SP` at the start of `buf`: (MSG-LEN, header length), `None` while incomplete.
/// A length over `max` fails as soon as its digits show it.
fn octet_count(buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, FrameError> {
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut len: u64 = 0;
    for &digit in buf.iter().take(digits) {
        len = len
            .saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'));
    }
    if len > max as u64 {
        return Err(FrameError::TooLarge { len, max });
    }
    if buf.first() == Some(&b'0') {
        return Err(FrameError::BadOctetCount(format!(
            "it starts with 0: {}",
            escape_prefix(buf, 12)
        )));
    }
    match buf.get(digits) {
        None => Ok(None),
        Some(b' ') => Ok(Some((
            usize::try_from(len).unwrap_or(usize::MAX),
            digits + 1,
        ))),
        Some(_) => Err(FrameError::BadOctetCount(format!(
            "expected a space after the length: {}",
            escape_prefix(buf, 12)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(decoder: &mut FrameDecoder) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(frame) = decoder.next_frame().unwrap() {
            out.push(frame.to_vec());
        }
        out
    }

    #[test]
    fn octet_counted_frames_may_hold_line_ends() {
        let mut decoder = FrameDecoder::new(100);
        decoder.feed(b"11 <13>1 a\nb c7 <13>x y");
        assert_eq!(frames(&mut decoder), [&b"<13>1 a\nb c"[..], b"<13>x y"]);
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn lines_end_at_lf_crlf_or_nul_and_empty_lines_are_skipped() {
        let mut decoder = FrameDecoder::new(100);
        decoder.feed(b"<13>a\r\n\n<13>b\0<13>c\n\r\n<13>d");
        assert_eq!(frames(&mut decoder), [&b"<13>a"[..], b"<13>b", b"<13>c"]);
        // What is left without a line end is the last message when the stream ends.
        assert_eq!(decoder.finish().unwrap().as_deref(), Some(&b"<13>d"[..]));
        assert_eq!(decoder.finish().unwrap(), None);
    }

    #[test]
    fn the_framing_may_change_from_frame_to_frame() {
        let mut decoder = FrameDecoder::new(100);
        decoder.feed(b"<13>line\n5 <13>x<13>next\n");
        assert_eq!(
            frames(&mut decoder),
            [&b"<13>line"[..], b"<13>x", b"<13>next"]
        );
    }

    #[test]
    fn frames_wait_for_their_bytes() {
        let mut decoder = FrameDecoder::new(100);
        for chunk in [
            &b"1"[..],
            b"0",
            b" <13>",
            b"hello!",
            b"<13>wo",
            b"rld\r",
            b"\n",
        ] {
            decoder.feed(chunk);
            let got = frames(&mut decoder);
            match chunk {
                b"hello!" => assert_eq!(got, [b"<13>hello!"]),
                b"\n" => assert_eq!(got, [b"<13>world"]),
                _ => assert!(got.is_empty(), "{got:?} after {chunk:?}"),
            }
        }
    }

    #[test]
    fn a_frame_over_the_limit_is_an_error() {
        let mut decoder = FrameDecoder::new(10);
        decoder.feed(b"11");
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
        let mut decoder = FrameDecoder::new(10);
        decoder.feed(b"99999999999999999999999999 x");
        assert!(matches!(
            decoder.next_frame(),
            Err(FrameError::TooLarge { max: 10, .. })
        ));
        // Exactly the limit is fine, with or without a CR before the LF.
        let mut decoder = FrameDecoder::new(10);
        decoder.feed(b"10 0123456789<123456789\r\n<123456789\n");
        assert_eq!(frames(&mut decoder).len(), 3);
        decoder.feed(b"<1234567890");
        assert_eq!(decoder.next_frame(), Ok(None));
        decoder.feed(b"1");
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::LineTooLong { max: 10 })
        );
        let mut decoder = FrameDecoder::new(10);
        decoder.feed(b"<1234567890\n");
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::LineTooLong { max: 10 })
        );
    }

    #[test]
    fn bad_octet_counts_are_errors() {
        for bad in [&b"0 x"[..], b"012 x", b"12x", b"3\n<13"] {
            let mut decoder = FrameDecoder::new(100);
            decoder.feed(bad);
            assert!(
                matches!(decoder.next_frame(), Err(FrameError::BadOctetCount(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_stream_ending_inside_a_counted_frame_is_an_error() {
        let mut decoder = FrameDecoder::new(100);
        decoder.feed(b"20 <13>short");
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(
            decoder.finish(),
            Err(FrameError::Truncated {
                expected: 20,
                got: 9
            })
        );
        let mut decoder = FrameDecoder::new(100);
        decoder.feed(b"20");
        assert!(matches!(
            decoder.finish(),
            Err(FrameError::BadOctetCount(_))
        ));
    }

    #[derive(Debug, Clone)]
    enum Framed {
        Counted(Vec<u8>),
        Line(Vec<u8>, &'static [u8]),
    }

    fn framed(max: usize) -> impl Strategy<Value = Framed> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 1..=max).prop_map(Framed::Counted),
            (
                any::<u8>().prop_filter("not a digit nor a line end", |b| {
                    !b.is_ascii_digit() && !matches!(b, b'\n' | b'\0')
                }),
                prop::collection::vec(
                    any::<u8>().prop_filter("no line end", |b| !matches!(b, b'\n' | b'\0')),
                    0..max,
                ),
                prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"\0"[..])],
            )
                .prop_filter("no CR before the line end", |(first, rest, _)| {
                    rest.last().unwrap_or(first) != &b'\r'
                })
                .prop_map(|(first, mut rest, end)| {
                    rest.insert(0, first);
                    Framed::Line(rest, end)
                }),
        ]
    }

    proptest! {
        #[test]
        fn any_framed_messages_split_back_whatever_the_chunking(
            messages in prop::collection::vec(framed(64), 0..20),
            chunk_sizes in prop::collection::vec(1usize..40, 1..20),
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for message in &messages {
                match message {
                    Framed::Counted(bytes) => {
                        wire.extend_from_slice(format!("{} ", bytes.len()).as_bytes());
                        wire.extend_from_slice(bytes);
                        expected.push(bytes.clone());
                    }
                    Framed::Line(bytes, end) => {
                        wire.extend_from_slice(bytes);
                        wire.extend_from_slice(end);
                        expected.push(bytes.clone());
                    }
                }
            }
            let mut decoder = FrameDecoder::new(64);
            let mut got = Vec::new();
            let mut rest = &wire[..];
            for size in chunk_sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*size).min(rest.len()));
                rest = tail;
                decoder.feed(chunk);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    got.push(frame.to_vec());
                }
                // Never more than a frame under way and a chunk.
                prop_assert!(decoder.buffered() <= 64 + 4 + 40);
            }
            prop_assert_eq!(decoder.finish(), Ok(None));
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            bytes in prop::collection::vec(any::<u8>(), 0..600),
            chunk in 1usize..64,
        ) {
            let mut decoder = FrameDecoder::new(50);
            'feed: for piece in bytes.chunks(chunk) {
                decoder.feed(piece);
                loop {
                    match decoder.next_frame() {
                        Ok(Some(frame)) => prop_assert!(frame.len() <= 50),
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
                prop_assert!(decoder.buffered() <= 50 + 3 + 64);
            }
            let _ = decoder.finish();
        }
    }
}
