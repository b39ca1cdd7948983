//! Every validation rule of `[[tunnels]] kind = "ipsec"`, through the public `parse`: the
//! field path and a meaningful part of the message, and that the rule adds no error of its
//! own beyond the one expected. Files it reads (`psk_file`, certificates, key) are tested in
//! `secrets.rs`.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use siteward_config::{
    DpdAction, Host, IpsecAuth, IpsecTunnel, Secret, StartAction, Tunnel, TunnelKind,
};
use siteward_ike::identity::Identity;
use siteward_ike::proposal::{EspProposal, IkeProposal};

use common::{assert_errors, assert_only_error, errors_of, parse_ok, HEAD};

const PSK: &str = "correct horse battery staple";
const WG_PRIVATE: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
const WG_PEER: &str = "r9DP6n35wCbZ8LSn98HDtgRTXIjjTL9qOxOGA6MjEjM=";

/// A valid IPsec tunnel as `[[tunnels]]` lines of `key = value`, with `changes` applied:
/// `Some(value)` sets a key (a TOML value as written), `None` removes it.
fn ipsec(name: &str, changes: &[(&str, Option<&str>)]) -> String {
    let name_value = format!("\"{name}\"");
    let interface = format!("\"ipsec-{name}\"");
    let psk = format!("\"{PSK}\"");
    let mut keys: Vec<(&str, String)> = vec![
        ("name", name_value),
        ("kind", "\"ipsec\"".into()),
        ("interface", interface),
        ("auth", "\"psk\"".into()),
        ("psk", psk),
        ("local_ts", "[\"192.0.2.0/24\"]".into()),
        ("remote_ts", "[\"198.51.100.0/24\"]".into()),
    ];
    for (key, value) in changes {
        keys.retain(|(k, _)| k != key);
        if let Some(value) = value {
            keys.push((key, value.to_string()));
        }
    }
    let lines: Vec<String> = keys.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("[[tunnels]]\n{}\n", lines.join("\n"))
}

/// A WireGuard tunnel with one peer carrying `allowed_ips` (a TOML array as written).
fn wireguard(name: &str, allowed_ips: &str) -> String {
    format!(
        "[[tunnels]]\nname = \"{name}\"\nkind = \"wireguard\"\ninterface = \"wg-{name}\"\n\
         private_key = \"{WG_PRIVATE}\"\n\
         [[tunnels.peers]]\nname = \"gw\"\npublic_key = \"{WG_PEER}\"\nallowed_ips = {allowed_ips}\n"
    )
}

fn file(tunnels: &[String]) -> String {
    format!("{HEAD}{}", tunnels.concat())
}

/// A file of one IPsec tunnel `hq` with `changes`.
fn one(changes: &[(&str, Option<&str>)]) -> String {
    file(&[ipsec("hq", changes)])
}

