//! Fuzzes the decoding of a stored spool record (read back after crashes and upgrades, so
//! untrusted): it either fails cleanly or decodes to an event that encodes back to the
//! same bytes.
#![no_main]

use siteward_connectors::spool::Event;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(event) = Event::decode(data) {
        let encoded = event.encode().expect("a decoded event encodes");
        assert_eq!(encoded, data);
    }
});
