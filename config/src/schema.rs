//! Every key the file accepts, described for building forms: section by section, with the
//! kinds a key belongs to, its type, and a short help text from the README's reference.
//!
//! Tests pin the schema to `raw.rs`: the keys of each section are read from its
//! raw struct's `Deserialize` impl, and the kind-specific ones from `keys_of_kind` and its
//! siblings, so the schema cannot drift from what the file accepts.

use crate::model::{CHECK_KINDS, TUNNEL_KINDS};
use crate::raw::CONNECTOR_KINDS;

/// How a value is written in the file and edited in a form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A string (also durations like `"10s"`, addresses, `host:port` targets and paths).
    Text,
    /// A TOML integer.
    Integer,
    Bool,
    /// An array, edited one item per line (strings, or integers for
    /// [`Field::list_of_integers`]).
    List,
    /// A string that is never shown: the form only says whether one is set.
    Secret,
    /// A string from a fixed set.
    Choice(&'static [&'static str]),
}

/// One key of a section.
#[derive(Debug)]
pub struct Field {
    pub key: &'static str,
    pub label: &'static str,
    pub ty: FieldType,
    /// None: every kind of the section; Some: only these kinds.
    pub kinds: Option<&'static [&'static str]>,
    pub required: bool,
    pub help: &'static str,
}

impl Field {
    /// Whether the field belongs to an entry of `kind` (`None`: the kind is not chosen yet,
    /// so only the fields every kind has).
    pub fn is_for(&self, kind: Option<&str>) -> bool {
        match (self.kinds, kind) {
            (None, _) => true,
            (Some(kinds), Some(kind)) => kinds.contains(&kind),
            (Some(_), None) => false,
        }
    }

    /// A [`FieldType::List`] whose items are integers (HTTP status codes), not strings.
    pub fn list_of_integers(&self) -> bool {
        self.ty == FieldType::List && self.key == "expect_status"
    }
}

/// A top-level table (`[uplink]`), an array of tables (`[[checks]]`), or the peers of a
/// tunnel (`tunnels.peers`).
#[derive(Debug)]
pub struct Section {
    /// "appliance", "admin", "metrics", "uplink", "spool", "checks", "tunnels",
    /// "tunnels.peers", "connectors" or "relays".
    pub key: &'static str,
    pub title: &'static str,
    /// Written as `[[key]]`, an array of tables.
    pub repeated: bool,
    /// The values of its `kind` key; empty if the section has no `kind`.
    pub kinds: &'static [&'static str],
    pub fields: &'static [Field],
}

impl Section {
    /// The fields of an entry of `kind`: those every kind has, then the kind's own. With
    /// `None` (or a kind the section does not have), only those every kind has.
    pub fn fields_for<'a>(&'a self, kind: Option<&'a str>) -> impl Iterator<Item = &'a Field> {
        self.fields.iter().filter(move |field| field.is_for(kind))
    }

    /// The field named `key`, of any kind.
    pub fn field(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|field| field.key == key)
    }
}

/// Every section, in the order of the README's reference.
pub fn sections() -> &'static [Section] {
    SECTIONS
}

/// The section with this key (`"checks"`, `"tunnels.peers"`).
pub fn section(key: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|section| section.key == key)
}

/// The keys of [`FieldType::Secret`] fields (a test keeps the two in step), listed so that
/// [`is_secret_key`] need not search the schema for every key of a file.
const SECRET_KEYS: &[&str] = &[
    "token",
    "route_password",
    "secret",
    "private_key",
    "psk",
    "preshared_key",
    "hmac_secret",
];

/// Whether values of `key` are secrets, in whatever table it appears: masked in views,
/// exports and validation's error messages, even where the file has it by mistake.
pub(crate) fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

const fn field(key: &'static str, label: &'static str, ty: FieldType, help: &'static str) -> Field {
    Field {
        key,
        label,
        ty,
        kinds: None,
        required: false,
        help,
    }
}

const fn required(field: Field) -> Field {
    Field {
        required: true,
        ..field
    }
}

const fn only(kinds: &'static [&'static str], field: Field) -> Field {
    Field {
        kinds: Some(kinds),
        ..field
    }
}

use FieldType::{Bool, Integer, List, Secret, Text};

const TRANSPORTS: FieldType = FieldType::Choice(&["udp", "tcp"]);
const RECORD_TYPES: FieldType =
    FieldType::Choice(&["A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT"]);

