//! The OpenAPI 3.1 document of the REST API, served at `GET /api/v1/openapi.json`.
//!
//! It is served without a token: it is the same for every appliance of a version (no
//! names, addresses or counts of this box), it describes what the README documents, and
//! it grants nothing; `/api/v1/health` already tells the version. Tools that build clients
//! or browse the API fetch it before they hold a token.
//!
//! [`OPERATIONS`] is the one list of routes the document is built from. A test reads the
//! routes the admin router registers (`.route(...)` in `api.rs` and the modules merged into
//! its `resources()`) and fails when the two lists differ in a path or a method.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{json, Map, Value};

/// An HTTP method of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Delete => "delete",
        }
    }
}

/// A query parameter.
pub struct Param {
    pub name: &'static str,
    /// `integer`, `string`, or a `string` from `choices`.
    pub ty: &'static str,
    pub choices: &'static [&'static str],
    pub required: bool,
    pub description: &'static str,
}

/// What a request carries.
pub enum Body {
    None,
    /// JSON, of the named schema in `components.schemas`.
    Json(&'static str),
    /// A configuration file (TOML).
    Toml,
}

/// What a successful request gets.
pub enum Content {
    /// JSON, of the named schema.
    Json(&'static str),
    Toml,
}

/// One method on one path.
pub struct Operation {
    pub method: Method,
    /// As axum routes it: `/api/v1/checks/{name}`.
    pub path: &'static str,
    pub id: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    /// Answered without a bearer token.
    pub public: bool,
    pub query: &'static [Param],
    pub body: Body,
    pub status: u16,
    pub content: Content,
    /// Error statuses besides 401 (which every operation that needs a token has).
    pub errors: &'static [u16],
}

const fn op(method: Method, path: &'static str, id: &'static str, tag: &'static str) -> Operation {
    Operation {
        method,
        path,
        id,
        tag,
        summary: "",
        description: "",
        public: false,
        query: &[],
        body: Body::None,
        status: 200,
        content: Content::Json("Object"),
        errors: &[],
    }
}

/// An optional query parameter without choices.
const fn param(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param {
        name,
        ty,
        choices: &[],
        required: false,
        description,
    }
}

const LIMIT: Param = param(
    "limit",
    "integer",
    "How many to list at most (default 100, at most 10000).",
);

const REVISION: Param = Param {
    required: true,
    ..param(
        "revision",
        "integer",
        "The candidate's revision the change is made against, as GET \
         /api/v1/config/candidate shows it (0 when nothing is staged). A stale one gets 409.",
    )
};

use Method::{Delete, Get, Post, Put};

/// Every route of the API.
pub const OPERATIONS: &[Operation] = &[
    // ---- health and this document ----
    Operation {
        summary: "Liveness, version and uptime",
        public: true,
        content: Content::Json("Health"),
        ..op(Get, "/api/v1/health", "health", "health")
    },
    Operation {
        summary: "This document",
        public: true,
        ..op(Get, "/api/v1/openapi.json", "openapi", "health")
    },
    // ---- checks ----
    Operation {
        summary: "Every check with its state, last run and recent history",
        content: Content::Json("CheckList"),
        ..op(Get, "/api/v1/checks", "listChecks", "checks")
    },
    Operation {
        summary: "One check",
        content: Content::Json("Check"),
        errors: &[404],
        ..op(Get, "/api/v1/checks/{name}", "getCheck", "checks")
    },
    Operation {
        summary: "Run a check now",
        description: "Runs the check's probe once, outside its schedule, and counts the run \
                      like a scheduled one.",
        content: Content::Json("CheckRunNow"),
        errors: &[404],
        ..op(Post, "/api/v1/checks/{name}/run", "runCheck", "checks")
    },
    // ---- tunnels ----
    Operation {
        summary: "Every tunnel with its peers or SAs",
        content: Content::Json("TunnelList"),
        ..op(Get, "/api/v1/tunnels", "listTunnels", "tunnels")
    },
    Operation {
        summary: "One tunnel",
        content: Content::Json("Tunnel"),
        errors: &[404],
        ..op(Get, "/api/v1/tunnels/{name}", "getTunnel", "tunnels")
    },
    Operation {
        summary: "Rekey an IPsec tunnel now",
        description: "Starts a make-before-break rekey of the CHILD_SA (default) or the IKE \
                      SA; the new SAs show in the tunnel's status when the exchange completes.",
        query: &[Param {
            choices: &["child", "ike"],
            ..param("sa", "string", "Which SA to rekey (default child).")
        }],
        status: 202,
        content: Content::Json("Rekeying"),
        errors: &[400, 404, 409, 503],
        ..op(Post, "/api/v1/tunnels/{name}/rekey", "rekeyTunnel", "tunnels")
    },
    // ---- connectors, relays, spool ----
    Operation {
        summary: "Every connector with its counters",
        content: Content::Json("ConnectorList"),
        ..op(Get, "/api/v1/connectors", "listConnectors", "connectors")
    },
    Operation {
        summary: "Every TCP relay with its counters",
        content: Content::Json("RelayList"),
        ..op(Get, "/api/v1/relays", "listRelays", "relays")
    },
    Operation {
        summary: "The spool and the uplink's counters",
        content: Content::Json("Spool"),
        ..op(Get, "/api/v1/spool", "getSpool", "spool")
    },
    Operation {
        summary: "Events waiting for delivery, oldest first",
        query: &[LIMIT],
        content: Content::Json("EventList"),
        errors: &[400, 500],
        ..op(Get, "/api/v1/spool/events", "listSpoolEvents", "spool")
    },
    Operation {
        summary: "Dead letters: events the platform refused for good",
        query: &[LIMIT],
        content: Content::Json("DeadLetterList"),
        errors: &[400, 500],
        ..op(Get, "/api/v1/spool/dead-letters", "listDeadLetters", "spool")
    },
    Operation {
        summary: "Queue every dead letter for delivery again",
        content: Content::Json("Replayed"),
        errors: &[500],
        ..op(Post, "/api/v1/spool/replay", "replayDeadLetters", "spool")
    },
    Operation {
        summary: "Delete every event of one queue",
        query: &[Param {
            choices: &["events", "dead-letters"],
            required: true,
            ..param(
                "queue",
                "string",
                "Which queue to empty (no default: this deletes data).",
            )
        }],
        content: Content::Json("Purged"),
        errors: &[400, 500],
        ..op(Post, "/api/v1/spool/purge", "purgeSpool", "spool")
    },
    // ---- tools ----
    Operation {
        summary: "Ping from the box",
        description: "A one-shot check of kind icmp: `target`, and optionally `count` (at \
                      most 10), `max_loss_percent`, `timeout` (at most 10s), `source`, \
                      `interface`. At most 4 diagnostics run at once (429 beyond).",
        body: Body::Json("CheckKeys"),
        content: Content::Json("ToolRun"),
        errors: &[400, 429],
        ..op(Post, "/api/v1/tools/ping", "toolPing", "tools")
    },
    Operation {
        summary: "TCP port test from the box",
        description: "A one-shot check of kind tcp: `target` (`host:port`), and optionally \
                      `timeout`, `source`, `interface`.",
        body: Body::Json("CheckKeys"),
        content: Content::Json("ToolRun"),
        errors: &[400, 429],
        ..op(Post, "/api/v1/tools/tcp", "toolTcp", "tools")
    },
    Operation {
        summary: "DNS lookup from the box",
        body: Body::Json("DnsQuery"),
        content: Content::Json("DnsLookup"),
        errors: &[400, 429],
        ..op(Post, "/api/v1/tools/dns", "toolDns", "tools")
    },
    Operation {
        summary: "Run any check kind once",
        description: "The keys of one `[[checks]]` table (`kind`, `target` and the kind's \
                      own; secrets inline, never echoed), validated as the configuration \
                      file is.",
        body: Body::Json("CheckKeys"),
        content: Content::Json("ToolRun"),
        errors: &[400, 429],
        ..op(Post, "/api/v1/tools/check", "toolCheck", "tools")
    },
    Operation {
        summary: "A new WireGuard key pair",
        description: "The private key is handed out once and kept nowhere.",
        content: Content::Json("KeyPair"),
        errors: &[500],
        ..op(Post, "/api/v1/tools/wireguard/keypair", "wireguardKeyPair", "tools")
    },
    Operation {
        summary: "The appliance's public key and a [Peer] snippet for a tunnel's far end",
        query: &[param(
            "endpoint_host",
            "string",
            "The address or name the far end reaches this appliance at (default: the admin \
             listener's address).",
        )],
        content: Content::Json("PeerSnippet"),
        errors: &[400, 404],
        ..op(Get, "/api/v1/tools/wireguard/{tunnel}/peer", "wireguardPeer", "tools")
    },
    Operation {
        summary: "The daemon's recent log lines (long-poll)",
        query: &[
            param(
                "after",
                "integer",
                "Only lines after this sequence number (next_after of the previous page).",
            ),
            Param {
                choices: &["error", "warn", "info", "debug", "trace"],
                ..param(
                    "level",
                    "string",
                    "This level or more severe (default: every line kept).",
                )
            },
            param("limit", "integer", "Lines at most (default 200)."),
            param(
                "wait",
                "integer",
                "Seconds an empty page waits for a line (at most 25).",
            ),
        ],
        content: Content::Json("LogPage"),
        errors: &[400],
        ..op(Get, "/api/v1/logs", "logs", "tools")
    },
    // ---- configuration ----
    Operation {
        summary: "Every section and key of the file, for building forms",
        content: Content::Json("ConfigSchema"),
        ..op(Get, "/api/v1/config/schema", "configSchema", "config")
    },
    Operation {
        summary: "The running configuration, masked",
        content: Content::Json("RunningConfig"),
        errors: &[500],
        ..op(Get, "/api/v1/config/running", "configRunning", "config")
    },
    Operation {
        summary: "The staged candidate (or the running file when nothing is staged), masked",
        content: Content::Json("CandidateConfig"),
        errors: &[500],
        ..op(Get, "/api/v1/config/candidate", "configCandidate", "config")
    },
    Operation {
        summary: "Stage a whole file",
        description: "The body is the file; it is staged if it validates as check-config \
                      validates. Secrets written \"siteward-secret:omitted\" (as an export \
                      leaves them) are kept from the working configuration by section and \
                      name; encrypted ones need POST /api/v1/config/import.",
        query: &[REVISION],
        body: Body::Toml,
        content: Content::Json("Staged"),
        errors: &[400, 409, 422],
        ..op(Put, "/api/v1/config/candidate", "configStageFile", "config")
    },
    Operation {
        summary: "Drop the staged changes",
        content: Content::Json("Discarded"),
        errors: &[500],
        ..op(Delete, "/api/v1/config/candidate", "configDiscard", "config")
    },
    Operation {
        summary: "A single section's values, or every entry of a repeated one",
        description: "Values as a form shows them: text as typed (a list one item per line, \
                      empty when unset), booleans (null when unset), secrets only \
                      {\"set\": bool}.",
        content: Content::Json("SectionValues"),
        errors: &[404],
        ..op(Get, "/api/v1/config/candidate/{section}", "configGetSection", "config")
    },
    Operation {
        summary: "Edit a single section ([appliance], [admin], [metrics], [uplink], [spool])",
        description: "Keys not given are left as they are; an empty value (or null) removes \
                      a key, but keeps a secret (\"KEY.clear\": \"true\" removes that). \
                      Staged if the section validates; errors come back at their path.",
        body: Body::Json("EntryEdit"),
        content: Content::Json("Entry"),
        errors: &[400, 404, 405, 409, 422],
        ..op(Put, "/api/v1/config/candidate/{section}", "configPutSection", "config")
    },
    Operation {
        summary: "Add an entry to a repeated section ([[checks]], [[tunnels]], [[connectors]], [[relays]])",
        body: Body::Json("EntryEdit"),
        status: 201,
        content: Content::Json("Entry"),
        errors: &[400, 404, 405, 409, 422],
        ..op(Post, "/api/v1/config/candidate/{section}", "configAddEntry", "config")
    },
    Operation {
        summary: "Remove a single section",
        query: &[REVISION],
        content: Content::Json("Removed"),
        errors: &[404, 405, 409, 422],
        ..op(Delete, "/api/v1/config/candidate/{section}", "configRemoveSection", "config")
    },
    Operation {
        summary: "One entry of a repeated section",
        content: Content::Json("Entry"),
        errors: &[404],
        ..op(Get, "/api/v1/config/candidate/{section}/{index}", "configGetEntry", "config")
    },
    Operation {
        summary: "Edit one entry",
        description: "As for a single section; changing `kind` drops the old kind's keys.",
        body: Body::Json("EntryEdit"),
        content: Content::Json("Entry"),
        errors: &[400, 404, 409, 422],
        ..op(Put, "/api/v1/config/candidate/{section}/{index}", "configPutEntry", "config")
    },
    Operation {
        summary: "Remove one entry",
        query: &[REVISION],
        content: Content::Json("Removed"),
        errors: &[404, 409, 422],
        ..op(Delete, "/api/v1/config/candidate/{section}/{index}", "configRemoveEntry", "config")
    },
    Operation {
        summary: "Add a peer to a WireGuard tunnel",
        body: Body::Json("EntryEdit"),
        status: 201,
        content: Content::Json("Entry"),
        errors: &[400, 404, 409, 422],
        ..op(Post, "/api/v1/config/candidate/tunnels/{tunnel}/peers", "configAddPeer", "config")
    },
    Operation {
        summary: "One peer of a WireGuard tunnel",
        content: Content::Json("Entry"),
        errors: &[404],
        ..op(Get, "/api/v1/config/candidate/tunnels/{tunnel}/peers/{peer}", "configGetPeer", "config")
    },
    Operation {
        summary: "Edit one peer",
        body: Body::Json("EntryEdit"),
        content: Content::Json("Entry"),
        errors: &[400, 404, 409, 422],
        ..op(Put, "/api/v1/config/candidate/tunnels/{tunnel}/peers/{peer}", "configPutPeer", "config")
    },
    Operation {
        summary: "Remove one peer",
        query: &[REVISION],
        content: Content::Json("Removed"),
        errors: &[404, 409, 422],
        ..op(Delete, "/api/v1/config/candidate/tunnels/{tunnel}/peers/{peer}", "configRemovePeer", "config")
    },
    Operation {
        summary: "The candidate against the running configuration: masked diff and problems",
        content: Content::Json("Review"),
        errors: &[500],
        ..op(Get, "/api/v1/config/diff", "configDiff", "config")
    },
    Operation {
        summary: "Commit the staged candidate",
        description: "Validates, writes the file, records the version and applies it. With \
                      confirm_seconds the previous configuration comes back unless POST \
                      /api/v1/config/confirm arrives in time (also across a restart).",
        body: Body::Json("CommitRequest"),
        content: Content::Json("Committed"),
        errors: &[400, 409, 422, 500],
        ..op(Post, "/api/v1/config/commit", "configCommit", "config")
    },
    Operation {
        summary: "Confirm the commit waiting for confirmation",
        content: Content::Json("Confirmed"),
        errors: &[409, 500],
        ..op(Post, "/api/v1/config/confirm", "configConfirm", "config")
    },
    Operation {
        summary: "Restore the configuration before an unconfirmed commit now",
        content: Content::Json("RolledBackNow"),
        errors: &[409, 500],
        ..op(Post, "/api/v1/config/rollback-now", "configRollbackNow", "config")
    },
    Operation {
        summary: "The versions of the file that ran, newest first, and a pending commit",
        content: Content::Json("History"),
        errors: &[500],
        ..op(Get, "/api/v1/config/history", "configHistory", "config")
    },
    Operation {
        summary: "One version, masked, with its diff against the version before",
        content: Content::Json("VersionDetail"),
        errors: &[404, 500],
        ..op(Get, "/api/v1/config/history/{version}", "configVersion", "config")
    },
    Operation {
        summary: "Commit a version of the history again",
        body: Body::Json("RollbackRequest"),
        content: Content::Json("Committed"),
        errors: &[400, 404, 409, 422, 500],
        ..op(Post, "/api/v1/config/history/{version}/rollback", "configRollback", "config")
    },
    Operation {
        summary: "Export the running configuration",
        description: "The file as TOML with its secrets left out (\"siteward-secret:omitted\") \
                      or encrypted with a passphrase of at least 12 characters (Argon2id, \
                      AES-256-GCM).",
        body: Body::Json("ExportRequest"),
        content: Content::Toml,
        errors: &[400, 422],
        ..op(Post, "/api/v1/config/export", "configExport", "config")
    },
    Operation {
        summary: "Import an exported file as the candidate",
        description: "Encrypted secrets are decrypted with the passphrase, omitted ones kept \
                      from the working configuration by section and name; staged if it \
                      validates.",
        body: Body::Json("ImportRequest"),
        content: Content::Json("Staged"),
        errors: &[400, 409, 422],
        ..op(Post, "/api/v1/config/import", "configImport", "config")
    },
    Operation {
        summary: "The audit log, newest first",
        query: &[param(
            "limit",
            "integer",
            "Lines at most (default 100, at most 1000).",
        )],
        content: Content::Json("AuditLog"),
        errors: &[422, 500],
        ..op(Get, "/api/v1/audit", "audit", "audit")
    },
];

/// The path parameter `name` of `path`.
fn path_parameter(path: &str, name: &str) -> Option<(Value, &'static str)> {
    let in_config = path.starts_with("/api/v1/config/");
    let index = json!({ "type": "integer", "minimum": 0 });
    Some(match name {
        "name" if path.starts_with("/api/v1/checks/") => (string(), "The check's name."),
        "name" if path.starts_with("/api/v1/tunnels/") => (string(), "The tunnel's name."),
        "tunnel" if in_config => (index, "The tunnel's index in [[tunnels]], from 0."),
        "tunnel" => (string(), "The WireGuard tunnel's name."),
        "section" => (
            json!({ "type": "string", "enum": ["appliance", "admin", "metrics", "uplink", "spool", "checks", "tunnels", "connectors", "relays"] }),
            "A section of the file.",
        ),
        "index" => (
            index,
            "The entry's index in its section, from 0, in file order.",
        ),
        "peer" => (index, "The peer's index in the tunnel, from 0."),
        "version" => (
            json!({ "type": "integer", "minimum": 1 }),
            "A version number of the history.",
        ),
        _ => return None,
    })
}

/// The `{name}` placeholders of `path`.
pub fn placeholders(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

const TAGS: &[(&str, &str)] = &[
    ("health", "Liveness and this document (no token needed)"),
    ("checks", "Health checks"),
    ("tunnels", "WireGuard and IPsec tunnels"),
    ("connectors", "Relay connectors (sources)"),
    ("relays", "TCP relays"),
    ("spool", "The durable spool and the uplink"),
    (
        "tools",
        "Diagnostics from the box, WireGuard helpers, the live log",
    ),
    (
        "config",
        "The configuration: staged edits, review, commit-confirm, history, export and import",
    ),
    ("audit", "Who changed what, when, from where"),
];

fn error_status_description(status: u16) -> &'static str {
    match status {
        400 => "The request is malformed (a body that is not JSON, a bad parameter); `fields` names the inputs at fault when it can.",
        401 => "No valid bearer token.",
        404 => "No such resource.",
        405 => "The section does not take this method (an entry of a repeated section, or a single section).",
        409 => "In conflict with the current state: a stale revision, nothing staged, nothing to confirm.",
        422 => "Invalid values: `fields` maps each field path (`checks[2].target`) to its problem.",
        429 => "Too many diagnostics at once; retry after a second.",
        500 => "The daemon failed to do it (the message says what).",
        503 => "Busy; retry shortly.",
        _ => "An error.",
    }
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document().to_string(),
    )
}

fn build() -> Value {
    let mut paths = Map::new();
    for operation in OPERATIONS {
        let item = paths
            .entry(operation.path.to_string())
            .or_insert_with(|| json!({}));
        item[operation.method.as_str()] = operation_json(operation);
    }
    let tags: Vec<Value> = TAGS
        .iter()
        .map(|(name, description)| json!({ "name": name, "description": description }))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Siteward admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The REST API of a Siteward appliance, on its [admin] HTTPS listener. \
                Every route but /api/v1/health and this document needs \
                `Authorization: Bearer <token>` (tokens from `siteward token create NAME`); \
                without one every path answers 401. Errors are JSON: \
                {\"error\": message, \"fields\": {path: message}}. Secrets (keys, passwords, \
                tokens) never appear in an answer: the configuration shows that one is set, \
                never its value.",
        },
        "tags": tags,
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from `siteward token create NAME`.",
                },
            },
            "schemas": schemas(),
        },
    })
}

