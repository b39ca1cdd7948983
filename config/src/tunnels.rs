//! `[[tunnels]]`: site-to-site tunnels and their peers, from [`raw`](crate::raw) tables to
//! [`Tunnel`]s, collecting every error with its path like the rest of validation. What
//! every kind shares is here (names, kind keys, addresses, MTU, networks and the overlap
//! check across all tunnels), with the WireGuard kind; IPsec is in [`ipsec`](crate::ipsec).

use std::hash::Hash;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use crate::model::{HostPort, Tunnel, TunnelKind, WireguardPeer, WireguardTunnel, TUNNEL_KINDS};
use crate::raw::{tunnel_keys_of_kind, RawPeer, RawTunnel};
use crate::validate::{
    any_key_of, array_of_tables, check_interface_name, check_name, decode_table, duration,
    host_port, keys_of, kind, kind_keys_hint, required, secret_text, Errors, FirstUse,
};
use crate::{WgPublicKey, WgSecretKey};

const MAX_TUNNELS: usize = 256;
const MAX_PEERS: usize = 10_000;
const MAX_ADDRESSES: usize = 256;
/// Keys every tunnel has; the others are listed by [`tunnel_keys_of_kind`].
const COMMON_TUNNEL_KEYS: &[&str] = &["name", "kind", "interface"];
/// wg-quick's default: a 1500-byte link less WireGuard's largest overhead (over IPv6).
const DEFAULT_MTU: u16 = 1420;
/// The least IPv6 allows on a link.
const MIN_MTU: u16 = 1280;
/// Jumbo frames.
const MAX_MTU: u16 = 9000;
/// WireGuard's keepalive interval is a 16-bit count of seconds.
const MAX_KEEPALIVE_SECS: u64 = u16::MAX as u64;

/// A list of networks and what its messages call an entry.
pub(crate) struct NetworkList {
    pub(crate) entry: &'static str,
    pub(crate) entries: &'static str,
    pub(crate) max: usize,
    /// Said after the limit, e.g. " per peer".
    pub(crate) limit_scope: &'static str,
}

const ALLOWED_IPS: NetworkList = NetworkList {
    entry: "allowed IP",
    entries: "allowed IPs",
    max: 1_000,
    limit_scope: " per peer",
};

/// The list of a tunnel a network is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum RouteList {
    /// A WireGuard peer's `allowed_ips`: routed to that peer.
    AllowedIps,
    /// An IPsec tunnel's `local_ts`: not routed, but must not lead into another tunnel.
    LocalTs,
    /// An IPsec tunnel's `remote_ts`: routed through that tunnel.
    RemoteTs,
}

/// A network of a tunnel, with where it is written: tunnel, peer (0 for IPsec), list, entry.
pub(crate) struct Route {
    pub(crate) net: IpNet,
    pub(crate) at: (usize, usize, RouteList, usize),
}

impl Route {
    fn path(&self) -> String {
        let (tunnel, peer, list, entry) = self.at;
        match list {
            RouteList::AllowedIps => {
                format!("tunnels[{tunnel}].peers[{peer}].allowed_ips[{entry}]")
            }
            RouteList::LocalTs => format!("tunnels[{tunnel}].local_ts[{entry}]"),
            RouteList::RemoteTs => format!("tunnels[{tunnel}].remote_ts[{entry}]"),
        }
    }

    /// Where a destination leads: a WireGuard peer, or an IPsec tunnel.
    fn owner(&self) -> (usize, usize) {
        (self.at.0, self.at.1)
    }

    /// Overlapping networks conflict when they lead to different owners and one of them is
    /// routed: tunnels may share their local side, not a destination.
    fn conflicts_with(&self, other: &Route) -> bool {
        self.owner() != other.owner()
            && !(self.at.2 == RouteList::LocalTs && other.at.2 == RouteList::LocalTs)
    }
}

