//! Siteward's IPsec (IKEv2 and user-space ESP) against the real strongSwan 5.9 charon
//! (kernel-libipsec, configured with the real swanctl), in two namespaces the tests
//! create: Siteward as initiator and as responder, PSK and certificates, DH groups 31, 19
//! and 14, AES-GCM and AES-CBC with HMAC-SHA-256; ping and checksummed TCP both ways;
//! CHILD and IKE rekeys started by either side under traffic; DPD against a killed charon;
//! and the refusals (wrong PSK, untrusted certificate, disjoint proposals or selectors)
//! with the right notify, a clear status, and nothing installed.
//!
//! ```text
//!   namespace left                                namespace right
//!   lo 10.1.0.1/24                                lo 10.2.0.1/24
//!   siteward, TUN swXXXX                          charon, ipsec0 (TUN)
//!   veth 198.51.100.1/24 :500/:4500  <-------->   veth 198.51.100.2/24 :500/:4500
//! ```

use std::time::{Duration, Instant};

use serde_json::Value;
use siteward_tests::http::Request;
use siteward_tests::ipsec::{random_psk, Credentials, SitewardIpsec, SwanctlConn, CHILD, CONN};
use siteward_tests::netns::unique_ifname;
use siteward_tests::pki::{KeyKind, TestCa};
use siteward_tests::strongswan::{SitePair, LEFT_UNDERLAY};
use siteward_tests::wireguard::PingStats;
use siteward_tests::{promtool_check, Charon, Daemon, SaInfo, STATE_TIMEOUT};

const TRANSFER: u64 = 4 << 20;
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a tunnel may take to come up (an initiator backs off after a failure).
const UP_TIMEOUT: Duration = Duration::from_secs(30);

/// The two sites, charon on the right and Siteward on the left. Fields drop in order: the
/// processes stop before their namespaces go.
struct Pair {
    siteward: Daemon,
    charon: Charon,
    token: String,
    tunnel: SitewardIpsec,
    conn: SwanctlConn,
    sites: SitePair,
    _files: tempfile::TempDir,
}

impl Pair {
    /// Starts charon with `conn`, then Siteward with `tunnel`.
    fn start(tunnel: SitewardIpsec, conn: SwanctlConn) -> Pair {
        let sites = SitePair::new();
        let charon =
            Charon::start(&sites.right, "right", &conn.charon_config()).expect("starting charon");
        let files = tempfile::tempdir().expect("a directory for certificates");
        let siteward = Daemon::start_in(&sites.left, &tunnel.toml(files.path()));
        siteward.wait_for_tunnel(&tunnel.name);
        let token = siteward.create_token("t");
        Pair {
            siteward,
            charon,
            token,
            tunnel,
            conn,
            sites,
            _files: files,
        }
    }

    /// A PSK tunnel with the given proposals, mirrored on charon.
    fn psk(start: &'static str, ike: &str, esp: &str) -> Pair {
        let psk = random_psk();
        let tunnel = SitewardIpsec::left(&unique_ifname('s'), Credentials::Psk(psk.clone()), start)
            .proposals(ike, esp);
        let conn = SwanctlConn::mirror_of(&tunnel, Credentials::Psk(psk));
        Pair::start(tunnel, conn)
    }

    fn status(&self) -> Value {
        self.siteward.tunnel(&self.token, &self.tunnel.name)
    }

    /// Waits until Siteward shows the tunnel up with an installed CHILD_SA and charon has
    /// it installed too; returns Siteward's status and charon's IKE_SA.
    fn wait_up(&self) -> (Value, SaInfo) {
        let status = self
            .siteward
            .wait_until(UP_TIMEOUT, "the tunnel is up", || {
                let status = self.status();
                (status["state"] == "up").then_some(status)
            });
        let sa = self
            .charon
            .wait_for_child_installed(CHILD, STATE_TIMEOUT)
            .expect("charon's CHILD_SA installed");
        (status, sa)
    }

    fn ping_right(&self, count: u32, interval: Duration) -> PingStats {
        self.sites.ping_right(count, interval)
    }

    /// 4 MiB each way, SHA-256 checked by the receiver.
    fn transfer_both_ways(&self) {
        self.sites.transfer_both_ways(TRANSFER, TRANSFER_TIMEOUT);
    }

