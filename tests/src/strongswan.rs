//! strongSwan 5.9 as the far end of Siteward's IPsec tunnels: the real `charon` daemon in a
//! test's network namespace, driven with the real `swanctl` over its vici socket.
//!
//! The machines the suites run on have no kernel ESP (XFRM's netlink interface is there,
//! but installing an ESP state fails), so charon runs with the kernel-libipsec plugin: ESP
//! in user space over a TUN device (`ipsec0` in its namespace), which handles
//! UDP-encapsulated ESP only; connections need `encap = yes`. kernel-libipsec is loaded
//! before kernel-netlink and so becomes the IPsec backend; kernel-netlink then only serves
//! addresses and routes (its own IPsec feature is refused, which charon logs and
//! tolerates). Each charon has a private directory: its strongswan.conf
//! (given by `STRONGSWAN_CONF`), vici socket, log file, swanctl files, and a private `/run`
//! (charon refuses to start when another charon's pid file is in `/run`).
//!
//! [`SitePair`] is the topology the IPsec suites share: two namespaces joined by a veth
//! pair on 198.51.100.0/24, each with its site subnet (10.1.0.0/24, 10.2.0.0/24) on `lo`.

use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::process::ChildProcess;
use crate::wireguard::{checksummed_transfer, ping, PingStats};
use crate::{wait_until, Netns, READY_TIMEOUT};

/// Where Debian's strongswan-charon installs the daemon.
pub const CHARON_BIN: &str = "/usr/lib/ipsec/charon";
/// The plugins each charon loads, in order. kernel-libipsec comes before kernel-netlink so
/// it provides the IPsec backend (the other way round, kernel-netlink's XFRM backend wins
/// and installing SAs fails); `!` marks those without which the harness cannot work.
/// kernel-netlink cannot be marked: its IPsec feature is always refused (the backend is
/// taken), and a critical plugin must load every feature.
pub const CHARON_PLUGINS: &str = "random nonce openssl pem pkcs1 pkcs8 x509 pubkey constraints \
     sha1 sha2 hmac aes gcm gmp curve25519 kdf socket-default! kernel-libipsec! kernel-netlink vici!";
/// Longest a single swanctl command may take (initiations have their own, shorter bound).
const SWANCTL_TIMEOUT: Duration = Duration::from_secs(30);
/// `swanctl --initiate --timeout`: how long charon tries before reporting failure.
const INITIATE_TIMEOUT_SECS: u32 = 20;
/// Lines of charon's log shown in error messages.
const LOG_TAIL: usize = 40;
/// The directories swanctl reads credentials from (below its swanctl.conf).
const SWANCTL_DIRS: &[&str] = &[
    "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private", "rsa",
    "ecdsa", "bliss", "pkcs8", "pkcs12",
];

/// What one charon is started with.
#[derive(Clone)]
pub struct CharonConfig {
    /// UDP port for IKE (`charon.port`).
    pub ike_port: u16,
    /// UDP port for NAT-T and UDP-encapsulated ESP (`charon.port_nat_t`).
    pub nat_t_port: u16,
    /// swanctl.conf text: `connections { } secrets { }` (and `authorities`, `pools`).
    pub connections: String,
    /// Appended to the generated strongswan.conf; its sections merge with (and override)
    /// the generated ones, e.g. `charon { retransmit_tries = 2 }`.
    pub extra_strongswan_conf: String,
    /// Files below the swanctl directory, by relative name (`x509/gw.pem`,
    /// `x509ca/ca.pem`, `private/gw.pem`), written 0600.
    pub files: Vec<(String, Vec<u8>)>,
}

impl Default for CharonConfig {
    fn default() -> Self {
        CharonConfig {
            ike_port: 500,
            nat_t_port: 4500,
            connections: String::new(),
            extra_strongswan_conf: String::new(),
            files: Vec::new(),
        }
    }
}

/// The connections text holds pre-shared keys and the files private keys: neither shown.
impl fmt::Debug for CharonConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<&str> = self.files.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("CharonConfig")
            .field("ike_port", &self.ike_port)
            .field("nat_t_port", &self.nat_t_port)
            .field(
                "connections",
                &format_args!("<{} bytes>", self.connections.len()),
            )
            .field("extra_strongswan_conf", &self.extra_strongswan_conf)
            .field("files", &files)
            .finish()
    }
}

