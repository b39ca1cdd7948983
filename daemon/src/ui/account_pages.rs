//! The signed-in user's account (password, two-factor login) and the list of accounts.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;

use crate::accounts::{AuthError, MIN_PASSWORD_CHARS};
use crate::admin::AdminState;
use crate::totp;
use crate::ui::auth::{start_session, FormBody, UiAuth};
use crate::ui::render::{page_with_status, see_other, PageCtx};

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    page: PageCtx,
    two_factor: bool,
    /// A fresh secret offered for enrolment (base32) and its otpauth URI.
    new_secret: String,
    otpauth: String,
    users: Vec<UserRow>,
    min_password: usize,
    error: Option<String>,
}

struct UserRow {
    name: String,
    two_factor: bool,
    is_me: bool,
}

#[derive(Deserialize)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

fn notice(code: Option<&str>) -> Option<String> {
    Some(
        match code? {
            "password" => "Password changed. Your other sessions were ended.",
            "totp-on" => "Two-factor login is on.",
            "totp-off" => "Two-factor login is off.",
            "added" => "Account added.",
            "removed" => "Account removed.",
            _ => return None,
        }
        .to_string(),
    )
}

pub async fn account(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Query(query): Query<DoneQuery>,
) -> Response {
    render(
        &state,
        &auth,
        notice(query.done.as_deref()),
        None,
        StatusCode::OK,
    )
}

fn render(
    state: &AdminState,
    auth: &UiAuth,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let ctx = PageCtx::new(state, &auth.session, "account").with_notice(notice);
    let accounts = state.accounts.list().unwrap_or_default();
    let me = &auth.session.user;
    let two_factor = accounts
        .iter()
        .any(|a| &a.name == me && a.totp_secret.is_some());
    let secret = totp::base32_encode(&totp::new_secret());
    page_with_status(
        status,
        &AccountPage {
            page: ctx,
            two_factor,
            otpauth: totp::otpauth_uri(
                totp::base32_decode(&secret).unwrap_or_default().as_slice(),
                &format!("Siteward {}", state.appliance),
                me,
            ),
            new_secret: secret,
            users: accounts
                .iter()
                .map(|a| UserRow {
                    name: a.name.clone(),
                    two_factor: a.totp_secret.is_some(),
                    is_me: &a.name == me,
                })
                .collect(),
            min_password: MIN_PASSWORD_CHARS,
            error,
        },
    )
}

fn field(body: &[u8], key: &str) -> String {
    FormBody::parse(body).get(key)
}

/// The account page again, with why the action was refused.
fn refuse(state: &AdminState, auth: &UiAuth, status: StatusCode, message: String) -> Response {
    render(state, auth, None, Some(message), status)
}

/// Checks the signed-in user's current password (and code), off the async threads.
async fn reauthenticate(state: &AdminState, auth: &UiAuth, body: &[u8]) -> Result<(), String> {
    let accounts = state.accounts.clone();
    let user = auth.session.user.clone();
    let password = field(body, "current");
    let code = field(body, "code");
    tokio::task::spawn_blocking(move || {
        let code = (!code.trim().is_empty()).then_some(code.as_str());
        accounts.verify(&user, &password, code)
    })
    .await
    .unwrap_or(Err(AuthError::WrongCredentials))
    .map_err(|_| "The current password (or two-factor code) is wrong.".to_string())
}