const SECTIONS: &[Section] = &[
    Section {
        key: "appliance",
        title: "Appliance",
        repeated: false,
        kinds: &[],
        fields: &[
            required(field(
                "name",
                "Name",
                Text,
                "Identifies the box: letters, digits, - _ .",
            )),
            field(
                "state_dir",
                "State directory",
                Text,
                "Where tokens, the spool and the self-signed certificate live. Default /var/lib/siteward.",
            ),
        ],
    },
    Section {
        key: "admin",
        title: "Admin API",
        repeated: false,
        kinds: &[],
        fields: &[
            field(
                "listen",
                "Listen address",
                Text,
                "HTTPS address:port of the API and this UI. Default 0.0.0.0:8443.",
            ),
            field(
                "cert_file",
                "Certificate file",
                Text,
                "PEM certificate. Default: self-signed, made on first start.",
            ),
            field(
                "key_file",
                "Key file",
                Text,
                "PEM private key of cert_file.",
            ),
            field(
                "session_idle",
                "Session idle limit",
                Text,
                "A web UI session ends after this long without a request. Default 4h.",
            ),
            field(
                "session_lifetime",
                "Session lifetime",
                Text,
                "A web UI session ends this long after login, active or not. Default 12h.",
            ),
        ],
    },
    Section {
        key: "metrics",
        title: "Metrics",
        repeated: false,
        kinds: &[],
        fields: &[field(
            "listen",
            "Listen address",
            Text,
            "Plain HTTP address:port for GET /metrics. Default 0.0.0.0:9108.",
        )],
    },
    Section {
        key: "uplink",
        title: "Uplink",
        repeated: false,
        kinds: &[],
        fields: &[
            required(field(
                "url",
                "URL",
                Text,
                "The platform's endpoint, https only.",
            )),
            field(
                "token",
                "Token",
                Secret,
                "Sent as Authorization: Bearer. Or token_file.",
            ),
            field(
                "token_file",
                "Token file",
                Text,
                "File holding the token (at most 4 KiB).",
            ),
            field(
                "client_cert_file",
                "Client certificate file",
                Text,
                "Mutual TLS, with or instead of the token; needs client_key_file.",
            ),
            field(
                "client_key_file",
                "Client key file",
                Text,
                "Private key of client_cert_file.",
            ),
            field(
                "ca_file",
                "CA file",
                Text,
                "PEM trust anchors for the platform. Default: the system's roots.",
            ),
            field(
                "batch_max_events",
                "Events per batch",
                Integer,
                "1-10000. Default 500.",
            ),
            field(
                "batch_max_bytes",
                "Bytes per batch",
                Integer,
                "Payload bytes per batch. Default 1048576 (1 MiB).",
            ),
            field(
                "batch_max_wait",
                "Batch wait",
                Text,
                "How long a small batch waits for company, like \"1s\". Default 1s.",
            ),
            field(
                "timeout",
                "Timeout",
                Text,
                "Per request, like \"30s\". Default 30s.",
            ),
            field(
                "status_interval",
                "Status interval",
                Text,
                "Between status reports; \"0s\" for none. Default 60s.",
            ),
        ],
    },
    Section {
        key: "spool",
        title: "Spool",
        repeated: false,
        kinds: &[],
        fields: &[field(
            "max_bytes",
            "Maximum size",
            Integer,
            "Bytes of waiting events kept at most. Default 1073741824 (1 GiB).",
        )],
    },
    Section {
        key: "checks",
        title: "Checks",
        repeated: true,
        kinds: CHECK_KINDS,
        fields: CHECK_FIELDS,
    },
    Section {
        key: "tunnels",
        title: "Tunnels",
        repeated: true,
        kinds: TUNNEL_KINDS,
        fields: TUNNEL_FIELDS,
    },
    Section {
        key: "tunnels.peers",
        title: "WireGuard peers",
        repeated: true,
        kinds: &[],
        fields: PEER_FIELDS,
    },
    Section {
        key: "connectors",
        title: "Connectors",
        repeated: true,
        kinds: CONNECTOR_KINDS,
        fields: CONNECTOR_FIELDS,
    },
    Section {
        key: "relays",
        title: "Relays",
        repeated: true,
        kinds: &[],
        fields: RELAY_FIELDS,
    },
];

