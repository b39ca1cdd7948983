//! Fuzzes the SIP decoders (datagram and stream framing) and the response matching.
#![no_main]

use siteward_connectors::protocol::sip;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(message) = sip::decode_datagram(data) {
        let _ = message.top_via_branch();
        let _ = message.cseq();
        let _ = message.answers("z9hG4bKfuzz", "fuzz@siteward", (1, "OPTIONS"));
        let _ = message.encode();
    }
    if let Ok(Some((_, used))) = sip::decode_stream(data) {
        assert!(used <= data.len());
    }
});
