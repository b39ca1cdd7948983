//! The REST API under `/api/v1/`. Everything but `/api/v1/health` and `/api/v1/openapi.json`
//! (the same for every appliance of a version) needs a bearer token; an unauthenticated
//! request gets 401 for any other path, so which checks or tunnels exist does not leak.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use siteward_connectors::engine::{CheckSnapshot, Engine};
use siteward_connectors::uplink::batch::event_json;
use siteward_connectors::Outcome;
use siteward_netstack::{PeerStatus, RekeyError, RekeyTarget, TunnelStatus, Tunnels};
use std::sync::atomic::Ordering;

use crate::accounts::AccountStore;
use crate::apply::Applier;
use crate::forwarding::Forwarding;
use crate::sessions::{LoginLimiter, Sessions};
use crate::tokens::TokenStore;

/// What the API handlers share.
pub struct AdminState {
    pub engine: Arc<Engine>,
    pub tunnels: Arc<Tunnels>,
    pub forwarding: Arc<Forwarding>,
    pub tokens: TokenStore,
    pub appliance: String,
    pub started: Instant,
    /// Commits, rollbacks, the history and the audit log.
    pub applier: Arc<Applier>,
    /// Web UI accounts, sessions and the login rate limit.
    pub accounts: AccountStore,
    pub sessions: Sessions,
    pub login_limiter: LoginLimiter,
    /// The dashboard's previous counter readings, for rates.
    pub rates: crate::ui::Rates,
    /// The Tools' diagnostics (ping, TCP, DNS, one-shot checks) with their limits.
    pub diagnostics: Arc<crate::diagnostics::Diagnostics>,
    /// The live log view.
    pub log_view: crate::log_view::LogView,
}

pub fn router(state: Arc<AdminState>) -> Router {
    let protected = resources()
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(super::openapi::serve))
        .merge(protected)
        .with_state(state.clone())
        .merge(crate::ui::router(state))
        .layer(middleware::from_fn(security_headers))
}

/// The same API without bearer tokens, for the control socket: only root can open it
/// (it lives in the 0700 state directory), which is what `siteward spool` runs as.
pub fn local_router(state: Arc<AdminState>) -> Router {
    resources()
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(super::openapi::serve))
        .fallback(not_found)
        .with_state(state)
}

fn resources() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/api/v1/checks", get(list_checks))
        .route("/api/v1/checks/{name}", get(get_check))
        .route("/api/v1/checks/{name}/run", post(run_check))
        .route("/api/v1/tunnels", get(list_tunnels))
        .route("/api/v1/tunnels/{name}", get(get_tunnel))
        .route("/api/v1/tunnels/{name}/rekey", post(rekey_tunnel))
        .route("/api/v1/connectors", get(list_connectors))
        .route("/api/v1/relays", get(list_relays))
        .route("/api/v1/spool", get(spool_stats))
        .route("/api/v1/spool/events", get(spool_events))
        .route("/api/v1/spool/dead-letters", get(spool_dead_letters))
        .route("/api/v1/spool/replay", post(spool_replay))
        .route("/api/v1/spool/purge", post(spool_purge))
        .merge(super::tools::routes())
        .merge(super::config_api::routes())
}

/// The name of the API token a request presented, put in its extensions by
/// [`require_token`] (the audit log's "who"; never the token itself).
#[derive(Debug, Clone)]
pub struct TokenName(pub String);

async fn require_token(
    State(state): State<Arc<AdminState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented.and_then(|token| state.tokens.verify(token)) {
        Some(name) => {
            request.extensions_mut().insert(TokenName(name));
            next.run(request).await
        }
        None => {
            let mut response = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"siteward\""),
            );
            response
        }
    }
}

/// Scripts and styles from this origin only (no inline script, no eval), no framing, no
/// caching of anything but the embedded assets.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    response
}

