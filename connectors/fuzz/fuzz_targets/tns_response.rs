//! Fuzzes the TNS packet decoder and the parsing of listener REFUSE/REDIRECT text.
#![no_main]

use siteward_connectors::protocol::tns;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for limit in [usize::from(tns::SDU), tns::MAX_PACKET] {
        if let Ok(Some((packet, used))) = tns::decode_packet(data, limit) {
            assert!(used <= data.len());
            match packet {
                tns::Packet::Refuse(r) => {
                    if let Some(v) = tns::RefuseText::parse(&r.data).vsnnum {
                        let _ = tns::vsnnum_version(v);
                    }
                }
                tns::Packet::Redirect(r) => {
                    let text = String::from_utf8_lossy(&r.data);
                    let _ = tns::descriptor_clause(&text, "ADDRESS");
                }
                _ => {}
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    let _ = tns::descriptor_value(&text, "ERR");
});