const CHECK_FIELDS: &[Field] = &[
    required(field(
        "name",
        "Name",
        Text,
        "Unique; the check label and the API path. Letters, digits, - _ .",
    )),
    required(field(
        "kind",
        "Kind",
        FieldType::Choice(CHECK_KINDS),
        "What the check speaks.",
    )),
    field(
        "target",
        "Target",
        Text,
        "host:port, [v6]:port, or host where the kind has a default port. Required except for http.",
    ),
    field(
        "interval",
        "Interval",
        Text,
        "Time between runs, 100ms-24h, like \"10s\". Default 10s.",
    ),
    field(
        "timeout",
        "Timeout",
        Text,
        "Limit of one run, shorter than the interval. Default 3s, or 3/4 of a shorter interval.",
    ),
    field(
        "rise",
        "Rise",
        Integer,
        "Consecutive successes before the check is up (1-100). Default 1.",
    ),
    field(
        "fall",
        "Fall",
        Integer,
        "Consecutive failures before the check is down (1-100). Default 1.",
    ),
    field(
        "source",
        "Source address",
        Text,
        "Source IP address of the check's packets.",
    ),
    field(
        "interface",
        "Interface",
        Text,
        "Bind to this interface, e.g. a tunnel's, so the check follows it.",
    ),
    only(
        &["tls"],
        field(
            "server_name",
            "Server name",
            Text,
            "SNI and verified name. Default: the target host.",
        ),
    ),
    only(
        &["tls", "http"],
        field(
            "ca_file",
            "CA file",
            Text,
            "PEM trust anchors. Default: the system store.",
        ),
    ),
    only(
        &["tls", "http"],
        field(
            "insecure_skip_verify",
            "Skip verification",
            Bool,
            "Accept any certificate.",
        ),
    ),
    only(
        &["http"],
        required(field(
            "url",
            "URL",
            Text,
            "http:// or https:// URL to request; target, if set, is connected to instead of its host.",
        )),
    ),
    only(
        &["http"],
        field(
            "preset",
            "Preset",
            FieldType::Choice(&["sap-icm"]),
            "sap-icm: a URL without a path probes /sap/public/icman/ping and expects 200.",
        ),
    ),
    only(
        &["http"],
        field(
            "expect_status",
            "Expected statuses",
            List,
            "HTTP status codes, one per line. Default: any 2xx.",
        ),
    ),
    only(
        &["http"],
        field(
            "body_contains",
            "Body contains",
            Text,
            "Text searched in the first 64 KiB of the body.",
        ),
    ),
    only(
        &["dns"],
        required(field("query", "Query", Text, "The name looked up.")),
    ),
    only(
        &["dns"],
        field(
            "record_type",
            "Record type",
            RECORD_TYPES,
            "Default A.",
        ),
    ),
    only(
        &["dns"],
        field(
            "expect_answer",
            "Expected answers",
            List,
            "Accepted answers, one per line. Default: any answer of the type.",
        ),
    ),
    only(
        &["dns", "sip-options"],
        field("transport", "Transport", TRANSPORTS, "Default udp."),
    ),
    only(
        &["icmp"],
        field(
            "count",
            "Count",
            Integer,
            "Echo requests per run. Default 3.",
        ),
    ),
    only(
        &["icmp"],
        field(
            "max_loss_percent",
            "Maximum loss (%)",
            Integer,
            "Down above this loss. Default 100.",
        ),
    ),
    only(
        &["oracle-tns"],
        field(
            "service_name",
            "Service name",
            Text,
            "Connect to this service instead of a TNS ping.",
        ),
    ),
    only(
        &["saprouter"],
        field(
            "route",
            "Route",
            Text,
            "Hops after the router in SAP notation, like /H/sapgw01/S/3300.",
        ),
    ),
    only(
        &["saprouter"],
        field(
            "route_password",
            "Route password",
            Secret,
            "Password of the last hop. Or route_password_file.",
        ),
    ),
    only(
        &["saprouter"],
        field(
            "route_password_file",
            "Route password file",
            Text,
            "File holding the route password (at most 4 KiB).",
        ),
    ),
    only(
        &["asterisk-ami"],
        field("username", "Username", Text, "The AMI user (manager.conf)."),
    ),
    only(
        &["asterisk-ami"],
        field(
            "secret",
            "Secret",
            Secret,
            "The AMI user's secret. Or secret_file.",
        ),
    ),
    only(
        &["asterisk-ami"],
        field(
            "secret_file",
            "Secret file",
            Text,
            "File holding the secret (at most 4 KiB).",
        ),
    ),
    only(
        &["sip-options"],
        field(
            "request_uri",
            "Request URI",
            Text,
            "Default sip:host:port.",
        ),
    ),
    only(
        &["sip-options"],
        field("from_user", "From user", Text, "Default siteward."),
    ),
    only(
        &["sip-options"],
        field(
            "accept_any_status",
            "Accept any status",
            Bool,
            "Up on any final response, not only 2xx.",
        ),
    ),
];

const WIREGUARD: &[&str] = &["wireguard"];
const IPSEC: &[&str] = &["ipsec"];
const EVERY_TUNNEL: &[&str] = &["wireguard", "ipsec"];

