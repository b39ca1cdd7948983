//! The masked view and the diff read files from disk and from imports: any text gives
//! lines or an error, never a panic. (That secrets stay masked is a property test in
//! `config/src/view.rs`.)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (old, new) = text.split_once("\n---\n").unwrap_or((text, ""));
    let _ = siteward_config::view::masked_lines(new);
    let _ = siteward_config::view::diff(old, new);
});
