//! From [`raw`](crate::raw) to [`model`](crate::model), collecting every error with its path.

use std::collections::hash_map::{Entry, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{DeserializeOwned, Visitor};

use crate::connectors::{report_collisions, Listener};
use crate::model::*;
use crate::raw::{keys_of_kind, RawAdmin, RawAppliance, RawCheck, RawMetrics, RawSpool, RawUplink};
use crate::schema::is_secret_key;
use crate::{FieldError, Secret};

const TOP_LEVEL_KEYS: &[&str] = &[
    "appliance",
    "admin",
    "metrics",
    "uplink",
    "spool",
    "checks",
    "tunnels",
    "connectors",
    "relays",
];
/// Keys of `[[checks]]` that every kind takes; the others are listed by [`keys_of_kind`].
const COMMON_CHECK_KEYS: &[&str] = &[
    "name",
    "kind",
    "target",
    "interval",
    "timeout",
    "rise",
    "fall",
    "source",
    "interface",
];
const DEFAULT_STATE_DIR: &str = "/var/lib/siteward";
const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:8443";
/// OPNsense-like web UI session limits.
const DEFAULT_SESSION_IDLE: &str = "4h";
const DEFAULT_SESSION_LIFETIME: &str = "12h";
const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9108";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
const MAX_RISE_FALL: u32 = 100;
const MAX_CHECKS: usize = 20_000;
const MAX_ICMP_COUNT: u32 = 100;
/// Linux IFNAMSIZ less the terminating NUL.
const MAX_INTERFACE_NAME: usize = 15;
/// Longest secret file read.
const MAX_SECRET_FILE: u64 = 4096;
const HTTP_PRESET_SAP_ICM_PATH: &str = "/sap/public/icman/ping";

/// Collects errors as validation walks the file.
pub(crate) struct Errors(pub(crate) Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

pub(crate) fn parse(text: &str, base_dir: &Path) -> Result<Config, Vec<FieldError>> {
    let mut errors = Errors(Vec::new());
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            errors.push("", toml_syntax_error(text, e.message(), e.span()));
            return Err(errors.0);
        }
    };

    for key in table.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            errors.push(
                key_path("", key),
                format!(
                    "unknown section (expected one of {})",
                    TOP_LEVEL_KEYS.join(", ")
                ),
            );
        }
    }

    // A section that could not be decoded has been reported; validating its defaults
    // instead would add errors (a "missing" name) that are not the user's mistake.
    let appliance = section::<RawAppliance>(&table, "appliance", &mut errors)
        .and_then(|raw| appliance(raw, base_dir, &mut errors));
    let admin = section::<RawAdmin>(&table, "admin", &mut errors)
        .and_then(|raw| admin(raw, base_dir, &mut errors));
    let metrics = section::<RawMetrics>(&table, "metrics", &mut errors)
        .and_then(|raw| metrics(raw, &mut errors));
    if let (Some(admin), Some(metrics)) = (&admin, &metrics) {
        if listeners_collide(admin.listen, metrics.listen) {
            errors.push(
                "metrics.listen",
                format!(
                    "{} collides with admin.listen ({}): both cannot listen on it",
                    metrics.listen, admin.listen
                ),
            );
        }
    }

    // No section, no uplink; a section that did not decode was reported.
    let uplink = match table.get("uplink") {
        None => Some(None),
        Some(_) => section::<RawUplink>(&table, "uplink", &mut errors)
            .and_then(|raw| crate::uplink::uplink(raw, base_dir, &mut errors))
            .map(Some),
    };
    let spool = section::<RawSpool>(&table, "spool", &mut errors)
        .and_then(|raw| crate::uplink::spool(raw, &mut errors));

    let checks = checks(&table, base_dir, &mut errors);
    let tunnels = crate::tunnels::tunnels(&table, base_dir, &mut errors);
    let connectors = crate::connectors::connectors(&table, base_dir, &mut errors);
    let relays = crate::connectors::relays(&table, &mut errors);
    if !connectors.is_empty() && matches!(uplink, Some(None)) {
        errors.push(
            "connectors",
            "connectors accept events for the platform: add an [uplink] section to deliver them",
        );
    }
    // Admin and metrics were compared above; each other listener is compared with them too.
    let mut listeners = Vec::new();
    if let Some(admin) = &admin {
        listeners.push(Listener::tcp(admin.listen, "admin.listen"));
    }
    if let Some(metrics) = &metrics {
        listeners.push(Listener::tcp(metrics.listen, "metrics.listen"));
    }
    let compared = listeners.len();
    listeners.extend(crate::connectors::listeners(&connectors, &relays));
    report_collisions(&listeners, compared, &mut errors);

    match (appliance, admin, metrics, uplink, spool) {
        (Some(appliance), Some(admin), Some(metrics), Some(uplink), Some(spool))
            if errors.0.is_empty() =>
        {
            Ok(Config {
                appliance,
                admin,
                metrics,
                checks,
                tunnels,
                uplink,
                spool,
                connectors,
                relays,
            })
        }
        _ => Err(errors.0),
    }
}

/// A TOML syntax error (`toml`'s or `toml_edit`'s message and span) on one line,
/// `line:column` first, instead of toml's multi-line snippet: it reads well in a list of
/// errors and in a JSON log line, and it never quotes the file, whose line could hold a
/// secret. A span that is not at a character boundary of `text` gives no position.
pub(crate) fn toml_syntax_error(text: &str, message: &str, span: Option<Range<usize>>) -> String {
    let message = message.trim_end().replace('\n', "; ");
    match span.and_then(|span| text.get(..span.start.min(text.len()))) {
        Some(before) => {
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("not valid TOML at line {line}, column {column}: {message}")
        }
        None => format!("not valid TOML: {message}"),
    }
}

/// Two listeners that the kernel would not let both bind: the same port on the same
/// address, or on an address and the wildcard covering it (`[::]` also covers IPv4).
pub(crate) fn listeners_collide(a: SocketAddr, b: SocketAddr) -> bool {
    let covers = |wild: IpAddr, other: IpAddr| {
        wild.is_unspecified() && (wild.is_ipv4() == other.is_ipv4() || wild.is_ipv6())
    };
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || covers(a.ip(), b.ip()) || covers(b.ip(), a.ip()))
}

