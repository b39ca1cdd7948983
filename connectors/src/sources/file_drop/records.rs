//! How a dropped file becomes event payloads: bytes in, JSON out, no I/O, never panicking.
//!
//! A file is validated whole before any of it is accepted ([`parse`] fails on the first bad
//! line), so a bad file sends nothing and a fixed copy can simply be dropped again.
//!
//! Every payload is a JSON object saying where it came from, so the platform can drop the
//! duplicates a crash may cause (at-least-once): `file`, `sha256` and `record` are the same
//! for the same record on every delivery.
//!
//! ```text
//! {"file": "orders.csv",   the file's name as dropped (lossy UTF-8)
//!  "sha256": "9f86d0...",  hex SHA-256 of the file's bytes
//!  "record": 1,            1-based number of the record in the file
//!  "line": 2,              CSV and JSON lines: the (1-based) line the record starts on
//!  "encoding": "json",     whole files only: "json", "text" or "base64"
//!  "data": ...}            the record
//! ```
//!
//! - `whole` (event kind `file`): one payload; `data` is the file parsed as JSON if it is
//!   JSON (`encoding: "json"`), else its text as a string (`"text"`), else, for bytes that
//!   are not UTF-8, the bytes in standard base64 (`"base64"`). A UTF-8 byte order mark is
//!   not part of the text.
//! - `csv` (kind `file.record`): RFC 4180 with a header row; each later row becomes an
//!   object of strings keyed by the header's names. Lines end in CRLF or LF; a byte order
//!   mark is skipped; empty lines are skipped. Checked strictly, unlike the `csv` crate
//!   (which accepts any bytes and guesses): a quote inside an unquoted field, text after a
//!   closing quote, a quote never closed, a bare CR outside quotes, a row whose field count
//!   differs from the header's, a repeated header name or bytes that are not UTF-8 are
//!   errors naming the line, because a batch export with broken quoting must be refused,
//!   not guessed at.
//! - `json_lines` (kind `file.record`): each line that is not blank is one JSON value.

use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use siteward_config::FileFormat;

/// Why a file cannot become events: the (1-based) line, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: u64,
    pub reason: String,
}

impl ParseError {
    fn new(line: u64, reason: impl Into<String>) -> ParseError {
        ParseError {
            line,
            reason: reason.into(),
        }
    }
}

/// A validated file, ready to be rendered record by record (so a large file is not held
/// twice, as rows and as payloads).
#[derive(Debug, Clone, PartialEq)]
pub struct Records {
    file: String,
    sha256: String,
    items: Items,
}

#[derive(Debug, Clone, PartialEq)]
enum Items {
    Whole {
        encoding: &'static str,
        data: Value,
    },
    Rows {
        header: Vec<String>,
        /// The line each row starts on, and its fields.
        rows: Vec<(u64, Vec<String>)>,
    },
    Lines(Vec<(u64, Value)>),
}

/// Validates `contents` (a file called `file_name`) as `format`.
pub fn parse(format: FileFormat, file_name: &str, contents: &[u8]) -> Result<Records, ParseError> {
    let items = match format {
        FileFormat::Whole => whole(contents),
        FileFormat::Csv => csv_rows(contents)?,
        FileFormat::JsonLines => json_lines(contents)?,
    };
    Ok(Records {
        file: file_name.to_string(),
        sha256: hex::encode(Sha256::digest(contents)),
        items,
    })
}

