//! The demo lab's layout: namespaces, links and addresses, the files each process reads
//! (keys, tokens, the platform's certificate, two configurations), and the processes.
//!
//! ```text
//!  this host                swdemo-appliance                       swdemo-cloud
//!  swdemo-host ──────────── swdemo-mgmt      swdemo-wan ────────── swdemo-inet
//!  198.51.100.1/30          198.51.100.2/30  203.0.113.1/30        203.0.113.2/30
//!  (browser: web UI,        siteward run  ═══ WireGuard ═════════  siteward run
//!   /metrics)               10.99.1.1/24     (swdemo-wgapp)        10.99.0.1/24 (swdemo-wgcloud)
//!                           swdemo-lan                             platform receiver
//!                           192.0.2.1/24                           https://10.99.0.1/v1/events
//!                               │
//!                           swdemo-site0 192.0.2.10/24 in swdemo-site:
//!                           TNS 1521, SAP gateway 3300, SAProuter 3299, AMI 5038, SIP 5060
//! ```
//!
//! Only documentation and private ranges are used, and every name starts with
//! [`PREFIX`], which is how a later run finds what a killed one left behind.

use std::ffi::{OsStr, OsString};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::Context;
use siteward_config::WgSecretKey;
use siteward_netstack::wireguard::keys;

use super::lab::Lab;
use crate::accounts::AccountStore;
use crate::state_files::{ensure_private_dir, write_private};
use crate::tokens::TokenStore;

/// What every namespace, link, interface and directory of the demo is called first.
pub const PREFIX: &str = "swdemo-";

pub const NS_CLOUD: &str = "swdemo-cloud";
pub const NS_SITE: &str = "swdemo-site";
pub const NS_APPLIANCE: &str = "swdemo-appliance";

/// The host's end of the management link, and the appliance's.
pub const HOST_LINK: &str = "swdemo-host";
const MGMT_LINK: &str = "swdemo-mgmt";
const HOST_CIDR: &str = "198.51.100.1/30";
const MGMT_CIDR: &str = "198.51.100.2/30";
/// Where the host reaches the appliance: its web UI, /metrics and webhook listen here.
pub const APPLIANCE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// The "internet" between the appliance and the cloud end.
const WAN_LINK: &str = "swdemo-wan";
const INET_LINK: &str = "swdemo-inet";
const WAN_CIDR: &str = "203.0.113.1/30";
const INET_CIDR: &str = "203.0.113.2/30";
const CLOUD_PUBLIC_IP: &str = "203.0.113.2";

/// The site LAN.
const LAN_LINK: &str = "swdemo-lan";
const SITE_LINK: &str = "swdemo-site0";
const LAN_CIDR: &str = "192.0.2.1/24";
const SITE_CIDR: &str = "192.0.2.10/24";
const SITE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// The tunnel: interfaces (their UAPI sockets share `/var/run/wireguard` with the host,
/// hence the prefix), addresses, and the cloud end's address the platform answers on.
pub const APPLIANCE_WG: &str = "swdemo-wgapp";
pub const CLOUD_WG: &str = "swdemo-wgcloud";
const WG_PORT: u16 = 51820;
const CLOUD_TUNNEL_IP: &str = "10.99.0.1";

pub const ADMIN_PORT: u16 = 8443;
pub const METRICS_PORT: u16 = 9108;
pub const WEBHOOK_PORT: u16 = 8080;
pub const WEBHOOK_PATH: &str = "/hooks/demo";
pub const TUNNEL_NAME: &str = "cloud";
pub const PLATFORM_URL: &str = "https://10.99.0.1/v1/events";

/// The names (and log files) of the appliance's and the platform receiver's processes.
pub const APPLIANCE: &str = "appliance";
pub const PLATFORM: &str = "platform";

/// The appliance's checks, one per kind the lab offers; all of them go green.
pub const CHECKS: [&str; 7] = [
    "erp-db-listener",
    "sap-gateway",
    "saprouter",
    "pbx-ami",
    "pbx-sip",
    "cloud-ping",
    "platform-port",
];

/// The files of one lab, under its directory.
pub struct Files {
    pub appliance_config: PathBuf,
    pub appliance_state: PathBuf,
    pub cloud_config: PathBuf,
    pub platform_cert: PathBuf,
    platform_key: PathBuf,
    platform_token: PathBuf,
    ami_secret: PathBuf,
    /// Created before the appliance starts, so the demo can print it.
    pub api_token: String,
}

