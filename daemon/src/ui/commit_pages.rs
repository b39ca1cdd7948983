//! Review and commit, confirmation, the history with its diffs and rollbacks, export and
//! import, and the audit log.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use siteward_config::export::SecretHandling;
use siteward_config::view::{self, Change, DiffLine};

use crate::admin::AdminState;
use crate::apply::{CommitError, Committed, DEFAULT_CONFIRM_WINDOW};
use crate::config_ops::{self, ImportFailure, StageFailure};
use crate::config_store::{AuditEntry, Version};
use crate::ui::auth::{FormBody, UiAuth};
use crate::ui::render::{error_page, page, page_with_status, see_other, PageCtx};

#[derive(Template)]
#[template(path = "config_review.html")]
struct ReviewPage {
    page: PageCtx,
    staged: bool,
    revision: u64,
    stale_base: Option<u64>,
    running: u64,
    diff: Vec<DiffRow>,
    changes: usize,
    errors: Vec<String>,
    default_minutes: u64,
}

struct DiffRow {
    class: &'static str,
    sign: &'static str,
    text: String,
}

fn rows(diff: &[DiffLine]) -> Vec<DiffRow> {
    diff.iter()
        .map(|line| {
            let (class, sign) = match line.change {
                Change::Added => ("added", "+"),
                Change::Removed => ("removed", "-"),
                Change::Same => ("same", " "),
            };
            DiffRow {
                class,
                sign,
                text: line.text.clone(),
            }
        })
        .collect()
}

#[derive(Deserialize)]
pub struct NoticeQuery {
    #[serde(default)]
    done: Option<String>,
    /// Sections whose changes wait for a restart, after a commit.
    #[serde(default)]
    restart: String,
    /// How many tunnels, connectors or relays failed to start, after a commit.
    #[serde(default)]
    failed: usize,
}

impl NoticeQuery {
    /// The notice of `done`, with what the commit could not do yet. Only known section
    /// names are shown, so the query string puts no text of its own on the page.
    fn notice(&self) -> Option<String> {
        let mut text = notice(self.done.as_deref())?;
        let sections: Vec<&str> = self
            .restart
            .split(',')
            .filter(|s| ["appliance", "admin", "metrics", "spool"].contains(s))
            .collect();
        if !sections.is_empty() {
            text.push_str(&format!(
                " Changes to [{}] take effect at the next restart.",
                sections.join("], [")
            ));
        }
        if self.failed > 0 {
            text.push_str(&format!(
                " {} tunnel(s), connector(s) or relay(s) failed to start: the dashboard says why.",
                self.failed
            ));
        }
        Some(text)
    }
}

/// Fixed notices by code: a query string never puts text on a page.
fn notice(code: Option<&str>) -> Option<String> {
    Some(
        match code? {
            "committed" => "Committed and applied.",
            "committed-confirm" => {
                "Committed and applied on trial: confirm it before the time runs out."
            }
            "confirmed" => "Confirmed: the configuration stays.",
            "rolled-back" => "Rolled back: the previous configuration is running again.",
            "discarded" => "Staged changes dropped.",
            "imported" => "Imported and staged: review and commit it.",
            "staged" => "Staged.",
            _ => return None,
        }
        .to_string(),
    )
}

pub async fn review(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config").with_notice(query.notice());
    let review = match config_ops::review(&state.applier) {
        Ok(review) => review,
        Err(e) => return internal(ctx, &e),
    };
    page(&ReviewPage {
        page: ctx,
        staged: review.staged,
        revision: review.revision,
        stale_base: review.stale_base,
        running: state.applier.running_version(),
        changes: review
            .diff
            .iter()
            .filter(|l| l.change != Change::Same)
            .count(),
        diff: rows(&review.diff),
        errors: review.errors.iter().map(ToString::to_string).collect(),
        default_minutes: DEFAULT_CONFIRM_WINDOW.as_secs() / 60,
    })
}

/// Form fields of a commit: `revision`, `comment`, `confirm` ("on" when the box is
/// ticked), `minutes`.
struct CommitForm {
    revision: u64,
    comment: String,
    confirm_within: Option<Duration>,
}

fn commit_form(body: &[u8]) -> Result<CommitForm, String> {
    let form = FormBody::parse(body);
    let get = |key: &str| form.first(key).map(|v| v.trim().to_string());
    let confirm = get("confirm").is_some_and(|v| v == "on" || v == "true");
    let confirm_within = if confirm {
        // Fractions are allowed ("0.5" is 30 seconds); the Applier bounds the window.
        let minutes: f64 = get("minutes")
            .unwrap_or_default()
            .replace(',', ".")
            .parse()
            .ok()
            .filter(|m: &f64| m.is_finite() && *m > 0.0 && *m <= 24.0 * 60.0)
            .ok_or_else(|| {
                "the confirm time must be a number of minutes, up to 1440".to_string()
            })?;
        Some(Duration::from_secs_f64(minutes * 60.0))
    } else {
        None
    };
    Ok(CommitForm {
        revision: get("revision").and_then(|r| r.parse().ok()).unwrap_or(0),
        comment: get("comment")
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect(),
        confirm_within,
    })
}

