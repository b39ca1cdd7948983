//! `/metrics` from outside: the exposition passes `promtool check metrics`, carries the
//! right content type, and `siteward_check_up` follows rise/fall exactly.

use std::net::TcpListener;

use serde_json::Value;
use siteward_tests::{promtool_check, Daemon, Scrape, STATE_TIMEOUT};

/// A port on 127.0.0.1 with nothing listening (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_live_scrape_passes_promtool_and_has_the_right_content_type() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = listener.local_addr().unwrap().port();
    let down_port = closed_port();
    let daemon = Daemon::start(&format!(
        r#"
[[checks]]
name = "db-up"
kind = "tcp"
target = "127.0.0.1:{up_port}"
interval = "200ms"

[[checks]]
name = "db-down"
kind = "tcp"
target = "127.0.0.1:{down_port}"
interval = "200ms"

[[checks]]
name = "plain.name_1"
kind = "tcp"
target = "127.0.0.1:{down_port}"
interval = "200ms"
"#
    ));
    let scrape = daemon.wait_until(STATE_TIMEOUT, "every check has a state", || {
        let s = daemon.scrape();
        (s.check_up("db-up").is_some()
            && s.check_up("db-down").is_some()
            && s.check_up("plain.name_1").is_some())
        .then_some(s)
    });

    let response = daemon.scrape_raw();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let (ok, report) = promtool_check(&response.text());
    assert!(
        ok,
        "promtool check metrics failed:\n{report}\n---\n{}",
        response.text()
    );

    assert_eq!(scrape.check_up("db-up"), Some(true));
    assert_eq!(scrape.check_up("db-down"), Some(false));
    assert!(scrape.runs("db-down", "refused") >= 1, "{}", scrape.text);
    assert_eq!(scrape.runs("db-down", "ok"), 0);
    for family in [
        "siteward_build_info",
        "siteward_check_duration_seconds_bucket",
        "siteward_check_schedule_lateness_seconds_count",
        "siteward_config_reloads_total",
        "siteward_config_last_reload_success_timestamp_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.name == family),
            "no {family} in:\n{}",
            scrape.text
        );
    }
    assert_eq!(
        scrape.get("siteward_check_up", &[("check", "db-up"), ("kind", "tcp")]),
        Some(1.0)
    );
    // A real histogram: cumulative buckets ending in +Inf == count.
    let count = scrape
        .get(
            "siteward_check_duration_seconds_count",
            &[("check", "db-up")],
        )
        .unwrap();
    let inf = scrape
        .get(
            "siteward_check_duration_seconds_bucket",
            &[("check", "db-up"), ("le", "+Inf")],
        )
        .unwrap();
    assert_eq!(count, inf);
    let buckets: Vec<f64> = scrape
        .find(
            "siteward_check_duration_seconds_bucket",
            &[("check", "db-up")],
        )
        .map(|s| s.value)
        .collect();
    assert!(buckets.len() > 3, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    drop(listener);
}

/// Runs and state as seen in one scrape.
#[derive(Debug, Clone, Copy)]
struct Seen {
    ok: u64,
    refused: u64,
    up: Option<bool>,
}

fn seen(scrape: &Scrape, check: &str) -> Seen {
    Seen {
        ok: scrape.runs(check, "ok"),
        refused: scrape.runs(check, "refused"),
        up: scrape.check_up(check),
    }
}

fn at(run: &Value) -> &str {
    run["at"].as_str().unwrap()
}

#[test]
fn check_up_flips_only_after_rise_successes_and_fall_failures() {
    const RISE: u64 = 3;
    const FALL: u64 = 2;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let daemon = Daemon::start(&format!(
        r#"
[[checks]]
name = "flappy"
kind = "tcp"
target = "127.0.0.1:{port}"
interval = "200ms"
timeout = "150ms"
rise = {RISE}
fall = {FALL}
"#
    ));
    let token = daemon.create_token("ops");

    // Rising: every scrape before `up` shows fewer than RISE successes, the first that
    // shows it up shows at least RISE.
    let mut samples = Vec::new();
    let first_up = daemon.wait_until(STATE_TIMEOUT, "flappy is up", || {
        let s = seen(&daemon.scrape(), "flappy");
        samples.push(s);
        (s.up == Some(true)).then_some(s)
    });
    for s in &samples[..samples.len() - 1] {
        assert_eq!(s.up, None, "state before rise: {samples:?}");
        assert!(s.ok < RISE, "unknown with {} successes: {samples:?}", s.ok);
    }
    assert!(first_up.ok >= RISE, "up after {} successes", first_up.ok);
    assert_eq!(first_up.refused, 0);

    // The API agrees exactly: the state changed at the RISE-th run.
    let check = daemon.check(&token, "flappy");
    let history = check["history"].as_array().unwrap();
    assert!(history.len() >= RISE as usize, "{check:#}");
    assert_eq!(
        check["state_since"].as_str().unwrap(),
        at(&history[RISE as usize - 1]),
        "{check:#}"
    );

    // Falling: close the port. Up until FALL refusals in a row, then down.
    drop(listener);
    let mut samples = Vec::new();
    let first_down = daemon.wait_until(STATE_TIMEOUT, "flappy is down", || {
        let s = seen(&daemon.scrape(), "flappy");
        samples.push(s);
        (s.up == Some(false)).then_some(s)
    });
    for s in &samples[..samples.len() - 1] {
        assert_eq!(s.up, Some(true), "state before fall: {samples:?}");
        assert!(
            s.refused < FALL,
            "still up after {} refusals: {samples:?}",
            s.refused
        );
    }
    assert!(
        first_down.refused >= FALL,
        "down after {} refusals",
        first_down.refused
    );

    let check = daemon.check(&token, "flappy");
    let history = check["history"].as_array().unwrap();
    let first_refused = history
        .iter()
        .position(|r| r["reason"] == "refused")
        .expect("a refused run in the history");
    assert_eq!(
        check["state_since"].as_str().unwrap(),
        at(&history[first_refused + FALL as usize - 1]),
        "{check:#}"
    );
    assert!(history[..first_refused].iter().all(|r| r["up"] == true));

    // The transitions were logged.
    let changes: Vec<Value> = daemon
        .log_records()
        .into_iter()
        .filter(|r| r["message"] == "check state changed" && r["check"] == "flappy")
        .collect();
    let pairs: Vec<(String, String)> = changes
        .iter()
        .map(|r| (r["from"].to_string(), r["to"].to_string()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("\"unknown\"".to_string(), "\"up\"".to_string()),
            ("\"up\"".to_string(), "\"down\"".to_string())
        ],
        "{changes:?}"
    );
}
