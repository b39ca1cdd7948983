//! Checks against real peers installed from Debian: kamailio and SIPp (SIP OPTIONS over
//! UDP and TCP), dnsmasq (DNS), and a Python HTTPS server (http and tls checks).
//! Fixtures are in tests/fixtures/.
//!
//! Peers that need a fixed port (kamailio, SIPp, dnsmasq) run with the daemon inside a
//! namespace of their own, on its 127.0.0.1 and their standard ports: nothing else on the
//! machine can take the port between choosing it and binding it, or answer in their place.

use std::net::SocketAddr;
use std::path::Path;

use siteward_tests::{
    fixtures_dir, last_detail, wait_for_tcp, ChildProcess, Daemon, Netns, TestCert, READY_TIMEOUT,
    STATE_TIMEOUT,
};

/// Waits until the peer accepts TCP on `port` inside `ns`; panics with its output if not.
fn wait_for_peer(ns: &Netns, peer: &ChildProcess, port: u16) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    if let Err(e) = wait_for_tcp(Some(ns), addr, READY_TIMEOUT) {
        panic!("{}: {e}\n{}", peer.name(), peer.output_tail(30));
    }
}

/// kamailio answering OPTIONS with 200 on UDP and TCP 5060 inside `ns`.
fn start_kamailio(ns: &Netns) -> ChildProcess {
    let config = fixtures_dir().join("kamailio.cfg");
    let kamailio = ns.spawn(
        "kamailio",
        "kamailio",
        [
            "-f",
            config.to_str().unwrap(),
            "-DD", // stay in the foreground, still fork the workers
            "-E",  // log to stderr
            "-l",
            "udp:127.0.0.1:5060",
            "-l",
            "tcp:127.0.0.1:5060",
            "-m",
            "16",
            "-M",
            "4",
        ],
    );
    // Sockets are all bound before the workers start, so the TCP one answering means
    // the UDP one is there too.
    wait_for_peer(ns, &kamailio, 5060);
    kamailio
}

#[test]
fn sip_options_to_kamailio_over_udp_and_tcp() {
    let ns = Netns::new();
    let _kamailio = start_kamailio(&ns);
    let daemon = Daemon::start_in(
        &ns,
        r#"
[[checks]]
name = "pbx-udp"
kind = "sip-options"
target = "127.0.0.1"
transport = "udp"
interval = "500ms"
timeout = "400ms"

[[checks]]
name = "pbx-tcp"
kind = "sip-options"
target = "127.0.0.1:5060"
transport = "tcp"
interval = "500ms"
timeout = "400ms"
"#,
    );
    let token = daemon.create_token("ops");
    for name in ["pbx-udp", "pbx-tcp"] {
        let check = daemon.wait_for_check_state(&token, name, "up", "ok");
        assert!(last_detail(&check).contains("200"), "{check:#}");
    }
    let scrape = daemon.scrape();
    assert_eq!(scrape.check_up("pbx-udp"), Some(true));
    assert_eq!(scrape.check_up("pbx-tcp"), Some(true));
}

#[test]
fn sip_options_answered_503_by_sipp_is_down_with_bad_status() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let scenario = fixtures_dir().join("sipp-options-503.xml");
    let mut command = ns.command("sipp");
    command
        .args(["-sf", scenario.to_str().unwrap()])
        .args(["-i", "127.0.0.1", "-p", "5060"])
        .args(["-t", "u1", "-nostdin"])
        .current_dir(dir.path());
    let _sipp = ChildProcess::spawn_command("sipp", command);

    let daemon = Daemon::start_in(
        &ns,
        r#"
[[checks]]
name = "pbx-503"
kind = "sip-options"
target = "127.0.0.1:5060"
interval = "500ms"
timeout = "400ms"

[[checks]]
name = "pbx-any"
kind = "sip-options"
target = "127.0.0.1:5060"
accept_any_status = true
interval = "500ms"
timeout = "400ms"
"#,
    );
    let token = daemon.create_token("ops");
    // SIPp needs a moment to bind; until then the check fails otherwise (refused), so
    // waiting for this exact reason waits for SIPp too.
    let check = daemon.wait_for_check_state(&token, "pbx-503", "down", "bad_status");
    assert!(last_detail(&check).contains("503"), "{check:#}");
    let check = daemon.wait_for_check_state(&token, "pbx-any", "up", "ok");
    assert!(last_detail(&check).contains("503"), "{check:#}");
    let scrape = daemon.scrape();
    assert_eq!(scrape.check_up("pbx-503"), Some(false));
    assert!(scrape.runs("pbx-503", "bad_status") >= 1);
}

