//! The WireGuard harness against itself: two real wireguard-go, one per namespace, joined
//! by a veth pair, configured with the real `wg`. What these prove (handshakes seen in
//! `wg show`, ping, checksummed TCP both ways, keepalives on the wire, peer changes, a far
//! end restarting) is what the Siteward interop suites rely on.
//!
//! ```text
//!   namespace A                                namespace B
//!   wg A 10.77.0.1/24                          wg B 10.77.0.2/24
//!   veth 192.0.2.1/24 :51820  <------------->  veth 192.0.2.2/24 :51820
//! ```

use std::net::IpAddr;
use std::time::Duration;

use siteward_tests::wireguard::{
    checksummed_transfer, ping, underlay, unix_now, CapturedUdp, PresharedKey, UdpCapture,
    HANDSHAKE_INITIATION_LEN, HANDSHAKE_RESPONSE_LEN, KEEPALIVE_LEN, WG_PORT,
};
use siteward_tests::{Netns, WgKeys, WgPeer, WireguardGo, STATE_TIMEOUT};

const TRANSFER_TIMEOUT: Duration = Duration::from_secs(20);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Two namespaces on a veth pair, a wireguard-go in each with no peer yet. Fields drop in
/// order: the tunnels stop before their namespaces go.
struct Pair {
    wg_a: WireguardGo,
    wg_b: WireguardGo,
    a: Netns,
    b: Netns,
    a_dev: String,
}

impl Pair {
    fn new() -> Pair {
        let a = Netns::new();
        let b = Netns::new();
        let (a_dev, b_dev) = a.veth_to(&b);
        a.addr(&a_dev, "192.0.2.1/24");
        b.addr(&b_dev, "192.0.2.2/24");
        let wg_a = WireguardGo::start(&a, &WgKeys::generate(), WG_PORT, &["10.77.0.1/24"]);
        let wg_b = WireguardGo::start(&b, &WgKeys::generate(), WG_PORT, &["10.77.0.2/24"]);
        Pair {
            wg_a,
            wg_b,
            a,
            b,
            a_dev,
        }
    }

    /// Each side knows the other's endpoint (either can initiate).
    fn connected() -> Pair {
        let mut pair = Pair::new();
        let (a_pub, b_pub) = pair.keys();
        pair.wg_a
            .add_peer(&WgPeer::new(&b_pub, &["10.77.0.2/32"]).endpoint(underlay(2)));
        pair.wg_b
            .add_peer(&WgPeer::new(&a_pub, &["10.77.0.1/32"]).endpoint(underlay(1)));
        pair
    }

    fn keys(&self) -> (String, String) {
        (
            self.wg_a.public_key().to_string(),
            self.wg_b.public_key().to_string(),
        )
    }

    /// Sends one ping from A to start a handshake and waits until both sides report it.
    fn handshake(&self) -> u64 {
        let before = unix_now().saturating_sub(1);
        ping(&self.a, ip("10.77.0.2"), 1, Duration::from_millis(100));
        let (a_pub, b_pub) = self.keys();
        let at_a = self.wg_a.wait_for_handshake(&b_pub, before, STATE_TIMEOUT);
        self.wg_b.wait_for_handshake(&a_pub, before, STATE_TIMEOUT);
        at_a.latest_handshake.unwrap()
    }
}

#[test]
fn keys_come_from_wg_and_are_written_private() {
    use std::os::unix::fs::PermissionsExt;
    let keys = WgKeys::generate();
    assert_eq!(keys.private.len(), 44);
    assert_ne!(keys.private, keys.public);
    assert_eq!(
        siteward_tests::wireguard::public_key_of(&keys.private),
        keys.public
    );
    assert!(!format!("{keys:?}").contains(&keys.private));
    let dir = tempfile::tempdir().unwrap();
    let path = keys.write_private_key(dir.path());
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), keys.private);
}

#[test]
fn handshake_ping_and_checksummed_tcp_both_ways() {
    let pair = Pair::connected();
    let (a_pub, b_pub) = pair.keys();
    let before = unix_now().saturating_sub(1);
    let handshake = pair.handshake();
    assert!(
        handshake >= before && handshake <= unix_now() + 1,
        "{handshake}"
    );

    let stats = ping(&pair.a, ip("10.77.0.2"), 20, Duration::from_millis(20));
    assert_eq!((stats.transmitted, stats.received), (20, 20), "{stats:?}");
    assert_eq!(stats.rtts.len(), 20);
    assert!(
        stats.summary.unwrap().avg < Duration::from_secs(1),
        "{stats:?}"
    );

    const LEN: u64 = 4 << 20;
    for (from, to, to_ip) in [
        (&pair.a, &pair.b, "10.77.0.2"),
        (&pair.b, &pair.a, "10.77.0.1"),
    ] {
        let transfer = checksummed_transfer(from, to, ip(to_ip), LEN, TRANSFER_TIMEOUT)
            .unwrap_or_else(|e| panic!("to {to_ip}: {e}"));
        assert_eq!(transfer.bytes, LEN);
    }

    // Both 4 MiB went through the tunnel, so both counters of both ends passed them, and
    // each end reports the other's underlay address and allowed IPs.
    for (wg, peer, endpoint, allowed) in [
        (&pair.wg_a, &b_pub, underlay(2), "10.77.0.2/32"),
        (&pair.wg_b, &a_pub, underlay(1), "10.77.0.1/32"),
    ] {
        let dump = wg.show();
        assert_eq!(dump.listen_port, WG_PORT);
        assert_eq!(dump.public_key.as_deref(), Some(wg.public_key()));
        let status = dump.peer(peer).unwrap();
        assert_eq!(status.endpoint, Some(endpoint));
        assert_eq!(status.allowed_ips, [allowed]);
        assert!(status.rx_bytes > LEN && status.tx_bytes > LEN, "{status:?}");
        assert_eq!(status.persistent_keepalive, None);
        assert!(!status.has_preshared_key);
    }
}

