//! The validated configuration: what the rest of the daemon consumes.
//!
//! Every value here has passed validation, so consumers never re-check it.
//! `PartialEq` is what hot reload uses to tell a changed check from an unchanged one.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use siteward_ike::identity::Identity;
use siteward_ike::proposal::{EspProposal, IkeProposal};

use crate::{Secret, WgPublicKey, WgSecretKey};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub appliance: Appliance,
    pub admin: Admin,
    pub metrics: Metrics,
    pub checks: Vec<Check>,
    pub tunnels: Vec<Tunnel>,
    /// Where the relay connectors' events go; `None` without an `[uplink]` section.
    pub uplink: Option<Uplink>,
    pub spool: SpoolSettings,
    pub connectors: Vec<Connector>,
    pub relays: Vec<Relay>,
}

/// `[uplink]`: the cloud platform's HTTPS endpoint and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplink {
    /// `https://host[:port]/path`.
    pub url: String,
    /// Sent as `Authorization: Bearer ...`.
    pub token: Option<Secret>,
    /// Mutual TLS: this box's certificate and key (PEM).
    pub client_cert: Option<CertAndKey>,
    /// CA certificates the platform's certificate must chain to; `None`: the system's.
    pub ca_file: Option<PathBuf>,
    pub batch_max_events: usize,
    pub batch_max_bytes: usize,
    /// How long a batch may wait to fill before it is sent.
    pub batch_max_wait: Duration,
    /// Per request.
    pub timeout: Duration,
    /// How often a status report goes out; `None`: never.
    pub status_interval: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CertAndKey {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `[spool]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolSettings {
    /// Bytes of events the spool holds at most.
    pub max_bytes: u64,
}

/// One `[[connectors]]` entry: a source of events for the spool.
#[derive(Debug, Clone, PartialEq)]
pub struct Connector {
    pub name: String,
    /// What an event does when the spool is full.
    pub when_full: WhenFull,
    pub source: Source,
}

/// `when_full`: `block` pushes back on the source (a webhook answers 503, a TCP syslog
/// sender waits), `drop_oldest` deletes the oldest events and counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    Block,
    DropOldest,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Webhook(WebhookSource),
    AsteriskAmi(AmiSource),
    FileDrop(FileDropSource),
    Syslog(SyslogSource),
}

impl Source {
    /// The `kind` as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Webhook(_) => "webhook",
            Source::AsteriskAmi(_) => "asterisk-ami",
            Source::FileDrop(_) => "file-drop",
            Source::Syslog(_) => "syslog",
        }
    }
}

/// `kind = "webhook"`: an HTTP(S) listener that accepts POSTs on one path.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSource {
    pub listen: SocketAddr,
    /// Absolute path, e.g. `/hooks/ebs`.
    pub path: String,
    /// Largest body accepted (413 above).
    pub max_body_bytes: usize,
    /// With a shared secret, each request must carry `hmac_header` = hex HMAC-SHA256 of
    /// the body (optionally prefixed `sha256=`), else 401.
    pub hmac: Option<WebhookHmac>,
    /// Serve HTTPS with this certificate and key; `None`: plain HTTP.
    pub tls: Option<CertAndKey>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookHmac {
    pub secret: Secret,
    /// Header name, lower case.
    pub header: String,
}

/// `kind = "asterisk-ami"`: a persistent AMI client turning call events into events.
#[derive(Debug, Clone, PartialEq)]
pub struct AmiSource {
    pub target: HostPort,
    pub username: String,
    pub secret: Secret,
    /// AMI event names to keep (`Newchannel`, `Hangup`, `Cdr`...); empty keeps every event.
    pub events: Vec<String>,
    /// Longest wait between reconnection attempts.
    pub reconnect_max: Duration,
    pub placement: Placement,
}

/// `kind = "file-drop"`: files batch jobs drop into a directory.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDropSource {
    pub directory: PathBuf,
    /// A file counts as complete once its size has not changed for this long (a file
    /// renamed into place is complete at once).
    pub settle: Duration,
    pub format: FileFormat,
    /// Largest file taken; a bigger one goes to `failed/`.
    pub max_file_bytes: u64,
}

/// How a dropped file becomes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One event per file (JSON if the file is JSON, else a string).
    Whole,
    /// One event per row, as an object keyed by the header row.
    Csv,
    /// One event per line, each a JSON value.
    JsonLines,
}

/// `kind = "syslog"`: RFC 5424 and RFC 3164 over UDP and/or TCP (RFC 6587 framing).
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogSource {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    /// Longest message accepted; longer ones are counted and dropped (UDP) or end the
    /// connection (TCP, where the framing is lost).
    pub max_message_bytes: usize,
}

/// One `[[relays]]` entry: a TCP port on this box forwarded to a service behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Relay {
    pub name: String,
    pub listen: SocketAddr,
    pub target: HostPort,
    /// Source networks allowed to connect; others are closed at once and counted.
    pub allow: Vec<ipnet::IpNet>,
    pub max_connections: usize,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Where the connection toward the target leaves the box.
    pub placement: Placement,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Appliance {
    pub name: String,
    pub state_dir: PathBuf,
}

/// The HTTPS listener of the REST API (and later the web UI).
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    pub listen: SocketAddr,
    /// Certificate and key to serve; `None` means a self-signed pair kept in the state directory.
    pub tls: Option<AdminTls>,
    /// A web UI session ends after this long without a request...
    pub session_idle: Duration,
    /// ...or this long after login, whichever comes first.
    pub session_lifetime: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The plain-HTTP Prometheus listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub listen: SocketAddr,
}

/// One health check: what is common to every kind, then the kind's own parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes before the check is reported up.
    pub rise: u32,
    /// Consecutive failures before the check is reported down.
    pub fall: u32,
    pub placement: Placement,
    pub probe: Probe,
}

/// Where a check's sockets leave the box: a source address and/or an interface
/// (SO_BINDTODEVICE), so a check can be made to follow a tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    pub source: Option<IpAddr>,
    pub interface: Option<String>,
}

/// A host (DNS name or IP literal) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: Host,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The kind of a check and its kind-specific parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Tcp(TcpProbe),
    Tls(TlsProbe),
    Http(HttpProbe),
    Dns(DnsProbe),
    Icmp(IcmpProbe),
    OracleTns(OracleTnsProbe),
    SapNi(SapNiProbe),
    Saprouter(SaprouterProbe),
    AsteriskAmi(AsteriskAmiProbe),
    SipOptions(SipOptionsProbe),
}

impl Probe {
    /// The `kind` string of the config file, also the `kind` label of metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Tcp(_) => "tcp",
            Probe::Tls(_) => "tls",
            Probe::Http(_) => "http",
            Probe::Dns(_) => "dns",
            Probe::Icmp(_) => "icmp",
            Probe::OracleTns(_) => "oracle-tns",
            Probe::SapNi(_) => "sap-ni",
            Probe::Saprouter(_) => "saprouter",
            Probe::AsteriskAmi(_) => "asterisk-ami",
            Probe::SipOptions(_) => "sip-options",
        }
    }

    /// A one-line description of what is probed, for the API and logs (never a secret).
    pub fn target_display(&self) -> String {
        match self {
            Probe::Tcp(p) => p.target.to_string(),
            Probe::Tls(p) => p.target.to_string(),
            Probe::Http(p) => p.url.clone(),
            Probe::Dns(p) => format!("{} @ {}", p.query, p.server),
            Probe::Icmp(p) => p.target.to_string(),
            Probe::OracleTns(p) => p.target.to_string(),
            Probe::SapNi(p) => p.target.to_string(),
            Probe::Saprouter(p) => format!("{} via {}", p.route_display(), p.router),
            Probe::AsteriskAmi(p) => p.target.to_string(),
            Probe::SipOptions(p) => format!("{} ({})", p.target, p.transport.as_str()),
        }
    }
}

/// The kinds the config accepts, in the order the docs list them.
pub const CHECK_KINDS: &[&str] = &[
    "tcp",
    "tls",
    "http",
    "dns",
    "icmp",
    "oracle-tns",
    "sap-ni",
    "saprouter",
    "asterisk-ami",
    "sip-options",
];

#[derive(Debug, Clone, PartialEq)]
pub struct TcpProbe {
    pub target: HostPort,
}

/// Trust anchors for a TLS peer.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsTrust {
    /// The operating system's certificate store.
    SystemRoots,
    /// Only the certificates in this PEM file.
    CaFile(PathBuf),
    /// No verification at all (still reports the certificate's expiry).
    InsecureSkipVerify,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsProbe {
    pub target: HostPort,
    /// SNI and the name verified; defaults to the target's host name.
    pub server_name: Option<String>,
    pub trust: TlsTrust,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpProbe {
    /// `http://` or `https://` URL; the Host header and SNI come from it.
    pub url: String,
    /// Connect here instead of the URL's host (like curl `--connect-to`).
    pub connect_to: Option<HostPort>,
    /// Statuses that count as up. Never empty.
    pub expect_status: Vec<u16>,
    /// Up only if the body (first 64 KiB) contains this text.
    pub body_contains: Option<String>,
    pub trust: TlsTrust,
}

