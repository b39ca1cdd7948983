//! An imported configuration file is untrusted (a user uploads it to the web UI): import
//! must return an error, never panic, whatever the text, its encrypted values or the
//! passphrase.
#![no_main]

use libfuzzer_sys::fuzz_target;

const CURRENT: &str = r#"
[uplink]
url = "https://platform.example/ingest"
token = "current-token"

[[checks]]
name = "pbx"
kind = "asterisk-ami"
target = "192.0.2.5:5038"
username = "monitor"
secret = "current-secret"
"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = siteward_config::export::import(text, None, CURRENT);
    // The key derivation is slow by design: only inputs that carry an encrypted value
    // are worth the passphrase path.
    if text.contains("siteward-secret:v1:") {
        let _ = siteward_config::export::import(text, Some("a fuzzing passphrase"), CURRENT);
    }
});
