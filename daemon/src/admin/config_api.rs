//! The configuration on the API: what the web UI's configuration pages do, as JSON, over
//! the same operations (`config_ops`, `Applier`): the schema forms are built from, the
//! running and staged files (masked), staged edits of one entry with errors at their field
//! paths, a whole file staged, review, commit with confirmation, history and rollback,
//! export and import, and the audit log.
//!
//! Secrets are write-only here as in the UI: an entry shows a secret as `{"set": bool}`,
//! files are shown masked, an export leaves them out or encrypts them. Every change is
//! audited as `token:NAME` from the client's address (the control socket, which has no
//! tokens, as `control-socket`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use siteward_config::edit::{self, EntryRef, ShownValue};
use siteward_config::export::{ExportError, SecretHandling};
use siteward_config::schema::{self, FieldType, Section};
use siteward_config::view::{self, Change, DiffLine};
use siteward_config::FieldError;
use siteward_connectors::http_server::RemoteAddr;
use toml_edit::DocumentMut;

use super::api::{refuse, Refusal, TokenName};
use super::AdminState;
use crate::apply::{CommitError, MAX_CONFIRM_WINDOW};
use crate::config_ops::{self, ImportFailure, StageFailure};
use crate::config_store::Actor;

/// Longest commit comment (the UI's form allows as much).
const MAX_COMMENT_CHARS: usize = 500;
/// Keys an entry's edit may have; a section has at most a few dozen.
const MAX_KEYS: usize = 64;
/// Longest key accepted (longer ones are no keys of the file and are not echoed).
const MAX_KEY_CHARS: usize = 64;
/// Audit lines listed unless `limit` says otherwise.
const DEFAULT_AUDIT_LIMIT: usize = 100;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/api/v1/config/schema", get(schema_view))
        .route("/api/v1/config/running", get(running))
        .route(
            "/api/v1/config/candidate",
            get(candidate).put(stage_file).delete(discard),
        )
        .route(
            "/api/v1/config/candidate/{section}",
            get(get_section)
                .put(put_section)
                .post(add_entry)
                .delete(delete_section),
        )
        .route(
            "/api/v1/config/candidate/{section}/{index}",
            get(get_entry).put(put_entry).delete(delete_entry),
        )
        .route(
            "/api/v1/config/candidate/tunnels/{tunnel}/peers",
            post(add_peer),
        )
        .route(
            "/api/v1/config/candidate/tunnels/{tunnel}/peers/{peer}",
            get(get_peer).put(put_peer).delete(delete_peer),
        )
        .route("/api/v1/config/diff", get(diff))
        .route("/api/v1/config/commit", post(commit))
        .route("/api/v1/config/confirm", post(confirm))
        .route("/api/v1/config/rollback-now", post(rollback_now))
        .route("/api/v1/config/history", get(history))
        .route("/api/v1/config/history/{version}", get(version))
        .route("/api/v1/config/history/{version}/rollback", post(rollback))
        .route("/api/v1/config/export", post(export_file))
        .route("/api/v1/config/import", post(import_file))
        .route("/api/v1/audit", get(audit))
}

/// Who makes a request, for the audit log: the API token's name (set by `require_token`)
/// and the client's address.
pub struct Caller(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let name = match parts.extensions.get::<TokenName>() {
            Some(token) => format!("token:{}", token.0),
            // Only the control socket serves these routes without a token.
            None => "control-socket".to_string(),
        };
        let from = parts
            .extensions
            .get::<RemoteAddr>()
            .map_or_else(|| "local".to_string(), |remote| remote.0.ip().to_string());
        Ok(Caller(Actor { name, from }))
    }
}

// ---- answers ----

type Answer = Result<Response, Refusal>;

/// 422 with the problems by field path.
fn invalid(message: impl Into<String>, fields: BTreeMap<String, String>) -> Refusal {
    Refusal {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: message.into(),
        fields: Some(fields),
    }
}

fn field_errors(message: impl Into<String>, errors: &[FieldError]) -> Refusal {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    for e in errors {
        fields
            .entry(e.path.clone())
            .and_modify(|m| {
                m.push_str("; ");
                m.push_str(&e.message);
            })
            .or_insert_with(|| e.message.clone());
    }
    invalid(message, fields)
}

fn one_field(key: &str, message: &str) -> Refusal {
    invalid(
        format!("{key}: {message}"),
        BTreeMap::from([(key.to_string(), message.to_string())]),
    )
}

