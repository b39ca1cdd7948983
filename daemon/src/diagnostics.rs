//! Diagnostics run from the box on the user's demand (the web UI's Tools): ping, TCP port
//! test and a one-shot run of any check kind against an address the user types, and DNS
//! lookups. Each is bounded: a timeout of at most [`MAX_TIMEOUT`], at most
//! [`MAX_PING_COUNT`] echo requests, and at most [`MAX_CONCURRENT`] diagnostics at once in
//! the whole daemon (more are refused, not queued, so a page reloaded in a loop cannot pile
//! up probes).
//!
//! A one-shot check is written as one `[[checks]]` table of a minimal configuration and
//! validated by `siteward_config::parse`, so it accepts exactly what the configuration file
//! accepts, and its problems come back keyed by the user's own keys. It then runs through
//! the same probe runner as the engine's checks, with the daemon's shared resolver.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use hickory_resolver::proto::rr::{Name, RData, Record};
use hickory_resolver::TokioResolver;
use serde_json::Value;
use siteward_config::{Check, DnsRecordType, Probe};
use siteward_connectors::net::Resolver;
use siteward_connectors::{probes, Reason};
use tokio::sync::Semaphore;

/// Diagnostics running at once, daemon-wide.
pub const MAX_CONCURRENT: usize = 4;
/// Longest timeout a diagnostic may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of a diagnostic that does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most echo requests one ping sends.
pub const MAX_PING_COUNT: u32 = 10;
/// Most keys a diagnostic's input may have (a check has about a dozen).
const MAX_FIELDS: usize = 32;
/// Longest key accepted; longer ones are not check keys and are not echoed in full.
const MAX_KEY: usize = 64;
/// Longest DNS name (RFC 1035, in text form without the trailing dot).
const MAX_DNS_NAME: usize = 253;
/// Answers listed at most.
const MAX_ANSWERS: usize = 100;
/// Longest rendered record data (a TXT record can hold 64 KiB).
const MAX_RECORD_TEXT: usize = 1024;
/// The name of the one check in the rendered configuration.
const CHECK_NAME: &str = "diagnostic";
/// Keys of a check that mean nothing for a single run.
const SCHEDULE_KEYS: &[&str] = &["name", "interval", "rise", "fall"];
/// Keys that read a secret from a file on the box: a diagnostic takes the secret itself.
const SECRET_FILE_KEYS: &[(&str, &str)] = &[
    ("secret_file", "secret"),
    ("route_password_file", "route_password"),
];
/// Keys whose values are secrets: never echoed, and cut out of anything returned.
const SECRET_KEYS: &[&str] = &["secret", "route_password"];

/// A diagnostic's input: key/values as a check table has them (`kind`, `target`, and the
/// kind's keys), or the keys of a DNS lookup. `null` and empty strings count as absent, as
/// an empty form field does.
pub type Fields = serde_json::Map<String, Value>;

/// Problems with a diagnostic's input, by the user's key; `""` is the input as a whole.
pub type FieldProblems = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum DiagnosticError {
    #[error("the diagnostic's input has {} problem(s)", .0.len())]
    Invalid(FieldProblems),
    #[error("{MAX_CONCURRENT} diagnostics are running already; try again when one has finished")]
    Busy,
}

/// What one run of a one-shot check found.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRun {
    pub kind: &'static str,
    /// What was probed, as the checks API shows it (never a secret).
    pub target: String,
    pub reason: Reason,
    pub detail: String,
    pub latency: Duration,
    pub at: SystemTime,
    /// The peer certificate's notAfter (Unix seconds), for kinds that speak TLS.
    pub tls_not_after: Option<i64>,
}

impl CheckRun {
    pub fn up(&self) -> bool {
        self.reason == Reason::Ok
    }
}

/// A DNS lookup to make: the name (a reverse name for an address) and record type.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsQuery {
    pub name: String,
    pub record_type: DnsRecordType,
    pub timeout: Duration,
}

