//! What the validation tests share: a valid head, a base directory where nothing exists,
//! and assertions on the errors of `parse`.

use std::path::Path;

use siteward_config::{parse, Config};

/// A valid file up to its checks and tunnels.
pub const HEAD: &str = "[appliance]\nname = \"plant-01\"\n";

/// Relative files resolve here, and nothing exists here.
pub fn base_dir() -> &'static Path {
    Path::new("/nonexistent/siteward-config-tests")
}

/// Every error of `toml` as (path, message); panics if it is valid.
pub fn errors_of(toml: &str) -> Vec<(String, String)> {
    match parse(toml, base_dir()) {
        Ok(config) => panic!("accepted:\n{toml}\n=> {config:#?}"),
        Err(e) => e
            .field_errors()
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect(),
    }
}

pub fn parse_ok(toml: &str) -> Config {
    parse(toml, base_dir()).unwrap_or_else(|e| panic!("rejected:\n{toml}\n=> {e}"))
}

/// Asserts that `toml` has exactly one error, at `path`, with `fragment` in its message.
pub fn assert_only_error(toml: &str, path: &str, fragment: &str) {
    let errors = errors_of(toml);
    assert!(
        errors.len() == 1 && errors[0].0 == path && errors[0].1.contains(fragment),
        "expected only `{path}: ...{fragment}...` for\n{toml}\ngot {errors:#?}"
    );
}

/// Asserts the errors of `text`, in order, as (path, fragment of the message).
#[allow(dead_code)] // not every suite asserts several errors
pub fn assert_errors(text: &str, expected: &[(&str, &str)]) {
    let errors = errors_of(text);
    let matches = errors.len() == expected.len()
        && errors
            .iter()
            .zip(expected)
            .all(|((path, message), (want_path, fragment))| {
                path == want_path && message.contains(fragment)
            });
    assert!(
        matches,
        "expected {expected:#?}\nfor\n{text}\ngot {errors:#?}"
    );
}
