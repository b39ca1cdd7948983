//! `[[connectors]]` (sources of events for the spool) and `[[relays]]` (TCP ports forwarded
//! to services behind the box), and the check that no two listeners of the file collide.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::model::{
    AmiSource, CertAndKey, Connector, FileDropSource, FileFormat, Relay, Source, SyslogSource,
    WebhookHmac, WebhookSource, WhenFull,
};
use crate::raw::{connector_keys_of_kind, RawConnector, RawRelay, CONNECTOR_KINDS};
use crate::tunnels::{cidr, unique_entries, within_limit};
use crate::uplink::{bounded_duration, integer};
use crate::validate::{
    array_of_tables, check_name, decode_table, existing_file, host_port, keys_of, kind,
    kind_keys_hint, listeners_collide, placement, required, resolve_path, secret, socket_addr,
    Errors, FirstUse,
};

const MAX_CONNECTORS: usize = 256;
const MAX_RELAYS: usize = 256;
const COMMON_CONNECTOR_KEYS: &[&str] = &["name", "kind", "when_full"];
const DEFAULT_MAX_BODY: i64 = 1 << 20;
const MAX_BODY: i64 = 64 << 20;
/// GitHub's header; many applications can already sign this way.
const DEFAULT_HMAC_HEADER: &str = "x-hub-signature-256";
const AMI_PORT: u16 = 5038;
const DEFAULT_RECONNECT_MAX: &str = "60s";
const DEFAULT_SETTLE: &str = "5s";
const DEFAULT_MAX_FILE: i64 = 256 << 20;
const MAX_FILE: i64 = 4 << 30;
/// rsyslog's default maximum is 8 KiB; structured data from applications runs longer.
const DEFAULT_MAX_MESSAGE: i64 = 64 << 10;
/// RFC 5424 §6.1: every receiver must accept 480 octets.
const MIN_MAX_MESSAGE: i64 = 480;
const MAX_MAX_MESSAGE: i64 = 1 << 20;
const DEFAULT_MAX_CONNECTIONS: i64 = 1024;
const MAX_MAX_CONNECTIONS: i64 = 100_000;
const DEFAULT_IDLE_TIMEOUT: &str = "1h";
const MAX_EVENT_FILTERS: usize = 256;
const MAX_ALLOW: usize = 1_000;

pub(crate) fn connectors(
    table: &toml::Table,
    base_dir: &Path,
    errors: &mut Errors,
) -> Vec<Connector> {
    let Some(array) = table.get("connectors").and_then(|value| {
        array_of_tables(
            value,
            "connectors",
            "connectors",
            MAX_CONNECTORS,
            "connectors",
            errors,
        )
    }) else {
        return Vec::new();
    };
    let mut connectors = Vec::with_capacity(array.len());
    let mut names = FirstUse::new();
    let mut directories = FirstUse::new();
    for (i, value) in array.iter().enumerate() {
        let path = format!("connectors[{i}]");
        if let Some(name) = value.get("name").and_then(toml::Value::as_str) {
            let what = format!("connector name \"{name}\"");
            names.note(name, &path, format!("{path}.name"), what, errors);
        }
        let Some(raw) = decode_table::<RawConnector>(value, &path, &connector_keys_hint, errors)
        else {
            continue;
        };
        if let Some(connector) = connector(raw, &path, base_dir, errors) {
            // Two watchers of one directory would race for each file.
            if let Source::FileDrop(drop) = &connector.source {
                let what = format!("directory {}", drop.directory.display());
                let at = format!("{path}.directory");
                directories.note(drop.directory.clone(), &path, at, what, errors);
            }
            connectors.push(connector);
        }
    }
    connectors
}

fn connector_keys_hint(table: &toml::Table) -> String {
    let keys = (COMMON_CONNECTOR_KEYS, keys_of::<RawConnector>());
    kind_keys_hint(table, CONNECTOR_KINDS, keys, connector_keys_of_kind)
}

