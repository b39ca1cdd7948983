//! Configuration through forms: every section of the file, edited into the staged
//! candidate (validated as `check-config` validates, errors shown at their field), then
//! reviewed as a diff against the running version and committed, with confirmation.
//!
//! The forms come from `siteward_config::schema`; the edits are made on the TOML document
//! by `siteward_config::edit`, so comments and layout of the rest of the file survive.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use siteward_config::edit::{self, EntryRef, ShownValue};
use siteward_config::schema::{self, FieldType};
use siteward_config::FieldError;
use toml_edit::DocumentMut;

use crate::admin::AdminState;
use crate::config_ops;
use crate::ui::auth::{form_urlencoded_pairs, UiAuth};
use crate::ui::render::{error_page, page, page_with_status, see_other, PageCtx};

/// The sections in the order the overview lists them.
const SINGLE_SECTIONS: &[&str] = &["appliance", "admin", "metrics", "uplink", "spool"];
const REPEATED_SECTIONS: &[&str] = &["checks", "tunnels", "connectors", "relays"];

#[derive(Template)]
#[template(path = "config_overview.html")]
struct OverviewPage {
    page: PageCtx,
    singles: Vec<SectionLink>,
    lists: Vec<EntryList>,
}

struct SectionLink {
    key: &'static str,
    title: &'static str,
    present: bool,
}

struct EntryList {
    key: &'static str,
    title: &'static str,
    kinds: &'static [&'static str],
    entries: Vec<EntrySummary>,
}

struct EntrySummary {
    index: usize,
    name: String,
    kind: String,
    main: String,
    /// Peers of a WireGuard tunnel.
    peers: Vec<EntrySummary>,
}

#[derive(Template)]
#[template(path = "config_entry.html")]
struct EntryPage {
    page: PageCtx,
    heading: String,
    /// Where the form posts.
    action: String,
    /// Where the kind chooser reloads the form (GET).
    kind_url: String,
    kinds: &'static [&'static str],
    kind: String,
    revision: u64,
    fields: Vec<FormField>,
    /// Problems of the entry as a whole (`checks[2]: ...`) or that no field shows.
    entry_errors: Vec<String>,
    /// Where "delete" posts, for an existing entry.
    delete: Option<String>,
    /// Peers of a WireGuard tunnel, with their links.
    peers: Vec<EntrySummary>,
    peers_base: String,
}

