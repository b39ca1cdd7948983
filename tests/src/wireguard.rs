//! WireGuard for the tunnel suites: the real wireguard-go as the far end (configured with
//! the real `wg`), `wg show IFNAME dump` parsed into structs (against any UAPI socket, so
//! also Siteward's own), and traffic through a tunnel: ping, a SHA-256-checked TCP
//! transfer, and a capture of the UDP datagrams on the wire (tcpdump).
//!
//! UAPI sockets live in `/var/run/wireguard`, which every network namespace shares: the
//! interface names come from [`unique_ifname`], unique across parallel tests and test
//! binaries, and a stopped wireguard-go leaves no socket file behind.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::netns::{self, unique_ifname};
use crate::process::ChildProcess;
use crate::{wait_until, Netns, READY_TIMEOUT};

/// Where `wg` and every user-space implementation keep their control sockets.
pub const UAPI_DIR: &str = "/var/run/wireguard";
/// UDP payload sizes of the WireGuard messages, to recognise them in a capture.
pub const HANDSHAKE_INITIATION_LEN: usize = 148;
pub const HANDSHAKE_RESPONSE_LEN: usize = 92;
pub const COOKIE_REPLY_LEN: usize = 64;
/// A transport message with no payload: header (16) and authentication tag (16).
pub const KEEPALIVE_LEN: usize = 32;

/// The UDP port the suites' tunnels listen on (each in its own namespace).
pub const WG_PORT: u16 = 51820;

/// `192.0.2.HOST:51820`: a tunnel end on the suites' veth underlay.
pub fn underlay(host: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, host], WG_PORT))
}

/// Now, in Unix seconds (the unit of `wg show`'s handshake times).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The UAPI socket of interface `ifname`.
pub fn uapi_socket(ifname: &str) -> PathBuf {
    Path::new(UAPI_DIR).join(format!("{ifname}.sock"))
}

// ---------------------------------------------------------------- keys

/// A key pair made by the real `wg genkey` / `wg pubkey` (base64, as `wg` prints them).
/// `Debug` hides the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct WgKeys {
    pub private: String,
    pub public: String,
}

impl WgKeys {
    pub fn generate() -> WgKeys {
        let private = wg_output(&["genkey"], None);
        let public = public_key_of(&private);
        WgKeys { private, public }
    }

    /// Writes the private key to a 0600 file in `dir` (named after the public key) and
    /// returns its path, for `wg set ... private-key FILE` or Siteward's `private_key_file`.
    pub fn write_private_key(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.key", file_stem(&self.public)));
        write_secret(&path, &self.private);
        path
    }
}

impl fmt::Debug for WgKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WgKeys")
            .field("public", &self.public)
            .field("private", &"***")
            .finish()
    }
}

/// The public key of `private`, computed by `wg pubkey`.
pub fn public_key_of(private: &str) -> String {
    wg_output(&["pubkey"], Some(private))
}

/// A pre-shared key made by `wg genpsk`. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct PresharedKey(String);

impl PresharedKey {
    pub fn generate() -> PresharedKey {
        PresharedKey(wg_output(&["genpsk"], None))
    }

    pub fn base64(&self) -> &str {
        &self.0
    }

    /// Writes the key to a 0600 file at `path`.
    pub fn write(&self, path: &Path) {
        write_secret(path, &self.0);
    }
}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresharedKey(***)")
    }
}

/// Runs `wg ARGS` (with `stdin` fed in when given) and returns its trimmed stdout.
fn wg_output(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("wg")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting wg {} (apt install wireguard-tools): {e}", args[0]));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(format!("{text}\n").as_bytes())
            .unwrap_or_else(|e| panic!("writing to wg {}: {e}", args[0]));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for wg {}: {e}", args[0]));
    assert!(
        out.status.success(),
        "wg {} failed: {}",
        args[0],
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A file name from a base64 key (which may hold `/` and `+`).
fn file_stem(key: &str) -> String {
    key.trim_end_matches('=')
        .replace('/', "_")
        .replace('+', "-")
}

/// Writes `text` to a file only its owner can read, also when the file already exists.
fn write_secret(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("restricting {}: {e}", path.display()));
    file.write_all(format!("{text}\n").as_bytes())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

// ---------------------------------------------------------------- peers and `wg show dump`

/// A peer as configured on an interface with `wg set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeer {
    pub public_key: String,
    /// None: the peer is not contacted until it makes contact (responder).
    pub endpoint: Option<SocketAddr>,
    /// CIDRs, e.g. `10.77.0.2/32`.
    pub allowed_ips: Vec<String>,
    /// Seconds.
    pub persistent_keepalive: Option<u16>,
    pub preshared_key: Option<PresharedKey>,
}

impl WgPeer {
    pub fn new(public_key: &str, allowed_ips: &[&str]) -> WgPeer {
        WgPeer {
            public_key: public_key.to_string(),
            endpoint: None,
            allowed_ips: allowed_ips.iter().map(|s| s.to_string()).collect(),
            persistent_keepalive: None,
            preshared_key: None,
        }
    }

    pub fn endpoint(mut self, endpoint: SocketAddr) -> WgPeer {
        self.endpoint = Some(endpoint);
        self
    }

    pub fn keepalive(mut self, seconds: u16) -> WgPeer {
        self.persistent_keepalive = Some(seconds);
        self
    }

    pub fn preshared_key(mut self, key: PresharedKey) -> WgPeer {
        self.preshared_key = Some(key);
        self
    }
}

/// `wg show IFNAME dump`, parsed. The private and pre-shared keys are not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgDump {
    /// None when the interface has no private key yet (`wg` prints `(none)`).
    pub public_key: Option<String>,
    pub listen_port: u16,
    pub fwmark: Option<u32>,
    pub peers: Vec<WgPeerStatus>,
}