/// Why a request was not done, as every API route answers it: `{"error": message}`, with
/// `"fields"` (input key or field path -> problem) when named inputs are at fault.
/// Messages never quote a value that was sent: it may be a secret.
#[derive(Debug)]
pub(super) struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub fields: Option<BTreeMap<String, String>>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = match self.fields {
            Some(fields) => json!({ "error": self.message, "fields": fields }),
            None => json!({ "error": self.message }),
        };
        (self.status, Json(body)).into_response()
    }
}

pub(super) fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
        fields: None,
    }
}

pub(super) fn error(status: StatusCode, message: &str) -> Response {
    refuse(status, message).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such resource")
}

async fn health(State(state): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
}

async fn list_checks(State(state): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let checks: Vec<CheckView> = state
        .engine
        .snapshot()
        .iter()
        .map(CheckView::from)
        .collect();
    Json(json!({ "appliance": state.appliance, "checks": checks }))
}

async fn get_check(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    match state.engine.snapshot_of(&name) {
        Some(snapshot) => Json(CheckView::from(&snapshot)).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such check"),
    }
}

async fn run_check(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    match state.engine.run_now(&name).await {
        Some(outcome) => {
            let snapshot = state.engine.snapshot_of(&name);
            Json(json!({
                "result": RunView::from(&outcome),
                "check": snapshot.as_ref().map(CheckView::from),
            }))
            .into_response()
        }
        None => error(StatusCode::NOT_FOUND, "no such check"),
    }
}

async fn list_connectors(State(state): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let connectors: Vec<serde_json::Value> = state
        .forwarding
        .sources
        .statuses()
        .iter()
        .map(|source| {
            let counters = &source.counters;
            json!({
                "name": source.config.name,
                "kind": source.config.source.kind(),
                "running": source.error.is_none(),
                "error": source.error,
                "connected": counters.connected.load(Ordering::Relaxed) == 1,
                "events_received": counters.received.load(Ordering::Relaxed),
                "rejected": counters.rejected.load(Ordering::Relaxed),
                "refused": counters.refused.load(Ordering::Relaxed),
            })
        })
        .collect();
    Json(json!({ "connectors": connectors }))
}

async fn list_relays(State(state): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let relays: Vec<serde_json::Value> = state
        .forwarding
        .relays
        .statuses()
        .iter()
        .map(|relay| {
            let c = &relay.counters;
            json!({
                "name": relay.config.name,
                "listen": relay.config.listen.to_string(),
                "target": relay.config.target.to_string(),
                "allow": relay.config.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "running": relay.error.is_none(),
                "error": relay.error,
                "connections": c.connections_total.load(Ordering::Relaxed),
                "active_connections": c.active_connections.load(Ordering::Relaxed),
                "refused": c.refused_total.load(Ordering::Relaxed),
                "rejected_full": c.rejected_full_total.load(Ordering::Relaxed),
                "connect_failures": c.connect_failures_total.load(Ordering::Relaxed),
                "bytes_to_target": c.bytes_to_target_total.load(Ordering::Relaxed),
                "bytes_from_target": c.bytes_from_target_total.load(Ordering::Relaxed),
            })
        })
        .collect();
    Json(json!({ "relays": relays }))
}

/// The payload of a status report: the checks and tunnels as the API lists them, and the
/// spool.
pub fn status_view(
    engine: &Engine,
    tunnels: &Tunnels,
    spool: Option<serde_json::Value>,
) -> serde_json::Value {
    let checks: Vec<CheckView> = engine.snapshot().iter().map(CheckView::from).collect();
    let tunnels: Vec<TunnelView> = tunnels.statuses().iter().map(TunnelView::from).collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "checks": checks,
        "tunnels": tunnels,
        "spool": spool,
    })
}

