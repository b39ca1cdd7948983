//! Checks against the protocol simulators (`siteward simulate ...`) started as separate
//! processes, as an operator would use them to test a firewall path.

use siteward_tests::{last_detail, Daemon, Simulator};

fn check(name: &str, kind: &str, target: &str, extra: &str) -> String {
    format!(
        "[[checks]]\nname = \"{name}\"\nkind = \"{kind}\"\ntarget = \"{target}\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\n{extra}\n"
    )
}

#[test]
fn oracle_tns_listener() {
    let listener = Simulator::start("oracle-tns", &["--service", "EBSPROD"]);
    let refusing = Simulator::start("oracle-tns", &["--mode", "refuse", "--err", "12519"]);
    let garbage = Simulator::start("oracle-tns", &["--mode", "garbage"]);
    let (ok, refuse, junk) = (
        listener.addr.to_string(),
        refusing.addr.to_string(),
        garbage.addr.to_string(),
    );
    let daemon = Daemon::start(
        &[
            check("ping", "oracle-tns", &ok, ""),
            check("service", "oracle-tns", &ok, "service_name = \"EBSPROD\""),
            check(
                "unknown-service",
                "oracle-tns",
                &ok,
                "service_name = \"NOPE\"",
            ),
            check("refusing", "oracle-tns", &refuse, ""),
            check("garbage", "oracle-tns", &junk, ""),
        ]
        .concat(),
    );
    let token = daemon.create_token("ops");
    daemon.wait_for_check_state(&token, "ping", "up", "ok");
    daemon.wait_for_check_state(&token, "service", "up", "ok");
    let c = daemon.wait_for_check_state(&token, "unknown-service", "down", "tns_refused");
    assert!(last_detail(&c).contains("ERR=12514"), "{c:#}");
    let c = daemon.wait_for_check_state(&token, "refusing", "down", "tns_refused");
    assert!(last_detail(&c).contains("12519"), "{c:#}");
    daemon.wait_for_check_state(&token, "garbage", "down", "bad_response");
    let scrape = daemon.scrape();
    assert_eq!(scrape.check_up("service"), Some(true));
    assert!(scrape.runs("unknown-service", "tns_refused") >= 1);
}

#[test]
fn sap_ni_peer() {
    let gateway = Simulator::start("sap-ni", &[]);
    let silent = Simulator::start("sap-ni", &["--mode", "silent"]);
    let garbage = Simulator::start("sap-ni", &["--mode", "garbage"]);
    let daemon = Daemon::start(
        &[
            check("gateway", "sap-ni", &gateway.addr.to_string(), ""),
            check("silent", "sap-ni", &silent.addr.to_string(), ""),
            check("garbage", "sap-ni", &garbage.addr.to_string(), ""),
        ]
        .concat(),
    );
    let token = daemon.create_token("ops");
    daemon.wait_for_check_state(&token, "gateway", "up", "ok");
    daemon.wait_for_check_state(&token, "silent", "down", "no_answer");
    daemon.wait_for_check_state(&token, "garbage", "down", "bad_response");
}

#[test]
fn saprouter_routes_and_refusals() {
    let gateway = Simulator::start("sap-ni", &[]);
    let router = Simulator::start("saprouter", &[]);
    let strict = Simulator::start("saprouter", &["--password", "r0ute-pw"]);
    let denying = Simulator::start("saprouter", &["--mode", "deny"]);
    let route = format!("route = \"/H/127.0.0.1/S/{}\"", gateway.addr.port());
    let daemon = Daemon::start(
        &[
            check("route", "saprouter", &router.addr.to_string(), &route),
            check("denied", "saprouter", &denying.addr.to_string(), &route),
            check(
                "with-password",
                "saprouter",
                &strict.addr.to_string(),
                &format!("{route}\nroute_password = \"r0ute-pw\""),
            ),
            check(
                "wrong-password",
                "saprouter",
                &strict.addr.to_string(),
                &format!("{route}\nroute_password = \"guess\""),
            ),
        ]
        .concat(),
    );
    let token = daemon.create_token("ops");
    daemon.wait_for_check_state(&token, "route", "up", "ok");
    let c = daemon.wait_for_check_state(&token, "denied", "down", "route_error");
    assert!(last_detail(&c).contains("-94"), "{c:#}");
    daemon.wait_for_check_state(&token, "with-password", "up", "ok");
    let c = daemon.wait_for_check_state(&token, "wrong-password", "down", "route_error");
    assert!(last_detail(&c).contains("-94"), "{c:#}");

    // The route password stays out of the API and the logs.
    let everything = format!("{}\n{}", daemon.checks(&token), daemon.logs().join("\n"));
    assert!(!everything.contains("r0ute-pw") && !everything.contains("guess"));
}

#[test]
fn asterisk_ami_login() {
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("ami.secret");
    std::fs::write(&secret_file, "pbx-s3cret\n").unwrap();
    let pbx = Simulator::start(
        "asterisk-ami",
        &[
            "--username",
            "monitor",
            "--secret-file",
            secret_file.to_str().unwrap(),
        ],
    );
    let target = pbx.addr.to_string();
    let daemon = Daemon::start(
        &[
            check(
                "pbx",
                "asterisk-ami",
                &target,
                &format!(
                    "username = \"monitor\"\nsecret_file = \"{}\"",
                    secret_file.display()
                ),
            ),
            check(
                "pbx-wrong-secret",
                "asterisk-ami",
                &target,
                "username = \"monitor\"\nsecret = \"not-it\"",
            ),
        ]
        .concat(),
    );
    let token = daemon.create_token("ops");
    let c = daemon.wait_for_check_state(&token, "pbx", "up", "ok");
    assert!(!last_detail(&c).is_empty());
    let c = daemon.wait_for_check_state(&token, "pbx-wrong-secret", "down", "auth_failed");
    assert!(last_detail(&c).contains("monitor"), "{c:#}");
    let everything = format!(
        "{}\n{}\n{}",
        daemon.checks(&token),
        daemon.logs().join("\n"),
        daemon.scrape().text
    );
    assert!(!everything.contains("pbx-s3cret") && !everything.contains("not-it"));
}
