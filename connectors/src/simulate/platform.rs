//! `siteward simulate platform`: a receiver of the uplink (README, "Uplink HTTP
//! contract"), standing in for the cloud integration platform in the demo and for users
//! trying an appliance's uplink before the platform team has one.
//!
//! HTTPS only (the uplink refuses anything else), with the certificate and key given.
//! `POST <path>` with `Authorization: Bearer <token>` and a JSON envelope
//! `{"appliance": "...", "events": [{"id": "...", "kind": "...", ...}]}` is answered
//! `200 {"accepted": n, "duplicates": d}`; events are deduplicated by `id`, as the
//! contract asks of a platform, and counted (status reports apart). Every batch is logged
//! with the running totals (`events_total`), which is how the demo tells that events
//! arrived. Refusals, per the contract: 401 without the token, 415 for another content
//! type, 413 over the size limit, 400 for a body that is not such an envelope, 404/405
//! for another path or method. `--mode unavailable` answers 503 with `Retry-After` (the
//! appliance spools and retries), `--mode refuse` 422 (the appliance dead-letters).

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::http_server::{self, ServeOptions};
use crate::uplink::batch::{STATUS_CONNECTOR, STATUS_KIND};

/// Largest body read: the uplink's batches are at most about `batch_max_bytes` (up to
/// 16 MiB) of payloads plus their envelope.
const MAX_BODY: usize = 32 << 20;
/// Event ids remembered for deduplication; the oldest are forgotten beyond this, so a
/// long-running receiver stays bounded (a redelivery comes within minutes, not millions
/// of events later).
const REMEMBERED_IDS: usize = 1_000_000;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 256;
/// What `--mode unavailable` asks the appliance to wait, in seconds.
const RETRY_AFTER_SECONDS: &str = "5";

/// How the receiver answers well-formed, authorized batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// 200: delivered.
    Accept,
    /// 503 with Retry-After: the appliance keeps the events and retries.
    Unavailable,
    /// 422: refused for good; the appliance moves the events to its dead letters.
    Refuse,
}

/// Options of `siteward simulate platform`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// PEM certificate (chain) the receiver presents; the appliance's `uplink.ca_file`
    /// must trust it.
    #[arg(long)]
    pub cert_file: PathBuf,
    /// PEM private key of the certificate.
    #[arg(long)]
    pub key_file: PathBuf,
    /// File holding the bearer token the appliance must send (`uplink.token_file`; a
    /// trailing newline is ignored).
    #[arg(long)]
    pub token_file: PathBuf,
    /// Path batches are posted to.
    #[arg(long, default_value = "/v1/events")]
    pub path: String,
    /// How to answer batches.
    #[arg(long, value_enum, default_value_t = Mode::Accept)]
    pub mode: Mode,
}

/// Why the receiver cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("reading the token file {path}: {why}")]
    Token { path: String, why: String },
    #[error("the receiver's certificate: {0}")]
    Tls(String),
}

/// What the receiver has taken so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Batches answered 200.
    pub batches: u64,
    /// Distinct events, status reports excluded.
    pub events: u64,
    /// Events whose id had been received before.
    pub duplicates: u64,
    pub status_reports: u64,
}

/// The receiver's memory: totals and the ids seen, oldest first.
#[derive(Default)]
pub struct Received {
    state: Mutex<ReceivedState>,
}

#[derive(Default)]
struct ReceivedState {
    totals: Totals,
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Received {
    pub fn totals(&self) -> Totals {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).totals
    }

    /// Records one accepted batch; returns (new events, duplicates).
    fn record(&self, events: &[Event]) -> (u64, u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (mut new, mut duplicates) = (0, 0);
        for event in events {
            if event.is_status {
                state.totals.status_reports += 1;
                continue;
            }
            if state.ids.contains(&event.id) {
                duplicates += 1;
                continue;
            }
            new += 1;
            state.ids.insert(event.id.clone());
            state.order.push_back(event.id.clone());
            if state.order.len() > REMEMBERED_IDS {
                if let Some(oldest) = state.order.pop_front() {
                    state.ids.remove(&oldest);
                }
            }
        }
        state.totals.batches += 1;
        state.totals.events += new;
        state.totals.duplicates += duplicates;
        (new, duplicates)
    }
}

struct Event {
    id: String,
    is_status: bool,
}

struct Receiver {
    path: String,
    mode: Mode,
    token_digest: [u8; 32],
    received: Arc<Received>,
}