pub(crate) fn tunnels(table: &toml::Table, base_dir: &Path, errors: &mut Errors) -> Vec<Tunnel> {
    let Some(array) = table.get("tunnels").and_then(|value| {
        array_of_tables(value, "tunnels", "tunnels", MAX_TUNNELS, "tunnels", errors)
    }) else {
        return Vec::new();
    };
    let mut tunnels = Vec::with_capacity(array.len());
    let mut names = FirstUse::new();
    let mut interfaces = FirstUse::new();
    let mut ports = FirstUse::new();
    let mut routes = Vec::new();
    for (i, value) in array.iter().enumerate() {
        let path = format!("tunnels[{i}]");
        // Counted before decoding, so that a later duplicate still names the first tunnel
        // even when that one had other errors.
        let text_of = |key: &str| value.get(key).and_then(toml::Value::as_str);
        if let Some(name) = text_of("name") {
            let what = format!("tunnel name \"{name}\"");
            names.note(name, &path, format!("{path}.name"), what, errors);
        }
        if let Some(interface) = text_of("interface") {
            let what = format!("interface \"{interface}\"");
            interfaces.note(interface, &path, format!("{path}.interface"), what, errors);
        }
        // Port 0 and out-of-range ones get their own error.
        if let Some(port) = value
            .get("listen_port")
            .and_then(toml::Value::as_integer)
            .filter(|port| (1..=65535).contains(port))
        {
            let what = format!("listen_port {port}");
            ports.note(port, &path, format!("{path}.listen_port"), what, errors);
        }
        let Some(raw) = decode_table::<RawTunnel>(value, &path, &tunnel_keys_hint, errors) else {
            continue;
        };
        if let Some(tunnel) = tunnel(raw, i, base_dir, &mut routes, errors) {
            tunnels.push(tunnel);
        }
    }
    report_overlaps(routes, array, errors);
    tunnels
}

fn tunnel(
    raw: RawTunnel,
    index: usize,
    base_dir: &Path,
    routes: &mut Vec<Route>,
    errors: &mut Errors,
) -> Option<Tunnel> {
    let before = errors.0.len();
    let at = |field: &str| format!("tunnels[{index}].{field}");
    required(
        raw.name.as_deref(),
        at("name"),
        "every tunnel needs a unique name",
        check_name,
        errors,
    );
    required(
        raw.interface.as_deref(),
        at("interface"),
        "the name of the tunnel's network interface, e.g. \"wg-cloud\"",
        check_interface_name,
        errors,
    );
    // Without a known kind, the kind's own keys cannot be validated.
    let kind = kind(raw.kind.as_deref(), TUNNEL_KINDS, at("kind"), errors);
    if let Some(kind) = kind {
        let allowed = tunnel_keys_of_kind(kind);
        for key in raw.kind_keys_set() {
            if !allowed.contains(&key) {
                errors.push(at(key), format!("not used by kind \"{kind}\""));
            }
        }
    }
    let kind = match kind {
        Some("wireguard") => {
            wireguard(&raw, index, base_dir, routes, errors).map(TunnelKind::Wireguard)
        }
        Some("ipsec") => {
            crate::ipsec::ipsec(&raw, index, base_dir, routes, errors).map(TunnelKind::Ipsec)
        }
        _ => None,
    };
    if errors.0.len() != before {
        return None;
    }
    Some(Tunnel {
        name: raw.name?,
        interface: raw.interface?,
        kind: kind?,
    })
}

/// The keys a tunnel may have, for the unknown-key message.
fn tunnel_keys_hint(table: &toml::Table) -> String {
    let keys = (COMMON_TUNNEL_KEYS, keys_of::<RawTunnel>());
    kind_keys_hint(table, TUNNEL_KINDS, keys, tunnel_keys_of_kind)
}