fn connector(
    raw: RawConnector,
    path: &str,
    base_dir: &Path,
    errors: &mut Errors,
) -> Option<Connector> {
    let before = errors.0.len();
    let at = |field: &str| format!("{path}.{field}");
    required(
        raw.name.as_deref(),
        at("name"),
        "every connector needs a unique name (it is sent with each of its events)",
        check_name,
        errors,
    );
    let kind = kind(raw.kind.as_deref(), CONNECTOR_KINDS, at("kind"), errors);
    if let Some(kind) = kind {
        let allowed = connector_keys_of_kind(kind);
        for key in raw.kind_keys_set() {
            if !allowed.contains(&key) {
                errors.push(at(key), format!("not used by kind \"{kind}\""));
            }
        }
    }
    let when_full = match raw.when_full.as_deref() {
        None | Some("block") => Some(WhenFull::Block),
        Some("drop_oldest") => Some(WhenFull::DropOldest),
        Some(other) => {
            errors.push(
                at("when_full"),
                format!("\"{other}\" is not one of block, drop_oldest"),
            );
            None
        }
    };
    let source = match kind {
        Some("webhook") => webhook(&raw, &at, base_dir, errors).map(Source::Webhook),
        Some("asterisk-ami") => ami(&raw, &at, base_dir, errors).map(Source::AsteriskAmi),
        Some("file-drop") => file_drop(&raw, &at, base_dir, errors).map(Source::FileDrop),
        Some("syslog") => syslog(&raw, &at, errors).map(Source::Syslog),
        _ => None,
    };
    if errors.0.len() != before {
        return None;
    }
    Some(Connector {
        name: raw.name?,
        when_full: when_full?,
        source: source?,
    })
}

fn listen(value: Option<&str>, path: String, errors: &mut Errors) -> Option<SocketAddr> {
    match value {
        None => {
            errors.push(path, "missing: the address:port to listen on");
            None
        }
        Some(text) => socket_addr(text, &path, errors),
    }
}

fn webhook(
    raw: &RawConnector,
    at: &dyn Fn(&str) -> String,
    base_dir: &Path,
    errors: &mut Errors,
) -> Option<WebhookSource> {
    let listen = listen(raw.listen.as_deref(), at("listen"), errors);
    let path = raw.path.clone().unwrap_or_else(|| "/".to_string());
    let path_ok = match url_path(&path) {
        Ok(()) => true,
        Err(why) => {
            errors.push(at("path"), why);
            false
        }
    };
    let max_body_bytes = integer(
        raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
        (1, MAX_BODY),
        &at("max_body_bytes"),
        errors,
    );
    let secret = secret(
        raw.hmac_secret.as_deref(),
        raw.hmac_secret_file.as_deref(),
        base_dir,
        &at("hmac_secret"),
        errors,
    );
    let header = raw
        .hmac_header
        .as_deref()
        .unwrap_or(DEFAULT_HMAC_HEADER)
        .to_ascii_lowercase();
    let header_ok = match header_name(&header) {
        Ok(()) => true,
        Err(why) => {
            errors.push(at("hmac_header"), why);
            false
        }
    };
    if raw.hmac_header.is_some() && matches!(secret, Some(None)) {
        errors.push(
            at("hmac_header"),
            "set only with hmac_secret (or hmac_secret_file): without a secret nothing is signed",
        );
    }
    let tls = cert_and_key(raw, at, base_dir, errors);
    let hmac = secret?.map(|secret| WebhookHmac { secret, header });
    (path_ok && header_ok).then_some(())?;
    Some(WebhookSource {
        listen: listen?,
        path,
        max_body_bytes: usize::try_from(max_body_bytes?).ok()?,
        hmac,
        tls: tls?,
    })
}

/// An absolute URL path without query or fragment, of characters a URL carries as they are.
fn url_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("\"{path}\" must start with /"));
    }
    if path.len() > 1024 {
        return Err("longer than 1024 characters".into());
    }
    let bad = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/-._~!$&'()*+,;=:@%".contains(*c)));
    match bad {
        Some(c) => Err(format!(
            "\"{path}\" contains {c:?}: a path has no query, fragment, spaces or non-ASCII"
        )),
        None => Ok(()),
    }
}

/// An HTTP header name (RFC 9110 token).
fn header_name(name: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || name.len() > 64 || !name.chars().all(token) {
        return Err(format!(
            "\"{name}\" is not an HTTP header name (1-64 letters, digits and -)"
        ));
    }
    Ok(())
}