/// Serves the receiver on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    options: Options,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_counting(listener, options, Arc::new(Received::default()), shutdown)
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Like [`serve`], recording into `received` (which tests read).
pub async fn serve_counting(
    listener: TcpListener,
    options: Options,
    received: Arc<Received>,
    shutdown: CancellationToken,
) -> Result<(), SetupError> {
    let token = read_token(&options.token_file)?;
    let tls = http_server::tls_server_config(&options.cert_file, &options.key_file)
        .map_err(SetupError::Tls)?;
    let receiver = Arc::new(Receiver {
        path: options.path.clone(),
        mode: options.mode,
        token_digest: Sha256::digest(token.as_bytes()).into(),
        received,
    });
    if let Ok(local) = listener.local_addr() {
        info!(%local, path = %options.path, "platform simulator listening (HTTPS)");
    }
    let service = hyper::service::service_fn(move |request| {
        let receiver = receiver.clone();
        async move { Ok::<_, Infallible>(receiver.handle(request).await) }
    });
    let serve_options = ServeOptions {
        name: "platform".to_string(),
        max_connections: MAX_CONNECTIONS,
        tls: Some(tls),
    };
    http_server::serve(listener, serve_options, service, shutdown).await;
    Ok(())
}

fn read_token(path: &std::path::Path) -> Result<String, SetupError> {
    super::read_secret_file(path).map_err(|why| SetupError::Token {
        path: path.display().to_string(),
        why,
    })
}

impl Receiver {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() != self.path {
            return answer(
                StatusCode::NOT_FOUND,
                json!({"error": "no receiver at this path"}),
            );
        }
        if request.method() != Method::POST {
            let mut response = answer(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "send a POST"}),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        if !self.authorized(request.headers().get(AUTHORIZATION)) {
            info!("platform: refused a batch without the right bearer token");
            return answer(
                StatusCode::UNAUTHORIZED,
                json!({"error": "missing or wrong bearer token"}),
            );
        }
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        if !is_json {
            return answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"error": "send application/json"}),
            );
        }
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": format!("the body is longer than {MAX_BODY} bytes")}),
                );
            }
            Err(_) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "the body could not be read"}),
                )
            }
        };
        let (appliance, events) = match parse_envelope(&body) {
            Ok(parsed) => parsed,
            Err(why) => {
                info!(why, "platform: refused a malformed batch");
                return answer(StatusCode::BAD_REQUEST, json!({ "error": why }));
            }
        };
        match self.mode {
            Mode::Accept => {}
            Mode::Unavailable => {
                let mut response = answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "unavailable (simulated)"}),
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
                return response;
            }
            Mode::Refuse => {
                return answer(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"error": "refused (simulated)"}),
                )
            }
        }
        let (new, duplicates) = self.received.record(&events);
        let totals = self.received.totals();
        info!(
            appliance,
            batch_events = events.len(),
            new,
            duplicates,
            events_total = totals.events,
            status_reports_total = totals.status_reports,
            "platform: batch received"
        );
        answer(
            StatusCode::OK,
            json!({"accepted": new, "duplicates": duplicates}),
        )
    }

    /// Compares digests, so the time taken says nothing about how much of the token matched.
    fn authorized(&self, header: Option<&HeaderValue>) -> bool {
        let Some(presented) = header
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        digest == self.token_digest
    }
}

/// The envelope's appliance and events; a description of what is wrong otherwise.
fn parse_envelope(body: &[u8]) -> Result<(String, Vec<Event>), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let appliance = value
        .get("appliance")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .ok_or("\"appliance\" is missing or not a non-empty string")?
        .to_string();
    let events = value
        .get("events")
        .and_then(Value::as_array)
        .ok_or("\"events\" is missing or not an array")?;
    let mut parsed = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let field = |name: &str| {
            event
                .get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("events[{i}].{name} is missing or not a non-empty string"))
        };
        let id = field("id")?;
        let kind = field("kind")?;
        let connector = field("connector")?;
        if event.get("payload").is_none() {
            return Err(format!("events[{i}].payload is missing"));
        }
        parsed.push(Event {
            id: id.to_string(),
            is_status: kind == STATUS_KIND && connector == STATUS_CONNECTOR,
        });
    }
    Ok((appliance, parsed))
}

