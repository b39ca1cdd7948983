//! `[[tunnels]] kind = "ipsec"`: an IKEv2 tunnel's settings, from the raw table to an
//! [`IpsecTunnel`], collecting every error with its path. Proposals and identities are read
//! by `siteward-ike`, so the configuration accepts exactly what the daemon speaks.

use std::fmt::Display;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use siteward_ike::identity::Identity;
use siteward_ike::proposal::{EspProposal, IkeProposal, ProposalError};
use siteward_ike::sa::NAT_T_PORT;

use crate::model::{DpdAction, Host, IpsecAuth, IpsecTunnel, StartAction};
use crate::raw::RawTunnel;
use crate::tunnels::{
    addresses, mtu, networks, unique_entries, within_limit, NetworkList, Route, RouteList,
};
use crate::validate::{
    duration, host, read_bounded, resolve_path, secret_text, Errors, SecretText,
};
use crate::Secret;

/// strongSwan's choice for current peers first, then one for peers without GCM.
pub(crate) const DEFAULT_PROPOSALS: &[&str] =
    &["aes256gcm16-prfsha256-x25519", "aes256-sha256-modp2048"];
pub(crate) const DEFAULT_ESP_PROPOSALS: &[&str] = &["aes256gcm16", "aes256-sha256"];
/// A 1500-byte link less ESP's overhead in UDP over IPv6 with CBC and HMAC, rounded down.
const DEFAULT_MTU: u16 = 1400;
const DEFAULT_DPD_DELAY: Duration = Duration::from_secs(30);
const MAX_DPD_DELAY: Duration = Duration::from_secs(3600);
/// strongSwan's defaults.
const DEFAULT_REKEY_TIME: Duration = Duration::from_secs(4 * 3600);
const DEFAULT_CHILD_REKEY_TIME: Duration = Duration::from_secs(3600);
/// Rekeying more often than this is a typo, and a load on both ends.
const MIN_REKEY_TIME: Duration = Duration::from_secs(60);
const MAX_REKEY_TIME: Duration = Duration::from_secs(7 * 24 * 3600);
const MIN_CHILD_REKEY_BYTES: i64 = 1 << 20;
const IKE_PORT: u16 = 500;
/// Of `local_addrs` and `remote_addrs`: a few addresses or names per end.
const MAX_ADDRS: usize = 16;
/// Proposal numbers are one byte; far fewer are ever useful.
const MAX_PROPOSALS: usize = 32;
/// Shorter pre-shared keys fall to an offline dictionary search on one captured exchange.
const MIN_PSK_LEN: usize = 16;
/// A certificate chain or a CA bundle, with room to spare.
const MAX_CERT_FILE: u64 = 256 * 1024;

const TRAFFIC_SELECTORS: NetworkList = NetworkList {
    entry: "traffic selector",
    entries: "traffic selectors",
    max: 255,
    limit_scope: " (a TS payload carries at most 255)",
};