/// One peer line of `wg show IFNAME dump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeerStatus {
    pub public_key: String,
    pub has_preshared_key: bool,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<String>,
    /// Unix seconds of the latest handshake; None if there was none.
    pub latest_handshake: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub persistent_keepalive: Option<u16>,
}

impl WgDump {
    /// Parses the output of `wg show IFNAME dump`: a line `private-key public-key
    /// listen-port fwmark`, then one line per peer `public-key preshared-key endpoint
    /// allowed-ips latest-handshake transfer-rx transfer-tx persistent-keepalive`, all
    /// tab-separated. Errors name the line and field, never a secret's value.
    pub fn parse(text: &str) -> Result<WgDump, String> {
        let mut lines = text.lines().enumerate();
        let (_, first) = lines
            .next()
            .ok_or("empty output (no interface line)".to_string())?;
        let fields = split_fields(first, 4, 1, "the interface line")?;
        let public_key = match fields[1] {
            "(none)" => None,
            key => Some(parse_key(key, 1, "public-key")?),
        };
        let listen_port = parse_number(fields[2], 1, "listen-port")?;
        let fwmark = match fields[3] {
            "off" => None,
            v => Some(parse_number(v, 1, "fwmark")?),
        };
        let mut peers = Vec::new();
        for (i, line) in lines {
            let n = i + 1;
            let fields = split_fields(line, 8, n, "a peer line")?;
            let public_key = parse_key(fields[0], n, "public-key")?;
            let has_preshared_key = fields[1] != "(none)";
            if has_preshared_key && !is_key(fields[1]) {
                return Err(format!("line {n}: preshared-key is not a base64 key"));
            }
            let endpoint = match fields[2] {
                "(none)" => None,
                v => Some(
                    v.parse::<SocketAddr>()
                        .map_err(|e| format!("line {n}: endpoint {v:?}: {e}"))?,
                ),
            };
            let allowed_ips = match fields[3] {
                "(none)" => Vec::new(),
                v => v
                    .split(',')
                    .map(|cidr| parse_cidr(cidr, n))
                    .collect::<Result<_, _>>()?,
            };
            let latest_handshake = match parse_number::<u64>(fields[4], n, "latest-handshake")? {
                0 => None,
                t => Some(t),
            };
            let rx_bytes = parse_number(fields[5], n, "transfer-rx")?;
            let tx_bytes = parse_number(fields[6], n, "transfer-tx")?;
            let persistent_keepalive = match fields[7] {
                "off" => None,
                v => Some(parse_number(v, n, "persistent-keepalive")?),
            };
            peers.push(WgPeerStatus {
                public_key,
                has_preshared_key,
                endpoint,
                allowed_ips,
                latest_handshake,
                rx_bytes,
                tx_bytes,
                persistent_keepalive,
            });
        }
        Ok(WgDump {
            public_key,
            listen_port,
            fwmark,
            peers,
        })
    }

    pub fn peer(&self, public_key: &str) -> Option<&WgPeerStatus> {
        self.peers.iter().find(|p| p.public_key == public_key)
    }
}

fn split_fields<'a>(
    line: &'a str,
    count: usize,
    n: usize,
    what: &str,
) -> Result<Vec<&'a str>, String> {
    let fields: Vec<&str> = line.split('\t').collect();
    if fields.len() != count {
        return Err(format!(
            "line {n}: {what} has {} tab-separated fields, expected {count}",
            fields.len()
        ));
    }
    Ok(fields)
}

