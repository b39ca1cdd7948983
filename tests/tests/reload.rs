//! SIGHUP reloads and SIGTERM, from outside: only changed checks restart, a broken file
//! changes nothing (and says why), and the daemon stops promptly and cleanly.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;
use siteward_tests::{Daemon, STATE_TIMEOUT};

fn tcp_check(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[checks]]\nname = \"{name}\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:{port}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n{extra}\n"
    )
}

fn history(check: &Value) -> Vec<String> {
    check["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["at"].as_str().unwrap().to_string())
        .collect()
}

fn wait_for_runs(daemon: &Daemon, token: &str, name: &str, runs: usize) -> Value {
    daemon.wait_for_check(
        token,
        name,
        STATE_TIMEOUT,
        &format!("has {runs} runs"),
        |c| c["history"].as_array().is_some_and(|h| h.len() >= runs),
    )
}

#[test]
fn sighup_restarts_only_what_changed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let daemon = Daemon::start(
        &[
            tcp_check("steady", port, ""),
            tcp_check("changing", port, ""),
            tcp_check("removed", port, ""),
        ]
        .concat(),
    );
    let token = daemon.create_token("ops");

    let steady_before = wait_for_runs(&daemon, &token, "steady", 3);
    let changing_before = wait_for_runs(&daemon, &token, "changing", 3);
    wait_for_runs(&daemon, &token, "removed", 1);
    let steady_ok_before = daemon.scrape().runs("steady", "ok");
    assert!(steady_ok_before >= 3);

    daemon.write_checks(
        &[
            tcp_check("steady", port, ""),
            tcp_check("changing", port, "rise = 2"),
            tcp_check("added", port, ""),
        ]
        .concat(),
    );
    daemon.sighup();
    let reloaded = daemon.wait_for_log(STATE_TIMEOUT, |r| r["message"] == "configuration reloaded");
    assert_eq!(reloaded["restarted"], "[\"changing\"]", "{reloaded}");
    assert_eq!(reloaded["added"], "[\"added\"]", "{reloaded}");
    assert_eq!(reloaded["removed"], "[\"removed\"]", "{reloaded}");
    assert_eq!(reloaded["unchanged"], 1, "{reloaded}");

    // steady kept its task and state: same state_since, history continues from before.
    let before = history(&steady_before);
    let steady_after =
        daemon.wait_for_check(&token, "steady", STATE_TIMEOUT, "ran twice more", |c| {
            history(c)
                .iter()
                .filter(|at| *at > before.last().unwrap())
                .count()
                >= 2
        });
    assert_eq!(steady_after["state_since"], steady_before["state_since"]);
    let after = history(&steady_after);
    assert!(
        after.contains(before.last().unwrap()),
        "steady lost its history: before {before:?}, after {after:?}"
    );
    assert!(daemon.scrape().runs("steady", "ok") > steady_ok_before);

    // changing started afresh with its new settings.
    let changing_after = wait_for_runs(&daemon, &token, "changing", 2);
    assert_eq!(changing_after["rise"], 2);
    let old_last = history(&changing_before).last().unwrap().clone();
    let new_history = history(&changing_after);
    assert!(
        new_history.iter().all(|at| *at > old_last),
        "changing kept runs from before the reload: {old_last} vs {new_history:?}"
    );
    assert!(
        changing_after["state_since"].as_str().unwrap()
            > changing_before["state_since"].as_str().unwrap(),
        "{changing_before:#}\n{changing_after:#}"
    );

    // The removed check's series are gone from the next scrape; the added one appears.
    let scrape = daemon.wait_until(STATE_TIMEOUT, "added is up", || {
        let s = daemon.scrape();
        (s.check_up("added") == Some(true)).then_some(s)
    });
    assert!(
        scrape
            .find("siteward_check_runs_total", &[("check", "removed")])
            .next()
            .is_none()
            && scrape.check_up("removed").is_none(),
        "series of a removed check linger:\n{}",
        scrape.text
    );
    let names: Vec<Value> = daemon.checks(&token)["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, ["steady", "changing", "added"]);
    assert_eq!(
        scrape.get("siteward_config_reloads_total", &[("result", "success")]),
        Some(1.0)
    );
    assert_eq!(
        scrape.get("siteward_config_reloads_total", &[("result", "failure")]),
        Some(0.0)
    );
}

#[test]
fn a_broken_file_keeps_the_running_config_and_says_why() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut daemon = Daemon::start(&tcp_check("steady", port, "rise = 2"));
    let token = daemon.create_token("ops");
    let before = wait_for_runs(&daemon, &token, "steady", 2);
    let loaded_at = daemon
        .scrape()
        .get("siteward_config_last_reload_success_timestamp_seconds", &[])
        .unwrap();
    assert!(loaded_at > 1.6e9, "{loaded_at}");

    daemon.write_config_raw(&format!(
        "{}{}{}",
        daemon.config_header(),
        tcp_check("steady", port, "rise = 0"),
        "[[checks]]\nname = \"other\"\nkind = \"warp-drive\"\ntarget = \"127.0.0.1:1\"\n"
    ));
    daemon.sighup();
    daemon.wait_for_log(STATE_TIMEOUT, |r| {
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("reload failed"))
    });
    let errors: Vec<Value> = daemon
        .log_records()
        .into_iter()
        .filter(|r| r["level"] == "ERROR" && r["path"].is_string())
        .collect();
    let paths: Vec<&str> = errors.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"checks[0].rise"), "{errors:?}");
    assert!(paths.contains(&"checks[1].kind"), "{errors:?}");
    assert!(
        errors.iter().any(|r| r["path"] == "checks[1].kind"
            && r["message"].as_str().unwrap().contains("warp-drive")),
        "{errors:?}"
    );

    let scrape = daemon.scrape();
    assert_eq!(
        scrape.get("siteward_config_reloads_total", &[("result", "failure")]),
        Some(1.0),
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.get("siteward_config_reloads_total", &[("result", "success")]),
        Some(0.0)
    );
    assert_eq!(
        scrape.get("siteward_config_last_reload_success_timestamp_seconds", &[]),
        Some(loaded_at)
    );

    // Still running the old configuration, with its state.
    let last_before = history(&before).last().unwrap().clone();
    let after = daemon.wait_for_check(&token, "steady", STATE_TIMEOUT, "keeps running", |c| {
        history(c).iter().any(|at| *at > last_before)
    });
    assert_eq!(after["rise"], 2);
    assert_eq!(after["state_since"], before["state_since"]);
    assert!(history(&after).contains(&last_before));
    assert_eq!(daemon.checks(&token)["checks"].as_array().unwrap().len(), 1);

    // Fixing the file and reloading again works.
    daemon.write_checks(&tcp_check("steady", port, "rise = 3"));
    daemon.sighup();
    daemon.wait_for_log(STATE_TIMEOUT, |r| r["message"] == "configuration reloaded");
    let scrape = daemon.scrape();
    assert_eq!(
        scrape.get("siteward_config_reloads_total", &[("result", "success")]),
        Some(1.0)
    );
    assert_eq!(
        scrape.get("siteward_config_reloads_total", &[("result", "failure")]),
        Some(1.0)
    );
    assert_eq!(daemon.check(&token, "steady")["rise"], 3);

    // SIGTERM: a prompt, clean exit.
    let asked = Instant::now();
    let status = daemon.terminate(Duration::from_secs(10));
    let took = asked.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
    let logs = daemon.log_records();
    assert!(logs.iter().any(|r| r["message"] == "stopped"), "{logs:?}");
}