fn operation_json(operation: &Operation) -> Value {
    let mut parameters: Vec<Value> = placeholders(operation.path)
        .map(|name| {
            let (schema, description) =
                path_parameter(operation.path, name).unwrap_or((string(), "A path parameter."));
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": description,
                "schema": schema,
            })
        })
        .collect();
    parameters.extend(operation.query.iter().map(|param| {
        let mut schema = json!({ "type": param.ty });
        if !param.choices.is_empty() {
            schema["enum"] = json!(param.choices);
        }
        json!({
            "name": param.name,
            "in": "query",
            "required": param.required,
            "description": param.description,
            "schema": schema,
        })
    }));
    let mut responses = Map::new();
    let success = match operation.content {
        Content::Json(schema) => json!({
            "description": "Done.",
            "content": { "application/json": { "schema": reference(schema) } },
        }),
        Content::Toml => json!({
            "description": "The configuration file.",
            "content": { "application/toml": { "schema": { "type": "string" } } },
        }),
    };
    responses.insert(operation.status.to_string(), success);
    let mut errors: Vec<u16> = operation.errors.to_vec();
    if !operation.public {
        errors.push(401);
    }
    errors.sort_unstable();
    for status in errors {
        let mut response = json!({
            "description": error_status_description(status),
            "content": { "application/json": { "schema": reference("Error") } },
        });
        if status == 401 {
            response["headers"] = json!({
                "WWW-Authenticate": { "schema": { "type": "string" }, "description": "Bearer realm=\"siteward\"" },
            });
        }
        responses.insert(status.to_string(), response);
    }
    let mut value = json!({
        "operationId": operation.id,
        "tags": [operation.tag],
        "summary": operation.summary,
        "responses": responses,
    });
    if !operation.description.is_empty() {
        value["description"] = json!(operation.description);
    }
    if !parameters.is_empty() {
        value["parameters"] = json!(parameters);
    }
    if operation.public {
        value["security"] = json!([]);
    }
    match operation.body {
        Body::None => {}
        Body::Json(schema) => {
            value["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": reference(schema) } },
            });
        }
        Body::Toml => {
            value["requestBody"] = json!({
                "required": true,
                "content": { "application/toml": { "schema": { "type": "string" } } },
            });
        }
    }
    value
}