/// The `kind = "ipsec"` part of tunnel `index`; its `local_ts` and `remote_ts` go into
/// `routes` for the overlap check across all tunnels.
pub(crate) fn ipsec(
    raw: &RawTunnel,
    index: usize,
    base_dir: &Path,
    routes: &mut Vec<Route>,
    errors: &mut Errors,
) -> Option<IpsecTunnel> {
    let at = |field: &str| format!("tunnels[{index}].{field}");
    let local_addrs = local_addrs(
        raw.local_addrs.as_deref().unwrap_or_default(),
        &at("local_addrs"),
        errors,
    );
    let remote_addrs = remote_addrs(
        raw.remote_addrs.as_deref().unwrap_or_default(),
        &at("remote_addrs"),
        errors,
    );
    let local_id = identity(raw.local_id.as_deref(), &at("local_id"), errors);
    let remote_id = identity(raw.remote_id.as_deref(), &at("remote_id"), errors);
    let auth = auth(raw, base_dir, &at, errors);
    let proposals = proposal_list(
        raw.proposals.as_deref(),
        DEFAULT_PROPOSALS,
        IkeProposal::parse,
        &at("proposals"),
        errors,
    );
    let esp_proposals = proposal_list(
        raw.esp_proposals.as_deref(),
        DEFAULT_ESP_PROPOSALS,
        EspProposal::parse,
        &at("esp_proposals"),
        errors,
    );
    let local_ts = traffic_selectors(
        raw.local_ts.as_deref(),
        (index, RouteList::LocalTs),
        routes,
        errors,
    );
    let remote_ts = traffic_selectors(
        raw.remote_ts.as_deref(),
        (index, RouteList::RemoteTs),
        routes,
        errors,
    );
    let addresses = addresses(
        raw.addresses.as_deref().unwrap_or_default(),
        &at("addresses"),
        errors,
    );
    let mtu = mtu(raw.mtu, DEFAULT_MTU, &at("mtu"), errors);
    let dpd_delay = dpd_delay(raw.dpd_delay.as_deref(), &at("dpd_delay"), errors);
    let dpd_action = choice(
        raw.dpd_action.as_deref(),
        DpdAction::ALL,
        DpdAction::Restart,
        &at("dpd_action"),
        errors,
    );
    let rekey_time = rekey_interval(
        raw.rekey_time.as_deref(),
        DEFAULT_REKEY_TIME,
        &at("rekey_time"),
        errors,
    );
    let child_rekey_time = rekey_interval(
        raw.child_rekey_time.as_deref(),
        DEFAULT_CHILD_REKEY_TIME,
        &at("child_rekey_time"),
        errors,
    );
    let child_rekey_bytes = match raw.child_rekey_bytes {
        None => Some(None),
        Some(bytes) if bytes >= MIN_CHILD_REKEY_BYTES => u64::try_from(bytes).ok().map(Some),
        Some(bytes) => {
            errors.push(
                at("child_rekey_bytes"),
                format!(
                    "must be at least {MIN_CHILD_REKEY_BYTES} (1 MiB), got {bytes} \
                     (leave it out to rekey by time only)"
                ),
            );
            None
        }
    };
    let start = choice(
        raw.start.as_deref(),
        StartAction::ALL,
        StartAction::Respond,
        &at("start"),
        errors,
    );
    if let (Some(start @ (StartAction::Initiate | StartAction::Trap)), Some(remote)) =
        (start, &remote_addrs)
    {
        if remote.is_empty() {
            let name = if start == StartAction::Trap {
                "trap"
            } else {
                "initiate"
            };
            errors.push(
                at("remote_addrs"),
                format!(
                    "missing: start = \"{name}\" makes this end initiate, so it needs the \
                     peer's address or name (only start = \"respond\" can wait for any peer)"
                ),
            );
        }
    }
    let local_port = port(raw.local_port, &at("local_port"), errors);
    let remote_port = port(raw.remote_port, &at("remote_port"), errors);
    Some(IpsecTunnel {
        local_addrs: local_addrs?,
        remote_addrs: remote_addrs?,
        local_id: local_id?,
        remote_id: remote_id?,
        auth: auth?,
        proposals: proposals?,
        esp_proposals: esp_proposals?,
        local_ts: local_ts?,
        remote_ts: remote_ts?,
        addresses: addresses?,
        mtu: mtu?,
        dpd_delay: dpd_delay?,
        dpd_action: dpd_action?,
        rekey_time: rekey_time?,
        child_rekey_time: child_rekey_time?,
        child_rekey_bytes: child_rekey_bytes?,
        start: start?,
        encap: raw.encap.unwrap_or(false),
        local_port: local_port?,
        remote_port: remote_port?,
        fragmentation: raw.fragmentation.unwrap_or(true),
    })
}

/// An address that cannot be one end of an IKE SA, with the reason.
fn unusable(ip: IpAddr, leave_out: &str) -> Option<String> {
    if ip.is_unspecified() {
        Some(format!("{ip} is not an address: {leave_out}"))
    } else if ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
        Some(format!("{ip} is a multicast or broadcast address"))
    } else {
        None
    }
}

fn local_addrs(list: &[String], path: &str, errors: &mut Errors) -> Option<Vec<IpAddr>> {
    if !within_limit(list.len(), (MAX_ADDRS, "addresses", ""), path, errors) {
        return None;
    }
    unique_entries(list, path, errors, |text, at, errors| {
        let Ok(ip) = text.parse::<IpAddr>() else {
            errors.push(
                at,
                format!("\"{text}\" is not an IP address (local_addrs are addresses of this box)"),
            );
            return None;
        };
        if let Some(why) = unusable(ip, "leave local_addrs out to use any local address") {
            errors.push(at, why);
            return None;
        }
        Some((ip, format!("address {ip}"), ip))
    })
}

