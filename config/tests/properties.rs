//! Property tests: `parse` never panics, whatever the text; its answer about random
//! `[[checks]]` and `[[tunnels]]` tables is coherent (errors point into the file, a valid
//! file keeps every entry); and valid tunnels written out come back as they were.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ipnet::IpNet;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

use siteward_config::{
    parse, Host, HostPort, Tunnel, TunnelKind, WgPublicKey, WgSecretKey, WireguardPeer,
    WireguardTunnel,
};

/// Relative files resolve here, and nothing exists here.
fn base_dir() -> &'static Path {
    Path::new("/nonexistent/siteward-config-proptest")
}

/// Every key a check can have, and one it cannot.
const CHECK_KEYS: &[&str] = &[
    "name",
    "kind",
    "target",
    "interval",
    "timeout",
    "rise",
    "fall",
    "source",
    "interface",
    "server_name",
    "ca_file",
    "insecure_skip_verify",
    "url",
    "preset",
    "expect_status",
    "body_contains",
    "query",
    "record_type",
    "expect_answer",
    "transport",
    "count",
    "max_loss_percent",
    "service_name",
    "route",
    "route_password",
    "route_password_file",
    "username",
    "secret",
    "secret_file",
    "request_uri",
    "from_user",
    "accept_any_status",
    "bogus",
];

/// Strings that are valid for some key, nearly valid, or hostile.
const STRINGS: &[&str] = &[
    "tcp",
    "tls",
    "http",
    "dns",
    "icmp",
    "oracle-tns",
    "sap-ni",
    "saprouter",
    "asterisk-ami",
    "sip-options",
    "ebs-listener",
    "db.corp.example:1521",
    "db.corp.example",
    "[::1]:1521",
    "[::1]",
    "2001:db8::1",
    "[db]:1",
    "192.0.2.1",
    "10.0.0.300",
    "h:0",
    "h:+80",
    "h:65536",
    "http://ebs.corp.example:8000",
    "https://[2001:db8::1]/x?y",
    "http://u:p@h/",
    "http://",
    "sip:pbx",
    "sips:",
    "/H/sapgw01/S/3300",
    "/H/a/S/1/W/pw",
    "/H/a/S/1/H/b/S/sapgw00",
    "10s",
    "0s",
    "50ms",
    "100ms",
    "25h",
    "3s",
    "udp",
    "A",
    "mx",
    "sap-icm",
    "wg-cloud",
    ".",
    "..",
    "",
    "é",
    "a\nb",
    "a\u{0}b",
    "/",
    "secrets/ami",
    // tunnels
    "wireguard",
    "ipsec",
    "wg0",
    "10.20.0.0/16",
    "10.20.0.1/16",
    "10.20.5.0/24",
    "fd00:20::/64",
    "0.0.0.0/0",
    "::/0",
    "224.0.0.1/32",
    "10.99.0.1/24",
    "203.0.113.7:51820",
    "[2001:db8::7]:51820",
    "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=",
    "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",
    "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw",
    "25s",
    "65536s",
    "secrets/wg.key",
];

/// Every key a tunnel can have, and one it cannot (`peers` is added on its own).
const TUNNEL_KEYS: &[&str] = &[
    "name",
    "kind",
    "interface",
    "private_key",
    "private_key_file",
    "listen_port",
    "addresses",
    "mtu",
    "bogus",
];

/// Every key a WireGuard peer can have, and one it cannot.
const PEER_KEYS: &[&str] = &[
    "name",
    "public_key",
    "preshared_key",
    "preshared_key_file",
    "endpoint",
    "allowed_ips",
    "persistent_keepalive",
    "bogus",
];

fn value() -> impl Strategy<Value = toml::Value> {
    let scalar = prop_oneof![
        4 => select(STRINGS).prop_map(|s| toml::Value::String(s.to_string())),
        2 => "\\PC{0,24}".prop_map(toml::Value::String),
        2 => prop_oneof![
            Just(0i64),
            Just(1),
            Just(100),
            Just(101),
            Just(-1),
            Just(65536),
            Just(1280),
            Just(1420),
            Just(51820),
            Just(i64::MAX),
            any::<i64>()
        ]
        .prop_map(toml::Value::Integer),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
        1 => any::<f64>().prop_map(toml::Value::Float),
    ];
    scalar.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..3)
                .prop_map(|kv| toml::Value::Table(kv.into_iter().collect())),
        ]
    })
}

