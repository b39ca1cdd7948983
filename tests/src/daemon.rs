//! The real `siteward run`, started as a child process with a generated configuration.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use tempfile::TempDir;

use crate::http::{self, Request, Response, TlsClient};
use crate::metrics::Scrape;
use crate::netns;
use crate::process::ChildProcess;
use crate::{siteward_bin, unique_name, wait_until, READY_TIMEOUT};

/// How the daemon is started.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Run inside this network namespace (`ip netns exec NS siteward run ...`).
    pub netns: Option<String>,
    /// Address of the admin and metrics listeners (port 0: the kernel picks).
    pub listen_ip: IpAddr,
    /// `--log-level` (tracing filter), e.g. `info` or `debug`.
    pub log_level: String,
    /// More `[admin]` lines (`session_idle = "2s"`).
    pub admin_extra: String,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            netns: None,
            listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            log_level: "info".into(),
            admin_extra: String::new(),
        }
    }
}

/// A running `siteward run --log-format json`, its private directory (configuration,
/// state directory with tokens and the self-signed certificate) and its captured logs.
/// Dropping it kills the process (SIGTERM, then SIGKILL) and removes the directory.
pub struct Daemon {
    options: DaemonOptions,
    name: String,
    // Field order: the process goes before its directory.
    process: ChildProcess,
    dir: TempDir,
    admin: SocketAddr,
    metrics: SocketAddr,
    tls: TlsClient,
}

impl Daemon {
    /// Starts a daemon on 127.0.0.1 with `checks` (TOML `[[checks]]` tables) and waits
    /// until it is ready.
    pub fn start(checks: &str) -> Daemon {
        Daemon::start_with(DaemonOptions::default(), checks)
    }

    /// Starts a daemon inside `netns`, listening on its 127.0.0.1, with `checks`.
    pub fn start_in(netns: &crate::Netns, checks: &str) -> Daemon {
        let options = DaemonOptions {
            netns: Some(netns.name().to_string()),
            ..DaemonOptions::default()
        };
        Daemon::start_with(options, checks)
    }

    /// Starts a daemon with `options` and `checks` and waits until it logs
    /// `siteward running` (after both listeners logged their bound address).
    pub fn start_with(options: DaemonOptions, checks: &str) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("siteward-e2e-")
            .tempdir()
            .expect("creating the daemon's directory");
        let name = unique_name("e2e");
        std::fs::write(
            dir.path().join("siteward.toml"),
            config_text(&name, &options, dir.path(), checks),
        )
        .expect("writing the configuration");

