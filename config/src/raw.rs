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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<String>,
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
/// by validation at its path, with the tunnel's other problems.
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
    pub addresses: Option<Vec<String>>,
    pub mtu: Option<i64>,
    /// `[[tunnels.peers]]`, decoded one by one so each peer's errors are all reported.
    pub peers: Option<toml::Value>,
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
