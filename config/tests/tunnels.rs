//! Every validation rule of `[[tunnels]]` and `[[tunnels.peers]]`, through the public
//! `parse`: the field path and a meaningful part of the message, and that the rule adds no
//! error of its own beyond the one expected.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use siteward_config::{
    Host, HostPort, Tunnel, WgPublicKey, WgSecretKey, WireguardPeer, WireguardTunnel, TUNNEL_KINDS,
};
use toml::{Table, Value};

use common::{assert_errors, assert_only_error, parse_ok, HEAD};

/// A key pair; the public half checked with `wg pubkey`.
const PRIVATE: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
const PUBLIC: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
/// Public keys of four peers.
const PEER_A: &str = "r9DP6n35wCbZ8LSn98HDtgRTXIjjTL9qOxOGA6MjEjM=";
const PEER_B: &str = "wsl9l9pQa229AV7jHUaxa6rw444ORqbulKa/5d/vEEw=";
const PEER_C: &str = "Qqrejq7P0lo1L6S1AgwT7BEoiY0QtYY5v4u4UkOMOFs=";
const PEER_D: &str = "IBh1miBOfA7AsDDNmSH2voBDEQHQBBrum5fSsiNXlXg=";
const PSK: &str = "TC/L1J2cXW0TMu0wYOKDk7OOvJwf+lWOjhEew/fokiI=";

fn table(pairs: &[(&str, Value)]) -> Table {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.clone()))
        .collect()
}

fn strings(list: &[&str]) -> Value {
    Value::Array(list.iter().map(|s| Value::from(*s)).collect())
}

/// A valid tunnel without peers.
fn tunnel(name: &str, interface: &str) -> Table {
    table(&[
        ("name", name.into()),
        ("kind", "wireguard".into()),
        ("interface", interface.into()),
        ("private_key", PRIVATE.into()),
    ])
}

/// A valid peer.
fn peer(name: &str, public_key: &str, allowed_ips: &[&str]) -> Table {
    table(&[
        ("name", name.into()),
        ("public_key", public_key.into()),
        ("allowed_ips", strings(allowed_ips)),
    ])
}

fn set(mut t: Table, key: &str, value: impl Into<Value>) -> Table {
    t.insert(key.to_string(), value.into());
    t
}

fn unset(mut t: Table, key: &str) -> Table {
    t.remove(key);
    t
}

fn with_peers(t: Table, peers: Vec<Table>) -> Table {
    set(
        t,
        "peers",
        Value::Array(peers.into_iter().map(Value::Table).collect()),
    )
}

/// The valid head and these `[[tunnels]]`.
fn file(tunnels: Vec<Table>) -> String {
    let file = table(&[(
        "tunnels",
        Value::Array(tunnels.into_iter().map(Value::Table).collect()),
    )]);
    format!("{HEAD}{}", toml::to_string(&file).unwrap())
}

/// One tunnel `wg-cloud` with one peer `gw-1` of PEER_A, changed by `tunnel` and `peer`.
fn one_peer(
    tunnel_change: impl Fn(Table) -> Table,
    peer_change: impl Fn(Table) -> Table,
) -> String {
    let t = tunnel_change(tunnel("cloud", "wg-cloud"));
    let p = peer_change(peer("gw-1", PEER_A, &["10.20.0.0/16"]));
    file(vec![with_peers(t, vec![p])])
}

fn only_tunnel(text: &str) -> Tunnel {
    let mut config = parse_ok(text);
    assert_eq!(config.tunnels.len(), 1, "{config:#?}");
    config.tunnels.remove(0)
}

fn wireguard(tunnel: &Tunnel) -> &WireguardTunnel {
    match &tunnel.kind {
        siteward_config::TunnelKind::Wireguard(wg) => wg,
        other => panic!("not a WireGuard tunnel: {other:?}"),
    }
}