        let (process, admin, metrics, tls) = launch(&options, dir.path());
        Daemon {
            options,
            name,
            process,
            dir,
            admin,
            metrics,
            tls,
        }
    }

    /// Kills the daemon with SIGKILL (no shutdown at all: what a crash or a power cut
    /// leaves) and starts it again on the same configuration and state directory.
    pub fn kill_and_restart(&mut self) {
        self.process.signal(Signal::SIGKILL);
        if self.process.wait_timeout(READY_TIMEOUT).is_none() {
            panic!("siteward did not die of SIGKILL within {READY_TIMEOUT:?}");
        }
        let (process, admin, metrics, tls) = launch(&self.options, self.dir.path());
        self.process = process;
        self.admin = admin;
        self.metrics = metrics;
        self.tls = tls;
    }

    /// The address a listener of this run logged (`"webhook hooks"`, `"syslog logs tcp"`...),
    /// waiting for its `listening` line.
    pub fn listener(&self, listener: &str) -> SocketAddr {
        let line = self.wait_for_log(READY_TIMEOUT, |v| {
            v["message"] == "listening" && v["listener"] == listener
        });
        line["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no addr in the listening line of {listener}: {line}"))
    }

    /// The appliance name written into the configuration.
    pub fn appliance(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("siteward.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The self-signed certificate the daemon made for its admin API.
    pub fn admin_cert(&self) -> PathBuf {
        self.state_dir().join("tls/admin-cert.pem")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
    }

    /// The daemon's PID (also inside a namespace: `ip netns exec` execs the binary).
    pub fn pid(&self) -> nix::unistd::Pid {
        self.process.pid()
    }

    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.process
    }

    /// The `[appliance]`, `[admin]` and `[metrics]` sections this daemon runs with, to
    /// build a replacement file for a reload.
    pub fn config_header(&self) -> String {
        config_text(&self.name, &self.options, self.dir.path(), "")
    }

    /// Rewrites the configuration with the same header and new `checks` (no reload yet).
    pub fn write_checks(&self, checks: &str) {
        self.write_config_raw(&config_text(
            &self.name,
            &self.options,
            self.dir.path(),
            checks,
        ));
    }

    /// Replaces the configuration file with `text` as it is (for broken files).
    pub fn write_config_raw(&self, text: &str) {
        // Write then rename, so the daemon never reads half a file.
        let tmp = self.dir.path().join("siteward.toml.new");
        std::fs::write(&tmp, text).expect("writing the new configuration");
        std::fs::rename(&tmp, self.config_path()).expect("replacing the configuration");
    }

    /// Creates an API token with `siteward token create NAME` and returns it.
    pub fn create_token(&self, name: &str) -> String {
        let out = Command::new(siteward_bin())
            .args(["token", "create", name, "--config"])
            .arg(self.config_path())
            .output()
            .expect("running siteward token create");
        assert!(
            out.status.success(),
            "siteward token create {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!token.is_empty(), "siteward token create printed no token");
        token
    }

    /// Sends `request` to the admin API over HTTPS, verifying the daemon's certificate
    /// for the listener's IP address.
    pub fn api(&self, request: &Request<'_>) -> Response {
        self.api_as(&self.admin.ip().to_string(), request)
    }

    /// Like [`Daemon::api`], verifying the certificate for `server_name` (e.g. `localhost`).
    pub fn api_as(&self, server_name: &str, request: &Request<'_>) -> Response {
        let stream = netns::connect(self.options.netns.as_deref(), self.admin, http::IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connecting to the admin API at {}: {e}", self.admin));
        self.tls
            .send(stream, server_name, request)
            .unwrap_or_else(|e| panic!("{} {}: {e}", request.method, request.path))
    }

    /// `GET /api/v1/checks` with `token`; panics unless 200.
    pub fn checks(&self, token: &str) -> Value {
        let response = self.api(&Request::get("/api/v1/checks").bearer(token));
        assert_eq!(
            response.status,
            200,
            "GET /api/v1/checks: {}",
            response.text()
        );
        response.json()
    }

    /// `GET /api/v1/checks/NAME` with `token`; panics unless 200.
    pub fn check(&self, token: &str, name: &str) -> Value {
        let path = format!("/api/v1/checks/{name}");
        let response = self.api(&Request::get(&path).bearer(token));
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        response.json()
    }

    /// `POST /api/v1/checks/NAME/run` with `token`; panics unless 200.
    pub fn run_check(&self, token: &str, name: &str) -> Value {
        let path = format!("/api/v1/checks/{name}/run");
        let response = self.api(&Request::post(&path).bearer(token));
        assert_eq!(response.status, 200, "POST {path}: {}", response.text());
        response.json()
    }

    /// `GET /api/v1/tunnels/NAME` with `token`; panics unless 200.
    pub fn tunnel(&self, token: &str, name: &str) -> Value {
        let path = format!("/api/v1/tunnels/{name}");
        let response = self.api(&Request::get(&path).bearer(token));
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        response.json()
    }

    /// Waits for the `tunnel started` log line of tunnel `name`.
    pub fn wait_for_tunnel(&self, name: &str) {
        self.wait_for_log(READY_TIMEOUT, |r| {
            r["message"] == "tunnel started" && r["tunnel"] == name
        });
    }

    /// `GET /metrics` as it is.
    pub fn scrape_raw(&self) -> Response {
        let stream = netns::connect(
            self.options.netns.as_deref(),
            self.metrics,
            http::IO_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("connecting to metrics at {}: {e}", self.metrics));
        http::plain(stream, self.metrics, &Request::get("/metrics"))
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
    }

    /// `GET /metrics`, parsed; panics unless 200.
    pub fn scrape(&self) -> Scrape {
        let response = self.scrape_raw();
        assert_eq!(response.status, 200, "GET /metrics: {}", response.text());
        Scrape::parse(&response.text())
    }

    pub fn sighup(&self) {
        self.process.signal(Signal::SIGHUP);
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; panics if it does not stop.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.process.signal(Signal::SIGTERM);
        match self.process.wait_timeout(timeout) {
            Some(status) => status,
            None => panic!(
                "siteward did not exit within {timeout:?} of SIGTERM\n{}",
                self.process.output_tail(30)
            ),
        }
    }

    /// Every log line so far (JSON objects, one per line, as written).
    pub fn logs(&self) -> Vec<String> {
        self.process.stderr().all()
    }

    /// Log lines parsed as JSON (lines that are not JSON are skipped).
    pub fn log_records(&self) -> Vec<Value> {
        self.logs().iter().filter_map(|l| json_line(l)).collect()
    }

    /// Waits for a log record satisfying `pred`; panics with the recent logs after `timeout`.
    pub fn wait_for_log(&self, timeout: Duration, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let line = self
            .process
            .stderr()
            .wait_for(timeout, |l| json_line(l).is_some_and(|v| pred(&v)))
            .unwrap_or_else(|e| {
                panic!(
                    "waiting for a log line: {e}\n{}",
                    self.process.output_tail(40)
                )
            });
        json_line(&line).unwrap_or_default()
    }

    /// Polls `f` until it returns `Some` (bounded by `timeout`); on timeout panics with
    /// `what` and the daemon's recent logs.
    pub fn wait_until<T>(&self, timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
        wait_until(timeout, f).unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting until {what}\n{}",
                self.process.output_tail(40)
            )
        })
    }

    /// Waits until the API shows `name` with a last run matching `pred`; returns the check.
    pub fn wait_for_check(
        &self,
        token: &str,
        name: &str,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        let path = format!("/api/v1/checks/{name}");
        wait_until(timeout, || {
            let response = self.api(&Request::get(&path).bearer(token));
            match response.status {
                // Not there yet: a reload that adds it may still be on its way.
                404 => {
                    last = Value::String(format!("404: {}", response.text()));
                    None
                }
                200 => {
                    last = response.json();
                    pred(&last).then(|| last.clone())
                }
                status => panic!("GET {path}: {status} {}", response.text()),
            }
        })
        .unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting until check {name} {what}; last seen: {last:#}\n{}",
                self.process.output_tail(20)
            )
        })
    }

    /// Waits until check `name` is in `state` (`up`, `down`, `unknown`) and its last run
    /// ended with `reason`; returns the check's JSON.
    pub fn wait_for_check_state(
        &self,
        token: &str,
        name: &str,
        state: &str,
        reason: &str,
    ) -> Value {
        self.wait_for_check(
            token,
            name,
            crate::STATE_TIMEOUT,
            &format!("is {state} with {reason}"),
            |c| c["state"] == state && c["last"]["reason"] == reason,
        )
    }
}

