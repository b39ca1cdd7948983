//! `siteward demo` as a newcomer runs it: it comes up (tunnel, every check green, events
//! at the platform), the URLs and tokens it prints work from this host, and it removes
//! everything it made: on Ctrl-C, and, after a SIGKILL, at the start of the next demo and
//! with `siteward demo --cleanup`.
//!
//! The demo's names and addresses are fixed (one demo at a time), so the tests here take
//! turns, and a guard runs `siteward demo --cleanup` whatever happens.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::Signal;
use siteward_tests::browser::process_running;
use siteward_tests::http::{self, Request, TlsClient};
use siteward_tests::{siteward_bin, ChildProcess, Scrape};

/// One demo at a time: its namespaces, link and addresses have fixed names.
static ONE_DEMO: Mutex<()> = Mutex::new(());

/// Bring-up of a debug build on a shared CI box: tunnel, 7 checks, first events.
const COME_UP: Duration = Duration::from_secs(180);
/// Stopping every process (the daemons drain for up to 10 s) and removing the lab.
const TEAR_DOWN: Duration = Duration::from_secs(60);

const NAMESPACES: [&str; 3] = ["swdemo-cloud", "swdemo-site", "swdemo-appliance"];
const CHECKS: [&str; 7] = [
    "erp-db-listener",
    "sap-gateway",
    "saprouter",
    "pbx-ami",
    "pbx-sip",
    "cloud-ping",
    "platform-port",
];
const READY: &str = "demo: running; Ctrl-C stops it and removes the lab";

/// Runs `siteward demo --cleanup` when dropped, so a failing test leaves nothing behind.
struct CleanupGuard;

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let _ = Command::new(siteward_bin())
            .args(["demo", "--cleanup"])
            .output();
    }
}

fn start_demo() -> ChildProcess {
    ChildProcess::spawn("siteward demo", siteward_bin(), ["demo"])
}

/// Waits for a line of the demo's standard output starting with `prefix`.
fn wait_line(demo: &ChildProcess, prefix: &str, timeout: Duration) -> String {
    demo.stdout()
        .wait_for(timeout, |l| l.starts_with(prefix))
        .unwrap_or_else(|e| {
            panic!(
                "waiting for {prefix:?} from the demo: {e}\n{}",
                demo.output_tail(60)
            )
        })
}

/// The value after the label of a ready line (`  web UI       https://...`).
fn ready_value(demo: &ChildProcess, label: &str) -> String {
    let prefix = format!("  {label} ");
    let lines = demo.stdout().all();
    let line = lines
        .iter()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{}", lines.join("\n")));
    line[prefix.len()..]
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("nothing after {label:?}: {line}"))
        .to_string()
}

