//! The strongSwan harness against itself: two real charons (kernel-libipsec, user-space
//! ESP), one per namespace, configured with the real swanctl. What these prove (IKE_SA and
//! CHILD_SA up on both ends with the configured algorithms, ping and checksummed TCP
//! through the tunnel, byte counters, certificate authentication through an intermediate
//! CA, rekeying under traffic) is what the Siteward ↔ strongSwan suites rely on.
//!
//! ```text
//!   namespace left                               namespace right
//!   lo 10.1.0.1/24                               lo 10.2.0.1/24
//!   charon, ipsec0 (TUN)                         charon, ipsec0 (TUN)
//!   veth 198.51.100.1/24 :500/:4500 <-------->   veth 198.51.100.2/24 :500/:4500
//! ```

use std::time::Duration;

use siteward_tests::ipsec::{random_psk, Credentials, SwanctlConn, CHILD, CONN};
use siteward_tests::pki::{KeyKind, Leaf, TestCa};
use siteward_tests::strongswan::{
    SitePair, LEFT_SITE, LEFT_SUBNET, LEFT_UNDERLAY, RIGHT_SITE, RIGHT_SUBNET, RIGHT_UNDERLAY,
};
use siteward_tests::{Charon, CharonConfig, SaInfo, STATE_TIMEOUT};

const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);

/// A charon on each site. The charons are declared before the sites, so they stop before
/// the namespaces go.
struct Tunnel {
    left: Charon,
    right: Charon,
    sites: SitePair,
}

impl Tunnel {
    fn start(left: CharonConfig, right: CharonConfig) -> Tunnel {
        let sites = SitePair::new();
        let right = Charon::start(&sites.right, "right", &right).expect("starting right charon");
        let left = Charon::start(&sites.left, "left", &left).expect("starting left charon");
        Tunnel { left, right, sites }
    }

    fn psk(ike: &str, esp: &str) -> Tunnel {
        let psk = Credentials::Psk(random_psk());
        let left = SwanctlConn::left(psk.clone(), None, ike, esp);
        let right = left.mirrored(psk);
        Tunnel::start(left.charon_config(), right.charon_config())
    }

    /// Left initiates; returns both ends' IKE_SAs once the CHILD_SA is installed on both.
    fn establish(&self) -> (SaInfo, SaInfo) {
        self.left.initiate_child(CHILD).expect("initiating");
        let left = self
            .left
            .wait_for_child_installed(CHILD, STATE_TIMEOUT)
            .expect("left child installed");
        let right = self
            .right
            .wait_for_child_installed(CHILD, STATE_TIMEOUT)
            .expect("right child installed");
        (left, right)
    }

    fn ping_right(&self, count: u32) -> siteward_tests::wireguard::PingStats {
        self.sites.ping_right(count, Duration::from_millis(100))
    }
}

/// Both ends describe the same SAs: the same IKE SPIs, and each CHILD_SA's inbound SPI is
/// the other's outbound one.
fn assert_ends_agree(left: &SaInfo, right: &SaInfo) {
    assert_eq!((left.spi_i, left.spi_r), (right.spi_i, right.spi_r));
    assert!(left.spi_i != 0 && left.spi_r != 0, "{left:#?}");
    assert!(left.initiator && !right.initiator);
    let (l, r) = (left.child(CHILD).unwrap(), right.child(CHILD).unwrap());
    assert_eq!((l.spi_in, l.spi_out), (r.spi_out, r.spi_in));
    assert!(l.spi_in != 0 && l.spi_out != 0, "{l:#?}");
    assert_eq!(
        (&l.local_ts, &l.remote_ts),
        (
            &vec![LEFT_SUBNET.to_string()],
            &vec![RIGHT_SUBNET.to_string()]
        )
    );
    assert_eq!(
        (&r.local_ts, &r.remote_ts),
        (
            &vec![RIGHT_SUBNET.to_string()],
            &vec![LEFT_SUBNET.to_string()]
        )
    );
    assert!(l.encap && r.encap, "ESP must be UDP-encapsulated");
}

/// The installed CHILD_SA named [`CHILD`] of `sa`.
fn installed_child(sa: &SaInfo) -> &siteward_tests::ChildSaInfo {
    sa.children_named(CHILD)
        .find(|c| c.state == "INSTALLED")
        .unwrap_or_else(|| panic!("no installed {CHILD}: {sa:#?}"))
}