pub async fn commit(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    body: Bytes,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    let form = match commit_form(&body) {
        Ok(form) => form,
        Err(message) => return error_page(ctx, StatusCode::BAD_REQUEST, "Not committed", &message),
    };
    let result = config_ops::commit_candidate(
        &state.applier,
        &auth.actor,
        form.revision,
        form.confirm_within,
        &form.comment,
    )
    .await;
    committed_or_error(ctx, result)
}

fn committed_or_error(ctx: PageCtx, result: Result<Committed, CommitError>) -> Response {
    match result {
        Ok(committed) => {
            let done = if committed.confirm_by_ms.is_some() {
                "committed-confirm"
            } else {
                "committed"
            };
            see_other(&format!(
                "/config/review?done={done}&restart={}&failed={}",
                committed.applied.restart_needed.join(","),
                committed.applied.failed.len()
            ))
        }
        Err(CommitError::Invalid(errors)) => error_page(
            ctx,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not committed",
            &errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Err(CommitError::Refused(message)) => {
            error_page(ctx, StatusCode::CONFLICT, "Not committed", &message)
        }
        Err(CommitError::Io(e)) => internal(ctx, &e),
    }
}

pub async fn discard(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    match config_ops::discard(&state.applier, &auth.actor) {
        Ok(_) => see_other("/config/review?done=discarded"),
        Err(e) => internal(ctx, &e),
    }
}

pub async fn confirm(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    match state.applier.confirm(&auth.actor).await {
        Ok(_) => see_other("/config/review?done=confirmed"),
        Err(CommitError::Refused(message)) => {
            error_page(ctx, StatusCode::CONFLICT, "Nothing to confirm", &message)
        }
        Err(e) => internal(ctx, &anyhow::anyhow!("{e}")),
    }
}

pub async fn rollback_now(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    match state.applier.roll_back_pending(&auth.actor).await {
        Ok(true) => see_other("/config/history?done=rolled-back"),
        Ok(false) => error_page(
            ctx,
            StatusCode::CONFLICT,
            "Nothing to roll back",
            "No commit is waiting for confirmation.",
        ),
        Err(e) => internal(ctx, &e),
    }
}

#[derive(Template)]
#[template(path = "config_history.html")]
struct HistoryPage {
    page: PageCtx,
    running: u64,
    versions: Vec<VersionRow>,
}

struct VersionRow {
    version: u64,
    at: String,
    by: String,
    from: String,
    action: String,
    comment: String,
}

impl From<&Version> for VersionRow {
    fn from(v: &Version) -> Self {
        VersionRow {
            version: v.version,
            at: time(v.at),
            by: v.by.name.clone(),
            from: v.by.from.clone(),
            action: v.action.clone(),
            comment: v.comment.clone(),
        }
    }
}

pub async fn history(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "history").with_notice(query.notice());
    match state.applier.store().versions() {
        Ok(versions) => page(&HistoryPage {
            page: ctx,
            running: state.applier.running_version(),
            versions: versions.iter().map(VersionRow::from).collect(),
        }),
        Err(e) => internal(ctx, &e),
    }
}

#[derive(Template)]
#[template(path = "config_version.html")]
struct VersionPage {
    page: PageCtx,
    version: VersionRow,
    previous: Option<u64>,
    running: u64,
    diff: Vec<DiffRow>,
    default_minutes: u64,
}

pub async fn version(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Path(number): Path<u64>,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "history");
    let store = state.applier.store();
    let (found, previous) = match store
        .version(number)
        .and_then(|found| Ok((found, store.previous_number(number)?)))
    {
        Ok((Some(found), previous)) => (found, previous),
        Ok((None, _)) => {
            return error_page(
                ctx,
                StatusCode::NOT_FOUND,
                "No such version",
                "The history does not hold it (any more).",
            )
        }
        Err(e) => return internal(ctx, &e),
    };
    let texts = store.version_text(number).and_then(|new| {
        let old = match previous {
            Some(p) => store.version_text(p)?,
            None => String::new(),
        };
        Ok((old, new))
    });
    let diff = match texts.map(|(old, new)| view::diff(&old, &new)) {
        Ok(Ok(diff)) => diff,
        Ok(Err(e)) => return internal(ctx, &anyhow::anyhow!("{e}")),
        Err(e) => return internal(ctx, &e),
    };
    page(&VersionPage {
        page: ctx,
        version: VersionRow::from(&found),
        previous,
        running: state.applier.running_version(),
        diff: rows(&diff),
        default_minutes: DEFAULT_CONFIRM_WINDOW.as_secs() / 60,
    })
}

