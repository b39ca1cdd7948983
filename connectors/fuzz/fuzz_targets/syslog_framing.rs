//! Fuzzes the RFC 6587 frame decoder: the first byte picks the limit and the chunk size,
//! the rest is fed in chunks. Frames never exceed the limit, and the buffer stays bounded.
#![no_main]

use siteward_connectors::sources::syslog::framing::FrameDecoder;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&knob, stream)) = data.split_first() else {
        return;
    };
    let max = usize::from(knob % 64) * 4 + 1;
    let chunk = usize::from(knob / 64) * 7 + 1;
    let mut decoder = FrameDecoder::new(max);
    for piece in stream.chunks(chunk) {
        decoder.feed(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => assert!(frame.len() <= max),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // At most one frame under way, with its length prefix (or a CR).
        assert!(decoder.buffered() <= max + 1 + max.to_string().len());
    }
    while let Ok(Some(frame)) = decoder.finish() {
        assert!(frame.len() <= max);
    }
});
