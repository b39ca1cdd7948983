//! systemd's service notifications (sd_notify(3)) without libsystemd: each one is a
//! datagram of `KEY=VALUE` lines sent to the unix socket that `$NOTIFY_SOCKET` names (a
//! path, or an abstract name when it starts with `@`). Outside systemd the variable is
//! unset and every notification is a no-op, so `siteward run` behaves the same in a shell.
//!
//! The watchdog (`WatchdogSec=`) is fed by [`feed_watchdog`], a task on the runtime that
//! sends `WATCHDOG=1` only while the supervisor loop answers a [`LivenessProbe`]: a stuck
//! runtime or a stuck loop stops the feeding and systemd restarts the daemon.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How long a send may block (systemd not reading its socket) before it is given up: a
/// lost notification is better than a runtime thread stuck on it.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Where notifications go; [`Notifier::disabled`] (no `$NOTIFY_SOCKET`) drops them.
pub struct Notifier {
    target: Option<Target>,
}

struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `$NOTIFY_SOCKET` as given, for messages.
    name: String,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for; disabled when it is unset or empty.
    pub fn from_env() -> anyhow::Result<Notifier> {
        Notifier::for_socket(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    /// A notifier for the value of `$NOTIFY_SOCKET` (`None` or empty: disabled).
    pub fn for_socket(value: Option<&OsStr>) -> anyhow::Result<Notifier> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(Notifier::disabled());
        };
        let name = value.to_string_lossy().into_owned();
        let bytes = value.as_bytes();
        let addr = match bytes.split_first() {
            Some((b'@', abstract_name)) => SocketAddr::from_abstract_name(abstract_name)
                .with_context(|| format!("NOTIFY_SOCKET={name}: not a usable abstract name"))?,
            Some((b'/', _)) => SocketAddr::from_pathname(value)
                .with_context(|| format!("NOTIFY_SOCKET={name}: not a usable socket path"))?,
            _ => anyhow::bail!(
                "NOTIFY_SOCKET={name}: neither an absolute path nor an abstract name (@...)"
            ),
        };
        let socket =
            UnixDatagram::unbound().context("opening a socket for systemd notifications")?;
        socket
            .set_write_timeout(Some(SEND_TIMEOUT))
            .context("setting the notification socket's send timeout")?;
        Ok(Notifier {
            target: Some(Target { socket, addr, name }),
        })
    }

    /// Sends one notification: `KEY=VALUE` lines, newline-separated.
    pub fn send(&self, state: &str) -> io::Result<()> {
        match &self.target {
            Some(target) => target
                .socket
                .send_to_addr(state.as_bytes(), &target.addr)
                .map(|_| ()),
            None => Ok(()),
        }
    }

    /// Startup (or a reload) finished: listeners bound, configuration applied.
    pub fn ready(&self, status: &str) {
        self.log_failure(
            "READY=1",
            self.send(&format!("READY=1\nSTATUS={}", status_value(status))),
        );
    }

    /// A free-form line `systemctl status` shows.
    pub fn status(&self, status: &str) {
        self.log_failure(
            "STATUS",
            self.send(&format!("STATUS={}", status_value(status))),
        );
    }

    /// A reload starts; [`Notifier::ready`] ends it. `MONOTONIC_USEC` is what
    /// `Type=notify-reload` (systemd 253 and later) matches against its signal.
    pub fn reloading(&self) {
        let message = match monotonic_usec() {
            Ok(usec) => format!("RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading"),
            Err(e) => {
                tracing::warn!(error = %e, "reading CLOCK_MONOTONIC for the reload notification");
                "RELOADING=1\nSTATUS=reloading".to_string()
            }
        };
        self.log_failure("RELOADING=1", self.send(&message));
    }

    /// Shutdown started.
    pub fn stopping(&self) {
        self.log_failure("STOPPING=1", self.send("STOPPING=1\nSTATUS=stopping"));
    }

    fn log_failure(&self, what: &str, result: io::Result<()>) {
        if let (Err(e), Some(target)) = (result, &self.target) {
            tracing::warn!(
                socket = %target.name,
                error = %e,
                "sending {what} to systemd's notification socket"
            );
        }
    }
}

/// A status value on one line: a newline would start another `KEY=VALUE` of the datagram.
fn status_value(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd's `MONOTONIC_USEC` is read on.
fn monotonic_usec() -> nix::Result<u64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
    let secs = u64::try_from(now.tv_sec()).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec() / 1_000).unwrap_or(0);
    Ok(secs.saturating_mul(1_000_000).saturating_add(micros))
}

