//! The file as written: serde structs with `deny_unknown_fields`, nothing interpreted yet.
//!
//! Values that need parsing (durations, addresses, targets) stay strings here so that
//! validation can report each bad one with its field path instead of stopping at the first.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppliance {
    pub name: Option<String>,
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub session_idle: Option<String>,
    pub session_lifetime: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<String>,
}

/// `[uplink]`: where the spool's events go. Integers stay `i64` so that a negative or huge
/// value gets its own message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUplink {
    pub url: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub batch_max_events: Option<i64>,
    pub batch_max_bytes: Option<i64>,
    pub batch_max_wait: Option<String>,
    pub timeout: Option<String>,
    pub status_interval: Option<String>,
}

/// `[spool]`: the durable queue in the state directory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    pub max_bytes: Option<i64>,
}

/// One `[[checks]]` table. Kind-specific keys are all optional here; validation
/// rejects the ones that do not belong to the check's kind.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    // Optional here so that a missing one is reported at `checks[i].name` by validation,
    // with the check's other problems, rather than as serde's "missing field" on the table.
    pub name: Option<String>,
    pub kind: Option<String>,
    pub target: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub source: Option<String>,
    pub interface: Option<String>,

    // tls, http
    pub server_name: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: Option<bool>,
    // http
    pub url: Option<String>,
    pub preset: Option<String>,
    pub expect_status: Option<Vec<u16>>,
    pub body_contains: Option<String>,
    // dns
    pub query: Option<String>,
    pub record_type: Option<String>,
    pub expect_answer: Option<Vec<String>>,
    // dns, sip-options
    pub transport: Option<String>,
    // icmp
    pub count: Option<u32>,
    pub max_loss_percent: Option<u8>,
    // oracle-tns
    pub service_name: Option<String>,
    // saprouter
    pub route: Option<String>,
    pub route_password: Option<String>,
    pub route_password_file: Option<PathBuf>,
    // asterisk-ami
    pub username: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    // sip-options
    pub request_uri: Option<String>,
    pub from_user: Option<String>,
    pub accept_any_status: Option<bool>,
}

impl RawCheck {
    /// The kind-specific keys that are set, by name, so validation can reject
    /// the ones a kind does not use.
    pub fn kind_keys_set(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        let mut note = |present: bool, key: &'static str| {
            if present {
                set.push(key);
            }
        };
        note(self.server_name.is_some(), "server_name");
        note(self.ca_file.is_some(), "ca_file");
        note(self.insecure_skip_verify.is_some(), "insecure_skip_verify");
        note(self.url.is_some(), "url");
        note(self.preset.is_some(), "preset");
        note(self.expect_status.is_some(), "expect_status");
        note(self.body_contains.is_some(), "body_contains");
        note(self.query.is_some(), "query");
        note(self.record_type.is_some(), "record_type");
        note(self.expect_answer.is_some(), "expect_answer");
        note(self.transport.is_some(), "transport");
        note(self.count.is_some(), "count");
        note(self.max_loss_percent.is_some(), "max_loss_percent");
        note(self.service_name.is_some(), "service_name");
        note(self.route.is_some(), "route");
        note(self.route_password.is_some(), "route_password");
        note(self.route_password_file.is_some(), "route_password_file");
        note(self.username.is_some(), "username");
        note(self.secret.is_some(), "secret");
        note(self.secret_file.is_some(), "secret_file");
        note(self.request_uri.is_some(), "request_uri");
        note(self.from_user.is_some(), "from_user");
        note(self.accept_any_status.is_some(), "accept_any_status");
        set
    }
}

/// The kind-specific keys each kind accepts (the common keys are always accepted).
pub fn keys_of_kind(kind: &str) -> &'static [&'static str] {
    match kind {
        "tls" => &["server_name", "ca_file", "insecure_skip_verify"],
        "http" => &[
            "url",
            "preset",
            "expect_status",
            "body_contains",
            "ca_file",
            "insecure_skip_verify",
        ],
        "dns" => &["query", "record_type", "expect_answer", "transport"],
        "icmp" => &["count", "max_loss_percent"],
        "oracle-tns" => &["service_name"],
        "saprouter" => &["route", "route_password", "route_password_file"],
        "asterisk-ami" => &["username", "secret", "secret_file"],
        "sip-options" => &["transport", "request_uri", "from_user", "accept_any_status"],
        _ => &[],
    }
}