fn only_peer(text: &str) -> WireguardPeer {
    let tunnel = only_tunnel(text);
    let wg = wireguard(&tunnel);
    assert_eq!(wg.peers.len(), 1);
    wg.peers[0].clone()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

// ---- The model ----------------------------------------------------------------------

#[test]
fn a_full_wireguard_tunnel_becomes_the_model() {
    let t = tunnel("cloud", "wg-cloud");
    let t = set(t, "listen_port", 51820);
    let t = set(t, "addresses", strings(&["10.99.0.1/24", "fd00:99::1/64"]));
    let t = set(t, "mtu", 1380);
    let gw = peer("gw-1", PEER_A, &["10.20.0.0/16", "fd00:20::/64"]);
    let gw = set(gw, "preshared_key", PSK);
    let gw = set(gw, "endpoint", "203.0.113.7:51820");
    let gw = set(gw, "persistent_keepalive", "25s");
    let named = set(
        peer("gw-2", PEER_B, &["10.21.0.0/16"]),
        "endpoint",
        "wg-gw2.example.net:51821",
    );
    let v6 = set(
        peer("gw-3", PEER_C, &["198.51.100.0/24"]),
        "endpoint",
        "[2001:db8::7]:443",
    );
    let waiting = peer("roadwarrior", PEER_D, &[]);
    let text = file(vec![with_peers(t, vec![gw, named, v6, waiting])]);

    let tunnel = only_tunnel(&text);
    assert_eq!(tunnel.name, "cloud");
    assert_eq!(tunnel.interface, "wg-cloud");
    assert_eq!(tunnel.kind.as_str(), "wireguard");
    let wg = wireguard(&tunnel);
    assert_eq!(wg.private_key, PRIVATE.parse::<WgSecretKey>().unwrap());
    assert_eq!(wg.listen_port, Some(51820));
    // Addresses keep their host bits: they are the interface's own.
    assert_eq!(wg.addresses, [net("10.99.0.1/24"), net("fd00:99::1/64")]);
    assert_eq!(wg.mtu, 1380);
    assert_eq!(wg.peers.len(), 4);

    let gw = &wg.peers[0];
    assert_eq!(gw.name, "gw-1");
    assert_eq!(gw.public_key.to_string(), PEER_A);
    assert_eq!(gw.preshared_key, Some(PSK.parse().unwrap()));
    assert_eq!(
        gw.endpoint,
        Some(HostPort {
            host: Host::Ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
            port: 51820
        })
    );
    assert_eq!(gw.allowed_ips, [net("10.20.0.0/16"), net("fd00:20::/64")]);
    assert_eq!(gw.persistent_keepalive, Some(25));

    // A DNS name stays a name, resolved when the tunnel starts.
    assert_eq!(
        wg.peers[1].endpoint,
        Some(HostPort {
            host: Host::Name("wg-gw2.example.net".into()),
            port: 51821
        })
    );
    assert_eq!(
        wg.peers[2].endpoint.as_ref().map(ToString::to_string),
        Some("[2001:db8::7]:443".to_string())
    );
    let waiting = &wg.peers[3];
    assert_eq!(
        (
            &waiting.endpoint,
            &waiting.preshared_key,
            waiting.persistent_keepalive
        ),
        (&None, &None, None)
    );
    assert!(waiting.allowed_ips.is_empty());
}

#[test]
fn defaults_of_a_tunnel() {
    let tunnel = only_tunnel(&file(vec![tunnel("cloud", "wg-cloud")]));
    let wg = wireguard(&tunnel);
    assert_eq!(wg.listen_port, None);
    assert!(wg.addresses.is_empty());
    assert_eq!(wg.mtu, 1420);
    assert!(wg.peers.is_empty());
    assert!(parse_ok(HEAD).tunnels.is_empty());
}

#[test]
fn the_known_kinds_are_listed() {
    assert_eq!(TUNNEL_KINDS, ["wireguard", "ipsec"]);
}

#[test]
fn several_tunnels_keep_their_order() {
    let text = file(vec![
        tunnel("cloud-a", "wg-a"),
        tunnel("cloud-b", "wg-b"),
        tunnel("cloud-c", "wg-c"),
    ]);
    let names: Vec<String> = parse_ok(&text)
        .tunnels
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["cloud-a", "cloud-b", "cloud-c"]);
}

