//! Siteward's IPsec against itself: two daemons, one per site namespace. Bare ESP (IP
//! protocol 50 on raw sockets) when no NAT is in the way, UDP-encapsulated ESP when one end
//! forces it, and a tunnel started by traffic (`start = "trap"`).
//!
//! ```text
//!   namespace left                                namespace right
//!   lo 10.1.0.1/24                                lo 10.2.0.1/24
//!   siteward, TUN swXXXX                          siteward, TUN swYYYY
//!   veth 198.51.100.1/24 :500/:4500  <-------->   veth 198.51.100.2/24 :500/:4500
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde_json::Value;
use siteward_tests::ipsec::{random_psk, Credentials, SitewardIpsec};
use siteward_tests::netns::unique_ifname;
use siteward_tests::pki::{KeyKind, TestCa};
use siteward_tests::strongswan::SitePair;
use siteward_tests::wireguard::UdpCapture;
use siteward_tests::{Daemon, STATE_TIMEOUT};

const TRANSFER: u64 = 8 << 20;
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);
/// NAT keepalives follow 20 s without anything sent; the test's own traffic ends just before
/// the wait starts.
const KEEPALIVE_WAIT: Duration = Duration::from_secs(25);

/// A daemon on each site. Fields drop in order: the daemons stop before the namespaces go.
struct Pair {
    left: Daemon,
    right: Daemon,
    left_token: String,
    right_token: String,
    sites: SitePair,
    _files: tempfile::TempDir,
}

impl Pair {
    /// `left` and its mirror image (`right_start`, `right_credentials`) on the right.
    fn start(
        left: SitewardIpsec,
        right_start: &'static str,
        right_credentials: Credentials,
    ) -> Pair {
        let sites = SitePair::new();
        let files = tempfile::tempdir().expect("a directory for certificates");
        let mut right = left.mirrored(&unique_ifname('s'), right_credentials);
        right.start = right_start;
        let right = Daemon::start_in(&sites.right, &right.toml(files.path()));
        right.wait_for_tunnel("site");
        let left = Daemon::start_in(&sites.left, &left.toml(files.path()));
        left.wait_for_tunnel("site");
        let left_token = left.create_token("t");
        let right_token = right.create_token("t");
        Pair {
            left,
            right,
            left_token,
            right_token,
            sites,
            _files: files,
        }
    }

    fn psk(mut configure: impl FnMut(&mut SitewardIpsec)) -> Pair {
        let (mut left, right_psk) = psk_left();
        configure(&mut left);
        Pair::start(left, "respond", right_psk)
    }

    /// Both ends up; returns their statuses (left, right).
    fn wait_up(&self) -> (Value, Value) {
        let up = |daemon: &Daemon, token: &str| {
            daemon.wait_until(STATE_TIMEOUT, "the tunnel is up", || {
                let status = daemon.tunnel(token, "site");
                (status["state"] == "up").then_some(status)
            })
        };
        (
            up(&self.left, &self.left_token),
            up(&self.right, &self.right_token),
        )
    }

    fn assert_traffic_flows(&self) {
        let stats = self.sites.ping_right(10, Duration::from_millis(20));
        assert_eq!(stats.received, stats.transmitted, "{stats:?}");
        self.sites.transfer_both_ways(TRANSFER, TRANSFER_TIMEOUT);
    }
}

/// The left end of a tunnel with a fresh pre-shared key, initiating; and the right end's
/// credentials (the same key).
fn psk_left() -> (SitewardIpsec, Credentials) {
    let psk = random_psk();
    let left = SitewardIpsec::left(
        &unique_ifname('s'),
        Credentials::Psk(psk.clone()),
        "initiate",
    );
    (left, Credentials::Psk(psk))
}

fn child(status: &Value) -> &Value {
    &status["ipsec"]["ike_sas"][0]["child_sas"][0]
}