struct FormField {
    key: &'static str,
    label: &'static str,
    help: &'static str,
    required: bool,
    /// "text", "integer", "bool", "list", "secret" or "choice".
    input: &'static str,
    value: String,
    options: Vec<&'static str>,
    secret_set: bool,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct KindQuery {
    #[serde(default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

pub async fn overview(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Query(query): Query<DoneQuery>,
) -> Response {
    let notice = (query.done.as_deref() == Some("staged"))
        .then(|| "Staged. Review and commit when you are done editing.".to_string());
    let ctx = PageCtx::new(&state, &auth.session, "config").with_notice(notice);
    let working = match config_ops::working(&state.applier) {
        Ok(working) => working,
        Err(e) => return internal(ctx, &e),
    };
    let doc = match working.document() {
        Ok(doc) => doc,
        Err(e) => return internal(ctx, &e),
    };
    let singles = SINGLE_SECTIONS
        .iter()
        .filter_map(|key| schema::section(key))
        .map(|section| SectionLink {
            key: section.key,
            title: section.title,
            present: doc.get(section.key).is_some(),
        })
        .collect();
    let lists = REPEATED_SECTIONS
        .iter()
        .filter_map(|key| schema::section(key))
        .map(|section| EntryList {
            key: section.key,
            title: section.title,
            kinds: section.kinds,
            entries: summaries(&doc, section.key),
        })
        .collect();
    page(&OverviewPage {
        page: ctx,
        singles,
        lists,
    })
}

pub async fn section_page(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Path(section): Path<String>,
    Query(query): Query<KindQuery>,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    let Some(section) = schema::section(&section).filter(|s| s.key != "tunnels.peers") else {
        return not_found(ctx);
    };
    if section.repeated {
        // The overview lists the entries of every repeated section.
        return see_other(&format!("/config#{}", section.key));
    }
    render_form(
        &state,
        ctx,
        EntryRef::Single(section.key),
        query.kind,
        None,
        StatusCode::OK,
    )
}

pub async fn entry_page(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Path((section, index)): Path<(String, String)>,
    Query(query): Query<KindQuery>,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    let Some(at) = entry_ref(&section, &index, None) else {
        return not_found(ctx);
    };
    render_form(&state, ctx, at, query.kind, None, StatusCode::OK)
}

pub async fn peer_page(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Path((tunnel, peer)): Path<(usize, String)>,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    let Some(at) = entry_ref("tunnels.peers", &peer, Some(tunnel)) else {
        return not_found(ctx);
    };
    render_form(&state, ctx, at, None, None, StatusCode::OK)
}

pub async fn save_section(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Path(section): Path<String>,
    body: Bytes,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    let Some(section) = schema::section(&section).filter(|s| !s.repeated) else {
        return not_found(ctx);
    };
    save(
        &state,
        &auth,
        ctx,
        Target::Existing(EntryRef::Single(section.key)),
        &body,
    )
    .await
}

pub async fn save_entry(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Path((section, index)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    let target = if index == "new" {
        match schema::section(&section).filter(|s| s.repeated && s.key != "tunnels.peers") {
            Some(section) => Target::New {
                section: section.key,
                tunnel: None,
            },
            None => return not_found(ctx),
        }
    } else {
        match entry_ref(&section, &index, None) {
            Some(at) => Target::Existing(at),
            None => return not_found(ctx),
        }
    };
    save(&state, &auth, ctx, target, &body).await
}

pub async fn save_peer(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Path((tunnel, peer)): Path<(usize, String)>,
    body: Bytes,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    let target = if peer == "new" {
        Target::New {
            section: "tunnels.peers",
            tunnel: Some(tunnel),
        }
    } else {
        match entry_ref("tunnels.peers", &peer, Some(tunnel)) {
            Some(at) => Target::Existing(at),
            None => return not_found(ctx),
        }
    };
    save(&state, &auth, ctx, target, &body).await
}

pub async fn delete_entry(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Path((section, index)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    let Some(at) = entry_ref(&section, &index, None) else {
        return not_found(ctx);
    };
    delete(&state, &auth, ctx, at, &body)
}

pub async fn delete_peer(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Path((tunnel, peer)): Path<(usize, String)>,
    body: Bytes,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    let Some(at) = entry_ref("tunnels.peers", &peer, Some(tunnel)) else {
        return not_found(ctx);
    };
    delete(&state, &auth, ctx, at, &body)
}

enum Target {
    Existing(EntryRef),
    New {
        section: &'static str,
        tunnel: Option<usize>,
    },
}

async fn save(
    state: &AdminState,
    auth: &UiAuth,
    ctx: PageCtx,
    target: Target,
    body: &[u8],
) -> Response {
    let (values, revision) = form_values(body);
    let result = match &target {
        Target::Existing(at) => {
            config_ops::stage_entry(&state.applier, &auth.actor, revision, at, &values)
        }
        Target::New { section, tunnel } => config_ops::stage_new_entry(
            &state.applier,
            &auth.actor,
            revision,
            section,
            *tunnel,
            &values,
        ),
    };
    match result {
        Ok(at) => {
            let back = match at {
                EntryRef::Peer { tunnel, .. } => format!("/config/tunnels/{tunnel}"),
                EntryRef::Single(_) | EntryRef::Item { .. } => "/config".to_string(),
            };
            see_other(&format!("{back}?done=staged"))
        }
        Err(config_ops::StageFailure::Fields { at, errors }) => {
            let at = at.unwrap_or(match target {
                Target::Existing(at) => at,
                // A new entry's errors are shown on the new-entry form.
                Target::New { section, tunnel } => new_entry(section, tunnel),
            });
            let kind = values.get("kind").cloned();
            render_form(
                state,
                ctx,
                at,
                kind,
                Some((values, errors)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
        Err(config_ops::StageFailure::Refused(message)) => {
            error_page(ctx, StatusCode::CONFLICT, "Not staged", &message)
        }
        Err(config_ops::StageFailure::Internal(e)) => internal(ctx, &e),
    }
}

fn delete(state: &AdminState, auth: &UiAuth, ctx: PageCtx, at: EntryRef, body: &[u8]) -> Response {
    let (_, revision) = form_values(body);
    match config_ops::stage_removal(&state.applier, &auth.actor, revision, &at) {
        Ok(()) => match at {
            EntryRef::Peer { tunnel, .. } => see_other(&format!("/config/tunnels/{tunnel}")),
            _ => see_other("/config"),
        },
        Err(config_ops::StageFailure::Refused(message)) => {
            error_page(ctx, StatusCode::CONFLICT, "Not removed", &message)
        }
        Err(config_ops::StageFailure::Fields { errors, .. }) => error_page(
            ctx,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not removed",
            &errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Err(config_ops::StageFailure::Internal(e)) => internal(ctx, &e),
    }
}

/// The form of one entry: from the working document, or, after a refused save, from what
/// was typed (secrets excepted: they are never sent back) with the errors at their fields.
fn render_form(
    state: &AdminState,
    ctx: PageCtx,
    at: EntryRef,
    kind_override: Option<String>,
    refused: Option<(BTreeMap<String, String>, Vec<FieldError>)>,
    status: StatusCode,
) -> Response {
    let working = match config_ops::working(&state.applier) {
        Ok(working) => working,
        Err(e) => return internal(ctx, &e),
    };
    let doc = match working.document() {
        Ok(doc) => doc,
        Err(e) => return internal(ctx, &e),
    };
    let Some(section) = schema::section(at.section_key()) else {
        return not_found(ctx);
    };
    let is_new = is_new(&at);
    let current: Vec<(&'static str, ShownValue)> = if is_new {
        Vec::new()
    } else {
        match edit::entry_values(&doc, &at) {
            Ok(values) => values,
            Err(e) => {
                return error_page(ctx, StatusCode::NOT_FOUND, "No such entry", &e.to_string())
            }
        }
    };
    let current_kind = current.iter().find_map(|(key, value)| match (key, value) {
        (&"kind", ShownValue::Text(kind)) if !kind.is_empty() => Some(kind.clone()),
        _ => None,
    });
    let kind = kind_override
        .filter(|k| section.kinds.contains(&k.as_str()))
        .or(current_kind)
        .or_else(|| section.kinds.first().map(|k| k.to_string()))
        .unwrap_or_default();
    let prefix = if is_new { String::new() } else { at.path() };
    let (typed, errors) = refused.unwrap_or_default();
    let (by_key, entry_errors) = split_errors(&errors, &prefix, is_new);
    let current: HashMap<&str, ShownValue> = current.into_iter().collect();
    let fields = section
        .fields_for(if section.kinds.is_empty() {
            None
        } else {
            Some(kind.as_str())
        })
        .filter(|f| f.key != "kind")
        .map(|field| {
            let shown = current.get(field.key);
            let typed_value = typed.get(field.key);
            let (value, secret_set) = match (field.ty, shown) {
                (FieldType::Secret, Some(ShownValue::SecretSet(set))) => (String::new(), *set),
                (FieldType::Secret, _) => (String::new(), false),
                (_, _) if typed_value.is_some() => {
                    (typed_value.cloned().unwrap_or_default(), false)
                }
                (_, Some(ShownValue::Text(text))) => (text.clone(), false),
                (_, Some(ShownValue::Bool(Some(b)))) => (b.to_string(), false),
                _ => (String::new(), false),
            };
            let mut error = by_key.get(field.key).cloned();
            if field.ty == FieldType::Secret
                && typed.get(field.key).is_some_and(|v| !v.is_empty())
                && !errors.is_empty()
            {
                // What was typed is not sent back; say so rather than lose it silently.
                error.get_or_insert_with(|| "not saved: type the secret again".to_string());
            }
            FormField {
                key: field.key,
                label: field.label,
                help: field.help,
                required: field.required,
                input: match field.ty {
                    FieldType::Text => "text",
                    FieldType::Integer => "integer",
                    FieldType::Bool => "bool",
                    FieldType::List => "list",
                    FieldType::Secret => "secret",
                    FieldType::Choice(_) => "choice",
                },
                value,
                options: match field.ty {
                    FieldType::Choice(options) => options.to_vec(),
                    _ => Vec::new(),
                },
                secret_set,
                error,
            }
        })
        .collect();
    // Errors at a key the form does not show (a key of another kind) still need showing.
    let shown: Vec<&str> = section
        .fields_for(Some(kind.as_str()))
        .map(|f| f.key)
        .collect();
    let mut entry_errors = entry_errors;
    entry_errors.extend(
        by_key
            .iter()
            .filter(|(key, _)| !shown.contains(&key.as_str()) || key.as_str() == "kind")
            .map(|(key, message)| format!("{key}: {message}")),
    );
    let (heading, action, kind_url, delete, peers, peers_base) = match at {
        EntryRef::Single(key) => (
            section.title.to_string(),
            format!("/config/{key}"),
            format!("/config/{key}"),
            None,
            Vec::new(),
            String::new(),
        ),
        EntryRef::Item {
            section: key,
            index,
        } if index == usize::MAX => (
            format!("New entry in {}", section.title),
            format!("/config/{key}/new"),
            format!("/config/{key}/new"),
            None,
            Vec::new(),
            String::new(),
        ),
        EntryRef::Item {
            section: key,
            index,
        } => {
            let name = current_name(&current).unwrap_or_else(|| format!("#{index}"));
            let peers = if key == "tunnels" && kind == "wireguard" {
                peer_summaries(&doc, index)
            } else {
                Vec::new()
            };
            (
                format!("{}: {name}", section.title),
                format!("/config/{key}/{index}"),
                format!("/config/{key}/{index}"),
                Some(format!("/config/{key}/{index}/delete")),
                peers,
                format!("/config/tunnels/{index}/peers"),
            )
        }
        EntryRef::Peer { tunnel, peer } if peer == usize::MAX => (
            "New WireGuard peer".to_string(),
            format!("/config/tunnels/{tunnel}/peers/new"),
            String::new(),
            None,
            Vec::new(),
            String::new(),
        ),
        EntryRef::Peer { tunnel, peer } => {
            let name = current_name(&current).unwrap_or_else(|| format!("#{peer}"));
            (
                format!("WireGuard peer: {name}"),
                format!("/config/tunnels/{tunnel}/peers/{peer}"),
                String::new(),
                Some(format!("/config/tunnels/{tunnel}/peers/{peer}/delete")),
                Vec::new(),
                String::new(),
            )
        }
    };
    page_with_status(
        status,
        &EntryPage {
            page: ctx,
            heading,
            action,
            kind_url,
            kinds: section.kinds,
            kind,
            revision: working.revision,
            fields,
            entry_errors,
            delete,
            peers,
            peers_base,
        },
    )
}

/// Field errors of the entry at `prefix` by key, and the entry's own. For a new entry
/// (`prefix` empty) every error of the entry that was appended counts.
fn split_errors(
    errors: &[FieldError],
    prefix: &str,
    is_new: bool,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut by_key: BTreeMap<String, String> = BTreeMap::new();
    let mut entry = Vec::new();
    for error in errors {
        let rest = if is_new {
            // The staging code reports a new entry's errors relative to it already.
            Some(error.path.as_str())
        } else if error.path == prefix {
            Some("")
        } else {
            error
                .path
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('.'))
        };
        match rest {
            Some("") | None => entry.push(error.to_string()),
            Some(rest) => {
                let key = rest.split(['.', '[']).next().unwrap_or(rest).to_string();
                by_key
                    .entry(key)
                    .and_modify(|m| {
                        m.push_str("; ");
                        m.push_str(&error.message);
                    })
                    .or_insert_with(|| error.message.clone());
            }
        }
    }
    (by_key, entry)
}

fn is_new(at: &EntryRef) -> bool {
    matches!(at, EntryRef::Item { index, .. } if *index == usize::MAX)
        || matches!(at, EntryRef::Peer { peer, .. } if *peer == usize::MAX)
}

fn current_name(current: &HashMap<&str, ShownValue>) -> Option<String> {
    match current.get("name") {
        Some(ShownValue::Text(name)) if !name.is_empty() => Some(name.clone()),
        _ => None,
    }
}

/// `checks` + `3` → the entry; `new` → a new entry (index `usize::MAX`).
fn entry_ref(section: &str, index: &str, tunnel: Option<usize>) -> Option<EntryRef> {
    let section = schema::section(section).filter(|s| s.repeated)?;
    let index = if index == "new" {
        usize::MAX
    } else {
        index.parse().ok()?
    };
    match (section.key, tunnel) {
        ("tunnels.peers", Some(tunnel)) => Some(EntryRef::Peer {
            tunnel,
            peer: index,
        }),
        ("tunnels.peers", None) | (_, Some(_)) => None,
        (key, None) => Some(EntryRef::Item {
            section: key,
            index,
        }),
    }
}

/// The reference the new-entry form stands for: index `usize::MAX` of its section (a peer
/// of `tunnel` for `tunnels.peers`).
fn new_entry(section: &'static str, tunnel: Option<usize>) -> EntryRef {
    match tunnel {
        Some(tunnel) => EntryRef::Peer {
            tunnel,
            peer: usize::MAX,
        },
        None => EntryRef::Item {
            section,
            index: usize::MAX,
        },
    }
}

/// The submitted fields (without `csrf` and `revision`) and the revision the form was
/// opened at.
fn form_values(body: &[u8]) -> (BTreeMap<String, String>, u64) {
    let mut values = BTreeMap::new();
    let mut revision = 0;
    for (key, value) in form_urlencoded_pairs(body) {
        match key.as_str() {
            "csrf" => {}
            "revision" => revision = value.trim().parse().unwrap_or(0),
            _ => {
                // Browsers send textarea lines with CRLF.
                values.insert(key, value.replace("\r\n", "\n"));
            }
        }
    }
    (values, revision)
}

fn summaries(doc: &DocumentMut, section: &'static str) -> Vec<EntrySummary> {
    (0..config_ops::count_entries(doc, section))
        .filter_map(|index| {
            let at = EntryRef::Item { section, index };
            let values = edit::entry_values(doc, &at).ok()?;
            let peers = if section == "tunnels" {
                peer_summaries(doc, index)
            } else {
                Vec::new()
            };
            Some(summary(index, &values, peers))
        })
        .collect()
}

fn peer_summaries(doc: &DocumentMut, tunnel: usize) -> Vec<EntrySummary> {
    (0..config_ops::count_peers(doc, tunnel))
        .filter_map(|peer| {
            let values = edit::entry_values(doc, &EntryRef::Peer { tunnel, peer }).ok()?;
            Some(summary(peer, &values, Vec::new()))
        })
        .collect()
}

fn summary(
    index: usize,
    values: &[(&'static str, ShownValue)],
    peers: Vec<EntrySummary>,
) -> EntrySummary {
    let text = |key: &str| {
        values.iter().find_map(|(k, v)| match v {
            ShownValue::Text(text) if *k == key && !text.is_empty() => Some(text.clone()),
            _ => None,
        })
    };
    EntrySummary {
        index,
        name: text("name").unwrap_or_else(|| format!("#{index}")),
        kind: text("kind").unwrap_or_default(),
        main: [
            "target",
            "url",
            "listen",
            "interface",
            "endpoint",
            "directory",
            "udp",
            "tcp",
        ]
        .iter()
        .find_map(|key| text(key))
        .unwrap_or_default()
        .replace('\n', ", "),
        peers,
    }
}

fn not_found(ctx: PageCtx) -> Response {
    error_page(
        ctx,
        StatusCode::NOT_FOUND,
        "No such page",
        "There is no such section or entry in the configuration.",
    )
}

fn internal(ctx: PageCtx, e: &anyhow::Error) -> Response {
    tracing::error!("web UI configuration page: {e:#}");
    error_page(
        ctx,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        &format!("{e:#}"),
    )
}