/// One `[[tunnels]]` table. Every key is optional here, so that a missing one is reported
/// by validation at its path, with the tunnel's other problems. Kind-specific keys are
/// accepted here for every kind; validation rejects the ones that do not belong.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTunnel {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub interface: Option<String>,
    // wireguard
    pub private_key: Option<String>,
    pub private_key_file: Option<PathBuf>,
    // Integers as written, so that a value out of range gets a message of its own.
    pub listen_port: Option<i64>,
    // wireguard, ipsec
    pub addresses: Option<Vec<String>>,
    pub mtu: Option<i64>,
    // wireguard
    /// `[[tunnels.peers]]`, decoded one by one so each peer's errors are all reported.
    pub peers: Option<toml::Value>,
    // ipsec
    pub local_addrs: Option<Vec<String>>,
    pub remote_addrs: Option<Vec<String>>,
    pub local_id: Option<String>,
    pub remote_id: Option<String>,
    pub auth: Option<String>,
    pub psk: Option<String>,
    pub psk_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub proposals: Option<Vec<String>>,
    pub esp_proposals: Option<Vec<String>>,
    pub local_ts: Option<Vec<String>>,
    pub remote_ts: Option<Vec<String>>,
    pub dpd_delay: Option<String>,
    pub dpd_action: Option<String>,
    pub rekey_time: Option<String>,
    pub child_rekey_time: Option<String>,
    pub child_rekey_bytes: Option<i64>,
    pub start: Option<String>,
    pub encap: Option<bool>,
    pub local_port: Option<i64>,
    pub remote_port: Option<i64>,
    pub fragmentation: Option<bool>,
}

impl RawTunnel {
    /// The kind-specific keys that are set, by name, so validation can reject
    /// the ones a kind does not use.
    pub fn kind_keys_set(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        let mut note = |present: bool, key: &'static str| {
            if present {
                set.push(key);
            }
        };
        note(self.private_key.is_some(), "private_key");
        note(self.private_key_file.is_some(), "private_key_file");
        note(self.listen_port.is_some(), "listen_port");
        note(self.addresses.is_some(), "addresses");
        note(self.mtu.is_some(), "mtu");
        note(self.peers.is_some(), "peers");
        note(self.local_addrs.is_some(), "local_addrs");
        note(self.remote_addrs.is_some(), "remote_addrs");
        note(self.local_id.is_some(), "local_id");
        note(self.remote_id.is_some(), "remote_id");
        note(self.auth.is_some(), "auth");
        note(self.psk.is_some(), "psk");
        note(self.psk_file.is_some(), "psk_file");
        note(self.cert_file.is_some(), "cert_file");
        note(self.key_file.is_some(), "key_file");
        note(self.ca_file.is_some(), "ca_file");
        note(self.proposals.is_some(), "proposals");
        note(self.esp_proposals.is_some(), "esp_proposals");
        note(self.local_ts.is_some(), "local_ts");
        note(self.remote_ts.is_some(), "remote_ts");
        note(self.dpd_delay.is_some(), "dpd_delay");
        note(self.dpd_action.is_some(), "dpd_action");
        note(self.rekey_time.is_some(), "rekey_time");
        note(self.child_rekey_time.is_some(), "child_rekey_time");
        note(self.child_rekey_bytes.is_some(), "child_rekey_bytes");
        note(self.start.is_some(), "start");
        note(self.encap.is_some(), "encap");
        note(self.local_port.is_some(), "local_port");
        note(self.remote_port.is_some(), "remote_port");
        note(self.fragmentation.is_some(), "fragmentation");
        set
    }
}

/// The kind-specific keys each tunnel kind accepts (`name`, `kind` and `interface` are
/// always accepted).
pub fn tunnel_keys_of_kind(kind: &str) -> &'static [&'static str] {
    match kind {
        "wireguard" => &[
            "private_key",
            "private_key_file",
            "listen_port",
            "addresses",
            "mtu",
            "peers",
        ],
        "ipsec" => &[
            "local_addrs",
            "remote_addrs",
            "local_id",
            "remote_id",
            "auth",
            "psk",
            "psk_file",
            "cert_file",
            "key_file",
            "ca_file",
            "proposals",
            "esp_proposals",
            "local_ts",
            "remote_ts",
            "addresses",
            "mtu",
            "dpd_delay",
            "dpd_action",
            "rekey_time",
            "child_rekey_time",
            "child_rekey_bytes",
            "start",
            "encap",
            "local_port",
            "remote_port",
            "fragmentation",
        ],
        _ => &[],
    }
}