/// A base64 encoding of 32 bytes, as `wg` prints keys.
fn is_key(text: &str) -> bool {
    text.len() == 44
        && text.ends_with('=')
        && text[..43]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn parse_key(text: &str, n: usize, field: &str) -> Result<String, String> {
    if is_key(text) {
        Ok(text.to_string())
    } else {
        Err(format!("line {n}: {field} {text:?} is not a base64 key"))
    }
}

fn parse_number<T: std::str::FromStr>(text: &str, n: usize, field: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    text.parse::<T>()
        .map_err(|e| format!("line {n}: {field} {text:?}: {e}"))
}

fn parse_cidr(text: &str, n: usize) -> Result<String, String> {
    let bad = |why: &str| format!("line {n}: allowed-ips entry {text:?}: {why}");
    let (ip, len) = text.split_once('/').ok_or_else(|| bad("no /prefix"))?;
    let ip: IpAddr = ip.parse().map_err(|_| bad("not an IP address"))?;
    let len: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad("prefix length too long"));
    }
    Ok(text.to_string())
}

/// `ip netns exec NS PROGRAM` (or just `PROGRAM` outside any namespace).
fn command_in(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", ns, program]);
            command
        }
        None => Command::new(program),
    }
}

fn run_in(netns: Option<&str>, program: &str, args: &[&str]) -> Result<Output, String> {
    let where_ = netns.map_or("here".to_string(), |ns| format!("in {ns}"));
    let out = command_in(netns, program)
        .args(args)
        .output()
        .map_err(|e| format!("running {program} {} {where_}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{program} {} {where_} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn show_dump_in(netns: Option<&str>, ifname: &str) -> Result<WgDump, String> {
    let out = run_in(netns, "wg", &["show", ifname, "dump"])?;
    WgDump::parse(&String::from_utf8_lossy(&out.stdout))
        .map_err(|e| format!("parsing `wg show {ifname} dump`: {e}"))
}

/// Runs `wg show IFNAME dump` (inside `netns` when given) against whatever serves the
/// interface's UAPI socket, and parses it; Err with `wg`'s message if it fails.
pub fn try_wg_show_dump(netns: Option<&Netns>, ifname: &str) -> Result<WgDump, String> {
    show_dump_in(netns.map(Netns::name), ifname)
}

/// Like [`try_wg_show_dump`]; panics on failure.
pub fn wg_show_dump(netns: Option<&Netns>, ifname: &str) -> WgDump {
    try_wg_show_dump(netns, ifname).unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `wg show IFNAME dump` until peer `public_key` satisfies `pred`; Err with the last
/// dump (or `wg`'s error) after `timeout`.
pub fn wait_for_peer(
    netns: Option<&Netns>,
    ifname: &str,
    public_key: &str,
    timeout: Duration,
    pred: impl FnMut(&WgPeerStatus) -> bool,
) -> Result<WgPeerStatus, String> {
    wait_for_peer_in(netns.map(Netns::name), ifname, public_key, timeout, pred)
}

fn wait_for_peer_in(
    netns: Option<&str>,
    ifname: &str,
    public_key: &str,
    timeout: Duration,
    mut pred: impl FnMut(&WgPeerStatus) -> bool,
) -> Result<WgPeerStatus, String> {
    let mut last = String::from("nothing yet");
    wait_until(timeout, || match show_dump_in(netns, ifname) {
        Ok(dump) => {
            let found = dump.peer(public_key).filter(|p| pred(p)).cloned();
            last = format!("{dump:#?}");
            found
        }
        Err(e) => {
            last = e;
            None
        }
    })
    .ok_or_else(|| {
        format!("peer {public_key} on {ifname} did not reach the awaited state within {timeout:?}; last: {last}")
    })
}

// ---------------------------------------------------------------- wireguard-go

/// The real wireguard-go (`wireguard-go -f IFNAME`) in a namespace, configured with `wg`.
/// Dropping it stops the process by PID and removes its UAPI socket.
pub struct WireguardGo {
    netns: String,
    ifname: String,
    keys: WgKeys,
    listen_port: u16,
    addresses: Vec<String>,
    /// As configured, so a restart can put them back.
    peers: Vec<WgPeer>,
    /// Key files (0700 directory, 0600 files).
    dir: TempDir,
    process: ChildProcess,
}

impl WireguardGo {
    /// Starts wireguard-go on a fresh interface in `netns`, waits for its UAPI socket, sets
    /// the private key and `listen_port` (0: let it choose; [`Self::listen_port`] tells),
    /// adds `addresses` (CIDRs) and brings the interface up.
    pub fn start(
        netns: &Netns,
        keys: &WgKeys,
        listen_port: u16,
        addresses: &[&str],
    ) -> WireguardGo {
        let dir = tempfile::Builder::new()
            .prefix("siteward-wg-")
            .tempdir()
            .expect("creating the wireguard-go key directory");
        let ifname = unique_ifname('w');
        let process = spawn_wireguard_go(netns.name(), &ifname);
        let mut wg = WireguardGo {
            netns: netns.name().to_string(),
            ifname,
            keys: keys.clone(),
            listen_port,
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            peers: Vec::new(),
            dir,
            process,
        };
        wg.configure();
        wg
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn public_key(&self) -> &str {
        &self.keys.public
    }

    pub fn keys(&self) -> &WgKeys {
        &self.keys
    }

    /// The UDP port it listens on (the one it chose if started with 0).
    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        self.process.pid()
    }

    pub fn process(&self) -> &ChildProcess {
        &self.process
    }

    /// Adds a peer; panics if one with its public key is already configured.
    pub fn add_peer(&mut self, peer: &WgPeer) {
        assert!(
            self.peers.iter().all(|p| p.public_key != peer.public_key),
            "peer {} is already on {}",
            peer.public_key,
            self.ifname
        );
        self.apply_peer(peer);
        self.peers.push(peer.clone());
    }

    /// Replaces a configured peer's allowed IPs, keepalive, pre-shared key and (when
    /// given) endpoint; `wg` cannot take an endpoint back, so None keeps the current one.
    pub fn update_peer(&mut self, peer: &WgPeer) {
        let index = self
            .peers
            .iter()
            .position(|p| p.public_key == peer.public_key)
            .unwrap_or_else(|| panic!("peer {} is not on {}", peer.public_key, self.ifname));
        self.apply_peer(peer);
        self.peers[index] = peer.clone();
    }

    pub fn remove_peer(&mut self, public_key: &str) {
        self.wg(&["set", &self.ifname, "peer", public_key, "remove"]);
        self.peers.retain(|p| p.public_key != public_key);
    }

    /// `wg show IFNAME dump`, parsed.
    pub fn show(&self) -> WgDump {
        show_dump_in(Some(&self.netns), &self.ifname)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.process.output_tail(30)))
    }

    /// Waits until peer `public_key` satisfies `pred`; panics with the last dump and
    /// wireguard-go's output after `timeout`.
    pub fn wait_for_peer(
        &self,
        public_key: &str,
        timeout: Duration,
        pred: impl FnMut(&WgPeerStatus) -> bool,
    ) -> WgPeerStatus {
        wait_for_peer_in(Some(&self.netns), &self.ifname, public_key, timeout, pred)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.process.output_tail(30)))
    }

    /// Waits until a handshake with peer `public_key` newer than `after` (Unix seconds;
    /// 0 for any) is reported.
    pub fn wait_for_handshake(
        &self,
        public_key: &str,
        after: u64,
        timeout: Duration,
    ) -> WgPeerStatus {
        self.wait_for_peer(public_key, timeout, |p| {
            p.latest_handshake.is_some_and(|t| t > after)
        })
    }

    /// Stops wireguard-go and starts it again on the same interface name with the same
    /// key, port, addresses and peers: a far end that restarts (all sessions lost).
    pub fn restart(&mut self) {
        self.process.stop();
        remove_stale_socket(&self.ifname);
        self.process = spawn_wireguard_go(&self.netns, &self.ifname);
        self.configure();
    }

    fn configure(&mut self) {
        let key = self.keys.write_private_key(self.dir.path());
        let port = self.listen_port.to_string();
        let key = key.to_str().expect("temp paths are UTF-8").to_string();
        self.wg(&[
            "set",
            &self.ifname,
            "private-key",
            &key,
            "listen-port",
            &port,
        ]);
        for cidr in &self.addresses {
            self.ip(&["addr", "add", cidr, "dev", &self.ifname]);
        }
        self.ip(&["link", "set", &self.ifname, "up"]);
        self.listen_port = self.show().listen_port;
        for peer in self.peers.clone() {
            self.apply_peer(&peer);
        }
    }

    /// `wg set` with every field of `peer`, so an update leaves nothing of the old one.
    fn apply_peer(&self, peer: &WgPeer) {
        let allowed = peer.allowed_ips.join(",");
        let keepalive = peer
            .persistent_keepalive
            .map_or("off".to_string(), |s| s.to_string());
        let psk = match &peer.preshared_key {
            Some(key) => {
                let path = self
                    .dir
                    .path()
                    .join(format!("psk-{}.key", file_stem(&peer.public_key)));
                key.write(&path);
                path.to_str().expect("temp paths are UTF-8").to_string()
            }
            None => "/dev/null".to_string(),
        };
        let mut args = vec![
            "set",
            &self.ifname,
            "peer",
            &peer.public_key,
            "allowed-ips",
            &allowed,
            "persistent-keepalive",
            &keepalive,
            "preshared-key",
            &psk,
        ];
        let endpoint = peer.endpoint.map(|e| e.to_string());
        if let Some(endpoint) = &endpoint {
            args.extend(["endpoint", endpoint]);
        }
        self.wg(&args);
    }

    fn wg(&self, args: &[&str]) {
        if let Err(e) = run_in(Some(&self.netns), "wg", args) {
            panic!("{e}\n{}", self.process.output_tail(30));
        }
    }

    fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.netns.as_str()];
        full.extend_from_slice(args);
        if let Err(e) = run_in(None, "ip", &full) {
            panic!("{e}");
        }
    }
}