fn only_ipsec(text: &str) -> (Tunnel, IpsecTunnel) {
    let mut config = parse_ok(text);
    assert_eq!(config.tunnels.len(), 1, "{config:#?}");
    let tunnel = config.tunnels.remove(0);
    match tunnel.kind.clone() {
        TunnelKind::Ipsec(ipsec) => (tunnel, ipsec),
        other => panic!("{other:?}"),
    }
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

// ---- The model ----------------------------------------------------------------------

#[test]
fn a_full_ipsec_tunnel_becomes_the_model() {
    let (tunnel, ipsec) = only_ipsec(&one(&[
        ("local_addrs", Some("[\"203.0.113.20\", \"2001:db8::20\"]")),
        (
            "remote_addrs",
            Some("[\"vpn-hq.example.net\", \"203.0.113.1\", \"[2001:db8::1]\"]"),
        ),
        ("local_id", Some("\"plant-02.corp.example\"")),
        ("remote_id", Some("\"C=CH, O=Example Corp, CN=vpn-hq\"")),
        (
            "proposals",
            Some("[\"aes128gcm16-prfsha384-ecp256\", \"aes256-sha512-modp2048\"]"),
        ),
        (
            "esp_proposals",
            Some("[\"aes128gcm16-x25519\", \"aes256-sha384-noesn\"]"),
        ),
        ("local_ts", Some("[\"192.0.2.0/24\", \"2001:db8:2::/48\"]")),
        (
            "remote_ts",
            Some("[\"198.51.100.0/25\", \"2001:db8:51::/48\"]"),
        ),
        ("addresses", Some("[\"192.0.2.250/32\"]")),
        ("mtu", Some("1360")),
        ("dpd_delay", Some("\"10s\"")),
        ("dpd_action", Some("\"clear\"")),
        ("rekey_time", Some("\"8h\"")),
        ("child_rekey_time", Some("\"30m\"")),
        ("child_rekey_bytes", Some("1000000000")),
        ("start", Some("\"initiate\"")),
        ("encap", Some("true")),
        ("local_port", Some("4501")),
        ("remote_port", Some("10500")),
        ("fragmentation", Some("false")),
    ]));
    assert_eq!(
        (tunnel.name.as_str(), tunnel.interface.as_str()),
        ("hq", "ipsec-hq")
    );
    assert_eq!(tunnel.kind.as_str(), "ipsec");
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    let expected = IpsecTunnel {
        local_addrs: vec![ip("203.0.113.20"), ip("2001:db8::20")],
        remote_addrs: vec![
            Host::Name("vpn-hq.example.net".into()),
            Host::Ip(ip("203.0.113.1")),
            Host::Ip(ip("2001:db8::1")),
        ],
        local_id: Some(Identity::Fqdn("plant-02.corp.example".into())),
        remote_id: Some(Identity::Dn(vec![
            ("C".into(), "CH".into()),
            ("O".into(), "Example Corp".into()),
            ("CN".into(), "vpn-hq".into()),
        ])),
        auth: IpsecAuth::Psk(Secret::new(PSK)),
        proposals: vec![
            IkeProposal::parse("aes128gcm16-prfsha384-ecp256").unwrap(),
            IkeProposal::parse("aes256-sha512-modp2048").unwrap(),
        ],
        esp_proposals: vec![
            EspProposal::parse("aes128gcm16-x25519").unwrap(),
            EspProposal::parse("aes256-sha384").unwrap(),
        ],
        local_ts: vec![net("192.0.2.0/24"), net("2001:db8:2::/48")],
        remote_ts: vec![net("198.51.100.0/25"), net("2001:db8:51::/48")],
        addresses: vec![net("192.0.2.250/32")],
        mtu: 1360,
        dpd_delay: Some(Duration::from_secs(10)),
        dpd_action: DpdAction::Clear,
        rekey_time: Duration::from_secs(8 * 3600),
        child_rekey_time: Duration::from_secs(1800),
        child_rekey_bytes: Some(1_000_000_000),
        start: StartAction::Initiate,
        encap: true,
        local_port: 4501,
        remote_port: 10500,
        fragmentation: false,
    };
    assert_eq!(ipsec, expected);
}

#[test]
fn defaults_of_an_ipsec_tunnel() {
    let (_, ipsec) = only_ipsec(&one(&[]));
    let proposals: Vec<String> = ipsec.proposals.iter().map(ToString::to_string).collect();
    assert_eq!(
        proposals,
        ["aes256gcm16-prfsha256-x25519", "aes256-sha256-modp2048"]
    );
    let esp: Vec<String> = ipsec
        .esp_proposals
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(esp, ["aes256gcm16", "aes256-sha256"]);
    assert!(ipsec.local_addrs.is_empty() && ipsec.remote_addrs.is_empty());
    assert_eq!((&ipsec.local_id, &ipsec.remote_id), (&None, &None));
    assert!(ipsec.addresses.is_empty());
    assert_eq!(ipsec.mtu, 1400);
    assert_eq!(ipsec.dpd_delay, Some(Duration::from_secs(30)));
    assert_eq!(ipsec.dpd_action, DpdAction::Restart);
    assert_eq!(ipsec.rekey_time, Duration::from_secs(4 * 3600));
    assert_eq!(ipsec.child_rekey_time, Duration::from_secs(3600));
    assert_eq!(ipsec.child_rekey_bytes, None);
    assert_eq!(ipsec.start, StartAction::Respond);
    assert!(!ipsec.encap && ipsec.fragmentation);
    assert_eq!((ipsec.local_port, ipsec.remote_port), (500, 500));
}

#[test]
fn secrets_stay_out_of_debug_output_and_errors() {
    let config = parse_ok(&one(&[]));
    let debug = format!("{config:?} {config:#?}");
    assert!(!debug.contains(PSK), "{debug}");
    assert!(debug.contains("Psk(Secret(***))"), "{debug}");

    // A short PSK's error says why, without the PSK.
    let errors = errors_of(&one(&[("psk", Some("\"hunter2\""))]));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "tunnels[0].psk");
    assert!(
        errors[0].1.contains("at least 16")
            && errors[0]
                .1
                .contains("guessed offline from one captured IKE exchange"),
        "{errors:?}"
    );
    assert!(!errors[0].1.contains("hunter2"), "{errors:?}");
    // Nor a PSK of the wrong type.
    let errors = errors_of(&one(&[("psk", Some("1234567890123456789"))]));
    assert!(
        errors.len() == 1 && !errors[0].1.contains("1234567890123456789"),
        "{errors:?}"
    );
}