#[test]
fn responder_learns_the_endpoint_and_persistent_keepalives_are_on_the_wire() {
    let mut pair = Pair::new();
    let (a_pub, b_pub) = pair.keys();
    let capture = UdpCapture::start(&pair.a, &pair.a_dev, WG_PORT);
    // A waits to be contacted; B initiates and keeps the path alive every second.
    pair.wg_a.add_peer(&WgPeer::new(&b_pub, &["10.77.0.2/32"]));
    pair.wg_b.add_peer(
        &WgPeer::new(&a_pub, &["10.77.0.1/32"])
            .endpoint(underlay(1))
            .keepalive(1),
    );

    // No traffic is sent: B's handshake and keepalives alone cross the wire.
    let sent = |packets: &[CapturedUdp], host: u8, len: usize| -> Vec<f64> {
        packets
            .iter()
            .filter(|p| p.src == underlay(host) && p.len == len)
            .map(|p| p.time)
            .collect()
    };
    let packets = capture.wait_for(STATE_TIMEOUT, "3 keepalives from B", |packets| {
        sent(packets, 2, KEEPALIVE_LEN).len() >= 3
    });
    assert!(
        !sent(&packets, 2, HANDSHAKE_INITIATION_LEN).is_empty(),
        "{packets:?}"
    );
    assert!(
        !sent(&packets, 1, HANDSHAKE_RESPONSE_LEN).is_empty(),
        "{packets:?}"
    );
    // Periodic, not a burst: the timer fires a second after the previous packet.
    let times = sent(&packets, 2, KEEPALIVE_LEN);
    let gap = times[times.len() - 1] - times[times.len() - 2];
    assert!(gap >= 0.9, "keepalives {gap:.3} s apart: {times:?}");

    // The responder learned B's endpoint from the handshake; its receive counter moves
    // with the keepalives, and so does B's transmit counter.
    let at_a = pair.wg_a.wait_for_handshake(&b_pub, 0, STATE_TIMEOUT);
    assert_eq!(at_a.endpoint, Some(underlay(2)));
    assert_eq!(at_a.persistent_keepalive, None);
    let at_b = pair.wg_b.show().peer(&a_pub).cloned().unwrap();
    assert_eq!(at_b.persistent_keepalive, Some(1));
    let two_more = 2 * KEEPALIVE_LEN as u64;
    pair.wg_a.wait_for_peer(&b_pub, STATE_TIMEOUT, |p| {
        p.rx_bytes >= at_a.rx_bytes + two_more
    });
    pair.wg_b.wait_for_peer(&a_pub, STATE_TIMEOUT, |p| {
        p.tx_bytes >= at_b.tx_bytes + two_more
    });
}

#[test]
fn peer_updates_removal_and_a_restarted_far_end() {
    let mut pair = Pair::connected();
    let (a_pub, b_pub) = pair.keys();
    let first = pair.handshake();

    // Update both sides: a pre-shared key, one more allowed prefix, a keepalive.
    let psk = PresharedKey::generate();
    let b_on_a = WgPeer::new(&b_pub, &["10.77.0.2/32", "10.77.9.0/24"])
        .endpoint(underlay(2))
        .keepalive(25)
        .preshared_key(psk.clone());
    pair.wg_a.update_peer(&b_on_a);
    pair.wg_b.update_peer(
        &WgPeer::new(&a_pub, &["10.77.0.1/32"])
            .endpoint(underlay(1))
            .preshared_key(psk),
    );
    let status = pair.wg_a.show().peer(&b_pub).cloned().unwrap();
    assert!(status.has_preshared_key);
    assert_eq!(status.allowed_ips, ["10.77.0.2/32", "10.77.9.0/24"]);
    assert_eq!(status.persistent_keepalive, Some(25));
    // Debug output never shows the pre-shared key.
    assert!(!format!("{b_on_a:?}").contains(b_on_a.preshared_key.as_ref().unwrap().base64()));

    // B restarts: it forgets every session, comes back with the same key and peers, and a
    // new handshake (with the pre-shared key on both sides now) carries traffic again.
    let old_pid = pair.wg_b.pid();
    pair.wg_b.restart();
    assert_ne!(pair.wg_b.pid(), old_pid);
    let fresh = pair.wg_b.show();
    assert_eq!(fresh.peer(&a_pub).unwrap().latest_handshake, None);
    assert!(fresh.peer(&a_pub).unwrap().has_preshared_key);
    let stats = ping(&pair.b, ip("10.77.0.1"), 5, Duration::from_millis(50));
    assert!(stats.received >= 4, "{stats:?}");
    let again = pair.wg_b.wait_for_handshake(&a_pub, 0, STATE_TIMEOUT);
    assert!(again.latest_handshake.unwrap() >= first);
    checksummed_transfer(
        &pair.a,
        &pair.b,
        ip("10.77.0.2"),
        256 << 10,
        TRANSFER_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("after the restart: {e}"));

    // Removed on A: B's packets are no longer accepted, nothing answers.
    pair.wg_a.remove_peer(&b_pub);
    assert!(pair.wg_a.show().peers.is_empty());
    let stats = ping(&pair.b, ip("10.77.0.1"), 2, Duration::from_millis(200));
    assert_eq!(stats.received, 0, "{stats:?}");
}