#[test]
fn psk_tunnel_carries_ping_and_a_checksummed_transfer() {
    let tunnel = Tunnel::psk("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let left_ns = &tunnel.sites.left;
    let tun = tunnel.left.tun_interface();
    assert!(tun.starts_with("ipsec"), "{tun}");

    // Nothing routes between the sites before the tunnel is up.
    let before = left_ns.exec(
        "ping",
        ["-n", "-c", "1", "-W", "1", &RIGHT_SITE.to_string()],
    );
    assert!(!before.status.success(), "{before:?}");

    let (left, right) = tunnel.establish();
    assert_eq!(
        (left.state.as_str(), right.state.as_str()),
        ("ESTABLISHED", "ESTABLISHED")
    );
    for sa in [&left, &right] {
        assert_eq!(sa.name, CONN);
        assert_eq!(sa.encr.as_deref(), Some("AES_GCM_16"));
        assert_eq!(sa.encr_keysize, Some(256));
        assert_eq!(sa.prf.as_deref(), Some("PRF_HMAC_SHA2_256"));
        assert_eq!(sa.dh.as_deref(), Some("CURVE_25519"));
        let child = sa.child(CHILD).unwrap();
        assert_eq!(
            (child.mode.as_str(), child.protocol.as_str()),
            ("TUNNEL", "ESP")
        );
        assert_eq!(child.encr.as_deref(), Some("AES_GCM_16"));
        assert_eq!(child.encr_keysize, Some(256));
        assert_eq!(child.integ, None, "an AEAD has no separate integrity");
    }
    assert_eq!(left.local_id, LEFT_UNDERLAY.to_string());
    assert_eq!(left.remote_id, RIGHT_UNDERLAY.to_string());
    assert_ends_agree(&left, &right);

    // The remote subnet is routed into kernel-libipsec's TUN device, from the site address.
    let route = left_ns.exec("ip", ["route", "get", &RIGHT_SITE.to_string()]);
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(
        route.contains(&format!("dev {tun}")) && route.contains(&format!("src {LEFT_SITE}")),
        "{route}"
    );

    let stats = tunnel.ping_right(5);
    assert_eq!(stats.received, stats.transmitted, "{stats:?}");

    const LEN: u64 = 2 << 20;
    tunnel.sites.transfer_both_ways(LEN, TRANSFER_TIMEOUT);

    // Both transfers went through the CHILD_SA: each direction carried at least their bytes.
    for charon in [&tunnel.left, &tunnel.right] {
        let sa = charon.list_sas().unwrap().remove(0);
        let child = installed_child(&sa);
        assert!(
            child.bytes_out >= LEN && child.bytes_in >= LEN,
            "{}: {child:#?}",
            charon.name()
        );
        assert!(child.packets_in > 0 && child.packets_out > 0, "{child:#?}");
    }
}

/// Each end has its certificate; the left one is issued by an intermediate CA. `left_key`
/// and `right_key` choose their key types.
fn certificate_tunnel(left_key: KeyKind, right_key: KeyKind) -> (Tunnel, Leaf) {
    let root = TestCa::new("Siteward Test Root");
    let intermediate = root.intermediate("Siteward Test Intermediate");
    let left_leaf = intermediate.issue_leaf("left-gw", &["left.example"], left_key);
    let right_leaf = root.issue_leaf("right-gw", &["right.example"], right_key);
    let cas = [root.cert_pem(), intermediate.cert_pem()];
    // Left is known by its subject DN, right by its SAN FQDN.
    let credentials = |leaf: Leaf| Credentials::Cert {
        leaf,
        trusted: cas.to_vec(),
    };
    let left = SwanctlConn::left(
        credentials(left_leaf.clone()),
        Some((&left_leaf.subject_dn, "right.example")),
        "aes256-sha256-modp2048",
        "aes256-sha256",
    );
    let right = left.mirrored(credentials(right_leaf));
    let tunnel = Tunnel::start(left.charon_config(), right.charon_config());
    (tunnel, left_leaf)
}

#[test]
fn ecdsa_certificates_through_an_intermediate_ca_establish_the_tunnel() {
    let (tunnel, left_leaf) = certificate_tunnel(KeyKind::EcdsaP256, KeyKind::EcdsaP384);
    let (left, right) = tunnel.establish();
    assert_ends_agree(&left, &right);
    assert_eq!(left.local_id, left_leaf.subject_dn);
    assert_eq!(left.remote_id, "right.example");
    assert_eq!(right.remote_id, left_leaf.subject_dn);
    for sa in [&left, &right] {
        assert_eq!(sa.state, "ESTABLISHED");
        assert_eq!(sa.encr.as_deref(), Some("AES_CBC"));
        assert_eq!(sa.encr_keysize, Some(256));
        assert_eq!(sa.integ.as_deref(), Some("HMAC_SHA2_256_128"));
        assert_eq!(sa.prf.as_deref(), Some("PRF_HMAC_SHA2_256"));
        assert_eq!(sa.dh.as_deref(), Some("MODP_2048"));
        let child = sa.child(CHILD).unwrap();
        assert_eq!(child.encr.as_deref(), Some("AES_CBC"));
        assert_eq!(child.integ.as_deref(), Some("HMAC_SHA2_256_128"));
    }
    // The right end verified the left's chain through the intermediate.
    tunnel
        .right
        .wait_for_log("using trusted intermediate ca certificate", STATE_TIMEOUT)
        .unwrap();
    let stats = tunnel.ping_right(3);
    assert_eq!(stats.received, stats.transmitted, "{stats:?}");
}

#[test]
fn rsa_certificates_establish_the_tunnel() {
    let (tunnel, _) = certificate_tunnel(KeyKind::Rsa2048, KeyKind::Rsa2048);
    let (left, right) = tunnel.establish();
    assert_ends_agree(&left, &right);
    // Both ends signed with their RSA keys (RFC 7427 signature authentication).
    for charon in [&tunnel.left, &tunnel.right] {
        let log = charon.log();
        assert!(
            log.contains("with RSA_EMSA_PKCS1_SHA2_256 successful"),
            "{}: no RSA authentication in the log",
            charon.name()
        );
    }
    let stats = tunnel.ping_right(3);
    assert_eq!(stats.received, stats.transmitted, "{stats:?}");
}

#[test]
fn a_wrong_pre_shared_key_is_refused() {
    let left = SwanctlConn::left(
        Credentials::Psk(random_psk()),
        None,
        "aes256gcm16-prfsha256-x25519",
        "aes256gcm16",
    );
    let right = left.mirrored(Credentials::Psk(random_psk()));
    let tunnel = Tunnel::start(left.charon_config(), right.charon_config());
    let err = tunnel.left.initiate_child(CHILD).unwrap_err();
    assert!(format!("{err:#}").contains("failed"), "{err:#}");
    tunnel
        .right
        .wait_for_log("MAC mismatched", STATE_TIMEOUT)
        .unwrap();
    assert!(tunnel
        .right
        .list_sas()
        .unwrap()
        .iter()
        .all(|sa| sa.children.is_empty()));
}

#[test]
fn rekeying_under_traffic_keeps_the_tunnel_up() {
    let tunnel = Tunnel::psk("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let (left, _) = tunnel.establish();
    let old = installed_child(&left).clone();

    let stats = std::thread::scope(|scope| {
        let pinging = scope.spawn(|| tunnel.ping_right(50));
        // Rekey once the ping is flowing through the first CHILD_SA.
        tunnel
            .left
            .wait_for_sa(STATE_TIMEOUT, "pings on the first CHILD_SA", |sa| {
                sa.children_named(CHILD)
                    .any(|c| c.spi_in == old.spi_in && c.packets_in >= 3)
            })
            .unwrap();
        tunnel.left.rekey_child(CHILD).unwrap();
        let rekeyed = tunnel
            .left
            .wait_for_sa(STATE_TIMEOUT, "a new CHILD_SA alone", |sa| {
                sa.children.len() == 1
                    && sa.children[0].state == "INSTALLED"
                    && sa.children[0].spi_in != old.spi_in
            })
            .unwrap();
        let new = rekeyed.children[0].clone();
        assert_ne!(new.spi_out, old.spi_out);
        // The right end switched to the same pair.
        tunnel
            .right
            .wait_for_sa(STATE_TIMEOUT, "the rekeyed CHILD_SA", |sa| {
                sa.children.len() == 1
                    && sa.children[0].spi_in == new.spi_out
                    && sa.children[0].spi_out == new.spi_in
            })
            .unwrap();
        pinging.join().unwrap()
    });
    assert!(
        stats.received + 2 >= stats.transmitted,
        "more than 2 pings lost across the rekeying: {stats:?}"
    );
    // The pings after the rekeying used the new CHILD_SA.
    let sa = tunnel.left.list_sas().unwrap().remove(0);
    let child = installed_child(&sa);
    assert!(
        child.spi_in != old.spi_in && child.packets_in > 0,
        "{child:#?}"
    );

    // An IKE_SA rekeying keeps the CHILD_SA and gives new IKE SPIs.
    tunnel.left.rekey_ike(CONN).unwrap();
    let rekeyed = tunnel
        .left
        .wait_for_sa(STATE_TIMEOUT, "a new IKE_SA", |sa| {
            sa.state == "ESTABLISHED" && sa.spi_i != left.spi_i && sa.child(CHILD).is_some()
        })
        .unwrap();
    assert_eq!(installed_child(&rekeyed).spi_in, child.spi_in);
    let stats = tunnel.ping_right(3);
    assert_eq!(stats.received, stats.transmitted, "{stats:?}");
}

#[test]
fn a_killed_charon_is_gone_and_its_log_stays_readable() {
    let tunnel = Tunnel::psk("aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let mut tunnel = tunnel;
    let pid = tunnel.right.pid();
    tunnel.right.kill();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(tunnel.right.log().contains("Starting IKE charon daemon"));
    // The left end now gets no answer: the initiation fails within its bound.
    let mark = tunnel.left.log_mark();
    tunnel
        .left
        .swanctl(&["--initiate", "--child", CHILD, "--timeout", "2"])
        .unwrap_err();
    tunnel
        .left
        .wait_for_log_since(mark, "sending packet", STATE_TIMEOUT)
        .unwrap();
}