/// One record of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    pub name: String,
    pub record_type: String,
    pub ttl: u32,
    /// As a zone file writes it (TXT: the strings joined).
    pub data: String,
}

/// What a lookup found: answers, or why there are none.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsLookup {
    /// The name asked for (for an address, its reverse name).
    pub name: String,
    pub record_type: DnsRecordType,
    pub answers: Vec<DnsAnswer>,
    /// Why there are no answers (no such name, no record of the type, no answer in time).
    pub error: Option<String>,
    pub elapsed: Duration,
}

/// The diagnostics of one daemon: its resolvers and the limit on concurrent runs.
pub struct Diagnostics {
    /// The checks' shared resolver, for one-shot checks.
    resolver: Resolver,
    /// Lookups by record type. The shared [`Resolver`] only answers addresses, so this
    /// one is built from the same system configuration (resolv.conf and /etc/hosts).
    lookups: TokioResolver,
    permits: Semaphore,
}

impl Diagnostics {
    pub fn new(resolver: Resolver) -> anyhow::Result<Self> {
        let lookups = TokioResolver::builder_tokio()
            .context("reading the system resolver configuration for DNS lookups")?
            .build()
            .context("building the resolver for DNS lookups")?;
        Ok(Diagnostics {
            resolver,
            lookups,
            permits: Semaphore::new(MAX_CONCURRENT),
        })
    }

    /// Runs a check of any kind once, as `[[checks]]` would, against what `fields` say.
    pub async fn run_check(&self, fields: &Fields) -> Result<CheckRun, DiagnosticError> {
        self.run_one_shot(fields, None).await
    }

    /// Pings `fields["target"]` (a check of kind `icmp`: `count`, `max_loss_percent`,
    /// `timeout`, `source`, `interface`).
    pub async fn ping(&self, fields: &Fields) -> Result<CheckRun, DiagnosticError> {
        self.run_one_shot(fields, Some("icmp")).await
    }

    /// Opens a TCP connection to `fields["target"]` (`host:port`; a check of kind `tcp`).
    pub async fn tcp_test(&self, fields: &Fields) -> Result<CheckRun, DiagnosticError> {
        self.run_one_shot(fields, Some("tcp")).await
    }

    async fn run_one_shot(
        &self,
        fields: &Fields,
        kind: Option<&str>,
    ) -> Result<CheckRun, DiagnosticError> {
        let check = one_shot_check(fields, kind).map_err(DiagnosticError::Invalid)?;
        let _permit = self
            .permits
            .try_acquire()
            .map_err(|_| DiagnosticError::Busy)?;
        let outcome = probes::run(&check, &self.resolver).await;
        let target = check.probe.target_display();
        tracing::info!(
            kind = check.probe.kind(),
            target = %target,
            result = outcome.reason.as_str(),
            "diagnostic check run"
        );
        // The detail comes from the peer too; a secret it might repeat is cut out.
        let secrets = secret_values(fields);
        Ok(CheckRun {
            kind: check.probe.kind(),
            target,
            reason: outcome.reason,
            detail: redact(&outcome.detail, &secrets),
            latency: outcome.duration,
            at: outcome.at,
            tls_not_after: outcome.tls_not_after,
        })
    }