#[test]
fn sigterm_exits_zero_while_checks_run() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let checks: String = (0..20)
        .map(|i| tcp_check(&format!("c{i}"), port, ""))
        .collect();
    let mut daemon = Daemon::start(&checks);
    daemon.wait_until(STATE_TIMEOUT, "every check ran", || {
        let s = daemon.scrape();
        (0..20)
            .all(|i| s.check_up(&format!("c{i}")).is_some())
            .then_some(())
    });
    let asked = Instant::now();
    let status = daemon.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "took {:?}",
        asked.elapsed()
    );
}

/// "siteward running" is the readiness signal, so a SIGHUP sent right after it must be a
/// reload, never the default action of the signal (terminating the process). The window
/// is short, so several daemons are tried; each must survive and reload.
#[test]
fn sighup_right_after_readiness_reloads() {
    for attempt in 0..20 {
        let mut daemon = Daemon::start("");
        daemon.sighup();
        let survived = siteward_tests::wait_until(STATE_TIMEOUT, || {
            if let Some(status) = daemon.process().try_wait() {
                return Some(Err(status));
            }
            daemon
                .log_records()
                .iter()
                .any(|r| r["message"] == "configuration reloaded")
                .then_some(Ok(()))
        });
        match survived {
            Some(Ok(())) => {}
            Some(Err(status)) => panic!(
                "attempt {attempt}: SIGHUP right after \"siteward running\" killed the daemon ({status:?})"
            ),
            None => panic!("attempt {attempt}: no reload logged"),
        }
    }
}
