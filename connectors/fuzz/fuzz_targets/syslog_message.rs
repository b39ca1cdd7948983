//! Fuzzes the syslog message parser (RFC 5424 and RFC 3164) and the JSON built from it.
#![no_main]

use siteward_connectors::sources::syslog::parse;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(message) = parse::parse(data) {
        assert!(message.facility <= 23 && message.severity <= 7);
        let json = message.to_json(([127, 0, 0, 1], 514).into());
        assert!(json.is_object());
    }
});
