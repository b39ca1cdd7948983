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

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use siteward_tests::http::Request;
use siteward_tests::ipsec::{random_psk, Credentials, SitewardIpsec, SwanctlConn, CHILD, CONN};
use siteward_tests::netns::unique_ifname;
use siteward_tests::pki::{KeyKind, TestCa};
use siteward_tests::strongswan::{SitePair, LEFT_SITE, LEFT_UNDERLAY, RIGHT_SITE};
use siteward_tests::wireguard::{checksummed_transfer, ping, PingStats};
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
        let status = self.siteward.wait_until(UP_TIMEOUT, "the tunnel is up", || {
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
        ping(&self.sites.left, IpAddr::V4(RIGHT_SITE), count, interval)
    }

    /// 4 MiB each way, SHA-256 checked by the receiver.
    fn transfer_both_ways(&self) {
        for (sender, receiver, to) in [
            (&self.sites.left, &self.sites.right, RIGHT_SITE),
            (&self.sites.right, &self.sites.left, LEFT_SITE),
        ] {
            let done =
                checksummed_transfer(sender, receiver, IpAddr::V4(to), TRANSFER, TRANSFER_TIMEOUT)
                    .unwrap_or_else(|e| panic!("transfer to {to}: {e}"));
            assert_eq!(done.bytes, TRANSFER);
        }
    }

    /// Ping and a transfer each way through the tunnel.
    fn assert_traffic_flows(&self) {
        let stats = self.ping_right(5, Duration::from_millis(50));
        assert_eq!(stats.received, stats.transmitted, "{stats:?}");
        self.transfer_both_ways();
    }

    fn rekey(&self, sa: &str) {
        let path = format!("/api/v1/tunnels/{}/rekey?sa={sa}", self.tunnel.name);
        let response = self
            .siteward
            .api(&Request::post(&path).bearer(&self.token));
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
    let pair = Pair::psk(
        "initiate",
        "aes256gcm16-prfsha256-x25519",
        "aes256gcm16",
    );
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
    assert!(child["bytes_in"].as_u64().unwrap() >= TRANSFER, "{status:#}");
    assert!(child["bytes_out"].as_u64().unwrap() >= TRANSFER, "{status:#}");
    let sa = pair.charon.list_sas().unwrap().remove(0);
    let theirs = sa.child(CHILD).unwrap();
    assert!(theirs.bytes_in >= TRANSFER && theirs.bytes_out >= TRANSFER, "{theirs:#?}");

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
    let _ = (&pair.conn, CONN, Instant::now(), KeyKind::EcdsaP256, TestCa::new("x"));
}
