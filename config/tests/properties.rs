//! Property tests: `parse` never panics, whatever the text, and its answer about random
//! `[[checks]]` tables is coherent (errors point into the file, a valid file keeps every check).

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::select;

use siteward_config::parse;

/// Relative files resolve here, and nothing exists here.
fn base_dir() -> &'static Path {
    Path::new("/nonexistent/siteward-config-proptest")
}

/// Every key a check can have, and one it cannot.
const CHECK_KEYS: &[&str] = &[
    "name",
    "kind",
    "target",
    "interval",
    "timeout",
    "rise",
    "fall",
    "source",
    "interface",
    "server_name",
    "ca_file",
    "insecure_skip_verify",
    "url",
    "preset",
    "expect_status",
    "body_contains",
    "query",
    "record_type",
    "expect_answer",
    "transport",
    "count",
    "max_loss_percent",
    "service_name",
    "route",
    "route_password",
    "route_password_file",
    "username",
    "secret",
    "secret_file",
    "request_uri",
    "from_user",
    "accept_any_status",
    "bogus",
];

/// Strings that are valid for some key, nearly valid, or hostile.
const STRINGS: &[&str] = &[
    "tcp",
    "tls",
    "http",
    "dns",
    "icmp",
    "oracle-tns",
    "sap-ni",
    "saprouter",
    "asterisk-ami",
    "sip-options",
    "ebs-listener",
    "db.corp.example:1521",
    "db.corp.example",
    "[::1]:1521",
    "[::1]",
    "2001:db8::1",
    "[db]:1",
    "192.0.2.1",
    "10.0.0.300",
    "h:0",
    "h:+80",
    "h:65536",
    "http://ebs.corp.example:8000",
    "https://[2001:db8::1]/x?y",
    "http://u:p@h/",
    "http://",
    "sip:pbx",
    "sips:",
    "/H/sapgw01/S/3300",
    "/H/a/S/1/W/pw",
    "/H/a/S/1/H/b/S/sapgw00",
    "10s",
    "0s",
    "50ms",
    "100ms",
    "25h",
    "3s",
    "udp",
    "A",
    "mx",
    "sap-icm",
    "wg-cloud",
    ".",
    "..",
    "",
    "é",
    "a\nb",
    "a\u{0}b",
    "/",
    "secrets/ami",
];

fn value() -> impl Strategy<Value = toml::Value> {
    let scalar = prop_oneof![
        4 => select(STRINGS).prop_map(|s| toml::Value::String(s.to_string())),
        2 => "\\PC{0,24}".prop_map(toml::Value::String),
        2 => prop_oneof![
            Just(0i64),
            Just(1),
            Just(100),
            Just(101),
            Just(-1),
            Just(65536),
            Just(i64::MAX),
            any::<i64>()
        ]
        .prop_map(toml::Value::Integer),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
        1 => any::<f64>().prop_map(toml::Value::Float),
    ];
    scalar.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..3)
                .prop_map(|kv| toml::Value::Table(kv.into_iter().collect())),
        ]
    })
}

fn check_table() -> impl Strategy<Value = toml::Table> {
    prop::collection::vec((select(CHECK_KEYS), value()), 0..10)
        .prop_map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn file_with_checks(checks: &[toml::Table]) -> String {
    let mut file = toml::Table::new();
    let mut appliance = toml::Table::new();
    appliance.insert("name".into(), "plant-01".into());
    file.insert("appliance".into(), toml::Value::Table(appliance));
    file.insert(
        "checks".into(),
        toml::Value::Array(checks.iter().cloned().map(toml::Value::Table).collect()),
    );
    toml::to_string(&file).expect("a table renders as TOML")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        let _ = parse(&text, base_dir());
    }

    #[test]
    fn parse_never_panics_on_toml_like_text(
        text in "([\\[\\]a-z_.=\"' \n0-9:/-]|checks|kind|name|target|\\[\\[checks\\]\\]\n){0,120}"
    ) {
        let _ = parse(&text, base_dir());
    }

    #[test]
    fn random_checks_give_a_coherent_answer(checks in prop::collection::vec(check_table(), 0..5)) {
        let text = file_with_checks(&checks);
        match parse(&text, base_dir()) {
            Ok(config) => prop_assert_eq!(config.checks.len(), checks.len()),
            Err(e) => {
                let errors = e.field_errors();
                prop_assert!(!errors.is_empty());
                for error in &errors {
                    // Every error points into one of the checks the file has.
                    let index: Option<usize> = error
                        .path
                        .strip_prefix("checks[")
                        .and_then(|rest| rest.split_once(']'))
                        .and_then(|(i, _)| i.parse().ok());
                    prop_assert!(
                        index.is_some_and(|i| i < checks.len()),
                        "{} in\n{}",
                        error,
                        text
                    );
                    prop_assert!(!error.message.is_empty());
                }
                // The same text gives the same errors.
                let again = parse(&text, base_dir()).unwrap_err().field_errors();
                prop_assert_eq!(errors, again);
            }
        }
    }
}
