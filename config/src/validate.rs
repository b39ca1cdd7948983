//! From [`raw`](crate::raw) to [`model`](crate::model), collecting every error with its path.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::model::*;
use crate::raw::{keys_of_kind, RawAdmin, RawAppliance, RawCheck, RawMetrics};
use crate::{FieldError, Secret};

const TOP_LEVEL_KEYS: &[&str] = &["appliance", "admin", "metrics", "checks"];
const DEFAULT_STATE_DIR: &str = "/var/lib/siteward";
const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:8443";
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
const HTTP_PRESET_SAP_ICM_PATH: &str = "/sap/public/icman/ping";

/// Collects errors as validation walks the file.
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
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
            errors.push("", format!("not valid TOML: {}", e.to_string().trim_end()));
            return Err(errors.0);
        }
    };

    for key in table.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            errors.push(
                key.as_str(),
                format!(
                    "unknown section (expected one of {})",
                    TOP_LEVEL_KEYS.join(", ")
                ),
            );
        }
    }

    let raw_appliance: RawAppliance = section(&table, "appliance", &mut errors).unwrap_or_default();
    let raw_admin: RawAdmin = section(&table, "admin", &mut errors).unwrap_or_default();
    let raw_metrics: RawMetrics = section(&table, "metrics", &mut errors).unwrap_or_default();

    let appliance = appliance(raw_appliance, base_dir, &mut errors);
    let admin = admin(raw_admin, base_dir, &mut errors);
    let metrics = metrics(raw_metrics, &mut errors);
    if let (Some(admin), Some(metrics)) = (&admin, &metrics) {
        if admin.listen == metrics.listen && admin.listen.port() != 0 {
            errors.push(
                "metrics.listen",
                format!("same address as admin.listen ({})", admin.listen),
            );
        }
    }

    let checks = checks(&table, base_dir, &mut errors);

    match (appliance, admin, metrics) {
        (Some(appliance), Some(admin), Some(metrics)) if errors.0.is_empty() => Ok(Config {
            appliance,
            admin,
            metrics,
            checks,
        }),
        _ => Err(errors.0),
    }
}

/// Deserializes an optional top-level table, reporting type and unknown-key errors with paths.
fn section<T: DeserializeOwned>(table: &toml::Table, key: &str, errors: &mut Errors) -> Option<T> {
    let value = table.get(key)?;
    deserialize_at(value.clone(), key, errors)
}

