//! The example configurations in `config/examples/` are valid, as documented, and use only
//! documentation names and addresses.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use siteward_config::{
    load, Config, DpdAction, Host, IpsecAuth, IpsecTunnel, Probe, Secret, StartAction, Tunnel,
    TunnelKind, WireguardTunnel, CHECK_KINDS,
};
use siteward_ike::identity::Identity;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("config/examples exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

fn load_example(name: &str) -> Config {
    let path = examples_dir().join(name);
    load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_example_validates() {
    let files = example_files();
    assert!(
        !files.is_empty(),
        "no *.toml in {}",
        examples_dir().display()
    );
    let mut failures = Vec::new();
    for path in &files {
        if let Err(e) = load(path) {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn minimal_has_one_tcp_check() {
    let config = load_example("minimal.toml");
    assert_eq!(config.appliance.name, "plant-01");
    assert_eq!(config.checks.len(), 1);
    assert_eq!(config.checks[0].probe.kind(), "tcp");
}

#[test]
fn plant_01_holds_the_example_of_the_issue() {
    let config = load_example("plant-01.toml");
    assert_eq!(config.appliance.name, "plant-01");
    assert_eq!(config.appliance.state_dir, Path::new("/var/lib/siteward"));
    assert_eq!(
        config.admin.listen,
        "127.0.0.1:8443".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.admin.tls, None);
    assert_eq!(
        config.metrics.listen,
        "127.0.0.1:9108".parse::<SocketAddr>().unwrap()
    );

    let ebs = &config.checks[0];
    assert_eq!(ebs.name, "ebs-listener");
    assert_eq!(ebs.interval, Duration::from_secs(10));
    assert_eq!(ebs.timeout, Duration::from_secs(3));
    assert_eq!((ebs.rise, ebs.fall), (2, 3));
    assert_eq!(ebs.placement.source, None);
    assert_eq!(ebs.placement.interface, None);
    match &ebs.probe {
        Probe::OracleTns(p) => {
            assert_eq!(p.target.to_string(), "ebs-db.corp.example:1521");
            assert_eq!(p.service_name, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn plant_01_has_every_kind_a_source_and_an_interface() {
    let config = load_example("plant-01.toml");
    for kind in CHECK_KINDS {
        assert!(
            config.checks.iter().any(|c| c.probe.kind() == *kind),
            "no {kind} check"
        );
    }
    assert!(config.checks.iter().any(|c| c.placement.source.is_some()));
    assert!(config
        .checks
        .iter()
        .any(|c| c.placement.interface.as_deref() == Some("wg-cloud")));

    let sip_transports: Vec<&str> = config
        .checks
        .iter()
        .filter_map(|c| match &c.probe {
            Probe::SipOptions(p) => Some(p.transport.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(sip_transports, ["udp", "tcp"]);

    let icm = config.checks.iter().find(|c| c.name == "sap-icm").unwrap();
    match &icm.probe {
        Probe::Http(p) => {
            assert_eq!(
                p.url,
                "http://sapprd.corp.example:8000/sap/public/icman/ping"
            );
            assert_eq!(p.expect_status, [200]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn plant_01_reads_the_documented_dummy_secrets() {
    let config = load_example("plant-01.toml");
    let mut secrets = Vec::new();
    for check in &config.checks {
        match &check.probe {
            Probe::AsteriskAmi(p) => secrets.push(p.secret.expose().to_string()),
            Probe::Saprouter(p) => {
                secrets.extend(p.password.as_ref().map(|s| s.expose().to_string()))
            }
            _ => {}
        }
    }
    secrets.sort();
    assert_eq!(
        secrets,
        [
            "dummy-ami-secret-change-me",
            "dummy-route-password-change-me"
        ]
    );
    let readme = std::fs::read_to_string(examples_dir().join("secrets/README.md")).unwrap();
    for secret in &secrets {
        assert!(readme.contains(secret.as_str()), "{secret} not documented");
    }
}

fn wireguard(tunnel: &Tunnel) -> &WireguardTunnel {
    match &tunnel.kind {
        TunnelKind::Wireguard(wg) => wg,
        other => panic!("not a WireGuard tunnel: {other:?}"),
    }
}

fn ipsec(tunnel: &Tunnel) -> &IpsecTunnel {
    match &tunnel.kind {
        TunnelKind::Ipsec(ipsec) => ipsec,
        other => panic!("not an IPsec tunnel: {other:?}"),
    }
}

#[test]
fn plant_02_has_ipsec_tunnels_with_a_psk_and_with_certificates() {
    let config = load_example("plant-02.toml");
    let names: Vec<(&str, &str, &str)> = config
        .tunnels
        .iter()
        .map(|t| (t.name.as_str(), t.interface.as_str(), t.kind.as_str()))
        .collect();
    assert_eq!(
        names,
        [("hq", "ipsec-hq", "ipsec"), ("dc", "ipsec-dc", "ipsec")]
    );

    let hq = ipsec(&config.tunnels[0]);
    assert_eq!(hq.remote_addrs, [Host::Name("vpn-hq.example.net".into())]);
    assert_eq!(
        hq.local_id,
        Some(Identity::Fqdn("plant-02.corp.example".into()))
    );
    let psk = std::fs::read_to_string(examples_dir().join("secrets/ipsec-hq.psk")).unwrap();
    assert_eq!(hq.auth, IpsecAuth::Psk(Secret::new(psk.trim_end())));
    let readme = std::fs::read_to_string(examples_dir().join("secrets/README.md")).unwrap();
    assert!(readme.contains(psk.trim_end()), "the PSK is not documented");
    let proposals: Vec<String> = hq.proposals.iter().map(ToString::to_string).collect();
    assert_eq!(
        proposals,
        ["aes256gcm16-prfsha256-x25519", "aes256-sha256-modp2048"]
    );
    assert_eq!(
        (hq.start, hq.dpd_action, hq.child_rekey_bytes),
        (StartAction::Initiate, DpdAction::Restart, Some(10 << 30))
    );

    let dc = ipsec(&config.tunnels[1]);
    assert_eq!(dc.start, StartAction::Trap);
    assert!(dc.encap);
    assert_eq!(dc.local_id, None);
    assert_eq!(
        dc.remote_id.as_ref().map(ToString::to_string).as_deref(),
        Some("C=CH, O=Example Corp, CN=vpn-dc.example.net")
    );
    match &dc.auth {
        IpsecAuth::Cert {
            cert_pem,
            key_pem,
            ca_pem,
            ..
        } => {
            assert!(String::from_utf8_lossy(cert_pem).contains("BEGIN CERTIFICATE"));
            assert!(key_pem.expose().contains("BEGIN PRIVATE KEY"));
            assert!(String::from_utf8_lossy(ca_pem).contains("BEGIN CERTIFICATE"));
        }
        other => panic!("{other:?}"),
    }
    // The same local side for both; destinations apart.
    assert_eq!(hq.local_ts, dc.local_ts);
    assert_ne!(hq.remote_ts, dc.remote_ts);

    // The checks follow the tunnels.
    for tunnel in &config.tunnels {
        assert!(config
            .checks
            .iter()
            .any(|c| c.placement.interface.as_deref() == Some(tunnel.interface.as_str())));
    }
}

#[test]
fn plant_01_has_a_wireguard_tunnel_to_the_cloud() {
    let config = load_example("plant-01.toml");
    assert_eq!(config.tunnels.len(), 1);
    let tunnel = &config.tunnels[0];
    assert_eq!(
        (tunnel.name.as_str(), tunnel.interface.as_str()),
        ("cloud", "wg-cloud")
    );
    assert_eq!(tunnel.kind.as_str(), "wireguard");
    let wg = wireguard(tunnel);
    assert_eq!(wg.listen_port, Some(51820));
    assert_eq!(wg.mtu, 1420);
    assert_eq!(wg.addresses.len(), 2);

    // One peer this side calls and keeps open, one that calls in.
    let names: Vec<&str> = wg.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["cloud-gw-1", "support-jump"]);
    let (gw, support) = (&wg.peers[0], &wg.peers[1]);
    assert_eq!(
        gw.endpoint.as_ref().map(ToString::to_string).as_deref(),
        Some("wg-gw1.example.net:51820")
    );
    assert_eq!(gw.persistent_keepalive, Some(25));
    assert!(gw.preshared_key.is_some());
    assert_eq!(
        (&support.endpoint, support.persistent_keepalive),
        (&None, None)
    );

    // The check that follows the tunnel names its interface.
    assert!(config
        .checks
        .iter()
        .any(|c| c.placement.interface.as_deref() == Some(tunnel.interface.as_str())));
}

#[test]
fn plant_01_documents_the_public_key_of_its_tunnel() {
    let config = load_example("plant-01.toml");
    let public_key = wireguard(&config.tunnels[0])
        .private_key
        .public_key()
        .to_string();
    let readme = std::fs::read_to_string(examples_dir().join("secrets/README.md")).unwrap();
    assert!(
        readme.contains(&format!("its public key is `{public_key}`")),
        "{public_key} not in secrets/README.md"
    );
}

/// Every host name and IP address of a configuration.
fn hosts_of(config: &Config) -> Vec<String> {
    let mut hosts = vec![
        config.admin.listen.ip().to_string(),
        config.metrics.listen.ip().to_string(),
    ];
    for check in &config.checks {
        let target: Option<&Host> = match &check.probe {
            Probe::Tcp(p) => Some(&p.target.host),
            Probe::Tls(p) => Some(&p.target.host),
            Probe::Http(p) => p.connect_to.as_ref().map(|hp| &hp.host),
            Probe::Dns(p) => Some(&p.server.host),
            Probe::Icmp(p) => Some(&p.target),
            Probe::OracleTns(p) => Some(&p.target.host),
            Probe::SapNi(p) => Some(&p.target.host),
            Probe::Saprouter(p) => Some(&p.router.host),
            Probe::AsteriskAmi(p) => Some(&p.target.host),
            Probe::SipOptions(p) => Some(&p.target.host),
        };
        hosts.extend(target.map(Host::to_string));
        match &check.probe {
            Probe::Http(p) => {
                let authority = p.url.split('/').nth(2).unwrap();
                let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
                hosts.push(host.to_string());
            }
            Probe::Tls(p) => hosts.extend(p.server_name.clone()),
            Probe::Dns(p) => {
                hosts.push(p.query.clone());
                hosts.extend(p.expect_answer.iter().cloned());
            }
            Probe::Saprouter(p) => hosts.extend(p.route.iter().map(|hop| hop.host.clone())),
            _ => {}
        }
        hosts.extend(check.placement.source.map(|ip| ip.to_string()));
    }
    for tunnel in &config.tunnels {
        match &tunnel.kind {
            TunnelKind::Wireguard(wg) => {
                let endpoints = wg.peers.iter().filter_map(|peer| peer.endpoint.as_ref());
                hosts.extend(endpoints.map(|endpoint| endpoint.host.to_string()));
            }
            TunnelKind::Ipsec(ipsec) => {
                hosts.extend(ipsec.local_addrs.iter().map(ToString::to_string));
                hosts.extend(ipsec.remote_addrs.iter().map(Host::to_string));
                for id in [&ipsec.local_id, &ipsec.remote_id].into_iter().flatten() {
                    match id {
                        Identity::Fqdn(name) => hosts.push(name.clone()),
                        Identity::Ipv4(ip) => hosts.push(ip.to_string()),
                        Identity::Ipv6(ip) => hosts.push(ip.to_string()),
                        Identity::Dn(attributes) => hosts.extend(
                            attributes
                                .iter()
                                .filter(|(attribute, _)| attribute == "CN")
                                .map(|(_, value)| value.clone()),
                        ),
                        Identity::Email(_) | Identity::KeyId(_) => {}
                    }
                }
            }
        }
    }
    hosts
}

/// RFC 5737 and RFC 3849 ranges, loopback and the wildcard.
fn is_documentation_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113))
                || v4.is_loopback()
                || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            v6.segments()[..2] == [0x2001, 0xdb8] || v6.is_loopback() || v6.is_unspecified()
        }
    }
}

#[test]
fn examples_use_only_documentation_names_and_addresses() {
    for path in example_files() {
        let config = load(&path).unwrap();
        for host in hosts_of(&config) {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let ok = match bare.parse::<IpAddr>() {
                Ok(ip) => is_documentation_ip(ip),
                Err(_) => {
                    let name = host.trim_end_matches('.');
                    name.ends_with(".corp.example") || name.ends_with(".example.net")
                }
            };
            assert!(
                ok,
                "{}: {host} is not a documentation name or address",
                path.display()
            );
        }
    }
}