/// Decodes an optional top-level section; an absent one is all defaults, `None` means
/// it had errors (already reported).
fn section<T: DeserializeOwned + Default>(
    table: &toml::Table,
    key: &str,
    errors: &mut Errors,
) -> Option<T> {
    let Some(value) = table.get(key) else {
        return Some(T::default());
    };
    decode_table(value, key, &any_key_of::<T>, errors)
}

/// The unknown-key hint of a table whose keys do not depend on its content.
pub(crate) fn any_key_of<T: DeserializeOwned>(_: &toml::Table) -> String {
    format!("expected one of {}", keys_of::<T>().join(", "))
}

/// The tables of an array of tables (`[[header]]`), at most `max` of them; `None` when
/// that is not what `value` is (reported). `plural` names the entries in the message.
pub(crate) fn array_of_tables<'a>(
    value: &'a toml::Value,
    path: &str,
    header: &str,
    max: usize,
    plural: &str,
    errors: &mut Errors,
) -> Option<&'a [toml::Value]> {
    let Some(array) = value.as_array() else {
        errors.push(path, format!("must be an array of tables ([[{header}]])"));
        return None;
    };
    if array.len() > max {
        errors.push(
            path,
            format!("{} {plural}; at most {max} are supported", array.len()),
        );
        return None;
    }
    Some(array)
}

/// Reports a required string key at `path`: missing (`what_for` says why it is needed), or
/// what `rule` finds wrong with it.
pub(crate) fn required(
    value: Option<&str>,
    path: String,
    what_for: &str,
    rule: fn(&str) -> Result<(), String>,
    errors: &mut Errors,
) {
    match value {
        None => errors.push(path, format!("missing: {what_for}")),
        Some(value) => {
            if let Err(msg) = rule(value) {
                errors.push(path, msg);
            }
        }
    }
}

/// The `kind` key of an entry if it is one of `known`; else reported, and `None`.
pub(crate) fn kind<'a>(
    value: Option<&'a str>,
    known: &[&str],
    path: String,
    errors: &mut Errors,
) -> Option<&'a str> {
    match value {
        None => {
            errors.push(path, format!("missing: one of {}", known.join(", ")));
            None
        }
        Some(kind) if !known.contains(&kind) => {
            errors.push(
                path,
                format!(
                    "unknown kind \"{kind}\" (expected one of {})",
                    known.join(", ")
                ),
            );
            None
        }
        Some(kind) => Some(kind),
    }
}

/// Remembers where each value was first used, so that a duplicate's error can name it.
pub(crate) struct FirstUse<K>(HashMap<K, String>);

impl<K: Eq + Hash> FirstUse<K> {
    pub(crate) fn new() -> Self {
        FirstUse(HashMap::new())
    }

    /// Remembers that `used_by` has `value`; if an earlier one had it, reports the
    /// duplicate `what` at `path`, naming the first.
    pub(crate) fn note(
        &mut self,
        value: K,
        used_by: &str,
        path: String,
        what: impl std::fmt::Display,
        errors: &mut Errors,
    ) {
        match self.0.entry(value) {
            Entry::Occupied(first) => errors.push(
                path,
                format!("duplicate {what} (first used by {})", first.get()),
            ),
            Entry::Vacant(slot) => {
                slot.insert(used_by.to_string());
            }
        }
    }
}

/// Decodes one TOML table into its raw struct, reporting every unknown key and every value
/// of the wrong type (serde alone stops at the first). Unknown keys are dropped and the
/// rest is still validated; a wrong type makes the result `None`, so validation does not
/// add consequences of the same mistake ("missing name" after "name must be a string").
/// `known_keys` describes the accepted keys for the unknown-key message.
pub(crate) fn decode_table<T: DeserializeOwned>(
    value: &toml::Value,
    path: &str,
    known_keys: &dyn Fn(&toml::Table) -> String,
    errors: &mut Errors,
) -> Option<T> {
    let Some(table) = value.as_table() else {
        errors.push(path, format!("must be a table, found {}", value.type_str()));
        return None;
    };
    let accepted = keys_of::<T>();
    let mut table = table.clone();
    let unknown: Vec<String> = table
        .keys()
        .filter(|key| !accepted.contains(&key.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        let hint = known_keys(&table);
        for key in &unknown {
            errors.push(key_path(path, key), format!("unknown key ({hint})"));
            table.remove(key);
        }
    }
    let mut well_typed = true;
    loop {
        match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(table.clone())) {
            Ok(raw) => return well_typed.then_some(raw),
            Err(e) => {
                well_typed = false;
                let key = match e.path().iter().next() {
                    Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
                    _ => None,
                };
                let inner = e.path().to_string();
                let full = if inner == "." || inner.is_empty() {
                    path.to_string()
                } else if path.is_empty() {
                    inner
                } else {
                    format!("{path}.{inner}")
                };
                let message = match &key {
                    // serde quotes the offending value; a secret's must not reach a log.
                    Some(k) if is_secret_key(k) => {
                        "must be a string (value not shown: it is a secret)".to_string()
                    }
                    _ => e.into_inner().message().trim_end().to_string(),
                };
                errors.push(full, message);
                // Drop the bad value and decode again to find the next one.
                match key {
                    Some(key) if table.remove(&key).is_some() => {}
                    _ => return None,
                }
            }
        }
    }
}