impl Drop for WireguardGo {
    fn drop(&mut self) {
        self.process.stop();
        remove_stale_socket(&self.ifname);
    }
}

/// Starts `wireguard-go -f IFNAME` in `netns` and waits until its UAPI socket accepts
/// connections (a socket file left by an earlier, killed process does not count).
fn spawn_wireguard_go(netns: &str, ifname: &str) -> ChildProcess {
    let socket = uapi_socket(ifname);
    if UnixStream::connect(&socket).is_ok() {
        panic!(
            "{} is in use by another process: interface names must be unique",
            socket.display()
        );
    }
    remove_stale_socket(ifname);
    let mut command = command_in(Some(netns), "wireguard-go");
    command
        .args(["-f", ifname])
        // Handshakes and keepalives in the captured output, for failure messages.
        .env("LOG_LEVEL", "verbose");
    let mut process = ChildProcess::spawn_command(&format!("wireguard-go {ifname}"), command);
    let ready = wait_until(READY_TIMEOUT, || {
        if let Some(status) = process.try_wait() {
            return Some(Err(format!("exited with {status}")));
        }
        UnixStream::connect(&socket).ok().map(|_| Ok(()))
    });
    match ready {
        Some(Ok(())) => process,
        Some(Err(why)) => panic!(
            "wireguard-go {ifname} in {netns}: {why}\n{}",
            process.output_tail(30)
        ),
        None => panic!(
            "wireguard-go {ifname} in {netns}: no UAPI socket at {} within {READY_TIMEOUT:?}\n{}",
            socket.display(),
            process.output_tail(30)
        ),
    }
}