// ---- schemas ----

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn integer() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}

fn number() -> Value {
    json!({ "type": "number" })
}

fn boolean() -> Value {
    json!({ "type": "boolean" })
}

fn array(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

/// `schema` or null.
fn nullable(schema: Value) -> Value {
    json!({ "oneOf": [schema, { "type": "null" }] })
}

fn map_of(values: Value) -> Value {
    json!({ "type": "object", "additionalProperties": values })
}

/// An object with these properties, all of them present unless `optional` names them.
fn object(properties: &[(&str, Value)], optional: &[&str]) -> Value {
    let required: Vec<&str> = properties
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !optional.contains(name))
        .collect();
    let properties: Map<String, Value> = properties
        .iter()
        .map(|(name, schema)| (name.to_string(), schema.clone()))
        .collect();
    json!({ "type": "object", "properties": properties, "required": required })
}

/// An object with these properties, all of them present.
fn required_object(properties: &[(&str, Value)]) -> Value {
    object(properties, &[])
}

fn described(mut schema: Value, description: &str) -> Value {
    schema["description"] = json!(description);
    schema
}

fn schemas() -> Value {
    let mut s = Map::new();
    let mut add = |name: &str, schema: Value| {
        s.insert(name.to_string(), schema);
    };
    add(
        "Error",
        object(
            &[
                ("error", string()),
                (
                    "fields",
                    described(
                        map_of(string()),
                        "Problem by input key or field path (`checks[2].target`).",
                    ),
                ),
            ],
            &["fields"],
        ),
    );
    add("Object", json!({ "type": "object" }));
    add(
        "Health",
        required_object(&[
            ("status", string()),
            ("version", string()),
            ("uptime_seconds", integer()),
        ]),
    );
    // -- checks --
    let run = required_object(&[
        ("at", described(string(), "RFC 3339")),
        ("up", boolean()),
        (
            "reason",
            described(
                string(),
                "ok, refused, timeout, unreachable, ... (the result label of the metrics)",
            ),
        ),
        ("detail", string()),
        ("duration_seconds", number()),
    ]);
    add("Run", run);
    add(
        "Check",
        object(
            &[
                ("name", string()),
                ("kind", string()),
                ("target", string()),
                ("interval_seconds", number()),
                ("timeout_seconds", number()),
                ("rise", integer()),
                ("fall", integer()),
                ("source", string()),
                ("interface", string()),
                (
                    "state",
                    json!({ "type": "string", "enum": ["up", "down", "unknown"] }),
                ),
                ("state_since", string()),
                ("consecutive_successes", integer()),
                ("consecutive_failures", integer()),
                ("last", nullable(reference("Run"))),
                ("tls_cert_not_after", string()),
                (
                    "history",
                    described(array(reference("Run")), "Oldest first."),
                ),
            ],
            &["source", "interface", "state_since", "tls_cert_not_after"],
        ),
    );
    add(
        "CheckList",
        required_object(&[
            ("appliance", string()),
            ("checks", array(reference("Check"))),
        ]),
    );
    add(
        "CheckRunNow",
        required_object(&[
            ("result", reference("Run")),
            ("check", nullable(reference("Check"))),
        ]),
    );
    // -- tunnels --
    add(
        "Peer",
        required_object(&[
            ("name", string()),
            ("public_key", string()),
            ("endpoint", nullable(string())),
            ("last_handshake", nullable(string())),
            ("rx_bytes", integer()),
            ("tx_bytes", integer()),
            ("persistent_keepalive_seconds", nullable(integer())),
            ("allowed_ips", array(string())),
        ]),
    );
    add(
        "Tunnel",
        object(
            &[
                ("name", string()),
                ("kind", json!({ "type": "string", "enum": ["wireguard", "ipsec"] })),
                ("interface", string()),
                ("state", json!({ "type": "string", "enum": ["up", "down", "failed"] })),
                ("error", string()),
                ("listen_port", integer()),
                ("peers", array(reference("Peer"))),
                ("dropped", described(map_of(integer()), "Packets dropped, by reason.")),
                ("ipsec", described(json!({ "type": "object" }), "IKE and CHILD SAs (algorithms, SPIs in hex, times, bytes), rekey and failure counters.")),
            ], &["error", "listen_port", "ipsec"]),
    );
    add(
        "TunnelList",
        required_object(&[
            ("appliance", string()),
            ("tunnels", array(reference("Tunnel"))),
        ]),
    );
    add(
        "Rekeying",
        required_object(&[
            ("tunnel", string()),
            (
                "rekeying",
                json!({ "type": "string", "enum": ["child", "ike"] }),
            ),
        ]),
    );
    // -- connectors, relays, spool --
    add(
        "ConnectorList",
        required_object(&[(
            "connectors",
            array(required_object(&[
                ("name", string()),
                ("kind", string()),
                ("running", boolean()),
                ("error", nullable(string())),
                ("connected", boolean()),
                ("events_received", integer()),
                ("rejected", integer()),
                ("refused", integer()),
            ])),
        )]),
    );
    add(
        "RelayList",
        required_object(&[(
            "relays",
            array(required_object(&[
                ("name", string()),
                ("listen", string()),
                ("target", string()),
                ("allow", array(string())),
                ("running", boolean()),
                ("error", nullable(string())),
                ("connections", integer()),
                ("active_connections", integer()),
                ("refused", integer()),
                ("rejected_full", integer()),
                ("connect_failures", integer()),
                ("bytes_to_target", integer()),
                ("bytes_from_target", integer()),
            ])),
        )]),
    );
    add(
        "Spool",
        required_object(&[
            ("events", integer()),
            ("bytes", integer()),
            ("oldest_event_age_seconds", nullable(integer())),
            ("dead_letters", integer()),
            ("dropped", integer()),
            ("commits", integer()),
            (
                "uplink",
                required_object(&[
                    ("delivered", integer()),
                    ("dead_lettered", integer()),
                    ("failed_attempts", integer()),
                    ("circuit_open", boolean()),
                ]),
            ),
        ]),
    );
    let event = required_object(&[
        ("id", string()),
        ("idempotency_key", string()),
        ("connector", string()),
        ("kind", string()),
        ("received_at", string()),
        (
            "payload",
            described(json!({}), "The event as the source gave it: JSON, or text."),
        ),
    ]);
    add("Event", event);
    add(
        "EventList",
        required_object(&[("events", array(reference("Event")))]),
    );
    add(
        "DeadLetterList",
        required_object(&[(
            "dead_letters",
            array(json!({
                "allOf": [reference("Event"), required_object(&[("reason", string())])],
            })),
        )]),
    );
    add("Replayed", required_object(&[("replayed", integer())]));
    add("Purged", required_object(&[("purged", integer())]));
    // -- tools --
    add(
        "CheckKeys",
        described(
            map_of(json!({ "type": ["string", "number", "boolean", "array", "null"] })),
            "Keys of a [[checks]] table: kind, target and the kind's own (README, Checks).",
        ),
    );
    add(
        "ToolRun",
        required_object(&[
            ("kind", string()),
            ("target", string()),
            ("up", boolean()),
            ("reason", string()),
            ("detail", string()),
            ("latency_seconds", number()),
            ("at", string()),
            ("tls_cert_not_after", nullable(string())),
        ]),
    );
    add(
        "DnsQuery",
        object(
            &[
                ("name", string()),
                (
                    "type",
                    described(
                        string(),
                        "A, AAAA, CNAME, MX, NS, PTR, SOA, SRV or TXT (default A).",
                    ),
                ),
                ("timeout", described(string(), "Like \"2s\"; at most 10s.")),
            ],
            &["type", "timeout"],
        ),
    );
    add(
        "DnsLookup",
        required_object(&[
            ("name", string()),
            ("type", string()),
            (
                "answers",
                array(required_object(&[
                    ("name", string()),
                    ("type", string()),
                    ("ttl", integer()),
                    ("data", string()),
                ])),
            ),
            ("error", nullable(string())),
            ("elapsed_seconds", number()),
        ]),
    );
    add(
        "KeyPair",
        required_object(&[("private_key", string()), ("public_key", string())]),
    );
    add(
        "PeerSnippet",
        required_object(&[
            ("tunnel", string()),
            ("public_key", string()),
            ("endpoint", nullable(string())),
            ("allowed_ips", array(string())),
            ("snippet", described(string(), "A wg-quick [Peer] section.")),
            ("note", nullable(string())),
        ]),
    );
    add(
        "LogPage",
        required_object(&[
            (
                "lines",
                array(required_object(&[
                    ("seq", integer()),
                    ("time", string()),
                    ("level", string()),
                    ("target", string()),
                    ("message", string()),
                    ("fields", json!({ "type": "object" })),
                ])),
            ),
            ("next_after", integer()),
        ]),
    );
    // -- configuration --
    add(
        "ConfigSchema",
        required_object(&[(
            "sections",
            array(required_object(&[
                ("key", string()),
                ("title", string()),
                (
                    "repeated",
                    described(boolean(), "Written [[key]]: a list of entries."),
                ),
                (
                    "kinds",
                    described(
                        array(string()),
                        "The values of its `kind` key; empty if none.",
                    ),
                ),
                (
                    "fields",
                    array(object(
                        &[
                            ("key", string()),
                            ("label", string()),
                            (
                                "type",
                                json!({ "type": "string", "enum": ["text", "integer", "bool", "list", "secret", "choice"] }),
                            ),
                            (
                                "options",
                                described(array(string()), "The choices of a `choice`."),
                            ),
                            (
                                "items",
                                json!({ "type": "string", "enum": ["text", "integer"], "description": "The items of a `list`." }),
                            ),
                            (
                                "kinds",
                                described(
                                    nullable(array(string())),
                                    "null: every kind; else only these.",
                                ),
                            ),
                            ("required", boolean()),
                            ("help", string()),
                        ],
                        &["options", "items"],
                    )),
                ),
            ])),
        )]),
    );
    let lines = described(
        array(string()),
        "One line per value (`checks[db1].target = \"...\"`); secrets show as (secret).",
    );
    add(
        "RunningConfig",
        required_object(&[("version", integer()), ("lines", lines.clone())]),
    );
    add(
        "CandidateConfig",
        required_object(&[
            ("staged", boolean()),
            (
                "revision",
                described(integer(), "0 when nothing is staged."),
            ),
            ("base_version", integer()),
            ("lines", lines.clone()),
        ]),
    );
    add(
        "Values",
        described(
            map_of(json!({
                "oneOf": [
                    { "type": "string" },
                    { "type": ["boolean", "null"] },
                    required_object(&[("set", boolean())]),
                ],
            })),
            "Key -> value as a form shows it: text as typed (a list one item per line, empty \
             when unset), a boolean (null when unset), a secret only {\"set\": bool}.",
        ),
    );
    add(
        "Entry",
        object(
            &[
                (
                    "entry",
                    described(
                        string(),
                        "Its path: uplink, checks[2], tunnels[0].peers[1].",
                    ),
                ),
                ("revision", integer()),
                ("values", reference("Values")),
                (
                    "present",
                    described(boolean(), "A single section: whether the file has it."),
                ),
                ("index", integer()),
                ("tunnel", integer()),
                (
                    "peers",
                    described(array(reference("Entry")), "A tunnel's peers."),
                ),
            ],
            &["present", "index", "tunnel", "peers", "revision"],
        ),
    );
    add(
        "SectionValues",
        json!({
            "oneOf": [
                reference("Entry"),
                required_object(
                    &[("section", string()), ("revision", integer()), ("entries", array(reference("Entry")))]),
            ],
        }),
    );
    add(
        "EntryEdit",
        json!({
            "type": "object",
            "properties": { "revision": revision_schema() },
            "required": ["revision"],
            "additionalProperties": { "type": ["string", "number", "boolean", "array", "null"] },
            "description": "Key -> value as a form field takes it: a string as typed, a number \
                or boolean as its text, a list as an array, null or \"\" to remove the key (a \
                secret left empty is kept; \"KEY.clear\": \"true\" removes it).",
        }),
    );
    add(
        "Staged",
        required_object(&[
            ("staged", boolean()),
            ("revision", integer()),
            (
                "secrets_kept_from_current",
                described(
                    array(string()),
                    "Paths of omitted secrets taken from the working configuration.",
                ),
            ),
        ]),
    );
    add(
        "Discarded",
        required_object(&[(
            "discarded",
            described(boolean(), "Whether anything was staged."),
        )]),
    );
    add(
        "Removed",
        required_object(&[("removed", string()), ("revision", integer())]),
    );
    let diff_line = required_object(&[
        (
            "change",
            json!({ "type": "string", "enum": ["added", "removed", "same"] }),
        ),
        ("text", string()),
    ]);
    add("DiffLine", diff_line);
    add(
        "Review",
        required_object(&[
            ("staged", boolean()),
            ("revision", integer()),
            ("changes", integer()),
            ("diff", array(reference("DiffLine"))),
            (
                "errors",
                described(
                    map_of(string()),
                    "Every problem of the candidate: a commit is refused while there are any.",
                ),
            ),
        ]),
    );
    add(
        "CommitRequest",
        object(
            &[
                ("revision", revision_schema()),
                ("confirm_seconds", described(json!({ "type": "integer", "minimum": 1, "maximum": 86400 }), "Restore the previous configuration unless confirmed within this many seconds.")),
                ("comment", described(string(), "At most 500 characters, kept in the history.")),
            ], &["confirm_seconds", "comment"]),
    );
    add(
        "RollbackRequest",
        object(
            &[(
                "confirm_seconds",
                json!({ "type": "integer", "minimum": 1, "maximum": 86400 }),
            )],
            &["confirm_seconds"],
        ),
    );
    add(
        "Committed",
        required_object(&[
            ("version", integer()),
            (
                "confirm_by_ms",
                described(
                    nullable(integer()),
                    "Unix milliseconds by which to confirm, if it must be.",
                ),
            ),
            (
                "applied",
                required_object(&[
                    (
                        "restart_needed",
                        described(
                            array(string()),
                            "Sections whose changes wait for a restart.",
                        ),
                    ),
                    (
                        "failed",
                        described(
                            array(string()),
                            "Tunnels, connectors, relays that failed to start, with why.",
                        ),
                    ),
                ]),
            ),
        ]),
    );
    add(
        "Confirmed",
        required_object(&[("confirmed", described(integer(), "The version confirmed."))]),
    );
    add(
        "RolledBackNow",
        required_object(&[("rolled_back", boolean()), ("running_version", integer())]),
    );
    let actor = required_object(&[
        (
            "name",
            described(
                string(),
                "A web UI account, token:NAME, control-socket, or siteward itself.",
            ),
        ),
        ("from", described(string(), "The client's address.")),
    ]);
    add("Actor", actor);
    add(
        "Version",
        required_object(&[
            ("version", integer()),
            ("at", described(integer(), "Unix seconds.")),
            ("by", reference("Actor")),
            (
                "action",
                described(
                    string(),
                    "started, reloaded, committed, rolled back to N, restored: ...",
                ),
            ),
            ("comment", string()),
        ]),
    );
    add(
        "History",
        required_object(&[
            ("running", integer()),
            (
                "pending",
                nullable(required_object(&[
                    ("version", integer()),
                    ("restore_version", integer()),
                    ("deadline_ms", integer()),
                    ("by", reference("Actor")),
                ])),
            ),
            ("versions", array(reference("Version"))),
        ]),
    );
    add(
        "VersionDetail",
        required_object(&[
            ("version", reference("Version")),
            ("running", boolean()),
            ("previous", nullable(integer())),
            ("lines", lines),
            ("diff", array(reference("DiffLine"))),
        ]),
    );
    add(
        "ExportRequest",
        object(
            &[
                (
                    "secrets",
                    json!({ "type": "string", "enum": ["omit", "encrypt"] }),
                ),
                (
                    "passphrase",
                    described(string(), "With encrypt: at least 12 characters."),
                ),
            ],
            &["passphrase"],
        ),
    );
    add(
        "ImportRequest",
        object(
            &[
                ("text", described(string(), "The exported file.")),
                (
                    "passphrase",
                    described(
                        string(),
                        "The export's passphrase, if its secrets are encrypted.",
                    ),
                ),
                ("revision", revision_schema()),
            ],
            &["passphrase"],
        ),
    );
    add(
        "AuditLog",
        required_object(&[(
            "entries",
            array(required_object(&[
                ("at", described(integer(), "Unix seconds.")),
                ("by", reference("Actor")),
                ("action", string()),
                ("detail", string()),
            ])),
        )]),
    );
    Value::Object(s)
}

