//! The daemon inside a network namespace: ICMP, black holes, closed ports, and checks
//! pinned to an interface or a source address.
//!
//! Each test builds its own two-namespace network, invisible to the rest of the machine:
//!
//! ```text
//!   namespace A (siteward)                     namespace B (peer)
//!   veth 10.77.0.1/24  <------------------->  veth 10.77.0.2/24
//!   route 203.0.113.0/24 via 10.77.0.2           (no forwarding: B drops it silently)
//!   blackhole 198.51.100.0/24
//!   unreachable 192.0.2.0/24
//! ```
//!
//! The test process reaches the daemon's listeners (on 10.77.0.1) from a thread that has
//! entered namespace A, so no address is ever added outside the test's namespaces.

use std::net::SocketAddr;

use serde_json::Value;
use siteward_tests::{Daemon, DaemonOptions, Netns, STATE_TIMEOUT};

const A_ADDR: &str = "10.77.0.1";
const B_ADDR: &str = "10.77.0.2";
/// On A's subnet, but nobody answers ARP for it.
const UNUSED_ON_LINK: &str = "10.77.0.99";
/// Routed to B, which does not forward: packets vanish without an answer.
const DROPPED_VIA_B: &str = "203.0.113.7";
/// `ip route add blackhole`.
const BLACKHOLED: &str = "198.51.100.7";
/// `ip route add unreachable`.
const UNREACHABLE: &str = "192.0.2.7";

/// Namespaces A and B joined by a veth pair; returns them and A's veth name.
fn lab() -> (Netns, Netns, String) {
    let a = Netns::new();
    let b = Netns::new();
    let (a_dev, b_dev) = a.veth_to(&b);
    a.addr(&a_dev, &format!("{A_ADDR}/24"));
    b.addr(&b_dev, &format!("{B_ADDR}/24"));
    a.route(&["203.0.113.0/24", "via", B_ADDR]);
    a.route(&["blackhole", "198.51.100.0/24"]);
    a.route(&["unreachable", "192.0.2.0/24"]);
    (a, b, a_dev)
}

fn start_in(a: &Netns, checks: &str) -> Daemon {
    Daemon::start_with(
        DaemonOptions {
            netns: Some(a.name().to_string()),
            listen_ip: A_ADDR.parse().unwrap(),
            ..DaemonOptions::default()
        },
        checks,
    )
}

fn check(name: &str, kind: &str, target: &str, extra: &str) -> String {
    format!(
        "[[checks]]\nname = \"{name}\"\nkind = \"{kind}\"\ntarget = \"{target}\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\n{extra}\n"
    )
}

/// Waits until every named check has a last run, then returns them by name.
fn settled(daemon: &Daemon, token: &str, names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|name| {
            daemon.wait_for_check(token, name, STATE_TIMEOUT, "has a state", |c| {
                c["state"] != "unknown"
            })
        })
        .collect()
}

fn reason(check: &Value) -> &str {
    check["last"]["reason"].as_str().unwrap_or_default()
}

#[test]
fn icmp_inside_a_namespace() {
    let (a, _b, _a_dev) = lab();
    let daemon = start_in(
        &a,
        &[
            check("peer", "icmp", B_ADDR, "count = 2"),
            check("unused", "icmp", UNUSED_ON_LINK, "count = 2"),
            check("dropped", "icmp", DROPPED_VIA_B, "count = 2"),
            check("unreachable", "icmp", UNREACHABLE, "count = 2"),
        ]
        .concat(),
    );
    let token = daemon.create_token("ops");
    let checks = settled(
        &daemon,
        &token,
        &["peer", "unused", "dropped", "unreachable"],
    );

    let peer = &checks[0];
    assert_eq!(peer["state"], "up", "{peer:#}");
    let detail = peer["last"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("2/2 replies") && detail.contains(B_ADDR),
        "{peer:#}"
    );
    for down in &checks[1..] {
        assert_eq!(down["state"], "down", "{down:#}");
        assert!(
            ["packet_loss", "unreachable"].contains(&reason(down)),
            "{down:#}"
        );
    }
    assert_eq!(reason(&checks[2]), "packet_loss", "{:#}", checks[2]);
    assert_eq!(reason(&checks[3]), "unreachable", "{:#}", checks[3]);

    let scrape = daemon.scrape();
    assert_eq!(scrape.check_up("peer"), Some(true));
    assert_eq!(scrape.check_up("dropped"), Some(false));
}

/// A `blackhole` route makes the kernel refuse the packet locally (EINVAL): the checks
/// must report that as the target being unreachable, not as a local I/O error.
#[test]
fn a_blackholed_prefix_is_unreachable() {
    let (a, _b, _a_dev) = lab();
    let daemon = start_in(
        &a,
        &[
            check("ping-blackholed", "icmp", BLACKHOLED, "count = 2"),
            check("tcp-blackholed", "tcp", &format!("{BLACKHOLED}:80"), ""),
        ]
        .concat(),
    );
    let token = daemon.create_token("ops");
    for check in settled(&daemon, &token, &["ping-blackholed", "tcp-blackholed"]) {
        assert_eq!(check["state"], "down", "{check:#}");
        assert!(
            ["packet_loss", "unreachable"].contains(&reason(&check)),
            "{check:#}"
        );
    }
}

