//! The systemd service: the unit file passes `systemd-analyze verify` and scores 2.5 or
//! better in `systemd-analyze security`; sysusers.d and tmpfiles.d make the user and a
//! private state directory; the daemon started as systemd starts it (the service user with
//! ambient capabilities, `$NOTIFY_SOCKET`, `$WATCHDOG_USEC`) notifies readiness, feeds the
//! watchdog, reports reloads, commits and stopping, and keeps only its three capabilities; as root
//! it refuses to run without `--allow-root`. No systemd needs to run: the test binds the
//! notification socket itself, and `setpriv` sets the user and capabilities.
//!
//! Run as root (like the other end-to-end suites).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use siteward_tests::http::{exchange, Request};
use siteward_tests::{json_line, repo_root, siteward_bin, ChildProcess, Daemon, READY_TIMEOUT};

/// The unit file as shipped.
fn unit_path() -> PathBuf {
    repo_root().join("image/siteward.service")
}

/// The capabilities the service keeps, by number (capability.h), as the unit names them.
const NETWORK_CAPS: [(u32, &str); 3] = [
    (12, "CAP_NET_ADMIN"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
];

fn network_caps_mask() -> u64 {
    NETWORK_CAPS.iter().map(|(bit, _)| 1u64 << bit).sum()
}

/// The service's user in these tests: `nobody`, as the unit's `siteward` does not exist here.
const SERVICE_UID: u32 = 65534;
const SERVICE_GID: u32 = 65534;

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A copy of the unit whose ExecStart runs the binary under test: `verify` checks that the
/// command exists, and /usr/bin/siteward is only there once the package is installed.
/// The file keeps its name (`siteward.service`), so the unit's name is the same.
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(unit_path()).expect("reading image/siteward.service");
    let shipped = "ExecStart=/usr/bin/siteward ";
    assert_eq!(
        unit.matches(shipped).count(),
        1,
        "the unit runs /usr/bin/siteward once"
    );
    let copy = dir.join("siteward.service");
    let bin = siteward_bin();
    std::fs::write(
        &copy,
        unit.replace(shipped, &format!("ExecStart={} ", bin.display())),
    )
    .expect("writing the unit's copy");
    copy
}

#[test]
fn the_unit_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stdout}{stderr}",
        out.status
    );
}

/// "→ Overall exposure level for siteward.service: 2.0 OK 🙂" → 2.0.
fn exposure(output: &str) -> Option<f64> {
    let line = output
        .lines()
        .find(|l| l.contains("Overall exposure level for siteward.service:"))?;
    line.rsplit_once("siteward.service:")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn the_unit_scores_2_5_or_better() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    // --threshold is on a 0-100 scale (the printed 0.0-10.0 level times ten): 25 is 2.5,
    // and a level above it fails the command. The printed level is checked on its own too.
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=25", "--no-pager"])
        .arg(&unit));
    let stdout = text(&out.stdout);
    let score = exposure(&stdout).unwrap_or_else(|| {
        panic!(
            "no overall exposure level in:\n{stdout}{}",
            text(&out.stderr)
        )
    });
    assert!(score <= 2.5, "exposure {score} > 2.5:\n{stdout}");
    assert!(
        out.status.success(),
        "systemd-analyze security --threshold=25 failed ({}) with exposure {score}:\n{}",
        out.status,
        text(&out.stderr)
    );
}

#[test]
fn the_exposure_is_read_from_systemds_output() {
    assert_eq!(
        exposure("\n→ Overall exposure level for siteward.service: 2.0 OK 🙂\n"),
        Some(2.0)
    );
    assert_eq!(
        exposure("→ Overall exposure level for siteward.service: 9.6 UNSAFE 😨"),
        Some(9.6)
    );
    assert_eq!(
        exposure("Overall exposure level for other.service: 1.0 OK"),
        None
    );
}

/// The value of `key=` in the unit, split on spaces.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    let lines: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect();
    assert_eq!(lines.len(), 1, "{key}= once in the unit");
    lines[0].split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_unit_grants_exactly_what_the_daemon_keeps() {
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    let mut expected: Vec<String> = NETWORK_CAPS.iter().map(|(_, n)| n.to_string()).collect();
    expected.sort();
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        let mut granted = unit_values(&unit, key);
        granted.sort();
        assert_eq!(granted, expected, "{key}");
    }
    assert_eq!(unit_values(&unit, "Type"), ["notify"]);
    assert_eq!(unit_values(&unit, "User"), ["siteward"]);
    assert_eq!(unit_values(&unit, "WatchdogSec"), ["30"]);
    assert_eq!(
        unit_values(&unit, "ExecReload"),
        ["/bin/kill", "-HUP", "$MAINPID"]
    );
}