fn deserialize_at<T: DeserializeOwned>(
    value: toml::Value,
    path: &str,
    errors: &mut Errors,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = if inner == "." || inner.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{inner}")
            };
            errors.push(full, e.into_inner().message().trim_end().to_string());
            None
        }
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
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let cert_file = existing_file(base_dir, &cert, "admin.cert_file", errors);
            let key_file = existing_file(base_dir, &key, "admin.key_file", errors);
            match (cert_file, key_file) {
                (Some(cert_file), Some(key_file)) => Some(AdminTls {
                    cert_file,
                    key_file,
                }),
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
    Some(Admin {
        listen: listen?,
        tls,
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
    let Some(value) = table.get("checks") else {
        return Vec::new();
    };
    let Some(array) = value.as_array() else {
        errors.push("checks", "must be an array of tables ([[checks]])");
        return Vec::new();
    };
    if array.len() > MAX_CHECKS {
        errors.push(
            "checks",
            format!("{} checks; at most {MAX_CHECKS} are supported", array.len()),
        );
        return Vec::new();
    }
    let mut checks = Vec::with_capacity(array.len());
    let mut seen = std::collections::HashMap::new();
    for (i, value) in array.iter().enumerate() {
        let path = format!("checks[{i}]");
        let Some(raw) = deserialize_at::<RawCheck>(value.clone(), &path, errors) else {
            continue;
        };
        if let Some(first) = seen.insert(raw.name.clone(), i) {
            errors.push(
                format!("{path}.name"),
                format!(
                    "duplicate check name \"{}\" (first used by checks[{first}])",
                    raw.name
                ),
            );
        }
        if let Some(check) = check(raw, &path, base_dir, errors) {
            checks.push(check);
        }
    }
    checks
}

fn check(raw: RawCheck, path: &str, base_dir: &Path, errors: &mut Errors) -> Option<Check> {
    let before = errors.0.len();
    let at = |field: &str| format!("{path}.{field}");

    if let Err(msg) = check_name(&raw.name) {
        errors.push(at("name"), msg);
    }
    if !CHECK_KINDS.contains(&raw.kind.as_str()) {
        errors.push(
            at("kind"),
            format!(
                "unknown kind \"{}\" (expected one of {})",
                raw.kind,
                CHECK_KINDS.join(", ")
            ),
        );
        return None;
    }
    let allowed = keys_of_kind(&raw.kind);
    for key in raw.kind_keys_set() {
        if !allowed.contains(&key) {
            errors.push(at(key), format!("not used by kind \"{}\"", raw.kind));
        }
    }

    let interval = raw
        .interval
        .as_deref()
        .map(|s| duration(s, &at("interval"), errors))
        .unwrap_or(Some(DEFAULT_INTERVAL));
    if let Some(interval) = interval {
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
            errors.push(at("interval"), "must be between 100ms and 24h");
        }
    }
    let timeout = match raw.timeout.as_deref() {
        Some(s) => duration(s, &at("timeout"), errors),
        // The default must stay below a short interval, so it shrinks with it.
        None => interval.map(|i| DEFAULT_TIMEOUT.min(i * 3 / 4)),
    };
    if let (Some(interval), Some(timeout)) = (interval, timeout) {
        if timeout.is_zero() {
            errors.push(at("timeout"), "must be greater than 0");
        } else if timeout >= interval {
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
    let source = raw
        .source
        .as_deref()
        .and_then(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                errors.push(at("source"), format!("\"{s}\" is not an IP address"));
                None
            }
        });
    if let Some(interface) = &raw.interface {
        if let Err(msg) = check_interface_name(interface) {
            errors.push(at("interface"), msg);
        }
    }

    let probe = probe(&raw, path, base_dir, errors);
    if let (Some(source), Some(probe)) = (source, &probe) {
        if let Some(IpAddr::V4(_) | IpAddr::V6(_)) = literal_target_ip(probe) {
            let target_ip = literal_target_ip(probe).unwrap_or(source);
            if target_ip.is_ipv4() != source.is_ipv4() {
                errors.push(at("source"), "address family differs from the target's");
            }
        }
    }

    if errors.0.len() != before {
        return None;
    }
    Some(Check {
        name: raw.name,
        interval: interval?,
        timeout: timeout?,
        rise,
        fall,
        placement: Placement {
            source,
            interface: raw.interface,
        },
        probe: probe?,
    })
}

/// The target's IP if it is written as a literal, for the source/target family check.
fn literal_target_ip(probe: &Probe) -> Option<IpAddr> {
    let host = match probe {
        Probe::Tcp(p) => &p.target.host,
        Probe::Tls(p) => &p.target.host,
        Probe::Http(p) => &p.connect_to.as_ref()?.host,
        Probe::Dns(p) => &p.server.host,
        Probe::Icmp(p) => &p.target,
        Probe::OracleTns(p) => &p.target.host,
        Probe::SapNi(p) => &p.target.host,
        Probe::Saprouter(p) => &p.router.host,
        Probe::AsteriskAmi(p) => &p.target.host,
        Probe::SipOptions(p) => &p.target.host,
    };
    match host {
        Host::Ip(ip) => Some(*ip),
        Host::Name(_) => None,
    }
}

fn probe(raw: &RawCheck, path: &str, base_dir: &Path, errors: &mut Errors) -> Option<Probe> {
    let at = |field: &str| format!("{path}.{field}");
    let target_path = at("target");
    // The target with the kind's default port, or an error if the kind has none.
    let target = |default_port: Option<u16>, errors: &mut Errors| -> Option<HostPort> {
        match raw.target.as_deref() {
            None => {
                errors.push(
                    &target_path,
                    format!("missing: kind \"{}\" needs a target", raw.kind),
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

    Some(match raw.kind.as_str() {
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
                Some(q) => match check_hostname(q.trim_end_matches('.')) {
                    Ok(()) => Some(q.to_string()),
                    Err(msg) => {
                        errors.push(at("query"), msg);
                        None
                    }
                },
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
                Some(u) if u.is_empty() || u.len() > 80 || u.contains(['\r', '\n']) => {
                    errors.push(
                        at("username"),
                        "must be 1-80 characters without line breaks",
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
                Some(Some(s)) if s.expose().contains(['\r', '\n']) => {
                    errors.push(at("secret"), "must not contain line breaks");
                    None
                }
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
                if !(lower.starts_with("sip:") || lower.starts_with("sips:"))
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
            // A preset supplies the path when the URL names only the server.
            Ok(has_path) => Some(match preset_path {
                Some(p) if !has_path => format!("{}{p}", url.trim_end_matches('/')),
                _ => url.to_string(),
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
        None => None,
        Some(t) => Some(host_port(t, None, &at("target"), errors)?),
    };
    if let Some(body) = &raw.body_contains {
        if body.is_empty() || body.len() > 1024 {
            errors.push(at("body_contains"), "must be 1-1024 bytes");
        }
    }
    Some(Probe::Http(HttpProbe {
        url: url?,
        connect_to,
        expect_status,
        body_contains: raw.body_contains.clone(),
        trust: trust?,
    }))
}

/// Checks an `http://` or `https://` URL with a valid host; returns whether it has a path.
fn http_url(url: &str) -> Result<bool, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("\"{url}\" must start with http:// or https://"))?;
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be at most 2048 characters without spaces".into());
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err("credentials in the URL are not supported".into());
    }
    let mut scratch = Errors(Vec::new());
    if host_port(authority, Some(80), "", &mut scratch).is_none() {
        return Err(format!("\"{authority}\" is not a valid host[:port]"));
    }
    Ok(!(path.is_empty() || path == "/"))
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

/// Inline secret or secret file (exactly one or none). `Some(None)` = neither given.
fn secret(
    inline: Option<&str>,
    file: Option<&Path>,
    base_dir: &Path,
    path: &str,
    errors: &mut Errors,
) -> Option<Option<Secret>> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            errors.push(path, format!("set either {path} or {path}_file, not both"));
            None
        }
        (Some(value), None) => Some(Some(Secret::new(value))),
        (None, Some(file)) => {
            let full = resolve_path(base_dir, file);
            match std::fs::read_to_string(&full) {
                // Files written by `echo` end in a newline that is not part of the secret.
                Ok(text) => Some(Some(Secret::new(text.trim_end_matches(['\r', '\n'])))),
                Err(e) => {
                    errors.push(
                        format!("{path}_file"),
                        format!("cannot read secret file {}: {e}", full.display()),
                    );
                    None
                }
            }
        }
        (None, None) => Some(None),
    }
}

fn resolve_path(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

fn existing_file(
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

fn duration(text: &str, path: &str, errors: &mut Errors) -> Option<Duration> {
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

fn socket_addr(text: &str, path: &str, errors: &mut Errors) -> Option<SocketAddr> {
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
fn host_port(
    text: &str,
    default_port: Option<u16>,
    path: &str,
    errors: &mut Errors,
) -> Option<HostPort> {
    let parsed = split_host_port(text).and_then(|(host_text, port_text)| {
        let port = match port_text {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("\"{p}\" is not a port (1-65535)"))?,
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

fn split_host_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("\"{text}\": missing ] after IPv6 address"))?;
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

fn host(text: &str, path: &str, errors: &mut Errors) -> Option<Host> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    match parse_host(bare) {
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
    check_hostname(text.trim_end_matches('.'))?;
    Ok(Host::Name(text.to_string()))
}

/// RFC 1123 host name: dot-separated labels of letters, digits and hyphens.
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
        });
    if valid {
        Ok(())
    } else {
        Err(format!("\"{name}\" is not a valid host name or IP address"))
    }
}

/// Names of appliances and checks: they become metric labels and URL path segments.
fn check_name(name: &str) -> Result<(), String> {
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

fn check_interface_name(name: &str) -> Result<(), String> {
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
            ["W", ..] => {
                return Err("passwords (/W/) go in route_password or route_password_file".into())
            }
            _ => return Err(format!("\"{text}\": expected /H/<host>/S/<service> hops")),
        }
    }
    if hops.len() > 16 {
        return Err("at most 16 hops".into());
    }
    Ok(hops)
}