/// The two ends describe the same SAs, mirrored.
fn assert_ends_agree(left: &Value, right: &Value) {
    let (l, r) = (&left["ipsec"]["ike_sas"][0], &right["ipsec"]["ike_sas"][0]);
    assert_eq!((&l["spi_i"], &l["spi_r"]), (&r["spi_i"], &r["spi_r"]));
    assert_eq!(
        (l["initiator"].clone(), r["initiator"].clone()),
        (true.into(), false.into())
    );
    assert_eq!(
        l["algorithms"].as_str().expect("negotiated algorithms"),
        r["algorithms"].as_str().expect("negotiated algorithms")
    );
    let (lc, rc) = (child(left), child(right));
    assert_eq!(
        (&lc["spi_in"], &lc["spi_out"]),
        (&rc["spi_out"], &rc["spi_in"])
    );
    assert_eq!(
        (&lc["local_ts"], &lc["remote_ts"]),
        (&rc["remote_ts"], &rc["local_ts"])
    );
}

#[test]
fn bare_esp_without_a_nat_carries_traffic_both_ways() {
    let pair = Pair::psk(|_| {});
    let (left, right) = pair.wait_up();
    assert_ends_agree(&left, &right);
    for status in [&left, &right] {
        assert_eq!(status["ipsec"]["ike_sas"][0]["nat_t"], false, "{status:#}");
        assert_eq!(child(status)["encap"], false, "{status:#}");
        // IKE stayed on port 500: no NAT, no move to 4500.
        assert!(
            status["ipsec"]["ike_sas"][0]["local"]
                .as_str()
                .unwrap()
                .ends_with(":500"),
            "{status:#}"
        );
    }
    pair.assert_traffic_flows();
    let left = pair.left.tunnel(&pair.left_token, "site");
    let right = pair.right.tunnel(&pair.right_token, "site");
    assert!(child(&left)["bytes_out"].as_u64().unwrap() >= TRANSFER);
    assert!(child(&right)["bytes_in"].as_u64().unwrap() >= TRANSFER);
    assert_eq!(left["ipsec"]["replay_drops"], 0);
}

#[test]
fn forced_udp_encapsulation_with_certificates_carries_traffic_both_ways() {
    let root = TestCa::new("Siteward Test Root");
    let credentials = |cn: &str, san: &str| Credentials::Cert {
        leaf: root.issue_leaf(cn, &[san], KeyKind::EcdsaP384),
        trusted: vec![root.cert_pem()],
    };
    let mut left = SitewardIpsec::left(
        &unique_ifname('s'),
        credentials("left-gw", "left.example"),
        "initiate",
    )
    .proposals("aes256gcm16-prfsha384-ecp384", "aes256gcm16-ecp384");
    left.local_id = Some("left.example".into());
    left.remote_id = Some("right.example".into());
    left.encap = true;
    let pair = Pair::start(left, "respond", credentials("right-gw", "right.example"));
    let (left, right) = pair.wait_up();
    assert_ends_agree(&left, &right);
    assert_eq!(
        left["ipsec"]["ike_sas"][0]["algorithms"],
        "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384"
    );
    for status in [&left, &right] {
        // The initiator's forced encapsulation is what both ends use (RFC 7296 §2.23: it
        // fakes its NAT detection hash, so the responder sees a NAT).
        assert_eq!(status["ipsec"]["ike_sas"][0]["nat_t"], true, "{status:#}");
        assert_eq!(child(status)["encap"], true, "{status:#}");
        assert!(
            status["ipsec"]["ike_sas"][0]["local"]
                .as_str()
                .unwrap()
                .ends_with(":4500"),
            "{status:#}"
        );
    }
    // Keepalives (one 0xFF byte on port 4500, RFC 3948) keep a NAT mapping open while
    // the initiator sends nothing: none while traffic flows, one about 20 s after it ends.
    let capture = UdpCapture::start_with_filter(
        &pair.sites.left,
        &pair.sites.left_dev,
        "src host 198.51.100.1 and udp src port 4500 and udp[4:2] = 9 and udp[8] = 0xff",
    );
    pair.assert_traffic_flows();
    let idle_since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let first = siteward_tests::wait_until(KEEPALIVE_WAIT, || capture.lines().first().cloned())
        .expect("a NAT keepalive within 25 s of idleness");
    // tcpdump -tt: the capture time, Unix seconds, starts the line.
    let sent_at: f64 = first
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no time in {first:?}"));
    assert!(
        sent_at - idle_since >= 19.0,
        "a keepalive {:.1} s after the last traffic: {first}",
        sent_at - idle_since
    );
}