fn wireguard(
    raw: &RawTunnel,
    index: usize,
    base_dir: &Path,
    routes: &mut Vec<Route>,
    errors: &mut Errors,
) -> Option<WireguardTunnel> {
    let at = |field: &str| format!("tunnels[{index}].{field}");
    let private_key = match secret_key(
        raw.private_key.as_deref(),
        raw.private_key_file.as_deref(),
        base_dir,
        &at("private_key"),
        errors,
    ) {
        Some(Some(key)) => Some(key),
        Some(None) => {
            errors.push(
                at("private_key"),
                "missing: set private_key or private_key_file (`wg genkey` makes a key)",
            );
            None
        }
        None => None,
    };
    let listen_port = match raw.listen_port {
        None => Some(None),
        Some(port) => match u16::try_from(port) {
            Ok(port) if port != 0 => Some(Some(port)),
            _ => {
                errors.push(
                    at("listen_port"),
                    format!(
                        "must be between 1 and 65535, got {port} \
                         (leave it out to let the kernel choose a port)"
                    ),
                );
                None
            }
        },
    };
    let addresses = addresses(
        raw.addresses.as_deref().unwrap_or_default(),
        &at("addresses"),
        errors,
    );
    let mtu = mtu(raw.mtu, DEFAULT_MTU, &at("mtu"), errors);
    let own_public_key = private_key.as_ref().map(WgSecretKey::public_key);
    let peers = peers(
        raw.peers.as_ref(),
        index,
        own_public_key,
        base_dir,
        routes,
        errors,
    );
    Some(WireguardTunnel {
        private_key: private_key?,
        listen_port: listen_port?,
        addresses: addresses?,
        mtu: mtu?,
        peers,
    })
}

/// A private or pre-shared key, inline or from its `_file`; `Some(None)` when neither is given.
fn secret_key(
    inline: Option<&str>,
    file: Option<&Path>,
    base_dir: &Path,
    path: &str,
    errors: &mut Errors,
) -> Option<Option<WgSecretKey>> {
    let Some(text) = secret_text(inline, file, base_dir, path, errors)? else {
        return Some(None);
    };
    // Spaces and line breaks around a key are never part of it (`wg genkey > file`).
    match text.value.trim().parse::<WgSecretKey>() {
        Ok(key) => Some(Some(key)),
        Err(e) => {
            let message = match &text.file {
                Some(file) => format!("the content of {} {e}", file.display()),
                None => e.to_string(),
            };
            errors.push(text.path, message);
            None
        }
    }
}

/// The interface's MTU, `default` when not set.
pub(crate) fn mtu(
    value: Option<i64>,
    default: u16,
    path: &str,
    errors: &mut Errors,
) -> Option<u16> {
    let Some(mtu) = value else {
        return Some(default);
    };
    let valid = u16::try_from(mtu)
        .ok()
        .filter(|mtu| (MIN_MTU..=MAX_MTU).contains(mtu));
    if valid.is_none() {
        errors.push(
            path,
            format!("must be between {MIN_MTU} and {MAX_MTU}, got {mtu}"),
        );
    }
    valid
}

/// `false` (reported) when a list has more than `max` entries; `scope` follows the limit
/// in the message (" per peer").
pub(crate) fn within_limit(
    len: usize,
    (max, entries, scope): (usize, &str, &str),
    path: &str,
    errors: &mut Errors,
) -> bool {
    if len > max {
        errors.push(
            path,
            format!("{len} {entries}; at most {max} are supported{scope}"),
        );
        return false;
    }
    true
}

/// A list's entries as `read` makes them (it reports what is wrong with one), each unique
/// by the key it gives with the entry (a duplicate is reported, naming the first, as the
/// `what` it gives); `None` if any is wrong.
pub(crate) fn unique_entries<K: Eq + Hash, T>(
    list: &[String],
    path: &str,
    errors: &mut Errors,
    mut read: impl FnMut(&str, &str, &mut Errors) -> Option<(K, String, T)>,
) -> Option<Vec<T>> {
    let before = errors.0.len();
    let mut seen = FirstUse::new();
    let mut entries = Vec::with_capacity(list.len());
    for (j, text) in list.iter().enumerate() {
        let at = format!("{path}[{j}]");
        if let Some((key, what, entry)) = read(text, &at, errors) {
            seen.note(key, &at, at.clone(), what, errors);
            entries.push(entry);
        }
    }
    (errors.0.len() == before).then_some(entries)
}

