//! Siteward against the real wireguard-go (configured with the real `wg`), in two network
//! namespaces joined by a veth pair: handshakes either way, ping and checksummed TCP both
//! ways, `wg show` against Siteward's own UAPI socket, a far end that restarts or moves,
//! and persistent keepalives seen on the wire.
//!
//! ```text
//!   namespace S                                  namespace G
//!   siteward  10.77.0.1/24                       wireguard-go 10.77.0.2/24
//!   veth 192.0.2.1/24 :51820    <------------->  veth 192.0.2.2/24 :51820
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use siteward_tests::netns::unique_ifname;
use siteward_tests::wireguard::{
    checksummed_transfer, ping, underlay, unix_now, wait_for_peer, wg_show_dump, CapturedUdp,
    UdpCapture, KEEPALIVE_LEN, WG_PORT,
};
use siteward_tests::{Daemon, Netns, WgKeys, WgPeer, WireguardGo, STATE_TIMEOUT};

const TRANSFER: u64 = 4 << 20;
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);
/// A far end that lost its sessions is noticed by WireGuard's timers: no answer to data for
/// Keepalive-Timeout + Rekey-Timeout (15 s) starts a new handshake.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(40);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// How Siteward's side of the pair is configured.
#[derive(Default)]
struct SitewardSide {
    /// Siteward initiates (it knows wireguard-go's endpoint).
    endpoint: bool,
    keepalive: Option<&'static str>,
}

/// Siteward in namespace S, wireguard-go in namespace G. Fields drop in order: the tunnel
/// processes stop before their namespaces go.
struct Pair {
    siteward: Daemon,
    go: WireguardGo,
    s: Netns,
    g: Netns,
    g_dev: String,
    sw_if: String,
    sw_keys: WgKeys,
    token: String,
}

impl Pair {
    /// `go_peer` adds wireguard-go's peer entry for Siteward (with or without endpoint).
    fn new(side: SitewardSide, go_peer: impl FnOnce(WgPeer) -> WgPeer) -> Pair {
        let s = Netns::new();
        let g = Netns::new();
        let (s_dev, g_dev) = s.veth_to(&g);
        s.addr(&s_dev, "192.0.2.1/24");
        g.addr(&g_dev, "192.0.2.2/24");
        let sw_keys = WgKeys::generate();
        let mut go = WireguardGo::start(&g, &WgKeys::generate(), WG_PORT, &["10.77.0.2/24"]);
        go.add_peer(&go_peer(WgPeer::new(&sw_keys.public, &["10.77.0.1/32"])));

        let sw_if = unique_ifname('s');
        let mut peer = format!(
            "[[tunnels.peers]]\nname = \"gw\"\npublic_key = \"{}\"\nallowed_ips = [\"10.77.0.2/32\"]\n",
            go.public_key()
        );
        if side.endpoint {
            peer += &format!("endpoint = \"{}\"\n", underlay(2));
        }
        if let Some(k) = side.keepalive {
            peer += &format!("persistent_keepalive = \"{k}\"\n");
        }
        let siteward = Daemon::start_in(
            &s,
            &format!(
                "[[tunnels]]\nname = \"cloud\"\nkind = \"wireguard\"\ninterface = \"{sw_if}\"\n\
                 private_key = \"{}\"\nlisten_port = {WG_PORT}\naddresses = [\"10.77.0.1/24\"]\n\n{peer}",
                sw_keys.private
            ),
        );
        siteward.wait_for_tunnel("cloud");
        let token = siteward.create_token("t");
        Pair {
            siteward,
            go,
            s,
            g,
            g_dev,
            sw_if,
            sw_keys,
            token,
        }
    }

    fn tunnel(&self) -> Value {
        self.siteward.tunnel(&self.token, "cloud")
    }

    fn gw(&self) -> Value {
        self.tunnel()["peers"][0].clone()
    }