pub async fn rollback(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Path(number): Path<u64>,
    body: Bytes,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "history");
    let form = match commit_form(&body) {
        Ok(form) => form,
        Err(message) => {
            return error_page(ctx, StatusCode::BAD_REQUEST, "Not rolled back", &message)
        }
    };
    let result =
        config_ops::rollback_to(&state.applier, &auth.actor, number, form.confirm_within).await;
    committed_or_error(ctx, result)
}

#[derive(Template)]
#[template(path = "config_transfer.html")]
struct TransferPage {
    page: PageCtx,
    error: Option<String>,
    errors: Vec<String>,
    revision: u64,
}

pub async fn transfer_page(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    transfer(ctx, &state, None, Vec::new(), StatusCode::OK)
}

fn transfer(
    ctx: PageCtx,
    state: &AdminState,
    error: Option<String>,
    errors: Vec<String>,
    status: StatusCode,
) -> Response {
    let revision = config_ops::working(&state.applier).map_or(0, |w| w.revision);
    page_with_status(
        status,
        &TransferPage {
            page: ctx,
            error,
            errors,
            revision,
        },
    )
}

/// Export: the running configuration as a download, secrets left out or encrypted.
pub async fn export_file(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    body: Bytes,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    let form = FormBody::parse(&body);
    let get = |key: &str| form.get(key);
    let passphrase = get("passphrase");
    let secrets = if get("secrets") == "encrypt" {
        SecretHandling::Encrypt {
            passphrase: &passphrase,
        }
    } else {
        SecretHandling::Omit
    };
    let exported = match config_ops::export_running(&state.applier, &auth.actor, secrets) {
        Ok(exported) => exported,
        Err(ImportFailure::File(e)) => {
            return transfer(
                ctx,
                &state,
                Some(e.to_string()),
                Vec::new(),
                StatusCode::BAD_REQUEST,
            )
        }
        Err(ImportFailure::Stage(e)) => return stage_failure(ctx, e),
    };
    let mut response = exported.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/toml; charset=utf-8"),
    );
    let name = format!(
        "attachment; filename=\"siteward-{}-v{}.toml\"",
        state
            .appliance
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect::<String>(),
        state.applier.running_version()
    );
    if let Ok(value) = HeaderValue::from_str(&name) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// Import: a file's text (pasted, or read into the textarea by the page's script) is
/// decrypted, its left-out secrets taken from the current configuration by name, and
/// staged if it validates.
pub async fn import_file(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    body: Bytes,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "config");
    let form = FormBody::parse(&body);
    let get = |key: &str| form.get(key);
    let text = get("text").replace("\r\n", "\n");
    let passphrase = get("passphrase");
    let revision: u64 = get("revision").trim().parse().unwrap_or(0);
    let passphrase = (!passphrase.is_empty()).then_some(passphrase.as_str());
    match config_ops::stage_import(
        &state.applier,
        &auth.actor,
        revision,
        &text,
        passphrase,
        "imported file",
    ) {
        Ok(_) => see_other("/config/review?done=imported"),
        Err(ImportFailure::File(e)) => transfer(
            ctx,
            &state,
            Some(e.to_string()),
            Vec::new(),
            StatusCode::BAD_REQUEST,
        ),
        Err(ImportFailure::Stage(StageFailure::Fields { errors, .. })) => transfer(
            ctx,
            &state,
            Some("The file was not staged: it does not validate.".to_string()),
            errors.iter().map(ToString::to_string).collect(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(ImportFailure::Stage(e)) => stage_failure(ctx, e),
    }
}

fn stage_failure(ctx: PageCtx, failure: StageFailure) -> Response {
    match failure {
        StageFailure::Refused(message) => {
            error_page(ctx, StatusCode::CONFLICT, "Not staged", &message)
        }
        StageFailure::Fields { errors, .. } => error_page(
            ctx,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not staged",
            &errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        StageFailure::Internal(e) => internal(ctx, &e),
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    page: PageCtx,
    entries: Vec<AuditRow>,
}

struct AuditRow {
    at: String,
    by: String,
    from: String,
    action: String,
    detail: String,
}

impl From<&AuditEntry> for AuditRow {
    fn from(e: &AuditEntry) -> Self {
        AuditRow {
            at: time(e.at),
            by: e.by.name.clone(),
            from: e.by.from.clone(),
            action: e.action.clone(),
            detail: e.detail.clone(),
        }
    }
}

pub async fn audit(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
) -> Response {
    let ctx = PageCtx::new(&state, &auth.session, "audit");
    match state.applier.store().audit_entries(500) {
        Ok(entries) => page(&AuditPage {
            page: ctx,
            entries: entries.iter().map(AuditRow::from).collect(),
        }),
        Err(e) => internal(ctx, &e),
    }
}

fn time(unix_seconds: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix_seconds))
        .to_string()
}

fn internal(ctx: PageCtx, e: &anyhow::Error) -> Response {
    tracing::error!("web UI: {e:#}");
    error_page(
        ctx,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        &format!("{e:#}"),
    )
}
