//! What the demo makes and takes away: its directory, network namespaces, the link into
//! this host's namespace, and its processes (each `siteward` itself, run inside a
//! namespace with `ip netns exec`, in its own process group so a terminal's Ctrl-C
//! reaches the demo alone, which then stops them in order).
//!
//! [`Lab`] records each thing as it is made and removes exactly those on
//! [`Lab::teardown`] (also on drop). A demo killed with SIGKILL cannot do that; the next
//! run, or `siteward demo --cleanup`, finds the leftovers by their [`PREFIX`] and removes
//! them ([`remove_leftovers`]).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::topology::{self, PREFIX};

/// Where the demo's directory is made: root-only, and emptied at boot.
const RUN_PARENT: &str = "/run";
/// Where `ip netns add` puts named namespaces.
const NETNS_DIR: &str = "/run/netns";
/// Where the host's own links are listed.
const HOST_LINKS: &str = "/sys/class/net";
/// How long a process gets after SIGTERM before SIGKILL (the daemon drains its servers
/// for up to 10 s).
const STOP_GRACE: Duration = Duration::from_secs(12);
/// Pause between two looks at processes that are stopping.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How much of a log's end is shown when something fails.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// One running process of the lab.
struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

/// Everything one demo made, in the order it was made.
pub struct Lab {
    dir: PathBuf,
    namespaces: Vec<String>,
    host_links: Vec<String>,
    processes: Vec<Process>,
    torn_down: bool,
}