#[test]
fn sysusers_and_tmpfiles_make_the_user_and_private_directories() {
    use std::os::unix::fs::MetadataExt;
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let out = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(repo_root().join("image/sysusers.d/siteward.conf")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let entry: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("siteward:"))
        .unwrap_or_else(|| panic!("no siteward user in {passwd}"))
        .split(':')
        .collect();
    assert_eq!(entry.get(4), Some(&"Siteward edge appliance"), "{entry:?}");
    assert_eq!(entry.get(5), Some(&"/var/lib/siteward"), "{entry:?}");
    assert!(
        entry.get(6).is_some_and(|shell| shell.ends_with("nologin")),
        "{entry:?}"
    );
    let uid: u32 = entry[2].parse().unwrap();
    assert!(uid != 0 && uid < 1000, "a system user: {uid}");

    // A root-owned siteward.toml already there (as an unpacked package or a copy by hand
    // leaves it): tmpfiles leaves it alone, at install and at every boot after, instead
    // of refusing it ("unsafe path transition") and failing.
    let config = root.path().join("etc/siteward/siteward.toml");
    std::fs::create_dir(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "").unwrap();
    for _ in ["install", "boot"] {
        let out = run(Command::new("systemd-tmpfiles")
            .arg(format!("--root={}", root.path().display()))
            .arg("--create")
            .arg(repo_root().join("image/tmpfiles.d/siteward.conf")));
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    for dir in ["var/lib/siteward", "etc/siteward"] {
        let meta = std::fs::metadata(root.path().join(dir)).unwrap();
        assert!(meta.is_dir(), "{dir}");
        assert_eq!(meta.mode() & 0o7777, 0o700, "{dir}");
        assert_eq!(meta.uid(), uid, "{dir}");
    }
    assert_eq!(std::fs::metadata(&config).unwrap().uid(), 0);
}

/// Capability masks and flags of `/proc/PID/task/TID/status`, for every thread.
#[derive(Debug, PartialEq, Eq)]
struct ThreadPrivileges {
    uid: String,
    inheritable: u64,
    permitted: u64,
    effective: u64,
    bounding: u64,
    ambient: u64,
    no_new_privs: bool,
}

fn thread_privileges(status: &str) -> ThreadPrivileges {
    let field = |name: &str| -> &str {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .trim()
    };
    let mask = |name: &str| u64::from_str_radix(field(name), 16).unwrap();
    ThreadPrivileges {
        // Real, effective, saved, filesystem: all the same when nothing changed them.
        uid: field("Uid")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        inheritable: mask("CapInh"),
        permitted: mask("CapPrm"),
        effective: mask("CapEff"),
        bounding: mask("CapBnd"),
        ambient: mask("CapAmb"),
        no_new_privs: field("NoNewPrivs") == "1",
    }
}

/// The privileges of every thread of `pid` (capabilities are per thread: each must agree).
fn process_privileges(pid: nix::unistd::Pid) -> Vec<ThreadPrivileges> {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    let threads: Vec<ThreadPrivileges> = std::fs::read_dir(&tasks)
        .unwrap_or_else(|e| panic!("reading {}: {e}", tasks.display()))
        .map(|task| {
            let status = task.unwrap().path().join("status");
            thread_privileges(&std::fs::read_to_string(&status).unwrap())
        })
        .collect();
    assert!(
        threads.len() > 1,
        "the runtime's threads are there: {threads:?}"
    );
    threads
}

fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests start the daemon as root and as another user: run them as root"
    );
}

#[test]
fn root_with_allow_root_keeps_only_the_three_network_capabilities() {
    assert_root();
    // The harness passes --allow-root.
    let daemon = Daemon::start("");
    let expected = ThreadPrivileges {
        uid: "0 0 0 0".into(),
        inheritable: 0,
        permitted: network_caps_mask(),
        effective: network_caps_mask(),
        bounding: network_caps_mask(),
        ambient: 0,
        no_new_privs: true,
    };
    for thread in process_privileges(daemon.pid()) {
        assert_eq!(thread, expected);
    }
    let line = daemon.wait_for_log(READY_TIMEOUT, |v| v["message"] == "privileges");
    assert_eq!(
        line["capabilities"], "CAP_NET_ADMIN,CAP_NET_BIND_SERVICE,CAP_NET_RAW",
        "{line}"
    );
}

/// A configuration with listeners on port 0 and `checks`, its state in `dir/state`.
fn config_text(dir: &Path, checks: &str) -> String {
    format!(
        "[appliance]\nname = \"systemd-test\"\nstate_dir = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n{checks}",
        dir.join("state").display()
    )
}