/// A running charon in a namespace, with its connections and credentials loaded. Dropping
/// it stops charon by PID (SIGTERM, then SIGKILL) and removes its directory, unless the
/// test is failing: then the directory stays and the log's path and tail are printed.
pub struct Charon {
    name: String,
    netns: String,
    dir: TempDir,
    vici_uri: String,
    swanctl_conf: PathBuf,
    log_path: PathBuf,
    tun: String,
    process: ChildProcess,
}

impl Charon {
    /// Writes the configuration, starts charon in `netns`, waits until it answers on its
    /// vici socket, and loads everything with `swanctl --load-all`. `name` labels the
    /// process and messages.
    pub fn start(netns: &Netns, name: &str, config: &CharonConfig) -> anyhow::Result<Charon> {
        anyhow::ensure!(
            Path::new(CHARON_BIN).is_file(),
            "{CHARON_BIN} is missing: run scripts/install-test-deps (strongswan-charon)"
        );
        let dir = tempfile::Builder::new()
            .prefix("siteward-charon-")
            .tempdir()
            .context("creating charon's directory")?;
        let root = dir.path().to_path_buf();
        let swanctl_dir = root.join("swanctl");
        let run_dir = root.join("run");
        create_private_dir(&run_dir)?;
        for sub in SWANCTL_DIRS {
            create_private_dir(&swanctl_dir.join(sub))?;
        }
        let vici_socket = root.join("charon.vici");
        let log_path = root.join("charon.log");
        let strongswan_conf = root.join("strongswan.conf");
        write_private(
            &strongswan_conf,
            strongswan_conf_text(config, &vici_socket, &log_path).as_bytes(),
        )?;
        let swanctl_conf = swanctl_dir.join("swanctl.conf");
        write_private(&swanctl_conf, config.connections.as_bytes())?;
        for (relative, content) in &config.files {
            let path = swanctl_file_path(&swanctl_dir, relative)?;
            if let Some(parent) = path.parent() {
                create_private_dir(parent)?;
            }
            write_private(&path, content)?;
        }

        let conf_env = format!("STRONGSWAN_CONF={}", strongswan_conf.display());
        let process = netns.spawn_with_private_run(
            &format!("charon {name}"),
            &run_dir,
            "env",
            [conf_env.as_str(), CHARON_BIN],
        );
        let mut charon = Charon {
            name: name.to_string(),
            netns: netns.name().to_string(),
            dir,
            vici_uri: format!("unix://{}", vici_socket.display()),
            swanctl_conf,
            log_path,
            tun: String::new(),
            process,
        };
        charon.wait_ready(&vici_socket)?;
        charon.tun = charon.find_tun_interface()?;
        let conf = charon.swanctl_conf.display().to_string();
        charon
            .swanctl(&["--load-all", "--noprompt", "--file", &conf])
            .with_context(|| format!("loading charon {name}'s swanctl.conf"))?;
        Ok(charon)
    }

    /// Waits until the vici socket exists and `swanctl --stats` gets an answer; fails early
    /// if charon exits.
    fn wait_ready(&mut self, vici_socket: &Path) -> anyhow::Result<()> {
        let ready = wait_until(READY_TIMEOUT, || {
            if let Some(status) = self.process.try_wait() {
                return Some(Err(anyhow!("charon exited with {status}")));
            }
            if UnixStream::connect(vici_socket).is_err() {
                return None;
            }
            self.swanctl(&["--stats"]).ok().map(|_| Ok(()))
        });
        let result = ready.unwrap_or_else(|| {
            Err(anyhow!(
                "no answer on {} within {READY_TIMEOUT:?}",
                vici_socket.display()
            ))
        });
        result.map_err(|e| self.failure(&format!("starting charon {}: {e}", self.name)))
    }

