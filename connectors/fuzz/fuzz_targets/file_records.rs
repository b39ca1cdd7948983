//! Fuzzes the file-drop parsers: any bytes, in every format, make records whose payloads
//! are JSON, or an error naming a line; never a panic.
#![no_main]

use siteward_connectors::sources::file_drop::records::{self, FileFormat};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for format in [FileFormat::Whole, FileFormat::Csv, FileFormat::JsonLines] {
        match records::parse(format, "fuzz", data) {
            Ok(parsed) => {
                for index in 0..parsed.len() {
                    let payload = parsed.payload(index).expect("a payload for every record");
                    let value: serde_json::Value =
                        serde_json::from_slice(&payload).expect("a payload is JSON");
                    assert!(value.is_object());
                }
                assert!(parsed.payload(parsed.len()).is_none());
            }
            Err(e) => assert!(e.line >= 1),
        }
    }
});