fn remote_addrs(list: &[String], path: &str, errors: &mut Errors) -> Option<Vec<Host>> {
    if !within_limit(list.len(), (MAX_ADDRS, "addresses", ""), path, errors) {
        return None;
    }
    unique_entries(list, path, errors, |text, at, errors| {
        let peer = host(text, at, errors)?;
        if let Host::Ip(ip) = peer {
            let leave_out = "leave remote_addrs out (with start = \"respond\") to accept any peer";
            if let Some(why) = unusable(ip, leave_out) {
                errors.push(at, why);
                return None;
            }
        }
        Some((peer.clone(), format!("peer {peer}"), peer))
    })
}

/// An optional identity; `Some(None)` when not set.
fn identity(text: Option<&str>, path: &str, errors: &mut Errors) -> Option<Option<Identity>> {
    let Some(text) = text else {
        return Some(None);
    };
    match Identity::parse(text) {
        Ok(identity) => Some(Some(identity)),
        Err(e) => {
            errors.push(path, e.to_string());
            None
        }
    }
}

/// IKE or ESP proposals: as written (at least one, no duplicates), or the defaults.
fn proposal_list<P: Display>(
    list: Option<&[String]>,
    defaults: &[&str],
    parse: fn(&str) -> Result<P, ProposalError>,
    path: &str,
    errors: &mut Errors,
) -> Option<Vec<P>> {
    let Some(list) = list else {
        // Constants, parsed by a test too.
        return Some(
            defaults
                .iter()
                .filter_map(|text| parse(text).ok())
                .collect(),
        );
    };
    if list.is_empty() {
        errors.push(
            path,
            format!(
                "must list at least one proposal (leave it out for the defaults: {})",
                defaults.join(", ")
            ),
        );
        return None;
    }
    if !within_limit(list.len(), (MAX_PROPOSALS, "proposals", ""), path, errors) {
        return None;
    }
    unique_entries(list, path, errors, |text, at, errors| match parse(text) {
        Err(e) => {
            errors.push(at, e.to_string());
            None
        }
        Ok(proposal) => {
            // Compared as printed, so that aliases count as the same.
            let written = proposal.to_string();
            let what = format!("proposal {written}");
            Some((written, what, proposal))
        }
    })
}

/// `local_ts` or `remote_ts` of tunnel `index`: required networks, noted for the overlap
/// check across tunnels even when the tunnel has other errors.
fn traffic_selectors(
    list: Option<&[String]>,
    (index, which): (usize, RouteList),
    routes: &mut Vec<Route>,
    errors: &mut Errors,
) -> Option<Vec<ipnet::IpNet>> {
    let (field, example) = match which {
        RouteList::LocalTs => ("local_ts", "this side's networks, e.g. [\"10.1.0.0/16\"]"),
        _ => (
            "remote_ts",
            "the far side's networks, routed through the tunnel, e.g. [\"10.2.0.0/16\"]",
        ),
    };
    let path = format!("tunnels[{index}].{field}");
    let Some(list) = list else {
        errors.push(path, format!("missing: {example}"));
        return None;
    };
    if list.is_empty() {
        errors.push(path, format!("must list at least one network: {example}"));
        return None;
    }
    let before = errors.0.len();
    let nets = networks(list, &path, &TRAFFIC_SELECTORS, errors);
    routes.extend(nets.iter().map(|&(entry, net)| Route {
        net,
        at: (index, 0, which, entry),
    }));
    (errors.0.len() == before).then(|| nets.into_iter().map(|(_, net)| net).collect())
}

/// One of a fixed set of words, `default` when not set.
fn choice<T: Copy>(
    value: Option<&str>,
    all: &[(&str, T)],
    default: T,
    path: &str,
    errors: &mut Errors,
) -> Option<T> {
    let Some(value) = value else {
        return Some(default);
    };
    let found = all
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, choice)| *choice);
    if found.is_none() {
        let names: Vec<&str> = all.iter().map(|(name, _)| *name).collect();
        errors.push(
            path,
            format!(
                "unknown value \"{value}\" (expected one of {})",
                names.join(", ")
            ),
        );
    }
    found
}

