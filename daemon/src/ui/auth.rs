//! Setup, login, logout, and the session and CSRF checks in front of every other page.
//!
//! The session id lives in a `__Host-` cookie (HttpOnly, Secure, SameSite=Strict, path
//! `/`, no domain), so no other site and no script can read or plant it. A state-changing
//! request must also carry the session's CSRF token: the `csrf` field of a form, or the
//! `X-CSRF-Token` header that htmx sends (set once on `<body hx-headers>`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::body::{to_bytes, Body};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use siteward_connectors::http_server::RemoteAddr;

use crate::accounts::{AuthError, MIN_PASSWORD_CHARS};
use crate::admin::AdminState;
use crate::config_store::Actor;
use crate::sessions::{csrf_matches, Session};
use crate::ui::render::{page, page_with_status, see_other};

pub const SESSION_COOKIE: &str = "__Host-siteward-session";
/// Form bodies larger than this are refused before the CSRF check reads them (an import
/// of a config file is the largest thing a form sends).
const MAX_FORM_BYTES: usize = 2 * 1024 * 1024;

/// The signed-in user of a request, put there by [`require_session`].
#[derive(Clone)]
pub struct UiAuth {
    pub session: Session,
    pub session_id: String,
    pub actor: Actor,
}

/// Lets a request through with a live session (and, unless it only reads, the session's
/// CSRF token); sends anyone else to the login page.
pub async fn require_session(
    State(state): State<Arc<AdminState>>,
    remote: Option<Extension<RemoteAddr>>,
    request: Request,
    next: Next,
) -> Response {
    let source = source_ip(remote.as_ref().map(|r| &r.0));
    let id = session_cookie(request.headers());
    let session = id
        .as_deref()
        .and_then(|id| state.sessions.touch(id, Instant::now()));
    let (Some(id), Some(session)) = (id, session) else {
        return to_login(&request);
    };
    let (parts, body) = request.into_parts();
    let mut request = if matches!(parts.method, Method::GET | Method::HEAD) {
        Request::from_parts(parts, body)
    } else {
        let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response();
        };
        let presented = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| form_field(&bytes, "csrf"));
        if !presented.is_some_and(|token| csrf_matches(&session, &token)) {
            tracing::warn!(user = %session.user, %source, path = %parts.uri.path(), "request without a valid CSRF token refused");
            return (
                StatusCode::FORBIDDEN,
                "this form has expired or did not come from this appliance's pages; reload the page and try again",
            )
                .into_response();
        }
        Request::from_parts(parts, Body::from(bytes))
    };
    let actor = Actor {
        name: session.user.clone(),
        from: source.to_string(),
    };
    request.extensions_mut().insert(UiAuth {
        session,
        session_id: id,
        actor,
    });
    next.run(request).await
}