/// Writes keys, secrets, the platform's certificate and both configurations (checked as
/// `siteward check-config` would), and prepares the appliance's state directory with an
/// API token and the web UI's setup token.
pub fn write_files(dir: &Path) -> anyhow::Result<Files> {
    let appliance_dir = dir.join("appliance");
    let cloud_dir = dir.join("cloud");
    let platform_dir = dir.join("platform");
    let site_dir = dir.join("site");
    for d in [&appliance_dir, &cloud_dir, &platform_dir, &site_dir] {
        ensure_private_dir(d)?;
    }

    let appliance_key = keys::generate_private_key().context("generating a WireGuard key")?;
    let cloud_key = keys::generate_private_key().context("generating a WireGuard key")?;
    write_key(&appliance_dir.join("wg.key"), &appliance_key)?;
    write_key(&cloud_dir.join("wg.key"), &cloud_key)?;

    let platform_token = platform_dir.join("token");
    write_private(&platform_token, random_hex().as_bytes())?;
    let ami_secret = site_dir.join("ami.secret");
    write_private(&ami_secret, random_hex().as_bytes())?;

    let certified = rcgen::generate_simple_self_signed(vec![
        CLOUD_TUNNEL_IP.to_string(),
        "platform.swdemo.test".to_string(),
    ])
    .context("generating the platform receiver's certificate")?;
    let platform_cert = platform_dir.join("cert.pem");
    let platform_key = platform_dir.join("key.pem");
    write_private(&platform_cert, certified.cert.pem().as_bytes())?;
    write_private(
        &platform_key,
        certified.signing_key.serialize_pem().as_bytes(),
    )?;

    let appliance_state = appliance_dir.join("state");
    let appliance_config = appliance_dir.join("siteward.toml");
    write_private(
        &appliance_config,
        appliance_toml(
            &appliance_state,
            &cloud_key.public_key().to_string(),
            &platform_cert,
            &platform_token,
            &ami_secret,
        )
        .as_bytes(),
    )?;
    let cloud_config = cloud_dir.join("siteward.toml");
    write_private(
        &cloud_config,
        cloud_toml(
            &cloud_dir.join("state"),
            &appliance_key.public_key().to_string(),
        )
        .as_bytes(),
    )?;
    for config in [&appliance_config, &cloud_config] {
        siteward_config::load(config)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("checking the demo's {}", config.display()))?;
    }

    ensure_private_dir(&appliance_state)?;
    let api_token = TokenStore::in_state_dir(&appliance_state)
        .create("demo")
        .context("creating the demo's API token")?;
    AccountStore::in_state_dir(&appliance_state)
        .ensure_setup_token()
        .context("preparing the web UI's setup token")?;
    Ok(Files {
        appliance_config,
        appliance_state,
        cloud_config,
        platform_cert,
        platform_key,
        platform_token,
        ami_secret,
        api_token,
    })
}

fn write_key(path: &Path, key: &WgSecretKey) -> anyhow::Result<()> {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(key.expose());
    write_private(path, format!("{text}\n").as_bytes())
}

/// 32 random bytes in hex: tokens and secrets of the lab.
fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A TOML basic string holding `path`.
fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