/// The DPD interval; `Some(None)` when `"0s"` disables it.
fn dpd_delay(text: Option<&str>, path: &str, errors: &mut Errors) -> Option<Option<Duration>> {
    let Some(text) = text else {
        return Some(Some(DEFAULT_DPD_DELAY));
    };
    let delay = duration(text, path, errors)?;
    if delay.is_zero() {
        return Some(None);
    }
    if delay.subsec_nanos() != 0 || delay > MAX_DPD_DELAY {
        errors.push(
            path,
            format!(
                "{} is out of range: must be whole seconds from 1s to 1h, or \"0s\" to disable DPD",
                humantime::format_duration(delay)
            ),
        );
        return None;
    }
    Some(Some(delay))
}

fn rekey_interval(
    text: Option<&str>,
    default: Duration,
    path: &str,
    errors: &mut Errors,
) -> Option<Duration> {
    let Some(text) = text else {
        return Some(default);
    };
    let time = duration(text, path, errors)?;
    if !(MIN_REKEY_TIME..=MAX_REKEY_TIME).contains(&time) {
        errors.push(
            path,
            format!(
                "{} is out of range: must be between 1m and 7days",
                humantime::format_duration(time)
            ),
        );
        return None;
    }
    Some(time)
}

fn port(value: Option<i64>, path: &str, errors: &mut Errors) -> Option<u16> {
    let Some(port) = value else {
        return Some(IKE_PORT);
    };
    match u16::try_from(port) {
        Ok(NAT_T_PORT) => {
            errors.push(
                path,
                format!(
                    "{NAT_T_PORT} is the port IKE moves to for NAT traversal; this is the port \
                     it starts on (default {IKE_PORT})"
                ),
            );
            None
        }
        Ok(port) if port != 0 => Some(port),
        _ => {
            errors.push(
                path,
                format!("must be between 1 and 65535, got {port} (default {IKE_PORT})"),
            );
            None
        }
    }
}

/// The authentication method and its secrets; the keys of the other method are errors.
fn auth(
    raw: &RawTunnel,
    base_dir: &Path,
    at: &dyn Fn(&str) -> String,
    errors: &mut Errors,
) -> Option<IpsecAuth> {
    let psk_keys = [
        ("psk", raw.psk.is_some()),
        ("psk_file", raw.psk_file.is_some()),
    ];
    let cert_keys = [
        ("cert_file", raw.cert_file.is_some()),
        ("key_file", raw.key_file.is_some()),
        ("ca_file", raw.ca_file.is_some()),
    ];
    let method = raw.auth.as_deref();
    let (other_keys, method) = match method {
        Some("psk") => (&cert_keys[..], "psk"),
        Some("cert") => (&psk_keys[..], "cert"),
        None => {
            errors.push(
                at("auth"),
                "missing: \"psk\" (a pre-shared key) or \"cert\" (certificates)",
            );
            return None;
        }
        Some(other) => {
            errors.push(
                at("auth"),
                format!("unknown value \"{other}\" (expected one of psk, cert)"),
            );
            return None;
        }
    };
    for (key, _) in other_keys.iter().filter(|(_, set)| *set) {
        errors.push(at(key), format!("not used with auth = \"{method}\""));
    }
    if method == "psk" {
        return psk(raw, base_dir, &at("psk"), errors).map(IpsecAuth::Psk);
    }
    let required = |file: &Option<PathBuf>, key: &str, what: &str, errors: &mut Errors| {
        if file.is_none() {
            errors.push(at(key), format!("missing: {what} (auth = \"cert\")"));
        }
        file.clone()
    };
    let cert_file = required(
        &raw.cert_file,
        "cert_file",
        "this end's certificate, PEM",
        errors,
    )
    .and_then(|file| certificates(&file, base_dir, &at("cert_file"), errors));
    let key_file = required(
        &raw.key_file,
        "key_file",
        "the private key of cert_file, PEM without a passphrase",
        errors,
    )
    .and_then(|file| private_key(&file, base_dir, &at("key"), errors));
    let ca_file = required(
        &raw.ca_file,
        "ca_file",
        "the CA certificate(s) the peer's certificate must chain to, PEM",
        errors,
    )
    .and_then(|file| certificates(&file, base_dir, &at("ca_file"), errors));
    let ((cert_file, cert_pem), (key_file, key_pem), (ca_file, ca_pem)) =
        (cert_file?, key_file?, ca_file?);
    Some(IpsecAuth::Cert {
        cert_file,
        cert_pem,
        key_file,
        key_pem,
        ca_file,
        ca_pem,
    })
}