#[test]
fn a_check_may_follow_a_tunnel_interface() {
    let text = format!(
        "{}[[checks]]\nname = \"ipaas\"\nkind = \"tcp\"\ntarget = \"ipaas.example.net:443\"\ninterface = \"wg-cloud\"\n",
        file(vec![tunnel("cloud", "wg-cloud")])
    );
    let config = parse_ok(&text);
    assert_eq!(
        config.checks[0].placement.interface.as_deref(),
        Some(config.tunnels[0].interface.as_str())
    );
}

// ---- Shape of the section -----------------------------------------------------------

#[test]
fn tunnels_and_peers_must_be_arrays_of_tables() {
    assert_only_error(
        &format!("{HEAD}[tunnels]\nname = \"cloud\"\n"),
        "tunnels",
        "must be an array of tables ([[tunnels]])",
    );
    assert_only_error(
        &file(vec![set(tunnel("cloud", "wg-cloud"), "peers", "gw-1")]),
        "tunnels[0].peers",
        "must be an array of tables ([[tunnels.peers]])",
    );
    assert_only_error(
        &format!("tunnels = [\"cloud\"]\n{HEAD}"),
        "tunnels[0]",
        "must be a table, found string",
    );
    assert_only_error(
        &file(vec![set(
            tunnel("cloud", "wg-cloud"),
            "peers",
            strings(&["gw-1"]),
        )]),
        "tunnels[0].peers[0]",
        "must be a table, found string",
    );
}

#[test]
fn unknown_keys_of_tunnels_and_peers() {
    assert_only_error(
        &one_peer(|t| set(t, "listen", 51820), |p| p),
        "tunnels[0].listen",
        "unknown key (kind \"wireguard\" takes name, kind, interface, private_key, private_key_file, listen_port, addresses, mtu, peers)",
    );
    assert_only_error(
        &one_peer(|t| t, |p| set(p, "AllowedIPs", "10.0.0.0/8")),
        "tunnels[0].peers[0].AllowedIPs",
        "unknown key (expected one of name, public_key, preshared_key, preshared_key_file, endpoint, allowed_ips, persistent_keepalive)",
    );
}

#[test]
fn wrong_types_are_reported_at_their_path() {
    assert_only_error(
        &one_peer(|t| set(t, "listen_port", "51820"), |p| p),
        "tunnels[0].listen_port",
        "invalid type: string \"51820\", expected i64",
    );
    assert_only_error(
        &one_peer(|t| t, |p| set(p, "allowed_ips", "10.20.0.0/16")),
        "tunnels[0].peers[0].allowed_ips",
        "invalid type: string \"10.20.0.0/16\", expected a sequence",
    );
    assert_only_error(
        &one_peer(
            |t| set(t, "addresses", Value::Array(vec![Value::from(1)])),
            |p| p,
        ),
        "tunnels[0].addresses[0]",
        "invalid type: integer `1`, expected a string",
    );
}