/// Unauthenticated: a page load goes to the login page (and comes back after); an htmx
/// refresh gets 401 with `HX-Redirect`, so the whole page moves instead of a fragment.
fn to_login(request: &Request) -> Response {
    let wanted = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = if request.method() == Method::GET && wanted != "/" && is_local_path(wanted) {
        format!("/login?next={}", urlencode(wanted))
    } else {
        "/login".to_string()
    };
    if request.headers().contains_key("hx-request") {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert("hx-redirect", value);
        }
        return response;
    }
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return see_other(&location);
    }
    (
        StatusCode::UNAUTHORIZED,
        "your session has ended; log in again",
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    appliance: String,
    user: String,
    next: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    appliance: String,
    token_path: String,
    user: String,
    min_password: usize,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

pub async fn login_page(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<NextQuery>,
) -> Response {
    if !has_accounts(&state) {
        return see_other("/setup");
    }
    page(&LoginPage {
        appliance: state.appliance.clone(),
        user: String::new(),
        next: safe_next(&query.next),
        error: None,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    /// The TOTP code, for accounts with two-factor login.
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: String,
}

pub async fn login(
    State(state): State<Arc<AdminState>>,
    remote: Option<Extension<RemoteAddr>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let source = source_ip(remote.as_ref().map(|r| &r.0));
    let now = Instant::now();
    let again = |status: StatusCode, error: String| {
        page_with_status(
            status,
            &LoginPage {
                appliance: state.appliance.clone(),
                user: form.user.clone(),
                next: safe_next(&form.next),
                error: Some(error),
            },
        )
    };
    if let Err(wait) = state.login_limiter.check(source, now) {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed logins from {source}. Try again in {}.",
                humantime::format_duration(std::time::Duration::from_secs(wait.as_secs() + 1))
            ),
        );
    }
    let actor = Actor {
        name: form.user.clone(),
        from: source.to_string(),
    };
    // Hashing takes tens of milliseconds: off the async threads.
    let accounts = state.accounts.clone();
    let (user, password, code) = (form.user.clone(), form.password.clone(), form.code.clone());
    let verified = tokio::task::spawn_blocking(move || {
        let code = (!code.trim().is_empty()).then_some(code.as_str());
        accounts.verify(&user, &password, code)
    })
    .await
    .unwrap_or(Err(AuthError::WrongCredentials));
    if let Err(e) = verified {
        state.login_limiter.failed(source, now);
        state
            .applier
            .audit(&actor, "login failed", "wrong user name or password");
        tracing::warn!(user = %form.user, %source, "web UI login failed");
        return again(StatusCode::UNAUTHORIZED, e.to_string());
    }
    state.login_limiter.succeeded(source);
    state.applier.audit(&actor, "login", "");
    start_session(&state, &form.user, source, &safe_next(&form.next))
}

pub async fn setup_page(State(state): State<Arc<AdminState>>) -> Response {
    if has_accounts(&state) {
        return see_other("/login");
    }
    page(&SetupPage {
        appliance: state.appliance.clone(),
        token_path: state.accounts.setup_token_path().display().to_string(),
        user: "admin".to_string(),
        min_password: MIN_PASSWORD_CHARS,
        error: None,
    })
}

#[derive(Deserialize)]
pub struct SetupForm {
    token: String,
    user: String,
    password: String,
    confirm: String,
}

pub async fn setup(
    State(state): State<Arc<AdminState>>,
    remote: Option<Extension<RemoteAddr>>,
    Form(form): Form<SetupForm>,
) -> Response {
    if has_accounts(&state) {
        return see_other("/login");
    }
    let source = source_ip(remote.as_ref().map(|r| &r.0));
    let now = Instant::now();
    let again = |status: StatusCode, error: String| {
        page_with_status(
            status,
            &SetupPage {
                appliance: state.appliance.clone(),
                token_path: state.accounts.setup_token_path().display().to_string(),
                user: form.user.clone(),
                min_password: MIN_PASSWORD_CHARS,
                error: Some(error),
            },
        )
    };
    // Guessing the token is a login attempt too.
    if let Err(wait) = state.login_limiter.check(source, now) {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed attempts from {source}. Try again in {}.",
                humantime::format_duration(std::time::Duration::from_secs(wait.as_secs() + 1))
            ),
        );
    }
    if form.password != form.confirm {
        return again(
            StatusCode::BAD_REQUEST,
            "The two passwords differ.".to_string(),
        );
    }
    let accounts = state.accounts.clone();
    let (token, user, password) = (form.token.clone(), form.user.clone(), form.password.clone());
    let result = tokio::task::spawn_blocking(move || accounts.setup(&token, &user, &password))
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("setting up the account: {e}")));
    let actor = Actor {
        name: form.user.clone(),
        from: source.to_string(),
    };
    if let Err(e) = result {
        let status = match e.downcast_ref::<AuthError>() {
            Some(AuthError::BadSetupToken) => {
                state.login_limiter.failed(source, now);
                StatusCode::UNAUTHORIZED
            }
            Some(_) => StatusCode::BAD_REQUEST,
            None => {
                tracing::error!("first-run setup: {e:#}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        state
            .applier
            .audit(&actor, "setup refused", &format!("{e}"));
        return again(status, format!("{e}"));
    }
    state
        .applier
        .audit(&actor, "setup", "first account created");
    tracing::info!(user = %form.user, %source, "web UI: first account created");
    start_session(&state, &form.user, source, "/")
}

pub async fn logout(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
) -> Response {
    state.sessions.remove(&auth.session_id);
    state.applier.audit(&auth.actor, "logout", "");
    let mut response = see_other("/login");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-siteward-session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

pub fn start_session(state: &AdminState, user: &str, source: IpAddr, next: &str) -> Response {
    let (id, _) = state.sessions.create(user, source, Instant::now());
    let mut response = see_other(next);
    // No Max-Age: the browser forgets it when closed; the server enforces idle and
    // absolute expiry either way.
    let cookie = format!("{SESSION_COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict");
    match HeaderValue::from_str(&cookie) {
        Ok(value) => {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
    response
}

fn has_accounts(state: &AdminState) -> bool {
    state.accounts.list().map(|a| !a.is_empty()).unwrap_or(true)
}

pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

fn source_ip(remote: Option<&RemoteAddr>) -> IpAddr {
    remote.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |r| r.0.ip())
}

/// Where to go after login: only a path on this site (no `//host`, no scheme).
fn safe_next(next: &str) -> String {
    if is_local_path(next) {
        next.to_string()
    } else {
        "/".to_string()
    }
}

fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && path.chars().all(|c| c.is_ascii_graphic())
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    FormBody::parse(body).first(name)
}

/// A form body's fields, decoded.
pub struct FormBody(Vec<(String, String)>);

impl FormBody {
    pub fn parse(body: &[u8]) -> FormBody {
        FormBody(form_urlencoded_pairs(body))
    }

    /// The first value of `key`.
    pub fn first(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// The first value of `key`, or "" when the form has none.
    pub fn get(&self, key: &str) -> String {
        self.first(key).unwrap_or_default()
    }
}

/// Decodes a form body (`a=1&b=x%20y`); bytes that do not decode are kept as they are.
pub fn form_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut split = pair.splitn(2, |&b| b == b'=');
            let key = percent_decode(split.next().unwrap_or_default());
            let value = percent_decode(split.next().unwrap_or_default());
            (key, value)
        })
        .collect()
}

fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode() {
        let pairs = form_urlencoded_pairs(b"csrf=ab%2Fc&name=a+b&empty=&odd=%zz&trail=%4");
        assert_eq!(
            pairs,
            [
                ("csrf".to_string(), "ab/c".to_string()),
                ("name".to_string(), "a b".to_string()),
                ("empty".to_string(), String::new()),
                ("odd".to_string(), "%zz".to_string()),
                ("trail".to_string(), "%4".to_string()),
            ]
        );
        assert_eq!(form_field(b"a=1&csrf=x", "csrf").as_deref(), Some("x"));
        assert_eq!(form_field(b"a=1", "csrf"), None);
    }

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next("/config/checks"), "/config/checks");
        assert_eq!(safe_next("//evil.example/"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next(""), "/");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-siteward-session=abc; b=2"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    proptest::proptest! {
        /// Any body decodes without panicking, and what an encoder writes decodes back.
        #[test]
        fn form_decoding_never_panics_and_round_trips(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
            pairs in proptest::collection::vec(("[a-z_.]{1,12}", "\\PC{0,24}"), 0..6),
        ) {
            let _ = form_urlencoded_pairs(&body);
            let encoded = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let decoded = form_urlencoded_pairs(encoded.as_bytes());
            let expected: Vec<(String, String)> = pairs.into_iter().collect();
            proptest::prop_assert_eq!(decoded, expected);
        }
    }
}