#[test]
fn root_without_allow_root_is_refused_with_the_way_out() {
    assert_root();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("siteward.toml");
    std::fs::write(&config, config_text(dir.path(), "")).unwrap();
    let mut daemon = ChildProcess::spawn(
        "siteward",
        siteward_bin(),
        ["run".as_ref(), "--config".as_ref(), config.as_os_str()],
    );
    let status = daemon
        .wait_timeout(READY_TIMEOUT)
        .expect("siteward exits when refusing root");
    assert!(!status.success(), "{status}");
    let line = daemon
        .stderr()
        .wait_for(READY_TIMEOUT, |l| l.contains("refusing to run as root"))
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.output_tail(10)));
    assert!(
        line.starts_with("siteward: error: refusing to run as root")
            && line.contains("`siteward` service user")
            && line.contains("--allow-root"),
        "{line}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "nothing was done before refusing"
    );
}

/// The notification socket systemd would listen on, bound by the test.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    /// Every datagram received, in order.
    received: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("binding the notification socket");
        // The daemon runs as another user: it needs write permission to send.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        NotifySocket {
            socket,
            path,
            received: Vec::new(),
        }
    }

    /// The next datagram that satisfies `pred`, waiting at most `timeout` in all.
    fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no such notification within {timeout:?}; received: {:?}",
                self.received
            );
            self.socket.set_read_timeout(Some(left)).unwrap();
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let message = text(&buf[..n]);
                    self.received.push(message.clone());
                    if pred(&message) {
                        return message;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("receiving a notification: {e}"),
            }
        }
    }
}

/// A `[[checks]]` table: a TCP check of `port` on loopback, every 30 s.
fn tcp_check(name: &str, port: u16) -> String {
    format!("[[checks]]\nname = \"{name}\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:{port}\"\ninterval = \"30s\"\n")
}

/// One request to the admin API on the daemon's control socket (in `dir/state`, as
/// `config_text` puts it); answers 200 with JSON or the test fails.
fn control_request(dir: &Path, method: &str, path: &str, body: &[u8]) -> serde_json::Value {
    let socket = dir.join("state").join("control.sock");
    let mut stream = UnixStream::connect(&socket)
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", socket.display()));
    let request = Request {
        method,
        path,
        headers: Vec::new(),
        body,
    };
    let response = exchange(&mut stream, "localhost", &request)
        .unwrap_or_else(|e| panic!("{method} {path} on the control socket: {e}"));
    assert_eq!(response.status, 200, "{method} {path}: {}", response.text());
    response.json()
}

/// A directory the service user owns (the unit's StateDirectory/ConfigurationDirectory).
fn service_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("siteward-systemd-")
        .tempdir()
        .unwrap();
    std::os::unix::fs::chown(dir.path(), Some(SERVICE_UID), Some(SERVICE_GID)).unwrap();
    dir
}