/// The interface's addresses with their prefixes; `None` if one is wrong (reported).
pub(crate) fn addresses(list: &[String], path: &str, errors: &mut Errors) -> Option<Vec<IpNet>> {
    if !within_limit(list.len(), (MAX_ADDRESSES, "addresses", ""), path, errors) {
        return None;
    }
    unique_entries(list, path, errors, |text, at, errors| match cidr(text) {
        Err(msg) => {
            errors.push(at, msg);
            None
        }
        Ok(net) if net.addr().is_unspecified() || net.addr().is_multicast() => {
            errors.push(
                at,
                format!(
                    "{} cannot be an interface's address (networks routed to a peer go in its allowed_ips)",
                    net.addr()
                ),
            );
            None
        }
        Ok(net) => Some((net.addr(), format!("address {}", net.addr()), net)),
    })
}

fn peers(
    value: Option<&toml::Value>,
    tunnel: usize,
    own_public_key: Option<WgPublicKey>,
    base_dir: &Path,
    routes: &mut Vec<Route>,
    errors: &mut Errors,
) -> Vec<WireguardPeer> {
    let path = format!("tunnels[{tunnel}].peers");
    let Some(array) = value.and_then(|value| {
        array_of_tables(value, &path, "tunnels.peers", MAX_PEERS, "peers", errors)
    }) else {
        return Vec::new();
    };
    let mut peers = Vec::with_capacity(array.len());
    let mut names = FirstUse::new();
    let mut keys = FirstUse::new();
    for (p, value) in array.iter().enumerate() {
        let peer_path = format!("{path}[{p}]");
        // Counted before decoding, like the tunnels' names.
        if let Some(name) = value.get("name").and_then(toml::Value::as_str) {
            let what = format!("peer name \"{name}\"");
            names.note(name, &peer_path, format!("{peer_path}.name"), what, errors);
        }
        if let Some(key) = value
            .get("public_key")
            .and_then(toml::Value::as_str)
            .and_then(|text| text.parse::<WgPublicKey>().ok())
        {
            let what = format!("public key {key}");
            keys.note(
                key,
                &peer_path,
                format!("{peer_path}.public_key"),
                what,
                errors,
            );
        }
        let Some(raw) = decode_table::<RawPeer>(value, &peer_path, &any_key_of::<RawPeer>, errors)
        else {
            continue;
        };
        if let Some(peer) = peer(raw, (tunnel, p), own_public_key, base_dir, routes, errors) {
            peers.push(peer);
        }
    }
    peers
}

fn peer(
    raw: RawPeer,
    (tunnel, index): (usize, usize),
    own_public_key: Option<WgPublicKey>,
    base_dir: &Path,
    routes: &mut Vec<Route>,
    errors: &mut Errors,
) -> Option<WireguardPeer> {
    let before = errors.0.len();
    let at = |field: &str| format!("tunnels[{tunnel}].peers[{index}].{field}");
    required(
        raw.name.as_deref(),
        at("name"),
        "every peer needs a name, unique within its tunnel",
        check_name,
        errors,
    );
    let public_key = match raw.public_key.as_deref() {
        None => {
            errors.push(
                at("public_key"),
                "missing: the peer's public key (`wg pubkey` prints it from the peer's private key)",
            );
            None
        }
        Some(text) => match text.parse::<WgPublicKey>() {
            Err(e) => {
                errors.push(at("public_key"), e.to_string());
                None
            }
            Ok(key) if Some(key) == own_public_key => {
                errors.push(
                    at("public_key"),
                    "is this tunnel's own public key (of its private_key): \
                     a peer is the other end of the tunnel",
                );
                None
            }
            Ok(key) => Some(key),
        },
    };
    let preshared_key = secret_key(
        raw.preshared_key.as_deref(),
        raw.preshared_key_file.as_deref(),
        base_dir,
        &at("preshared_key"),
        errors,
    );
    let endpoint: Option<Option<HostPort>> = match raw.endpoint.as_deref() {
        None => Some(None),
        Some(text) => host_port(text, None, &at("endpoint"), errors).map(Some),
    };
    let allowed_ips = match raw.allowed_ips.as_deref() {
        None => {
            errors.push(
                at("allowed_ips"),
                "missing: the networks this peer carries, e.g. [\"10.20.0.0/16\"] ([] for none)",
            );
            None
        }
        Some(list) => {
            let nets = networks(list, &at("allowed_ips"), &ALLOWED_IPS, errors);
            // Kept even if this peer has other errors: overlaps with it are still found.
            routes.extend(nets.iter().map(|&(entry, net)| Route {
                net,
                at: (tunnel, index, RouteList::AllowedIps, entry),
            }));
            Some(nets.into_iter().map(|(_, net)| net).collect())
        }
    };
    let persistent_keepalive = keepalive(
        raw.persistent_keepalive.as_ref(),
        &at("persistent_keepalive"),
        errors,
    );
    if errors.0.len() != before {
        return None;
    }
    Some(WireguardPeer {
        name: raw.name?,
        public_key: public_key?,
        preshared_key: preshared_key?,
        endpoint: endpoint?,
        allowed_ips: allowed_ips?,
        persistent_keepalive: persistent_keepalive?,
    })
}