/// DNS record types a `dns` check can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsRecordType {
    A,
    Aaaa,
    Cname,
    Mx,
    Ns,
    Ptr,
    Soa,
    Srv,
    Txt,
}

impl DnsRecordType {
    pub const ALL: &'static [(&'static str, DnsRecordType)] = &[
        ("A", DnsRecordType::A),
        ("AAAA", DnsRecordType::Aaaa),
        ("CNAME", DnsRecordType::Cname),
        ("MX", DnsRecordType::Mx),
        ("NS", DnsRecordType::Ns),
        ("PTR", DnsRecordType::Ptr),
        ("SOA", DnsRecordType::Soa),
        ("SRV", DnsRecordType::Srv),
        ("TXT", DnsRecordType::Txt),
    ];

    pub fn as_str(self) -> &'static str {
        DnsRecordType::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(s, _)| *s)
            .unwrap_or("A")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsProbe {
    /// The DNS server asked (port 53 unless given).
    pub server: HostPort,
    /// The name looked up.
    pub query: String,
    pub record_type: DnsRecordType,
    pub transport: Transport,
    /// If set, up only when one answer's data equals one of these (e.g. an IP address).
    pub expect_answer: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IcmpProbe {
    pub target: Host,
    /// Echo requests sent per run.
    pub count: u32,
    /// Up when at least one reply came back and the loss is at most this percentage.
    pub max_loss_percent: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OracleTnsProbe {
    pub target: HostPort,
    /// Without it the check pings the listener; with it, it asks for this service.
    pub service_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SapNiProbe {
    pub target: HostPort,
}

/// One hop of a SAP route string (`/H/host/S/service`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SapRouteHop {
    pub host: String,
    /// Port number or service name as SAP writes it (`3299`, `sapgw00`).
    pub service: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SaprouterProbe {
    /// The first SAProuter, the one the check connects to.
    pub router: HostPort,
    /// Hops after the router, the last one being the system checked.
    pub route: Vec<SapRouteHop>,
    /// Password for the last hop, if its saprouttab entry demands one.
    pub password: Option<Secret>,
}

impl SaprouterProbe {
    /// The route in SAP's own notation (`/H/host/S/port/...`).
    pub fn route_display(&self) -> String {
        self.route
            .iter()
            .map(|h| format!("/H/{}/S/{}", h.host, h.service))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AsteriskAmiProbe {
    pub target: HostPort,
    pub username: String,
    pub secret: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SipOptionsProbe {
    pub target: HostPort,
    pub transport: Transport,
    /// Request-URI; defaults to `sip:<host>:<port>`.
    pub request_uri: Option<String>,
    /// User part of the From header.
    pub from_user: String,
    /// Count any final response as up, not just 2xx (some PBXs answer OPTIONS with 404).
    pub accept_any_status: bool,
}

/// One site-to-site tunnel: its name, the network interface it brings up, and what its
/// kind needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Tunnel {
    /// Unique among tunnels; the `tunnel` label of metrics and the API path.
    pub name: String,
    /// The TUN device's name; unique among tunnels. Checks may bind to it.
    pub interface: String,
    pub kind: TunnelKind,
}

// At most 256 tunnels, built once per load: boxing the larger kind would save little and
// make every match on it clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum TunnelKind {
    Wireguard(WireguardTunnel),
    Ipsec(IpsecTunnel),
}

impl TunnelKind {
    /// The `kind` string of the config file, also the `kind` label of metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            TunnelKind::Wireguard(_) => "wireguard",
            TunnelKind::Ipsec(_) => "ipsec",
        }
    }
}

/// The tunnel kinds the config accepts.
pub const TUNNEL_KINDS: &[&str] = &["wireguard", "ipsec"];

#[derive(Debug, Clone, PartialEq)]
pub struct WireguardTunnel {
    pub private_key: WgSecretKey,
    /// UDP port; `None` lets the kernel choose one (enough when only this side initiates).
    pub listen_port: Option<u16>,
    /// Addresses put on the interface, as written (host bits kept: `10.99.0.1/24`).
    pub addresses: Vec<ipnet::IpNet>,
    pub mtu: u16,
    pub peers: Vec<WireguardPeer>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WireguardPeer {
    /// Unique within the tunnel; the `peer` label of metrics.
    pub name: String,
    /// Unique within the tunnel, and not the tunnel's own.
    pub public_key: WgPublicKey,
    pub preshared_key: Option<WgSecretKey>,
    /// Where to send handshakes; `None` waits to be contacted. A DNS name stays a name, to
    /// be resolved when the tunnel starts.
    pub endpoint: Option<HostPort>,
    /// Networks routed to this peer and accepted from it (host bits zero). They overlap
    /// those of no other peer, in this tunnel or another.
    pub allowed_ips: Vec<ipnet::IpNet>,
    /// Seconds between keepalives (1-65535), to hold a NAT mapping open.
    pub persistent_keepalive: Option<u16>,
}

/// An IKEv2 site-to-site tunnel with ESP in tunnel mode: one IKE SA and one CHILD_SA between
/// `local_ts` and `remote_ts`.
#[derive(Debug, Clone, PartialEq)]
pub struct IpsecTunnel {
    /// Addresses IKE is spoken from; empty means any local address.
    pub local_addrs: Vec<IpAddr>,
    /// The peer's addresses or DNS names (resolved when the tunnel starts), tried in order.
    /// Empty means any peer may connect, which only `start = Respond` allows.
    pub remote_addrs: Vec<Host>,
    /// `None`: the local address (PSK) or the certificate's subject (certificates), decided
    /// when the tunnel starts.
    pub local_id: Option<Identity>,
    /// `None`: any identity that authenticates (with a PSK, the peer's address).
    pub remote_id: Option<Identity>,
    pub auth: IpsecAuth,
    /// IKE proposals in order of preference. Never empty.
    pub proposals: Vec<IkeProposal>,
    /// ESP proposals in order of preference. Never empty.
    pub esp_proposals: Vec<EspProposal>,
    /// This side's networks (host bits zero). Never empty.
    pub local_ts: Vec<ipnet::IpNet>,
    /// The far side's networks (host bits zero), routed through the interface. Never empty;
    /// they overlap no other tunnel's routes.
    pub remote_ts: Vec<ipnet::IpNet>,
    /// Addresses put on the interface, as written (e.g. one inside `local_ts`, so that the
    /// box itself can reach the far side).
    pub addresses: Vec<ipnet::IpNet>,
    pub mtu: u16,
    /// Idle time before a liveness check (empty INFORMATIONAL); `None` disables DPD.
    pub dpd_delay: Option<Duration>,
    pub dpd_action: DpdAction,
    /// IKE SA rekeying interval.
    pub rekey_time: Duration,
    /// CHILD_SA rekeying interval.
    pub child_rekey_time: Duration,
    /// CHILD_SA rekeying after this many bytes (either direction); `None`: by time only.
    pub child_rekey_bytes: Option<u64>,
    pub start: StartAction,
    /// UDP-encapsulate ESP (and move IKE to port 4500) even when no NAT is detected.
    pub encap: bool,
    /// IKE's UDP port here; NAT traversal moves to 4500.
    pub local_port: u16,
    /// IKE's UDP port at the peer; NAT traversal moves to 4500.
    pub remote_port: u16,
    /// IKE fragmentation (RFC 7383) offered and accepted.
    pub fragmentation: bool,
}

/// How the two ends authenticate each other.
#[derive(Debug, Clone, PartialEq)]
pub enum IpsecAuth {
    /// A pre-shared key (at least 16 bytes), used as written.
    Psk(Secret),
    /// This end's certificate and private key, and the CA that the peer's certificate must
    /// chain to. The PEM contents are read with the configuration (a changed file is a
    /// changed tunnel on reload) and fully parsed when the tunnel starts.
    Cert {
        cert_file: PathBuf,
        cert_pem: Vec<u8>,
        key_file: PathBuf,
        /// Never printed: `Debug` shows `***`.
        key_pem: Secret,
        ca_file: PathBuf,
        ca_pem: Vec<u8>,
    },
}

/// What to do when the peer stops answering DPD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpdAction {
    /// Tear the SAs down and negotiate again.
    Restart,
    /// Tear the SAs down and wait (for the peer, or for traffic with `start = Trap`).
    Clear,
}

impl DpdAction {
    pub const ALL: &'static [(&'static str, DpdAction)] =
        &[("restart", DpdAction::Restart), ("clear", DpdAction::Clear)];
}

/// When the tunnel is brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    /// At once, and again whenever it goes down.
    Initiate,
    /// Only when the peer initiates.
    Respond,
    /// When traffic to `remote_ts` first arrives.
    Trap,
}

impl StartAction {
    pub const ALL: &'static [(&'static str, StartAction)] = &[
        ("initiate", StartAction::Initiate),
        ("respond", StartAction::Respond),
        ("trap", StartAction::Trap),
    ];
}