    /// The TUN device kernel-libipsec created, from its `created TUN device: NAME` line.
    fn find_tun_interface(&self) -> anyhow::Result<String> {
        const MARK: &str = "created TUN device: ";
        let log = self.log();
        log.lines()
            .find_map(|line| line.split_once(MARK).map(|(_, dev)| dev.trim().to_string()))
            .filter(|dev| !dev.is_empty())
            .ok_or_else(|| self.failure("charon's log names no kernel-libipsec TUN device"))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `unix:///...`: the vici socket, for `swanctl --uri`.
    pub fn vici_uri(&self) -> &str {
        &self.vici_uri
    }

    /// Runs `swanctl ARGS --uri URI` in the namespace (bounded) and returns its standard
    /// output; Err with both outputs if it fails or hangs.
    pub fn swanctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let swanctl_dir = self
            .swanctl_conf
            .parent()
            .expect("swanctl.conf lives in a directory");
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", &self.netns, "swanctl"])
            .args(args)
            .args(["--uri", &self.vici_uri])
            .env("SWANCTL_DIR", swanctl_dir);
        let what = format!("swanctl {} (charon {})", args.join(" "), self.name);
        let mut process = ChildProcess::spawn_command(&what, command);
        let Some(status) = process.wait_timeout(SWANCTL_TIMEOUT) else {
            process.stop();
            bail!(
                "{what} did not finish within {SWANCTL_TIMEOUT:?}\n{}",
                process.output_tail(20)
            );
        };
        if !(process.stdout().wait_closed(READY_TIMEOUT)
            && process.stderr().wait_closed(READY_TIMEOUT))
        {
            bail!("{what}: its output did not end within {READY_TIMEOUT:?}");
        }
        if !status.success() {
            bail!("{what} failed ({status})\n{}", process.output_tail(20));
        }
        Ok(process.stdout().all().join("\n"))
    }

    /// `swanctl --initiate --child CHILD`: returns once the CHILD_SA (and its IKE_SA) is
    /// established, or Err with charon's report after a bounded time.
    pub fn initiate_child(&self, child: &str) -> anyhow::Result<()> {
        let timeout = INITIATE_TIMEOUT_SECS.to_string();
        self.swanctl(&["--initiate", "--child", child, "--timeout", &timeout])
            .map(|_| ())
            .map_err(|e| self.failure(&format!("initiating CHILD_SA {child}: {e:#}")))
    }

    /// `swanctl --list-sas`, parsed (from `--pretty`, the line-per-value rendering of the
    /// same vici message as `--raw`: values such as subject DNs contain spaces, which
    /// `--raw` does not delimit).
    pub fn list_sas(&self) -> anyhow::Result<Vec<SaInfo>> {
        let text = self.swanctl(&["--list-sas", "--pretty"])?;
        parse_list_sas(&text).with_context(|| format!("parsing swanctl --list-sas:\n{text}"))
    }

    /// Polls [`Self::list_sas`] until a CHILD_SA named `child` is INSTALLED; returns its
    /// IKE_SA. Err with the last listing and the log after `timeout`.
    pub fn wait_for_child_installed(
        &self,
        child: &str,
        timeout: Duration,
    ) -> anyhow::Result<SaInfo> {
        self.wait_for_sa(timeout, &format!("CHILD_SA {child} INSTALLED"), |sa| {
            sa.child(child).is_some_and(|c| c.state == "INSTALLED")
        })
    }