#[test]
fn dns_against_dnsmasq() {
    let ns = Netns::new();
    let dnsmasq = ns.spawn(
        "dnsmasq",
        "dnsmasq",
        [
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--log-facility=-",
            "--log-queries",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--port=53",
            "--host-record=db.test,192.0.2.10",
        ],
    );
    wait_for_peer(&ns, &dnsmasq, 53);

    let daemon = Daemon::start_in(
        &ns,
        r#"
[[checks]]
name = "dns-udp"
kind = "dns"
target = "127.0.0.1"
query = "db.test"
expect_answer = ["192.0.2.10"]
interval = "300ms"

[[checks]]
name = "dns-tcp"
kind = "dns"
target = "127.0.0.1"
query = "db.test"
record_type = "A"
transport = "tcp"
interval = "300ms"

[[checks]]
name = "dns-moved"
kind = "dns"
target = "127.0.0.1"
query = "db.test"
expect_answer = ["192.0.2.99"]
interval = "300ms"

[[checks]]
name = "dns-missing"
kind = "dns"
target = "127.0.0.1"
query = "nothing.test"
interval = "300ms"
"#,
    );
    let token = daemon.create_token("ops");
    for name in ["dns-udp", "dns-tcp"] {
        let check = daemon.wait_for_check_state(&token, name, "up", "ok");
        assert!(last_detail(&check).contains("192.0.2.10"), "{check:#}");
    }
    let check = daemon.wait_for_check_state(&token, "dns-moved", "down", "bad_response");
    assert!(
        last_detail(&check).contains("192.0.2.10") && last_detail(&check).contains("192.0.2.99"),
        "the detail names what was found and what was expected: {check:#}"
    );
    let check = daemon.wait_for_check_state(&token, "dns-missing", "down", "bad_status");
    assert!(!last_detail(&check).is_empty(), "{check:#}");
}

#[test]
fn http_and_tls_against_a_local_https_server() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "peer", (2031, 5, 17));
    let (_server, port) = cert.serve_https(None);
    let ca = cert.cert_pem.display();

    let daemon = Daemon::start(&format!(
        r#"
[[checks]]
name = "web"
kind = "http"
url = "https://localhost:{port}/health"
ca_file = "{ca}"
body_contains = "healthy"
interval = "300ms"

[[checks]]
name = "web-draining"
kind = "http"
url = "https://127.0.0.1:{port}/down"
ca_file = "{ca}"
interval = "300ms"

[[checks]]
name = "web-untrusted"
kind = "http"
url = "https://localhost:{port}/health"
interval = "300ms"

[[checks]]
name = "cert"
kind = "tls"
target = "127.0.0.1:{port}"
server_name = "localhost"
ca_file = "{ca}"
interval = "300ms"

[[checks]]
name = "cert-wrong-name"
kind = "tls"
target = "127.0.0.1:{port}"
server_name = "db.example"
ca_file = "{ca}"
interval = "300ms"
"#
    ));
    let token = daemon.create_token("ops");

    let check = daemon.wait_for_check_state(&token, "web", "up", "ok");
    assert!(last_detail(&check).contains("200"), "{check:#}");
    let check = daemon.wait_for_check_state(&token, "web-draining", "down", "bad_status");
    assert!(last_detail(&check).contains("503"), "{check:#}");
    daemon.wait_for_check_state(&token, "web-untrusted", "down", "tls_error");
    let check = daemon.wait_for_check_state(&token, "cert", "up", "ok");
    assert!(check["tls_cert_not_after"]
        .as_str()
        .is_some_and(|t| t.starts_with("2031-05-17T00:00:00")));
    daemon.wait_for_check_state(&token, "cert-wrong-name", "down", "tls_error");

    let scrape = daemon.scrape();
    assert_eq!(
        scrape.get(
            "siteward_check_tls_cert_expiry_timestamp_seconds",
            &[("check", "cert"), ("kind", "tls")]
        ),
        Some(cert.not_after as f64),
        "{}",
        scrape.text
    );
}

/// The daemon checking its own admin API, with its own certificate as the trust anchor:
/// the certificate only exists after the first start, so it is added by a reload.
#[test]
fn http_check_of_the_daemons_own_admin_api() {
    let daemon = Daemon::start("");
    let token = daemon.create_token("ops");
    let admin = daemon.admin_addr();
    let cert = daemon.admin_cert();
    assert!(Path::new(&cert).is_file());
    daemon.write_checks(&format!(
        r#"
[[checks]]
name = "own-api"
kind = "http"
url = "https://127.0.0.1:{port}/api/v1/health"
ca_file = "{cert}"
body_contains = "\"status\":\"ok\""
interval = "300ms"

[[checks]]
name = "own-api-cert"
kind = "tls"
target = "127.0.0.1:{port}"
ca_file = "{cert}"
interval = "300ms"
"#,
        port = admin.port(),
        cert = cert.display()
    ));
    daemon.sighup();
    daemon.wait_for_log(STATE_TIMEOUT, |r| r["message"] == "configuration reloaded");
    daemon.wait_for_check_state(&token, "own-api", "up", "ok");
    daemon.wait_for_check_state(&token, "own-api-cert", "up", "ok");
    let expiry = daemon
        .scrape()
        .get(
            "siteward_check_tls_cert_expiry_timestamp_seconds",
            &[("check", "own-api-cert")],
        )
        .expect("the tls check exports the certificate's expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expiry > now, "expiry {expiry} is not in the future");
}