/// The valid networks of a list (a peer's `allowed_ips`, `local_ts`, `remote_ts`), with
/// their index; the others are reported.
pub(crate) fn networks(
    list: &[String],
    path: &str,
    kind: &NetworkList,
    errors: &mut Errors,
) -> Vec<(usize, IpNet)> {
    let limit = (kind.max, kind.entries, kind.limit_scope);
    if !within_limit(list.len(), limit, path, errors) {
        return Vec::new();
    }
    let mut seen = FirstUse::new();
    let mut nets = Vec::with_capacity(list.len());
    for (j, text) in list.iter().enumerate() {
        let at = format!("{path}[{j}]");
        match cidr(text) {
            Err(msg) => errors.push(at, msg),
            // A route is to a network; "10.20.0.1/16" is most likely a typo for one.
            Ok(net) if net != net.trunc() => errors.push(
                at,
                format!(
                    "\"{text}\" has host bits set: write the network \"{}\"",
                    net.trunc()
                ),
            ),
            Ok(net) => {
                let before = errors.0.len();
                seen.note(
                    net,
                    &at,
                    at.clone(),
                    format!("{} {net}", kind.entry),
                    errors,
                );
                if errors.0.len() == before {
                    nets.push((j, net));
                }
            }
        }
    }
    nets
}

/// A network with its prefix length, e.g. `10.20.0.0/16` or `fd00:20::1/64`.
pub(crate) fn cidr(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .map_err(|_| match text.parse::<IpAddr>() {
            Ok(ip) => format!(
                "\"{text}\" needs a prefix length, e.g. \"{ip}/{}\"",
                if ip.is_ipv4() { 32 } else { 128 }
            ),
            Err(_) => format!(
                "\"{text}\" is not an address with a prefix length, like \"10.20.0.0/16\" or \"fd00:20::/64\""
            ),
        })
}