/// Starts `siteward run` on the configuration in `dir` and waits until it logs `siteward
/// running` (after both listeners logged their bound address).
fn launch(
    options: &DaemonOptions,
    dir: &Path,
) -> (ChildProcess, SocketAddr, SocketAddr, TlsClient) {
    let bin = siteward_bin();
    let mut command = match &options.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    command
        .arg("run")
        .arg("--config")
        .arg(dir.join("siteward.toml"))
        // The suites run as root; the daemon refuses root without this.
        .arg("--allow-root")
        .args(["--log-format", "json", "--log-level", &options.log_level])
        .env_remove("SITEWARD_LOG")
        .current_dir(dir);
    let process = ChildProcess::spawn_command("siteward", command);

    let stderr = process.stderr().clone();
    let fail = |why: String| -> ! {
        panic!(
            "siteward did not become ready: {why}\n{}",
            process.output_tail(50)
        )
    };
    let listening = |listener: &str| -> SocketAddr {
        let line = stderr
            .wait_for(READY_TIMEOUT, |l| {
                json_line(l)
                    .is_some_and(|v| v["message"] == "listening" && v["listener"] == listener)
            })
            .unwrap_or_else(|e| fail(format!("waiting for the {listener} listener: {e}")));
        let v = json_line(&line).unwrap_or_default();
        v["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| fail(format!("no addr in {line}")))
    };
    let admin = listening("admin API");
    let metrics = listening("metrics");
    stderr
        .wait_for(READY_TIMEOUT, |l| {
            json_line(l).is_some_and(|v| v["message"] == "siteward running")
        })
        .unwrap_or_else(|e| fail(format!("waiting for \"siteward running\": {e}")));
    let tls = TlsClient::trusting(&dir.join("state/tls/admin-cert.pem"))
        .unwrap_or_else(|e| fail(format!("loading the admin certificate: {e}")));
    (process, admin, metrics, tls)
}

/// The detail text of a check's last run (from the API's JSON), or "".
pub fn last_detail(check: &Value) -> &str {
    check["last"]["detail"].as_str().unwrap_or_default()
}

/// The JSON object on a log line, if it is one.
pub fn json_line(line: &str) -> Option<Value> {
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

fn config_text(name: &str, options: &DaemonOptions, dir: &Path, checks: &str) -> String {
    let listen = SocketAddr::new(options.listen_ip, 0);
    format!(
        "[appliance]\nname = \"{name}\"\nstate_dir = \"{}\"\n\n[admin]\nlisten = \"{listen}\"\n{}\n[metrics]\nlisten = \"{listen}\"\n\n{checks}\n",
        dir.join("state").display(),
        options.admin_extra,
    )
}
