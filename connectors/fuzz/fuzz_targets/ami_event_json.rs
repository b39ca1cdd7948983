//! Fuzzes what the asterisk-ami source stores: any decoded AMI message becomes a JSON
//! object holding every key it was sent with.
#![no_main]

use siteward_connectors::protocol::ami;
use siteward_connectors::sources::asterisk_ami::event_json;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut decoder = ami::Decoder::new();
    decoder.feed(data);
    while let Ok(Some(message)) = decoder.next_message() {
        let json = event_json(&message).expect("strings always serialize");
        let value: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
        let object = value.as_object().expect("a JSON object");
        for (key, _) in message.fields() {
            assert!(object.contains_key(key.as_str()), "{key} missing");
        }
    }
});