/// A table of up to `max` random `keys` with random values.
fn table_of(keys: &'static [&'static str], max: usize) -> impl Strategy<Value = toml::Table> {
    prop::collection::vec((select(keys), value()), 0..max)
        .prop_map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn check_table() -> impl Strategy<Value = toml::Table> {
    table_of(CHECK_KEYS, 10)
}

/// A random tunnel, with random peers or none.
fn tunnel_table() -> impl Strategy<Value = toml::Table> {
    let peers = prop::collection::vec(table_of(PEER_KEYS, 8), 0..4);
    (table_of(TUNNEL_KEYS, 8), prop::option::of(peers)).prop_map(|(mut tunnel, peers)| {
        if let Some(peers) = peers {
            let peers = peers.into_iter().map(toml::Value::Table).collect();
            tunnel.insert("peers".into(), toml::Value::Array(peers));
        }
        tunnel
    })
}

/// A file with an appliance and `tables` as the array of tables `section`.
fn file_with(section: &str, tables: &[toml::Table]) -> String {
    let mut file = toml::Table::new();
    let mut appliance = toml::Table::new();
    appliance.insert("name".into(), "plant-01".into());
    file.insert("appliance".into(), toml::Value::Table(appliance));
    file.insert(
        section.into(),
        toml::Value::Array(tables.iter().cloned().map(toml::Value::Table).collect()),
    );
    toml::to_string(&file).expect("a table renders as TOML")
}

/// Checks the answer about a file of `count` entries of `section` (`text`): valid with as
/// many entries (`parsed`), or errors that all point into one of the entries, the same
/// each time.
fn assert_coherent(
    section: &str,
    count: usize,
    text: &str,
    parsed: impl Fn(&siteward_config::Config) -> usize,
) -> Result<(), TestCaseError> {
    match parse(text, base_dir()) {
        Ok(config) => prop_assert_eq!(parsed(&config), count),
        Err(e) => {
            let errors = e.field_errors();
            prop_assert!(!errors.is_empty());
            let prefix = format!("{section}[");
            for error in &errors {
                let index: Option<usize> = error
                    .path
                    .strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.split_once(']'))
                    .and_then(|(i, _)| i.parse().ok());
                prop_assert!(index.is_some_and(|i| i < count), "{} in\n{}", error, text);
                prop_assert!(!error.message.is_empty());
            }
            let again = parse(text, base_dir()).unwrap_err().field_errors();
            prop_assert_eq!(errors, again);
        }
    }
    Ok(())
}

// ---- Valid tunnels, built as the model and written out --------------------------------

fn endpoint() -> impl Strategy<Value = HostPort> {
    let host = prop_oneof![
        any::<Ipv4Addr>().prop_map(|ip| Host::Ip(IpAddr::V4(ip))),
        any::<Ipv6Addr>().prop_map(|ip| Host::Ip(IpAddr::V6(ip))),
        "[a-z][a-z0-9-]{0,10}[a-z]\\.example\\.net".prop_map(Host::Name),
    ];
    (host, 1..=u16::MAX).prop_map(|(host, port)| HostPort { host, port })
}

/// The `j`-th allowed IP of peer `p` of tunnel `t`: inside a block of its own, so that no
/// two overlap, with a random prefix and random (cleared) host bits.
fn allowed_ip(t: usize, p: usize, j: usize) -> impl Strategy<Value = IpNet> {
    let v4 = (28u8..=32, 0u8..16).prop_map(move |(prefix, host)| {
        let ip = Ipv4Addr::new(10, t as u8, p as u8, 16 * j as u8 + host);
        IpNet::new(IpAddr::V4(ip), prefix).unwrap().trunc()
    });
    let v6 = (64u8..=128, any::<u64>()).prop_map(move |(prefix, host)| {
        let network =
            (0xfd00u128 << 112) | ((t as u128) << 96) | ((p as u128) << 80) | ((j as u128) << 64);
        let ip = Ipv6Addr::from(network | host as u128);
        IpNet::new(IpAddr::V6(ip), prefix).unwrap().trunc()
    });
    prop_oneof![v4, v6]
}

fn wireguard_peer(t: usize, p: usize) -> impl Strategy<Value = WireguardPeer> {
    let allowed_ips =
        (0usize..6).prop_flat_map(move |n| (0..n).map(|j| allowed_ip(t, p, j)).collect::<Vec<_>>());
    (
        "[a-z][a-z0-9_-]{0,10}",
        any::<[u8; 32]>(),
        prop::option::of(any::<[u8; 32]>()),
        prop::option::of(endpoint()),
        allowed_ips,
        prop::option::of(1..=u16::MAX),
    )
        .prop_map(
            move |(name, mut key, psk, endpoint, allowed_ips, keepalive)| {
                // Unique in the tunnel whatever the rest (and after shrinking).
                key[..2].copy_from_slice(&[0xa5, p as u8]);
                WireguardPeer {
                    name: format!("{name}.{p}"),
                    public_key: WgPublicKey(key),
                    preshared_key: psk.map(WgSecretKey::new),
                    endpoint,
                    allowed_ips,
                    persistent_keepalive: keepalive,
                }
            },
        )
}