/// How often to send `WATCHDOG=1`: half the period `$WATCHDOG_USEC` gives, as
/// sd_watchdog_enabled(3) advises; `None` when there is no watchdog for this process.
pub fn watchdog_interval_from_env() -> anyhow::Result<Option<Duration>> {
    watchdog_interval(
        std::env::var_os("WATCHDOG_USEC"),
        std::env::var_os("WATCHDOG_PID"),
        std::process::id(),
    )
}

/// The watchdog interval for `$WATCHDOG_USEC` and `$WATCHDOG_PID` as this process (`own_pid`)
/// sees them. A watchdog meant for another PID is not ours.
fn watchdog_interval(
    usec: Option<OsString>,
    pid: Option<OsString>,
    own_pid: u32,
) -> anyhow::Result<Option<Duration>> {
    let Some(usec) = usec.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Some(pid) = pid.filter(|v| !v.is_empty()) {
        let pid: u32 = pid
            .to_str()
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("WATCHDOG_PID={}: not a process id", pid.to_string_lossy()))?;
        if pid != own_pid {
            return Ok(None);
        }
    }
    let usec: u64 = usec
        .to_str()
        .and_then(|u| u.parse().ok())
        .filter(|&u| u > 0)
        .with_context(|| {
            format!(
                "WATCHDOG_USEC={}: not a positive number of microseconds",
                usec.to_string_lossy()
            )
        })?;
    Ok(Some(Duration::from_micros(usec / 2)))
}

/// The supervisor loop's side of a [`LivenessProbe`]: it answers each request it takes.
pub type LivenessRequests = mpsc::Receiver<oneshot::Sender<()>>;

/// Asks the supervisor loop whether it still turns: the loop answers between its other work.
#[derive(Clone)]
pub struct LivenessProbe(mpsc::Sender<oneshot::Sender<()>>);

/// A probe and the requests the supervisor loop must answer.
pub fn liveness_channel() -> (LivenessProbe, LivenessRequests) {
    let (tx, rx) = mpsc::channel(1);
    (LivenessProbe(tx), rx)
}