impl Records {
    /// How many events the file makes.
    pub fn len(&self) -> usize {
        match &self.items {
            Items::Whole { .. } => 1,
            Items::Rows { rows, .. } => rows.len(),
            Items::Lines(lines) => lines.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The event kind of every payload.
    pub fn kind(&self) -> &'static str {
        match self.items {
            Items::Whole { .. } => "file",
            Items::Rows { .. } | Items::Lines(_) => "file.record",
        }
    }

    /// The hex SHA-256 of the file's bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The payload of record `index` (0-based), `None` past the end.
    pub fn payload(&self, index: usize) -> Option<Vec<u8>> {
        let mut object = Map::new();
        object.insert("file".into(), Value::from(self.file.as_str()));
        object.insert("sha256".into(), Value::from(self.sha256.as_str()));
        object.insert("record".into(), Value::from(index as u64 + 1));
        match &self.items {
            Items::Whole { encoding, data } => {
                if index != 0 {
                    return None;
                }
                object.insert("encoding".into(), Value::from(*encoding));
                object.insert("data".into(), data.clone());
            }
            Items::Rows { header, rows } => {
                let (line, fields) = rows.get(index)?;
                let data: Map<String, Value> = header
                    .iter()
                    .zip(fields)
                    .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
                    .collect();
                object.insert("line".into(), Value::from(*line));
                object.insert("data".into(), Value::Object(data));
            }
            Items::Lines(lines) => {
                let (line, value) = lines.get(index)?;
                object.insert("line".into(), Value::from(*line));
                object.insert("data".into(), value.clone());
            }
        }
        // Serializing a `Value` built from valid strings and numbers cannot fail.
        serde_json::to_vec(&Value::Object(object)).ok()
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn strip_bom(contents: &[u8]) -> &[u8] {
    contents.strip_prefix(BOM).unwrap_or(contents)
}

fn whole(contents: &[u8]) -> Items {
    let text = strip_bom(contents);
    if let Ok(data) = serde_json::from_slice::<Value>(text) {
        return Items::Whole {
            encoding: "json",
            data,
        };
    }
    match std::str::from_utf8(text) {
        Ok(text) => Items::Whole {
            encoding: "text",
            data: Value::from(text),
        },
        Err(_) => Items::Whole {
            encoding: "base64",
            data: Value::from(base64::engine::general_purpose::STANDARD.encode(contents)),
        },
    }
}

fn json_lines(contents: &[u8]) -> Result<Items, ParseError> {
    let mut values = Vec::new();
    for (index, line) in strip_bom(contents).split(|&b| b == b'\n').enumerate() {
        let number = index as u64 + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value = serde_json::from_slice::<Value>(line)
            .map_err(|e| ParseError::new(number, json_reason(&e)))?;
        values.push((number, value));
    }
    Ok(Items::Lines(values))
}

/// serde_json's message without its "at line 1 column N" (each line is parsed alone).
fn json_reason(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message);
    format!("not JSON: {message} (column {})", e.column())
}

fn csv_rows(contents: &[u8]) -> Result<Items, ParseError> {
    let contents = strip_bom(contents);
    if let Err(e) = std::str::from_utf8(contents) {
        let valid = contents.get(..e.valid_up_to()).unwrap_or_default();
        return Err(ParseError::new(line_of(valid), "not UTF-8 text"));
    }
    let mut records = CsvReader::new(contents);
    let Some((header_line, header)) = records.next_record()? else {
        return Ok(Items::Rows {
            header: Vec::new(),
            rows: Vec::new(),
        });
    };
    let mut seen = std::collections::HashSet::new();
    for name in &header {
        if !seen.insert(name.as_str()) {
            return Err(ParseError::new(
                header_line,
                format!("the header names the column {name:?} twice"),
            ));
        }
    }
    let mut rows = Vec::new();
    while let Some((line, fields)) = records.next_record()? {
        if fields.len() != header.len() {
            return Err(ParseError::new(
                line,
                format!(
                    "{} fields where the header has {}",
                    fields.len(),
                    header.len()
                ),
            ));
        }
        rows.push((line, fields));
    }
    Ok(Items::Rows { header, rows })
}

/// The 1-based line on which the byte after `before` lies.
fn line_of(before: &[u8]) -> u64 {
    before.iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

/// A strict RFC 4180 record reader over UTF-8 bytes. Delimiters are ASCII, which never
/// occurs inside a multi-byte UTF-8 sequence, so fields are cut at character boundaries.
struct CsvReader<'a> {
    bytes: &'a [u8],
    at: usize,
    line: u64,
}

impl<'a> CsvReader<'a> {
    fn new(bytes: &'a [u8]) -> CsvReader<'a> {
        CsvReader {
            bytes,
            at: 0,
            line: 1,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Consumes a line end (LF or CRLF) if one is next.
    fn line_end(&mut self) -> Result<bool, ParseError> {
        match self.peek() {
            Some(b'\n') => self.at += 1,
            Some(b'\r') if self.bytes.get(self.at + 1) == Some(&b'\n') => self.at += 2,
            Some(b'\r') => {
                return Err(ParseError::new(
                    self.line,
                    "a carriage return outside quotes that does not end the line",
                ))
            }
            _ => return Ok(false),
        }
        self.line += 1;
        Ok(true)
    }

    /// The next record and the line it starts on; `None` at the end. Empty lines are
    /// skipped.
    fn next_record(&mut self) -> Result<Option<(u64, Vec<String>)>, ParseError> {
        while self.line_end()? {}
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let start = self.line;
        let mut fields = Vec::new();
        loop {
            fields.push(self.field()?);
            match self.peek() {
                Some(b',') => self.at += 1,
                None => break,
                Some(_) => {
                    // `field` stops only at a comma, a line end or the end.
                    self.line_end()?;
                    break;
                }
            }
        }
        Ok(Some((start, fields)))
    }

    fn field(&mut self) -> Result<String, ParseError> {
        if self.peek() == Some(b'"') {
            return self.quoted_field();
        }
        let begin = self.at;
        while let Some(b) = self.peek() {
            match b {
                b',' | b'\n' | b'\r' => break,
                b'"' => return Err(ParseError::new(
                    self.line,
                    "a quote inside an unquoted field (quote the whole field and double the quote)",
                )),
                _ => self.at += 1,
            }
        }
        self.text(begin, self.at)
    }

    fn quoted_field(&mut self) -> Result<String, ParseError> {
        let opened = self.line;
        self.at += 1;
        let mut value = String::new();
        let mut begin = self.at;
        loop {
            match self.peek() {
                None => return Err(ParseError::new(opened, "a quoted field is never closed")),
                Some(b'"') if self.bytes.get(self.at + 1) == Some(&b'"') => {
                    value.push_str(&self.text(begin, self.at + 1)?);
                    self.at += 2;
                    begin = self.at;
                }
                Some(b'"') => {
                    value.push_str(&self.text(begin, self.at)?);
                    self.at += 1;
                    break;
                }
                Some(b'\n') => {
                    self.line += 1;
                    self.at += 1;
                }
                Some(_) => self.at += 1,
            }
        }
        match self.peek() {
            None | Some(b',' | b'\n' | b'\r') => Ok(value),
            Some(_) => Err(ParseError::new(
                self.line,
                "text after the closing quote of a field",
            )),
        }
    }

    fn text(&self, begin: usize, end: usize) -> Result<String, ParseError> {
        self.bytes
            .get(begin..end)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_string)
            .ok_or_else(|| ParseError::new(self.line, "not UTF-8 text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn payloads(format: FileFormat, contents: &[u8]) -> Result<Vec<Value>, ParseError> {
        let records = parse(format, "f", contents)?;
        Ok((0..records.len())
            .map(|i| serde_json::from_slice(&records.payload(i).unwrap()).unwrap())
            .collect())
    }

    fn data(format: FileFormat, contents: &[u8]) -> Result<Vec<Value>, ParseError> {
        Ok(payloads(format, contents)?
            .into_iter()
            .map(|p| p["data"].clone())
            .collect())
    }

    fn csv_error(contents: &str) -> ParseError {
        parse(FileFormat::Csv, "f", contents.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_payload_says_where_it_came_from() {
        // sha256 of "a,b\n1,2\n", from `printf 'a,b\n1,2\n' | sha256sum`.
        let records = parse(FileFormat::Csv, "orders.csv", b"a,b\n1,2\n").unwrap();
        assert_eq!(records.kind(), "file.record");
        let payload: Value = serde_json::from_slice(&records.payload(0).unwrap()).unwrap();
        assert_eq!(
            payload,
            json!({
                "file": "orders.csv",
                "sha256": "492d5ea496056f1a6a6592241032fab764c321596317930b4fa0e1e8bc3b7470",
                "record": 1,
                "line": 2,
                "data": {"a": "1", "b": "2"},
            })
        );
        assert_eq!(records.payload(1), None);
    }

    #[test]
    fn csv_rows_become_objects_keyed_by_the_header() {
        let file = "\u{FEFF}id,name,note\r\n1,Ann,\"says \"\"hi\"\", twice\"\r\n\r\n2,Bob,\"two\nlines\"\r\n3,,\r\n";
        assert_eq!(
            payloads(FileFormat::Csv, file.as_bytes()).unwrap(),
            vec![
                json!({"file": "f", "sha256": hex::encode(Sha256::digest(file)), "record": 1, "line": 2,
                       "data": {"id": "1", "name": "Ann", "note": "says \"hi\", twice"}}),
                json!({"file": "f", "sha256": hex::encode(Sha256::digest(file)), "record": 2, "line": 4,
                       "data": {"id": "2", "name": "Bob", "note": "two\nlines"}}),
                json!({"file": "f", "sha256": hex::encode(Sha256::digest(file)), "record": 3, "line": 6,
                       "data": {"id": "3", "name": "", "note": ""}}),
            ]
        );
    }

    #[test]
    fn a_csv_without_rows_makes_no_events() {
        assert!(parse(FileFormat::Csv, "f", b"").unwrap().is_empty());
        assert!(parse(FileFormat::Csv, "f", b"a,b\r\n").unwrap().is_empty());
    }

    #[test]
    fn bad_csv_names_the_line() {
        let cases = [
            ("a,b\n1,2\n3\n", 3, "1 fields where the header has 2"),
            ("a,b\n1,2,3\n", 2, "3 fields where the header has 2"),
            ("a,b\n1,x\"y\n", 2, "a quote inside an unquoted field"),
            (
                "a,b\n\"1\"x,2\n",
                2,
                "text after the closing quote of a field",
            ),
            ("a,b\n1,2\n\"3,\n4\n", 3, "a quoted field is never closed"),
            ("a,b\n1,2\r3,4\n", 2, "a carriage return outside quotes"),
            ("a,a\n1,2\n", 1, "the header names the column \"a\" twice"),
        ];
        for (file, line, reason) in cases {
            let e = csv_error(file);
            assert_eq!(e.line, line, "{file:?}: {e}");
            assert!(e.reason.starts_with(reason), "{file:?}: {e}");
        }
        let e = parse(FileFormat::Csv, "f", b"a,b\n1,2\n3,\xff\n").unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (3, "not UTF-8 text"));
        assert_eq!(e.to_string(), "line 3: not UTF-8 text");
    }

    #[test]
    fn json_lines_each_make_one_event() {
        let file = b"{\"a\":1}\r\n\n  \n[1,2]\n\"x\"";
        let records = payloads(FileFormat::JsonLines, file).unwrap();
        let lines: Vec<_> = records.iter().map(|p| p["line"].clone()).collect();
        assert_eq!(lines, vec![json!(1), json!(4), json!(5)]);
        assert_eq!(
            data(FileFormat::JsonLines, file).unwrap(),
            vec![json!({"a": 1}), json!([1, 2]), json!("x")]
        );
        assert_eq!(
            parse(FileFormat::JsonLines, "f", file).unwrap().kind(),
            "file.record"
        );
    }

    #[test]
    fn a_bad_json_line_names_the_line() {
        let e = parse(FileFormat::JsonLines, "f", b"{\"a\":1}\n\n{\"a\":\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.reason.starts_with("not JSON: "), "{e}");
        assert!(!e.reason.contains("at line"), "{e}");
    }

    #[test]
    fn a_whole_file_is_json_text_or_base64() {
        let p = payloads(FileFormat::Whole, b"\xEF\xBB\xBF{\"total\": 3}").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0]["encoding"], "json");
        assert_eq!(p[0]["data"], json!({"total": 3}));
        assert_eq!(p[0]["record"], 1);
        assert!(p[0].get("line").is_none());

        let p = payloads(FileFormat::Whole, b"plain text\n").unwrap();
        assert_eq!(
            (p[0]["encoding"].clone(), p[0]["data"].clone()),
            (json!("text"), json!("plain text\n"))
        );

        let p = payloads(FileFormat::Whole, b"\xff\x00\x01").unwrap();
        assert_eq!(
            (p[0]["encoding"].clone(), p[0]["data"].clone()),
            (json!("base64"), json!("/wAB"))
        );
        assert_eq!(parse(FileFormat::Whole, "f", b"").unwrap().kind(), "file");
    }

    /// RFC 4180 as a writer would produce it: fields quoted when they must be (or always).
    fn encode_csv(rows: &[Vec<String>], always_quote: bool, crlf: bool) -> String {
        let end = if crlf { "\r\n" } else { "\n" };
        let mut out = String::new();
        for row in rows {
            let fields: Vec<String> = row
                .iter()
                .map(|f| {
                    let special = f.is_empty() || f.contains(['"', ',', '\r', '\n']);
                    if always_quote || special {
                        format!("\"{}\"", f.replace('"', "\"\""))
                    } else {
                        f.clone()
                    }
                })
                .collect();
            out.push_str(&fields.join(","));
            out.push_str(end);
        }
        out
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn csv_written_from_rows_reads_back(
            header in proptest::collection::btree_set("[a-z\",\r\n ]{0,6}", 1..5),
            cells in proptest::collection::vec(proptest::collection::vec("[a-zé\",\r\n ]{0,8}", 5), 0..8),
            always_quote in any::<bool>(),
            crlf in any::<bool>(),
            bom in any::<bool>(),
            trailing_end in any::<bool>(),
        ) {
            let header: Vec<String> = header.into_iter().collect();
            let rows: Vec<Vec<String>> = cells.iter().map(|c| c[..header.len()].to_vec()).collect();
            let mut all = vec![header.clone()];
            all.extend(rows.iter().cloned());
            let mut text = encode_csv(&all, always_quote, crlf);
            if !trailing_end {
                text.truncate(text.len() - if crlf { 2 } else { 1 });
            }
            if bom {
                text.insert(0, '\u{FEFF}');
            }
            let expected: Vec<Value> = rows
                .iter()
                .map(|row| Value::Object(header.iter().cloned().zip(row.iter().map(|f| Value::from(f.as_str()))).collect()))
                .collect();
            prop_assert_eq!(data(FileFormat::Csv, text.as_bytes()).unwrap(), expected);
        }

        #[test]
        fn json_lines_written_from_values_read_back(
            values in proptest::collection::vec(json_value(), 0..8),
            crlf in any::<bool>(),
        ) {
            let end = if crlf { "\r\n" } else { "\n" };
            let text: String = values.iter().map(|v| format!("{v}{end}")).collect();
            prop_assert_eq!(data(FileFormat::JsonLines, text.as_bytes()).unwrap(), values);
        }

        #[test]
        fn any_bytes_make_events_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            for format in [FileFormat::Whole, FileFormat::Csv, FileFormat::JsonLines] {
                match parse(format, "f", &bytes) {
                    Ok(records) => {
                        for i in 0..records.len() {
                            let payload = records.payload(i);
                            prop_assert!(payload.is_some());
                            prop_assert!(serde_json::from_slice::<Value>(&payload.unwrap()).is_ok());
                        }
                    }
                    Err(e) => prop_assert!(e.line >= 1 && !e.reason.is_empty()),
                }
            }
        }

        #[test]
        fn csv_like_bytes_never_panic(text in "[a\",\r\n\u{FEFF}é]{0,60}") {
            let _ = parse(FileFormat::Csv, "f", text.as_bytes());
        }
    }
}