    /// Polls [`Self::list_sas`] until an IKE_SA satisfies `pred` and returns it.
    pub fn wait_for_sa(
        &self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&SaInfo) -> bool,
    ) -> anyhow::Result<SaInfo> {
        let mut last = String::from("no listing yet");
        wait_until(timeout, || match self.list_sas() {
            Ok(sas) => {
                let found = sas.iter().find(|sa| pred(sa)).cloned();
                last = format!("{sas:#?}");
                found
            }
            Err(e) => {
                last = format!("{e:#}");
                None
            }
        })
        .ok_or_else(|| {
            self.failure(&format!(
                "charon {}: no {what} within {timeout:?}; last listing: {last}",
                self.name
            ))
        })
    }

    /// `swanctl --rekey --child CHILD`: charon starts the rekeying (asynchronously; wait for
    /// the new SPIs with [`Self::wait_for_sa`]).
    pub fn rekey_child(&self, child: &str) -> anyhow::Result<()> {
        self.swanctl(&["--rekey", "--child", child]).map(|_| ())
    }

    /// `swanctl --rekey --ike IKE` (asynchronous, like [`Self::rekey_child`]).
    pub fn rekey_ike(&self, ike: &str) -> anyhow::Result<()> {
        self.swanctl(&["--rekey", "--ike", ike]).map(|_| ())
    }

    /// charon's log file so far (levels: default 1; ike, cfg, chd, knl 2).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The log's current length, for [`Self::wait_for_log_since`].
    pub fn log_mark(&self) -> usize {
        self.log().len()
    }

    /// Waits until the log contains `needle` (lines already written count).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for_log_since(0, needle, timeout)
    }

    /// Waits until the log written after `mark` ([`Self::log_mark`]) contains `needle`.
    pub fn wait_for_log_since(
        &self,
        mark: usize,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        wait_until(timeout, || {
            let log = self.log();
            log.get(mark..)
                .is_some_and(|new| new.contains(needle))
                .then_some(())
        })
        .ok_or_else(|| {
            self.failure(&format!(
                "charon {}: no log line with {needle:?} within {timeout:?}",
                self.name
            ))
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid().as_raw() as u32
    }

    /// SIGKILL by PID, then reaps it: a peer that dies without a word (for DPD tests).
    pub fn kill(&mut self) {
        if self.process.try_wait().is_none() {
            self.process.signal(Signal::SIGKILL);
            if self.process.wait_timeout(READY_TIMEOUT).is_none() {
                panic!("charon {} (pid {}) survived SIGKILL", self.name, self.pid());
            }
        }
    }

    /// The kernel-libipsec TUN device in charon's namespace (`ipsec0`).
    pub fn tun_interface(&self) -> String {
        self.tun.clone()
    }

    /// An error for `context` with the tail of charon's log and output.
    fn failure(&self, context: &str) -> anyhow::Error {
        anyhow!(
            "{context}\n--- charon {} log ({}) ---\n{}\n{}",
            self.name,
            self.log_path.display(),
            tail(&self.log(), LOG_TAIL),
            self.process.output_tail(10)
        )
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        self.process.stop();
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "charon {} in {}: log kept at {}\n{}",
                self.name,
                self.netns,
                self.log_path.display(),
                tail(&self.log(), LOG_TAIL)
            );
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The strongswan.conf of one harness charon; `config.extra_strongswan_conf` comes last so
/// its settings win.
fn strongswan_conf_text(config: &CharonConfig, vici_socket: &Path, log_path: &Path) -> String {
    format!(
        r#"# Written by the Siteward test harness: one charon in one test network namespace.
charon {{
    load = {CHARON_PLUGINS}
    port = {ike_port}
    port_nat_t = {nat_t_port}
    # Routes for the remote subnets go to the kernel-libipsec TUN device (table 220).
    install_routes = yes
    install_virtual_ip = no
    plugins {{
        vici {{
            socket = unix://{vici}
        }}
    }}
    filelog {{
        harness {{
            path = {log}
            time_format = %H:%M:%S
            ike_name = yes
            flush_line = yes
            default = 1
            ike = 2
            cfg = 2
            chd = 2
            knl = 2
        }}
    }}
}}
{extra}
"#,
        ike_port = config.ike_port,
        nat_t_port = config.nat_t_port,
        vici = vici_socket.display(),
        log = log_path.display(),
        extra = config.extra_strongswan_conf,
    )
}

/// `relative` below `swanctl_dir`; Err for absolute names and `..` components.
fn swanctl_file_path(swanctl_dir: &Path, relative: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(relative);
    let plain =
        !relative.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    anyhow::ensure!(
        plain,
        "swanctl file name {relative:?} must be relative and stay inside the swanctl directory"
    );
    Ok(swanctl_dir.join(path))
}

/// Creates `path` and its missing parents, accessible to their owner only.
fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Writes a file only its owner can read (the harness's files hold keys and secrets).
fn write_private(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content)
        .with_context(|| format!("writing {}", path.display()))
}

// ---------------------------------------------------------------- list-sas

/// One IKE_SA from `swanctl --list-sas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaInfo {
    /// The connection's name.
    pub name: String,
    pub unique_id: u32,
    /// CREATED, CONNECTING, ESTABLISHED, PASSIVE, REKEYING, REKEYED, DELETING, DESTROYING.
    pub state: String,
    pub local_host: String,
    pub remote_host: String,
    pub local_id: String,
    pub remote_id: String,
    pub initiator: bool,
    /// 0 while not known (the responder's SPI before IKE_SA_INIT completes).
    pub spi_i: u64,
    pub spi_r: u64,
    /// strongSwan's names (`AES_GCM_16`, `HMAC_SHA2_256_128`, `PRF_HMAC_SHA2_256`,
    /// `CURVE_25519`, `MODP_2048`); None until negotiated or when not applicable.
    pub encr: Option<String>,
    pub encr_keysize: Option<u32>,
    pub integ: Option<String>,
    pub prf: Option<String>,
    pub dh: Option<String>,
    pub children: Vec<ChildSaInfo>,
}

impl SaInfo {
    /// The first CHILD_SA named `name` (during a rekeying the old and the new one share
    /// their name: see [`Self::children_named`]).
    pub fn child(&self, name: &str) -> Option<&ChildSaInfo> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ChildSaInfo> {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// One CHILD_SA of an IKE_SA from `swanctl --list-sas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSaInfo {
    pub name: String,
    pub unique_id: u32,
    /// INSTALLED, REKEYING, REKEYED, DELETING...
    pub state: String,
    /// TUNNEL or TRANSPORT.
    pub mode: String,
    /// ESP or AH.
    pub protocol: String,
    /// UDP encapsulation.
    pub encap: bool,
    /// 0 while not allocated (0 is never a valid SPI).
    pub spi_in: u32,
    pub spi_out: u32,
    pub encr: Option<String>,
    pub encr_keysize: Option<u32>,
    pub integ: Option<String>,
    /// PFS group, if any.
    pub dh: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
}

/// A vici message as swanctl's `--pretty` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ViciSection {
    pub entries: Vec<(String, ViciValue)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViciValue {
    Value(String),
    List(Vec<String>),
    Section(ViciSection),
}

impl ViciSection {
    pub fn get(&self, key: &str) -> Option<&ViciValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn value(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(ViciValue::Value(v)) => Some(v),
            _ => None,
        }
    }

    fn required(&self, key: &str, path: &str) -> anyhow::Result<&str> {
        self.value(key)
            .ok_or_else(|| anyhow!("{path}: no value {key:?}"))
    }

    fn number<T: std::str::FromStr>(&self, key: &str, path: &str) -> anyhow::Result<Option<T>>
    where
        T::Err: fmt::Display,
    {
        self.value(key)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|e| anyhow!("{path}.{key}: {v:?}: {e}"))
            })
            .transpose()
    }

    fn hex<T>(
        &self,
        key: &str,
        path: &str,
        parse: fn(&str, u32) -> Result<T, std::num::ParseIntError>,
    ) -> anyhow::Result<Option<T>> {
        self.value(key)
            .map(|v| parse(v, 16).map_err(|e| anyhow!("{path}.{key}: {v:?} is not hex: {e}")))
            .transpose()
    }

    fn list(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(ViciValue::List(items)) => items.clone(),
            _ => Vec::new(),
        }
    }
}