fn internal(e: &anyhow::Error) -> Refusal {
    tracing::error!("configuration API: {e:#}");
    refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

fn no_such_entry(what: &str) -> Refusal {
    refuse(
        StatusCode::NOT_FOUND,
        format!("{what}: no such section or entry in the configuration"),
    )
}

fn stage_failure(failure: StageFailure) -> Refusal {
    match failure {
        StageFailure::Fields { errors, .. } => {
            field_errors("not staged: the entry has errors", &errors)
        }
        StageFailure::Refused(message) => refuse(StatusCode::CONFLICT, message),
        StageFailure::Internal(e) => internal(&e),
    }
}

fn commit_error(e: CommitError) -> Refusal {
    match e {
        CommitError::Invalid(errors) => field_errors(
            format!(
                "not committed: the configuration has {} error(s)",
                errors.len()
            ),
            &errors,
        ),
        CommitError::Refused(message) => refuse(StatusCode::CONFLICT, message),
        CommitError::Io(e) => internal(&e),
    }
}

fn export_error(e: ExportError) -> Refusal {
    let message = e.to_string();
    match e {
        ExportError::Syntax(_) => one_field("text", &message),
        ExportError::PassphraseTooShort => one_field("passphrase", &message),
        ExportError::PassphraseNeeded { path }
        | ExportError::Decrypt { path }
        | ExportError::Malformed { path } => {
            invalid(message.clone(), BTreeMap::from([(path, message)]))
        }
        ExportError::CurrentSyntax(_) | ExportError::Crypto(_) => {
            internal(&anyhow::anyhow!("{message}"))
        }
    }
}

fn diff_json(diff: &[DiffLine]) -> Vec<Value> {
    diff.iter()
        .map(|line| {
            let change = match line.change {
                Change::Added => "added",
                Change::Removed => "removed",
                Change::Same => "same",
            };
            json!({ "change": change, "text": line.text })
        })
        .collect()
}

fn masked(text: &str) -> Result<Vec<String>, Refusal> {
    view::masked_lines(text)
        .map_err(|e| internal(&anyhow::anyhow!("showing the configuration: {e}")))
}

// ---- request bodies ----

/// The body as a JSON object (none: an empty one). Messages never quote the body.
fn json_object(body: &Bytes) -> Result<Map<String, Value>, Refusal> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(refuse(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        )),
        Err(e) => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "the body is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )),
    }
}

const REVISION_NEEDED: &str = "required: the candidate's revision from GET \
                               /api/v1/config/candidate (0 when nothing is staged)";

/// `revision` of a JSON body: the candidate's revision the change was made against.
fn revision_of(object: &Map<String, Value>) -> Result<u64, Refusal> {
    match object.get("revision") {
        Some(value) => value
            .as_u64()
            .ok_or_else(|| one_field("revision", "must be a whole number")),
        None => Err(one_field("revision", REVISION_NEEDED)),
    }
}

/// `?revision=N`, for requests without a JSON body.
fn revision_query(params: &BTreeMap<String, String>) -> Result<u64, Refusal> {
    match params.get("revision") {
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| one_field("revision", "must be a whole number")),
        None => Err(one_field("revision", REVISION_NEEDED)),
    }
}

/// An entry's edit: key -> value as a form field has it, and the revision. A string is
/// taken as typed; a boolean or a number as its text; a list as an array (one item per
/// line in form terms); `null` as empty (the key is removed, a secret kept).
fn entry_edit(body: &Bytes) -> Result<(BTreeMap<String, String>, u64), Refusal> {
    let mut object = json_object(body)?;
    let revision = revision_of(&object)?;
    object.remove("revision");
    if object.len() > MAX_KEYS {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("more than {MAX_KEYS} keys"),
        ));
    }
    let mut values = BTreeMap::new();
    let mut problems = BTreeMap::new();
    for (key, value) in object {
        if key.chars().count() > MAX_KEY_CHARS {
            problems.insert(
                key.chars().take(MAX_KEY_CHARS).collect::<String>(),
                "not a key of the configuration".to_string(),
            );
            continue;
        }
        match form_value(&value) {
            Ok(text) => {
                values.insert(key, text);
            }
            Err(message) => {
                problems.insert(key, message.to_string());
            }
        }
    }
    if !problems.is_empty() {
        return Err(invalid("not staged: some values are not usable", problems));
    }
    Ok((values, revision))
}