/// The keys a serde struct accepts, read from its `Deserialize` impl so that the list
/// cannot drift from the struct.
pub(crate) fn keys_of<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    struct FieldNames<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("field names taken"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// `parent.key`, with the key quoted when it is not a bare TOML key.
fn key_path(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

fn appliance(raw: RawAppliance, base_dir: &Path, errors: &mut Errors) -> Option<Appliance> {
    let name = match raw.name {
        None => {
            errors.push(
                "appliance.name",
                "missing: every appliance needs a name (e.g. \"plant-01\")",
            );
            None
        }
        Some(name) => match check_name(&name) {
            Ok(()) => Some(name),
            Err(msg) => {
                errors.push("appliance.name", msg);
                None
            }
        },
    };
    let state_dir = raw
        .state_dir
        .map(|p| resolve_path(base_dir, &p))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    Some(Appliance {
        name: name?,
        state_dir,
    })
}

fn admin(raw: RawAdmin, base_dir: &Path, errors: &mut Errors) -> Option<Admin> {
    let listen = socket_addr(
        raw.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN),
        "admin.listen",
        errors,
    );
    let tls = match (raw.cert_file, raw.key_file) {
        (None, None) => Some(None),
        (Some(cert), Some(key)) => {
            let cert_file = existing_file(base_dir, &cert, "admin.cert_file", errors);
            let key_file = existing_file(base_dir, &key, "admin.key_file", errors);
            match (cert_file, key_file) {
                (Some(cert_file), Some(key_file)) => Some(Some(AdminTls {
                    cert_file,
                    key_file,
                })),
                _ => None,
            }
        }
        (Some(_), None) => {
            errors.push(
                "admin.key_file",
                "missing: cert_file and key_file go together",
            );
            None
        }
        (None, Some(_)) => {
            errors.push(
                "admin.cert_file",
                "missing: cert_file and key_file go together",
            );
            None
        }
    };
    let session_idle = duration(
        raw.session_idle.as_deref().unwrap_or(DEFAULT_SESSION_IDLE),
        "admin.session_idle",
        errors,
    );
    let session_lifetime = duration(
        raw.session_lifetime
            .as_deref()
            .unwrap_or(DEFAULT_SESSION_LIFETIME),
        "admin.session_lifetime",
        errors,
    );
    for (value, key) in [
        (session_idle, "admin.session_idle"),
        (session_lifetime, "admin.session_lifetime"),
    ] {
        if value.is_some_and(|d| d < Duration::from_secs(1)) {
            errors.push(key, "must be at least 1s");
        }
    }
    if let (Some(idle), Some(lifetime)) = (session_idle, session_lifetime) {
        if idle > lifetime {
            errors.push(
                "admin.session_idle",
                format!(
                    "{} is longer than session_lifetime ({}): it would never apply",
                    humantime::format_duration(idle),
                    humantime::format_duration(lifetime)
                ),
            );
        }
    }
    Some(Admin {
        listen: listen?,
        tls: tls?,
        session_idle: session_idle?,
        session_lifetime: session_lifetime?,
    })
}

fn metrics(raw: RawMetrics, errors: &mut Errors) -> Option<Metrics> {
    let listen = socket_addr(
        raw.listen.as_deref().unwrap_or(DEFAULT_METRICS_LISTEN),
        "metrics.listen",
        errors,
    );
    Some(Metrics { listen: listen? })
}

fn checks(table: &toml::Table, base_dir: &Path, errors: &mut Errors) -> Vec<Check> {
    let Some(array) = table
        .get("checks")
        .and_then(|value| array_of_tables(value, "checks", "checks", MAX_CHECKS, "checks", errors))
    else {
        return Vec::new();
    };
    let mut checks = Vec::with_capacity(array.len());
    let mut names = FirstUse::new();
    for (i, value) in array.iter().enumerate() {
        let path = format!("checks[{i}]");
        // Counted before decoding, so that a later duplicate still names the first check
        // even when that one had other errors.
        if let Some(name) = value.get("name").and_then(toml::Value::as_str) {
            let what = format!("check name \"{name}\"");
            names.note(name, &path, format!("{path}.name"), what, errors);
        }
        let Some(raw) = decode_table::<RawCheck>(value, &path, &check_keys_hint, errors) else {
            continue;
        };
        if let Some(check) = check(raw, &path, base_dir, errors) {
            checks.push(check);
        }
    }
    checks
}

/// The keys a check may have, for the unknown-key message.
fn check_keys_hint(table: &toml::Table) -> String {
    let keys = (COMMON_CHECK_KEYS, keys_of::<RawCheck>());
    kind_keys_hint(table, CHECK_KINDS, keys, keys_of_kind)
}

/// The keys an entry with a `kind` may have, for the unknown-key message: the `common`
/// ones and those of its kind if it has a known one, else `every` key.
pub(crate) fn kind_keys_hint(
    table: &toml::Table,
    kinds: &[&str],
    (common, every): (&[&str], &[&str]),
    keys_of_kind: fn(&str) -> &'static [&'static str],
) -> String {
    match table
        .get("kind")
        .and_then(toml::Value::as_str)
        .filter(|kind| kinds.contains(kind))
    {
        Some(kind) => {
            let keys: Vec<&str> = common.iter().chain(keys_of_kind(kind)).copied().collect();
            format!("kind \"{kind}\" takes {}", keys.join(", "))
        }
        None => format!("expected one of {}", every.join(", ")),
    }
}