/// `cert_file` and `key_file`, both or neither.
fn cert_and_key(
    raw: &RawConnector,
    at: &dyn Fn(&str) -> String,
    base_dir: &Path,
    errors: &mut Errors,
) -> Option<Option<CertAndKey>> {
    match (&raw.cert_file, &raw.key_file) {
        (None, None) => Some(None),
        (Some(cert), Some(key)) => {
            let cert_file = existing_file(base_dir, cert, &at("cert_file"), errors);
            let key_file = existing_file(base_dir, key, &at("key_file"), errors);
            Some(Some(CertAndKey {
                cert_file: cert_file?,
                key_file: key_file?,
            }))
        }
        (Some(_), None) => {
            errors.push(
                at("key_file"),
                "missing: cert_file and key_file go together",
            );
            None
        }
        (None, Some(_)) => {
            errors.push(
                at("cert_file"),
                "missing: cert_file and key_file go together",
            );
            None
        }
    }
}

fn ami(
    raw: &RawConnector,
    at: &dyn Fn(&str) -> String,
    base_dir: &Path,
    errors: &mut Errors,
) -> Option<AmiSource> {
    let target = match raw.target.as_deref() {
        None => {
            errors.push(at("target"), "missing: the PBX's AMI address, host[:port]");
            None
        }
        Some(text) => host_port(text, Some(AMI_PORT), &at("target"), errors),
    };
    let username = match raw.username.as_deref() {
        None => {
            errors.push(at("username"), "missing: the AMI user (manager.conf)");
            None
        }
        Some(name) if name.is_empty() || name.chars().any(char::is_control) => {
            errors.push(
                at("username"),
                "must be non-empty, without control characters",
            );
            None
        }
        Some(name) => Some(name.to_string()),
    };
    let secret = match secret(
        raw.secret.as_deref(),
        raw.secret_file.as_deref(),
        base_dir,
        &at("secret"),
        errors,
    ) {
        Some(None) => {
            errors.push(
                at("secret"),
                "missing: the AMI user's secret (or secret_file)",
            );
            None
        }
        other => other.flatten(),
    };
    let events_path = at("events");
    let events = match &raw.events {
        None => Some(Vec::new()),
        Some(list)
            if within_limit(
                list.len(),
                (MAX_EVENT_FILTERS, "event names", ""),
                &events_path,
                errors,
            ) =>
        {
            unique_entries(list, &events_path, errors, |text, at, errors| {
                let valid = !text.is_empty()
                    && text.len() <= 64
                    && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    errors.push(
                        at,
                        format!("\"{text}\" is not an AMI event name like \"Hangup\""),
                    );
                    return None;
                }
                Some((
                    text.to_string(),
                    format!("event \"{text}\""),
                    text.to_string(),
                ))
            })
        }
        Some(_) => None,
    };
    let reconnect_max = bounded_duration(
        raw.reconnect_max
            .as_deref()
            .unwrap_or(DEFAULT_RECONNECT_MAX),
        (Duration::from_secs(1), Duration::from_secs(3600)),
        &at("reconnect_max"),
        errors,
    );
    let placement = placement(raw.source.as_deref(), raw.interface.clone(), at, errors);
    Some(AmiSource {
        target: target?,
        username: username?,
        secret: secret?,
        events: events?,
        reconnect_max: reconnect_max?,
        placement: placement?,
    })
}

