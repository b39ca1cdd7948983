//! Fuzzes the AMI banner and message decoders, and the incremental decoder over them.
#![no_main]

use siteward_connectors::protocol::ami;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ami::decode_banner(data);
    if let Ok(Some((message, used))) = ami::decode_message(data) {
        assert!(used <= data.len());
        // Whatever decodes must encode (or be refused cleanly) without panicking.
        let _ = message.encode();
    }
    let mut decoder = ami::Decoder::new();
    for chunk in data.chunks(7) {
        decoder.feed(chunk);
        while let Ok(Some(_)) = decoder.next_message() {}
    }
});