    /// Ping and a transfer each way through the tunnel.
    fn assert_traffic_flows(&self) {
        let stats = self.ping_right(5, Duration::from_millis(50));
        assert_eq!(stats.received, stats.transmitted, "{stats:?}");
        self.transfer_both_ways();
    }

    fn rekey(&self, sa: &str) {
        let path = format!("/api/v1/tunnels/{}/rekey?sa={sa}", self.tunnel.name);
        let response = self.siteward.api(&Request::post(&path).bearer(&self.token));
        assert_eq!(response.status, 202, "POST {path}: {}", response.text());
    }
}

fn hex_u64(value: &Value) -> u64 {
    u64::from_str_radix(value.as_str().expect("a hex string"), 16).expect("hex")
}

fn hex_u32(value: &Value) -> u32 {
    u32::from_str_radix(value.as_str().expect("a hex string"), 16).expect("hex")
}

/// Siteward's and charon's views of the SAs agree: the same IKE SPIs, and each CHILD_SA's
/// inbound SPI is the other's outbound one.
fn assert_ends_agree(status: &Value, charon: &SaInfo) {
    let ike = &status["ipsec"]["ike_sas"][0];
    assert_eq!(
        (hex_u64(&ike["spi_i"]), hex_u64(&ike["spi_r"])),
        (charon.spi_i, charon.spi_r),
        "{status:#}\n{charon:#?}"
    );
    let child = &ike["child_sas"][0];
    let theirs = charon.child(CHILD).expect("charon's CHILD_SA");
    assert_eq!(
        (hex_u32(&child["spi_in"]), hex_u32(&child["spi_out"])),
        (theirs.spi_out, theirs.spi_in),
        "{status:#}\n{charon:#?}"
    );
}

