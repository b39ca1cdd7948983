//! End-to-end test harness: start the real `siteward` binary and test it from outside,
//! the way CI and operators use it.
//!
//! - [`Daemon`]: writes a configuration (listeners on port 0), starts `siteward run
//!   --log-format json` (optionally inside a network namespace), waits for the `listening`
//!   and `siteward running` log lines (the readiness signal: never a sleep), and offers the
//!   admin API over verified HTTPS, `/metrics`, tokens, signals and log waits.
//! - [`Netns`]: a private network namespace per test (veth pairs, addresses, routes,
//!   processes and sockets inside it), deleted with everything in it on drop, even when
//!   the test panics.
//! - [`ChildProcess`]: a peer (kamailio, sipp, dnsmasq, a simulator, python) in its own
//!   process group with captured output, killed by PID on drop.
//! - [`Simulator`]: `siteward simulate KIND --listen 127.0.0.1:0`, ready once it logs its
//!   bound address.
//! - [`Scrape`]: a parsed Prometheus exposition; [`http`]: a small blocking HTTP client.
//! - [`wireguard`]: the real wireguard-go as a tunnel's far end ([`WireguardGo`]),
//!   `wg show IFNAME dump` parsed ([`wg_show_dump`], for any UAPI socket, Siteward's too),
//!   ping, a SHA-256-checked TCP transfer and a tcpdump capture through a tunnel.
//! - [`strongswan`]: the real strongSwan charon (kernel-libipsec, user-space ESP) in a
//!   namespace, driven by swanctl ([`Charon`]), and the two-site topology of the IPsec
//!   suites ([`strongswan::SitePair`]); [`pki`]: a test CA, intermediates and leaves.
//! - [`Browser`]: a headless Chromium driven over WebDriver (chromedriver), with blocking
//!   actions, bounded waits that fail with the page's text and screenshots kept as artifacts.
//!
//! The binary is `<target>/debug/siteward` next to the test executable, or `SITEWARD_BIN`.
//! Build it first: `cargo build -p siteward` (CI runs `cargo build --workspace --bins`).
#![forbid(unsafe_code)]

pub mod browser;
pub mod daemon;
pub mod http;
pub mod ipsec;
pub mod metrics;
pub mod netns;
pub mod pki;
pub mod platform;
pub mod process;
pub mod simulator;
pub mod strongswan;
pub mod webui;
pub mod wireguard;

pub use browser::Browser;
pub use daemon::{json_line, last_detail, Daemon, DaemonOptions};
pub use metrics::{promtool_check, Scrape};
pub use netns::Netns;
pub use platform::{Behaviour, Platform};
pub use process::ChildProcess;
pub use simulator::Simulator;
pub use strongswan::{Charon, CharonConfig, ChildSaInfo, SaInfo};
pub use wireguard::{wg_show_dump, WgDump, WgKeys, WgPeer, WgPeerStatus, WireguardGo};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a process gets to become ready (generous: CI boxes are slow and shared).
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a test waits for a state the daemon should reach within a few intervals.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between two polls of [`wait_until`].
const POLL_EVERY: Duration = Duration::from_millis(25);

/// The `siteward` binary under test: `$SITEWARD_BIN`, else `<target>/<profile>/siteward`
/// beside this test executable (`<target>/<profile>/deps/<test>-<hash>`).
pub fn siteward_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SITEWARD_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "SITEWARD_BIN={} is not a file",
            bin.display()
        );
        return bin;
    }
    let bin = profile_dir().join("siteward");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p siteward` first (or set SITEWARD_BIN)",
        bin.display()
    );
    bin
}

/// `<target>/<profile>`: this test executable lives in its `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("locating the test executable");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// The directory of the suites' fixture files (`tests/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// A name unique to this process and call, e.g. for appliances, tokens and checks.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `f` every few milliseconds until it returns `Some`, for at most `timeout`.
/// This bounded poll is how tests wait for a state: never a fixed sleep.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Waits until `addr` accepts a TCP connection (a peer's listener is up), connecting from
/// inside `netns` when given.
pub fn wait_for_tcp(
    netns: Option<&Netns>,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(), String> {
    let netns = netns.map(|ns| ns.name().to_string());
    wait_until(timeout, || {
        netns::connect(netns.as_deref(), addr, Duration::from_millis(500))
            .ok()
            .map(|_| ())
    })
    .ok_or_else(|| format!("nothing accepted connections on {addr} within {timeout:?}"))
}

/// A self-signed certificate and key for a local TLS peer, written as PEM files.
pub struct TestCert {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

impl TestCert {
    /// A certificate for `localhost` and 127.0.0.1, valid until the given date (00:00 UTC),
    /// written to `dir/<stem>-cert.pem` and `dir/<stem>-key.pem`.
    pub fn generate(dir: &std::path::Path, stem: &str, not_after: (i32, u8, u8)) -> TestCert {
        let mut params = rcgen::CertificateParams::new(vec![
            "localhost".to_string(),
            IpAddr::V4(Ipv4Addr::LOCALHOST).to_string(),
        ])
        .expect("certificate parameters");
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().expect("generating a key");
        let cert = params.self_signed(&key).expect("signing the certificate");
        let cert_pem = dir.join(format!("{stem}-cert.pem"));
        let key_pem = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert_pem, cert.pem()).expect("writing the certificate");
        std::fs::write(&key_pem, key.serialize_pem()).expect("writing the key");
        TestCert {
            cert_pem,
            key_pem,
            not_after: params.not_after.unix_timestamp(),
        }
    }

    /// The fixtures' Python HTTPS server serving this certificate, inside `ns` or on the
    /// host; returns it and the port it printed once listening.
    pub fn serve_https(&self, ns: Option<&Netns>) -> (ChildProcess, u16) {
        let script = fixtures_dir().join("https_server.py");
        let args = [
            script.as_path(),
            self.cert_pem.as_path(),
            self.key_pem.as_path(),
        ];
        let server = match ns {
            Some(ns) => ns.spawn("https_server.py", "python3", args),
            None => ChildProcess::spawn("https_server.py", "python3", args),
        };
        let line = server
            .stdout()
            .wait_for(READY_TIMEOUT, |l| l.starts_with("listening "))
            .unwrap_or_else(|e| panic!("https_server.py: {e}\n{}", server.output_tail(30)));
        let port = line["listening ".len()..]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("https_server.py printed {line:?}: {e}"));
        (server, port)
    }
}