#[test]
fn a_peer_that_restarts_replaces_its_old_sas_at_once() {
    let (left, right_psk) = psk_left();
    let mut pair = Pair::start(left.clone(), "respond", right_psk);
    let (_, before) = pair.wait_up();

    // The initiator dies without a word (no Delete) and comes straight back: the
    // responder still holds the old SAs when the new IKE_AUTH (with INITIAL_CONTACT)
    // arrives, and must replace them.
    pair.left.process().signal(Signal::SIGKILL);
    assert!(
        pair.left.process().wait_timeout(STATE_TIMEOUT).is_some(),
        "the killed daemon did not exit"
    );
    pair.left = Daemon::start_in(&pair.sites.left, &left.toml(pair._files.path()));
    pair.left.wait_for_tunnel("site");
    pair.left_token = pair.left.create_token("t");
    let (left, right) = pair.wait_up();
    let sas = right["ipsec"]["ike_sas"].as_array().unwrap();
    assert_eq!(sas.len(), 1, "only the new IKE SA is left: {right:#}");
    assert_ne!(
        sas[0]["spi_i"], before["ipsec"]["ike_sas"][0]["spi_i"],
        "{right:#}"
    );
    assert_ends_agree(&left, &right);
    pair.assert_traffic_flows();
}

#[test]
fn a_changed_tunnel_restarts_on_reload_and_comes_back() {
    let (left, right_psk) = psk_left();
    let pair = Pair::start(left.clone(), "respond", right_psk);
    let (before, _) = pair.wait_up();

    // Any change restarts an IPsec tunnel: its IKE and ESP sockets, shared by every IPsec
    // tunnel of the process, must be closed before the new one binds them.
    let mut changed = left;
    changed.dpd_delay = Some("10s".into());
    pair.left.write_config_raw(&format!(
        "{}\n{}",
        pair.left.config_header(),
        changed.toml(pair._files.path())
    ));
    pair.left.sighup();
    let applied = pair.left.wait_for_log(STATE_TIMEOUT, |r| {
        r["message"] == "tunnels applied" && r["restarted"] == "[\"site\"]"
    });
    assert_eq!(applied["failed"], "[]", "{applied}");
    let (after, right) = pair.wait_up();
    assert_ne!(
        after["ipsec"]["ike_sas"][0]["spi_i"], before["ipsec"]["ike_sas"][0]["spi_i"],
        "a new IKE SA"
    );
    assert_ends_agree(&after, &right);
    pair.assert_traffic_flows();
}

#[test]
fn a_trap_tunnel_comes_up_when_traffic_for_the_far_side_arrives() {
    let pair = Pair::psk(|left| left.start = "trap");
    // Nothing is negotiated before traffic asks for it.
    let idle = pair.left.tunnel(&pair.left_token, "site");
    assert_eq!(idle["state"], "down", "{idle:#}");
    assert!(
        idle["ipsec"]["ike_sas"].as_array().unwrap().is_empty(),
        "{idle:#}"
    );
    // The first packets are dropped while the SAs are negotiated; then pings pass.
    let first = siteward_tests::wait_until(STATE_TIMEOUT, || {
        (pair
            .sites
            .ping_right(1, Duration::from_millis(100))
            .received
            == 1)
            .then_some(())
    });
    assert!(first.is_some(), "the trap never brought the tunnel up");
    let (left, right) = pair.wait_up();
    assert_ends_agree(&left, &right);
    assert!(left["dropped"]["no_sa"].as_u64().unwrap() >= 1, "{left:#}");
    pair.assert_traffic_flows();
}