const TUNNEL_FIELDS: &[Field] = &[
    required(field(
        "name",
        "Name",
        Text,
        "Unique among tunnels; the tunnel label and the API path.",
    )),
    required(field(
        "kind",
        "Kind",
        FieldType::Choice(TUNNEL_KINDS),
        "wireguard or ipsec.",
    )),
    required(field(
        "interface",
        "Interface",
        Text,
        "Name of the TUN device made for the tunnel (1-15 characters, no / : or spaces), unique.",
    )),
    only(
        WIREGUARD,
        field(
            "private_key",
            "Private key",
            Secret,
            "This end's key, base64 as wg genkey prints it. Or private_key_file.",
        ),
    ),
    only(
        WIREGUARD,
        field(
            "private_key_file",
            "Private key file",
            Text,
            "File holding this end's key.",
        ),
    ),
    only(
        WIREGUARD,
        field(
            "listen_port",
            "Listen port",
            Integer,
            "UDP port (1-65535), unique; needed for peers that contact this end. Default: chosen by the kernel.",
        ),
    ),
    only(
        EVERY_TUNNEL,
        field(
            "addresses",
            "Addresses",
            List,
            "This end's addresses on the interface with their prefix, like 10.99.0.1/24, one per line.",
        ),
    ),
    only(
        EVERY_TUNNEL,
        field(
            "mtu",
            "MTU",
            Integer,
            "1280-9000. Default 1420 (wireguard), 1400 (ipsec).",
        ),
    ),
    only(
        IPSEC,
        field(
            "local_addrs",
            "Local addresses",
            List,
            "This box's IP addresses IKE is spoken from, one per line. Default: any.",
        ),
    ),
    only(
        IPSEC,
        field(
            "remote_addrs",
            "Remote addresses",
            List,
            "The peer's IP addresses or DNS names, no port, tried in order. Needed with start initiate or trap.",
        ),
    ),
    only(
        IPSEC,
        field(
            "local_id",
            "Local identity",
            Text,
            "This end's identity. Default: the local address (psk), the certificate's subject (cert).",
        ),
    ),
    only(
        IPSEC,
        field(
            "remote_id",
            "Remote identity",
            Text,
            "The identity the peer must prove. Default: any that authenticates.",
        ),
    ),
    only(
        IPSEC,
        required(field(
            "auth",
            "Authentication",
            FieldType::Choice(&["psk", "cert"]),
            "Pre-shared key or certificates.",
        )),
    ),
    only(
        IPSEC,
        field(
            "psk",
            "Pre-shared key",
            Secret,
            "With auth psk: at least 16 bytes, used as written. Or psk_file.",
        ),
    ),
    only(
        IPSEC,
        field(
            "psk_file",
            "Pre-shared key file",
            Text,
            "File holding the pre-shared key.",
        ),
    ),
    only(
        IPSEC,
        field(
            "cert_file",
            "Certificate file",
            Text,
            "With auth cert: this end's certificate (PEM, may be followed by intermediates).",
        ),
    ),
    only(
        IPSEC,
        field(
            "key_file",
            "Key file",
            Text,
            "With auth cert: its private key (PEM, no passphrase).",
        ),
    ),
    only(
        IPSEC,
        field(
            "ca_file",
            "CA file",
            Text,
            "With auth cert: the CA certificate(s) the peer's must chain to (PEM).",
        ),
    ),
    only(
        IPSEC,
        field(
            "proposals",
            "IKE proposals",
            List,
            "strongSwan syntax, in order of preference, one per line. Default aes256gcm16-prfsha256-x25519, aes256-sha256-modp2048.",
        ),
    ),
    only(
        IPSEC,
        field(
            "esp_proposals",
            "ESP proposals",
            List,
            "strongSwan syntax, in order of preference, one per line. Default aes256gcm16, aes256-sha256.",
        ),
    ),
    only(
        IPSEC,
        required(field(
            "local_ts",
            "Local networks",
            List,
            "This side's networks, like 192.0.2.0/24, one per line.",
        )),
    ),
    only(
        IPSEC,
        required(field(
            "remote_ts",
            "Remote networks",
            List,
            "The far side's networks, routed through the interface, one per line.",
        )),
    ),
    only(
        IPSEC,
        field(
            "dpd_delay",
            "DPD delay",
            Text,
            "Idle time before a liveness check, whole seconds up to 1h; \"0s\" turns it off. Default 30s.",
        ),
    ),
    only(
        IPSEC,
        field(
            "dpd_action",
            "DPD action",
            FieldType::Choice(&["restart", "clear"]),
            "When the peer stops answering: negotiate again, or tear down and wait. Default restart.",
        ),
    ),
    only(
        IPSEC,
        field(
            "rekey_time",
            "IKE rekey time",
            Text,
            "IKE SA rekeying interval, 1m-7days. Default 4h.",
        ),
    ),
    only(
        IPSEC,
        field(
            "child_rekey_time",
            "ESP rekey time",
            Text,
            "ESP SA rekeying interval, 1m-7days. Default 1h.",
        ),
    ),
    only(
        IPSEC,
        field(
            "child_rekey_bytes",
            "ESP rekey bytes",
            Integer,
            "Also rekey after this many bytes, at least 1048576. Default: by time only.",
        ),
    ),
    only(
        IPSEC,
        field(
            "start",
            "Start",
            FieldType::Choice(&["initiate", "respond", "trap"]),
            "initiate: now and after failures; respond: wait for the peer; trap: when traffic arrives. Default respond.",
        ),
    ),
    only(
        IPSEC,
        field(
            "encap",
            "Force UDP encapsulation",
            Bool,
            "UDP-encapsulate ESP even without NAT. Default false.",
        ),
    ),
    only(
        IPSEC,
        field(
            "local_port",
            "Local IKE port",
            Integer,
            "IKE's UDP port here, not 4500. Default 500.",
        ),
    ),
    only(
        IPSEC,
        field(
            "remote_port",
            "Remote IKE port",
            Integer,
            "IKE's UDP port at the peer, not 4500. Default 500.",
        ),
    ),
    only(
        IPSEC,
        field(
            "fragmentation",
            "IKE fragmentation",
            Bool,
            "RFC 7383, so certificate exchanges survive small MTUs. Default true.",
        ),
    ),
];