/// One `[[tunnels.peers]]` table of a WireGuard tunnel.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub name: Option<String>,
    pub public_key: Option<String>,
    pub preshared_key: Option<String>,
    pub preshared_key_file: Option<PathBuf>,
    pub endpoint: Option<String>,
    pub allowed_ips: Option<Vec<String>>,
    /// Any value: a bare integer gets its own hint ("25s").
    pub persistent_keepalive: Option<toml::Value>,
}

/// One `[[connectors]]` table. Kind-specific keys are all optional here; validation
/// rejects the ones that do not belong to the connector's kind.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub when_full: Option<String>,
    // webhook
    pub listen: Option<String>,
    pub path: Option<String>,
    pub max_body_bytes: Option<i64>,
    pub hmac_secret: Option<String>,
    pub hmac_secret_file: Option<PathBuf>,
    pub hmac_header: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    // asterisk-ami
    pub target: Option<String>,
    pub username: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub events: Option<Vec<String>>,
    pub reconnect_max: Option<String>,
    pub source: Option<String>,
    pub interface: Option<String>,
    // file-drop
    pub directory: Option<PathBuf>,
    pub settle: Option<String>,
    pub format: Option<String>,
    pub max_file_bytes: Option<i64>,
    // syslog
    pub udp: Option<String>,
    pub tcp: Option<String>,
    pub max_message_bytes: Option<i64>,
}

/// Kinds of `[[connectors]]`.
pub const CONNECTOR_KINDS: &[&str] = &["webhook", "asterisk-ami", "file-drop", "syslog"];

/// The keys of a `[[connectors]]` kind, besides `name`, `kind` and `when_full`.
pub fn connector_keys_of_kind(kind: &str) -> &'static [&'static str] {
    match kind {
        "webhook" => &[
            "listen",
            "path",
            "max_body_bytes",
            "hmac_secret",
            "hmac_secret_file",
            "hmac_header",
            "cert_file",
            "key_file",
        ],
        "asterisk-ami" => &[
            "target",
            "username",
            "secret",
            "secret_file",
            "events",
            "reconnect_max",
            "source",
            "interface",
        ],
        "file-drop" => &["directory", "settle", "format", "max_file_bytes"],
        "syslog" => &["udp", "tcp", "max_message_bytes"],
        _ => &[],
    }
}

impl RawConnector {
    /// The kind-specific keys that are set, by name.
    pub fn kind_keys_set(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        let mut note = |present: bool, key: &'static str| {
            if present {
                set.push(key);
            }
        };
        note(self.listen.is_some(), "listen");
        note(self.path.is_some(), "path");
        note(self.max_body_bytes.is_some(), "max_body_bytes");
        note(self.hmac_secret.is_some(), "hmac_secret");
        note(self.hmac_secret_file.is_some(), "hmac_secret_file");
        note(self.hmac_header.is_some(), "hmac_header");
        note(self.cert_file.is_some(), "cert_file");
        note(self.key_file.is_some(), "key_file");
        note(self.target.is_some(), "target");
        note(self.username.is_some(), "username");
        note(self.secret.is_some(), "secret");
        note(self.secret_file.is_some(), "secret_file");
        note(self.events.is_some(), "events");
        note(self.reconnect_max.is_some(), "reconnect_max");
        note(self.source.is_some(), "source");
        note(self.interface.is_some(), "interface");
        note(self.directory.is_some(), "directory");
        note(self.settle.is_some(), "settle");
        note(self.format.is_some(), "format");
        note(self.max_file_bytes.is_some(), "max_file_bytes");
        note(self.udp.is_some(), "udp");
        note(self.tcp.is_some(), "tcp");
        note(self.max_message_bytes.is_some(), "max_message_bytes");
        set
    }
}

/// One `[[relays]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    pub name: Option<String>,
    pub listen: Option<String>,
    pub target: Option<String>,
    pub allow: Option<Vec<String>>,
    pub max_connections: Option<i64>,
    pub idle_timeout: Option<String>,
    pub source: Option<String>,
    pub interface: Option<String>,
}
