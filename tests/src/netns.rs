//! Network namespaces for the suites: each test builds its own little network (veth pairs,
//! addresses, routes) that nothing else on the machine can see, and tears it down on drop.
//!
//! Names are `swt-<pid>-<n>`, so parallel tests and parallel test binaries never collide,
//! and a namespace left behind by a killed test run (its pid is gone) is swept away by the
//! next [`Netns::new`]. Addresses used inside are from 10.0.0.0/8 and the documentation
//! ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) only.

use std::ffi::OsStr;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::process::ChildProcess;

const PREFIX: &str = "swt-";
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace owned by a test. Dropping it kills every process inside it (by
/// PID) and deletes it, which also removes its veth interfaces and their peers.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a fresh namespace with `lo` up.
    pub fn new() -> Netns {
        sweep_stale();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NS ARGS...`; panics with its stderr if it fails.
    pub fn ip(&self, args: &[&str]) {
        run_ok(Command::new("ip").arg("-n").arg(&self.name).args(args));
    }

    /// Adds `cidr` (e.g. `10.20.0.1/24`) to `dev` and brings `dev` up.
    pub fn addr(&self, dev: &str, cidr: &str) {
        self.ip(&["addr", "add", cidr, "dev", dev]);
        self.ip(&["link", "set", dev, "up"]);
    }

    /// Adds a route, e.g. `route(&["blackhole", "192.0.2.0/24"])` or
    /// `route(&["203.0.113.0/24", "via", "10.20.0.2"])`.
    pub fn route(&self, spec: &[&str]) {
        let mut args = vec!["route", "add"];
        args.extend_from_slice(spec);
        self.ip(&args);
    }

    /// Creates a veth pair with one end in `self` and one in `other`; returns the names
    /// (`(end in self, end in other)`). Both ends are left down: use [`Netns::addr`].
    pub fn veth_to(&self, other: &Netns) -> (String, String) {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let here = ifname_for(n, 'a');
        let there = ifname_for(n, 'b');
        run_ok(Command::new("ip").args([
            "link",
            "add",
            &here,
            "netns",
            &self.name,
            "type",
            "veth",
            "peer",
            "name",
            &there,
            "netns",
            &other.name,
        ]));
        (here, there)
    }

    /// Runs a command inside the namespace to completion and returns its output.
    pub fn exec<I, S>(&self, program: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program} in {}: {e}", self.name))
    }

    /// A command that runs `program` inside the namespace (`ip netns exec` replaces
    /// itself with the program, so the child's PID is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Starts `program` inside the namespace as a [`ChildProcess`].
    pub fn spawn<I, S>(&self, name: &str, program: impl AsRef<OsStr>, args: I) -> ChildProcess
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command(program);
        command.args(args);
        ChildProcess::spawn_command(name, command)
    }

    /// Starts `program` inside the namespace with `run_dir` mounted over `/run`, for peers
    /// (charon, wireguard-go) that keep sockets and pid files in `/run`. `ip netns exec`
    /// already gives the command its own mount namespace, so the bind mount stays private.
    pub fn spawn_with_private_run<I, S>(
        &self,
        name: &str,
        run_dir: &Path,
        program: &str,
        args: I,
    ) -> ChildProcess
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command("sh");
        command
            .args(["-c", "mount --bind \"$0\" /run && exec \"$@\""])
            .arg(run_dir)
            .arg(program)
            .args(args);
        ChildProcess::spawn_command(name, command)
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it creates live there
    /// and keep working from any thread afterwards. This is how the test process reaches
    /// a daemon or peer inside the namespace without any address in the root namespace.
    /// Such sockets hold a reference to the namespace: until they are closed, the kernel
    /// keeps it (and its veth pairs) alive even after [`Netns`] is dropped.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        in_netns(&self.name, f)
    }

    /// A TCP listener bound inside the namespace.
    pub fn tcp_listener(&self, addr: SocketAddr) -> TcpListener {
        self.run(move || TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("binding {addr} in {}: {e}", self.name))
    }

    /// A UDP socket bound inside the namespace.
    pub fn udp_socket(&self, addr: SocketAddr) -> UdpSocket {
        self.run(move || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("binding UDP {addr} in {}: {e}", self.name))
    }

    /// PIDs of the processes inside the namespace.
    pub fn pids(&self) -> Vec<Pid> {
        pids_in(&self.name)
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove(&self.name);
    }
}

/// An interface name no other test or test binary running now uses (`sw<pid><kind><n>`,
/// within IFNAMSIZ), for devices whose names are global: TUN devices have their UAPI socket
/// in `/var/run/wireguard`, which all namespaces share.
pub fn unique_ifname(kind: char) -> String {
    ifname_for(COUNTER.fetch_add(1, Ordering::Relaxed), kind)
}

/// `sw` + the low 20 bits of the pid in hex + `kind` + `n`: at most 15 bytes up to n = 10^7.
fn ifname_for(n: u32, kind: char) -> String {
    format!("sw{:x}{kind}{n}", std::process::id() & 0xfffff)
}

/// Runs `f` on a thread inside the namespace called `name` (see [`Netns::run`]).
pub fn in_netns<R: Send + 'static>(name: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = Path::new("/run/netns").join(name);
    let handle = thread::spawn(move || {
        let ns = File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        setns(&ns, CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("entering {}: {e}", path.display()));
        f()
    });
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Connects to `addr` from inside namespace `netns` (or from here when `None`).
pub fn connect(
    netns: Option<&str>,
    addr: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    match netns {
        None => TcpStream::connect_timeout(&addr, timeout),
        Some(name) => in_netns(name, move || TcpStream::connect_timeout(&addr, timeout)),
    }
}

fn pids_in(name: &str) -> Vec<Pid> {
    let out = Command::new("ip").args(["netns", "pids", name]).output();
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .map(Pid::from_raw)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Kills what runs inside (all started by the test that owns the namespace), then deletes it.
fn remove(name: &str) {
    for _ in 0..50 {
        let pids = pids_in(name);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = kill(pid, Signal::SIGKILL);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new("ip").args(["netns", "del", name]).output();
    if let Ok(out) = out {
        if !out.status.success() {
            eprintln!(
                "warning: deleting network namespace {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
}

/// Deletes `swt-<pid>-<n>` namespaces whose test process no longer exists (a run that was
/// killed before its destructors ran).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if owner != std::process::id() && !Path::new(&format!("/proc/{owner}")).exists() {
            remove(&name);
        }
    }
}

fn run_ok(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