fn file_drop(
    raw: &RawConnector,
    at: &dyn Fn(&str) -> String,
    base_dir: &Path,
    errors: &mut Errors,
) -> Option<FileDropSource> {
    let directory = match &raw.directory {
        None => {
            errors.push(
                at("directory"),
                "missing: the directory files are dropped into",
            );
            None
        }
        Some(dir) => {
            let full = resolve_path(base_dir, dir);
            match std::fs::metadata(&full) {
                Ok(meta) if meta.is_dir() => Some(full),
                Ok(_) => {
                    errors.push(
                        at("directory"),
                        format!("{} is not a directory", full.display()),
                    );
                    None
                }
                Err(e) => {
                    errors.push(
                        at("directory"),
                        format!("cannot read {}: {e}", full.display()),
                    );
                    None
                }
            }
        }
    };
    let settle = bounded_duration(
        raw.settle.as_deref().unwrap_or(DEFAULT_SETTLE),
        (Duration::from_millis(100), Duration::from_secs(3600)),
        &at("settle"),
        errors,
    );
    let format = match raw.format.as_deref() {
        None | Some("whole") => Some(FileFormat::Whole),
        Some("csv") => Some(FileFormat::Csv),
        Some("json-lines") => Some(FileFormat::JsonLines),
        Some(other) => {
            errors.push(
                at("format"),
                format!("\"{other}\" is not one of whole, csv, json-lines"),
            );
            None
        }
    };
    let max_file_bytes = integer(
        raw.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE),
        (1, MAX_FILE),
        &at("max_file_bytes"),
        errors,
    );
    Some(FileDropSource {
        directory: directory?,
        settle: settle?,
        format: format?,
        max_file_bytes: u64::try_from(max_file_bytes?).ok()?,
    })
}

/// An optional listen address: `Some(None)` when not set, `None` when wrong (reported).
fn optional_listen(
    value: Option<&str>,
    path: &str,
    errors: &mut Errors,
) -> Option<Option<SocketAddr>> {
    match value {
        None => Some(None),
        Some(text) => socket_addr(text, path, errors).map(Some),
    }
}

fn syslog(
    raw: &RawConnector,
    at: &dyn Fn(&str) -> String,
    errors: &mut Errors,
) -> Option<SyslogSource> {
    let udp = optional_listen(raw.udp.as_deref(), &at("udp"), errors);
    let tcp = optional_listen(raw.tcp.as_deref(), &at("tcp"), errors);
    if raw.udp.is_none() && raw.tcp.is_none() {
        errors.push(
            at("udp"),
            "missing: set udp and/or tcp, the address:port to listen on (514 is syslog's)",
        );
        return None;
    }
    let max_message_bytes = integer(
        raw.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE),
        (MIN_MAX_MESSAGE, MAX_MAX_MESSAGE),
        &at("max_message_bytes"),
        errors,
    );
    Some(SyslogSource {
        udp: udp?,
        tcp: tcp?,
        max_message_bytes: usize::try_from(max_message_bytes?).ok()?,
    })
}

pub(crate) fn relays(table: &toml::Table, errors: &mut Errors) -> Vec<Relay> {
    let Some(array) = table
        .get("relays")
        .and_then(|value| array_of_tables(value, "relays", "relays", MAX_RELAYS, "relays", errors))
    else {
        return Vec::new();
    };
    let mut relays = Vec::with_capacity(array.len());
    let mut names = FirstUse::new();
    for (i, value) in array.iter().enumerate() {
        let path = format!("relays[{i}]");
        if let Some(name) = value.get("name").and_then(toml::Value::as_str) {
            let what = format!("relay name \"{name}\"");
            names.note(name, &path, format!("{path}.name"), what, errors);
        }
        let hint =
            |_: &toml::Table| format!("expected one of {}", keys_of::<RawRelay>().join(", "));
        let Some(raw) = decode_table::<RawRelay>(value, &path, &hint, errors) else {
            continue;
        };
        if let Some(relay) = relay(raw, &path, errors) {
            relays.push(relay);
        }
    }
    relays
}