    /// Looks a name up through the system's resolver configuration (`/etc/hosts` first,
    /// as for the checks).
    pub async fn dns_lookup(&self, query: &DnsQuery) -> Result<DnsLookup, DiagnosticError> {
        let _permit = self
            .permits
            .try_acquire()
            .map_err(|_| DiagnosticError::Busy)?;
        let record_type = probes::dns::record_type(query.record_type);
        let started = Instant::now();
        let found = tokio::time::timeout(
            query.timeout,
            self.lookups.lookup(query.name.as_str(), record_type),
        )
        .await;
        let elapsed = started.elapsed();
        let (answers, error) = match found {
            Ok(Ok(lookup)) => (render_answers(lookup.answers()), None),
            Ok(Err(e)) if e.is_no_records_found() => (
                Vec::new(),
                Some(format!(
                    "no {} record for {}: {e}",
                    query.record_type.as_str(),
                    query.name
                )),
            ),
            Ok(Err(e)) => (Vec::new(), Some(format!("looking up {}: {e}", query.name))),
            Err(_) => (
                Vec::new(),
                Some(format!(
                    "no answer within {}",
                    humantime::format_duration(query.timeout)
                )),
            ),
        };
        tracing::info!(
            name = %query.name,
            record_type = query.record_type.as_str(),
            answers = answers.len(),
            "diagnostic DNS lookup"
        );
        Ok(DnsLookup {
            name: query.name.clone(),
            record_type: query.record_type,
            answers,
            error,
            elapsed,
        })
    }
}

/// The check that `fields` describe, validated as the configuration file would be;
/// `kind`, when given, is the only kind allowed (and the default).
pub fn one_shot_check(fields: &Fields, kind: Option<&str>) -> Result<Check, FieldProblems> {
    let mut problems = FieldProblems::new();
    let secrets = secret_values(fields);
    let mut table = check_table(fields, &mut problems);
    if let Some(kind) = kind {
        match table.get("kind").and_then(toml::Value::as_str) {
            None => {
                table.insert("kind".into(), kind.into());
            }
            Some(given) if given == kind => {}
            Some(_) => {
                problems.insert("kind".into(), format!("this tool runs kind \"{kind}\""));
                table.insert("kind".into(), kind.into());
            }
        }
    }
    table.insert("name".into(), CHECK_NAME.into());
    // The longest interval, so that any timeout up to MAX_TIMEOUT is shorter.
    table.insert("interval".into(), "24h".into());
    if !table.contains_key("timeout") && !problems.contains_key("timeout") {
        table.insert(
            "timeout".into(),
            humantime::format_duration(DEFAULT_TIMEOUT)
                .to_string()
                .into(),
        );
    }

    let check = match validate(table) {
        Ok(check) => Some(check),
        Err(errors) => {
            for (key, message) in errors {
                add_problem(&mut problems, key, message);
            }
            None
        }
    };
    if let Some(Probe::Icmp(icmp)) = check.as_ref().map(|c| &c.probe) {
        if icmp.count > MAX_PING_COUNT {
            add_problem(
                &mut problems,
                "count".into(),
                format!("at most {MAX_PING_COUNT} for a diagnostic"),
            );
        }
    }
    match check {
        Some(check) if problems.is_empty() => Ok(check),
        _ => Err(problems
            .into_iter()
            .map(|(key, message)| (key, redact(&message, &secrets)))
            .collect()),
    }
}

/// The user's keys as a TOML table, minus those a diagnostic refuses (reported).
fn check_table(fields: &Fields, problems: &mut FieldProblems) -> toml::Table {
    let mut table = toml::Table::new();
    if fields.len() > MAX_FIELDS {
        problems.insert(
            String::new(),
            format!("{} keys; a check has at most {MAX_FIELDS}", fields.len()),
        );
        return table;
    }
    for (key, value) in fields {
        if value.is_null() || value.as_str() == Some("") {
            continue;
        }
        if key.is_empty()
            || key.len() > MAX_KEY
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            let shown: String = key.chars().take(MAX_KEY).collect();
            add_problem(problems, shown, "not a check key".into());
            continue;
        }
        if SCHEDULE_KEYS.contains(&key.as_str()) {
            add_problem(problems, key.clone(), "not used by a one-shot run".into());
            continue;
        }
        if let Some((_, instead)) = SECRET_FILE_KEYS.iter().find(|(file, _)| file == key) {
            add_problem(
                problems,
                key.clone(),
                format!("a diagnostic reads no secret files: give {instead} itself"),
            );
            continue;
        }
        if key == "ca_file" && value.as_str().is_some_and(|p| !Path::new(p).is_absolute()) {
            add_problem(
                problems,
                key.clone(),
                "must be an absolute path on the appliance".into(),
            );
            continue;
        }
        if key == "timeout" {
            let too_long = value
                .as_str()
                .and_then(|t| humantime::parse_duration(t).ok())
                .is_some_and(|t| t > MAX_TIMEOUT);
            if too_long {
                add_problem(
                    problems,
                    key.clone(),
                    format!(
                        "at most {} for a diagnostic",
                        humantime::format_duration(MAX_TIMEOUT)
                    ),
                );
                continue;
            }
        }
        match toml_value(value) {
            Ok(value) => {
                table.insert(key.clone(), value);
            }
            // The message never quotes the value, so a secret's is safe too.
            Err(message) => add_problem(problems, key.clone(), message.into()),
        }
    }
    table
}