pub async fn change_password(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    body: Bytes,
) -> Response {
    if let Err(e) = reauthenticate(&state, &auth, &body).await {
        return refuse(&state, &auth, StatusCode::UNAUTHORIZED, e);
    }
    let (password, confirm) = (field(&body, "password"), field(&body, "confirm"));
    if password != confirm {
        return refuse(
            &state,
            &auth,
            StatusCode::BAD_REQUEST,
            "The two new passwords differ.".into(),
        );
    }
    let accounts = state.accounts.clone();
    let user = auth.session.user.clone();
    let result = tokio::task::spawn_blocking(move || accounts.set_password(&user, &password))
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("{e}")));
    if let Err(e) = result {
        return refuse(&state, &auth, StatusCode::BAD_REQUEST, format!("{e}"));
    }
    state
        .applier
        .audit(&auth.actor, "password changed", &auth.session.user);
    // A changed password ends every session of the account, this one included; the user
    // continues in a new one.
    state.sessions.remove_user(&auth.session.user);
    start_session(
        &state,
        &auth.session.user,
        auth.session.source,
        "/account?done=password",
    )
}

pub async fn enable_totp(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    body: Bytes,
) -> Response {
    let secret_text = field(&body, "secret");
    let Some(secret) = totp::base32_decode(&secret_text).filter(|s| s.len() == totp::SECRET_BYTES)
    else {
        return refuse(
            &state,
            &auth,
            StatusCode::BAD_REQUEST,
            "The form's secret is damaged; start again.".into(),
        );
    };
    let now = crate::config_store::unix_now();
    let Some(accepted_step) = totp::matching_step(&secret, &field(&body, "new_code"), now) else {
        return refuse(
            &state,
            &auth,
            StatusCode::BAD_REQUEST,
            "That code does not match: check the app's clock and type the code it shows now."
                .into(),
        );
    };
    if let Err(e) = reauthenticate(&state, &auth, &body).await {
        return refuse(&state, &auth, StatusCode::UNAUTHORIZED, e);
    }
    if let Err(e) = state.accounts.enable_totp(
        &auth.session.user,
        &totp::base32_encode(&secret),
        accepted_step,
    ) {
        return refuse(
            &state,
            &auth,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{e:#}"),
        );
    }
    state
        .applier
        .audit(&auth.actor, "two-factor on", &auth.session.user);
    see_other("/account?done=totp-on")
}

pub async fn disable_totp(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    body: Bytes,
) -> Response {
    if let Err(e) = reauthenticate(&state, &auth, &body).await {
        return refuse(&state, &auth, StatusCode::UNAUTHORIZED, e);
    }
    if let Err(e) = state.accounts.disable_totp(&auth.session.user) {
        return refuse(
            &state,
            &auth,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{e:#}"),
        );
    }
    state
        .applier
        .audit(&auth.actor, "two-factor off", &auth.session.user);
    see_other("/account?done=totp-off")
}

pub async fn add_user(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    body: Bytes,
) -> Response {
    let user = field(&body, "user").trim().to_string();
    let (password, confirm) = (field(&body, "password"), field(&body, "confirm"));
    if password != confirm {
        return refuse(
            &state,
            &auth,
            StatusCode::BAD_REQUEST,
            "The two passwords differ.".into(),
        );
    }
    if state.accounts.account(&user).ok().flatten().is_some() {
        return refuse(
            &state,
            &auth,
            StatusCode::CONFLICT,
            format!("\"{user}\" exists already."),
        );
    }
    let accounts = state.accounts.clone();
    let name = user.clone();
    let result = tokio::task::spawn_blocking(move || accounts.set_password(&name, &password))
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("{e}")));
    if let Err(e) = result {
        return refuse(&state, &auth, StatusCode::BAD_REQUEST, format!("{e}"));
    }
    state.applier.audit(&auth.actor, "account added", &user);
    see_other("/account?done=added")
}

pub async fn remove_user(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
    Path(name): Path<String>,
) -> Response {
    if name == auth.session.user {
        return refuse(
            &state,
            &auth,
            StatusCode::CONFLICT,
            "You cannot remove your own account while logged in with it.".into(),
        );
    }
    if let Err(e) = state.accounts.remove(&name) {
        return refuse(&state, &auth, StatusCode::CONFLICT, format!("{e:#}"));
    }
    state.sessions.remove_user(&name);
    state.applier.audit(&auth.actor, "account removed", &name);
    see_other("/account?done=removed")
}