fn check(raw: RawCheck, path: &str, base_dir: &Path, errors: &mut Errors) -> Option<Check> {
    let before = errors.0.len();
    let at = |field: &str| format!("{path}.{field}");

    required(
        raw.name.as_deref(),
        at("name"),
        "every check needs a unique name",
        check_name,
        errors,
    );
    // The kind decides which keys belong and how the target reads; without a known kind
    // only the common keys can be validated.
    let kind = kind(raw.kind.as_deref(), CHECK_KINDS, at("kind"), errors);
    if let Some(kind) = kind {
        let allowed = keys_of_kind(kind);
        for key in raw.kind_keys_set() {
            if !allowed.contains(&key) {
                errors.push(at(key), format!("not used by kind \"{kind}\""));
            }
        }
    }

    let interval = raw
        .interval
        .as_deref()
        .map(|s| duration(s, &at("interval"), errors))
        .unwrap_or(Some(DEFAULT_INTERVAL))
        .filter(|interval| {
            let valid = (MIN_INTERVAL..=MAX_INTERVAL).contains(interval);
            if !valid {
                errors.push(
                    at("interval"),
                    format!(
                        "{} is out of range: must be between 100ms and 24h",
                        humantime::format_duration(*interval)
                    ),
                );
            }
            valid
        });
    let timeout = match raw.timeout.as_deref() {
        Some(s) => duration(s, &at("timeout"), errors),
        // The default must stay below a short interval, so it shrinks with it.
        None => interval.map(|i| DEFAULT_TIMEOUT.min(i * 3 / 4)),
    };
    if let Some(timeout) = timeout {
        if timeout.is_zero() {
            errors.push(at("timeout"), "must be greater than 0");
        } else if let Some(interval) = interval.filter(|i| timeout >= *i) {
            errors.push(
                at("timeout"),
                format!(
                    "{} must be shorter than the interval ({})",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            );
        }
    }
    let rise = raw.rise.unwrap_or(1);
    let fall = raw.fall.unwrap_or(1);
    for (field, value) in [("rise", rise), ("fall", fall)] {
        if value == 0 || value > MAX_RISE_FALL {
            errors.push(
                at(field),
                format!("must be between 1 and {MAX_RISE_FALL}, got {value}"),
            );
        }
    }
    let placement = placement(raw.source.as_deref(), raw.interface.clone(), &at, errors);
    let source = placement.as_ref().and_then(|p| p.source);

    let probe = kind.and_then(|kind| probe(&raw, kind, path, base_dir, errors));
    if let (Some(source), Some(target_ip)) = (source, probe.as_ref().and_then(literal_target_ip)) {
        if target_ip.is_ipv4() != source.is_ipv4() {
            errors.push(
                at("source"),
                format!("{source} and the target {target_ip} are of different address families"),
            );
        }
    }

    if errors.0.len() != before {
        return None;
    }
    Some(Check {
        name: raw.name?,
        interval: interval?,
        timeout: timeout?,
        rise,
        fall,
        placement: placement?,
        probe: probe?,
    })
}

/// Where sockets toward a target leave the box: `source` and `interface` keys.
pub(crate) fn placement(
    source: Option<&str>,
    interface: Option<String>,
    at: &dyn Fn(&str) -> String,
    errors: &mut Errors,
) -> Option<Placement> {
    let before = errors.0.len();
    let source = source.and_then(|s| match s.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            errors.push(at("source"), format!("\"{s}\" is not an IP address"));
            None
        }
    });
    if let Some(interface) = &interface {
        if let Err(msg) = check_interface_name(interface) {
            errors.push(at("interface"), msg);
        }
    }
    (errors.0.len() == before).then_some(Placement { source, interface })
}

/// The target's IP if it is written as a literal, for the source/target family check.
fn literal_target_ip(probe: &Probe) -> Option<IpAddr> {
    let host = match probe {
        Probe::Tcp(p) => &p.target.host,
        Probe::Tls(p) => &p.target.host,
        Probe::Http(p) => match &p.connect_to {
            Some(connect_to) => &connect_to.host,
            None => return url_host_port(&p.url).map(|hp| hp.host).and_then(ip_of),
        },
        Probe::Dns(p) => &p.server.host,
        Probe::Icmp(p) => &p.target,
        Probe::OracleTns(p) => &p.target.host,
        Probe::SapNi(p) => &p.target.host,
        Probe::Saprouter(p) => &p.router.host,
        Probe::AsteriskAmi(p) => &p.target.host,
        Probe::SipOptions(p) => &p.target.host,
    };
    ip_of(host.clone())
}

fn ip_of(host: Host) -> Option<IpAddr> {
    match host {
        Host::Ip(ip) => Some(ip),
        Host::Name(_) => None,
    }
}