/// What `GET /api/v1/spool` and the status reports show of the spool and the uplink.
pub fn spool_view(forwarding: &Forwarding) -> serde_json::Value {
    let stats = forwarding.spool.stats();
    let uplink = &forwarding.uplink_counters;
    json!({
        "events": stats.events,
        "bytes": stats.bytes,
        "oldest_event_age_seconds": stats.oldest_event_age().map(|age| age.as_secs()),
        "dead_letters": stats.dead_letters,
        "dropped": stats.dropped,
        "commits": stats.commits,
        "uplink": {
            "delivered": uplink.delivered.load(Ordering::Relaxed),
            "dead_lettered": uplink.dead_lettered.load(Ordering::Relaxed),
            "failed_attempts": uplink.failed_attempts.load(Ordering::Relaxed),
            "circuit_open": uplink.circuit_open.load(Ordering::Relaxed),
        },
    })
}

async fn spool_stats(State(state): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    Json(spool_view(&state.forwarding))
}

/// `?limit=` of the listing endpoints.
#[derive(Debug, Deserialize)]
struct Listing {
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

const MAX_LISTING: usize = 10_000;

async fn spool_events(
    State(state): State<Arc<AdminState>>,
    Query(listing): Query<Listing>,
) -> Response {
    let limit = listing.limit.min(MAX_LISTING);
    match state.forwarding.spool.peek(None, limit, usize::MAX) {
        Ok(events) => {
            let events: Vec<serde_json::Value> = events
                .iter()
                .map(|(sequence, event)| event_json(&state.appliance, *sequence, event))
                .collect();
            Json(json!({ "events": events })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn spool_dead_letters(
    State(state): State<Arc<AdminState>>,
    Query(listing): Query<Listing>,
) -> Response {
    let limit = listing.limit.min(MAX_LISTING);
    match state.forwarding.spool.dead_letters(limit) {
        Ok(letters) => {
            let letters: Vec<serde_json::Value> = letters
                .iter()
                .map(|letter| {
                    let mut value = event_json(&state.appliance, letter.sequence, &letter.event);
                    value["reason"] = json!(letter.reason);
                    value
                })
                .collect();
            Json(json!({ "dead_letters": letters })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn spool_replay(State(state): State<Arc<AdminState>>) -> Response {
    match state.forwarding.replay().await {
        Ok(replayed) => Json(json!({ "replayed": replayed })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `?queue=events|dead-letters`: which one to empty (no default: this deletes data).
#[derive(Debug, Deserialize)]
struct PurgeQuery {
    queue: Option<String>,
}

async fn spool_purge(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<PurgeQuery>,
) -> Response {
    let dead_letters = match query.queue.as_deref() {
        Some("events") => false,
        Some("dead-letters") => true,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "say which queue to purge: ?queue=events or ?queue=dead-letters",
            )
        }
    };
    match state.forwarding.spool.purge(dead_letters).await {
        Ok(purged) => {
            tracing::warn!(purged, queue = query.queue.as_deref(), "spool purged");
            Json(json!({ "purged": purged })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn list_tunnels(State(state): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let tunnels: Vec<TunnelView> = state
        .tunnels
        .statuses()
        .iter()
        .map(TunnelView::from)
        .collect();
    Json(json!({ "appliance": state.appliance, "tunnels": tunnels }))
}

async fn get_tunnel(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    match state.tunnels.statuses().iter().find(|t| t.name == name) {
        Some(status) => Json(TunnelView::from(status)).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such tunnel"),
    }
}

#[derive(serde::Deserialize)]
struct RekeyQuery {
    sa: Option<String>,
}

/// `POST /api/v1/tunnels/NAME/rekey?sa=child|ike` (default child): starts a
/// make-before-break rekey now, like `swanctl --rekey`. 202 once started; the new SAs show
/// in the tunnel's status when the exchange completes.
async fn rekey_tunnel(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Query(query): Query<RekeyQuery>,
) -> Response {
    let sa = query.sa.as_deref().unwrap_or("child");
    let Some(target) = RekeyTarget::parse(sa) else {
        return error(StatusCode::BAD_REQUEST, "sa: expected \"child\" or \"ike\"");
    };
    match state.tunnels.rekey(&name, target).await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({ "tunnel": name, "rekeying": sa })),
        )
            .into_response(),
        Err(RekeyError::NoSuchTunnel) => error(StatusCode::NOT_FOUND, "no such tunnel"),
        Err(e @ RekeyError::Busy) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e) => error(StatusCode::CONFLICT, &e.to_string()),
    }
}

/// A tunnel as the API shows it: public keys only.
#[derive(Serialize)]
struct TunnelView {
    name: String,
    kind: &'static str,
    interface: String,
    /// `up` (a peer has a live session), `down` (running, no live session) or `failed`.
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_port: Option<u16>,
    peers: Vec<PeerView>,
    /// Packets dropped, by reason.
    dropped: serde_json::Map<String, serde_json::Value>,
    /// IKE and CHILD SAs of an IPsec tunnel.
    #[serde(skip_serializing_if = "Option::is_none")]
    ipsec: Option<IpsecView>,
}

/// An IPsec tunnel's SAs: algorithms, SPIs (hex, as swanctl prints them), times, bytes.
#[derive(Serialize)]
struct IpsecView {
    ike_sas: Vec<IkeSaView>,
    /// Why the last IKE SA failed or closed, in plain words; absent once one is up.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_failure: Option<String>,
    ike_rekeys: u64,
    child_rekeys: u64,
    auth_failures: u64,
    replay_drops: u64,
}

#[derive(Serialize)]
struct IkeSaView {
    state: &'static str,
    initiator: bool,
    spi_i: String,
    spi_r: String,
    algorithms: Option<String>,
    local: String,
    remote: String,
    nat_t: bool,
    established: Option<String>,
    rekey_due: Option<String>,
    child_sas: Vec<ChildSaView>,
}

#[derive(Serialize)]
struct ChildSaView {
    spi_in: String,
    spi_out: String,
    algorithms: String,
    local_ts: Vec<String>,
    remote_ts: Vec<String>,
    established: String,
    rekey_due: String,
    bytes_in: u64,
    bytes_out: u64,
    packets_in: u64,
    packets_out: u64,
    replay_drops: u64,
    /// ESP in UDP (RFC 3948) rather than bare ESP.
    encap: bool,
    /// Replaced by a rekey, about to be deleted.
    rekeyed: bool,
}

impl From<&siteward_netstack::ipsec::status::IpsecView> for IpsecView {
    fn from(v: &siteward_netstack::ipsec::status::IpsecView) -> Self {
        IpsecView {
            ike_sas: v
                .ike_sas
                .iter()
                .map(|sa| IkeSaView {
                    state: sa.state,
                    initiator: sa.initiator,
                    spi_i: format!("{:016x}", sa.spi_i),
                    spi_r: format!("{:016x}", sa.spi_r),
                    algorithms: sa.algorithms.clone(),
                    local: sa.local.to_string(),
                    remote: sa.remote.to_string(),
                    nat_t: sa.nat_t,
                    established: sa.established.map(rfc3339),
                    rekey_due: sa.rekey_due.map(rfc3339),
                    child_sas: sa
                        .children
                        .iter()
                        .map(|c| ChildSaView {
                            spi_in: format!("{:08x}", c.spi_in),
                            spi_out: format!("{:08x}", c.spi_out),
                            algorithms: c.algorithms.clone(),
                            local_ts: c.local_ts.clone(),
                            remote_ts: c.remote_ts.clone(),
                            established: rfc3339(c.established),
                            rekey_due: rfc3339(c.rekey_due),
                            bytes_in: c.bytes_in,
                            bytes_out: c.bytes_out,
                            packets_in: c.packets_in,
                            packets_out: c.packets_out,
                            replay_drops: c.replay_drops,
                            encap: c.encap,
                            rekeyed: c.rekeyed,
                        })
                        .collect(),
                })
                .collect(),
            last_failure: v.last_failure.clone(),
            ike_rekeys: v.ike_rekeys,
            child_rekeys: v.child_rekeys,
            auth_failures: v.auth_failures,
            replay_drops: v.replay_drops,
        }
    }
}

#[derive(Serialize)]
struct PeerView {
    name: String,
    public_key: String,
    endpoint: Option<String>,
    last_handshake: Option<String>,
    rx_bytes: u64,
    tx_bytes: u64,
    persistent_keepalive_seconds: Option<u16>,
    allowed_ips: Vec<String>,
}

impl From<&TunnelStatus> for TunnelView {
    fn from(t: &TunnelStatus) -> Self {
        let state = match (t.running, t.up) {
            (false, _) => "failed",
            (true, true) => "up",
            (true, false) => "down",
        };
        TunnelView {
            name: t.name.clone(),
            kind: t.kind,
            interface: t.interface.clone(),
            state,
            error: t.error.clone(),
            listen_port: t.listen_port,
            peers: t.peers.iter().map(PeerView::from).collect(),
            dropped: t
                .dropped
                .iter()
                .map(|(reason, n)| (reason.to_string(), json!(n)))
                .collect(),
            ipsec: t.ipsec.as_ref().map(IpsecView::from),
        }
    }
}

impl From<&PeerStatus> for PeerView {
    fn from(p: &PeerStatus) -> Self {
        PeerView {
            name: p.name.clone(),
            public_key: p.public_key.clone(),
            endpoint: p.endpoint.map(|e| e.to_string()),
            last_handshake: p.last_handshake.map(rfc3339),
            rx_bytes: p.rx_bytes,
            tx_bytes: p.tx_bytes,
            persistent_keepalive_seconds: p.persistent_keepalive,
            allowed_ips: p.allowed_ips.iter().map(|n| n.to_string()).collect(),
        }
    }
}

/// A check as the API shows it. Secrets are not part of it: the target display
/// never carries them.
#[derive(Serialize)]
struct CheckView {
    name: String,
    kind: &'static str,
    target: String,
    interval_seconds: f64,
    timeout_seconds: f64,
    rise: u32,
    fall: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<String>,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_since: Option<String>,
    consecutive_successes: u32,
    consecutive_failures: u32,
    last: Option<RunView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert_not_after: Option<String>,
    /// Oldest first.
    history: Vec<RunView>,
}

#[derive(Serialize)]
struct RunView {
    at: String,
    up: bool,
    reason: &'static str,
    detail: String,
    duration_seconds: f64,
}

impl From<&CheckSnapshot> for CheckView {
    fn from(s: &CheckSnapshot) -> Self {
        let check = &s.check;
        CheckView {
            name: check.name.clone(),
            kind: check.probe.kind(),
            target: check.probe.target_display(),
            interval_seconds: check.interval.as_secs_f64(),
            timeout_seconds: check.timeout.as_secs_f64(),
            rise: check.rise,
            fall: check.fall,
            source: check.placement.source.map(|s| s.to_string()),
            interface: check.placement.interface.clone(),
            state: s.state.status.as_str(),
            state_since: s.state.since.map(rfc3339),
            consecutive_successes: s.state.consecutive_successes,
            consecutive_failures: s.state.consecutive_failures,
            last: s.state.last.as_ref().map(RunView::from),
            tls_cert_not_after: s.state.counters.tls_not_after.and_then(unix_rfc3339),
            history: s.state.history.iter().map(RunView::from).collect(),
        }
    }
}

impl From<&Outcome> for RunView {
    fn from(o: &Outcome) -> Self {
        RunView {
            at: rfc3339(o.at),
            up: o.up(),
            reason: o.reason.as_str(),
            detail: o.detail.clone(),
            duration_seconds: o.duration.as_secs_f64(),
        }
    }
}

pub(super) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Unix seconds (a certificate's notAfter) as RFC 3339; `None` before 1970.
pub(super) fn unix_rfc3339(seconds: i64) -> Option<String> {
    let seconds = u64::try_from(seconds).ok()?;
    Some(rfc3339(
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
    ))
}
