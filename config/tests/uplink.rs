//! `[uplink]` and `[spool]` in a whole file: the model they become, and their errors with
//! field paths next to the other sections' errors.

mod common;

use std::time::Duration;

use common::{assert_only_error, errors_of, parse_ok, HEAD};

#[test]
fn without_an_uplink_section_there_is_no_uplink_and_the_spool_has_its_default() {
    let config = parse_ok(HEAD);
    assert_eq!(config.uplink, None);
    assert_eq!(config.spool.max_bytes, 1 << 30);
}

#[test]
fn an_uplink_with_a_token_becomes_the_model() {
    let config = parse_ok(&format!(
        "{HEAD}[uplink]\nurl = \"https://ingest.example.net/v1/events\"\n\
         token = \"platform-token-0123456789\"\nbatch_max_events = 100\n\
         batch_max_wait = \"250ms\"\nstatus_interval = \"0s\"\n[spool]\nmax_bytes = 104857600\n"
    ));
    let uplink = config.uplink.expect("an uplink");
    assert_eq!(uplink.url, "https://ingest.example.net/v1/events");
    assert_eq!(uplink.batch_max_events, 100);
    assert_eq!(uplink.batch_max_wait, Duration::from_millis(250));
    assert_eq!(uplink.status_interval, None);
    assert_eq!(config.spool.max_bytes, 100 << 20);
    // The token is a secret: Debug does not show it.
    assert!(!format!("{:?}", uplink.token).contains("platform-token"));
}

#[test]
fn uplink_errors_name_their_field() {
    assert_only_error(
        &format!("{HEAD}[uplink]\nurl = \"http://ingest.example.net/\"\ntoken = \"t0123456789\"\n"),
        "uplink.url",
        "https://",
    );
    assert_only_error(
        &format!("{HEAD}[uplink]\nurl = \"https://ingest.example.net/\"\n"),
        "uplink",
        "no credentials",
    );
    assert_only_error(
        &format!(
            "{HEAD}[uplink]\nurl = \"https://ingest.example.net/\"\ntoken = \"t0123456789\"\n\
             ca_file = \"platform-ca.pem\"\n"
        ),
        "uplink.ca_file",
        "cannot read",
    );
    assert_only_error(
        &format!(
            "{HEAD}[uplink]\nurl = \"https://ingest.example.net/\"\ntoken = \"t\"\nretries = 3\n"
        ),
        "uplink.retries",
        "unknown key",
    );
    assert_only_error(
        &format!("{HEAD}[spool]\nmax_bytes = -1\n"),
        "spool.max_bytes",
        "at least",
    );
}

#[test]
fn a_bad_uplink_is_reported_with_the_other_sections_errors() {
    let errors = errors_of(&format!(
        "{HEAD}[uplink]\nurl = \"ftp://x\"\ntoken = \"t0123456789\"\n[metrics]\nlisten = \"nowhere\"\n"
    ));
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert!(
        paths.contains(&"uplink.url") && paths.contains(&"metrics.listen"),
        "{errors:#?}"
    );
}
