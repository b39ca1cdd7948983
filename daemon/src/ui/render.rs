//! What every page shares: the header's context (user, CSRF token, banners) and turning a
//! template or an error into a response.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::admin::AdminState;
use crate::config_store::unix_now_ms;
use crate::sessions::Session;

/// The header and banners of a signed-in page.
pub struct PageCtx {
    pub user: String,
    pub csrf: String,
    /// The navigation entry to highlight.
    pub active: &'static str,
    pub appliance: String,
    pub version: &'static str,
    /// A commit waits for confirmation.
    pub pending: Option<PendingBanner>,
    /// Edits are staged and not committed.
    pub staged: Option<u64>,
    /// What the last action did (a fixed message chosen by code, never echoed input).
    pub notice: Option<String>,
}

pub struct PendingBanner {
    pub version: u64,
    pub deadline_ms: u64,
    pub seconds_left: u64,
}

impl PageCtx {
    pub fn new(state: &AdminState, session: &Session, active: &'static str) -> PageCtx {
        let store = state.applier.store();
        let pending = store.pending().ok().flatten().map(|p| PendingBanner {
            version: p.version,
            deadline_ms: p.deadline_ms,
            seconds_left: p.deadline_ms.saturating_sub(unix_now_ms()) / 1000,
        });
        let staged = store
            .candidate_info()
            .ok()
            .flatten()
            .map(|info| info.revision);
        PageCtx {
            user: session.user.clone(),
            csrf: session.csrf.clone(),
            active,
            appliance: state.appliance.clone(),
            version: env!("CARGO_PKG_VERSION"),
            pending,
            staged,
            notice: None,
        }
    }

    pub fn with_notice(mut self, notice: Option<String>) -> PageCtx {
        self.notice = notice;
        self
    }
}

/// Renders a template as a page.
pub fn page(template: &impl Template) -> Response {
    page_with_status(StatusCode::OK, template)
}

pub fn page_with_status(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!("rendering a page: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; the daemon's log says why",
            )
                .into_response()
        }
    }
}

/// After a POST: back to a page with a GET (so a reload does not post again).
pub fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

/// An error page inside the layout.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub page: PageCtx,
    pub title: String,
    pub message: String,
}

pub fn error_page(page: PageCtx, status: StatusCode, title: &str, message: &str) -> Response {
    page_with_status(
        status,
        &ErrorPage {
            page,
            title: title.to_string(),
            message: message.to_string(),
        },
    )
}

/// Formats a byte count as people read it.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// "3m 20s ago"-style ages, to the second.
pub fn ago(seconds: u64) -> String {
    format!(
        "{} ago",
        humantime::format_duration(std::time::Duration::from_secs(seconds))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_naturally() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