fn form_value(value: &Value) -> Result<String, &'static str> {
    let item = |value: &Value| match value {
        Value::String(s) if s.contains('\n') => Err("a list item cannot hold a line break"),
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err("a list holds strings or numbers"),
    };
    match value {
        Value::Null => Ok(String::new()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(items) => Ok(items
            .iter()
            .map(item)
            .collect::<Result<Vec<_>, _>>()?
            .join("\n")),
        Value::Object(_) => Err("expected a string, a number, a boolean, a list or null"),
    }
}

/// `confirm_seconds`: absent for a commit that needs no confirmation.
fn confirm_window(object: &Map<String, Value>) -> Result<Option<Duration>, Refusal> {
    match object.get("confirm_seconds") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(seconds) if (1..=MAX_CONFIRM_WINDOW.as_secs()).contains(&seconds) => {
                Ok(Some(Duration::from_secs(seconds)))
            }
            _ => Err(one_field(
                "confirm_seconds",
                &format!(
                    "must be a whole number of seconds from 1 to {}",
                    MAX_CONFIRM_WINDOW.as_secs()
                ),
            )),
        },
    }
}

fn optional_text<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a str, Refusal> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(one_field(key, "must be a string")),
    }
}

// ---- the schema and the files ----

async fn schema_view() -> Json<Value> {
    let sections: Vec<Value> = schema::sections().iter().map(section_json).collect();
    Json(json!({ "sections": sections }))
}

fn section_json(section: &Section) -> Value {
    let fields: Vec<Value> = section
        .fields
        .iter()
        .map(|field| {
            let (ty, options): (&str, &[&str]) = match field.ty {
                FieldType::Text => ("text", &[]),
                FieldType::Integer => ("integer", &[]),
                FieldType::Bool => ("bool", &[]),
                FieldType::List => ("list", &[]),
                FieldType::Secret => ("secret", &[]),
                FieldType::Choice(options) => ("choice", options),
            };
            let mut value = json!({
                "key": field.key,
                "label": field.label,
                "type": ty,
                "kinds": field.kinds,
                "required": field.required,
                "help": field.help,
            });
            if !options.is_empty() {
                value["options"] = json!(options);
            }
            if field.ty == FieldType::List {
                value["items"] = json!(if field.list_of_integers() {
                    "integer"
                } else {
                    "text"
                });
            }
            value
        })
        .collect();
    json!({
        "key": section.key,
        "title": section.title,
        "repeated": section.repeated,
        "kinds": section.kinds,
        "fields": fields,
    })
}

async fn running(State(state): State<Arc<AdminState>>) -> Answer {
    let text = config_ops::running_text(&state.applier).map_err(|e| internal(&e))?;
    Ok(Json(json!({
        "version": state.applier.running_version(),
        "lines": masked(&text)?,
    }))
    .into_response())
}

async fn candidate(State(state): State<Arc<AdminState>>) -> Answer {
    let working = config_ops::working(&state.applier).map_err(|e| internal(&e))?;
    Ok(Json(json!({
        "staged": working.revision > 0,
        "revision": working.revision,
        "base_version": working.base_version,
        "lines": masked(&working.text)?,
    }))
    .into_response())
}

/// `PUT /api/v1/config/candidate?revision=N` with a whole file as the body: staged if it
/// validates. Secrets written `"siteward-secret:omitted"` (as an export leaves them) are
/// kept from the working document.
async fn stage_file(
    State(state): State<Arc<AdminState>>,
    Caller(actor): Caller,
    Query(params): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Answer {
    let revision = revision_query(&params)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| one_field("text", "the body must be UTF-8 text (TOML)"))?;
    stage_import(&state, &actor, revision, text, None, "whole file")
}

/// An imported file: encrypted secrets decrypted with `passphrase`, omitted ones taken
/// from the working document by section and name, then staged if it validates.
fn stage_import(
    state: &AdminState,
    actor: &Actor,
    revision: u64,
    text: &str,
    passphrase: Option<&str>,
    what: &str,
) -> Answer {
    match config_ops::stage_import(&state.applier, actor, revision, text, passphrase, what) {
        Ok(kept) => {
            let revision = config_ops::working(&state.applier).map_or(0, |w| w.revision);
            Ok(Json(json!({
                "staged": true,
                "revision": revision,
                "secrets_kept_from_current": kept,
            }))
            .into_response())
        }
        Err(ImportFailure::File(e)) => Err(export_error(e)),
        Err(ImportFailure::Stage(StageFailure::Fields { errors, .. })) => Err(field_errors(
            "not staged: the file does not validate",
            &errors,
        )),
        Err(ImportFailure::Stage(other)) => Err(stage_failure(other)),
    }
}