/// Parses swanctl's `--pretty` output: `name {` opens a section, `}` closes it,
/// `key = value` is a value, `key = [` opens a list of one item per line closed by `]`.
/// Returns the top-level sections (messages) in order.
pub fn parse_vici_pretty(text: &str) -> anyhow::Result<Vec<(String, ViciSection)>> {
    let mut top: Vec<(String, ViciSection)> = Vec::new();
    // Open sections, innermost last, with their names.
    let mut stack: Vec<(String, ViciSection)> = Vec::new();
    let mut list: Option<(String, Vec<String>)> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some((key, items)) = &mut list {
            if line == "]" {
                let (key, items) = (std::mem::take(key), std::mem::take(items));
                list = None;
                let (_, section) = stack
                    .last_mut()
                    .ok_or_else(|| anyhow!("line {n}: list outside any section"))?;
                section.entries.push((key, ViciValue::List(items)));
            } else {
                items.push(line.to_string());
            }
            continue;
        }
        if line == "}" {
            let (name, section) = stack
                .pop()
                .ok_or_else(|| anyhow!("line {n}: `}}` closes no section"))?;
            match stack.last_mut() {
                Some((_, parent)) => parent.entries.push((name, ViciValue::Section(section))),
                None => top.push((name, section)),
            }
        } else if let Some(name) = line.strip_suffix(" {") {
            stack.push((name.to_string(), ViciSection::default()));
        } else if let Some((key, value)) = line.split_once(" = ") {
            if stack.is_empty() {
                bail!("line {n}: value {key:?} outside any section");
            }
            if value == "[" {
                list = Some((key.to_string(), Vec::new()));
            } else if let Some((_, section)) = stack.last_mut() {
                section
                    .entries
                    .push((key.to_string(), ViciValue::Value(value.to_string())));
            }
        } else if let Some(key) = line.strip_suffix(" =") {
            // An empty value.
            let (_, section) = stack
                .last_mut()
                .ok_or_else(|| anyhow!("line {n}: value {key:?} outside any section"))?;
            section
                .entries
                .push((key.to_string(), ViciValue::Value(String::new())));
        } else {
            bail!("line {n}: unexpected {line:?}");
        }
    }
    if list.is_some() || !stack.is_empty() {
        bail!("the output ends inside an open section or list");
    }
    Ok(top)
}

