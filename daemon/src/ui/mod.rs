//! The web UI: pages rendered here with askama templates (`daemon/templates/`), htmx for
//! the parts that refresh, every asset embedded in the binary. Served on the admin
//! listener beside the REST API, which it shares its state and its operations with.
//!
//! - `auth.rs`: first-run setup with the one-time token, login (rate-limited per source,
//!   optional TOTP), sessions in `__Host-` cookies, the CSRF check of every POST.
//! - `dashboard.rs`: tunnels, checks, connectors and relays, the system; refreshed live.
//! - `config_pages.rs`: forms for every section, the staged candidate, diff, commit with
//!   confirmation, history and rollback, export and import, the audit log.
//! - `assets.rs`: htmx, the style sheet and the little script the pages use.

mod account_pages;
mod assets;
mod auth;
mod commit_pages;
mod config_pages;
mod dashboard;
mod render;
mod system;
mod tools_pages;

use std::sync::Arc;

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

use crate::admin::AdminState;

pub use auth::urlencode;
pub use dashboard::Rates;

/// The UI's routes; the caller layers the security headers over them with the API's.
pub fn router(state: Arc<AdminState>) -> Router {
    let public = Router::new()
        .route("/assets/{file}", get(assets::serve))
        .route("/setup", get(auth::setup_page).post(auth::setup))
        .route("/login", get(auth::login_page).post(auth::login));
    let protected = Router::new()
        .route("/", get(dashboard::page))
        .route("/ui/dashboard", get(dashboard::live))
        .route("/logout", post(auth::logout))
        .route("/config", get(config_pages::overview))
        .route("/config/review", get(commit_pages::review))
        .route("/config/commit", post(commit_pages::commit))
        .route("/config/discard", post(commit_pages::discard))
        .route("/config/confirm", post(commit_pages::confirm))
        .route("/config/rollback-now", post(commit_pages::rollback_now))
        .route("/config/history", get(commit_pages::history))
        .route("/config/history/{version}", get(commit_pages::version))
        .route(
            "/config/history/{version}/rollback",
            post(commit_pages::rollback),
        )
        .route(
            "/config/export",
            get(commit_pages::transfer_page).post(commit_pages::export_file),
        )
        .route(
            "/config/import",
            get(commit_pages::transfer_page).post(commit_pages::import_file),
        )
        .route(
            "/config/tunnels/{tunnel}/peers/{peer}",
            get(config_pages::peer_page).post(config_pages::save_peer),
        )
        .route(
            "/config/tunnels/{tunnel}/peers/{peer}/delete",
            post(config_pages::delete_peer),
        )
        .route(
            "/config/{section}",
            get(config_pages::section_page).post(config_pages::save_section),
        )
        .route(
            "/config/{section}/{index}",
            get(config_pages::entry_page).post(config_pages::save_entry),
        )
        .route(
            "/config/{section}/{index}/delete",
            post(config_pages::delete_entry),
        )
        .route("/audit", get(commit_pages::audit))
        .route("/tools", get(tools_pages::tools))
        .route("/tools/ping", post(tools_pages::ping))
        .route("/tools/tcp", post(tools_pages::tcp))
        .route("/tools/dns", post(tools_pages::dns))
        .route("/tools/check", post(tools_pages::check))
        .route("/tools/wireguard/keypair", post(tools_pages::keypair))
        .route("/logs", get(tools_pages::logs))
        .route("/account", get(account_pages::account))
        .route("/account/password", post(account_pages::change_password))
        .route("/account/totp/enable", post(account_pages::enable_totp))
        .route("/account/totp/disable", post(account_pages::disable_totp))
        .route("/account/users", post(account_pages::add_user))
        .route(
            "/account/users/{name}/delete",
            post(account_pages::remove_user),
        )
        .route("/ui/logs", get(tools_pages::log_lines))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_session,
        ));
    public.merge(protected).with_state(state)
}