fn revision_schema() -> Value {
    json!({
        "type": "integer",
        "minimum": 0,
        "description": "The candidate's revision from GET /api/v1/config/candidate (0 when nothing is staged).",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The files whose `.route(...)` calls make up the API: `api.rs` (`router`,
    /// `local_router`, `resources`) and every module `resources()` merges.
    const ROUTE_SOURCES: &[(&str, &str)] = &[
        ("api", include_str!("api.rs")),
        ("tools", include_str!("tools.rs")),
        ("config_api", include_str!("config_api.rs")),
    ];

    /// `(method, path)` of every `.route("PATH", get(..).post(..))` in `source`.
    fn routes_in(source: &str) -> BTreeSet<(String, String)> {
        let mut found = BTreeSet::new();
        let mut rest = source;
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let Some(path) = rest.trim_start().strip_prefix('"') else {
                continue;
            };
            let end = path.find('"').expect("a closed path literal");
            let route_path = &path[..end];
            let mut depth = 1;
            let mut ident = String::new();
            let mut methods = Vec::new();
            for c in path[end + 1..].chars() {
                match c {
                    '(' => {
                        if depth == 1
                            && ["get", "post", "put", "delete", "patch", "head", "options"]
                                .contains(&ident.as_str())
                        {
                            methods.push(ident.clone());
                        }
                        depth += 1;
                        ident.clear();
                    }
                    ')' => {
                        depth -= 1;
                        ident.clear();
                        if depth == 0 {
                            break;
                        }
                    }
                    c if c.is_alphanumeric() || c == '_' => ident.push(c),
                    _ => ident.clear(),
                }
            }
            assert!(
                !methods.is_empty(),
                "no method found for route {route_path}"
            );
            for method in methods {
                found.insert((method, route_path.to_string()));
            }
        }
        found
    }

    fn function_body<'a>(source: &'a str, signature: &str) -> &'a str {
        let start = source.find(signature).expect("the function is there");
        let body = &source[start..];
        &body[..body.find("\n}\n").expect("the function ends")]
    }

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_serves() {
        let api = ROUTE_SOURCES[0].1;
        // Every module merged into resources() must be among the sources read here.
        let resources = function_body(api, "fn resources()");
        let mut merged = Vec::new();
        let mut rest = resources;
        while let Some(at) = rest.find(".merge(") {
            rest = &rest[at + ".merge(".len()..];
            let call = &rest[..rest.find("::routes()").expect("merge(MODULE::routes())")];
            merged.push(call.rsplit("::").next().unwrap_or(call).to_string());
        }
        assert!(!merged.is_empty());
        for module in &merged {
            assert!(
                ROUTE_SOURCES.iter().any(|(name, _)| name == module),
                "resources() merges {module}::routes(): add its source to ROUTE_SOURCES"
            );
        }

        let mut protected = routes_in(resources);
        for (name, source) in &ROUTE_SOURCES[1..] {
            assert!(
                merged.contains(&name.to_string()),
                "{name} is not merged into resources()"
            );
            protected.extend(routes_in(source));
        }
        let every = routes_in(api)
            .into_iter()
            .chain(ROUTE_SOURCES[1..].iter().flat_map(|(_, s)| routes_in(s)))
            .collect::<BTreeSet<_>>();
        let public: BTreeSet<_> = every.difference(&protected).cloned().collect();

        let documented: BTreeSet<(String, String)> = OPERATIONS
            .iter()
            .map(|o| (o.method.as_str().to_string(), o.path.to_string()))
            .collect();
        assert_eq!(
            documented.len(),
            OPERATIONS.len(),
            "an operation is listed twice"
        );
        let missing: Vec<_> = every.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&every).collect();
        assert!(
            missing.is_empty(),
            "routed but not in the document: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "in the document but not routed: {extra:?}"
        );

        let documented_public: BTreeSet<(String, String)> = OPERATIONS
            .iter()
            .filter(|o| o.public)
            .map(|o| (o.method.as_str().to_string(), o.path.to_string()))
            .collect();
        assert_eq!(
            documented_public, public,
            "the routes served without a token"
        );
        assert!(public.contains(&("get".to_string(), "/api/v1/openapi.json".to_string())));
        assert!(protected.contains(&("post".to_string(), "/api/v1/config/commit".to_string())));
    }

    #[test]
    fn the_route_reader_reads_chained_methods() {
        let source = r#"
            Router::new()
                .route("/a/{x}", get(handler::one).post(two))
                .route(
                    "/b",
                    put(three).delete(four(five)),
                )
        "#;
        let found: Vec<_> = routes_in(source).into_iter().collect();
        let pairs: Vec<(&str, &str)> = found
            .iter()
            .map(|(m, p)| (m.as_str(), p.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("delete", "/b"),
                ("get", "/a/{x}"),
                ("post", "/a/{x}"),
                ("put", "/b")
            ]
        );
    }

    #[test]
    fn every_operation_is_described_and_every_reference_resolves() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut ids = BTreeSet::new();
        for operation in OPERATIONS {
            assert!(
                ids.insert(operation.id),
                "operationId {} twice",
                operation.id
            );
            assert!(
                !operation.summary.is_empty(),
                "{} has no summary",
                operation.id
            );
            assert!(
                TAGS.iter().any(|(tag, _)| *tag == operation.tag),
                "{}",
                operation.id
            );
            for name in placeholders(operation.path) {
                assert!(
                    path_parameter(operation.path, name).is_some(),
                    "{} {}: {{{name}}} is not described",
                    operation.method.as_str(),
                    operation.path
                );
            }
            let item = &doc["paths"][operation.path][operation.method.as_str()];
            assert_eq!(item["operationId"], operation.id);
            let responses = item["responses"].as_object().unwrap();
            assert_eq!(
                responses.contains_key("401"),
                !operation.public,
                "{}",
                operation.id
            );
            assert!(responses.contains_key(&operation.status.to_string()));
        }
        // Every $ref names a schema that exists.
        let text = doc.to_string();
        let mut rest = text.as_str();
        let prefix = "\"$ref\":\"#/components/schemas/";
        let mut references = 0;
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            let name = &rest[..rest.find('"').unwrap()];
            assert!(schemas.contains_key(name), "no schema {name}");
            references += 1;
        }
        assert!(references > OPERATIONS.len());
    }
}