/// The pre-shared key, inline or from `psk_file`, at least [`MIN_PSK_LEN`] bytes.
fn psk(raw: &RawTunnel, base_dir: &Path, path: &str, errors: &mut Errors) -> Option<Secret> {
    let secret = secret_text(
        raw.psk.as_deref(),
        raw.psk_file.as_deref(),
        base_dir,
        path,
        errors,
    )?;
    let Some(SecretText { value, path, .. }) = secret else {
        errors.push(
            path,
            "missing: set psk or psk_file (at least 16 bytes, e.g. from `openssl rand -base64 24`)",
        );
        return None;
    };
    if value.len() < MIN_PSK_LEN {
        errors.push(
            path,
            format!(
                "is {} bytes; at least {MIN_PSK_LEN} are needed: a short pre-shared key can be \
                 guessed offline from one captured IKE exchange",
                value.len()
            ),
        );
        return None;
    }
    Some(Secret::new(value))
}

/// A PEM file of certificates (not a secret), read now so that a changed file is a changed
/// tunnel on reload; parsed in full when the tunnel starts.
fn certificates(
    file: &Path,
    base_dir: &Path,
    path: &str,
    errors: &mut Errors,
) -> Option<(PathBuf, Vec<u8>)> {
    let full = resolve_path(base_dir, file);
    let problem = match read_bounded(&full, MAX_CERT_FILE) {
        Err(e) => format!("cannot read {}: {e}", full.display()),
        Ok(None) => format!(
            "{} is larger than {} KiB; it should hold PEM certificates only",
            full.display(),
            MAX_CERT_FILE / 1024
        ),
        Ok(Some(pem)) if contains(&pem, b"-----BEGIN CERTIFICATE-----") => {
            return Some((full, pem))
        }
        Ok(Some(_)) => format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----); a DER file converts \
             with `openssl x509 -inform der -in FILE -out FILE.pem`",
            full.display()
        ),
    };
    errors.push(path, problem);
    None
}

/// The private key, read as a secret file (`path` is that of `key`, so errors land at
/// `key_file`), in a PEM block of PKCS#8, PKCS#1 (RSA) or SEC 1 (EC), not encrypted.
fn private_key(
    file: &Path,
    base_dir: &Path,
    path: &str,
    errors: &mut Errors,
) -> Option<(PathBuf, Secret)> {
    let SecretText {
        value,
        path,
        file: read_from,
    } = secret_text(None, Some(file), base_dir, path, errors)??;
    let label = value
        .split("-----BEGIN ")
        .nth(1)
        .and_then(|rest| rest.split_once("-----"))
        .map(|(label, _)| label);
    let read_from = read_from.unwrap_or_else(|| resolve_path(base_dir, file));
    let problem = match label {
        Some("PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY") => {
            return Some((read_from, Secret::new(value)))
        }
        Some("ENCRYPTED PRIVATE KEY") => {
            "is encrypted with a passphrase; store the key without \
             one (`openssl pkey -in KEY -out KEY.plain`) and keep the file mode 0600"
        }
        _ => {
            "holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC \
             PRIVATE KEY)"
        }
    };
    errors.push(path, format!("{} {problem}", read_from.display()));
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_proposals_parse() {
        for text in DEFAULT_PROPOSALS {
            assert_eq!(
                IkeProposal::parse(text).map(|p| p.to_string()).as_deref(),
                Ok(*text)
            );
        }
        for text in DEFAULT_ESP_PROPOSALS {
            assert_eq!(
                EspProposal::parse(text).map(|p| p.to_string()).as_deref(),
                Ok(*text)
            );
        }
    }
}