// ---- Keys -----------------------------------------------------------------------------

#[test]
fn required_keys_of_an_ipsec_tunnel() {
    for (key, fragment) in [
        (
            "auth",
            "missing: \"psk\" (a pre-shared key) or \"cert\" (certificates)",
        ),
        ("psk", "missing: set psk or psk_file"),
        ("local_ts", "missing: this side's networks"),
        (
            "remote_ts",
            "missing: the far side's networks, routed through the tunnel",
        ),
    ] {
        assert_only_error(&one(&[(key, None)]), &format!("tunnels[0].{key}"), fragment);
    }
}

#[test]
fn keys_of_the_other_kind_are_errors_with_their_path() {
    assert_errors(
        &one(&[
            ("private_key", Some(&format!("\"{WG_PRIVATE}\""))),
            ("listen_port", Some("51820")),
            ("peers", Some("[]")),
        ]),
        &[
            ("tunnels[0].private_key", "not used by kind \"ipsec\""),
            ("tunnels[0].listen_port", "not used by kind \"ipsec\""),
            ("tunnels[0].peers", "not used by kind \"ipsec\""),
        ],
    );
    let wg = wireguard("cloud", "[\"10.20.0.0/16\"]").replacen(
        "private_key",
        "psk = \"abc\"\nlocal_ts = [\"192.0.2.0/24\"]\nstart = \"trap\"\nprivate_key",
        1,
    );
    assert_errors(
        &file(&[wg]),
        &[
            ("tunnels[0].psk", "not used by kind \"wireguard\""),
            ("tunnels[0].local_ts", "not used by kind \"wireguard\""),
            ("tunnels[0].start", "not used by kind \"wireguard\""),
        ],
    );
}

#[test]
fn an_unknown_key_lists_the_keys_of_the_kind() {
    assert_only_error(
        &one(&[("leftsubnet", Some("\"192.0.2.0/24\""))]),
        "tunnels[0].leftsubnet",
        "unknown key (kind \"ipsec\" takes name, kind, interface, local_addrs, remote_addrs, \
         local_id, remote_id, auth, psk, psk_file, cert_file, key_file, ca_file, proposals, \
         esp_proposals, local_ts, remote_ts, addresses, mtu, dpd_delay, dpd_action, rekey_time, \
         child_rekey_time, child_rekey_bytes, start, encap, local_port, remote_port, \
         fragmentation)",
    );
}