async fn discard(State(state): State<Arc<AdminState>>, Caller(actor): Caller) -> Answer {
    let dropped = config_ops::discard(&state.applier, &actor).map_err(|e| internal(&e))?;
    Ok(Json(json!({ "discarded": dropped })).into_response())
}

// ---- entries ----

/// A section of the path: any but `tunnels.peers`, whose entries have their own paths.
fn path_section(section: &str) -> Result<&'static Section, Refusal> {
    schema::section(section)
        .filter(|s| s.key != "tunnels.peers")
        .ok_or_else(|| no_such_entry(section))
}

fn item_ref(section: &str, index: &str) -> Result<EntryRef, Refusal> {
    let found = path_section(section)?;
    match index.parse() {
        Ok(index) if found.repeated => Ok(EntryRef::Item {
            section: found.key,
            index,
        }),
        _ => Err(no_such_entry(&format!("{section}/{index}"))),
    }
}

fn peer_ref(tunnel: &str, peer: &str) -> Result<EntryRef, Refusal> {
    match (tunnel.parse(), peer.parse()) {
        (Ok(tunnel), Ok(peer)) => Ok(EntryRef::Peer { tunnel, peer }),
        _ => Err(no_such_entry(&format!("tunnels/{tunnel}/peers/{peer}"))),
    }
}

fn working_doc(state: &AdminState) -> Result<(DocumentMut, u64), Refusal> {
    let working = config_ops::working(&state.applier).map_err(|e| internal(&e))?;
    let doc = working.document().map_err(|e| internal(&e))?;
    Ok((doc, working.revision))
}

/// The values of an entry as a form shows them: text as typed (a list one item per
/// line, empty when unset), booleans (`null` when unset), secrets only `{"set": bool}`.
fn values_json(values: Vec<(&'static str, ShownValue)>) -> Value {
    let object: Map<String, Value> = values
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                ShownValue::Text(text) => Value::String(text),
                ShownValue::Bool(b) => json!(b),
                ShownValue::SecretSet(set) => json!({ "set": set }),
            };
            (key.to_string(), value)
        })
        .collect();
    Value::Object(object)
}

/// One entry with its values (and a tunnel's peers), or `None` if there is none.
fn entry_json(doc: &DocumentMut, at: &EntryRef) -> Option<Value> {
    let values = edit::entry_values(doc, at).ok()?;
    let mut entry = json!({ "entry": at.path(), "values": values_json(values) });
    match *at {
        EntryRef::Single(key) => entry["present"] = json!(doc.get(key).is_some()),
        EntryRef::Item { section, index } => {
            entry["index"] = json!(index);
            if section == "tunnels" {
                let peers: Vec<Value> = (0..config_ops::count_peers(doc, index))
                    .filter_map(|peer| {
                        entry_json(
                            doc,
                            &EntryRef::Peer {
                                tunnel: index,
                                peer,
                            },
                        )
                    })
                    .collect();
                entry["peers"] = json!(peers);
            }
        }
        EntryRef::Peer { tunnel, peer } => {
            entry["tunnel"] = json!(tunnel);
            entry["index"] = json!(peer);
        }
    }
    Some(entry)
}

/// The entry as it is in the working document now, with the candidate's revision.
fn entry_answer(state: &AdminState, at: &EntryRef, status: StatusCode) -> Answer {
    let (doc, revision) = working_doc(state)?;
    let mut entry = entry_json(&doc, at).ok_or_else(|| no_such_entry(&at.path()))?;
    entry["revision"] = json!(revision);
    let mut response = (status, Json(entry)).into_response();
    if status == StatusCode::CREATED {
        if let Ok(location) = HeaderValue::from_str(&entry_url(at)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    Ok(response)
}

fn entry_url(at: &EntryRef) -> String {
    match *at {
        EntryRef::Single(key) => format!("/api/v1/config/candidate/{key}"),
        EntryRef::Item { section, index } => {
            format!("/api/v1/config/candidate/{section}/{index}")
        }
        EntryRef::Peer { tunnel, peer } => {
            format!("/api/v1/config/candidate/tunnels/{tunnel}/peers/{peer}")
        }
    }
}

/// 404 unless entry `at` exists in the working document.
fn existing(state: &AdminState, at: &EntryRef) -> Result<(), Refusal> {
    let (doc, _) = working_doc(state)?;
    edit::entry_values(&doc, at)
        .map(|_| ())
        .map_err(|_| no_such_entry(&at.path()))
}

fn single(section: &str) -> Result<EntryRef, Refusal> {
    let found = path_section(section)?;
    if found.repeated {
        return Err(refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "[[{key}]] holds entries: /api/v1/config/candidate/{key}/INDEX is one of them",
                key = found.key
            ),
        ));
    }
    Ok(EntryRef::Single(found.key))
}