/// Parses `swanctl --list-sas --pretty`: one `list-sa event` message per IKE_SA, then the
/// `list-sas reply`.
pub fn parse_list_sas(text: &str) -> anyhow::Result<Vec<SaInfo>> {
    let mut sas = Vec::new();
    for (message, body) in parse_vici_pretty(text)? {
        if message != "list-sa event" {
            continue;
        }
        for (name, value) in &body.entries {
            let ViciValue::Section(ike) = value else {
                bail!("list-sa event: {name:?} is not an IKE_SA section");
            };
            sas.push(parse_ike_sa(name, ike)?);
        }
    }
    Ok(sas)
}

fn parse_ike_sa(name: &str, ike: &ViciSection) -> anyhow::Result<SaInfo> {
    let path = name;
    let text = |key: &str| ike.value(key).unwrap_or_default().to_string();
    let mut children = Vec::new();
    if let Some(value) = ike.get("child-sas") {
        let ViciValue::Section(section) = value else {
            bail!("{path}.child-sas is not a section");
        };
        for (key, child) in &section.entries {
            let ViciValue::Section(child) = child else {
                bail!("{path}.child-sas.{key} is not a section");
            };
            children.push(parse_child_sa(&format!("{path}.child-sas.{key}"), child)?);
        }
    }
    Ok(SaInfo {
        name: name.to_string(),
        unique_id: ike
            .number("uniqueid", path)?
            .ok_or_else(|| anyhow!("{path}: no uniqueid"))?,
        state: ike.required("state", path)?.to_string(),
        local_host: text("local-host"),
        remote_host: text("remote-host"),
        local_id: text("local-id"),
        remote_id: text("remote-id"),
        initiator: ike.value("initiator") == Some("yes"),
        spi_i: ike
            .hex("initiator-spi", path, u64::from_str_radix)?
            .unwrap_or(0),
        spi_r: ike
            .hex("responder-spi", path, u64::from_str_radix)?
            .unwrap_or(0),
        encr: ike.value("encr-alg").map(str::to_string),
        encr_keysize: ike.number("encr-keysize", path)?,
        integ: ike.value("integ-alg").map(str::to_string),
        prf: ike.value("prf-alg").map(str::to_string),
        dh: ike.value("dh-group").map(str::to_string),
        children,
    })
}