fn wireguard_tunnel(t: usize) -> impl Strategy<Value = Tunnel> {
    let peers = (0usize..4)
        .prop_flat_map(move |n| (0..n).map(|p| wireguard_peer(t, p)).collect::<Vec<_>>());
    let address = prop_oneof![
        (1u8..=254, 8u8..=32).prop_map(move |(host, prefix)| {
            IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 99, t as u8, host)), prefix).unwrap()
        }),
        (1u16..=0xfffe, 16u8..=128).prop_map(move |(host, prefix)| {
            let ip = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, t as u16, host);
            IpNet::new(IpAddr::V6(ip), prefix).unwrap()
        }),
    ];
    // Addresses are unique by IP.
    let addresses = prop::collection::vec(address, 0..4).prop_map(|addresses| {
        let mut seen = std::collections::HashSet::new();
        addresses
            .into_iter()
            .filter(|net| seen.insert(net.addr()))
            .collect::<Vec<_>>()
    });
    (
        "[a-z][a-z0-9_-]{0,10}",
        "[a-z][a-z0-9-]{0,10}",
        any::<[u8; 32]>(),
        prop::option::of(0u16..6000),
        addresses,
        1280u16..=9000,
        peers,
    )
        .prop_map(
            move |(name, interface, private_key, port, addresses, mtu, peers)| Tunnel {
                // The index makes names, interfaces and ports unique.
                name: format!("{name}.{t}"),
                interface: format!("{interface}{t}"),
                kind: TunnelKind::Wireguard(WireguardTunnel {
                    private_key: WgSecretKey::new(private_key),
                    listen_port: port.map(|p| p * 10 + t as u16 + 1),
                    addresses,
                    mtu,
                    peers,
                }),
            },
        )
}

/// `tunnel` as a `[[tunnels]]` table.
fn tunnel_to_toml(tunnel: &Tunnel) -> toml::Table {
    let TunnelKind::Wireguard(wg) = &tunnel.kind else {
        panic!("only WireGuard tunnels are generated here: {tunnel:?}");
    };
    let strings =
        |items: Vec<String>| toml::Value::Array(items.into_iter().map(Into::into).collect());
    let mut table = toml::Table::new();
    table.insert("name".into(), tunnel.name.clone().into());
    table.insert("kind".into(), tunnel.kind.as_str().into());
    table.insert("interface".into(), tunnel.interface.clone().into());
    table.insert(
        "private_key".into(),
        STANDARD.encode(wg.private_key.expose()).into(),
    );
    if let Some(port) = wg.listen_port {
        table.insert("listen_port".into(), i64::from(port).into());
    }
    table.insert(
        "addresses".into(),
        strings(wg.addresses.iter().map(ToString::to_string).collect()),
    );
    table.insert("mtu".into(), i64::from(wg.mtu).into());
    let peers = wg.peers.iter().map(|peer| {
        let mut p = toml::Table::new();
        p.insert("name".into(), peer.name.clone().into());
        p.insert("public_key".into(), peer.public_key.to_string().into());
        if let Some(psk) = &peer.preshared_key {
            p.insert("preshared_key".into(), STANDARD.encode(psk.expose()).into());
        }
        if let Some(endpoint) = &peer.endpoint {
            p.insert("endpoint".into(), endpoint.to_string().into());
        }
        p.insert(
            "allowed_ips".into(),
            strings(peer.allowed_ips.iter().map(ToString::to_string).collect()),
        );
        if let Some(seconds) = peer.persistent_keepalive {
            p.insert("persistent_keepalive".into(), format!("{seconds}s").into());
        }
        toml::Value::Table(p)
    });
    table.insert("peers".into(), toml::Value::Array(peers.collect()));
    table
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        let _ = parse(&text, base_dir());
    }

    #[test]
    fn parse_never_panics_on_toml_like_text(
        text in "([\\[\\]a-z_.=\"' \n0-9:/-]|checks|kind|name|target|\\[\\[checks\\]\\]\n){0,120}"
    ) {
        let _ = parse(&text, base_dir());
    }

    #[test]
    fn random_checks_give_a_coherent_answer(checks in prop::collection::vec(check_table(), 0..5)) {
        let text = file_with("checks", &checks);
        assert_coherent("checks", checks.len(), &text, |config| config.checks.len())?;
    }

    #[test]
    fn random_tunnels_give_a_coherent_answer(tunnels in prop::collection::vec(tunnel_table(), 0..4)) {
        let text = file_with("tunnels", &tunnels);
        assert_coherent("tunnels", tunnels.len(), &text, |config| config.tunnels.len())?;
    }

    #[test]
    fn valid_tunnels_come_back_as_written(
        tunnels in (0usize..4).prop_flat_map(|n| (0..n).map(wireguard_tunnel).collect::<Vec<_>>())
    ) {
        let tables: Vec<toml::Table> = tunnels.iter().map(tunnel_to_toml).collect();
        let text = file_with("tunnels", &tables);
        match parse(&text, base_dir()) {
            Ok(config) => prop_assert_eq!(config.tunnels, tunnels),
            Err(e) => prop_assert!(false, "{}\nrejected:\n{}", e, text),
        }
    }
}