fn probe(
    raw: &RawCheck,
    kind: &str,
    path: &str,
    base_dir: &Path,
    errors: &mut Errors,
) -> Option<Probe> {
    let at = |field: &str| format!("{path}.{field}");
    let target_path = at("target");
    // The target with the kind's default port, or an error if the kind has none.
    let target = |default_port: Option<u16>, errors: &mut Errors| -> Option<HostPort> {
        match raw.target.as_deref() {
            None => {
                errors.push(
                    &target_path,
                    format!("missing: kind \"{kind}\" needs a target"),
                );
                None
            }
            Some(t) => host_port(t, default_port, &target_path, errors),
        }
    };
    let trust = |errors: &mut Errors| -> Option<TlsTrust> {
        match (&raw.ca_file, raw.insecure_skip_verify.unwrap_or(false)) {
            (Some(_), true) => {
                errors.push(
                    at("insecure_skip_verify"),
                    "cannot be combined with ca_file",
                );
                None
            }
            (Some(ca), false) => {
                existing_file(base_dir, ca, &at("ca_file"), errors).map(TlsTrust::CaFile)
            }
            (None, true) => Some(TlsTrust::InsecureSkipVerify),
            (None, false) => Some(TlsTrust::SystemRoots),
        }
    };

    Some(match kind {
        "tcp" => Probe::Tcp(TcpProbe {
            target: target(None, errors)?,
        }),
        "tls" => {
            let target = target(Some(443), errors);
            let trust = trust(errors);
            if let Some(name) = &raw.server_name {
                if let Err(msg) = check_hostname(name) {
                    errors.push(at("server_name"), msg);
                }
            }
            Probe::Tls(TlsProbe {
                target: target?,
                server_name: raw.server_name.clone(),
                trust: trust?,
            })
        }
        "http" => {
            let trust = trust(errors);
            http_probe(raw, path, errors, trust)?
        }
        "dns" => {
            let server = target(Some(53), errors);
            let query = match raw.query.as_deref() {
                None => {
                    errors.push(at("query"), "missing: the name to look up");
                    None
                }
                // "." is the root zone, asked for its SOA or NS.
                Some(q) if q == "." || check_hostname(q.strip_suffix('.').unwrap_or(q)).is_ok() => {
                    Some(q.to_string())
                }
                Some(q) => {
                    errors.push(at("query"), format!("\"{q}\" is not a valid DNS name"));
                    None
                }
            };
            let record_type = match raw.record_type.as_deref() {
                None => Some(DnsRecordType::A),
                Some(t) => {
                    let found = DnsRecordType::ALL
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case(t))
                        .map(|(_, rt)| *rt);
                    if found.is_none() {
                        let names: Vec<_> = DnsRecordType::ALL.iter().map(|(n, _)| *n).collect();
                        errors.push(
                            at("record_type"),
                            format!(
                                "unknown record type \"{t}\" (expected one of {})",
                                names.join(", ")
                            ),
                        );
                    }
                    found
                }
            };
            let transport = transport(raw.transport.as_deref(), &at("transport"), errors);
            Probe::Dns(DnsProbe {
                server: server?,
                query: query?,
                record_type: record_type?,
                transport: transport?,
                expect_answer: raw.expect_answer.clone().unwrap_or_default(),
            })
        }
        "icmp" => {
            let host = match raw.target.as_deref() {
                None => {
                    errors.push(&target_path, "missing: kind \"icmp\" needs a target host");
                    None
                }
                Some(t) => host(t, &target_path, errors),
            };
            let count = raw.count.unwrap_or(3);
            if count == 0 || count > MAX_ICMP_COUNT {
                errors.push(
                    at("count"),
                    format!("must be between 1 and {MAX_ICMP_COUNT}, got {count}"),
                );
            }
            let max_loss_percent = raw.max_loss_percent.unwrap_or(100);
            if max_loss_percent > 100 {
                errors.push(
                    at("max_loss_percent"),
                    format!("must be at most 100, got {max_loss_percent}"),
                );
            }
            Probe::Icmp(IcmpProbe {
                target: host?,
                count,
                max_loss_percent,
            })
        }
        "oracle-tns" => {
            let target = target(Some(1521), errors);
            if let Some(service) = &raw.service_name {
                let valid = !service.is_empty()
                    && service.len() <= 128
                    && service
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-$#".contains(c));
                if !valid {
                    errors.push(
                        at("service_name"),
                        "must be 1-128 characters of letters, digits and . _ - $ #",
                    );
                }
            }
            Probe::OracleTns(OracleTnsProbe {
                target: target?,
                service_name: raw.service_name.clone(),
            })
        }
        "sap-ni" => Probe::SapNi(SapNiProbe {
            target: target(None, errors)?,
        }),
        "saprouter" => {
            let router = target(Some(3299), errors);
            let route = match raw.route.as_deref() {
                None => {
                    errors.push(
                        at("route"),
                        "missing: the hops after the router, e.g. \"/H/sapgw01/S/3300\"",
                    );
                    None
                }
                Some(r) => match sap_route(r) {
                    Ok(hops) => Some(hops),
                    Err(msg) => {
                        errors.push(at("route"), msg);
                        None
                    }
                },
            };
            let password = secret(
                raw.route_password.as_deref(),
                raw.route_password_file.as_deref(),
                base_dir,
                &at("route_password"),
                errors,
            );
            Probe::Saprouter(SaprouterProbe {
                router: router?,
                route: route?,
                password: password?,
            })
        }
        "asterisk-ami" => {
            let target = target(Some(5038), errors);
            let username = match raw.username.as_deref() {
                None => {
                    errors.push(at("username"), "missing: the AMI user of manager.conf");
                    None
                }
                Some(u) if u.is_empty() || u.len() > 80 || u.chars().any(char::is_control) => {
                    errors.push(
                        at("username"),
                        "must be 1-80 characters without control characters or line breaks",
                    );
                    None
                }
                Some(u) => Some(u.to_string()),
            };
            let secret = secret(
                raw.secret.as_deref(),
                raw.secret_file.as_deref(),
                base_dir,
                &at("secret"),
                errors,
            );
            let secret = match secret {
                Some(Some(s)) => Some(s),
                Some(None) => {
                    errors.push(at("secret"), "missing: set secret or secret_file");
                    None
                }
                None => None,
            };
            Probe::AsteriskAmi(AsteriskAmiProbe {
                target: target?,
                username: username?,
                secret: secret?,
            })
        }
        "sip-options" => {
            let target = target(Some(5060), errors);
            let transport = transport(raw.transport.as_deref(), &at("transport"), errors);
            if let Some(uri) = &raw.request_uri {
                let lower = uri.to_ascii_lowercase();
                let after_scheme = lower
                    .strip_prefix("sip:")
                    .or_else(|| lower.strip_prefix("sips:"));
                if after_scheme.is_none_or(str::is_empty)
                    || uri.len() > 256
                    || uri.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    errors.push(
                        at("request_uri"),
                        "must be a sip: URI without spaces, at most 256 characters",
                    );
                }
            }
            let from_user = raw
                .from_user
                .clone()
                .unwrap_or_else(|| "siteward".to_string());
            if from_user.is_empty()
                || from_user.len() > 64
                || !from_user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()+".contains(c))
            {
                errors.push(
                    at("from_user"),
                    "must be 1-64 characters allowed in a SIP user part",
                );
            }
            Probe::SipOptions(SipOptionsProbe {
                target: target?,
                transport: transport?,
                request_uri: raw.request_uri.clone(),
                from_user,
                accept_any_status: raw.accept_any_status.unwrap_or(false),
            })
        }
        _ => return None,
    })
}

fn http_probe(
    raw: &RawCheck,
    path: &str,
    errors: &mut Errors,
    trust: Option<TlsTrust>,
) -> Option<Probe> {
    let at = |field: &str| format!("{path}.{field}");
    let preset_path = match raw.preset.as_deref() {
        None => None,
        Some("sap-icm") => Some(HTTP_PRESET_SAP_ICM_PATH),
        Some(other) => {
            errors.push(
                at("preset"),
                format!("unknown preset \"{other}\" (expected sap-icm)"),
            );
            None
        }
    };
    let url = match raw.url.as_deref() {
        None => {
            errors.push(at("url"), "missing: kind \"http\" needs a url");
            None
        }
        Some(url) => match http_url(url) {
            Err(msg) => {
                errors.push(at("url"), msg);
                None
            }
            Ok(()) => Some(match preset_path {
                Some(preset_path) => with_default_path(url, preset_path),
                None => url.to_string(),
            }),
        },
    };
    let expect_status = match &raw.expect_status {
        None if preset_path.is_some() => vec![200],
        None => (200..300).collect(),
        Some(list) if list.is_empty() => {
            errors.push(at("expect_status"), "must list at least one status");
            Vec::new()
        }
        Some(list) => {
            if let Some(bad) = list.iter().find(|s| !(100..=599).contains(*s)) {
                errors.push(
                    at("expect_status"),
                    format!("{bad} is not an HTTP status (100-599)"),
                );
            }
            list.clone()
        }
    };
    let connect_to = match raw.target.as_deref() {
        None => Some(None),
        Some(t) => host_port(t, None, &at("target"), errors).map(Some),
    };
    if let Some(body) = &raw.body_contains {
        if body.is_empty() || body.len() > 1024 {
            errors.push(at("body_contains"), "must be 1-1024 bytes");
        }
    }
    Some(Probe::Http(HttpProbe {
        url: url?,
        connect_to: connect_to?,
        expect_status,
        body_contains: raw.body_contains.clone(),
        trust: trust?,
    }))
}