fn remove_stale_socket(ifname: &str) {
    let socket = uapi_socket(ifname);
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => panic!("removing {}: {e}", socket.display()),
    }
}

// ---------------------------------------------------------------- traffic

/// What `ping` reported.
#[derive(Debug, Clone, PartialEq)]
pub struct PingStats {
    pub transmitted: u32,
    pub received: u32,
    /// Round-trip time of each reply, in order.
    pub rtts: Vec<Duration>,
    /// `rtt min/avg/max/mdev`; None when nothing came back.
    pub summary: Option<RttSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttSummary {
    pub min: Duration,
    pub avg: Duration,
    pub max: Duration,
    pub mdev: Duration,
}

impl PingStats {
    pub fn loss_percent(&self) -> f64 {
        if self.transmitted == 0 {
            return 100.0;
        }
        100.0 * f64::from(self.transmitted - self.received.min(self.transmitted))
            / f64::from(self.transmitted)
    }

    /// Parses the output of iputils `ping -n` (reply lines, the packet count line and the
    /// `rtt min/avg/max/mdev` line).
    pub fn parse(text: &str) -> Result<PingStats, String> {
        let mut rtts = Vec::new();
        let mut counts = None;
        let mut summary = None;
        for line in text.lines() {
            if let Some(time) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("time="))
            {
                rtts.push(parse_ms(time).ok_or_else(|| format!("bad reply time in {line:?}"))?);
            } else if line.contains("packets transmitted") {
                let numbers: Vec<u32> = line
                    .split(',')
                    .take(2)
                    .map(|part| part.split_whitespace().next().and_then(|n| n.parse().ok()))
                    .collect::<Option<_>>()
                    .ok_or_else(|| format!("bad packet count line {line:?}"))?;
                counts = Some((numbers[0], numbers[1]));
            } else if let Some(values) = line
                .strip_prefix("rtt min/avg/max/mdev = ")
                .and_then(|rest| rest.strip_suffix(" ms"))
            {
                let v: Vec<Duration> = values
                    .split('/')
                    .map(parse_ms)
                    .collect::<Option<_>>()
                    .filter(|v: &Vec<Duration>| v.len() == 4)
                    .ok_or_else(|| format!("bad rtt line {line:?}"))?;
                summary = Some(RttSummary {
                    min: v[0],
                    avg: v[1],
                    max: v[2],
                    mdev: v[3],
                });
            }
        }
        let (transmitted, received) =
            counts.ok_or("no `packets transmitted` line in ping's output".to_string())?;
        Ok(PingStats {
            transmitted,
            received,
            rtts,
            summary,
        })
    }
}

