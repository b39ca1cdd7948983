//! How one event is stored: a small versioned binary record. The spool file is read back
//! after crashes and upgrades, so decoding treats it as untrusted input: a damaged record
//! is an error, never a panic.
//!
//! ```text
//! version 1 | received_at: u64 ms since the Unix epoch, BE | connector: u16 len, UTF-8
//!           | kind: u16 len, UTF-8 | payload: the rest
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const VERSION: u8 = 1;
/// Version, time and the two length prefixes.
const FIXED_LEN: usize = 1 + 8 + 2 + 2;

/// An event a source handed over: what the uplink sends, apart from its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `[[connectors]]` name it came from.
    pub connector: String,
    /// What it is (`webhook`, `ami.Hangup`, `file.record`, `syslog`...).
    pub kind: String,
    /// When the source handed it over, in milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// The event itself, as the source produced it (JSON for most sources).
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("a record of {0} bytes is shorter than its fixed header")]
    Truncated(usize),
    #[error("unknown record version {0}")]
    Version(u8),
    #[error("the {0} field runs past the end of the record")]
    FieldOverrun(&'static str),
    #[error("the {0} field is not UTF-8")]
    NotUtf8(&'static str),
    #[error("the {0} field is longer than 65535 bytes")]
    FieldTooLong(&'static str),
}

impl Event {
    /// How long ago it was received (zero for a time in the future: a clock set back).
    pub fn age(&self) -> Duration {
        age_since(self.received_at_ms)
    }

    /// The stored form.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let connector = u16::try_from(self.connector.len())
            .map_err(|_| RecordError::FieldTooLong("connector"))?;
        let kind = u16::try_from(self.kind.len()).map_err(|_| RecordError::FieldTooLong("kind"))?;
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(VERSION);
        out.extend_from_slice(&self.received_at_ms.to_be_bytes());
        out.extend_from_slice(&connector.to_be_bytes());
        out.extend_from_slice(self.connector.as_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(self.kind.as_bytes());
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    /// Bytes the stored form takes (what the spool's byte bound counts).
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN + self.connector.len() + self.kind.len() + self.payload.len()
    }

    pub fn decode(record: &[u8]) -> Result<Event, RecordError> {
        if record.len() < FIXED_LEN {
            return Err(RecordError::Truncated(record.len()));
        }
        if record[0] != VERSION {
            return Err(RecordError::Version(record[0]));
        }
        let mut time = [0u8; 8];
        time.copy_from_slice(&record[1..9]);
        let mut rest = &record[9..];
        let connector = take_string(&mut rest, "connector")?;
        let kind = take_string(&mut rest, "kind")?;
        Ok(Event {
            connector,
            kind,
            received_at_ms: u64::from_be_bytes(time),
            payload: rest.to_vec(),
        })
    }
}

/// A u16-length-prefixed UTF-8 string from the front of `rest`.
fn take_string(rest: &mut &[u8], field: &'static str) -> Result<String, RecordError> {
    let (len, tail) = rest
        .split_first_chunk::<2>()
        .ok_or(RecordError::FieldOverrun(field))?;
    let len = usize::from(u16::from_be_bytes(*len));
    let bytes = tail.get(..len).ok_or(RecordError::FieldOverrun(field))?;
    let text = std::str::from_utf8(bytes).map_err(|_| RecordError::NotUtf8(field))?;
    *rest = &tail[len..];
    Ok(text.to_string())
}

/// Milliseconds since the Unix epoch: what `received_at_ms` holds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How long ago `at_ms` (ms since the Unix epoch) was; zero for a time in the future.
pub fn age_since(at_ms: u64) -> Duration {
    Duration::from_millis(now_ms().saturating_sub(at_ms))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn event() -> Event {
        Event {
            connector: "pbx".into(),
            kind: "ami.Hangup".into(),
            received_at_ms: 1_795_000_000_123,
            payload: br#"{"Channel":"PJSIP/101-0001"}"#.to_vec(),
        }
    }

    #[test]
    fn an_event_survives_encoding() {
        let e = event();
        let bytes = e.encode().unwrap();
        assert_eq!(bytes.len(), e.encoded_len());
        assert_eq!(Event::decode(&bytes).unwrap(), e);
    }

    #[test]
    fn ages_count_from_receipt_and_never_go_negative() {
        let received = Event {
            received_at_ms: now_ms() - 5_000,
            ..event()
        };
        assert!(
            received.age() >= Duration::from_secs(5),
            "{:?}",
            received.age()
        );
        assert_eq!(age_since(now_ms() + 60_000), Duration::ZERO);
    }

    #[test]
    fn damaged_records_are_errors() {
        let bytes = event().encode().unwrap();
        assert_eq!(Event::decode(&bytes[..5]), Err(RecordError::Truncated(5)));
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(Event::decode(&other), Err(RecordError::Version(9)));
        let mut long = bytes.clone();
        long[9..11].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(
            Event::decode(&long),
            Err(RecordError::FieldOverrun("connector"))
        );
        let mut bad = bytes;
        bad[11] = 0xff;
        assert_eq!(Event::decode(&bad), Err(RecordError::NotUtf8("connector")));
    }

    #[test]
    fn fields_longer_than_the_prefix_allows_are_refused() {
        let mut e = event();
        e.kind = "k".repeat(70_000);
        assert_eq!(e.encode(), Err(RecordError::FieldTooLong("kind")));
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Event::decode(&bytes);
        }

        #[test]
        fn any_event_round_trips(
            connector in "[a-z0-9-]{0,40}",
            kind in "\\PC{0,20}",
            received_at_ms in any::<u64>(),
            payload in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let e = Event { connector, kind, received_at_ms, payload };
            prop_assert_eq!(Event::decode(&e.encode().unwrap()).unwrap(), e);
        }
    }
}