#[test]
fn limits() {
    let many: Vec<Table> = (0..257)
        .map(|i| tunnel(&format!("t{i}"), &format!("wg{i}")))
        .collect();
    assert_only_error(
        &file(many),
        "tunnels",
        "257 tunnels; at most 256 are supported",
    );
    let peers: Vec<Table> = (0..10_001)
        .map(|i| table(&[("name", format!("p{i}").into())]))
        .collect();
    assert_only_error(
        &file(vec![with_peers(tunnel("cloud", "wg-cloud"), peers)]),
        "tunnels[0].peers",
        "10001 peers; at most 10000 are supported",
    );
    let nets: Vec<String> = (0..1001u32)
        .map(|i| format!("{}/32", Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    let nets: Vec<&str> = nets.iter().map(String::as_str).collect();
    assert_only_error(
        &one_peer(|t| t, |p| set(p, "allowed_ips", strings(&nets))),
        "tunnels[0].peers[0].allowed_ips",
        "1001 allowed IPs; at most 1000 are supported per peer",
    );
    // 1000 are fine.
    assert_eq!(
        only_peer(&one_peer(
            |t| t,
            |p| set(p, "allowed_ips", strings(&nets[1..]))
        ))
        .allowed_ips
        .len(),
        1000
    );
    let addresses: Vec<String> = (0..257u32)
        .map(|i| format!("{}/24", Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    assert_only_error(
        &one_peer(|t| set(t, "addresses", strings(&addresses)), |p| p),
        "tunnels[0].addresses",
        "257 addresses; at most 256 are supported",
    );
}

// ---- Keys of the tunnel -------------------------------------------------------------

#[test]
fn required_keys_of_a_tunnel() {
    for (key, fragment) in [
        ("name", "missing: every tunnel needs a unique name"),
        ("kind", "missing: one of wireguard"),
        (
            "interface",
            "missing: the name of the tunnel's network interface",
        ),
        (
            "private_key",
            "missing: set private_key or private_key_file",
        ),
    ] {
        assert_only_error(
            &one_peer(|t| unset(t, key), |p| p),
            &format!("tunnels[0].{key}"),
            fragment,
        );
    }
}

#[test]
fn unknown_kind_lists_the_known_ones() {
    assert_only_error(
        &one_peer(|t| set(t, "kind", "gre"), |p| p),
        "tunnels[0].kind",
        "unknown kind \"gre\" (expected one of wireguard, ipsec)",
    );
}

#[test]
fn names_and_interfaces_follow_the_rules_of_checks() {
    assert_only_error(
        &one_peer(|t| set(t, "name", "cloud a"), |p| p),
        "tunnels[0].name",
        "must be 1-64 characters of letters, digits, '-', '_' and '.'",
    );
    for bad in ["wg-cloud-frankfurt", "wg/0", "wg:0", "wg 0", "", ".."] {
        assert_only_error(
            &one_peer(|t| set(t, "interface", bad), |p| p),
            "tunnels[0].interface",
            "is not a valid interface name (1-15 characters, no '/', ':' or spaces)",
        );
    }
    assert_eq!(
        only_tunnel(&one_peer(|t| set(t, "interface", "wg-cloud-frankf"), |p| p)).interface,
        "wg-cloud-frankf"
    );
}

#[test]
fn names_interfaces_and_ports_are_unique_among_tunnels() {
    let a = set(tunnel("cloud", "wg-a"), "listen_port", 51820);
    let b = set(tunnel("cloud", "wg-a"), "listen_port", 51820);
    let c = set(tunnel("other", "wg-c"), "listen_port", 51820);
    assert_errors(
        &file(vec![a, b, c]),
        &[
            (
                "tunnels[1].name",
                "duplicate tunnel name \"cloud\" (first used by tunnels[0])",
            ),
            (
                "tunnels[1].interface",
                "duplicate interface \"wg-a\" (first used by tunnels[0])",
            ),
            (
                "tunnels[1].listen_port",
                "duplicate listen_port 51820 (first used by tunnels[0])",
            ),
            (
                "tunnels[2].listen_port",
                "duplicate listen_port 51820 (first used by tunnels[0])",
            ),
        ],
    );
    // Tunnels without a port all get one from the kernel.
    let text = file(vec![tunnel("a", "wg-a"), tunnel("b", "wg-b")]);
    assert_eq!(parse_ok(&text).tunnels.len(), 2);
    // The first user is named even when it has errors of its own.
    let broken = set(tunnel("cloud", "wg-a"), "mtu", 1);
    assert_errors(
        &file(vec![broken, tunnel("cloud", "wg-b")]),
        &[
            ("tunnels[0].mtu", "must be between 1280 and 9000, got 1"),
            (
                "tunnels[1].name",
                "duplicate tunnel name \"cloud\" (first used by tunnels[0])",
            ),
        ],
    );
}

/// A key of a tunnel: its name, values out of range, the message (`{}` for the value),
/// values in range, and how the model holds it.
type RangeCase = (
    &'static str,
    &'static [i64],
    &'static str,
    &'static [i64],
    fn(&WireguardTunnel) -> Option<i64>,
);

#[test]
fn listen_port_and_mtu_ranges() {
    let cases: [RangeCase; 2] = [
        (
            "listen_port",
            &[0, 65536, -1],
            "must be between 1 and 65535, got {} (leave it out to let the kernel choose a port)",
            &[1, 65535],
            |wg| wg.listen_port.map(i64::from),
        ),
        (
            "mtu",
            &[1279, 9001, 0, -1, 70000],
            "must be between 1280 and 9000, got {}",
            &[1280, 9000],
            |wg| Some(i64::from(wg.mtu)),
        ),
    ];
    for (key, bad, message, good, read) in cases {
        for value in bad {
            assert_only_error(
                &one_peer(|t| set(t, key, *value), |p| p),
                &format!("tunnels[0].{key}"),
                &message.replace("{}", &value.to_string()),
            );
        }
        for value in good {
            let tunnel = only_tunnel(&one_peer(|t| set(t, key, *value), |p| p));
            assert_eq!(read(wireguard(&tunnel)), Some(*value), "{key}");
        }
    }
}

#[test]
fn addresses_are_interface_addresses_with_a_prefix() {
    for (address, fragment) in [
        ("10.99.0.1", "\"10.99.0.1\" needs a prefix length, e.g. \"10.99.0.1/32\""),
        ("fd00::1", "\"fd00::1\" needs a prefix length, e.g. \"fd00::1/128\""),
        ("10.99.0.1/33", "is not an address with a prefix length, like \"10.20.0.0/16\""),
        ("wg.example.net/24", "is not an address with a prefix length"),
        ("0.0.0.0/0", "0.0.0.0 cannot be an interface's address (networks routed to a peer go in its allowed_ips)"),
        ("::/0", ":: cannot be an interface's address"),
        ("224.0.0.5/32", "224.0.0.5 cannot be an interface's address"),
    ] {
        assert_only_error(
            &one_peer(|t| set(t, "addresses", strings(&["10.99.1.1/24", address])), |p| p),
            "tunnels[0].addresses[1]",
            fragment,
        );
    }
    assert_only_error(
        &one_peer(
            |t| set(t, "addresses", strings(&["10.99.0.1/24", "10.99.0.1/32"])),
            |p| p,
        ),
        "tunnels[0].addresses[1]",
        "duplicate address 10.99.0.1 (first used by tunnels[0].addresses[0])",
    );
}

// ---- Keys ---------------------------------------------------------------------------

#[test]
fn private_key_inline_or_file_not_both() {
    assert_only_error(
        &one_peer(|t| set(t, "private_key_file", "secrets/wg.key"), |p| p),
        "tunnels[0].private_key",
        "set either private_key or private_key_file, not both",
    );
    assert_only_error(
        &one_peer(
            |t| {
                set(
                    unset(t, "private_key"),
                    "private_key_file",
                    "secrets/wg.key",
                )
            },
            |p| p,
        ),
        "tunnels[0].private_key_file",
        "cannot read secret file /nonexistent/siteward-config-tests/secrets/wg.key",
    );
}

#[test]
fn malformed_keys() {
    let short = &PRIVATE[..43];
    assert_only_error(
        &one_peer(|t| set(t, "private_key", short), |p| p),
        "tunnels[0].private_key",
        "is not a WireGuard key: it must be 44 characters of base64 (32 bytes), as `wg genkey` prints, found 43 characters",
    );
    let hex = "a".repeat(64);
    assert_only_error(
        &one_peer(|t| t, |p| set(p, "public_key", hex.as_str())),
        "tunnels[0].peers[0].public_key",
        "found 64 characters",
    );
    let not_base64 = format!("{}*=", &PEER_A[..42]);
    assert_only_error(
        &one_peer(|t| t, |p| set(p, "public_key", not_base64.as_str())),
        "tunnels[0].peers[0].public_key",
        "is not a WireGuard key: it is not valid base64",
    );
    assert_only_error(
        &one_peer(|t| t, |p| set(p, "preshared_key", "c2hvcnQ=")),
        "tunnels[0].peers[0].preshared_key",
        "is not a WireGuard key",
    );
}

#[test]
fn a_key_around_spaces_is_taken() {
    let padded = format!(" {PSK}\n");
    let peer = only_peer(&one_peer(
        |t| t,
        |p| set(p, "preshared_key", padded.as_str()),
    ));
    assert_eq!(peer.preshared_key, Some(PSK.parse().unwrap()));
}

#[test]
fn preshared_key_inline_or_file_not_both() {
    assert_only_error(
        &one_peer(
            |t| t,
            |p| set(set(p, "preshared_key", PSK), "preshared_key_file", "gw.psk"),
        ),
        "tunnels[0].peers[0].preshared_key",
        "set either preshared_key or preshared_key_file, not both",
    );
}

// ---- Peers --------------------------------------------------------------------------

#[test]
fn required_keys_of_a_peer() {
    for (key, fragment) in [
        (
            "name",
            "missing: every peer needs a name, unique within its tunnel",
        ),
        ("public_key", "missing: the peer's public key"),
        (
            "allowed_ips",
            "missing: the networks this peer carries, e.g. [\"10.20.0.0/16\"] ([] for none)",
        ),
    ] {
        assert_only_error(
            &one_peer(|t| t, |p| unset(p, key)),
            &format!("tunnels[0].peers[0].{key}"),
            fragment,
        );
    }
    assert_only_error(
        &one_peer(|t| t, |p| set(p, "name", "gw 1")),
        "tunnels[0].peers[0].name",
        "must be 1-64 characters of letters, digits, '-', '_' and '.'",
    );
}

#[test]
fn peer_names_and_keys_are_unique_within_a_tunnel() {
    let peers = vec![
        peer("gw-1", PEER_A, &["10.20.0.0/16"]),
        peer("gw-1", PEER_B, &["10.21.0.0/16"]),
        peer("gw-3", PEER_A, &["10.22.0.0/16"]),
    ];
    assert_errors(
        &file(vec![with_peers(tunnel("cloud", "wg-cloud"), peers)]),
        &[
            (
                "tunnels[0].peers[1].name",
                "duplicate peer name \"gw-1\" (first used by tunnels[0].peers[0])",
            ),
            (
                "tunnels[0].peers[2].public_key",
                &format!("duplicate public key {PEER_A} (first used by tunnels[0].peers[0])"),
            ),
        ],
    );
    // Two tunnels may each have a peer of the same name and key (the same gateway).
    let a = with_peers(
        tunnel("a", "wg-a"),
        vec![peer("gw-1", PEER_A, &["10.20.0.0/16"])],
    );
    let b = with_peers(
        tunnel("b", "wg-b"),
        vec![peer("gw-1", PEER_A, &["10.21.0.0/16"])],
    );
    assert_eq!(parse_ok(&file(vec![a, b])).tunnels.len(), 2);
}

#[test]
fn a_peer_cannot_have_the_tunnels_own_key() {
    assert_only_error(
        &one_peer(|t| t, |p| set(p, "public_key", PUBLIC)),
        "tunnels[0].peers[0].public_key",
        "is this tunnel's own public key (of its private_key): a peer is the other end of the tunnel",
    );
}

#[test]
fn endpoints_are_host_and_port() {
    for (endpoint, fragment) in [
        ("203.0.113.7", "\"203.0.113.7\" needs a port (host:port)"),
        ("wg-gw1.example.net", "needs a port (host:port)"),
        ("203.0.113.7:0", "\"0\" is not a port (1-65535)"),
        ("203.0.113.7:65536", "is not a port"),
        ("gw example:51820", "is not a valid host name or IP address"),
        (
            "[wg.example.net]:51820",
            "only an IPv6 address goes between [ and ]",
        ),
        ("2001:db8::7", "needs a port (host:port)"),
    ] {
        assert_only_error(
            &one_peer(|t| t, |p| set(p, "endpoint", endpoint)),
            "tunnels[0].peers[0].endpoint",
            fragment,
        );
    }
}

#[test]
fn persistent_keepalive_is_whole_seconds() {
    for (value, fragment) in [
        (Value::from(25), "write a duration such as \"25s\", not a bare number"),
        (Value::from(30), "write a duration such as \"30s\", not a bare number"),
        (Value::from(0), "write a duration such as \"25s\", not a bare number"),
        (Value::from(true), "must be a duration such as \"25s\", found boolean"),
        (Value::from("0s"), "0s is out of range: must be whole seconds from 1s to 65535s (leave it out to send no keepalives)"),
        (Value::from("1500ms"), "1s 500ms is out of range: must be whole seconds"),
        (Value::from("65536s"), "18h 12m 16s is out of range"),
        (Value::from("often"), "\"often\" is not a duration like \"10s\" or \"1m30s\""),
    ] {
        assert_only_error(
            &one_peer(|t| t, |p| set(p, "persistent_keepalive", value.clone())),
            "tunnels[0].peers[0].persistent_keepalive",
            fragment,
        );
    }
    for (text, seconds) in [("1s", 1), ("25s", 25), ("2m", 120), ("65535s", 65535)] {
        let peer = only_peer(&one_peer(|t| t, |p| set(p, "persistent_keepalive", text)));
        assert_eq!(peer.persistent_keepalive, Some(seconds), "{text}");
    }
}

// ---- Allowed IPs --------------------------------------------------------------------

#[test]
fn allowed_ips_are_networks() {
    for (allowed, fragment) in [
        (
            "10.20.0.1/16",
            "\"10.20.0.1/16\" has host bits set: write the network \"10.20.0.0/16\"",
        ),
        ("fd00:20::1/64", "write the network \"fd00:20::/64\""),
        (
            "10.20.0.5",
            "\"10.20.0.5\" needs a prefix length, e.g. \"10.20.0.5/32\"",
        ),
        ("10.20.0.0/", "is not an address with a prefix length"),
        ("any", "is not an address with a prefix length"),
    ] {
        assert_only_error(
            &one_peer(
                |t| t,
                |p| set(p, "allowed_ips", strings(&["192.0.2.0/24", allowed])),
            ),
            "tunnels[0].peers[0].allowed_ips[1]",
            fragment,
        );
    }
    let peer = only_peer(&one_peer(
        |t| t,
        |p| {
            set(
                p,
                "allowed_ips",
                strings(&["0.0.0.0/0", "::/0", "10.20.0.5/32"]),
            )
        },
    ));
    assert_eq!(
        peer.allowed_ips,
        [net("0.0.0.0/0"), net("::/0"), net("10.20.0.5/32")]
    );
}

#[test]
fn duplicate_allowed_ips_of_a_peer() {
    assert_only_error(
        &one_peer(
            |t| t,
            |p| {
                set(
                    p,
                    "allowed_ips",
                    strings(&["10.20.0.0/16", "192.0.2.0/24", "10.20.0.0/16"]),
                )
            },
        ),
        "tunnels[0].peers[0].allowed_ips[2]",
        "duplicate allowed IP 10.20.0.0/16 (first used by tunnels[0].peers[0].allowed_ips[0])",
    );
    // A network inside another of the same peer is redundant, not ambiguous.
    let peer = only_peer(&one_peer(
        |t| t,
        |p| set(p, "allowed_ips", strings(&["10.0.0.0/8", "10.20.0.0/16"])),
    ));
    assert_eq!(peer.allowed_ips.len(), 2);
}

#[test]
fn allowed_ips_of_two_peers_may_not_overlap() {
    let peers = vec![
        peer("gw-1", PEER_A, &["10.20.0.0/16", "fd00:20::/64"]),
        // Equal, inside, and holding one of gw-1's.
        peer("gw-2", PEER_B, &["10.20.0.0/16", "192.0.2.0/24"]),
        peer("gw-3", PEER_C, &["10.20.5.0/24", "fd00::/16"]),
    ];
    assert_errors(
        &file(vec![with_peers(tunnel("cloud", "wg-cloud"), peers)]),
        &[
            (
                "tunnels[0].peers[1].allowed_ips[0]",
                "10.20.0.0/16 overlaps 10.20.0.0/16 of peer \"gw-1\" (tunnels[0].peers[0].allowed_ips[0]): a destination must belong to one peer only",
            ),
            (
                "tunnels[0].peers[2].allowed_ips[0]",
                "10.20.5.0/24 overlaps 10.20.0.0/16 of peer \"gw-2\" (tunnels[0].peers[1].allowed_ips[0])",
            ),
            (
                "tunnels[0].peers[2].allowed_ips[1]",
                "fd00::/16 overlaps fd00:20::/64 of peer \"gw-1\" (tunnels[0].peers[0].allowed_ips[1])",
            ),
        ],
    );
}

#[test]
fn neighbouring_networks_and_other_families_do_not_overlap() {
    let peers = vec![
        peer("gw-1", PEER_A, &["10.20.0.0/24", "::/0"]),
        peer("gw-2", PEER_B, &["10.20.1.0/24", "128.0.0.0/1"]),
        peer("gw-3", PEER_C, &["0.0.0.0/5", "10.20.2.0/23"]),
    ];
    let tunnel = only_tunnel(&file(vec![with_peers(tunnel("cloud", "wg-cloud"), peers)]));
    assert_eq!(wireguard(&tunnel).peers.len(), 3);
}

#[test]
fn allowed_ips_of_two_tunnels_may_not_overlap() {
    let a = with_peers(
        tunnel("cloud-a", "wg-a"),
        vec![peer("gw-1", PEER_A, &["10.20.0.0/16"])],
    );
    let b = with_peers(
        tunnel("cloud-b", "wg-b"),
        vec![peer("gw-9", PEER_B, &["10.0.0.0/8"])],
    );
    assert_only_error(
        &file(vec![a, b]),
        "tunnels[1].peers[0].allowed_ips[0]",
        "10.0.0.0/8 overlaps 10.20.0.0/16 of tunnel \"cloud-a\" (tunnels[0].peers[0].allowed_ips[0]): the routes of the two tunnels would collide",
    );
}

#[test]
fn an_overlap_is_found_even_when_the_other_peer_has_errors() {
    let broken = set(
        peer("gw-1", PEER_A, &["10.20.0.0/16"]),
        "endpoint",
        "nowhere",
    );
    let peers = vec![broken, peer("gw-2", PEER_B, &["10.20.0.0/16"])];
    assert_errors(
        &file(vec![with_peers(tunnel("cloud", "wg-cloud"), peers)]),
        &[
            ("tunnels[0].peers[0].endpoint", "needs a port"),
            (
                "tunnels[0].peers[1].allowed_ips[0]",
                "overlaps 10.20.0.0/16 of peer \"gw-1\"",
            ),
        ],
    );
}

#[test]
fn every_error_of_a_tunnel_is_reported_together() {
    let t = set(tunnel("cloud a", "wg-cloud"), "mtu", 100);
    let p = set(
        peer("gw-1", "nope", &["10.20.0.1/16"]),
        "persistent_keepalive",
        25,
    );
    assert_errors(
        &file(vec![with_peers(t, vec![p])]),
        &[
            ("tunnels[0].name", "must be 1-64 characters"),
            ("tunnels[0].mtu", "must be between 1280 and 9000, got 100"),
            ("tunnels[0].peers[0].public_key", "is not a WireGuard key"),
            ("tunnels[0].peers[0].allowed_ips[0]", "has host bits set"),
            (
                "tunnels[0].peers[0].persistent_keepalive",
                "not a bare number",
            ),
        ],
    );
}

#[test]
fn public_keys_print_as_base64_and_secret_keys_do_not() {
    let public: WgPublicKey = PUBLIC.parse().unwrap();
    assert_eq!(public.to_string(), PUBLIC);
    let private: WgSecretKey = PRIVATE.parse().unwrap();
    assert_eq!(private.public_key(), public);
    assert_eq!(format!("{private:?}"), "WgSecretKey(***)");
}