#[test]
fn auth_methods_and_their_keys() {
    assert_only_error(
        &one(&[("auth", Some("\"pubkey\""))]),
        "tunnels[0].auth",
        "unknown value \"pubkey\" (expected one of psk, cert)",
    );
    assert_errors(
        &one(&[
            ("cert_file", Some("\"gw.pem\"")),
            ("ca_file", Some("\"ca.pem\"")),
        ]),
        &[
            ("tunnels[0].cert_file", "not used with auth = \"psk\""),
            ("tunnels[0].ca_file", "not used with auth = \"psk\""),
        ],
    );
    assert_errors(
        &one(&[("auth", Some("\"cert\""))]),
        &[
            ("tunnels[0].psk", "not used with auth = \"cert\""),
            ("tunnels[0].cert_file", "missing: this end's certificate"),
            (
                "tunnels[0].key_file",
                "missing: the private key of cert_file",
            ),
            ("tunnels[0].ca_file", "missing: the CA certificate(s)"),
        ],
    );
    assert_only_error(
        &one(&[("psk_file", Some("\"hq.psk\""))]),
        "tunnels[0].psk",
        "set either psk or psk_file, not both",
    );
}

// ---- Proposals and identities ---------------------------------------------------------

#[test]
fn proposals_are_checked_one_by_one() {
    assert_errors(
        &one(&[
            (
                "proposals",
                Some("[\"aes256gcm16-prfsha256-x25519\", \"aes192-sha256-modp2048\", \"aes256-modp2048\"]"),
            ),
            ("esp_proposals", Some("[\"aes256gcm16-esn\", \"aes256gcm16-sha256\"]")),
        ]),
        &[
            (
                "tunnels[0].proposals[1]",
                "unknown algorithm \"aes192\" (accepted: aes128, aes256,",
            ),
            ("tunnels[0].proposals[2]", "\"aes256\" needs an integrity algorithm"),
            ("tunnels[0].esp_proposals[0]", "32-bit sequence numbers"),
            (
                "tunnels[0].esp_proposals[1]",
                "\"sha256\" is an integrity algorithm, which the AEAD cipher",
            ),
        ],
    );
    assert_only_error(
        &one(&[(
            "esp_proposals",
            Some("[\"aes256gcm16\", \"aes256-prfsha256\"]"),
        )]),
        "tunnels[0].esp_proposals[1]",
        "ESP has no PRF",
    );
    assert_only_error(
        &one(&[("proposals", Some("[\"aes256gcm16-prfsha256\"]"))]),
        "tunnels[0].proposals[0]",
        "needs a Diffie-Hellman group",
    );
    assert_only_error(
        &one(&[("proposals", Some("[\"aes256gcm16-aes256-sha256-x25519\"]"))]),
        "tunnels[0].proposals[0]",
        "cannot be in one proposal",
    );
}

#[test]
fn proposal_lists_are_not_empty_and_have_no_duplicates() {
    assert_only_error(
        &one(&[("proposals", Some("[]"))]),
        "tunnels[0].proposals",
        "must list at least one proposal (leave it out for the defaults: aes256gcm16-prfsha256-x25519, aes256-sha256-modp2048)",
    );
    assert_only_error(
        &one(&[("esp_proposals", Some("[]"))]),
        "tunnels[0].esp_proposals",
        "must list at least one proposal",
    );
    // An alias is the same proposal.
    assert_only_error(
        &one(&[(
            "proposals",
            Some("[\"aes256gcm16-prfsha256-x25519\", \"aes256gcm128-sha256-curve25519\"]"),
        )]),
        "tunnels[0].proposals[1]",
        "duplicate proposal aes256gcm16-prfsha256-x25519 (first used by tunnels[0].proposals[0])",
    );
    let many = format!("[{}]", vec!["\"aes256gcm16\""; 33].join(", "));
    assert_only_error(
        &one(&[("esp_proposals", Some(&many))]),
        "tunnels[0].esp_proposals",
        "33 proposals; at most 32 are supported",
    );
}