/// Seconds between keepalives; `Some(None)` when not set.
fn keepalive(value: Option<&toml::Value>, path: &str, errors: &mut Errors) -> Option<Option<u16>> {
    let text = match value {
        None => return Some(None),
        Some(toml::Value::String(text)) => text,
        // wg's bare seconds would read as a unit-less number here, unlike every other duration.
        Some(toml::Value::Integer(n)) => {
            let example = if (1..=65535).contains(n) {
                format!("{n}s")
            } else {
                "25s".to_string()
            };
            errors.push(
                path,
                format!("write a duration such as \"{example}\", not a bare number"),
            );
            return None;
        }
        Some(other) => {
            errors.push(
                path,
                format!(
                    "must be a duration such as \"25s\", found {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    let interval = duration(text, path, errors)?;
    let seconds = interval.as_secs();
    if interval.subsec_nanos() != 0 || !(1..=MAX_KEEPALIVE_SECS).contains(&seconds) {
        errors.push(
            path,
            format!(
                "{} is out of range: must be whole seconds from 1s to {MAX_KEEPALIVE_SECS}s \
                 (leave it out to send no keepalives)",
                humantime::format_duration(interval)
            ),
        );
        return None;
    }
    u16::try_from(seconds).ok().map(Some)
}

/// Reports every network that conflicts with an overlapping one (equal, or one holding the
/// other) of another peer or tunnel. A destination must lead to one peer, two tunnels'
/// routes to the same network would collide, and an IPsec tunnel's local side must not be
/// routed into another tunnel.
fn report_overlaps(mut routes: Vec<Route>, tunnels: &[toml::Value], errors: &mut Errors) {
    for (later, earlier) in overlaps(&mut routes) {
        let (route, first) = (&routes[later], &routes[earlier]);
        let name_of = |value: Option<&toml::Value>, what: &str| {
            value
                .and_then(|v| v.get("name"))
                .and_then(toml::Value::as_str)
                .map(|name| format!(" of {what} \"{name}\""))
                .unwrap_or_default()
        };
        let tunnel = tunnels.get(first.at.0);
        let message = if route.at.2 == RouteList::LocalTs {
            format!(
                "{} overlaps {}{} ({}): a tunnel's local_ts cannot lie in networks routed \
                 to another tunnel",
                route.net,
                first.net,
                name_of(tunnel, "tunnel"),
                first.path()
            )
        } else if first.at.2 == RouteList::LocalTs {
            format!(
                "{} overlaps the local_ts {}{} ({}): another tunnel's local side cannot be \
                 routed here",
                route.net,
                first.net,
                name_of(tunnel, "tunnel"),
                first.path()
            )
        } else if route.at.0 == first.at.0 {
            let peer = tunnel
                .and_then(|t| t.get("peers"))
                .and_then(|peers| peers.get(first.at.1));
            format!(
                "{} overlaps {}{} ({}): a destination must belong to one peer only",
                route.net,
                first.net,
                name_of(peer, "peer"),
                first.path()
            )
        } else {
            format!(
                "{} overlaps {}{} ({}): the routes of the two tunnels would collide",
                route.net,
                first.net,
                name_of(tunnel, "tunnel"),
                first.path()
            )
        };
        errors.push(route.path(), message);
    }
}

/// Overlapping networks that conflict ([`Route::conflicts_with`]), as (written later, written
/// earlier) indexes into `routes`, which this sorts; in file order. There is a pair whenever
/// two conflicting networks overlap, but a network is paired only with the narrowest
/// conflicting one holding it, so a network inside many others makes one error rather than
/// many.
fn overlaps(routes: &mut [Route]) -> Vec<(usize, usize)> {
    // Sorted by first address, widest first, CIDR blocks either nest or are apart: the
    // blocks still open when one is reached are exactly those holding it.
    routes.sort_by_key(|route| (route.net.network(), route.net.prefix_len(), route.at));
    let mut open: Vec<usize> = Vec::new();
    let mut overlaps = Vec::new();
    for i in 0..routes.len() {
        while let Some(&top) = open.last() {
            if routes[top].net.contains(&routes[i].net) {
                break;
            }
            open.pop();
        }
        if let Some(&other) = open
            .iter()
            .rev()
            .find(|&&o| routes[o].conflicts_with(&routes[i]))
        {
            // Reported at the one written later, naming the earlier.
            overlaps.push(if routes[i].at > routes[other].at {
                (i, other)
            } else {
                (other, i)
            });
        }
        open.push(i);
    }
    overlaps.sort_by_key(|&(later, earlier)| (routes[later].at, routes[earlier].at));
    overlaps
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Small networks in a small space, so that overlaps are common; both families.
    fn net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (0u8..16, 28u8..=32).prop_map(|(host, prefix)| {
                let ip = std::net::Ipv4Addr::new(10, 0, 0, host);
                IpNet::new(IpAddr::V4(ip), prefix).unwrap().trunc()
            }),
            (0u16..16, 124u8..=128).prop_map(|(host, prefix)| {
                let ip = std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, host);
                IpNet::new(IpAddr::V6(ip), prefix).unwrap().trunc()
            }),
        ]
    }

    fn list() -> impl Strategy<Value = RouteList> {
        prop_oneof![
            Just(RouteList::AllowedIps),
            Just(RouteList::LocalTs),
            Just(RouteList::RemoteTs),
        ]
    }

    #[test]
    fn common_and_kind_keys_together_are_exactly_the_raw_tunnel_fields() {
        use std::collections::BTreeSet;
        let mut listed: BTreeSet<&str> = COMMON_TUNNEL_KEYS.iter().copied().collect();
        for kind in TUNNEL_KINDS {
            listed.extend(tunnel_keys_of_kind(kind));
        }
        let fields: BTreeSet<&str> = keys_of::<RawTunnel>().iter().copied().collect();
        assert_eq!(listed, fields);

        // Every key that is not common is noticed when set.
        let every_key = "name = \"a\"\nkind = \"ipsec\"\ninterface = \"a\"\n\
            private_key = \"k\"\nprivate_key_file = \"f\"\nlisten_port = 1\n\
            addresses = []\nmtu = 1400\npeers = []\nlocal_addrs = []\nremote_addrs = []\n\
            local_id = \"a\"\nremote_id = \"b\"\nauth = \"psk\"\npsk = \"p\"\n\
            psk_file = \"f\"\ncert_file = \"c\"\nkey_file = \"k\"\nca_file = \"c\"\n\
            proposals = []\nesp_proposals = []\nlocal_ts = []\nremote_ts = []\n\
            dpd_delay = \"1s\"\ndpd_action = \"clear\"\nrekey_time = \"1h\"\n\
            child_rekey_time = \"1h\"\nchild_rekey_bytes = 1\nstart = \"trap\"\n\
            encap = true\nlocal_port = 1\nremote_port = 1\nfragmentation = true\n";
        let raw: RawTunnel = toml::from_str(every_key).unwrap();
        let set: BTreeSet<&str> = raw.kind_keys_set().into_iter().collect();
        let kind_keys: BTreeSet<&str> = fields
            .difference(&COMMON_TUNNEL_KEYS.iter().copied().collect())
            .copied()
            .collect();
        assert_eq!(set, kind_keys);
    }

    #[test]
    fn tunnels_share_local_networks_but_not_destinations() {
        let route = |tunnel, list, net: &str| Route {
            net: net.parse().unwrap(),
            at: (tunnel, 0, list, 0),
        };
        let local_a = route(0, RouteList::LocalTs, "10.1.0.0/16");
        let local_b = route(1, RouteList::LocalTs, "10.1.0.0/16");
        let remote_a = route(0, RouteList::RemoteTs, "10.1.0.0/16");
        let remote_b = route(1, RouteList::RemoteTs, "10.1.0.0/16");
        assert!(!local_a.conflicts_with(&local_b));
        assert!(!local_a.conflicts_with(&remote_a));
        assert!(local_a.conflicts_with(&remote_b));
        assert!(remote_a.conflicts_with(&remote_b));
    }

    proptest! {
        #[test]
        fn overlaps_agree_with_comparing_every_pair(
            entries in prop::collection::vec((0usize..2, 0usize..3, list(), net()), 0..16)
        ) {
            // As validation passes them: without a list's duplicates.
            let mut seen = std::collections::HashSet::new();
            let mut routes: Vec<Route> = entries
                .iter()
                .enumerate()
                .filter(|(_, entry)| seen.insert(**entry))
                .map(|(j, &(tunnel, peer, list, net))| Route { net, at: (tunnel, peer, list, j) })
                .collect();
            let found = overlaps(&mut routes);
            let overlap = |a: &Route, b: &Route| {
                a.conflicts_with(b) && (a.net.contains(&b.net) || b.net.contains(&a.net))
            };
            let any_pair = routes
                .iter()
                .enumerate()
                .any(|(i, a)| routes[i + 1..].iter().any(|b| overlap(a, b)));
            prop_assert_eq!(!found.is_empty(), any_pair);
            for &(later, earlier) in &found {
                prop_assert!(overlap(&routes[later], &routes[earlier]));
                prop_assert!(routes[later].at > routes[earlier].at);
            }
            // Every route inside a conflicting one, or equal to one written earlier, is in a
            // pair. (Of equal networks of three owners, the earliest may be left unpaired
            // when the others pair with each other: each conflict still has its error.)
            for (i, route) in routes.iter().enumerate() {
                let inside_another = routes.iter().any(|other| {
                    overlap(route, other)
                        && other.net.contains(&route.net)
                        && (other.net != route.net || other.at < route.at)
                });
                let paired = found.iter().any(|&(a, b)| a == i || b == i);
                prop_assert!(!inside_another || paired, "{} not in a pair", route.path());
            }
        }
    }
}