impl LivenessProbe {
    /// Whether the loop answered within `timeout`.
    pub async fn answered_within(&self, timeout: Duration) -> bool {
        let (reply, answer) = oneshot::channel();
        tokio::time::timeout(timeout, async {
            self.0.send(reply).await.is_ok() && answer.await.is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

/// One round of the watchdog: `WATCHDOG=1` if the loop answered within `interval`.
/// Returns whether the watchdog was fed.
async fn feed_once(notifier: &Notifier, probe: &LivenessProbe, interval: Duration) -> bool {
    if !probe.answered_within(interval).await {
        tracing::warn!(
            "the supervisor loop did not answer within {interval:?}: not feeding systemd's watchdog"
        );
        notifier.status("the supervisor loop stopped answering: watchdog not fed");
        return false;
    }
    match notifier.send("WATCHDOG=1") {
        Ok(()) => true,
        Err(e) => {
            notifier.log_failure("WATCHDOG=1", Err(e));
            false
        }
    }
}

/// Feeds systemd's watchdog every `interval` while the supervisor loop answers `probe`,
/// until `cancel`.
pub async fn feed_watchdog(
    notifier: Arc<Notifier>,
    probe: LivenessProbe,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = feed_once(&notifier, &probe, interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket standing in for systemd's, bound in a fresh directory.
    struct Listener {
        socket: UnixDatagram,
        path: std::path::PathBuf,
        _dir: tempfile::TempDir,
    }

    impl Listener {
        fn bind() -> Listener {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify");
            let socket = UnixDatagram::bind(&path).unwrap();
            socket.set_nonblocking(true).unwrap();
            Listener {
                socket,
                path,
                _dir: dir,
            }
        }

        fn notifier(&self) -> Notifier {
            Notifier::for_socket(Some(self.path.as_os_str())).unwrap()
        }

        /// The next datagram already queued, if any (the sends are synchronous, so a
        /// datagram sent is queued before `send` returns).
        fn next(&self) -> Option<String> {
            let mut buf = [0u8; 4096];
            match self.socket.recv(&mut buf) {
                Ok(n) => Some(String::from_utf8(buf[..n].to_vec()).unwrap()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(e) => panic!("receiving a notification: {e}"),
            }
        }
    }

    #[test]
    fn no_socket_means_no_notifications() {
        for value in [None, Some(OsStr::new(""))] {
            let notifier = Notifier::for_socket(value).unwrap();
            assert!(notifier.target.is_none());
            notifier.send("READY=1").unwrap();
        }
    }

    #[test]
    fn relative_and_unknown_addresses_are_refused() {
        for value in ["notify.sock", "vsock:2:1234"] {
            let error = Notifier::for_socket(Some(OsStr::new(value)))
                .err()
                .unwrap_or_else(|| panic!("{value} was accepted"));
            assert!(error.to_string().contains(value), "{error}");
        }
    }

    #[test]
    fn the_lifecycle_arrives_as_systemd_reads_it() {
        let listener = Listener::bind();
        let notifier = listener.notifier();
        assert!(notifier.target.is_some());

        notifier.ready("3 checks, 1 tunnel");
        assert_eq!(
            listener.next().as_deref(),
            Some("READY=1\nSTATUS=3 checks, 1 tunnel")
        );

        notifier.reloading();
        let reloading = listener.next().unwrap();
        let lines: Vec<&str> = reloading.lines().collect();
        assert_eq!(lines.first(), Some(&"RELOADING=1"), "{reloading}");
        let usec: u64 = lines
            .iter()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading}"))
            .parse()
            .unwrap();
        // Read on the same clock just after: not later than it, and not zero.
        assert!(usec > 0 && usec <= monotonic_usec().unwrap(), "{usec}");

        notifier.status("line one\nWATCHDOG=1");
        assert_eq!(
            listener.next().as_deref(),
            Some("STATUS=line one WATCHDOG=1"),
            "a status cannot smuggle in another key"
        );

        notifier.stopping();
        assert_eq!(
            listener.next().as_deref(),
            Some("STOPPING=1\nSTATUS=stopping")
        );
        assert_eq!(listener.next(), None);
    }

    #[test]
    fn abstract_names_are_reached() {
        let name = format!("siteward-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        let notifier = Notifier::for_socket(Some(OsStr::new(&format!("@{name}")))).unwrap();
        notifier.send("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    fn os(value: &str) -> Option<OsString> {
        Some(OsString::from(value))
    }

    #[test]
    fn the_watchdog_interval_is_half_the_period_for_this_process_only() {
        assert_eq!(watchdog_interval(None, None, 42).unwrap(), None);
        assert_eq!(
            watchdog_interval(os("30000000"), None, 42).unwrap(),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(os("30000000"), os("42"), 42).unwrap(),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(os("30000000"), os("7"), 42).unwrap(),
            None
        );
        for bad in ["0", "-5", "30s", ""] {
            let result = watchdog_interval(os(bad), None, 42);
            if bad.is_empty() {
                assert_eq!(result.unwrap(), None);
            } else {
                let error = result.unwrap_err().to_string();
                assert!(error.contains("WATCHDOG_USEC"), "{error}");
            }
        }
        let error = watchdog_interval(os("30000000"), os("init"), 42)
            .unwrap_err()
            .to_string();
        assert!(error.contains("WATCHDOG_PID=init"), "{error}");
    }

    #[tokio::test]
    async fn the_watchdog_is_fed_only_while_the_loop_answers() {
        let listener = Listener::bind();
        let notifier = listener.notifier();
        let interval = Duration::from_secs(15);

        // A loop that answers.
        let (probe, mut requests) = liveness_channel();
        let answering = tokio::spawn(async move {
            while let Some(reply) = requests.recv().await {
                let _ = reply.send(());
            }
        });
        assert!(feed_once(&notifier, &probe, interval).await);
        assert_eq!(listener.next().as_deref(), Some("WATCHDOG=1"));
        drop(probe);
        answering.await.unwrap();

        // A loop stuck in its work: the request waits in the channel, never answered.
        // Whatever the wait, no answer comes, so the shortest one decides the same.
        let (probe, _requests) = liveness_channel();
        assert!(!feed_once(&notifier, &probe, Duration::ZERO).await);
        assert_eq!(
            listener.next().as_deref(),
            Some("STATUS=the supervisor loop stopped answering: watchdog not fed")
        );
        assert_eq!(listener.next(), None, "no WATCHDOG=1");

        // A loop that is gone.
        let (probe, requests) = liveness_channel();
        drop(requests);
        assert!(!feed_once(&notifier, &probe, interval).await);
        assert!(listener.next().unwrap().starts_with("STATUS="));
        assert_eq!(listener.next(), None, "no WATCHDOG=1");
    }
}
