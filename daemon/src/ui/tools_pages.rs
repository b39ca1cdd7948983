//! Tools: WireGuard keys and peer snippets, diagnostics from the box (ping, TCP, DNS, a
//! one-shot run of any check kind), and the live log view. The work is done by
//! `diagnostics.rs`, `log_view.rs` and `admin/tools.rs`, which the REST API uses too; this
//! module turns forms into their inputs and their results into HTML fragments.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use siteward_config::schema::{self, FieldType};
use tracing::Level;

use crate::admin::tools::{new_key_pair, peer_snippet};
use crate::admin::AdminState;
use crate::diagnostics::{CheckRun, DiagnosticError, DnsQuery, Fields};
use crate::ui::auth::{form_urlencoded_pairs, UiAuth};
use crate::ui::render::{page, page_with_status, PageCtx};

/// Keys of a check the one-shot form does not offer: a diagnostic has no schedule and no
/// name, and may not read files on the box.
const NOT_FOR_DIAGNOSTICS: &[&str] = &["name", "kind", "interval", "rise", "fall"];

#[derive(Template)]
#[template(path = "tools.html")]
struct ToolsPage {
    page: PageCtx,
    snippets: Vec<SnippetView>,
    endpoint_host: String,
    kinds: &'static [&'static str],
    kind: String,
    check_fields: Vec<ToolField>,
}

struct SnippetView {
    tunnel: String,
    public_key: String,
    text: String,
    note: String,
    error: String,
}

struct ToolField {
    key: &'static str,
    label: &'static str,
    help: &'static str,
    secret: bool,
    list: bool,
}

#[derive(Deserialize)]
pub struct ToolsQuery {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    endpoint_host: Option<String>,
}

pub async fn tools(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Query(query): Query<ToolsQuery>,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "tools");
    let config = state.applier.running();
    let endpoint_host = query.endpoint_host.unwrap_or_default();
    let statuses = state.tunnels.statuses();
    let snippets = config
        .tunnels
        .iter()
        .filter(|t| matches!(t.kind, siteward_config::TunnelKind::Wireguard(_)))
        .map(|t| {
            let port = statuses
                .iter()
                .find(|s| s.name == t.name && s.running)
                .and_then(|s| s.listen_port);
            let host = (!endpoint_host.is_empty()).then_some(endpoint_host.as_str());
            match peer_snippet(&config, &t.name, port, host) {
                Ok(snippet) => SnippetView {
                    tunnel: snippet.tunnel,
                    public_key: snippet.public_key.to_string(),
                    text: snippet.text,
                    note: snippet.note.unwrap_or_default(),
                    error: String::new(),
                },
                Err(e) => SnippetView {
                    tunnel: t.name.clone(),
                    public_key: String::new(),
                    text: String::new(),
                    note: String::new(),
                    error: e.to_string(),
                },
            }
        })
        .collect();
    let checks = schema::section("checks");
    let kinds = checks.map_or(&[][..], |s| s.kinds);
    let kind = query
        .kind
        .filter(|k| kinds.contains(&k.as_str()))
        .unwrap_or_else(|| "tcp".to_string());
    let check_fields = checks
        .map(|section| {
            section
                .fields_for(Some(kind.as_str()))
                .filter(|f| !NOT_FOR_DIAGNOSTICS.contains(&f.key) && !f.key.ends_with("_file"))
                .map(|f| ToolField {
                    key: f.key,
                    label: f.label,
                    help: f.help,
                    secret: f.ty == FieldType::Secret,
                    list: f.ty == FieldType::List,
                })
                .collect()
        })
        .unwrap_or_default();
    page(&ToolsPage {
        page: ctx,
        snippets,
        endpoint_host,
        kinds,
        kind,
        check_fields,
    })
}

#[derive(Template)]
#[template(path = "tools_result.html")]
struct ResultFragment {
    title: String,
    up: Option<bool>,
    lines: Vec<(String, String)>,
    problems: Vec<(String, String)>,
}

fn result_fragment(status: StatusCode, fragment: ResultFragment) -> Response {
    page_with_status(status, &fragment)
}

/// The one-shot check form's values as the diagnostics take them: numbers, booleans and
/// lists typed by the check schema; empty fields left out.
fn check_fields(body: &[u8]) -> Fields {
    let section = schema::section("checks");
    let mut fields = Fields::new();
    for (key, value) in form_urlencoded_pairs(body) {
        let value = value.replace("\r\n", "\n");
        if key == "csrf" || value.trim().is_empty() {
            continue;
        }
        let ty = section
            .and_then(|s| s.field(&key))
            .map(|f| f.ty)
            .unwrap_or(FieldType::Text);
        let json = match ty {
            FieldType::Integer => value
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::String(value)),
            FieldType::Bool => match value.trim() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(value),
            },
            FieldType::List => {
                let integers = section
                    .and_then(|s| s.field(&key))
                    .is_some_and(|f| f.list_of_integers());
                Value::Array(
                    value
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(|l| match l.parse::<i64>() {
                            Ok(n) if integers => Value::from(n),
                            _ => Value::String(l.to_string()),
                        })
                        .collect(),
                )
            }
            _ => Value::String(value),
        };
        fields.insert(key, json);
    }
    fields
}

fn run_fragment(title: &str, result: Result<CheckRun, DiagnosticError>) -> Response {
    match result {
        Ok(run) => result_fragment(
            StatusCode::OK,
            ResultFragment {
                title: format!("{title}: {} {}", run.kind, run.target),
                up: Some(run.up()),
                lines: vec![
                    ("Result".to_string(), run.reason.as_str().to_string()),
                    (
                        "Time".to_string(),
                        format!("{:.1} ms", run.latency.as_secs_f64() * 1000.0),
                    ),
                    ("Detail".to_string(), run.detail),
                ],
                problems: Vec::new(),
            },
        ),
        Err(e) => diagnostic_error(title, e),
    }
}