fn write_config(dir: &Path, checks: &str) {
    let path = dir.join("siteward.toml");
    let tmp = dir.join("siteward.toml.new");
    std::fs::write(&tmp, config_text(dir, checks)).unwrap();
    std::os::unix::fs::chown(&tmp, Some(SERVICE_UID), Some(SERVICE_GID)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// `siteward run` as the unit starts it: the service user, `caps` as inheritable and
/// ambient capabilities and the unit's bounding set (`setpriv` does what systemd's
/// User=, AmbientCapabilities= and CapabilityBoundingSet= do), with `$NOTIFY_SOCKET` and
/// `$WATCHDOG_USEC` (200 ms: fed every 100 ms, so the test sees it soon).
fn start_as_service(dir: &Path, notify: &NotifySocket, caps: &str, bounding: &str) -> ChildProcess {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={SERVICE_UID}"))
        .arg(format!("--regid={SERVICE_GID}"))
        .arg("--clear-groups")
        .arg(format!("--inh-caps=-all,{caps}"))
        .arg(format!("--ambient-caps=-all,{caps}"))
        .arg(format!("--bounding-set=-all,{bounding}"))
        .arg("--")
        .arg(siteward_bin())
        .arg("run")
        .arg("--config")
        .arg(dir.join("siteward.toml"))
        .args(["--log-format", "json"])
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .env_remove("SITEWARD_LOG")
        .current_dir(dir);
    ChildProcess::spawn_command("siteward", command)
}

const UNIT_CAPS: &str = "+net_admin,+net_bind_service,+net_raw";

#[test]
fn as_the_service_user_it_notifies_systemd_and_feeds_the_watchdog() {
    assert_root();
    let dir = service_dir();
    write_config(dir.path(), "");
    let mut notify = NotifySocket::bind(dir.path());
    let mut daemon = start_as_service(dir.path(), &notify, UNIT_CAPS, UNIT_CAPS);

    let ready = notify.wait_for(READY_TIMEOUT, |m| m.starts_with("READY=1"));
    assert_eq!(
        ready,
        "READY=1\nSTATUS=running: 0 checks, 0 tunnels, 0 connectors, 0 relays"
    );
    // READY=1 is sent after the listeners are bound and the configuration applied: the
    // daemon logged both (stderr is read by another thread, so it may still be on its way).
    for message in ["listening", "siteward running"] {
        daemon
            .stderr()
            .wait_for(READY_TIMEOUT, |l| {
                json_line(l).is_some_and(|v| v["message"] == message)
            })
            .unwrap_or_else(|e| panic!("{message}: {e}: {}", daemon.output_tail(20)));
    }
    notify.wait_for(READY_TIMEOUT, |m| m == "WATCHDOG=1");

    let expected = ThreadPrivileges {
        uid: format!("{SERVICE_UID} {SERVICE_UID} {SERVICE_UID} {SERVICE_UID}"),
        inheritable: network_caps_mask(),
        permitted: network_caps_mask(),
        effective: network_caps_mask(),
        bounding: network_caps_mask(),
        ambient: network_caps_mask(),
        no_new_privs: true,
    };
    for thread in process_privileges(daemon.pid()) {
        assert_eq!(thread, expected);
    }

    // `systemctl reload`: ExecReload sends SIGHUP.
    write_config(dir.path(), &tcp_check("discard", 9));
    daemon.signal(Signal::SIGHUP);
    let reloading = notify.wait_for(READY_TIMEOUT, |m| m.starts_with("RELOADING=1"));
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|u| u > 0), "{reloading}");
    let ready = notify.wait_for(READY_TIMEOUT, |m| m.starts_with("READY=1"));
    assert_eq!(
        ready,
        "READY=1\nSTATUS=running: 1 check, 0 tunnels, 0 connectors, 0 relays"
    );
    // Still fed after the reload.
    notify.wait_for(READY_TIMEOUT, |m| m == "WATCHDOG=1");

    // A commit through the API (what the web UI does; here over the control socket)
    // changes what `systemctl status` shows, with no reload.
    let two_checks = config_text(
        dir.path(),
        &format!("{}\n{}", tcp_check("discard", 9), tcp_check("echo", 7)),
    );
    let staged = control_request(
        dir.path(),
        "PUT",
        "/api/v1/config/candidate?revision=0",
        two_checks.as_bytes(),
    );
    let commit = format!(r#"{{"revision": {}}}"#, staged["revision"]);
    control_request(
        dir.path(),
        "POST",
        "/api/v1/config/commit",
        commit.as_bytes(),
    );
    let status = notify.wait_for(READY_TIMEOUT, |m| m.starts_with("STATUS=running: 2"));
    assert_eq!(
        status,
        "STATUS=running: 2 checks, 0 tunnels, 0 connectors, 0 relays"
    );

    daemon.signal(Signal::SIGTERM);
    notify.wait_for(READY_TIMEOUT, |m| m == "STOPPING=1\nSTATUS=stopping");
    let status = daemon
        .wait_timeout(READY_TIMEOUT)
        .expect("siteward stops on SIGTERM");
    assert!(status.success(), "{status}\n{}", daemon.output_tail(20));
}

#[test]
fn a_service_user_given_more_keeps_only_the_three() {
    assert_root();
    let dir = service_dir();
    write_config(dir.path(), "");
    let mut notify = NotifySocket::bind(dir.path());
    // A unit that grants too much: CAP_DAC_OVERRIDE and CAP_SYS_ADMIN besides the three.
    let granted = format!("{UNIT_CAPS},+dac_override,+sys_admin");
    let daemon = start_as_service(dir.path(), &notify, &granted, "+all");
    notify.wait_for(READY_TIMEOUT, |m| m.starts_with("READY=1"));
    for thread in process_privileges(daemon.pid()) {
        assert_eq!(thread.effective, network_caps_mask(), "{thread:?}");
        assert_eq!(thread.permitted, network_caps_mask(), "{thread:?}");
        assert_eq!(thread.inheritable, network_caps_mask(), "{thread:?}");
        assert_eq!(thread.ambient, network_caps_mask(), "{thread:?}");
        // Without CAP_SETPCAP the bounding set cannot shrink; with nothing else permitted
        // and no_new_privs nothing in it can be gained back.
        assert!(thread.no_new_privs, "{thread:?}");
    }
}