/// JSON as TOML, or why a value has no TOML form (TOML has no null, and no integer above
/// `i64::MAX`). A `null` inside an array or object is left out, as an absent value.
fn toml_value(value: &Value) -> Result<toml::Value, &'static str> {
    Ok(match value {
        Value::Null => return Err("must have a value"),
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => return Err("holds a number too large for a check"),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => toml::Value::Array(
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(toml_value)
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| toml_value(v).map(|v| (k.clone(), v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Validates `check` as the only `[[checks]]` table of a minimal configuration; errors
/// come back keyed by the check's key they concern (`""` for the check as a whole).
fn validate(check: toml::Table) -> Result<Check, Vec<(String, String)>> {
    let mut appliance = toml::Table::new();
    appliance.insert("name".into(), CHECK_NAME.into());
    let mut document = toml::Table::new();
    document.insert("appliance".into(), toml::Value::Table(appliance));
    document.insert(
        "checks".into(),
        toml::Value::Array(vec![toml::Value::Table(check)]),
    );
    let text = toml::to_string(&document)
        .map_err(|e| vec![(String::new(), format!("cannot be written as TOML: {e}"))])?;
    // Relative paths were refused above; the base directory anchors nothing.
    match siteward_config::parse(&text, Path::new("/")) {
        Ok(config) => config
            .checks
            .into_iter()
            .next()
            .ok_or_else(|| vec![(String::new(), "no check came out of validation".into())]),
        Err(e) => Err(e
            .field_errors()
            .into_iter()
            .map(|problem| (user_key(&problem.path), problem.message))
            .collect()),
    }
}

/// `checks[0].expect_status[1]` → `expect_status`; anything outside the check → `""`.
fn user_key(path: &str) -> String {
    path.strip_prefix("checks[0].")
        .map(|rest| {
            rest.split(['.', '['])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

/// Records `message` for `key`, after any earlier one for the same key.
fn add_problem(problems: &mut FieldProblems, key: String, message: String) {
    problems
        .entry(key)
        .and_modify(|earlier| {
            earlier.push_str("; ");
            earlier.push_str(&message);
        })
        .or_insert(message);
}

/// The secret values typed into `fields`, to cut out of anything returned.
fn secret_values(fields: &Fields) -> Vec<String> {
    SECRET_KEYS
        .iter()
        .filter_map(|key| fields.get(*key).and_then(Value::as_str))
        .filter(|secret| !secret.is_empty())
        .map(str::to_string)
        .collect()
}

/// `text` with every occurrence of a secret replaced by `***`.
fn redact(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_string(), |text, secret| {
        text.replace(secret.as_str(), "***")
    })
}

impl DnsQuery {
    /// The lookup `fields` ask for: `name` (a DNS name, or an address for its PTR record),
    /// `type` (A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT; PTR for an address, else A by
    /// default) and `timeout`.
    pub fn from_fields(fields: &Fields) -> Result<DnsQuery, FieldProblems> {
        let mut problems = FieldProblems::new();
        for key in fields.keys() {
            if !["name", "type", "timeout"].contains(&key.as_str()) {
                let shown: String = key.chars().take(MAX_KEY).collect();
                problems.insert(shown, "unknown key (expected name, type, timeout)".into());
            }
        }
        let text = |key: &str, problems: &mut FieldProblems| -> Option<String> {
            match fields.get(key) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(s.trim().to_string()),
                Some(_) => {
                    problems.insert(key.into(), "must be a string".into());
                    None
                }
            }
        };
        let name = text("name", &mut problems);
        let record_type = text("type", &mut problems);
        let timeout = text("timeout", &mut problems);

        let address = name.as_deref().and_then(|n| n.parse::<IpAddr>().ok());
        let record_type = match record_type {
            None if address.is_some() => Some(DnsRecordType::Ptr),
            None => Some(DnsRecordType::A),
            Some(t) => {
                let found = DnsRecordType::ALL
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(&t))
                    .map(|(_, rt)| *rt);
                if found.is_none() {
                    let names: Vec<&str> = DnsRecordType::ALL.iter().map(|(n, _)| *n).collect();
                    problems.insert(
                        "type".into(),
                        format!("unknown record type (expected one of {})", names.join(", ")),
                    );
                }
                found
            }
        };
        let name = match (name, address) {
            (None, _) => {
                // Unless it is there but not a string (reported already).
                problems
                    .entry("name".into())
                    .or_insert_with(|| "missing: the name to look up".into());
                None
            }
            (Some(_), Some(ip)) => {
                if record_type.is_some_and(|t| t != DnsRecordType::Ptr) {
                    problems.insert(
                        "type".into(),
                        "an address is looked up with PTR (its reverse name)".into(),
                    );
                }
                Some(Name::from(ip).to_ascii())
            }
            (Some(name), None) => match check_dns_name(&name) {
                Ok(()) => Some(name),
                Err(message) => {
                    problems.insert("name".into(), message);
                    None
                }
            },
        };
        let timeout = match timeout {
            None => Some(DEFAULT_TIMEOUT),
            Some(t) => match humantime::parse_duration(&t) {
                Ok(t) if t.is_zero() || t > MAX_TIMEOUT => {
                    problems.insert(
                        "timeout".into(),
                        format!(
                            "must be more than 0 and at most {}",
                            humantime::format_duration(MAX_TIMEOUT)
                        ),
                    );
                    None
                }
                Ok(t) => Some(t),
                Err(e) => {
                    problems.insert(
                        "timeout".into(),
                        format!("not a duration such as \"5s\": {e}"),
                    );
                    None
                }
            },
        };
        match (name, record_type, timeout) {
            (Some(name), Some(record_type), Some(timeout)) if problems.is_empty() => Ok(DnsQuery {
                name,
                record_type,
                timeout,
            }),
            _ => Err(problems),
        }
    }
}

/// A name a resolver can be asked for: letters, digits, `-` and `_` (SRV names) in
/// dot-separated labels of at most 63 characters.
pub(crate) fn check_dns_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() || bare.len() > MAX_DNS_NAME {
        return Err(format!(
            "must be 1 to {MAX_DNS_NAME} characters, found {}",
            bare.len()
        ));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !bare.split('.').all(label_ok) {
        return Err(
            "is not a DNS name (labels of letters, digits, '-' and '_', separated by dots)".into(),
        );
    }
    Ok(())
}

fn render_answers(records: &[Record]) -> Vec<DnsAnswer> {
    records
        .iter()
        .take(MAX_ANSWERS)
        .map(|record| DnsAnswer {
            name: record.name.to_string(),
            record_type: record.record_type().to_string(),
            ttl: record.ttl,
            data: render_data(&record.data),
        })
        .collect()
}

/// Record data as the DNS check shows it (TXT strings joined, the rest as a zone file
/// writes it), cut at [`MAX_RECORD_TEXT`].
fn render_data(data: &RData) -> String {
    let mut text = probes::dns::render(data);
    siteward_connectors::text::ellipsize(&mut text, MAX_RECORD_TEXT);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Fields {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn problems(value: Value, kind: Option<&str>) -> FieldProblems {
        one_shot_check(&fields(value), kind).expect_err("the input should be refused")
    }

    #[test]
    fn a_valid_check_comes_out_with_its_kind_and_the_default_timeout() {
        let check = one_shot_check(
            &fields(json!({
                "kind": "oracle-tns",
                "target": "db.example.net",
                "service_name": "EBSPROD",
            })),
            None,
        )
        .unwrap();
        assert_eq!(check.timeout, DEFAULT_TIMEOUT);
        match &check.probe {
            Probe::OracleTns(p) => {
                assert_eq!(p.target.to_string(), "db.example.net:1521");
                assert_eq!(p.service_name.as_deref(), Some("EBSPROD"));
            }
            other => panic!("wrong probe: {other:?}"),
        }
    }

    #[test]
    fn validation_errors_come_back_under_the_users_keys() {
        let found = problems(
            json!({
                "kind": "oracle-tns",
                "target": "db.example.net:99999",
                "service_name": "no spaces allowed",
                "expect_status": [200],
                "count": 3,
                "source": "not-an-ip",
                "bogus": 1,
            }),
            None,
        );
        let keys: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "bogus",
                "count",
                "expect_status",
                "service_name",
                "source",
                "target"
            ]
        );
        assert!(
            found["count"].contains("not used by kind \"oracle-tns\""),
            "{found:?}"
        );
        assert!(found["bogus"].contains("unknown key"), "{found:?}");
        assert!(
            found["service_name"].contains("1-128 characters"),
            "{found:?}"
        );
    }

    #[test]
    fn a_missing_kind_and_target_are_reported() {
        let found = problems(json!({}), None);
        assert!(found["kind"].starts_with("missing"), "{found:?}");
        let found = problems(json!({ "kind": "sap-ni" }), None);
        assert!(found["target"].starts_with("missing"), "{found:?}");
        let found = problems(json!({ "kind": "telnet", "target": "h:1" }), None);
        assert!(found["kind"].contains("unknown kind"), "{found:?}");
    }

    #[test]
    fn schedule_keys_secret_files_and_relative_paths_are_refused() {
        let found = problems(
            json!({
                "kind": "asterisk-ami",
                "target": "pbx:5038",
                "username": "monitor",
                "secret_file": "/etc/shadow",
                "interval": "10s",
                "name": "x",
            }),
            None,
        );
        assert!(
            found["secret_file"].contains("give secret itself"),
            "{found:?}"
        );
        assert_eq!(found["interval"], "not used by a one-shot run");
        assert_eq!(found["name"], "not used by a one-shot run");
        // The AMI secret is then missing, reported at the key the user would type.
        assert!(found.contains_key("secret"), "{found:?}");
        let found = problems(
            json!({ "kind": "tls", "target": "h", "ca_file": "ca.pem" }),
            None,
        );
        assert_eq!(
            found["ca_file"],
            "must be an absolute path on the appliance"
        );
    }

    #[test]
    fn timeouts_and_ping_counts_are_bounded() {
        let found = problems(
            json!({ "target": "192.0.2.1", "count": 11, "timeout": "11s" }),
            Some("icmp"),
        );
        assert_eq!(found["timeout"], "at most 10s for a diagnostic");
        let found = problems(json!({ "target": "192.0.2.1", "count": 11 }), Some("icmp"));
        assert_eq!(found["count"], "at most 10 for a diagnostic");
        let found = problems(
            json!({ "target": "192.0.2.1", "timeout": "0s" }),
            Some("icmp"),
        );
        assert!(found["timeout"].contains("greater than 0"), "{found:?}");
        let check = one_shot_check(
            &fields(json!({ "target": "192.0.2.1", "count": 10, "timeout": "10s" })),
            Some("icmp"),
        )
        .unwrap();
        assert_eq!(check.timeout, MAX_TIMEOUT);
    }

    #[test]
    fn a_tool_runs_only_its_own_kind() {
        let check =
            one_shot_check(&fields(json!({ "target": "127.0.0.1:22" })), Some("tcp")).unwrap();
        assert_eq!(check.probe.kind(), "tcp");
        let found = problems(
            json!({ "kind": "http", "target": "127.0.0.1:22" }),
            Some("tcp"),
        );
        assert_eq!(found["kind"], "this tool runs kind \"tcp\"");
    }

    #[test]
    fn empty_values_count_as_absent() {
        let check = one_shot_check(
            &fields(
                json!({ "kind": "oracle-tns", "target": "db", "service_name": "", "source": null }),
            ),
            None,
        )
        .unwrap();
        match check.probe {
            Probe::OracleTns(p) => assert_eq!(p.service_name, None),
            other => panic!("wrong probe: {other:?}"),
        }
    }

    #[test]
    fn secrets_are_never_echoed() {
        // A secret of the wrong type: the configuration's message does not quote it.
        let found = problems(
            json!({ "kind": "asterisk-ami", "target": "pbx", "username": "u", "secret": 123456789 }),
            None,
        );
        assert!(!format!("{found:?}").contains("123456789"), "{found:?}");
        // A secret typed into the wrong kind's check.
        let found = problems(
            json!({ "kind": "tcp", "target": "pbx:1", "secret": "hunter2-s3cret" }),
            None,
        );
        assert!(found.contains_key("secret"));
        assert!(!format!("{found:?}").contains("hunter2"), "{found:?}");
        // Anything that repeats a secret has it cut out.
        let secrets = secret_values(&fields(json!({ "route_password": "pw-1234" })));
        assert_eq!(redact("login pw-1234 failed", &secrets), "login *** failed");
    }

    #[test]
    fn odd_keys_and_values_are_reported_not_panicked_on() {
        let found = problems(
            json!({
                "kind": "http",
                "url": "http://h/",
                "expect_status": [200, null, 18446744073709551615u64],
                "a b": 1,
                "\n": true,
                "insecure_skip_verify": { "nested": [1.5] },
            }),
            None,
        );
        assert!(found.contains_key("expect_status"), "{found:?}");
        assert!(found.contains_key("a b"), "{found:?}");
        assert!(found.contains_key("\n"), "{found:?}");
        assert!(found.contains_key("insecure_skip_verify"), "{found:?}");
        let many: Fields = (0..MAX_FIELDS + 1)
            .map(|i| (format!("k{i}"), json!(1)))
            .collect();
        let found = one_shot_check(&many, None).unwrap_err();
        assert!(found[""].contains("at most"), "{found:?}");
    }

    #[test]
    fn user_keys_are_read_from_field_paths() {
        assert_eq!(user_key("checks[0].target"), "target");
        assert_eq!(user_key("checks[0].expect_status[1]"), "expect_status");
        assert_eq!(user_key("checks[0]"), "");
        assert_eq!(user_key("appliance.name"), "");
    }

    fn dns(value: Value) -> Result<DnsQuery, FieldProblems> {
        DnsQuery::from_fields(&fields(value))
    }

    #[test]
    fn dns_queries_default_to_a_or_ptr_for_an_address() {
        let query = dns(json!({ "name": "localhost" })).unwrap();
        assert_eq!(query.record_type, DnsRecordType::A);
        assert_eq!(query.timeout, DEFAULT_TIMEOUT);
        let query = dns(json!({ "name": "127.0.0.1" })).unwrap();
        assert_eq!(query.record_type, DnsRecordType::Ptr);
        assert_eq!(query.name, "1.0.0.127.in-addr.arpa.");
        let query = dns(json!({ "name": "_sip._tcp.example.com", "type": "srv", "timeout": "2s" }))
            .unwrap();
        assert_eq!(query.record_type, DnsRecordType::Srv);
        assert_eq!(query.timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_dns_queries_are_reported_by_key() {
        let found = dns(json!({ "type": "AXFR", "timeout": "1h", "extra": 1 })).unwrap_err();
        let keys: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(keys, ["extra", "name", "timeout", "type"]);
        let found = dns(json!({ "name": "127.0.0.1", "type": "MX" })).unwrap_err();
        assert!(found["type"].contains("PTR"), "{found:?}");
        for bad in [
            "a..b",
            "with space",
            "semi;colon",
            "new\nline",
            &"a".repeat(300),
        ] {
            let found = dns(json!({ "name": bad })).unwrap_err();
            assert!(found.contains_key("name"), "{bad}: {found:?}");
        }
        let found = dns(json!({ "name": 5 })).unwrap_err();
        assert_eq!(found["name"], "must be a string");
    }

    fn diagnostics() -> Diagnostics {
        Diagnostics::new(Resolver::from_system().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_tcp_test_finds_an_open_and_a_closed_port() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open_addr = open.local_addr().unwrap();
        let closed_addr = {
            let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            closed.local_addr().unwrap()
        };
        let diagnostics = diagnostics();
        let run = diagnostics
            .tcp_test(&fields(json!({ "target": open_addr.to_string() })))
            .await
            .unwrap();
        assert!(run.up(), "{run:?}");
        assert_eq!(
            (run.kind, run.target.as_str()),
            ("tcp", &*open_addr.to_string())
        );
        let run = diagnostics
            .tcp_test(&fields(json!({ "target": closed_addr.to_string() })))
            .await
            .unwrap();
        assert_eq!(run.reason, Reason::Refused, "{run:?}");
    }

    #[tokio::test]
    async fn more_than_the_limit_at_once_is_refused_not_queued() {
        let diagnostics = diagnostics();
        let held: Vec<_> = (0..MAX_CONCURRENT)
            .map(|_| diagnostics.permits.try_acquire().unwrap())
            .collect();
        let tcp = fields(json!({ "target": "127.0.0.1:9" }));
        assert!(matches!(
            diagnostics.tcp_test(&tcp).await,
            Err(DiagnosticError::Busy)
        ));
        let query = DnsQuery::from_fields(&fields(json!({ "name": "localhost" }))).unwrap();
        assert!(matches!(
            diagnostics.dns_lookup(&query).await,
            Err(DiagnosticError::Busy)
        ));
        // Bad input is reported even when busy: it never needed a slot.
        assert!(matches!(
            diagnostics.tcp_test(&fields(json!({}))).await,
            Err(DiagnosticError::Invalid(_))
        ));
        drop(held);
        assert!(diagnostics.tcp_test(&tcp).await.is_ok());
    }

    #[tokio::test]
    async fn localhost_resolves_from_etc_hosts_both_ways() {
        let diagnostics = diagnostics();
        let query = DnsQuery::from_fields(&fields(json!({ "name": "localhost" }))).unwrap();
        let lookup = diagnostics.dns_lookup(&query).await.unwrap();
        assert_eq!(lookup.error, None);
        assert!(
            lookup
                .answers
                .iter()
                .any(|a| a.record_type == "A" && a.data == "127.0.0.1"),
            "{lookup:?}"
        );
        let query = DnsQuery::from_fields(&fields(json!({ "name": "127.0.0.1" }))).unwrap();
        let lookup = diagnostics.dns_lookup(&query).await.unwrap();
        assert!(
            lookup
                .answers
                .iter()
                .any(|a| a.record_type == "PTR" && a.data.starts_with("localhost")),
            "{lookup:?}"
        );
    }

    #[test]
    fn txt_data_is_joined_and_long_data_cut() {
        use hickory_resolver::proto::rr::rdata::TXT;
        let txt = RData::TXT(TXT::new(vec!["v=spf1 ".into(), "-all".into()]));
        assert_eq!(render_data(&txt), "v=spf1 -all");
        let long = RData::TXT(TXT::new(vec!["x".repeat(255); 20]));
        assert!(render_data(&long).len() <= MAX_RECORD_TEXT + '…'.len_utf8());
    }
}