fn appliance_toml(
    state_dir: &Path,
    cloud_public_key: &str,
    platform_cert: &Path,
    platform_token: &Path,
    ami_secret: &Path,
) -> String {
    let state_dir = toml_path(state_dir);
    let ca_file = toml_path(platform_cert);
    let token_file = toml_path(platform_token);
    let ami_secret = toml_path(ami_secret);
    format!(
        r#"# The appliance of `siteward demo` (removed with the lab).
[appliance]
name = "demo-plant"
state_dir = {state_dir}

[admin]
listen = "{APPLIANCE_IP}:{ADMIN_PORT}"

[metrics]
listen = "{APPLIANCE_IP}:{METRICS_PORT}"

[[tunnels]]
name = "{TUNNEL_NAME}"
kind = "wireguard"
interface = "{APPLIANCE_WG}"
private_key_file = "wg.key"
listen_port = {WG_PORT}
addresses = ["10.99.1.1/24"]

[[tunnels.peers]]
name = "cloud-gw"
public_key = "{cloud_public_key}"
endpoint = "{CLOUD_PUBLIC_IP}:{WG_PORT}"
allowed_ips = ["10.99.0.0/24"]
persistent_keepalive = "25s"

[[checks]]
name = "erp-db-listener"
kind = "oracle-tns"
target = "{SITE_IP}:1521"
interval = "3s"

[[checks]]
name = "sap-gateway"
kind = "sap-ni"
target = "{SITE_IP}:3300"
interval = "3s"

[[checks]]
name = "saprouter"
kind = "saprouter"
target = "{SITE_IP}:3299"
route = "/H/{SITE_IP}/S/3300"
interval = "3s"

[[checks]]
name = "pbx-ami"
kind = "asterisk-ami"
target = "{SITE_IP}:5038"
username = "siteward"
secret_file = {ami_secret}
interval = "3s"

[[checks]]
name = "pbx-sip"
kind = "sip-options"
target = "{SITE_IP}:5060"
interval = "3s"

[[checks]]
name = "cloud-ping"
kind = "icmp"
target = "{CLOUD_TUNNEL_IP}"
interface = "{APPLIANCE_WG}"
count = 1
interval = "3s"

[[checks]]
name = "platform-port"
kind = "tcp"
target = "{CLOUD_TUNNEL_IP}:443"
interval = "3s"

[uplink]
url = "{PLATFORM_URL}"
token_file = {token_file}
ca_file = {ca_file}
batch_max_wait = "1s"
status_interval = "30s"

[[connectors]]
name = "pbx-events"
kind = "asterisk-ami"
target = "{SITE_IP}:5038"
username = "siteward"
secret_file = {ami_secret}
events = ["Newchannel", "DialEnd", "Hangup", "Cdr"]

[[connectors]]
name = "demo-hooks"
kind = "webhook"
listen = "{APPLIANCE_IP}:{WEBHOOK_PORT}"
path = "{WEBHOOK_PATH}"
"#
    )
}

fn cloud_toml(state_dir: &Path, appliance_public_key: &str) -> String {
    let state_dir = toml_path(state_dir);
    format!(
        r#"# The cloud end of `siteward demo`'s tunnel (removed with the lab).
[appliance]
name = "demo-cloud"
state_dir = {state_dir}

[admin]
listen = "127.0.0.1:{ADMIN_PORT}"

[metrics]
listen = "127.0.0.1:{METRICS_PORT}"

[[tunnels]]
name = "sites"
kind = "wireguard"
interface = "{CLOUD_WG}"
private_key_file = "wg.key"
listen_port = {WG_PORT}
addresses = ["{CLOUD_TUNNEL_IP}/24"]

[[tunnels.peers]]
name = "demo-plant"
public_key = "{appliance_public_key}"
allowed_ips = ["10.99.1.0/24"]
"#
    )
}

/// The three namespaces, the links between them and to this host, and their addresses.
pub fn build_network(lab: &mut Lab) -> anyhow::Result<()> {
    for ns in [NS_CLOUD, NS_SITE, NS_APPLIANCE] {
        lab.add_namespace(ns)?;
    }
    lab.add_host_link(HOST_LINK, MGMT_LINK, NS_APPLIANCE)?;
    lab.ip(&[
        "-n",
        NS_APPLIANCE,
        "link",
        "add",
        WAN_LINK,
        "type",
        "veth",
        "peer",
        "name",
        INET_LINK,
        "netns",
        NS_CLOUD,
    ])?;
    lab.ip(&[
        "-n",
        NS_APPLIANCE,
        "link",
        "add",
        LAN_LINK,
        "type",
        "veth",
        "peer",
        "name",
        SITE_LINK,
        "netns",
        NS_SITE,
    ])?;
    for (ns, link, cidr) in [
        (None, HOST_LINK, HOST_CIDR),
        (Some(NS_APPLIANCE), MGMT_LINK, MGMT_CIDR),
        (Some(NS_APPLIANCE), WAN_LINK, WAN_CIDR),
        (Some(NS_CLOUD), INET_LINK, INET_CIDR),
        (Some(NS_APPLIANCE), LAN_LINK, LAN_CIDR),
        (Some(NS_SITE), SITE_LINK, SITE_CIDR),
    ] {
        let mut args = Vec::new();
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        let mut add = args.clone();
        add.extend(["addr", "add", cidr, "dev", link]);
        lab.ip(&add)?;
        args.extend(["link", "set", link, "up"]);
        lab.ip(&args)?;
    }
    Ok(())
}

/// One process of the lab: its name (and log file), namespace and `siteward` arguments.
pub struct Spec {
    pub name: &'static str,
    pub netns: &'static str,
    pub args: Vec<OsString>,
}