#[test]
fn identities_follow_strongswan_notation() {
    for (text, expected) in [
        (
            "\"192.0.2.1\"",
            Identity::Ipv4("192.0.2.1".parse().unwrap()),
        ),
        (
            "\"@vpn.example.net\"",
            Identity::Fqdn("vpn.example.net".into()),
        ),
        (
            "\"ops@example.net\"",
            Identity::Email("ops@example.net".into()),
        ),
        ("\"@#c0ffee\"", Identity::KeyId(vec![0xc0, 0xff, 0xee])),
        (
            "\"/C=CH/CN=vpn\"",
            Identity::Dn(vec![("C".into(), "CH".into()), ("CN".into(), "vpn".into())]),
        ),
    ] {
        let (_, ipsec) = only_ipsec(&one(&[("remote_id", Some(text))]));
        assert_eq!(ipsec.remote_id, Some(expected), "{text}");
    }
    assert_errors(
        &one(&[
            ("local_id", Some("\"CN=vpn, XY=1\"")),
            ("remote_id", Some("\"%any\"")),
        ]),
        &[
            ("tunnels[0].local_id", "unknown DN attribute \"XY\""),
            (
                "tunnels[0].remote_id",
                "leave remote_id out to accept any peer",
            ),
        ],
    );
}

// ---- Addresses ------------------------------------------------------------------------

#[test]
fn local_addrs_are_ip_addresses_of_this_box() {
    assert_errors(
        &one(&[(
            "local_addrs",
            Some("[\"gw.corp.example\", \"0.0.0.0\", \"224.0.0.1\", \"203.0.113.20\", \"203.0.113.20\"]"),
        )]),
        &[
            ("tunnels[0].local_addrs[0]", "\"gw.corp.example\" is not an IP address"),
            (
                "tunnels[0].local_addrs[1]",
                "leave local_addrs out to use any local address",
            ),
            ("tunnels[0].local_addrs[2]", "is a multicast or broadcast address"),
            (
                "tunnels[0].local_addrs[4]",
                "duplicate address 203.0.113.20 (first used by tunnels[0].local_addrs[3])",
            ),
        ],
    );
    let many = format!("[{}]", vec!["\"192.0.2.1\""; 17].join(", "));
    assert_only_error(
        &one(&[("local_addrs", Some(&many))]),
        "tunnels[0].local_addrs",
        "17 addresses; at most 16 are supported",
    );
}

#[test]
fn remote_addrs_are_hosts_without_a_port() {
    assert_errors(
        &one(&[(
            "remote_addrs",
            Some("[\"vpn.example.net:500\", \"::\", \"bad host\", \"vpn.example.net\", \"vpn.example.net\"]"),
        )]),
        &[
            ("tunnels[0].remote_addrs[0]", "give a host without a port"),
            ("tunnels[0].remote_addrs[1]", "to accept any peer"),
            ("tunnels[0].remote_addrs[2]", "is not a valid host name"),
            ("tunnels[0].remote_addrs[4]", "duplicate peer vpn.example.net"),
        ],
    );
}

#[test]
fn only_a_responder_may_go_without_remote_addrs() {
    for start in ["initiate", "trap"] {
        assert_only_error(
            &one(&[("start", Some(&format!("\"{start}\"")))]),
            "tunnels[0].remote_addrs",
            &format!("missing: start = \"{start}\" makes this end initiate"),
        );
        let (_, ipsec) = only_ipsec(&one(&[
            ("start", Some(&format!("\"{start}\""))),
            ("remote_addrs", Some("[\"203.0.113.1\"]")),
        ]));
        assert_ne!(ipsec.start, StartAction::Respond);
    }
    assert_only_error(
        &one(&[("start", Some("\"route\""))]),
        "tunnels[0].start",
        "unknown value \"route\" (expected one of initiate, respond, trap)",
    );
}

#[test]
fn ports_are_ike_ports_not_nat_traversal() {
    for (value, fragment) in [
        ("0", "must be between 1 and 65535, got 0"),
        ("65536", "must be between 1 and 65535, got 65536"),
        ("4500", "4500 is the port IKE moves to for NAT traversal"),
    ] {
        for key in ["local_port", "remote_port"] {
            assert_only_error(
                &one(&[(key, Some(value))]),
                &format!("tunnels[0].{key}"),
                fragment,
            );
        }
    }
}