impl Lab {
    /// Makes the demo's directory, `/run/swdemo-<pid>` (0700).
    pub fn create() -> anyhow::Result<Lab> {
        let dir = Path::new(RUN_PARENT).join(format!("{PREFIX}{}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating the demo's directory {}", dir.display()))?;
        let lab = Lab {
            dir,
            namespaces: Vec::new(),
            host_links: Vec::new(),
            processes: Vec::new(),
            torn_down: false,
        };
        fs::DirBuilder::new()
            .mode(0o700)
            .create(lab.log_dir())
            .with_context(|| format!("creating {}", lab.log_dir().display()))?;
        Ok(lab)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The log file of the process called `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.log_dir().join(format!("{name}.log"))
    }

    /// Runs `ip ARGS...`; its error output becomes the error.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        run_ip(args)
    }

    /// Adds a named network namespace with its loopback up.
    pub fn add_namespace(&mut self, name: &str) -> anyhow::Result<()> {
        run_ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_string());
        run_ip(&["-n", name, "link", "set", "lo", "up"])
    }

    /// A veth pair from this host's namespace (`host_end`) into `netns` (`far_end`).
    pub fn add_host_link(
        &mut self,
        host_end: &str,
        far_end: &str,
        netns: &str,
    ) -> anyhow::Result<()> {
        run_ip(&[
            "link", "add", host_end, "type", "veth", "peer", "name", far_end, "netns", netns,
        ])?;
        self.host_links.push(host_end.to_string());
        Ok(())
    }

    /// Starts `siteward ARGS...` (this very binary) inside `netns`, its output going to
    /// `logs/<name>.log`.
    pub fn spawn(&mut self, spec: topology::Spec) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("locating the siteward binary")?;
        let log = self.log_path(spec.name);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log)
            .with_context(|| format!("creating {}", log.display()))?;
        let stderr = file
            .try_clone()
            .with_context(|| format!("opening {} twice", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", spec.netns])
            .arg(&exe)
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .env("NO_COLOR", "1")
            // Started from a service, the lab's daemons are not that service.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {} in {}", spec.name, spec.netns))?;
        self.processes.push(Process {
            name: spec.name.to_string(),
            child,
            log,
        });
        Ok(())
    }

    /// An error naming the first process that has ended, with the end of its log.
    pub fn check_processes(&mut self) -> anyhow::Result<()> {
        for process in &mut self.processes {
            if let Ok(Some(status)) = process.child.try_wait() {
                bail!(
                    "{} exited ({status}); the end of {}:\n{}",
                    process.name,
                    process.log.display(),
                    log_tail(&process.log, 20)
                );
            }
        }
        Ok(())
    }

    /// The PIDs of the lab's processes (`ip netns exec` replaces itself with siteward).
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(|p| p.child.id()).collect()
    }

    /// Stops the processes (SIGTERM, SIGKILL after a grace period), then removes the
    /// host's link, the namespaces, the tunnels' control sockets and the directory.
    /// Returns what it removed; problems are printed, and the rest is still removed.
    pub fn teardown(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        let mut removed = Vec::new();
        // The appliance first: it stops sending to the others.
        for process in self.processes.iter().rev() {
            let _ = kill(pid_of(process.child.id()), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        for process in self.processes.iter_mut().rev() {
            let pid = process.child.id();
            let stopped = wait_child(&mut process.child, deadline);
            if !stopped {
                eprintln!(
                    "demo: {} (pid {pid}) ignored SIGTERM; killing it",
                    process.name
                );
                let _ = process.child.kill();
                let _ = process.child.wait();
            }
            removed.push(format!("process {} (pid {pid})", process.name));
        }
        for ns in &self.namespaces {
            // Nothing else should run there; whatever does was started by the demo's own.
            stop_pids(&pids_in(ns));
        }
        for link in &self.host_links {
            if !Path::new(HOST_LINKS).join(link).exists() {
                continue;
            }
            match run_ip(&["link", "del", link]) {
                Ok(()) => removed.push(format!("link {link}")),
                Err(e) => eprintln!("demo: {e:#}"),
            }
        }
        for ns in self.namespaces.iter().rev() {
            match run_ip(&["netns", "del", ns]) {
                Ok(()) => removed.push(format!("namespace {ns}")),
                Err(e) => eprintln!("demo: {e:#}"),
            }
        }
        for socket in [topology::APPLIANCE_WG, topology::CLOUD_WG] {
            let path = uapi_socket(socket);
            if fs::remove_file(&path).is_ok() {
                removed.push(path.display().to_string());
            }
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => removed.push(self.dir.display().to_string()),
            Err(e) => eprintln!("demo: removing {}: {e}", self.dir.display()),
        }
        removed
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Waits for `child` to exit until `deadline`; true if it did (it is then reaped).
fn wait_child(child: &mut Child, deadline: Instant) -> bool {
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => std::thread::sleep(STOP_POLL),
        }
    }
}

fn pid_of(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

fn run_ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The UAPI socket of a tunnel interface (shared by every namespace).
fn uapi_socket(interface: &str) -> PathBuf {
    siteward_netstack::wireguard::uapi::socket_path(
        Path::new(siteward_netstack::wireguard::uapi::SOCKET_DIR),
        interface,
    )
}

/// PIDs of the processes in namespace `name`.
fn pids_in(name: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` is a live process (a zombie no longer counts).
pub fn is_running(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold anything.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Stops processes that are not the demo's children (left by a killed demo): SIGTERM,
/// then SIGKILL to those still running after the grace period.
fn stop_pids(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        for pid in pids.iter().filter(|p| is_running(**p)) {
            let _ = kill(pid_of(*pid), signal);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while pids.iter().any(|p| is_running(*p)) && Instant::now() < deadline {
            std::thread::sleep(STOP_POLL);
        }
    }
}

/// Names in `dir` that start with the demo's prefix.
fn prefixed_entries(dir: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    names.sort();
    names
}

/// The PID of another demo that is running now, from its directory `/run/swdemo-<pid>`.
pub fn running_demo() -> Option<u32> {
    prefixed_entries(RUN_PARENT).into_iter().find_map(|name| {
        let pid: u32 = name.strip_prefix(PREFIX)?.parse().ok()?;
        (pid != std::process::id() && is_running(pid) && is_demo(pid)).then_some(pid)
    })
}

/// Whether process `pid` is a `siteward demo` (its command line has the `demo` argument).
fn is_demo(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == b"demo"))
        .unwrap_or(false)
}

/// Removes what a demo that could not clean up (killed with SIGKILL) left: processes in
/// `swdemo-*` namespaces, those namespaces, `swdemo-*` links of this host, the tunnels'
/// `swdemo-*` control sockets and `/run/swdemo-*` directories. Refuses while another demo
/// runs. Returns what it removed.
pub fn remove_leftovers() -> anyhow::Result<Vec<String>> {
    if let Some(pid) = running_demo() {
        bail!(
            "another siteward demo is running (pid {pid}): stop it first (Ctrl-C in its \
             terminal, or kill {pid})"
        );
    }
    let mut removed = Vec::new();
    let namespaces = prefixed_entries(NETNS_DIR);
    for ns in &namespaces {
        let pids = pids_in(ns);
        stop_pids(&pids);
        removed.extend(pids.iter().map(|p| format!("process {p} in {ns}")));
    }
    for link in prefixed_entries(HOST_LINKS) {
        run_ip(&["link", "del", &link])?;
        removed.push(format!("link {link}"));
    }
    for ns in namespaces {
        run_ip(&["netns", "del", &ns])?;
        removed.push(format!("namespace {ns}"));
    }
    let socket_dir = siteward_netstack::wireguard::uapi::SOCKET_DIR;
    for socket in prefixed_entries(socket_dir) {
        let path = Path::new(socket_dir).join(&socket);
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        removed.push(path.display().to_string());
    }
    for name in prefixed_entries(RUN_PARENT) {
        let path = Path::new(RUN_PARENT).join(&name);
        let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir && name != format!("{PREFIX}{}", std::process::id()) {
            fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
            removed.push(path.display().to_string());
        }
    }
    Ok(removed)
}

/// The demo needs root: namespaces, links, TUN devices.
pub fn require_root() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("siteward demo builds network namespaces and needs root: run it with sudo");
    }
    let found = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        return Err(anyhow!(
            "siteward demo needs the ip command (apt-get install iproute2)"
        ));
    }
    Ok(())
}

/// The last `lines` lines of a log file (at most its last 64 KiB are read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.take(LOG_TAIL_BYTES).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all.get(start..).unwrap_or_default().join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