const PEER_FIELDS: &[Field] = &[
    required(field(
        "name",
        "Name",
        Text,
        "Unique within the tunnel; the peer label.",
    )),
    required(field(
        "public_key",
        "Public key",
        Text,
        "The peer's key (wg pubkey), base64 of 32 bytes.",
    )),
    field(
        "preshared_key",
        "Pre-shared key",
        Secret,
        "Optional symmetric key (wg genpsk). Or preshared_key_file.",
    ),
    field(
        "preshared_key_file",
        "Pre-shared key file",
        Text,
        "File holding the pre-shared key.",
    ),
    field(
        "endpoint",
        "Endpoint",
        Text,
        "host:port or [v6]:port to send handshakes to. Default: none, the peer waits to be contacted.",
    ),
    required(field(
        "allowed_ips",
        "Allowed IPs",
        List,
        "Networks routed to the peer and accepted from it, like 10.20.0.0/16, one per line; empty for none.",
    )),
    field(
        "persistent_keepalive",
        "Persistent keepalive",
        Text,
        "Keepalive interval holding a NAT open, whole seconds like \"25s\". Default: none.",
    ),
];

const WEBHOOK: &[&str] = &["webhook"];
const AMI: &[&str] = &["asterisk-ami"];
const FILE_DROP: &[&str] = &["file-drop"];
const SYSLOG: &[&str] = &["syslog"];

const CONNECTOR_FIELDS: &[Field] = &[
    required(field(
        "name",
        "Name",
        Text,
        "Unique; sent with each event as \"connector\".",
    )),
    required(field(
        "kind",
        "Kind",
        FieldType::Choice(CONNECTOR_KINDS),
        "Where the events come from.",
    )),
    field(
        "when_full",
        "When the spool is full",
        FieldType::Choice(&["block", "drop_oldest"]),
        "block: refuse new events; drop_oldest: delete the oldest, counted. Default block.",
    ),
    only(
        WEBHOOK,
        required(field(
            "listen",
            "Listen address",
            Text,
            "address:port to accept POSTs on.",
        )),
    ),
    only(
        WEBHOOK,
        field("path", "Path", Text, "URL path to POST to. Default /."),
    ),
    only(
        WEBHOOK,
        field(
            "max_body_bytes",
            "Maximum body size",
            Integer,
            "Larger bodies get 413. Default 1048576 (1 MiB).",
        ),
    ),
    only(
        WEBHOOK,
        field(
            "hmac_secret",
            "HMAC secret",
            Secret,
            "Optional: require a signature made with this secret. Or hmac_secret_file.",
        ),
    ),
    only(
        WEBHOOK,
        field(
            "hmac_secret_file",
            "HMAC secret file",
            Text,
            "File holding the HMAC secret.",
        ),
    ),
    only(
        WEBHOOK,
        field(
            "hmac_header",
            "HMAC header",
            Text,
            "Header with the hex HMAC-SHA256 of the body. Default X-Hub-Signature-256.",
        ),
    ),
    only(
        WEBHOOK,
        field(
            "cert_file",
            "Certificate file",
            Text,
            "Serve HTTPS with this certificate (with key_file).",
        ),
    ),
    only(
        WEBHOOK,
        field("key_file", "Key file", Text, "Private key of cert_file."),
    ),
    only(
        AMI,
        required(field(
            "target",
            "Target",
            Text,
            "The PBX's AMI address, host[:port]; port 5038 by default.",
        )),
    ),
    only(
        AMI,
        required(field(
            "username",
            "Username",
            Text,
            "The AMI user (manager.conf).",
        )),
    ),
    only(
        AMI,
        field(
            "secret",
            "Secret",
            Secret,
            "The AMI user's secret. Or secret_file.",
        ),
    ),
    only(
        AMI,
        field(
            "secret_file",
            "Secret file",
            Text,
            "File holding the secret.",
        ),
    ),
    only(
        AMI,
        field(
            "events",
            "Events",
            List,
            "AMI events to keep, like Hangup, one per line. Default: every event.",
        ),
    ),
    only(
        AMI,
        field(
            "reconnect_max",
            "Longest reconnect wait",
            Text,
            "Longest wait between reconnections. Default 60s.",
        ),
    ),
    only(
        AMI,
        field(
            "source",
            "Source address",
            Text,
            "Where the AMI connection leaves the box.",
        ),
    ),
    only(
        AMI,
        field(
            "interface",
            "Interface",
            Text,
            "Bind the AMI connection to this interface, e.g. a tunnel's.",
        ),
    ),
    only(
        FILE_DROP,
        required(field(
            "directory",
            "Directory",
            Text,
            "Must exist; done/ and failed/ are made inside.",
        )),
    ),
    only(
        FILE_DROP,
        field(
            "settle",
            "Settle time",
            Text,
            "A file counts as complete when unchanged this long (or renamed in). Default 5s.",
        ),
    ),
    only(
        FILE_DROP,
        field(
            "format",
            "Format",
            FieldType::Choice(&["whole", "csv", "json-lines"]),
            "Default whole.",
        ),
    ),
    only(
        FILE_DROP,
        field(
            "max_file_bytes",
            "Maximum file size",
            Integer,
            "Larger files go to failed/. Default 268435456 (256 MiB).",
        ),
    ),
    only(
        SYSLOG,
        field(
            "udp",
            "UDP listen address",
            Text,
            "address:port for UDP syslog (514 is syslog's); udp and/or tcp.",
        ),
    ),
    only(
        SYSLOG,
        field(
            "tcp",
            "TCP listen address",
            Text,
            "address:port for TCP syslog; udp and/or tcp.",
        ),
    ),
    only(
        SYSLOG,
        field(
            "max_message_bytes",
            "Maximum message size",
            Integer,
            "480 to 1048576. Default 65536 (64 KiB).",
        ),
    ),
];