/// The PIDs of every process in the demo's namespaces.
fn pids_in_namespaces() -> Vec<u32> {
    NAMESPACES
        .iter()
        .flat_map(|ns| {
            let out = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .expect("running ip netns pids");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether `pid` runs (a zombie does not).
fn is_running(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|pid| process_running(nix::unistd::Pid::from_raw(pid)))
}

/// Entries of `dir` whose names start with `swdemo-`.
fn demo_entries(dir: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("swdemo-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Nothing of a demo is left: namespaces, this host's links, tunnel sockets, directories,
/// and none of `pids` runs.
fn assert_nothing_left(pids: &[u32]) {
    for dir in ["/run/netns", "/sys/class/net", "/var/run/wireguard", "/run"] {
        let left = demo_entries(dir);
        assert!(left.is_empty(), "left in {dir}: {left:?}");
    }
    let running: Vec<u32> = pids.iter().copied().filter(|p| is_running(*p)).collect();
    assert!(running.is_empty(), "processes still running: {running:?}");
}

fn scrape(addr: SocketAddr) -> Scrape {
    let stream = TcpStream::connect_timeout(&addr, http::IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let response = http::plain(stream, addr, &Request::get("/metrics"))
        .unwrap_or_else(|e| panic!("GET /metrics from {addr}: {e}"));
    assert_eq!(response.status, 200, "{}", response.text());
    Scrape::parse(&response.text())
}

/// An HTTPS request to the appliance's web UI / API, verifying its certificate.
fn admin_request(tls: &TlsClient, addr: SocketAddr, request: &Request<'_>) -> http::Response {
    let stream = TcpStream::connect_timeout(&addr, http::IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    tls.send(stream, &addr.ip().to_string(), request)
        .unwrap_or_else(|e| panic!("{} {} at {addr}: {e}", request.method, request.path))
}

/// `https://198.51.100.2:8443/` -> its socket address.
fn addr_of_url(url: &str) -> SocketAddr {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("not an http(s) URL: {url}"));
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .parse()
        .unwrap_or_else(|e| panic!("{authority} in {url}: {e}"))
}

#[test]
fn the_demo_comes_up_its_urls_answer_and_ctrl_c_removes_everything() {
    let _turn = ONE_DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let _guard = CleanupGuard;
    let mut demo = start_demo();
    wait_line(&demo, READY, COME_UP);

    // Progress, in order.
    let lines = demo.stdout().all();
    let position = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", lines.join("\n")))
    };
    let tunnel = position("demo: tunnel up");
    let checks = position("demo: 7/7 checks up");
    let events = position("demo: first events delivered: the platform received ");
    assert!(tunnel < checks && checks < events, "{}", lines.join("\n"));
    let received: u64 = lines[events]
        .strip_prefix("demo: first events delivered: the platform received ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {:?}", lines[events]));
    assert!(received >= 1, "{}", lines[events]);

    // /metrics from this host: every check up, the tunnel up, events delivered.
    let metrics_url = ready_value(&demo, "metrics");
    assert!(metrics_url.ends_with("/metrics"), "{metrics_url}");
    let metrics = scrape(addr_of_url(&metrics_url));
    for check in CHECKS {
        assert_eq!(
            metrics.check_up(check),
            Some(true),
            "{check}:\n{}",
            metrics.text
        );
    }
    assert_eq!(
        metrics.get("siteward_tunnel_up", &[("tunnel", "cloud")]),
        Some(1.0),
        "{}",
        metrics.text
    );
    let delivered = metrics
        .get("siteward_uplink_events_delivered_total", &[])
        .unwrap_or(0.0);
    assert!(delivered >= 1.0, "{}", metrics.text);

    // The web UI: its certificate, the setup page, and the printed setup token works.
    let admin = addr_of_url(&ready_value(&demo, "web UI"));
    let cert = PathBuf::from(ready_value(&demo, "certificate"));
    let tls = TlsClient::trusting(&cert).expect("trusting the appliance's certificate");
    let page = admin_request(&tls, admin, &Request::get("/setup"));
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("First-run setup"), "{}", page.text());
    let setup_token = ready_value(&demo, "setup token");
    let form = format!(
        "token={setup_token}&user=admin&password=demo+password+1234&confirm=demo+password+1234"
    );
    let mut setup =
        Request::post("/setup").header("Content-Type", "application/x-www-form-urlencoded");
    setup.body = form.as_bytes();
    let created = admin_request(&tls, admin, &setup);
    assert_eq!(created.status, 303, "{}", created.text());
    assert!(
        created
            .header("set-cookie")
            .is_some_and(|c| c.starts_with("__Host-siteward-session=")),
        "{:?}",
        created.headers
    );

    // The API token opens the API; without it, nothing.
    let token = ready_value(&demo, "API token");
    let checks = admin_request(&tls, admin, &Request::get("/api/v1/checks").bearer(&token));
    assert_eq!(checks.status, 200, "{}", checks.text());
    let listed = checks.json()["checks"].as_array().map(Vec::len);
    assert_eq!(listed, Some(CHECKS.len()), "{}", checks.text());
    let refused = admin_request(&tls, admin, &Request::get("/api/v1/checks"));
    assert_eq!(refused.status, 401, "{}", refused.text());

    // One demo at a time: a cleanup while it runs is refused and changes nothing.
    let out = Command::new(siteward_bin())
        .args(["demo", "--cleanup"])
        .output()
        .expect("running siteward demo --cleanup");
    assert!(!out.status.success(), "cleanup ran beside a live demo");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another siteward demo is running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pids = pids_in_namespaces();
    assert_eq!(pids.len(), 8, "processes in the lab: {pids:?}");
    demo.signal(Signal::SIGINT);
    let status = demo.wait_timeout(TEAR_DOWN).unwrap_or_else(|| {
        panic!(
            "the demo still runs {TEAR_DOWN:?} after SIGINT:\n{}",
            demo.output_tail(30)
        )
    });
    assert!(status.success(), "{status}:\n{}", demo.output_tail(30));
    assert!(
        demo.stdout()
            .all()
            .iter()
            .any(|l| l == "demo: stopped by SIGINT"),
        "{}",
        demo.output_tail(30)
    );
    assert_nothing_left(&pids);
}

/// Starts a demo, waits until its lab runs, kills it with SIGKILL and checks what it left:
/// its namespaces, the host's link and its processes. Returns their PIDs.
fn kill_a_running_demo() -> (ChildProcess, Vec<u32>) {
    let mut demo = start_demo();
    wait_line(&demo, "demo: tunnel up", COME_UP);
    let pids = pids_in_namespaces();
    assert_eq!(pids.len(), 8, "processes in the lab: {pids:?}");
    demo.signal(Signal::SIGKILL);
    demo.wait_timeout(TEAR_DOWN)
        .expect("the demo dies of SIGKILL");
    for ns in NAMESPACES {
        assert!(
            Path::new("/run/netns").join(ns).exists(),
            "{ns} is gone already"
        );
    }
    assert!(Path::new("/sys/class/net/swdemo-host").exists());
    assert!(pids.iter().all(|p| is_running(*p)), "{pids:?}");
    (demo, pids)
}

#[test]
fn what_a_killed_demo_leaves_is_removed_by_the_next_demo_and_by_cleanup() {
    let _turn = ONE_DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let _guard = CleanupGuard;

    // The next demo removes the leftovers first, then comes up in their place.
    let (_killed, pids) = kill_a_running_demo();
    let mut next = start_demo();
    let removed = wait_line(
        &next,
        "demo: removed what an earlier demo left behind: ",
        COME_UP,
    );
    for what in ["namespace swdemo-appliance", "link swdemo-host"] {
        assert!(removed.contains(what), "{removed}");
    }
    assert!(pids.iter().all(|p| !is_running(*p)), "{pids:?}");
    wait_line(&next, "demo: tunnel up", COME_UP);
    next.signal(Signal::SIGKILL);
    next.wait_timeout(TEAR_DOWN)
        .expect("the demo dies of SIGKILL");

    // `--cleanup` removes them and nothing else happens.
    let pids = pids_in_namespaces();
    assert_eq!(pids.len(), 8, "processes in the lab: {pids:?}");
    let out = Command::new(siteward_bin())
        .args(["demo", "--cleanup"])
        .output()
        .expect("running siteward demo --cleanup");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("namespace swdemo-appliance"), "{said}");
    assert!(said.contains("link swdemo-host"), "{said}");
    assert_nothing_left(&pids);

    // Nothing more to do the second time.
    let again = Command::new(siteward_bin())
        .args(["demo", "--cleanup"])
        .output()
        .expect("running siteward demo --cleanup");
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing left over"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}
