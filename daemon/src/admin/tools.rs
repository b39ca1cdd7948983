//! The web UI's Tools on the API: diagnostics from the box (ping, TCP port test, DNS
//! lookup, a one-shot run of any check kind), the live log view, and the WireGuard helpers
//! (a new key pair; the appliance's public key and a `[Peer]` snippet for the far end).
//! Every route sits behind the API's bearer token like the rest of `resources()`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ipnet::IpNet;
use serde_json::{json, Value};
use siteward_config::{Config, Host, TunnelKind, WgPublicKey, WgSecretKey};
use siteward_netstack::wireguard::keys;
use tracing::Level;

use super::api::{error, rfc3339, unix_rfc3339, Refusal};
use super::AdminState;
use crate::diagnostics::{
    check_dns_name, CheckRun, DiagnosticError, DnsLookup, DnsQuery, FieldProblems, Fields,
};
use crate::log_view::{LogLine, CAPACITY};

/// Largest request body a tool accepts (a check's keys fit in a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;
/// Longest wait of a log long-poll.
const MAX_LOG_WAIT: Duration = Duration::from_secs(25);
/// Lines of a log page unless `limit` says otherwise.
const DEFAULT_LOG_LIMIT: usize = 200;
/// What the far end's `[Peer]` sends to keep a NAT mapping toward the appliance open.
const PERSISTENT_KEEPALIVE: u16 = 25;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/api/v1/tools/ping", post(ping))
        .route("/api/v1/tools/tcp", post(tcp))
        .route("/api/v1/tools/dns", post(dns))
        .route("/api/v1/tools/check", post(check))
        .route("/api/v1/tools/wireguard/keypair", post(keypair))
        .route("/api/v1/tools/wireguard/{tunnel}/peer", get(wireguard_peer))
        .route("/api/v1/logs", get(logs))
}

// ---- diagnostics ----

async fn ping(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    match parse_fields(&body) {
        Ok(fields) => check_run_response(state.diagnostics.ping(&fields).await),
        Err(response) => *response,
    }
}

async fn tcp(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    match parse_fields(&body) {
        Ok(fields) => check_run_response(state.diagnostics.tcp_test(&fields).await),
        Err(response) => *response,
    }
}

async fn check(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    match parse_fields(&body) {
        Ok(fields) => check_run_response(state.diagnostics.run_check(&fields).await),
        Err(response) => *response,
    }
}

async fn dns(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    let fields = match parse_fields(&body) {
        Ok(fields) => fields,
        Err(response) => return *response,
    };
    let query = match DnsQuery::from_fields(&fields) {
        Ok(query) => query,
        Err(problems) => return invalid(problems),
    };
    match state.diagnostics.dns_lookup(&query).await {
        Ok(lookup) => Json(dns_view(&lookup)).into_response(),
        Err(e) => diagnostic_error(e),
    }
}