fn parse_ms(text: &str) -> Option<Duration> {
    let ms: f64 = text.parse().ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
}

/// Pings `target` `count` times, `interval` apart, from inside `netns` (each reply awaited
/// at most 1 s) and returns what `ping` reported, losses included.
pub fn ping(netns: &Netns, target: IpAddr, count: u32, interval: Duration) -> PingStats {
    let deadline = (interval.as_secs_f64() * f64::from(count)).ceil() as u64 + 5;
    let args = [
        "-n".to_string(),
        "-c".to_string(),
        count.to_string(),
        "-i".to_string(),
        format!("{:.3}", interval.as_secs_f64()),
        "-W".to_string(),
        "1".to_string(),
        "-w".to_string(),
        deadline.to_string(),
        target.to_string(),
    ];
    let out = netns.exec("ping", &args);
    let text = String::from_utf8_lossy(&out.stdout);
    PingStats::parse(&text).unwrap_or_else(|e| {
        panic!(
            "ping {target} from {}: {e}\n{text}\n{}",
            netns.name(),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A finished [`checksummed_transfer`]: both ends agree on the length and the SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub bytes: u64,
    pub sha256: [u8; 32],
    pub elapsed: Duration,
}

/// Sends `len` random bytes over one TCP connection from `sender` to a listener on
/// `receiver_ip` in `receiver`. The receiver hashes what it reads until end of stream and
/// answers with its byte count and SHA-256, which the sender compares with its own; Err
/// says what differed or which step failed. Every step is bounded by `timeout`.
pub fn checksummed_transfer(
    sender: &Netns,
    receiver: &Netns,
    receiver_ip: IpAddr,
    len: u64,
    timeout: Duration,
) -> Result<Transfer, String> {
    let listener = receiver.tcp_listener(SocketAddr::new(receiver_ip, 0));
    let addr = listener
        .local_addr()
        .map_err(|e| format!("reading the listener's address: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("making the listener non-blocking: {e}"))?;
    let receiving = thread::spawn(move || -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let (mut stream, _) = loop {
            match listener.accept() {
                Ok(conn) => break conn,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(format!("receiver: accepting on {addr}: {e}")),
            }
        };
        let io = |e: std::io::Error| format!("receiver on {addr}: {e}");
        stream.set_nonblocking(false).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut count: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stream.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            count += n as u64;
        }
        let mut answer = hasher.finalize().to_vec();
        answer.extend_from_slice(&count.to_be_bytes());
        stream.write_all(&answer).map_err(io)
    });

    let started = Instant::now();
    let sent = send_random(sender, addr, len, timeout);
    let received = receiving
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    let (sha256, answer) = match (sent, received) {
        (Ok(sent), Ok(())) => sent,
        (Err(e), Ok(())) | (Ok(_), Err(e)) => return Err(e),
        (Err(send), Err(receive)) => return Err(format!("{send}; {receive}")),
    };
    let (their_sha, their_count) = answer.split_at(32);
    let their_count = u64::from_be_bytes(their_count.try_into().expect("8 bytes"));
    if their_count != len || their_sha != sha256 {
        return Err(format!(
            "sent {len} bytes to {addr} (sha256 {}), the receiver got {their_count} bytes (sha256 {})",
            hex(&sha256),
            hex(their_sha)
        ));
    }
    Ok(Transfer {
        bytes: len,
        sha256,
        elapsed: started.elapsed(),
    })
}

/// The sender's half: connects, writes `len` random bytes, closes its side and reads the
/// receiver's 40-byte answer. Returns its own SHA-256 and the answer.
fn send_random(
    sender: &Netns,
    addr: SocketAddr,
    len: u64,
    timeout: Duration,
) -> Result<([u8; 32], [u8; 40]), String> {
    let mut stream: TcpStream = netns::connect(Some(sender.name()), addr, timeout)
        .map_err(|e| format!("sender in {}: connecting to {addr}: {e}", sender.name()))?;
    let io = |e: std::io::Error| format!("sender to {addr}: {e}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut rng = rand::rng();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        hasher.update(&buf[..n]);
        stream.write_all(&buf[..n]).map_err(io)?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write).map_err(io)?;
    let mut answer = [0u8; 40];
    stream
        .read_exact(&mut answer)
        .map_err(|e| format!("sender to {addr}: reading the receiver's checksum: {e}"))?;
    Ok((hasher.finalize().into(), answer))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------- capture

/// One UDP datagram seen by [`UdpCapture`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapturedUdp {
    /// Capture time, Unix seconds.
    pub time: f64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// UDP payload length.
    pub len: usize,
}

/// tcpdump on a device inside a namespace, printing the UDP datagrams to or from `port`:
/// what really went over the wire, independently of what either end reports.
pub struct UdpCapture {
    process: ChildProcess,
}

impl UdpCapture {
    /// Starts the capture and waits until tcpdump says it is listening.
    pub fn start(netns: &Netns, dev: &str, port: u16) -> UdpCapture {
        UdpCapture::start_with_filter(netns, dev, &format!("udp port {port}"))
    }

    /// Like [`Self::start`] with a pcap `filter` of the caller's (read the matches with
    /// [`Self::lines`] when tcpdump does not print them as plain UDP).
    pub fn start_with_filter(netns: &Netns, dev: &str, filter: &str) -> UdpCapture {
        let mut args = vec!["-i", dev, "-n", "-l", "-tt", "--immediate-mode"];
        args.extend(filter.split_whitespace());
        let process = netns.spawn(&format!("tcpdump {dev}"), "tcpdump", args);
        if let Err(e) = process
            .stderr()
            .wait_for(READY_TIMEOUT, |l| l.starts_with("listening on "))
        {
            panic!(
                "tcpdump on {dev} in {}: {e}\n{}",
                netns.name(),
                process.output_tail(20)
            );
        }
        UdpCapture { process }
    }

    /// tcpdump's lines so far, one per packet.
    pub fn lines(&self) -> Vec<String> {
        self.process.stdout().all()
    }

    /// Every datagram captured so far.
    pub fn packets(&self) -> Vec<CapturedUdp> {
        self.process
            .stdout()
            .all()
            .iter()
            .filter_map(|l| parse_tcpdump_udp(l))
            .collect()
    }

    /// Waits until the datagrams captured so far satisfy `pred` and returns them; panics
    /// with the capture after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&[CapturedUdp]) -> bool,
    ) -> Vec<CapturedUdp> {
        wait_until(timeout, || {
            let packets = self.packets();
            pred(&packets).then_some(packets)
        })
        .unwrap_or_else(|| {
            panic!(
                "the capture did not show {what} within {timeout:?}\n{}",
                self.process.output_tail(40)
            )
        })
    }
}

/// `1700000000.123456 IP 192.0.2.2.51820 > 192.0.2.1.51820: UDP, length 32` (IPv6: `IP6`).
fn parse_tcpdump_udp(line: &str) -> Option<CapturedUdp> {
    let mut words = line.split_whitespace();
    let time = words.next()?.parse().ok()?;
    if !matches!(words.next()?, "IP" | "IP6") {
        return None;
    }
    let src = tcpdump_addr(words.next()?)?;
    if words.next()? != ">" {
        return None;
    }
    let dst = tcpdump_addr(words.next()?.strip_suffix(':')?)?;
    if words.next()? != "UDP," || words.next()? != "length" {
        return None;
    }
    let len = words.next()?.parse().ok()?;
    Some(CapturedUdp {
        time,
        src,
        dst,
        len,
    })
}

/// tcpdump's `ADDRESS.PORT`.
fn tcpdump_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.rsplit_once('.')?;
    Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIV: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    const PUB_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const PUB_B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

    #[test]
    fn parses_a_dump_with_two_peers() {
        let text = format!(
            "{PRIV}\t{PUB_A}\t51820\toff\n\
             {PUB_B}\t{PRIV}\t192.0.2.2:51820\t10.77.0.2/32,fd00::/64\t1700000000\t1234\t5678\t25\n\
             {PUB_A}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
        );
        let dump = WgDump::parse(&text).unwrap();
        assert_eq!(dump.public_key.as_deref(), Some(PUB_A));
        assert_eq!(dump.listen_port, 51820);
        assert_eq!(dump.fwmark, None);
        let b = dump.peer(PUB_B).unwrap();
        assert!(b.has_preshared_key);
        assert_eq!(b.endpoint, Some("192.0.2.2:51820".parse().unwrap()));
        assert_eq!(b.allowed_ips, ["10.77.0.2/32", "fd00::/64"]);
        assert_eq!(b.latest_handshake, Some(1_700_000_000));
        assert_eq!((b.rx_bytes, b.tx_bytes), (1234, 5678));
        assert_eq!(b.persistent_keepalive, Some(25));
        let a = dump.peer(PUB_A).unwrap();
        assert_eq!(
            (
                a.has_preshared_key,
                a.endpoint,
                a.latest_handshake,
                a.persistent_keepalive
            ),
            (false, None, None, None)
        );
        assert!(a.allowed_ips.is_empty());
        // The secrets are not kept: Debug cannot show them.
        assert!(!format!("{dump:?}").contains(PRIV));
    }

    #[test]
    fn bad_dumps_are_errors_that_name_the_field_and_hide_secrets() {
        for (text, expect) in [
            ("", "empty output"),
            (&format!("{PRIV}\t{PUB_A}\t51820"), "expected 4"),
            (&format!("{PRIV}\t{PUB_A}\t70000\toff"), "listen-port"),
            (&format!("{PRIV}\tnot-a-key\t1\toff"), "public-key"),
            (
                &format!(
                    "{PRIV}\t{PUB_A}\t1\toff\n{PUB_B}\t(none)\t192.0.2.2\t(none)\t0\t0\t0\toff"
                ),
                "line 2: endpoint",
            ),
            (
                &format!(
                    "{PRIV}\t{PUB_A}\t1\toff\n{PUB_B}\t(none)\t(none)\t10.0.0.0/33\t0\t0\t0\toff"
                ),
                "prefix length too long",
            ),
            (
                &format!("{PRIV}\t{PUB_A}\t1\toff\n{PUB_B}\t(none)\t(none)\t(none)\t0\t-1\t0\toff"),
                "transfer-rx",
            ),
            (
                &format!("{PRIV}\t{PUB_A}\t1\toff\n{PUB_B}\t{PRIV}x\t(none)\t(none)\t0\t0\t0\toff"),
                "preshared-key is not",
            ),
        ] {
            let err = WgDump::parse(text).unwrap_err();
            assert!(err.contains(expect), "{err:?} lacks {expect:?}");
            assert!(!err.contains(PRIV), "{err:?} shows a secret");
        }
    }

    #[test]
    fn parses_ping_output_with_and_without_replies() {
        let text = "PING 10.77.0.2 (10.77.0.2) 56(84) bytes of data.\n\
            64 bytes from 10.77.0.2: icmp_seq=1 ttl=64 time=0.481 ms\n\
            64 bytes from 10.77.0.2: icmp_seq=3 ttl=64 time=1.02 ms\n\
            \n--- 10.77.0.2 ping statistics ---\n\
            3 packets transmitted, 2 received, 33.3333% packet loss, time 2003ms\n\
            rtt min/avg/max/mdev = 0.481/0.750/1.020/0.269 ms\n";
        let stats = PingStats::parse(text).unwrap();
        assert_eq!((stats.transmitted, stats.received), (3, 2));
        assert_eq!(
            stats.rtts,
            [Duration::from_micros(481), Duration::from_micros(1020)]
        );
        assert_eq!(stats.summary.unwrap().avg, Duration::from_micros(750));
        assert!((stats.loss_percent() - 33.333).abs() < 0.01);

        let lost = "--- 10.77.0.2 ping statistics ---\n\
            2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 1001ms\n";
        let stats = PingStats::parse(lost).unwrap();
        assert_eq!((stats.received, stats.summary), (0, None));
        assert_eq!(stats.loss_percent(), 100.0);
        assert!(PingStats::parse("ping: connect: Network is unreachable").is_err());
    }

    #[test]
    fn parses_tcpdump_udp_lines() {
        let p = parse_tcpdump_udp(
            "1700000000.250000 IP 192.0.2.2.51820 > 192.0.2.1.51821: UDP, length 32",
        )
        .unwrap();
        assert_eq!(p.src, "192.0.2.2:51820".parse().unwrap());
        assert_eq!(p.dst, "192.0.2.1:51821".parse().unwrap());
        assert_eq!((p.len, p.time), (32, 1_700_000_000.25));
        let v6 =
            parse_tcpdump_udp("1.5 IP6 fd00::2.51820 > fd00::1.51820: UDP, length 148").unwrap();
        assert_eq!(v6.src, "[fd00::2]:51820".parse().unwrap());
        assert!(parse_tcpdump_udp("1.5 IP 192.0.2.2.1 > 192.0.2.1.2: Flags [S], seq 1").is_none());
        assert!(parse_tcpdump_udp("listening on veth, link-type EN10MB").is_none());
    }
}