// ---- Timers ---------------------------------------------------------------------------

#[test]
fn dpd_delay_is_whole_seconds_or_off() {
    let (_, ipsec) = only_ipsec(&one(&[("dpd_delay", Some("\"0s\""))]));
    assert_eq!(ipsec.dpd_delay, None);
    for (value, fragment) in [
        (
            "\"1500ms\"",
            "must be whole seconds from 1s to 1h, or \"0s\" to disable DPD",
        ),
        ("\"2h\"", "2h is out of range"),
        ("\"soon\"", "is not a duration"),
    ] {
        assert_only_error(
            &one(&[("dpd_delay", Some(value))]),
            "tunnels[0].dpd_delay",
            fragment,
        );
    }
    assert_only_error(
        &one(&[("dpd_action", Some("\"hold\""))]),
        "tunnels[0].dpd_action",
        "unknown value \"hold\" (expected one of restart, clear)",
    );
}

#[test]
fn rekeying_limits() {
    for key in ["rekey_time", "child_rekey_time"] {
        for value in ["\"30s\"", "\"8days\""] {
            assert_only_error(
                &one(&[(key, Some(value))]),
                &format!("tunnels[0].{key}"),
                "is out of range: must be between 1m and 7days",
            );
        }
    }
    for value in ["-1", "0", "1048575"] {
        assert_only_error(
            &one(&[("child_rekey_bytes", Some(value))]),
            "tunnels[0].child_rekey_bytes",
            "must be at least 1048576 (1 MiB)",
        );
    }
    let (_, ipsec) = only_ipsec(&one(&[("child_rekey_bytes", Some("1048576"))]));
    assert_eq!(ipsec.child_rekey_bytes, Some(1 << 20));
}

#[test]
fn mtu_and_addresses_follow_the_rules_of_every_tunnel() {
    assert_errors(
        &one(&[
            ("mtu", Some("576")),
            ("addresses", Some("[\"192.0.2.250\"]")),
        ]),
        &[
            ("tunnels[0].addresses[0]", "needs a prefix length"),
            ("tunnels[0].mtu", "must be between 1280 and 9000, got 576"),
        ],
    );
}

// ---- Traffic selectors and routes ----------------------------------------------------

#[test]
fn traffic_selectors_are_networks() {
    assert_errors(
        &one(&[
            ("local_ts", Some("[\"192.0.2.1/24\", \"192.0.2.7\"]")),
            (
                "remote_ts",
                Some("[\"198.51.100.0/24\", \"any\", \"198.51.100.0/24\"]"),
            ),
        ]),
        &[
            (
                "tunnels[0].local_ts[0]",
                "has host bits set: write the network \"192.0.2.0/24\"",
            ),
            ("tunnels[0].local_ts[1]", "needs a prefix length, e.g. \"192.0.2.7/32\""),
            ("tunnels[0].remote_ts[1]", "is not an address with a prefix length"),
            (
                "tunnels[0].remote_ts[2]",
                "duplicate traffic selector 198.51.100.0/24 (first used by tunnels[0].remote_ts[0])",
            ),
        ],
    );
    assert_only_error(
        &one(&[("remote_ts", Some("[]"))]),
        "tunnels[0].remote_ts",
        "must list at least one network",
    );
    let many: Vec<String> = (0..256u32)
        .map(|i| format!("\"10.0.{}.{}/32\"", i / 256, i % 256))
        .collect();
    assert_only_error(
        &one(&[("local_ts", Some(&format!("[{}]", many.join(", "))))]),
        "tunnels[0].local_ts",
        "256 traffic selectors; at most 255 are supported (a TS payload carries at most 255)",
    );
}