/// Checks an `http://` or `https://` URL with a valid host.
fn http_url(url: &str) -> Result<(), String> {
    let (authority, _) = split_http_url(url)
        .ok_or_else(|| format!("\"{url}\" must start with http:// or https://"))?;
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be at most 2048 characters without spaces".into());
    }
    if authority.contains('@') {
        return Err("credentials in the URL are not supported".into());
    }
    let mut scratch = Errors(Vec::new());
    if host_port(authority, Some(80), "", &mut scratch).is_none() {
        return Err(format!("\"{authority}\" is not a valid host[:port]"));
    }
    Ok(())
}

/// A preset's path put into a (valid) URL that names only the server, before any query;
/// a URL with its own path is kept as written.
fn with_default_path(url: &str, default_path: &str) -> String {
    let Some((authority, rest)) = split_http_url(url) else {
        return url.to_string();
    };
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, query) = rest.split_at(path_end);
    if !(path.is_empty() || path == "/") {
        return url.to_string();
    }
    let scheme = &url[..url.len() - authority.len() - rest.len()];
    format!("{scheme}{authority}{default_path}{query}")
}

/// The authority (`host[:port]`) and the rest (path, query, fragment) of an HTTP(S) URL.
fn split_http_url(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    Some(match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    })
}

/// The host and port a validated URL connects to.
fn url_host_port(url: &str) -> Option<HostPort> {
    let (authority, _) = split_http_url(url)?;
    let default_port = if url.starts_with("https://") { 443 } else { 80 };
    host_port(authority, Some(default_port), "", &mut Errors(Vec::new()))
}

fn transport(value: Option<&str>, path: &str, errors: &mut Errors) -> Option<Transport> {
    match value {
        None | Some("udp") => Some(Transport::Udp),
        Some("tcp") => Some(Transport::Tcp),
        Some(other) => {
            errors.push(
                path,
                format!("unknown transport \"{other}\" (expected udp or tcp)"),
            );
            None
        }
    }
}

/// A secret's text as given inline or read from its file.
pub(crate) struct SecretText {
    pub(crate) value: String,
    /// The key it was given at (`secret` or `secret_file`), for errors about the value.
    pub(crate) path: String,
    /// The file it was read from, if any.
    pub(crate) file: Option<PathBuf>,
}

/// Inline secret or secret file (exactly one or none). `Some(None)` = neither given.
/// `path` is the inline key's path; the file's is the same with `_file`. A file's trailing
/// line break is dropped: files written by `echo` end in one that is not part of the secret.
pub(crate) fn secret_text(
    inline: Option<&str>,
    file: Option<&Path>,
    base_dir: &Path,
    path: &str,
    errors: &mut Errors,
) -> Option<Option<SecretText>> {
    let key = path.rsplit('.').next().unwrap_or(path);
    let file_path = format!("{path}_file");
    match (inline, file) {
        (Some(_), Some(_)) => {
            errors.push(path, format!("set either {key} or {key}_file, not both"));
            None
        }
        (None, None) => Some(None),
        (Some(value), None) => Some(Some(SecretText {
            value: value.to_string(),
            path: path.to_string(),
            file: None,
        })),
        (None, Some(file)) => {
            let file = resolve_path(base_dir, file);
            match read_secret_file(&file) {
                Ok(text) => Some(Some(SecretText {
                    value: text.trim_end_matches(['\r', '\n']).to_string(),
                    path: file_path,
                    file: Some(file),
                })),
                Err(msg) => {
                    errors.push(&file_path, msg);
                    None
                }
            }
        }
    }
}

/// [`secret_text`] for a secret that is text: not empty and without control characters
/// (it goes into a line- or NUL-delimited protocol field).
pub(crate) fn secret(
    inline: Option<&str>,
    file: Option<&Path>,
    base_dir: &Path,
    path: &str,
    errors: &mut Errors,
) -> Option<Option<Secret>> {
    let Some(SecretText {
        value,
        path: value_path,
        ..
    }) = secret_text(inline, file, base_dir, path, errors)?
    else {
        return Some(None);
    };
    if value.is_empty() {
        errors.push(value_path, "is empty");
        return None;
    }
    if value.chars().any(char::is_control) {
        errors.push(
            value_path,
            "must not contain control characters or line breaks",
        );
        return None;
    }
    Some(Some(Secret::new(value)))
}

/// A whole file of at most `max` bytes, `None` if it is longer: a mistaken path (a log,
/// `/dev/zero`) must not be read whole into memory.
pub(crate) fn read_bounded(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// Reads at most [`MAX_SECRET_FILE`] bytes: a secret file holds one short value.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let cannot =
        |e: &dyn std::fmt::Display| format!("cannot read secret file {}: {e}", path.display());
    let bytes = read_bounded(path, MAX_SECRET_FILE)
        .map_err(|e| cannot(&e))?
        .ok_or_else(|| {
            format!(
                "secret file {} is larger than {MAX_SECRET_FILE} bytes; it must hold only the secret",
                path.display()
            )
        })?;
    String::from_utf8(bytes).map_err(|_| cannot(&"stream did not contain valid UTF-8"))
}