fn parse_child_sa(path: &str, child: &ViciSection) -> anyhow::Result<ChildSaInfo> {
    let count =
        |key: &str| -> anyhow::Result<u64> { Ok(child.number::<u64>(key, path)?.unwrap_or(0)) };
    Ok(ChildSaInfo {
        name: child.required("name", path)?.to_string(),
        unique_id: child
            .number("uniqueid", path)?
            .ok_or_else(|| anyhow!("{path}: no uniqueid"))?,
        state: child.required("state", path)?.to_string(),
        mode: child.value("mode").unwrap_or_default().to_string(),
        protocol: child.value("protocol").unwrap_or_default().to_string(),
        encap: child.value("encap") == Some("yes"),
        spi_in: child.hex("spi-in", path, u32::from_str_radix)?.unwrap_or(0),
        spi_out: child
            .hex("spi-out", path, u32::from_str_radix)?
            .unwrap_or(0),
        encr: child.value("encr-alg").map(str::to_string),
        encr_keysize: child.number("encr-keysize", path)?,
        integ: child.value("integ-alg").map(str::to_string),
        dh: child.value("dh-group").map(str::to_string),
        bytes_in: count("bytes-in")?,
        bytes_out: count("bytes-out")?,
        packets_in: count("packets-in")?,
        packets_out: count("packets-out")?,
        local_ts: child.list("local-ts"),
        remote_ts: child.list("remote-ts"),
    })
}

// ---------------------------------------------------------------- topology

/// The left site's address on the shared underlay (the IKE and ESP endpoint).
pub const LEFT_UNDERLAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const RIGHT_UNDERLAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// An address inside each site's subnet (on `lo`), the end points of tunnelled traffic.
pub const LEFT_SITE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const RIGHT_SITE: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
pub const LEFT_SUBNET: &str = "10.1.0.0/24";
pub const RIGHT_SUBNET: &str = "10.2.0.0/24";

/// Two sites for the IPsec suites: namespaces `left` and `right` joined by a veth pair
/// (198.51.100.1/24 and .2/24), with their site subnets 10.1.0.1/24 and 10.2.0.1/24 on `lo`
/// (the test kernels have no dummy interfaces). Traffic between the subnets only flows once
/// a tunnel routes it. A struct holding it and the tunnel ends declares it after them, so
/// the ends (declared first, dropped first) stop before the namespaces go.
pub struct SitePair {
    pub left: Netns,
    pub right: Netns,
    /// The veth ends, in `left` and in `right`.
    pub left_dev: String,
    pub right_dev: String,
}

impl SitePair {
    pub fn new() -> SitePair {
        let left = Netns::new();
        let right = Netns::new();
        let (left_dev, right_dev) = left.veth_to(&right);
        left.addr(&left_dev, &format!("{LEFT_UNDERLAY}/24"));
        right.addr(&right_dev, &format!("{RIGHT_UNDERLAY}/24"));
        left.addr("lo", &format!("{LEFT_SITE}/24"));
        right.addr("lo", &format!("{RIGHT_SITE}/24"));
        SitePair {
            left,
            right,
            left_dev,
            right_dev,
        }
    }
}

impl SitePair {
    /// `count` pings `interval` apart from the left site's address to the right's.
    pub fn ping_right(&self, count: u32, interval: Duration) -> PingStats {
        ping(&self.left, IpAddr::V4(RIGHT_SITE), count, interval)
    }

    /// `len` bytes over TCP each way between the site addresses, SHA-256 checked by the
    /// receiver; panics naming the direction that failed.
    pub fn transfer_both_ways(&self, len: u64, timeout: Duration) {
        for (sender, receiver, to) in [
            (&self.left, &self.right, RIGHT_SITE),
            (&self.right, &self.left, LEFT_SITE),
        ] {
            let done = checksummed_transfer(sender, receiver, IpAddr::V4(to), len, timeout)
                .unwrap_or_else(|e| panic!("transfer to {to}: {e}"));
            assert_eq!(done.bytes, len, "transfer to {to}");
        }
    }
}