fn diagnostic_error(title: &str, e: DiagnosticError) -> Response {
    let status = match e {
        DiagnosticError::Busy => StatusCode::TOO_MANY_REQUESTS,
        DiagnosticError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let problems = match &e {
        DiagnosticError::Invalid(problems) => problems
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        DiagnosticError::Busy => vec![(String::new(), e.to_string())],
    };
    result_fragment(
        status,
        ResultFragment {
            title: format!("{title}: not run"),
            up: None,
            lines: Vec::new(),
            problems,
        },
    )
}

pub async fn ping(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    run_fragment("Ping", state.diagnostics.ping(&check_fields(&body)).await)
}

pub async fn tcp(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    run_fragment(
        "TCP port test",
        state.diagnostics.tcp_test(&check_fields(&body)).await,
    )
}

pub async fn check(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    run_fragment(
        "One-shot check",
        state.diagnostics.run_check(&check_fields(&body)).await,
    )
}

pub async fn dns(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    let mut fields = Fields::new();
    for (key, value) in form_urlencoded_pairs(&body) {
        if key != "csrf" && !value.trim().is_empty() {
            fields.insert(key, Value::String(value.trim().to_string()));
        }
    }
    let query = match DnsQuery::from_fields(&fields) {
        Ok(query) => query,
        Err(problems) => return diagnostic_error("DNS lookup", DiagnosticError::Invalid(problems)),
    };
    match state.diagnostics.dns_lookup(&query).await {
        Ok(lookup) => {
            let mut lines: Vec<(String, String)> = lookup
                .answers
                .iter()
                .map(|a| {
                    (
                        format!("{} {} (ttl {})", a.name, a.record_type, a.ttl),
                        a.data.clone(),
                    )
                })
                .collect();
            if let Some(error) = &lookup.error {
                lines.push(("No answer".to_string(), error.clone()));
            }
            lines.push((
                "Time".to_string(),
                format!("{:.1} ms", lookup.elapsed.as_secs_f64() * 1000.0),
            ));
            result_fragment(
                StatusCode::OK,
                ResultFragment {
                    title: format!("DNS lookup: {} {:?}", lookup.name, lookup.record_type),
                    up: Some(lookup.error.is_none()),
                    lines,
                    problems: Vec::new(),
                },
            )
        }
        Err(e) => diagnostic_error("DNS lookup", e),
    }
}

#[derive(Template)]
#[template(path = "tools_keypair.html")]
struct KeyPairFragment {
    private_key: String,
    public_key: String,
}

/// A new WireGuard key pair, shown once: it is not stored, and not logged.
pub async fn keypair(Extension(auth): Extension<UiAuth>) -> Response {
    match new_key_pair() {
        Ok(pair) => {
            tracing::info!(user = %auth.actor.name, "web UI: a WireGuard key pair was generated");
            page(&KeyPairFragment {
                private_key: STANDARD.encode(pair.private_key.expose()),
                public_key: pair.public_key.to_string(),
            })
        }
        Err(e) => result_fragment(
            StatusCode::INTERNAL_SERVER_ERROR,
            ResultFragment {
                title: "Key pair".to_string(),
                up: None,
                lines: Vec::new(),
                problems: vec![(String::new(), format!("generating a key: {e}"))],
            },
        ),
    }
}

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage {
    page: PageCtx,
    level: String,
    after: u64,
    lines: Vec<LogLineView>,
}

#[derive(Template)]
#[template(path = "logs_lines.html")]
struct LogPoller {
    after: u64,
    level: String,
    lines: Vec<LogLineView>,
}

struct LogLineView {
    time: String,
    level: &'static str,
    target: String,
    text: String,
}

#[derive(Deserialize)]
pub struct LogsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    level: Option<String>,
}

/// How many lines the page starts with, and the most one refresh adds.
const LOG_PAGE: usize = 500;
/// How long a refresh waits for a new line (a long poll: the view stays live without
/// asking every second).
const LOG_WAIT: Duration = Duration::from_secs(20);

pub async fn logs(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Query(query): Query<LogsQuery>,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "logs");
    let level = level_of(query.level.as_deref());
    let (lines, after) = state.log_view.since(0, level, LOG_PAGE * 4);
    let skip = lines.len().saturating_sub(LOG_PAGE);
    page(&LogsPage {
        page: ctx,
        level: level.as_str().to_ascii_lowercase(),
        after,
        lines: lines.iter().skip(skip).map(line_view).collect(),
    })
}

pub async fn log_lines(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<LogsQuery>,
) -> Response {
    let level = level_of(query.level.as_deref());
    let (lines, after) = state
        .log_view
        .wait_since(query.after, level, LOG_PAGE, LOG_WAIT)
        .await;
    page(&LogPoller {
        after,
        level: level.as_str().to_ascii_lowercase(),
        lines: lines.iter().map(line_view).collect(),
    })
}

fn level_of(level: Option<&str>) -> Level {
    match level.unwrap_or("info") {
        "error" => Level::ERROR,
        "warn" => Level::WARN,
        "debug" => Level::DEBUG,
        "trace" => Level::TRACE,
        _ => Level::INFO,
    }
}

fn line_view(line: &crate::log_view::LogLine) -> LogLineView {
    LogLineView {
        time: humantime::format_rfc3339_millis(line.time).to_string(),
        level: line.level.as_str(),
        target: line.target.clone(),
        text: if line.fields.is_empty() {
            line.message.clone()
        } else {
            format!("{} {}", line.message, line.fields)
        },
    }
}