    /// Pings until one answer arrives (a handshake may be needed first), then 20 in a row.
    fn ping_through(&self, from: &Netns, to: &str) {
        let first = siteward_tests::wait_until(RECOVERY_TIMEOUT, || {
            (ping(from, ip(to), 1, Duration::from_millis(200)).received == 1).then_some(())
        });
        assert!(first.is_some(), "{to} never answered from {}", from.name());
        let stats = ping(from, ip(to), 20, Duration::from_millis(10));
        assert_eq!(stats.loss_percent(), 0.0, "{stats:?}");
    }

    /// 4 MiB each way, SHA-256 checked by the receiver.
    fn transfer_both_ways(&self) {
        for (sender, receiver, to) in [
            (&self.s, &self.g, "10.77.0.2"),
            (&self.g, &self.s, "10.77.0.1"),
        ] {
            let done = checksummed_transfer(sender, receiver, ip(to), TRANSFER, TRANSFER_TIMEOUT)
                .unwrap_or_else(|e| panic!("transfer to {to}: {e}"));
            assert_eq!(done.bytes, TRANSFER);
        }
    }
}

#[test]
fn siteward_initiates_and_traffic_flows_both_ways() {
    let pair = Pair::new(
        SitewardSide {
            endpoint: true,
            ..SitewardSide::default()
        },
        |peer| peer,
    );
    pair.ping_through(&pair.s, "10.77.0.2");
    pair.transfer_both_ways();

    // wireguard-go learned Siteward's endpoint from the handshake Siteward started.
    let seen = pair
        .go
        .wait_for_peer(&pair.sw_keys.public, STATE_TIMEOUT, |p| {
            p.endpoint.is_some()
        });
    assert_eq!(seen.endpoint, Some(underlay(1)));
    assert!(
        seen.rx_bytes >= TRANSFER && seen.tx_bytes >= TRANSFER,
        "{seen:?}"
    );

    // The stock `wg show` against Siteward's UAPI socket.
    let dump = wg_show_dump(Some(&pair.s), &pair.sw_if);
    assert_eq!(
        dump.public_key.as_deref(),
        Some(pair.sw_keys.public.as_str())
    );
    assert_eq!(dump.listen_port, WG_PORT);
    let gw = dump
        .peer(pair.go.public_key())
        .expect("wg show lists the peer");
    assert_eq!(gw.endpoint, Some(underlay(2)));
    assert_eq!(gw.allowed_ips, ["10.77.0.2/32"]);
    assert!(
        gw.latest_handshake
            .is_some_and(|t| t <= unix_now() && t + 60 > unix_now()),
        "{gw:?}"
    );
    assert!(gw.rx_bytes >= TRANSFER && gw.tx_bytes >= TRANSFER, "{gw:?}");
    assert_eq!(gw.persistent_keepalive, None);

    // The API and the metrics say the same.
    let api = pair.gw();
    assert_eq!(api["endpoint"], underlay(2).to_string());
    assert!(api["rx_bytes"].as_u64().unwrap() >= TRANSFER);
    assert_eq!(pair.tunnel()["state"], "up");
    let scrape = pair.siteward.scrape();
    assert_eq!(
        scrape.get(
            "siteward_tunnel_up",
            &[("tunnel", "cloud"), ("kind", "wireguard")]
        ),
        Some(1.0)
    );
    assert!(
        scrape
            .get(
                "siteward_tunnel_transmit_bytes_total",
                &[("tunnel", "cloud"), ("kind", "wireguard"), ("peer", "gw")]
            )
            .unwrap_or(0.0)
            >= TRANSFER as f64
    );
    assert!(scrape
        .get(
            "siteward_tunnel_peer_last_handshake_timestamp_seconds",
            &[("tunnel", "cloud"), ("peer", "gw")]
        )
        .is_some());

    // `wg showconf` gives a configuration wg-quick could use.
    let conf = pair.s.exec("wg", ["showconf", &pair.sw_if]);
    let conf = String::from_utf8_lossy(&conf.stdout).into_owned();
    for line in [
        "[Interface]".to_string(),
        format!("ListenPort = {WG_PORT}"),
        "[Peer]".to_string(),
        format!("PublicKey = {}", pair.go.public_key()),
        "AllowedIPs = 10.77.0.2/32".to_string(),
        format!("Endpoint = {}", underlay(2)),
    ] {
        assert!(conf.contains(&line), "no {line:?} in\n{conf}");
    }

    // `wg set` is refused: the configuration file owns the tunnel.
    let refused = pair
        .s
        .exec("wg", ["set", &pair.sw_if, "listen-port", "4000"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Operation not permitted"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn siteward_responds_to_a_peer_it_has_no_endpoint_for() {
    let pair = Pair::new(SitewardSide::default(), |peer| {
        peer.endpoint(underlay(1)).keepalive(1)
    });
    pair.ping_through(&pair.g, "10.77.0.1");
    pair.transfer_both_ways();
    // Siteward learned where wireguard-go is from its authenticated handshake.
    assert_eq!(pair.gw()["endpoint"], underlay(2).to_string());
}

#[test]
fn a_far_end_that_restarts_gets_a_new_handshake() {
    let mut pair = Pair::new(
        SitewardSide {
            endpoint: true,
            ..SitewardSide::default()
        },
        |peer| peer,
    );
    pair.ping_through(&pair.s, "10.77.0.2");
    let before = wg_show_dump(Some(&pair.s), &pair.sw_if)
        .peer(pair.go.public_key())
        .and_then(|p| p.latest_handshake)
        .expect("a first handshake");
    // wireguard-go loses every session; Siteward's timers notice the silence and
    // handshake again.
    pair.go.restart();
    pair.ping_through(&pair.s, "10.77.0.2");
    wait_for_peer(
        Some(&pair.s),
        &pair.sw_if,
        pair.go.public_key(),
        STATE_TIMEOUT,
        |p| p.latest_handshake.is_some_and(|t| t > before),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_far_end_that_moves_is_followed() {
    let pair = Pair::new(
        SitewardSide {
            endpoint: true,
            ..SitewardSide::default()
        },
        |peer| peer.endpoint(underlay(1)).keepalive(1),
    );
    pair.ping_through(&pair.s, "10.77.0.2");
    // wireguard-go's host gets a new address; its keepalives now come from there.
    // (Removed first: deleting a primary address takes its secondaries with it.)
    pair.g
        .ip(&["addr", "del", "192.0.2.2/24", "dev", &pair.g_dev]);
    pair.g
        .ip(&["addr", "add", "192.0.2.3/24", "dev", &pair.g_dev]);
    let moved = SocketAddr::new(ip("192.0.2.3"), WG_PORT).to_string();
    pair.siteward.wait_until(
        STATE_TIMEOUT,
        "Siteward follows the peer to 192.0.2.3",
        || (pair.gw()["endpoint"] == moved.as_str()).then_some(()),
    );
    pair.ping_through(&pair.s, "10.77.0.2");
}

#[test]
fn persistent_keepalives_are_on_the_wire() {
    let pair = Pair::new(
        SitewardSide {
            endpoint: true,
            keepalive: Some("1s"),
        },
        |peer| peer,
    );
    let capture = UdpCapture::start(&pair.g, &pair.g_dev, WG_PORT);
    // No traffic at all: what Siteward sends after the handshake are keepalives.
    let keepalives = |packets: &[CapturedUdp]| -> Vec<f64> {
        packets
            .iter()
            .filter(|p| p.src == underlay(1) && p.len == KEEPALIVE_LEN)
            .map(|p| p.time)
            .collect()
    };
    let packets = capture.wait_for(STATE_TIMEOUT, "4 keepalives from Siteward", |packets| {
        keepalives(packets).len() >= 4
    });
    // Periodic, not a burst (the first, right after the handshake, confirms the session).
    let times = keepalives(&packets);
    for gap in times[1..].windows(2).map(|w| w[1] - w[0]) {
        assert!(gap >= 0.9, "keepalives {gap:.3} s apart: {times:?}");
    }
    assert_eq!(pair.gw()["persistent_keepalive_seconds"], 1);
}