/// A single section's values, or every entry of a repeated one.
async fn get_section(State(state): State<Arc<AdminState>>, Path(section): Path<String>) -> Answer {
    let found = path_section(&section)?;
    if !found.repeated {
        return entry_answer(&state, &EntryRef::Single(found.key), StatusCode::OK);
    }
    let (doc, revision) = working_doc(&state)?;
    let entries: Vec<Value> = (0..config_ops::count_entries(&doc, found.key))
        .filter_map(|index| {
            entry_json(
                &doc,
                &EntryRef::Item {
                    section: found.key,
                    index,
                },
            )
        })
        .collect();
    Ok(
        Json(json!({ "section": found.key, "revision": revision, "entries": entries }))
            .into_response(),
    )
}

async fn get_entry(
    State(state): State<Arc<AdminState>>,
    Path((section, index)): Path<(String, String)>,
) -> Answer {
    entry_answer(&state, &item_ref(&section, &index)?, StatusCode::OK)
}

async fn get_peer(
    State(state): State<Arc<AdminState>>,
    Path((tunnel, peer)): Path<(String, String)>,
) -> Answer {
    entry_answer(&state, &peer_ref(&tunnel, &peer)?, StatusCode::OK)
}

async fn put_section(
    State(state): State<Arc<AdminState>>,
    Caller(actor): Caller,
    Path(section): Path<String>,
    body: Bytes,
) -> Answer {
    stage_edit(&state, &actor, single(&section)?, &body)
}

async fn put_entry(
    State(state): State<Arc<AdminState>>,
    Caller(actor): Caller,
    Path((section, index)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let at = item_ref(&section, &index)?;
    existing(&state, &at)?;
    stage_edit(&state, &actor, at, &body)
}

async fn put_peer(
    State(state): State<Arc<AdminState>>,
    Caller(actor): Caller,
    Path((tunnel, peer)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let at = peer_ref(&tunnel, &peer)?;
    existing(&state, &at)?;
    stage_edit(&state, &actor, at, &body)
}

fn stage_edit(state: &AdminState, actor: &Actor, at: EntryRef, body: &Bytes) -> Answer {
    let (values, revision) = entry_edit(body)?;
    let at = config_ops::stage_entry(&state.applier, actor, revision, &at, &values)
        .map_err(stage_failure)?;
    entry_answer(state, &at, StatusCode::OK)
}

async fn add_entry(
    State(state): State<Arc<AdminState>>,
    Caller(actor): Caller,
    Path(section): Path<String>,
    body: Bytes,
) -> Answer {
    let found = path_section(&section)?;
    if !found.repeated {
        return Err(refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "[{key}] is a single section: PUT /api/v1/config/candidate/{key} edits it",
                key = found.key
            ),
        ));
    }
    stage_addition(&state, &actor, found.key, None, &body)
}

async fn add_peer(
    State(state): State<Arc<AdminState>>,
    Caller(actor): Caller,
    Path(tunnel): Path<String>,
    body: Bytes,
) -> Answer {
    let at = item_ref("tunnels", &tunnel)?;
    existing(&state, &at)?;
    let EntryRef::Item { index, .. } = at else {
        return Err(no_such_entry(&format!("tunnels/{tunnel}")));
    };
    stage_addition(&state, &actor, "tunnels.peers", Some(index), &body)
}

fn stage_addition(
    state: &AdminState,
    actor: &Actor,
    section: &'static str,
    tunnel: Option<usize>,
    body: &Bytes,
) -> Answer {
    let (values, revision) = entry_edit(body)?;
    // Where the entry goes: config_ops gives its errors relative to it, and the API names
    // fields by their whole path, as for an edit.
    let (doc, _) = working_doc(state)?;
    let prefix = match tunnel {
        Some(tunnel) => EntryRef::Peer {
            tunnel,
            peer: config_ops::count_peers(&doc, tunnel),
        },
        None => EntryRef::Item {
            section,
            index: config_ops::count_entries(&doc, section),
        },
    }
    .path();
    match config_ops::stage_new_entry(&state.applier, actor, revision, section, tunnel, &values) {
        Ok(at) => entry_answer(state, &at, StatusCode::CREATED),
        Err(StageFailure::Fields { at: None, errors }) => {
            let errors: Vec<FieldError> = errors
                .into_iter()
                .map(|e| FieldError {
                    path: absolute_path(&prefix, &e.path),
                    message: e.message,
                })
                .collect();
            Err(field_errors("not staged: the entry has errors", &errors))
        }
        Err(failure) => Err(stage_failure(failure)),
    }
}