#[test]
fn siteward_initiates_with_a_psk_x25519_and_aes_gcm() {
    let pair = Pair::psk("initiate", "aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let (status, sa) = pair.wait_up();
    assert_ends_agree(&status, &sa);
    assert!(!sa.initiator, "charon responded");
    assert_eq!(sa.dh.as_deref(), Some("CURVE_25519"));
    assert_eq!(sa.encr.as_deref(), Some("AES_GCM_16"));
    assert_eq!(sa.prf.as_deref(), Some("PRF_HMAC_SHA2_256"));
    assert_eq!(sa.remote_id, LEFT_UNDERLAY.to_string());
    let ike = &status["ipsec"]["ike_sas"][0];
    assert_eq!(ike["state"], "established", "{status:#}");
    assert_eq!(ike["initiator"], true);
    assert_eq!(
        ike["algorithms"], "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519",
        "{status:#}"
    );
    let child = &ike["child_sas"][0];
    assert_eq!(child["algorithms"], "AES_GCM_16-256", "{status:#}");
    assert_eq!(child["local_ts"][0], "10.1.0.0/24");
    assert_eq!(child["remote_ts"][0], "10.2.0.0/24");
    assert_eq!(child["encap"], true, "charon asked for UDP encapsulation");

    pair.assert_traffic_flows();

    // The byte counters of both ends saw the transfers.
    let status = pair.status();
    let child = &status["ipsec"]["ike_sas"][0]["child_sas"][0];
    assert!(
        child["bytes_in"].as_u64().unwrap() >= TRANSFER,
        "{status:#}"
    );
    assert!(
        child["bytes_out"].as_u64().unwrap() >= TRANSFER,
        "{status:#}"
    );
    let sa = pair.charon.list_sas().unwrap().remove(0);
    let theirs = sa.child(CHILD).unwrap();
    assert!(
        theirs.bytes_in >= TRANSFER && theirs.bytes_out >= TRANSFER,
        "{theirs:#?}"
    );

    // Metrics: the tunnel is up, its IPsec families are there, promtool accepts the lot.
    let text = pair.siteward.scrape_raw().text();
    let (ok, report) = promtool_check(&text);
    assert!(ok, "promtool: {report}");
    let scrape = siteward_tests::Scrape::parse(&text);
    let labels = [("tunnel", "site"), ("kind", "ipsec")];
    assert_eq!(scrape.get("siteward_tunnel_up", &labels), Some(1.0));
    assert!(
        scrape
            .get("siteward_tunnel_receive_bytes_total", &[("tunnel", "site")])
            .unwrap()
            >= TRANSFER as f64
    );
    for sa in ["ike", "child"] {
        assert_eq!(
            scrape.get(
                "siteward_ipsec_rekeys_total",
                &[("tunnel", "site"), ("sa", sa)]
            ),
            Some(0.0)
        );
    }
    assert_eq!(
        scrape.get("siteward_ipsec_auth_failures_total", &[("tunnel", "site")]),
        Some(0.0)
    );
    assert_eq!(
        scrape.get("siteward_ipsec_replay_drops_total", &[("tunnel", "site")]),
        Some(0.0)
    );
    // The pre-shared key shows nowhere.
    let psk = match &pair.tunnel.credentials {
        Credentials::Psk(psk) => psk.clone(),
        Credentials::Cert { .. } => unreachable!(),
    };
    assert!(!text.contains(&psk));
    assert!(!status.to_string().contains(&psk));
    assert!(pair.siteward.logs().iter().all(|l| !l.contains(&psk)));
}

/// A leaf for each end, Siteward's and charon's, from `ca` (Siteward known as
/// `left.example`, charon as `right.example`).
fn certificate_tunnel(
    start: &'static str,
    sw_cert: Credentials,
    swan_cert: Credentials,
    ike: &str,
    esp: &str,
) -> Pair {
    let mut tunnel = SitewardIpsec::left(&unique_ifname('s'), sw_cert, start).proposals(ike, esp);
    tunnel.local_id = Some("left.example".into());
    tunnel.remote_id = Some("right.example".into());
    let conn = SwanctlConn::mirror_of(&tunnel, swan_cert);
    Pair::start(tunnel, conn)
}

fn cert(ca: &TestCa, cn: &str, san: &str, key: KeyKind, trusted: &[&TestCa]) -> Credentials {
    Credentials::Cert {
        leaf: ca.issue_leaf(cn, &[san], key),
        trusted: trusted.iter().map(|ca| ca.cert_pem()).collect(),
    }
}

#[test]
fn siteward_responds_to_ecdsa_certificates_with_ecp256_and_aes_cbc() {
    let root = TestCa::new("Siteward Test Root");
    let pair = certificate_tunnel(
        "respond",
        cert(
            &root,
            "left-gw",
            "left.example",
            KeyKind::EcdsaP256,
            &[&root],
        ),
        cert(
            &root,
            "right-gw",
            "right.example",
            KeyKind::EcdsaP256,
            &[&root],
        ),
        "aes256-sha256-ecp256",
        "aes256-sha256",
    );
    pair.charon.initiate_child(CHILD).expect("charon initiates");
    let (status, sa) = pair.wait_up();
    assert_ends_agree(&status, &sa);
    assert!(sa.initiator);
    assert_eq!(sa.dh.as_deref(), Some("ECP_256"));
    assert_eq!(sa.encr.as_deref(), Some("AES_CBC"));
    assert_eq!(sa.integ.as_deref(), Some("HMAC_SHA2_256_128"));
    assert_eq!(sa.remote_id, "left.example");
    let child = sa.child(CHILD).unwrap();
    assert_eq!(
        (child.encr.as_deref(), child.integ.as_deref()),
        (Some("AES_CBC"), Some("HMAC_SHA2_256_128"))
    );
    let ike = &status["ipsec"]["ike_sas"][0];
    assert_eq!(ike["initiator"], false, "{status:#}");
    assert_eq!(
        ike["algorithms"],
        "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256"
    );
    assert_eq!(
        ike["child_sas"][0]["algorithms"],
        "AES_CBC-256/HMAC_SHA2_256_128"
    );
    // charon verified Siteward's ECDSA signature (RFC 7427).
    pair.charon
        .wait_for_log("authentication of 'left.example' with ECDSA", STATE_TIMEOUT)
        .unwrap();
    pair.assert_traffic_flows();
}

#[test]
fn siteward_initiates_with_rsa_certificates_through_an_intermediate_and_modp2048() {
    let root = TestCa::with_key("Siteward Test Root", KeyKind::Rsa2048);
    let intermediate = root.intermediate("Siteward Test Intermediate");
    // Siteward's certificate file carries its intermediate; charon trusts only the root.
    let mut leaf = intermediate.issue_leaf("left-gw", &["left.example"], KeyKind::Rsa2048);
    leaf.cert_pem.push_str(&intermediate.cert_pem());
    let sw = Credentials::Cert {
        leaf,
        trusted: vec![root.cert_pem()],
    };
    let pair = certificate_tunnel(
        "initiate",
        sw,
        cert(
            &root,
            "right-gw",
            "right.example",
            KeyKind::Rsa2048,
            &[&root],
        ),
        "aes256gcm16-prfsha256-modp2048",
        "aes256gcm16",
    );
    let (status, sa) = pair.wait_up();
    assert_ends_agree(&status, &sa);
    assert_eq!(sa.dh.as_deref(), Some("MODP_2048"));
    assert_eq!(sa.remote_id, "left.example");
    let log = pair.charon.log();
    assert!(
        log.contains(
            "received issuer cert \"C=CH, O=Siteward Tests, CN=Siteward Test Intermediate\""
        ) && log.contains("reached self-signed root ca with a path length of 1"),
        "charon built the chain from the intermediate Siteward sent"
    );
    assert!(log.contains("with RSA_EMSA_PKCS1_SHA2_256 successful"));
    // Certificates, an RSA signature and a CERTREQ do not fit in 1280 bytes: both ends
    // fragmented IKE_AUTH (RFC 7383) and reassembled the other's fragments.
    assert!(
        log.contains("received fragment #1"),
        "Siteward sent fragments"
    );
    assert!(
        log.contains("splitting IKE message"),
        "charon sent fragments"
    );
    pair.assert_traffic_flows();
}

#[test]
fn rekeys_started_by_either_side_under_traffic_lose_at_most_a_handful_of_packets() {
    let pair = Pair::psk("initiate", "aes256gcm16-prfsha256-x25519", "aes256gcm16");
    let (_, first) = pair.wait_up();
    let stats = std::thread::scope(|scope| {
        // 500 pings, 20 ms apart: ten seconds of traffic across the four rekeys.
        let pinging = scope.spawn(|| pair.ping_right(500, Duration::from_millis(20)));
        let child_spi = |sa: &SaInfo| sa.child(CHILD).map(|c| c.spi_in);
        let wait_new_child = |old: Option<u32>, what: &str| -> SaInfo {
            pair.charon
                .wait_for_sa(STATE_TIMEOUT, what, |sa| {
                    sa.children.len() == 1
                        && sa.children[0].state == "INSTALLED"
                        && Some(sa.children[0].spi_in) != old
                        && sa.children[0].packets_in > 0
                })
                .unwrap()
        };
        let wait_new_ike = |old: &SaInfo, what: &str| -> SaInfo {
            pair.charon
                .wait_for_sa(STATE_TIMEOUT, what, |sa| {
                    sa.state == "ESTABLISHED"
                        && (sa.spi_i, sa.spi_r) != (old.spi_i, old.spi_r)
                        && sa.children.len() == 1
                        && sa.children[0].state == "INSTALLED"
                })
                .unwrap()
        };
        // Traffic first flows through the first CHILD_SA.
        let current = pair
            .charon
            .wait_for_sa(STATE_TIMEOUT, "pings on the first CHILD_SA", |sa| {
                sa.children.first().is_some_and(|c| c.packets_in >= 3)
            })
            .unwrap();
        pair.charon.rekey_child(CHILD).unwrap();
        let current = wait_new_child(child_spi(&current), "charon's CHILD_SA rekey");
        pair.rekey("child");
        let current = wait_new_child(child_spi(&current), "Siteward's CHILD_SA rekey");
        pair.charon.rekey_ike(CONN).unwrap();
        let current = wait_new_ike(&current, "charon's IKE_SA rekey");
        pair.rekey("ike");
        let last = wait_new_ike(&current, "Siteward's IKE_SA rekey");
        assert_ne!((last.spi_i, last.spi_r), (first.spi_i, first.spi_r));
        pinging.join().unwrap()
    });
    assert!(
        stats.transmitted - stats.received <= 5,
        "more than a handful lost: {stats:?}"
    );
    let status = pair.status();
    let ipsec = &status["ipsec"];
    assert!(ipsec["child_rekeys"].as_u64().unwrap() >= 2, "{status:#}");
    assert!(ipsec["ike_rekeys"].as_u64().unwrap() >= 2, "{status:#}");
    let (sa, now) = (pair.charon.list_sas().unwrap().remove(0), pair.status());
    assert_ends_agree(&now, &sa);
    let scrape = pair.siteward.scrape();
    for kind in ["ike", "child"] {
        let rekeys = scrape
            .get(
                "siteward_ipsec_rekeys_total",
                &[("tunnel", "site"), ("sa", kind)],
            )
            .unwrap();
        assert!(rekeys >= 2.0, "{kind}: {rekeys}");
    }
    pair.transfer_both_ways();
}

#[test]
fn dead_peer_detection_notices_a_killed_charon_and_the_tunnel_returns() {
    const DPD: Duration = Duration::from_secs(2);
    let psk = random_psk();
    let mut tunnel = SitewardIpsec::left(
        &unique_ifname('s'),
        Credentials::Psk(psk.clone()),
        "initiate",
    );
    tunnel.dpd_delay = Some("2s".into());
    tunnel.dpd_action = Some("restart");
    let conn = SwanctlConn::mirror_of(&tunnel, Credentials::Psk(psk));
    let mut pair = Pair::start(tunnel, conn);
    pair.wait_up();

    pair.charon.kill();
    let killed = Instant::now();
    let status = pair
        .siteward
        .wait_until(STATE_TIMEOUT, "DPD notices the dead peer", || {
            let status = pair.status();
            (status["state"] != "up").then_some(status)
        });
    let noticed = killed.elapsed();
    assert!(noticed <= 3 * DPD, "noticed after {noticed:?}: {status:#}");
    assert!(
        status["ipsec"]["last_failure"]
            .as_str()
            .is_some_and(|f| f.contains("dead peer detection")),
        "{status:#}"
    );

    // charon comes back: Siteward negotiates again by itself.
    pair.charon = Charon::start(
        &pair.sites.right,
        "right, again",
        &pair.conn.charon_config(),
    )
    .expect("restarting charon");
    let (status, sa) = pair.wait_up();
    assert_ends_agree(&status, &sa);
    pair.assert_traffic_flows();
}

/// Nothing carries traffic: Siteward has no CHILD_SA and the tunnel is not up, charon has
/// none either, and a ping finds no SA.
fn assert_nothing_installed(pair: &Pair) {
    let status = pair.status();
    assert_ne!(status["state"], "up", "{status:#}");
    let sas = status["ipsec"]["ike_sas"].as_array().unwrap();
    assert!(
        sas.iter()
            .all(|sa| sa["child_sas"].as_array().unwrap().is_empty()),
        "{status:#}"
    );
    let stats = pair.ping_right(1, Duration::from_millis(100));
    assert_eq!(stats.received, 0, "{stats:?}");
    assert!(
        pair.status()["dropped"]["no_sa"].as_u64().unwrap() > 0,
        "the ping met no CHILD_SA"
    );
    let charon = pair.charon.list_sas().unwrap();
    assert!(
        charon.iter().all(|sa| sa.children.is_empty()),
        "{charon:#?}"
    );
}

/// Waits until Siteward's last failure starts with `notify`; returns the status.
fn wait_for_failure(pair: &Pair, notify: &str) -> Value {
    pair.siteward
        .wait_until(UP_TIMEOUT, &format!("a {notify} failure"), || {
            let status = pair.status();
            status["ipsec"]["last_failure"]
                .as_str()
                .is_some_and(|f| f.starts_with(notify))
                .then_some(status)
        })
}

/// Siteward initiates against a charon that must refuse: the status names the notify
/// charon sent, and nothing is installed.
fn refused_by_charon(tunnel: SitewardIpsec, conn: SwanctlConn, notify: &str, log: &str) -> Value {
    let pair = Pair::start(tunnel, conn);
    let status = wait_for_failure(&pair, notify);
    pair.charon.wait_for_log(log, STATE_TIMEOUT).unwrap();
    assert_nothing_installed(&pair);
    status
}

/// charon initiates to Siteward, which must refuse with `notify`; `why` is in
/// Siteward's status.
fn refused_by_siteward(tunnel: SitewardIpsec, conn: SwanctlConn, notify: &str, why: &str) {
    let pair = Pair::start(tunnel, conn);
    let err = pair.charon.initiate_child(CHILD).unwrap_err();
    assert!(format!("{err:#}").contains("failed"), "{err:#}");
    pair.charon
        .wait_for_log(&format!("received {notify} notify"), STATE_TIMEOUT)
        .unwrap();
    let status = wait_for_failure(&pair, notify);
    let failure = status["ipsec"]["last_failure"].as_str().unwrap();
    assert!(failure.contains(why), "{failure}");
    assert_nothing_installed(&pair);
}

fn psk_pair_config(start: &'static str) -> (SitewardIpsec, SwanctlConn) {
    let psk = random_psk();
    let tunnel = SitewardIpsec::left(&unique_ifname('s'), Credentials::Psk(psk.clone()), start);
    let conn = SwanctlConn::mirror_of(&tunnel, Credentials::Psk(psk));
    (tunnel, conn)
}

#[test]
fn a_wrong_psk_is_refused_either_way() {
    let (tunnel, mut conn) = psk_pair_config("initiate");
    conn.credentials = Credentials::Psk(random_psk());
    let status = refused_by_charon(tunnel, conn, "AUTHENTICATION_FAILED", "N(AUTH_FAILED)");
    assert!(status["ipsec"]["auth_failures"].as_u64().unwrap() >= 1);

    let (tunnel, mut conn) = psk_pair_config("respond");
    conn.credentials = Credentials::Psk(random_psk());
    refused_by_siteward(tunnel, conn, "AUTHENTICATION_FAILED", "pre-shared key");
}

#[test]
fn an_untrusted_certificate_is_refused_either_way() {
    let root = TestCa::new("Siteward Test Root");
    let stranger = TestCa::new("Someone Else's Root");
    // Siteward's certificate is from a CA charon does not trust.
    let pair_config = |start, sw_ca: &TestCa, swan_ca: &TestCa| {
        let mut tunnel = SitewardIpsec::left(
            &unique_ifname('s'),
            cert(
                sw_ca,
                "left-gw",
                "left.example",
                KeyKind::EcdsaP256,
                &[&root],
            ),
            start,
        );
        tunnel.local_id = Some("left.example".into());
        tunnel.remote_id = Some("right.example".into());
        let conn = SwanctlConn::mirror_of(
            &tunnel,
            cert(
                swan_ca,
                "right-gw",
                "right.example",
                KeyKind::EcdsaP256,
                &[&root],
            ),
        );
        (tunnel, conn)
    };
    let (tunnel, conn) = pair_config("initiate", &stranger, &root);
    refused_by_charon(tunnel, conn, "AUTHENTICATION_FAILED", "N(AUTH_FAILED)");

    // charon's certificate is from a CA Siteward does not trust.
    let (tunnel, conn) = pair_config("respond", &root, &stranger);
    refused_by_siteward(tunnel, conn, "AUTHENTICATION_FAILED", "trust");
}

#[test]
fn disjoint_proposals_are_refused_either_way() {
    let (tunnel, mut conn) = psk_pair_config("initiate");
    conn.proposals = "aes128-sha256-modp2048".into();
    refused_by_charon(tunnel, conn, "NO_PROPOSAL_CHOSEN", "N(NO_PROP)");

    let (tunnel, mut conn) = psk_pair_config("respond");
    conn.proposals = "aes128-sha256-modp2048".into();
    refused_by_siteward(tunnel, conn, "NO_PROPOSAL_CHOSEN", "IKE proposal");
}

#[test]
fn disjoint_traffic_selectors_are_refused_either_way() {
    let (tunnel, mut conn) = psk_pair_config("initiate");
    conn.remote_ts = "10.9.0.0/24".into();
    refused_by_charon(tunnel, conn, "TS_UNACCEPTABLE", "N(TS_UNACCEPT)");

    let (tunnel, mut conn) = psk_pair_config("respond");
    conn.remote_ts = "10.9.0.0/24".into();
    refused_by_siteward(tunnel, conn, "TS_UNACCEPTABLE", "selectors");
}