fn answer(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uplink::client::UplinkClient;
    use crate::uplink::policy::Answer;
    use siteward_config::{Secret, Uplink};
    use std::time::Duration;

    const TOKEN: &str = "platform-test-token";

    struct Running {
        url: String,
        ca_file: PathBuf,
        received: Arc<Received>,
        shutdown: CancellationToken,
        _dir: tempfile::TempDir,
    }

    async fn start(mode: Mode) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let (cert, key, token) = (
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
            dir.path().join("token"),
        );
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Received::default());
        let shutdown = CancellationToken::new();
        let options = Options {
            cert_file: cert.clone(),
            key_file: key,
            token_file: token,
            path: "/v1/events".into(),
            mode,
        };
        tokio::spawn(serve_counting(
            listener,
            options,
            received.clone(),
            shutdown.clone(),
        ));
        Running {
            url: format!("https://{addr}/v1/events"),
            ca_file: cert,
            received,
            shutdown,
            _dir: dir,
        }
    }

    fn client(running: &Running, token: Option<&str>) -> UplinkClient {
        UplinkClient::new(&Uplink {
            url: running.url.clone(),
            token: token.map(Secret::new),
            client_cert: None,
            ca_file: Some(running.ca_file.clone()),
            batch_max_events: 500,
            batch_max_bytes: 1 << 20,
            batch_max_wait: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            status_interval: None,
        })
        .unwrap()
    }

    fn batch(ids: &[&str]) -> Vec<u8> {
        let events: Vec<Value> = ids
            .iter()
            .map(|id| {
                json!({"id": id, "idempotency_key": id, "connector": "pbx", "kind": "ami.Hangup",
                       "received_at": "2026-01-01T00:00:00.000Z", "payload": {"Event": "Hangup"}})
            })
            .collect();
        serde_json::to_vec(&json!({"appliance": "plant-01", "events": events})).unwrap()
    }

    fn status_code(answer: &Answer) -> u16 {
        match answer {
            Answer::Status { code, .. } => *code,
            other => panic!("no status: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_uplink_client_delivers_and_duplicates_are_counted_once() {
        let running = start(Mode::Accept).await;
        let mut client = client(&running, Some(TOKEN));
        let first = client.post(batch(&["plant-01-1", "plant-01-2"])).await;
        assert!(first.is_success(), "{first:?}");
        let again = client.post(batch(&["plant-01-2", "plant-01-3"])).await;
        match &again {
            Answer::Status {
                code: 200, body, ..
            } => {
                assert_eq!(body, r#"{"accepted":1,"duplicates":1}"#)
            }
            other => panic!("{other:?}"),
        }
        let status = crate::uplink::batch::status_body(
            "plant-01",
            std::time::SystemTime::now(),
            json!({"version": "test"}),
        );
        assert!(client.post(status).await.is_success());
        assert_eq!(
            running.received.totals(),
            Totals {
                batches: 3,
                events: 3,
                duplicates: 1,
                status_reports: 1
            }
        );
        running.shutdown.cancel();
    }

    #[tokio::test]
    async fn refusals_follow_the_contract_and_record_nothing() {
        let running = start(Mode::Accept).await;
        let wrong = client(&running, Some("not-the-token"))
            .post(batch(&["plant-01-1"]))
            .await;
        assert_eq!(status_code(&wrong), 401, "{wrong:?}");
        let none = client(&running, None).post(batch(&["plant-01-1"])).await;
        assert_eq!(status_code(&none), 401, "{none:?}");
        let mut good = client(&running, Some(TOKEN));
        for body in [
            b"not json".to_vec(),
            br#"{"events": []}"#.to_vec(),
            br#"{"appliance": "a", "events": [{"id": "a-1", "kind": "k", "payload": 1}]}"#.to_vec(),
        ] {
            let refused = good.post(body).await;
            assert_eq!(status_code(&refused), 400, "{refused:?}");
        }
        assert_eq!(running.received.totals(), Totals::default());
        running.shutdown.cancel();
    }

    #[tokio::test]
    async fn failure_modes_answer_503_with_retry_after_and_422() {
        let running = start(Mode::Unavailable).await;
        match client(&running, Some(TOKEN)).post(batch(&["p-1"])).await {
            Answer::Status {
                code: 503,
                retry_after: Some(5),
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        running.shutdown.cancel();
        let running = start(Mode::Refuse).await;
        let refused = client(&running, Some(TOKEN)).post(batch(&["p-1"])).await;
        assert_eq!(status_code(&refused), 422, "{refused:?}");
        assert_eq!(running.received.totals().events, 0);
        running.shutdown.cancel();
    }

    #[test]
    fn an_empty_or_missing_token_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(matches!(read_token(&empty), Err(SetupError::Token { .. })));
        assert!(matches!(
            read_token(&dir.path().join("missing")),
            Err(SetupError::Token { .. })
        ));
        let long = dir.path().join("long");
        std::fs::write(&long, "x".repeat(5000)).unwrap();
        assert!(read_token(&long).is_err());
    }
}