/// `target` under `checks[3]` is `checks[3].target`; the entry itself is `checks[3]`.
fn absolute_path(prefix: &str, relative: &str) -> String {
    if relative.is_empty() {
        prefix.to_string()
    } else if relative.starts_with(prefix) {
        // Not under the entry (config_ops leaves such a path as it is).
        relative.to_string()
    } else if relative.starts_with('[') {
        format!("{prefix}{relative}")
    } else {
        format!("{prefix}.{relative}")
    }
}

async fn delete_section(
    State(state): State<Arc<AdminState>>,
    Caller(actor): Caller,
    Path(section): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Answer {
    stage_removal(&state, &actor, single(&section)?, &params)
}

async fn delete_entry(
    State(state): State<Arc<AdminState>>,
    Caller(actor): Caller,
    Path((section, index)): Path<(String, String)>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Answer {
    stage_removal(&state, &actor, item_ref(&section, &index)?, &params)
}

async fn delete_peer(
    State(state): State<Arc<AdminState>>,
    Caller(actor): Caller,
    Path((tunnel, peer)): Path<(String, String)>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Answer {
    stage_removal(&state, &actor, peer_ref(&tunnel, &peer)?, &params)
}

fn stage_removal(
    state: &AdminState,
    actor: &Actor,
    at: EntryRef,
    params: &BTreeMap<String, String>,
) -> Answer {
    let revision = revision_query(params)?;
    existing(state, &at)?;
    config_ops::stage_removal(&state.applier, actor, revision, &at).map_err(stage_failure)?;
    let revision = config_ops::working(&state.applier).map_or(0, |w| w.revision);
    Ok(Json(json!({ "removed": at.path(), "revision": revision })).into_response())
}

// ---- review, commit, confirm ----

async fn diff(State(state): State<Arc<AdminState>>) -> Answer {
    let review = config_ops::review(&state.applier).map_err(|e| internal(&e))?;
    let errors: BTreeMap<&str, &str> = review
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    Ok(Json(json!({
        "staged": review.staged,
        "revision": review.revision,
        "changes": review.diff.iter().filter(|l| l.change != Change::Same).count(),
        "diff": diff_json(&review.diff),
        "errors": errors,
    }))
    .into_response())
}

async fn commit(
    State(state): State<Arc<AdminState>>,
    Caller(actor): Caller,
    body: Bytes,
) -> Answer {
    let object = json_object(&body)?;
    let revision = revision_of(&object)?;
    let confirm_within = confirm_window(&object)?;
    let comment = optional_text(&object, "comment")?;
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(one_field(
            "comment",
            &format!("at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    let committed =
        config_ops::commit_candidate(&state.applier, &actor, revision, confirm_within, comment)
            .await
            .map_err(commit_error)?;
    Ok(Json(committed).into_response())
}

async fn confirm(State(state): State<Arc<AdminState>>, Caller(actor): Caller) -> Answer {
    let version = state.applier.confirm(&actor).await.map_err(commit_error)?;
    Ok(Json(json!({ "confirmed": version })).into_response())
}

async fn rollback_now(State(state): State<Arc<AdminState>>, Caller(actor): Caller) -> Answer {
    let rolled_back = state
        .applier
        .roll_back_pending(&actor)
        .await
        .map_err(|e| internal(&e))?;
    if !rolled_back {
        return Err(refuse(
            StatusCode::CONFLICT,
            "no commit is waiting for confirmation",
        ));
    }
    Ok(Json(json!({
        "rolled_back": true,
        "running_version": state.applier.running_version(),
    }))
    .into_response())
}

// ---- history ----

async fn history(State(state): State<Arc<AdminState>>) -> Answer {
    let store = state.applier.store();
    let versions = store.versions().map_err(|e| internal(&e))?;
    let pending = store.pending().map_err(|e| internal(&e))?;
    Ok(Json(json!({
        "running": state.applier.running_version(),
        "pending": pending,
        "versions": versions,
    }))
    .into_response())
}

fn version_number(number: &str) -> Result<u64, Refusal> {
    number
        .parse()
        .map_err(|_| refuse(StatusCode::NOT_FOUND, "no such version"))
}

fn no_such_version(number: u64) -> Refusal {
    refuse(
        StatusCode::NOT_FOUND,
        format!("the history does not hold version {number}"),
    )
}

async fn version(State(state): State<Arc<AdminState>>, Path(number): Path<String>) -> Answer {
    let number = version_number(&number)?;
    let store = state.applier.store();
    let versions = store.versions().map_err(|e| internal(&e))?;
    let found = versions
        .iter()
        .find(|v| v.version == number)
        .ok_or_else(|| no_such_version(number))?;
    let previous = versions
        .iter()
        .map(|v| v.version)
        .filter(|v| *v < number)
        .max();
    let new = store.version_text(number).map_err(|e| internal(&e))?;
    let old = match previous {
        Some(p) => store.version_text(p).map_err(|e| internal(&e))?,
        None => String::new(),
    };
    let diff = view::diff(&old, &new)
        .map_err(|e| internal(&anyhow::anyhow!("comparing version {number}: {e}")))?;
    Ok(Json(json!({
        "version": found,
        "running": state.applier.running_version() == number,
        "previous": previous,
        "lines": masked(&new)?,
        "diff": diff_json(&diff),
    }))
    .into_response())
}

async fn rollback(
    State(state): State<Arc<AdminState>>,
    Caller(actor): Caller,
    Path(number): Path<String>,
    body: Bytes,
) -> Answer {
    let number = version_number(&number)?;
    let confirm_within = confirm_window(&json_object(&body)?)?;
    if state
        .applier
        .store()
        .version(number)
        .map_err(|e| internal(&e))?
        .is_none()
    {
        return Err(no_such_version(number));
    }
    let committed = config_ops::rollback_to(&state.applier, &actor, number, confirm_within)
        .await
        .map_err(commit_error)?;
    Ok(Json(committed).into_response())
}

// ---- export and import ----

/// `{"secrets": "omit" | "encrypt", "passphrase"}`: the running file as TOML, its secrets
/// left out or encrypted with the passphrase.
async fn export_file(
    State(state): State<Arc<AdminState>>,
    Caller(actor): Caller,
    body: Bytes,
) -> Answer {
    let object = json_object(&body)?;
    let passphrase = optional_text(&object, "passphrase")?;
    let secrets = match object.get("secrets").and_then(Value::as_str) {
        Some("omit") => SecretHandling::Omit,
        Some("encrypt") => SecretHandling::Encrypt { passphrase },
        _ => return Err(one_field("secrets", "expected \"omit\" or \"encrypt\"")),
    };
    let exported = match config_ops::export_running(&state.applier, &actor, secrets) {
        Ok(exported) => exported,
        Err(ImportFailure::File(e)) => return Err(export_error(e)),
        Err(ImportFailure::Stage(other)) => return Err(stage_failure(other)),
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/toml; charset=utf-8"),
        )],
        exported,
    )
        .into_response())
}

/// `{"text", "passphrase", "revision"}`: an exported file staged as the candidate.
async fn import_file(
    State(state): State<Arc<AdminState>>,
    Caller(actor): Caller,
    body: Bytes,
) -> Answer {
    let object = json_object(&body)?;
    let revision = revision_of(&object)?;
    let Some(Value::String(text)) = object.get("text") else {
        return Err(one_field("text", "required: the exported file as a string"));
    };
    let passphrase = optional_text(&object, "passphrase")?;
    let passphrase = (!passphrase.is_empty()).then_some(passphrase);
    stage_import(&state, &actor, revision, text, passphrase, "imported file")
}

// ---- audit ----

/// `GET /api/v1/audit?limit=N`: the newest lines first.
async fn audit(
    State(state): State<Arc<AdminState>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Answer {
    if let Some(key) = params.keys().find(|k| *k != "limit") {
        let key: String = key.chars().take(MAX_KEY_CHARS).collect();
        return Err(one_field(&key, "unknown parameter (expected limit)"));
    }
    let limit = match params.get("limit") {
        None => DEFAULT_AUDIT_LIMIT,
        Some(limit) => limit
            .trim()
            .parse()
            .map_err(|_| one_field("limit", "must be a whole number"))?,
    };
    let entries = state
        .applier
        .store()
        .audit_entries(limit)
        .map_err(|e| internal(&e))?;
    Ok(Json(json!({ "entries": entries })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Bytes {
        Bytes::from(value.to_string())
    }

    #[test]
    fn an_edit_reads_values_as_a_form_would_have_them() {
        let (values, revision) = entry_edit(&body(json!({
            "revision": 3,
            "name": "db1",
            "rise": 2,
            "tls": true,
            "expect_status": [200, 204],
            "allow": ["10.0.0.0/8", "192.0.2.0/24"],
            "source": null,
        })))
        .unwrap();
        assert_eq!(revision, 3);
        assert_eq!(values["name"], "db1");
        assert_eq!(values["rise"], "2");
        assert_eq!(values["tls"], "true");
        assert_eq!(values["expect_status"], "200\n204");
        assert_eq!(values["allow"], "10.0.0.0/8\n192.0.2.0/24");
        assert_eq!(values["source"], "");
    }

    #[test]
    fn an_edit_without_a_usable_revision_or_with_odd_values_is_refused() {
        for bad in [
            json!({ "name": "db1" }),
            json!({ "revision": -1 }),
            json!({ "revision": "3" }),
            json!({ "revision": 0, "allow": ["a\nb"] }),
            json!({ "revision": 0, "target": { "host": "x" } }),
            json!({ "revision": 0, "allow": [true] }),
        ] {
            let refusal = entry_edit(&body(bad.clone())).unwrap_err();
            assert_eq!(refusal.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        }
        for not_an_object in [&b"[1]"[..], b"{", b"\"x\""] {
            let refusal = entry_edit(&Bytes::from_static(not_an_object)).unwrap_err();
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn a_new_entry_s_errors_are_named_by_their_whole_path() {
        assert_eq!(absolute_path("checks[3]", "target"), "checks[3].target");
        assert_eq!(absolute_path("checks[3]", ""), "checks[3]");
        assert_eq!(
            absolute_path("tunnels[0].peers[2]", "allowed_ips[1]"),
            "tunnels[0].peers[2].allowed_ips[1]"
        );
        assert_eq!(absolute_path("checks[3]", "[0]"), "checks[3][0]");
        assert_eq!(
            absolute_path("checks[3]", "checks[3].rise"),
            "checks[3].rise"
        );
    }

    #[test]
    fn confirm_windows_are_bounded() {
        let window = |v: Value| confirm_window(v.as_object().unwrap());
        assert_eq!(window(json!({})).unwrap(), None);
        assert_eq!(window(json!({ "confirm_seconds": null })).unwrap(), None);
        assert_eq!(
            window(json!({ "confirm_seconds": 90 })).unwrap(),
            Some(Duration::from_secs(90))
        );
        for bad in [
            json!(0),
            json!(-5),
            json!(1.5),
            json!("60"),
            json!(MAX_CONFIRM_WINDOW.as_secs() + 1),
        ] {
            let refusal = window(json!({ "confirm_seconds": bad })).unwrap_err();
            assert_eq!(refusal.status, StatusCode::UNPROCESSABLE_ENTITY);
        }
    }

    #[test]
    fn the_schema_lists_every_section_with_typed_fields() {
        let sections: Vec<Value> = schema::sections().iter().map(section_json).collect();
        let checks = sections.iter().find(|s| s["key"] == "checks").unwrap();
        assert_eq!(checks["repeated"], true);
        assert!(checks["kinds"].as_array().unwrap().contains(&json!("tcp")));
        let fields = checks["fields"].as_array().unwrap();
        let status = fields.iter().find(|f| f["key"] == "expect_status").unwrap();
        assert_eq!(status["type"], "list");
        assert_eq!(status["items"], "integer");
        let secret = fields.iter().find(|f| f["key"] == "secret").unwrap();
        assert_eq!(secret["type"], "secret");
        assert!(secret["kinds"].as_array().is_some_and(|k| !k.is_empty()));
        assert_eq!(sections.len(), schema::sections().len());
        let choice = sections
            .iter()
            .flat_map(|s| s["fields"].as_array().unwrap())
            .find(|f| f["type"] == "choice")
            .unwrap();
        assert!(!choice["options"].as_array().unwrap().is_empty());
    }

    #[test]
    fn shown_values_never_carry_a_secret() {
        let values = values_json(vec![
            ("name", ShownValue::Text("db1".into())),
            ("tls", ShownValue::Bool(None)),
            ("secret", ShownValue::SecretSet(true)),
        ]);
        assert_eq!(
            values,
            json!({ "name": "db1", "tls": null, "secret": { "set": true } })
        );
    }
}