fn relay(raw: RawRelay, path: &str, errors: &mut Errors) -> Option<Relay> {
    let before = errors.0.len();
    let at = |field: &str| format!("{path}.{field}");
    required(
        raw.name.as_deref(),
        at("name"),
        "every relay needs a unique name",
        check_name,
        errors,
    );
    let listen = listen(raw.listen.as_deref(), at("listen"), errors);
    let target = match raw.target.as_deref() {
        None => {
            errors.push(
                at("target"),
                "missing: the service to forward to, host:port",
            );
            None
        }
        Some(text) => host_port(text, None, &at("target"), errors),
    };
    let allow_path = at("allow");
    let allow = match &raw.allow {
        None => {
            errors.push(
                &allow_path,
                "missing: the source networks allowed to connect, e.g. [\"10.20.0.0/16\"] \
                 ([\"0.0.0.0/0\", \"::/0\"] allows anyone)",
            );
            None
        }
        Some(list) if list.is_empty() => {
            errors.push(&allow_path, "is empty: nobody could connect");
            None
        }
        Some(list)
            if within_limit(list.len(), (MAX_ALLOW, "networks", ""), &allow_path, errors) =>
        {
            unique_entries(list, &allow_path, errors, |text, at, errors| {
                match cidr(text) {
                    Ok(net) => {
                        let net = net.trunc();
                        Some((net, format!("network {net}"), net))
                    }
                    Err(why) => {
                        errors.push(at, why);
                        None
                    }
                }
            })
        }
        Some(_) => None,
    };
    let max_connections = integer(
        raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        (1, MAX_MAX_CONNECTIONS),
        &at("max_connections"),
        errors,
    );
    let idle_timeout = bounded_duration(
        raw.idle_timeout.as_deref().unwrap_or(DEFAULT_IDLE_TIMEOUT),
        (Duration::from_secs(1), Duration::from_secs(7 * 24 * 3600)),
        &at("idle_timeout"),
        errors,
    );
    let placement = placement(raw.source.as_deref(), raw.interface.clone(), &at, errors);
    if let (Some(source), Some(crate::model::Host::Ip(target))) = (
        placement.as_ref().and_then(|p| p.source),
        target.as_ref().map(|t| &t.host),
    ) {
        if source.is_ipv4() != target.is_ipv4() {
            errors.push(
                at("source"),
                format!("{source} and the target {target} are of different address families"),
            );
        }
    }
    if errors.0.len() != before {
        return None;
    }
    Some(Relay {
        name: raw.name?,
        listen: listen?,
        target: target?,
        allow: allow?,
        max_connections: usize::try_from(max_connections?).ok()?,
        idle_timeout: idle_timeout?,
        placement: placement?,
    })
}

/// A socket this configuration listens on, with the field that sets it.
pub(crate) struct Listener {
    pub(crate) addr: SocketAddr,
    pub(crate) udp: bool,
    pub(crate) path: String,
}

impl Listener {
    pub(crate) fn tcp(addr: SocketAddr, path: &str) -> Listener {
        Listener {
            addr,
            udp: false,
            path: path.to_string(),
        }
    }
}

/// The listeners of connectors and relays.
pub(crate) fn listeners(connectors: &[Connector], relays: &[Relay]) -> Vec<Listener> {
    let mut out = Vec::new();
    let mut add = |addr, udp, path: String| out.push(Listener { addr, udp, path });
    for (i, connector) in connectors.iter().enumerate() {
        match &connector.source {
            Source::Webhook(hook) => add(hook.listen, false, format!("connectors[{i}].listen")),
            Source::Syslog(syslog) => {
                if let Some(addr) = syslog.udp {
                    add(addr, true, format!("connectors[{i}].udp"));
                }
                if let Some(addr) = syslog.tcp {
                    add(addr, false, format!("connectors[{i}].tcp"));
                }
            }
            Source::AsteriskAmi(_) | Source::FileDrop(_) => {}
        }
    }
    for (i, relay) in relays.iter().enumerate() {
        add(relay.listen, false, format!("relays[{i}].listen"));
    }
    out
}

/// Reports every listener from index `from` on that collides with an earlier one (same
/// protocol); those before `from` were compared among themselves already.
pub(crate) fn report_collisions(listeners: &[Listener], from: usize, errors: &mut Errors) {
    for (j, later) in listeners.iter().enumerate().skip(from) {
        if let Some(first) = listeners[..j]
            .iter()
            .find(|first| first.udp == later.udp && listeners_collide(first.addr, later.addr))
        {
            errors.push(
                &later.path,
                format!(
                    "{} collides with {} ({}): both cannot listen on it",
                    later.addr, first.path, first.addr
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_paths() {
        assert!(url_path("/hooks/ebs").is_ok());
        assert!(url_path("/").is_ok());
        assert!(url_path("hooks").is_err());
        assert!(url_path("/a b").is_err());
        assert!(url_path("/a?b=c").is_err());
        assert!(url_path("/é").is_err());
    }

    #[test]
    fn header_names() {
        assert!(header_name("x-hub-signature-256").is_ok());
        assert!(header_name("").is_err());
        assert!(header_name("x signature").is_err());
        assert!(header_name("x:sig").is_err());
    }
}