impl Default for SitePair {
    fn default() -> Self {
        SitePair::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "list-sa event {
  site {
    uniqueid = 3
    version = 2
    state = ESTABLISHED
    local-host = 198.51.100.1
    local-port = 4500
    local-id = C=CH, O=Siteward Tests, CN=left
    remote-host = 198.51.100.2
    remote-port = 4500
    remote-id = right.example
    initiator = yes
    initiator-spi = bb67a2edf1c7981e
    responder-spi = 82b4a2b7ac7f32f7
    encr-alg = AES_CBC
    encr-keysize = 256
    integ-alg = HMAC_SHA2_256_128
    prf-alg = PRF_HMAC_SHA2_256
    dh-group = MODP_2048
    child-sas {
      net-1 {
        name = net
        uniqueid = 1
        reqid = 1
        state = INSTALLED
        mode = TUNNEL
        protocol = ESP
        encap = yes
        spi-in = a4a4077a
        spi-out = 91e07ab0
        encr-alg = AES_GCM_16
        encr-keysize = 256
        bytes-in = 252
        packets-in = 3
        bytes-out = 336
        packets-out = 4
        local-ts = [
          10.1.0.0/24
          10.1.1.0/24
        ]
        remote-ts = [
          10.2.0.0/24
        ]
      }
    }
  }
}
list-sas reply {
}
";

    #[test]
    fn parses_a_listing_with_a_dn_identity_and_a_child() {
        let sas = parse_list_sas(LISTING).unwrap();
        assert_eq!(sas.len(), 1);
        let sa = &sas[0];
        assert_eq!(sa.name, "site");
        assert_eq!((sa.unique_id, sa.state.as_str()), (3, "ESTABLISHED"));
        assert_eq!(sa.local_id, "C=CH, O=Siteward Tests, CN=left");
        assert_eq!(sa.remote_id, "right.example");
        assert!(sa.initiator);
        assert_eq!(
            (sa.spi_i, sa.spi_r),
            (0xbb67a2edf1c7981e, 0x82b4a2b7ac7f32f7)
        );
        assert_eq!(sa.encr.as_deref(), Some("AES_CBC"));
        assert_eq!(sa.encr_keysize, Some(256));
        assert_eq!(sa.integ.as_deref(), Some("HMAC_SHA2_256_128"));
        assert_eq!(sa.dh.as_deref(), Some("MODP_2048"));
        let child = sa.child("net").unwrap();
        assert_eq!((child.spi_in, child.spi_out), (0xa4a4077a, 0x91e07ab0));
        assert_eq!(child.state, "INSTALLED");
        assert!(child.encap);
        assert_eq!((child.bytes_in, child.packets_in), (252, 3));
        assert_eq!((child.bytes_out, child.packets_out), (336, 4));
        assert_eq!(child.local_ts, ["10.1.0.0/24", "10.1.1.0/24"]);
        assert_eq!(child.remote_ts, ["10.2.0.0/24"]);
        assert_eq!(child.integ, None);
        assert!(parse_list_sas("list-sas reply {\n}\n").unwrap().is_empty());
    }

    #[test]
    fn malformed_listings_are_errors_that_say_where() {
        for (text, expect) in [
            ("list-sa event {\n  site {\n", "ends inside"),
            ("}\n", "line 1"),
            ("state = x\n", "outside any section"),
            ("list-sa event {\n  what is this\n}\n", "line 2: unexpected"),
            (
                "list-sa event {\n  site {\n    uniqueid = 1\n    state = X\n    initiator-spi = zz\n  }\n}\n",
                "initiator-spi",
            ),
            ("list-sa event {\n  site {\n    state = X\n  }\n}\n", "no uniqueid"),
            ("list-sa event {\n  site = 1\n}\n", "not an IKE_SA section"),
        ] {
            let err = format!("{:#}", parse_list_sas(text).unwrap_err());
            assert!(err.contains(expect), "{err:?} lacks {expect:?}");
        }
    }

    #[test]
    fn swanctl_file_names_stay_inside_the_directory() {
        let dir = Path::new("/tmp/x/swanctl");
        assert_eq!(
            swanctl_file_path(dir, "x509ca/ca.pem").unwrap(),
            dir.join("x509ca/ca.pem")
        );
        for bad in [
            "",
            "/etc/passwd",
            "../strongswan.conf",
            "x509/../../a",
            "./a",
        ] {
            assert!(swanctl_file_path(dir, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn debug_hides_the_connections_text_and_file_contents() {
        let config = CharonConfig {
            connections: "secrets { ike { secret = hunter2 } }".into(),
            files: vec![("private/k.pem".into(), b"KEYDATA".to_vec())],
            ..CharonConfig::default()
        };
        let text = format!("{config:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("KEYDATA"),
            "{text}"
        );
        assert!(text.contains("private/k.pem"));
    }
}