const RELAY_FIELDS: &[Field] = &[
    required(field("name", "Name", Text, "Unique among relays.")),
    required(field(
        "listen",
        "Listen address",
        Text,
        "address:port accepted on.",
    )),
    required(field(
        "target",
        "Target",
        Text,
        "The service to forward to, host:port.",
    )),
    required(field(
        "allow",
        "Allowed sources",
        List,
        "Source networks allowed to connect, like 203.0.113.0/24, one per line.",
    )),
    field(
        "max_connections",
        "Maximum connections",
        Integer,
        "Default 1024.",
    ),
    field(
        "idle_timeout",
        "Idle timeout",
        Text,
        "No byte either way this long closes the connection. Default 1h.",
    ),
    field(
        "source",
        "Source address",
        Text,
        "Where the connection toward the target leaves the box.",
    ),
    field(
        "interface",
        "Interface",
        Text,
        "Bind the connection toward the target to this interface, e.g. a tunnel's.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{
        connector_keys_of_kind, keys_of_kind, tunnel_keys_of_kind, RawAdmin, RawAppliance,
        RawCheck, RawConnector, RawMetrics, RawPeer, RawRelay, RawSpool, RawTunnel, RawUplink,
    };
    use crate::validate::keys_of;
    use std::collections::BTreeSet;

    /// The serde field names of each section's raw struct (`peers` of a tunnel is its own
    /// section, not a field).
    fn raw_keys(section: &str) -> BTreeSet<&'static str> {
        let keys = match section {
            "appliance" => keys_of::<RawAppliance>(),
            "admin" => keys_of::<RawAdmin>(),
            "metrics" => keys_of::<RawMetrics>(),
            "uplink" => keys_of::<RawUplink>(),
            "spool" => keys_of::<RawSpool>(),
            "checks" => keys_of::<RawCheck>(),
            "tunnels" => keys_of::<RawTunnel>(),
            "tunnels.peers" => keys_of::<RawPeer>(),
            "connectors" => keys_of::<RawConnector>(),
            "relays" => keys_of::<RawRelay>(),
            other => panic!("no raw struct for section {other}"),
        };
        assert!(!keys.is_empty(), "{section}: no field names captured");
        keys.iter().copied().filter(|key| *key != "peers").collect()
    }

    fn kind_keys(section: &str, kind: &str) -> BTreeSet<&'static str> {
        let keys = match section {
            "checks" => keys_of_kind(kind),
            "tunnels" => tunnel_keys_of_kind(kind),
            "connectors" => connector_keys_of_kind(kind),
            other => panic!("{other} has no kinds"),
        };
        keys.iter().copied().filter(|key| *key != "peers").collect()
    }

    #[test]
    fn the_sections_are_the_top_level_keys_and_the_peers() {
        let keys: Vec<&str> = sections().iter().map(|s| s.key).collect();
        assert_eq!(
            keys,
            [
                "appliance",
                "admin",
                "metrics",
                "uplink",
                "spool",
                "checks",
                "tunnels",
                "tunnels.peers",
                "connectors",
                "relays"
            ]
        );
        for s in sections() {
            assert_eq!(section(s.key).map(|found| found.key), Some(s.key));
            let repeated = ["checks", "tunnels", "tunnels.peers", "connectors", "relays"];
            assert_eq!(s.repeated, repeated.contains(&s.key), "{}", s.key);
        }
        assert!(section("nope").is_none());
    }

    #[test]
    fn every_section_has_exactly_the_keys_of_its_raw_struct() {
        for s in sections() {
            let schema: Vec<&str> = s.fields.iter().map(|f| f.key).collect();
            let unique: BTreeSet<&str> = schema.iter().copied().collect();
            assert_eq!(unique.len(), schema.len(), "{}: a key twice", s.key);
            assert_eq!(unique, raw_keys(s.key), "{}", s.key);
        }
    }

    #[test]
    fn the_kind_specific_fields_are_the_keys_of_each_kind() {
        for s in sections().iter().filter(|s| !s.kinds.is_empty()) {
            let kind_field = s.field("kind").expect("a kinded section has a kind field");
            assert_eq!(kind_field.ty, FieldType::Choice(s.kinds), "{}", s.key);
            assert!(kind_field.kinds.is_none() && kind_field.required);
            let mut all_kind_keys = BTreeSet::new();
            for kind in s.kinds {
                let own: BTreeSet<&str> = s
                    .fields
                    .iter()
                    .filter(|f| f.kinds.is_some() && f.is_for(Some(kind)))
                    .map(|f| f.key)
                    .collect();
                assert_eq!(own, kind_keys(s.key, kind), "{}: kind {kind}", s.key);
                all_kind_keys.extend(own);
                // fields_for gives the common ones and the kind's own, nothing else.
                let for_kind: BTreeSet<&str> = s.fields_for(Some(kind)).map(|f| f.key).collect();
                let common: BTreeSet<&str> = s.fields_for(None).map(|f| f.key).collect();
                assert_eq!(
                    for_kind,
                    common.union(&kind_keys(s.key, kind)).copied().collect()
                );
            }
            // A kind list naming a kind the section does not have would be dead.
            for f in s.fields {
                for kind in f.kinds.unwrap_or(&[]) {
                    assert!(s.kinds.contains(kind), "{}.{}: {kind}", s.key, f.key);
                }
            }
            // The common fields are those of no kind.
            let common: BTreeSet<&str> = s.fields_for(None).map(|f| f.key).collect();
            let expected: BTreeSet<&str> = raw_keys(s.key)
                .difference(&all_kind_keys)
                .copied()
                .collect();
            assert_eq!(common, expected, "{}", s.key);
        }
        for s in sections().iter().filter(|s| s.kinds.is_empty()) {
            assert!(s.fields.iter().all(|f| f.kinds.is_none()), "{}", s.key);
            assert_eq!(s.fields_for(None).count(), s.fields.len());
        }
    }

    #[test]
    fn secrets_are_secret_fields_and_their_files_are_text() {
        let mut secret_fields = BTreeSet::new();
        for s in sections() {
            for f in s.fields {
                // A key is a secret in every section that has it, or in none.
                let is_secret = f.ty == FieldType::Secret;
                assert_eq!(is_secret_key(f.key), is_secret, "{}.{}", s.key, f.key);
                if is_secret {
                    secret_fields.insert(f.key);
                    let file = format!("{}_file", f.key);
                    let sibling = s.field(&file).expect("a secret has a *_file sibling");
                    assert_eq!(sibling.ty, FieldType::Text);
                    assert_eq!(sibling.kinds, f.kinds, "{}.{file}", s.key);
                }
            }
        }
        // Nothing listed that no field is.
        let listed: BTreeSet<&str> = SECRET_KEYS.iter().copied().collect();
        assert_eq!(listed, secret_fields);
        assert!(!is_secret_key("secret_file") && !is_secret_key("name"));
    }

    #[test]
    fn choices_are_what_validation_accepts() {
        use crate::model::{DnsRecordType, DpdAction, StartAction};
        let choices = |section: &str, key: &str| match section_field(section, key).ty {
            FieldType::Choice(values) => values.to_vec(),
            other => panic!("{section}.{key} is {other:?}"),
        };
        let record_types: Vec<&str> = DnsRecordType::ALL.iter().map(|(n, _)| *n).collect();
        assert_eq!(choices("checks", "record_type"), record_types);
        let dpd_actions: Vec<&str> = DpdAction::ALL.iter().map(|(n, _)| *n).collect();
        assert_eq!(choices("tunnels", "dpd_action"), dpd_actions);
        let starts: Vec<&str> = StartAction::ALL.iter().map(|(n, _)| *n).collect();
        assert_eq!(choices("tunnels", "start"), starts);
    }

    fn section_field(section_key: &str, key: &str) -> &'static Field {
        section(section_key)
            .and_then(|s| s.field(key))
            .unwrap_or_else(|| panic!("{section_key}.{key} not in the schema"))
    }

    /// A value of the field's type, as the form would submit it; every kind of value that
    /// validation parses from a string is a string here.
    pub(crate) fn plausible_value(field: &Field) -> toml_edit::Item {
        use toml_edit::{value, Array};
        match field.ty {
            FieldType::Text | FieldType::Secret => value("x"),
            FieldType::Integer => value(1),
            FieldType::Bool => value(true),
            FieldType::Choice(values) => value(values.first().copied().unwrap_or("x")),
            FieldType::List if field.list_of_integers() => value(Array::from_iter([200i64])),
            FieldType::List => value(Array::from_iter(["x"])),
        }
    }

    #[test]
    fn an_entry_with_every_field_of_a_kind_decodes_as_its_raw_struct() {
        fn decode<T: serde::de::DeserializeOwned>(table: &toml_edit::Table, what: &str) {
            let text = table.to_string();
            if let Err(e) = toml::from_str::<T>(&text) {
                panic!("{what}: {e}\n{text}");
            }
        }
        fn entry(s: &Section, kind: Option<&str>) -> toml_edit::Table {
            let mut table = toml_edit::Table::new();
            for f in s.fields_for(kind) {
                table.insert(f.key, plausible_value(f));
            }
            if let Some(kind) = kind {
                table.insert("kind", toml_edit::value(kind));
            }
            table
        }
        for s in sections() {
            let kinds: Vec<Option<&str>> = if s.kinds.is_empty() {
                vec![None]
            } else {
                s.kinds.iter().map(|k| Some(*k)).collect()
            };
            for kind in kinds {
                let table = entry(s, kind);
                let what = format!("{} {kind:?}", s.key);
                match s.key {
                    "appliance" => decode::<RawAppliance>(&table, &what),
                    "admin" => decode::<RawAdmin>(&table, &what),
                    "metrics" => decode::<RawMetrics>(&table, &what),
                    "uplink" => decode::<RawUplink>(&table, &what),
                    "spool" => decode::<RawSpool>(&table, &what),
                    "checks" => decode::<RawCheck>(&table, &what),
                    "tunnels" => decode::<RawTunnel>(&table, &what),
                    "tunnels.peers" => decode::<RawPeer>(&table, &what),
                    "connectors" => decode::<RawConnector>(&table, &what),
                    "relays" => decode::<RawRelay>(&table, &what),
                    other => panic!("no raw struct for section {other}"),
                }
            }
        }
    }

    #[test]
    fn a_whole_file_of_every_kind_has_no_unknown_key() {
        // Through the real parser: whatever else it reports, no key is unknown and no
        // value has the wrong type.
        let mut doc = toml_edit::DocumentMut::new();
        for s in sections().iter().filter(|s| !s.repeated) {
            let mut table = toml_edit::Table::new();
            for f in s.fields {
                table.insert(f.key, plausible_value(f));
            }
            doc.insert(s.key, toml_edit::Item::Table(table));
        }
        for s in sections()
            .iter()
            .filter(|s| s.repeated && s.key != "tunnels.peers")
        {
            let mut array = toml_edit::ArrayOfTables::new();
            let kinds: Vec<Option<&str>> = if s.kinds.is_empty() {
                vec![None]
            } else {
                s.kinds.iter().map(|k| Some(*k)).collect()
            };
            for kind in kinds {
                let mut table = toml_edit::Table::new();
                for f in s.fields_for(kind) {
                    table.insert(f.key, plausible_value(f));
                }
                if let Some(kind) = kind {
                    table.insert("kind", toml_edit::value(kind));
                }
                if kind == Some("wireguard") {
                    let peers = section("tunnels.peers").expect("peers section");
                    let mut peer = toml_edit::Table::new();
                    for f in peers.fields {
                        peer.insert(f.key, plausible_value(f));
                    }
                    let mut array = toml_edit::ArrayOfTables::new();
                    array.push(peer);
                    table.insert("peers", toml_edit::Item::ArrayOfTables(array));
                }
                array.push(table);
            }
            doc.insert(s.key, toml_edit::Item::ArrayOfTables(array));
        }
        let text = doc.to_string();
        let errors = crate::parse(&text, std::path::Path::new("/nonexistent"))
            .expect_err("plausible values are not all valid")
            .field_errors();
        let wrong: Vec<_> = errors
            .iter()
            .filter(|e| {
                e.message.starts_with("unknown key")
                    || e.message.starts_with("unknown section")
                    || e.message.starts_with("invalid type")
                    || e.message.contains("not used by")
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}\n{text}");
    }
}