pub(crate) fn resolve_path(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

pub(crate) fn existing_file(
    base_dir: &Path,
    path: &Path,
    field: &str,
    errors: &mut Errors,
) -> Option<PathBuf> {
    let full = resolve_path(base_dir, path);
    match std::fs::metadata(&full) {
        Ok(meta) if meta.is_file() => Some(full),
        Ok(_) => {
            errors.push(field, format!("{} is not a file", full.display()));
            None
        }
        Err(e) => {
            errors.push(field, format!("cannot read {}: {e}", full.display()));
            None
        }
    }
}

pub(crate) fn duration(text: &str, path: &str, errors: &mut Errors) -> Option<Duration> {
    match humantime::parse_duration(text) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(
                path,
                format!("\"{text}\" is not a duration like \"10s\" or \"1m30s\": {e}"),
            );
            None
        }
    }
}

pub(crate) fn socket_addr(text: &str, path: &str, errors: &mut Errors) -> Option<SocketAddr> {
    match text.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            errors.push(
                path,
                format!(
                    "\"{text}\" is not an address:port like \"127.0.0.1:8443\" or \"[::]:8443\""
                ),
            );
            None
        }
    }
}

/// Parses `host:port`, `[v6]:port`, or a bare host when the kind has a default port.
pub(crate) fn host_port(
    text: &str,
    default_port: Option<u16>,
    path: &str,
    errors: &mut Errors,
) -> Option<HostPort> {
    let parsed = split_host_port(text).and_then(|(host_text, port_text)| {
        let port = match port_text {
            Some(p) => parse_port(p)?,
            None => default_port.ok_or_else(|| format!("\"{text}\" needs a port (host:port)"))?,
        };
        Ok(HostPort {
            host: parse_host(host_text)?,
            port,
        })
    });
    match parsed {
        Ok(hp) => Some(hp),
        Err(msg) => {
            errors.push(path, msg);
            None
        }
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    // `u16::from_str` would also take "+80".
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<u16>().ok())
        .flatten()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("\"{text}\" is not a port (1-65535)"))
}

/// Splits `host:port`; a bracketed host must be an IPv6 address (returned without brackets).
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("\"{text}\": missing ] after IPv6 address"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "\"{text}\": only an IPv6 address goes between [ and ]"
            ));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("\"{text}\": expected :port after ]")),
            },
        };
    }
    match text.matches(':').count() {
        0 => Ok((text, None)),
        1 => {
            let (h, p) = text.split_once(':').unwrap_or((text, ""));
            Ok((h, Some(p)))
        }
        // A bare IPv6 address: no port can be told apart, so none is taken.
        _ => Ok((text, None)),
    }
}

/// A host without a port (`icmp`): a name, an IP, or a bracketed IPv6 address.
pub(crate) fn host(text: &str, path: &str, errors: &mut Errors) -> Option<Host> {
    let parsed = match split_host_port(text) {
        Ok((host, None)) => parse_host(host),
        Ok((_, Some(_))) => Err(format!("\"{text}\": give a host without a port")),
        Err(msg) => Err(msg),
    };
    match parsed {
        Ok(h) => Some(h),
        Err(msg) => {
            errors.push(path, msg);
            None
        }
    }
}

fn parse_host(text: &str) -> Result<Host, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    check_hostname(text.strip_suffix('.').unwrap_or(text))?;
    Ok(Host::Name(text.to_string()))
}

/// RFC 1123 host name: dot-separated labels of letters, digits and hyphens (and `_`, used
/// in SRV names). An all-numeric last label is refused: "10.0.0.300" is a mistyped
/// address, not a name (no top-level domain is numeric).
fn check_hostname(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    if valid {
        Ok(())
    } else {
        Err(format!("\"{name}\" is not a valid host name or IP address"))
    }
}

/// Names of appliances and checks: they become metric labels and URL path segments.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "\"{name}\" must be 1-64 characters of letters, digits, '-', '_' and '.'"
        ))
    }
}

pub(crate) fn check_interface_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_INTERFACE_NAME
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "\"{name}\" is not a valid interface name (1-15 characters, no '/', ':' or spaces)"
        ))
    }
}