/// The body as a JSON object, or the answer refusing it. Messages never quote the body:
/// it may hold a secret.
fn parse_fields(body: &Bytes) -> Result<Fields, Box<Response>> {
    let refuse = |status, message: &str| Box::new(error(status, message));
    if body.len() > MAX_BODY {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {MAX_BODY} bytes"),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(refuse(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object of keys and values",
        )),
        Err(e) => Err(refuse(
            StatusCode::BAD_REQUEST,
            &format!(
                "the body is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )),
    }
}

fn check_run_response(result: Result<CheckRun, DiagnosticError>) -> Response {
    match result {
        Ok(run) => Json(json!({
            "kind": run.kind,
            "target": run.target,
            "up": run.up(),
            "reason": run.reason.as_str(),
            "detail": run.detail,
            "latency_seconds": run.latency.as_secs_f64(),
            "at": rfc3339(run.at),
            "tls_cert_not_after": run.tls_not_after.and_then(unix_rfc3339),
        }))
        .into_response(),
        Err(e) => diagnostic_error(e),
    }
}

fn dns_view(lookup: &DnsLookup) -> Value {
    let answers: Vec<Value> = lookup
        .answers
        .iter()
        .map(|a| json!({ "name": a.name, "type": a.record_type, "ttl": a.ttl, "data": a.data }))
        .collect();
    json!({
        "name": lookup.name,
        "type": lookup.record_type.as_str(),
        "answers": answers,
        "error": lookup.error,
        "elapsed_seconds": lookup.elapsed.as_secs_f64(),
    })
}

fn diagnostic_error(e: DiagnosticError) -> Response {
    match e {
        DiagnosticError::Invalid(problems) => invalid(problems),
        DiagnosticError::Busy => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, &e.to_string());
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

/// 400 with `{"error", "fields": {key: message}}`; a problem with the input as a whole
/// (key `""`) is the error message itself.
fn invalid(mut problems: FieldProblems) -> Response {
    let message = problems
        .remove("")
        .unwrap_or_else(|| format!("{} key(s) need attention", problems.len()));
    Refusal {
        status: StatusCode::BAD_REQUEST,
        message,
        fields: Some(problems),
    }
    .into_response()
}

// ---- the live log view ----

/// `GET /api/v1/logs?after=SEQ&level=LEVEL&limit=N&wait=SECONDS`: the lines after `after`
/// at `level` or more severe (default: every line kept), oldest first, and `next_after`
/// to ask with next. With `wait`, an empty page waits up to that long (at most 25 s) for a
/// line.
async fn logs(
    State(state): State<Arc<AdminState>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let query = match LogQuery::parse(&params) {
        Ok(query) => query,
        Err(problems) => return invalid(problems),
    };
    let (lines, next_after) = state
        .log_view
        .wait_since(query.after, query.level, query.limit, query.wait)
        .await;
    let lines: Vec<Value> = lines.iter().map(log_line_view).collect();
    Json(json!({ "lines": lines, "next_after": next_after })).into_response()
}

#[derive(Debug, PartialEq)]
struct LogQuery {
    after: u64,
    level: Level,
    limit: usize,
    wait: Duration,
}

impl LogQuery {
    fn parse(params: &BTreeMap<String, String>) -> Result<LogQuery, FieldProblems> {
        let mut problems = FieldProblems::new();
        for key in params.keys() {
            if !["after", "level", "limit", "wait"].contains(&key.as_str()) {
                problems.insert(
                    key.chars().take(64).collect(),
                    "unknown parameter (expected after, level, limit, wait)".into(),
                );
            }
        }
        let mut number = |key: &str, default: u64| -> u64 {
            match params.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => default,
                Some(v) => v.parse().unwrap_or_else(|_| {
                    problems.insert(key.into(), "must be a whole number".into());
                    default
                }),
            }
        };
        let after = number("after", 0);
        let limit = number("limit", DEFAULT_LOG_LIMIT as u64);
        let wait = number("wait", 0);
        let level = match params
            .get("level")
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            None => Level::TRACE,
            Some(v) => v.parse().unwrap_or_else(|_| {
                problems.insert(
                    "level".into(),
                    "expected one of error, warn, info, debug, trace".into(),
                );
                Level::TRACE
            }),
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(LogQuery {
            after,
            level,
            limit: usize::try_from(limit)
                .unwrap_or(CAPACITY)
                .clamp(1, CAPACITY),
            wait: Duration::from_secs(wait).min(MAX_LOG_WAIT),
        })
    }
}

fn log_line_view(line: &LogLine) -> Value {
    json!({
        "seq": line.seq,
        "time": rfc3339(line.time),
        "level": line.level.as_str(),
        "target": line.target,
        "message": line.message,
        "fields": line.fields,
    })
}

// ---- WireGuard ----

/// A new WireGuard key pair. The private key is handed out once and kept nowhere.
pub struct KeyPair {
    pub private_key: WgSecretKey,
    pub public_key: WgPublicKey,
}

pub fn new_key_pair() -> std::io::Result<KeyPair> {
    let private_key = keys::generate_private_key()?;
    let public_key = private_key.public_key();
    Ok(KeyPair {
        private_key,
        public_key,
    })
}

/// What the far end of a `wireguard` tunnel needs to know about the appliance.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSnippet {
    pub tunnel: String,
    /// The appliance's public key for this tunnel.
    pub public_key: WgPublicKey,
    /// `host:port` the far end sends its handshakes to; `None` when the tunnel's port is
    /// not known (no `listen_port` and not running), see `note`.
    pub endpoint: Option<String>,
    /// The tunnel's addresses as networks: what the far end routes to the appliance.
    pub allowed_ips: Vec<IpNet>,
    /// A wg-quick `[Peer]` section to paste into the far end's configuration.
    pub text: String,
    /// Why something is missing from the snippet.
    pub note: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SnippetError {
    #[error("no WireGuard tunnel named \"{0}\"")]
    NoSuchTunnel(String),
    #[error("the admin API listens on every address: give endpoint_host, the address the far end reaches this appliance at")]
    NoEndpointHost,
    #[error("endpoint_host {0}")]
    BadEndpointHost(String),
}

/// The `[Peer]` snippet of tunnel `name` for its far end. `listen_port` is the running
/// tunnel's port (the configured one, or the one the kernel chose); `endpoint_host` the
/// address the far end reaches this box at, by default the admin listener's.
pub fn peer_snippet(
    config: &Config,
    name: &str,
    listen_port: Option<u16>,
    endpoint_host: Option<&str>,
) -> Result<PeerSnippet, SnippetError> {
    let wireguard = config
        .tunnels
        .iter()
        .find(|t| t.name == name)
        .and_then(|t| match &t.kind {
            TunnelKind::Wireguard(wg) => Some(wg),
            TunnelKind::Ipsec(_) => None,
        })
        .ok_or_else(|| SnippetError::NoSuchTunnel(name.to_string()))?;
    let host = match endpoint_host.map(str::trim).filter(|h| !h.is_empty()) {
        Some(text) => parse_endpoint_host(text).map_err(SnippetError::BadEndpointHost)?,
        None if config.admin.listen.ip().is_unspecified() => {
            return Err(SnippetError::NoEndpointHost)
        }
        None => Host::Ip(config.admin.listen.ip()),
    };
    let public_key = wireguard.private_key.public_key();
    let mut allowed_ips: Vec<IpNet> = Vec::new();
    for network in wireguard.addresses.iter().map(IpNet::trunc) {
        if !allowed_ips.contains(&network) {
            allowed_ips.push(network);
        }
    }
    let port = listen_port.or(wireguard.listen_port);
    // Host's Display brackets an IPv6 address, as an endpoint needs.
    let endpoint = port.map(|port| format!("{host}:{port}"));
    let mut note = None;
    let mut text = format!(
        "[Peer]\n# siteward appliance \"{}\", tunnel \"{name}\"\nPublicKey = {public_key}\n",
        config.appliance.name
    );
    match &endpoint {
        Some(endpoint) => text.push_str(&format!("Endpoint = {endpoint}\n")),
        None => {
            note = Some(format!(
                "tunnel \"{name}\" has no listen_port and is not running, so its port is not \
                 known: the far end cannot start handshakes (set listen_port)"
            ))
        }
    }
    if allowed_ips.is_empty() {
        note.get_or_insert_with(|| {
            format!("tunnel \"{name}\" has no addresses: fill in AllowedIPs with what the far end routes to the appliance")
        });
    } else {
        let list: Vec<String> = allowed_ips.iter().map(ToString::to_string).collect();
        text.push_str(&format!("AllowedIPs = {}\n", list.join(", ")));
    }
    text.push_str(&format!("PersistentKeepalive = {PERSISTENT_KEEPALIVE}\n"));
    Ok(PeerSnippet {
        tunnel: name.to_string(),
        public_key,
        endpoint,
        allowed_ips,
        text,
        note,
    })
}

/// An IP address (IPv6 with or without brackets) or a DNS name; nothing else, since the
/// value lands in a configuration file.
fn parse_endpoint_host(text: &str) -> Result<Host, String> {
    let unbracketed = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    check_dns_name(text)?;
    Ok(Host::Name(text.to_string()))
}

async fn keypair() -> Response {
    match new_key_pair() {
        Ok(pair) => Json(json!({
            "private_key": STANDARD.encode(pair.private_key.expose()),
            "public_key": pair.public_key.to_string(),
        }))
        .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("generating a WireGuard key: {e}"),
        ),
    }
}