#[test]
fn remote_ts_of_two_tunnels_may_not_overlap() {
    let a = ipsec("hq", &[]);
    let b = ipsec(
        "dc",
        &[(
            "remote_ts",
            Some("[\"203.0.113.0/24\", \"198.51.100.128/25\"]"),
        )],
    );
    assert_only_error(
        &file(&[a, b]),
        "tunnels[1].remote_ts[1]",
        "198.51.100.128/25 overlaps 198.51.100.0/24 of tunnel \"hq\" (tunnels[0].remote_ts[0]): the routes of the two tunnels would collide",
    );
}

#[test]
fn remote_ts_and_wireguard_allowed_ips_share_one_overlap_check() {
    assert_only_error(
        &file(&[wireguard("cloud", "[\"198.51.100.0/26\"]"), ipsec("hq", &[])]),
        "tunnels[1].remote_ts[0]",
        "198.51.100.0/24 overlaps 198.51.100.0/26 of tunnel \"cloud\" (tunnels[0].peers[0].allowed_ips[0])",
    );
    assert_only_error(
        &file(&[
            ipsec("hq", &[]),
            wireguard("cloud", "[\"198.51.100.0/24\"]"),
        ]),
        "tunnels[1].peers[0].allowed_ips[0]",
        "overlaps 198.51.100.0/24 of tunnel \"hq\" (tunnels[0].remote_ts[0])",
    );
}

#[test]
fn a_local_side_may_be_shared_but_not_routed_elsewhere() {
    // Two tunnels from the same LAN to different destinations.
    let a = ipsec("hq", &[]);
    let b = ipsec("dc", &[("remote_ts", Some("[\"203.0.113.0/24\"]"))]);
    assert_eq!(parse_ok(&file(&[a.clone(), b])).tunnels.len(), 2);
    // One tunnel's local side and remote side may overlap (a local "anything").
    let (_, ipsec_one) = only_ipsec(&one(&[("local_ts", Some("[\"0.0.0.0/0\"]"))]));
    assert_eq!(ipsec_one.local_ts, [net("0.0.0.0/0")]);
    // But no tunnel's local side may be routed into another.
    let c = ipsec(
        "dc",
        &[
            ("local_ts", Some("[\"198.51.100.64/26\"]")),
            ("remote_ts", Some("[\"203.0.113.0/24\"]")),
        ],
    );
    assert_only_error(
        &file(&[a.clone(), c]),
        "tunnels[1].local_ts[0]",
        "198.51.100.64/26 overlaps 198.51.100.0/24 of tunnel \"hq\" (tunnels[0].remote_ts[0]): a tunnel's local_ts cannot lie in networks routed to another tunnel",
    );
    let d = ipsec("dc", &[("remote_ts", Some("[\"192.0.2.128/25\"]"))]);
    assert_only_error(
        &file(&[a, d]),
        "tunnels[1].remote_ts[0]",
        "192.0.2.128/25 overlaps the local_ts 192.0.2.0/24 of tunnel \"hq\" (tunnels[0].local_ts[0]): another tunnel's local side cannot be routed here",
    );
}

#[test]
fn every_error_of_an_ipsec_tunnel_is_reported_together() {
    assert_errors(
        &one(&[
            ("local_id", Some("\"@#0\"")),
            ("psk", Some("\"short\"")),
            ("proposals", Some("[\"3des-md5-modp1024\"]")),
            ("remote_ts", Some("[\"198.51.100.1/24\"]")),
            ("dpd_action", Some("\"bounce\"")),
            ("start", Some("\"initiate\"")),
            ("remote_port", Some("0")),
        ]),
        &[
            ("tunnels[0].local_id", "is not a key ID"),
            ("tunnels[0].psk", "at least 16"),
            ("tunnels[0].proposals[0]", "unknown algorithm \"3des\""),
            ("tunnels[0].remote_ts[0]", "has host bits set"),
            ("tunnels[0].dpd_action", "unknown value \"bounce\""),
            ("tunnels[0].remote_addrs", "missing: start = \"initiate\""),
            ("tunnels[0].remote_port", "must be between 1 and 65535"),
        ],
    );
}