/// Parses a SAP route string of `/H/host/S/service` hops (passwords, `/W/`, go in
/// `route_password` instead, so they stay out of logs and the API).
fn sap_route(text: &str) -> Result<Vec<SapRouteHop>, String> {
    let parts: Vec<&str> = text.split('/').collect();
    // Checked first, wherever it is: the other messages quote the route, password included.
    if parts.iter().skip(1).any(|p| p.eq_ignore_ascii_case("W")) {
        return Err("passwords (/W/) go in route_password or route_password_file".into());
    }
    if parts.first() != Some(&"") || parts.len() < 5 {
        return Err(format!(
            "\"{text}\" is not a SAP route string like \"/H/sapgw01/S/3300\""
        ));
    }
    let mut hops = Vec::new();
    let mut rest = &parts[1..];
    while !rest.is_empty() {
        match rest {
            ["H", host, "S", service, tail @ ..] => {
                check_hostname(host)
                    .or_else(|e| host.parse::<IpAddr>().map(|_| ()).map_err(|_| e))?;
                if service.is_empty()
                    || service.len() > 32
                    || !service.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    return Err(format!("\"{service}\" is not a port or SAP service name"));
                }
                hops.push(SapRouteHop {
                    host: host.to_string(),
                    service: service.to_string(),
                });
                rest = tail;
            }
            _ => return Err(format!("\"{text}\": expected /H/<host>/S/<service> hops")),
        }
    }
    if hops.len() > 16 {
        return Err("at most 16 hops".into());
    }
    Ok(hops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn common_and_kind_keys_together_are_exactly_the_raw_check_fields() {
        let mut listed: BTreeSet<&str> = COMMON_CHECK_KEYS.iter().copied().collect();
        for kind in CHECK_KINDS {
            listed.extend(keys_of_kind(kind));
        }
        let fields: BTreeSet<&str> = keys_of::<RawCheck>().iter().copied().collect();
        assert_eq!(listed, fields);
    }

    #[test]
    fn keys_of_reads_the_struct_fields() {
        assert_eq!(keys_of::<RawAppliance>(), ["name", "state_dir"]);
        assert_eq!(
            keys_of::<RawAdmin>(),
            [
                "listen",
                "cert_file",
                "key_file",
                "session_idle",
                "session_lifetime"
            ]
        );
        assert_eq!(keys_of::<RawMetrics>(), ["listen"]);
    }

    #[test]
    fn key_path_quotes_keys_that_are_not_bare() {
        assert_eq!(key_path("checks[0]", "bogus"), "checks[0].bogus");
        assert_eq!(key_path("", "alerts"), "alerts");
        assert_eq!(
            key_path("checks[1]", "two words"),
            "checks[1].\"two words\""
        );
        assert_eq!(key_path("admin", "a.b"), "admin.\"a.b\"");
    }

    #[test]
    fn syntax_error_gives_line_and_column_on_one_line() {
        let text = "[appliance]\nname = \"a\"\nlisten = = 3\n";
        let e = text.parse::<toml::Table>().unwrap_err();
        let message = toml_syntax_error(text, e.message(), e.span());
        assert!(
            message.starts_with("not valid TOML at line 3, column 10: "),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn syntax_error_columns_count_characters_and_odd_spans_do_not_panic() {
        let text = "[appliance]\nname = \"Bäckerei\" x\n";
        let e = text.parse::<toml::Table>().unwrap_err();
        let message = toml_syntax_error(text, e.message(), e.span());
        assert!(
            message.starts_with("not valid TOML at line 2, column 19: "),
            "{message}"
        );
        // Inside the 'ä' (bytes 21..23), and past the end.
        assert_eq!(
            toml_syntax_error(text, "oops", Some(22..23)),
            "not valid TOML: oops"
        );
        assert_eq!(
            toml_syntax_error(text, "oops\n", Some(999..999)),
            "not valid TOML at line 3, column 1: oops"
        );
    }

    #[test]
    fn listeners_collide_on_same_port_and_overlapping_address() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        for (a, b, collide) in [
            ("127.0.0.1:9000", "127.0.0.1:9000", true),
            ("0.0.0.0:9000", "127.0.0.1:9000", true),
            ("127.0.0.1:9000", "0.0.0.0:9000", true),
            ("[::]:9000", "127.0.0.1:9000", true),
            ("[::]:9000", "[::1]:9000", true),
            ("0.0.0.0:9000", "[::1]:9000", false),
            ("127.0.0.1:9000", "127.0.0.2:9000", false),
            ("127.0.0.1:9000", "127.0.0.1:9001", false),
            ("127.0.0.1:0", "127.0.0.1:0", false),
        ] {
            assert_eq!(listeners_collide(addr(a), addr(b)), collide, "{a} vs {b}");
        }
    }

    #[test]
    fn split_host_port_cases() {
        assert_eq!(split_host_port("h:80"), Ok(("h", Some("80"))));
        assert_eq!(split_host_port("h"), Ok(("h", None)));
        assert_eq!(split_host_port("[::1]:80"), Ok(("::1", Some("80"))));
        assert_eq!(split_host_port("[::1]"), Ok(("::1", None)));
        assert_eq!(split_host_port("2001:db8::1"), Ok(("2001:db8::1", None)));
        assert!(split_host_port("[::1").unwrap_err().contains("missing ]"));
        assert!(split_host_port("[::1]80")
            .unwrap_err()
            .contains("expected :port after ]"));
        assert!(split_host_port("[db.corp.example]:80")
            .unwrap_err()
            .contains("only an IPv6 address"));
    }

    #[test]
    fn parse_port_accepts_only_plain_digits_in_range() {
        assert_eq!(parse_port("1"), Ok(1));
        assert_eq!(parse_port("65535"), Ok(65535));
        for bad in ["0", "65536", "+80", "-1", "", "80a", " 80"] {
            assert!(parse_port(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hostnames() {
        for good in [
            "db",
            "ebs-db.corp.example",
            "_sip._udp.example.net",
            "a1.b2",
        ] {
            assert_eq!(check_hostname(good), Ok(()), "{good}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        let long_name = ["abcdefghi"; 26].join(".");
        for bad in [
            "",
            "-db.example",
            "db-.example",
            "db..example",
            "db corp",
            "db/corp",
            "10.0.0.300",
            "1.2.3",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(check_hostname(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn default_path_goes_before_the_query_and_never_replaces_a_path() {
        let p = HTTP_PRESET_SAP_ICM_PATH;
        for (url, expected) in [
            ("http://h:8000", "http://h:8000/sap/public/icman/ping"),
            ("https://h/", "https://h/sap/public/icman/ping"),
            ("http://h?x=1", "http://h/sap/public/icman/ping?x=1"),
            ("http://h/?x=1", "http://h/sap/public/icman/ping?x=1"),
            ("http://h/own/ping", "http://h/own/ping"),
            (
                "http://[2001:db8::1]:8000",
                "http://[2001:db8::1]:8000/sap/public/icman/ping",
            ),
        ] {
            assert_eq!(with_default_path(url, p), expected, "{url}");
        }
    }

    #[test]
    fn sap_route_parses_hops() {
        let hops = sap_route("/H/saprouter2.corp.example/S/3299/H/10.20.0.5/S/sapgw00").unwrap();
        assert_eq!(
            hops,
            vec![
                SapRouteHop {
                    host: "saprouter2.corp.example".into(),
                    service: "3299".into()
                },
                SapRouteHop {
                    host: "10.20.0.5".into(),
                    service: "sapgw00".into()
                },
            ]
        );
    }

    #[test]
    fn sap_route_rejections() {
        let seventeen = "/H/h/S/1".repeat(17);
        for (route, fragment) in [
            (
                "/H/h/S/3300/W/secret",
                "passwords (/W/) go in route_password",
            ),
            ("sapgw01:3300", "is not a SAP route string"),
            ("/H/h/S", "is not a SAP route string"),
            ("/H/h/S/3300/X/y", "expected /H/<host>/S/<service> hops"),
            ("/H/h/S/3300/", "expected /H/<host>/S/<service> hops"),
            ("/H/h/S/33-00", "is not a port or SAP service name"),
            ("/H/bad host/S/3300", "is not a valid host name"),
            (seventeen.as_str(), "at most 16 hops"),
        ] {
            let err = sap_route(route).unwrap_err();
            assert!(err.contains(fragment), "{route}: {err}");
            assert!(!err.contains("secret"), "password leaked: {err}");
        }
    }
}