#[test]
fn tcp_failures_inside_a_namespace() {
    let (a, b, _a_dev) = lab();
    let listener = b.tcp_listener(SocketAddr::new(B_ADDR.parse().unwrap(), 0));
    let open = listener.local_addr().unwrap();
    let daemon = start_in(
        &a,
        &[
            check("open", "tcp", &open.to_string(), ""),
            check(
                "closed",
                "tcp",
                &format!("{B_ADDR}:{}", open.port() + 1),
                "",
            ),
            check("black-hole", "tcp", &format!("{DROPPED_VIA_B}:80"), ""),
            check("no-arp", "tcp", &format!("{UNUSED_ON_LINK}:80"), ""),
            check("no-route", "tcp", &format!("{UNREACHABLE}:80"), ""),
        ]
        .concat(),
    );
    let token = daemon.create_token("ops");
    let checks = settled(
        &daemon,
        &token,
        &["open", "closed", "black-hole", "no-arp", "no-route"],
    );
    let expect: [(&str, &str, &[&str]); 5] = [
        ("open", "up", &["ok"]),
        ("closed", "down", &["refused"]),
        ("black-hole", "down", &["timeout"]),
        // Timeout while ARP is still trying; once the neighbour entry has failed (after
        // about 3 s) the kernel answers "no route to host" at once.
        ("no-arp", "down", &["timeout", "unreachable"]),
        ("no-route", "down", &["unreachable"]),
    ];
    for (check, (name, state, why)) in checks.iter().zip(expect) {
        assert_eq!(check["name"], name);
        assert_eq!(check["state"], state, "{check:#}");
        assert!(why.contains(&reason(check)), "{check:#}");
    }
    let scrape = daemon.scrape();
    assert!(scrape.runs("closed", "refused") >= 1);
    assert!(scrape.runs("black-hole", "timeout") >= 1);
}

#[test]
fn checks_follow_their_interface_and_source() {
    let (a, b, a_dev) = lab();
    let listener = b.tcp_listener(SocketAddr::new(B_ADDR.parse().unwrap(), 0));
    let target = listener.local_addr().unwrap().to_string();
    let daemon = start_in(
        &a,
        &[
            check(
                "via-veth",
                "tcp",
                &target,
                &format!("interface = \"{a_dev}\""),
            ),
            check("via-lo", "tcp", &target, "interface = \"lo\""),
            check(
                "ping-via-veth",
                "icmp",
                B_ADDR,
                &format!("interface = \"{a_dev}\"\ncount = 1"),
            ),
            check(
                "ping-via-lo",
                "icmp",
                B_ADDR,
                "interface = \"lo\"\ncount = 1",
            ),
            check("from-a", "tcp", &target, &format!("source = \"{A_ADDR}\"")),
            check("from-elsewhere", "tcp", &target, "source = \"10.77.0.55\""),
            check(
                "no-such-interface",
                "tcp",
                &target,
                "interface = \"swt-nope0\"",
            ),
        ]
        .concat(),
    );
    let token = daemon.create_token("ops");
    let names = [
        "via-veth",
        "via-lo",
        "ping-via-veth",
        "ping-via-lo",
        "from-a",
        "from-elsewhere",
        "no-such-interface",
    ];
    let checks = settled(&daemon, &token, &names);
    let by_name = |n: &str| &checks[names.iter().position(|x| *x == n).unwrap()];

    for up in ["via-veth", "ping-via-veth", "from-a"] {
        let c = by_name(up);
        assert_eq!(c["state"], "up", "{c:#}");
    }
    assert_eq!(by_name("via-veth")["interface"], a_dev.as_str());
    assert_eq!(by_name("from-a")["source"], A_ADDR);
    assert!(
        by_name("from-a")["last"]["detail"]
            .as_str()
            .unwrap()
            .contains(&target),
        "{:#}",
        by_name("from-a")
    );
    for down in ["via-lo", "ping-via-lo"] {
        let c = by_name(down);
        assert_eq!(c["state"], "down", "bound to lo, B is out of reach: {c:#}");
        assert_ne!(reason(c), "ok");
    }
    for bad_bind in ["from-elsewhere", "no-such-interface"] {
        let c = by_name(bad_bind);
        assert_eq!(c["state"], "down", "{c:#}");
        assert_eq!(reason(c), "bind_error", "{c:#}");
    }
}

#[test]
fn dropping_the_namespace_ends_what_runs_inside() {
    use std::os::unix::process::ExitStatusExt;
    let (a, _b, _a_dev) = lab();
    let name = a.name().to_string();
    let mut daemon = start_in(&a, "");
    assert!(
        a.pids().contains(&daemon.pid()),
        "the daemon runs inside {name}"
    );
    // Dropped before the daemon, as when a test panics with both alive.
    drop(a);
    assert!(!std::path::Path::new("/run/netns").join(&name).exists());
    let status = daemon
        .process()
        .wait_timeout(std::time::Duration::from_secs(5))
        .expect("the daemon outlived its namespace");
    assert_eq!(status.signal(), Some(9), "{status:?}");
}