async fn wireguard_peer(
    State(state): State<Arc<AdminState>>,
    Path(tunnel): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(key) = params.keys().find(|k| *k != "endpoint_host") {
        let mut problems = FieldProblems::new();
        problems.insert(
            key.chars().take(64).collect(),
            "unknown parameter (expected endpoint_host)".into(),
        );
        return invalid(problems);
    }
    let running_port = state
        .tunnels
        .statuses()
        .into_iter()
        .find(|t| t.name == tunnel && t.running)
        .and_then(|t| t.listen_port);
    let config = state.applier.running();
    match peer_snippet(
        &config,
        &tunnel,
        running_port,
        params.get("endpoint_host").map(String::as_str),
    ) {
        Ok(snippet) => Json(json!({
            "tunnel": snippet.tunnel,
            "public_key": snippet.public_key.to_string(),
            "endpoint": snippet.endpoint,
            "allowed_ips": snippet.allowed_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "snippet": snippet.text,
            "note": snippet.note,
        }))
        .into_response(),
        Err(e @ SnippetError::NoSuchTunnel(_)) => error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e @ SnippetError::NoEndpointHost) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(SnippetError::BadEndpointHost(message)) => invalid(FieldProblems::from([(
            "endpoint_host".to_string(),
            message,
        )])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key pair, the public half checked with `wg pubkey` (as in `siteward_config`).
    const PRIVATE: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    const PUBLIC: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
    const PEER: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn config(admin_listen: &str, listen_port: &str) -> Config {
        let text = format!(
            r#"
[appliance]
name = "plant-01"

[admin]
listen = "{admin_listen}"

[[tunnels]]
name = "hq"
kind = "wireguard"
interface = "wg-hq"
private_key = "{PRIVATE}"
{listen_port}
addresses = ["10.99.0.1/24", "10.99.0.7/24", "fd00:99::1/64"]

[[tunnels.peers]]
name = "hub"
public_key = "{PEER}"
allowed_ips = ["10.10.0.0/16"]

[[tunnels]]
name = "bare"
kind = "wireguard"
interface = "wg-bare"
private_key = "{PRIVATE}"
listen_port = 51821
"#
        );
        siteward_config::parse(&text, std::path::Path::new("/")).unwrap()
    }

    #[test]
    fn the_snippet_names_the_appliance_key_endpoint_and_networks() {
        let config = config("192.0.2.10:8443", "listen_port = 51820");
        let snippet = peer_snippet(&config, "hq", None, None).unwrap();
        assert_eq!(snippet.public_key.to_string(), PUBLIC);
        assert_eq!(snippet.endpoint.as_deref(), Some("192.0.2.10:51820"));
        assert_eq!(
            snippet.text,
            format!(
                "[Peer]\n# siteward appliance \"plant-01\", tunnel \"hq\"\n\
                 PublicKey = {PUBLIC}\nEndpoint = 192.0.2.10:51820\n\
                 AllowedIPs = 10.99.0.0/24, fd00:99::/64\nPersistentKeepalive = 25\n"
            )
        );
        assert_eq!(snippet.note, None);
        assert!(!snippet.text.contains(PRIVATE));
        assert!(!format!("{snippet:?}").contains(PRIVATE));
    }

    #[test]
    fn the_endpoint_host_given_wins_and_ipv6_is_bracketed() {
        let config = config("0.0.0.0:8443", "listen_port = 51820");
        assert_eq!(
            peer_snippet(&config, "hq", None, None),
            Err(SnippetError::NoEndpointHost)
        );
        // The running tunnel's port is the one the far end must use.
        let snippet = peer_snippet(&config, "hq", Some(40000), Some("2001:db8::1")).unwrap();
        assert_eq!(snippet.endpoint.as_deref(), Some("[2001:db8::1]:40000"));
        let snippet = peer_snippet(&config, "hq", None, Some("[2001:db8::1]")).unwrap();
        assert_eq!(snippet.endpoint.as_deref(), Some("[2001:db8::1]:51820"));
        let snippet = peer_snippet(&config, "hq", None, Some("vpn.example.com")).unwrap();
        assert!(snippet.text.contains("Endpoint = vpn.example.com:51820\n"));
        for bad in ["a b", "evil\nPublicKey = x", "host:51820", "[::1"] {
            assert!(
                matches!(
                    peer_snippet(&config, "hq", None, Some(bad)),
                    Err(SnippetError::BadEndpointHost(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn what_is_unknown_is_left_out_with_a_note() {
        let config = config("192.0.2.10:8443", "");
        let snippet = peer_snippet(&config, "hq", None, None).unwrap();
        assert_eq!(snippet.endpoint, None);
        assert!(!snippet.text.contains("Endpoint"));
        assert!(snippet.note.unwrap().contains("listen_port"));
        let snippet = peer_snippet(&config, "bare", None, None).unwrap();
        assert!(!snippet.text.contains("AllowedIPs"));
        assert!(snippet.note.unwrap().contains("no addresses"));
        assert_eq!(
            peer_snippet(&config, "nope", None, None),
            Err(SnippetError::NoSuchTunnel("nope".into()))
        );
    }

    #[test]
    fn new_key_pairs_match_and_differ() {
        let a = new_key_pair().unwrap();
        let b = new_key_pair().unwrap();
        assert_eq!(a.private_key.public_key(), a.public_key);
        assert_ne!(a.public_key, b.public_key);
        assert_eq!(STANDARD.encode(a.private_key.expose()).len(), 44);
    }

    fn log_query(pairs: &[(&str, &str)]) -> Result<LogQuery, FieldProblems> {
        LogQuery::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn log_queries_have_defaults_and_bounds() {
        assert_eq!(
            log_query(&[]).unwrap(),
            LogQuery {
                after: 0,
                level: Level::TRACE,
                limit: DEFAULT_LOG_LIMIT,
                wait: Duration::ZERO,
            }
        );
        let query = log_query(&[
            ("after", "7"),
            ("level", "WARN"),
            ("limit", "99999"),
            ("wait", "600"),
        ])
        .unwrap();
        assert_eq!(query.after, 7);
        assert_eq!(query.level, Level::WARN);
        assert_eq!(query.limit, CAPACITY);
        assert_eq!(query.wait, MAX_LOG_WAIT);
        let problems =
            log_query(&[("after", "-1"), ("level", "loud"), ("since", "1")]).unwrap_err();
        let keys: Vec<&str> = problems.keys().map(String::as_str).collect();
        assert_eq!(keys, ["after", "level", "since"]);
    }
}