/// Every process, in the order they start: the cloud end and the platform, the site's
/// simulators, and the appliance last (its peers are then up).
pub fn processes(files: &Files) -> Vec<Spec> {
    let site = |port: u16| SocketAddr::V4(SocketAddrV4::new(SITE_IP, port)).to_string();
    let spec = |name, netns, args: &[&dyn AsRef<OsStr>]| Spec {
        name,
        netns,
        args: os_args(args),
    };
    let log = ["--log-level", "info"];
    let mut specs = vec![
        spec(
            "cloud",
            NS_CLOUD,
            // The lab runs as root by nature (namespaces, TUN devices).
            &[
                &"run",
                &"--allow-root",
                &"--config",
                &files.cloud_config,
                &log[0],
                &log[1],
            ],
        ),
        spec(
            PLATFORM,
            NS_CLOUD,
            &[
                &"simulate",
                &"platform",
                &"--listen",
                &"0.0.0.0:443",
                &"--cert-file",
                &files.platform_cert,
                &"--key-file",
                &files.platform_key,
                &"--token-file",
                &files.platform_token,
                // The demo reads the running total from this log.
                &"--log-format",
                &"json",
                &log[0],
                &log[1],
            ],
        ),
    ];
    let tns = site(1521);
    let ni = site(3300);
    let router = site(3299);
    let ami = site(5038);
    let sip = site(5060);
    specs.extend([
        spec(
            "oracle-tns",
            NS_SITE,
            &[
                &"simulate",
                &"oracle-tns",
                &"--listen",
                &tns,
                &"--service",
                &"EBSPROD",
                &log[0],
                &log[1],
            ],
        ),
        spec(
            "sap-ni",
            NS_SITE,
            &[&"simulate", &"sap-ni", &"--listen", &ni, &log[0], &log[1]],
        ),
        spec(
            "saprouter",
            NS_SITE,
            &[
                &"simulate",
                &"saprouter",
                &"--listen",
                &router,
                &log[0],
                &log[1],
            ],
        ),
        spec(
            "asterisk-ami",
            NS_SITE,
            &[
                &"simulate",
                &"asterisk-ami",
                &"--listen",
                &ami,
                &"--username",
                &"siteward",
                &"--secret-file",
                &files.ami_secret,
                // A call every 5 s, not one per check run as well.
                &"--event-interval-ms",
                &"5000",
                &"--no-interleaved-calls",
                &log[0],
                &log[1],
            ],
        ),
        spec(
            "sip",
            NS_SITE,
            &[&"simulate", &"sip", &"--listen", &sip, &log[0], &log[1]],
        ),
        spec(
            APPLIANCE,
            NS_APPLIANCE,
            &[
                &"run",
                &"--allow-root",
                &"--config",
                &files.appliance_config,
                &log[0],
                &log[1],
            ],
        ),
    ]);
    specs
}

fn os_args(items: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    items.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// Where the appliance's web UI, /metrics and webhook are reached from this host.
pub fn admin_url() -> String {
    format!("https://{APPLIANCE_IP}:{ADMIN_PORT}/")
}

pub fn metrics_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(APPLIANCE_IP, METRICS_PORT))
}

pub fn metrics_url() -> String {
    format!("http://{}/metrics", metrics_addr())
}

pub fn webhook_url() -> String {
    format!("http://{APPLIANCE_IP}:{WEBHOOK_PORT}{WEBHOOK_PATH}")
}

/// The appliance's self-signed certificate (made at its first start).
pub fn admin_cert(files: &Files) -> PathBuf {
    files
        .appliance_state
        .join(crate::admin::tls::SELF_SIGNED_CERT)
}

/// The setup token the web UI's first page asks for.
pub fn setup_token(files: &Files) -> anyhow::Result<String> {
    let path = AccountStore::in_state_dir(&files.appliance_state).setup_token_path();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the setup token {}", path.display()))?;
    Ok(text.trim().to_string())
}

/// A short description of the lab for the progress lines.
pub fn describe() -> String {
    format!(
        "the cloud end ({NS_CLOUD}: siteward run with WireGuard at {CLOUD_PUBLIC_IP}:{WG_PORT}, \
         the platform receiver at {PLATFORM_URL}), the site LAN ({NS_SITE}: TNS listener, SAP \
         gateway, SAProuter, Asterisk AMI and SIP simulators at {SITE_IP}) and the appliance \
         ({NS_APPLIANCE}, reached from this host over {HOST_LINK})"
    )
}
