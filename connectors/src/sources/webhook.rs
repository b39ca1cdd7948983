//! `kind = "webhook"`: an HTTP(S) listener taking POSTs on one path. Each body becomes
//! one event, and the sender hears `202 Accepted` only once it is durable in the spool:
//!
//! | answer | when |
//! |--------|------|
//! | 202 | durable; the body is `{"sequence": n}` |
//! | 400 | empty, not UTF-8, or declared JSON and not JSON |
//! | 401 | the HMAC signature header is missing or wrong |
//! | 404 / 405 | another path / another method than POST |
//! | 413 | longer than `max_body_bytes` |
//! | 503 + `Retry-After` | the spool is full (`when_full = "block"`) or failing |
//!
//! The signature is GitHub's scheme: the header holds the hex HMAC-SHA256 of the raw body
//! under the shared secret, optionally prefixed `sha256=`; it is compared in constant time.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use siteward_config::WebhookSource;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Sink, StartError};
use crate::http_server::{self, ServeOptions};
use crate::spool::SpoolError;

/// Concurrent connections per webhook listener.
const MAX_CONNECTIONS: usize = 1024;
/// What a 503 asks the sender to wait, in seconds.
const RETRY_AFTER_SECONDS: &str = "5";
/// The event kind of webhook events.
pub const KIND: &str = "webhook";

struct Hook {
    path: String,
    max_body: usize,
    hmac: Option<(ring::hmac::Key, String)>,
    sink: Sink,
}

pub async fn start(
    config: &WebhookSource,
    sink: Sink,
    cancel: CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    let name = format!("webhook {}", sink.connector());
    let tls = match &config.tls {
        None => None,
        Some(pair) => Some(
            http_server::tls_server_config(&pair.cert_file, &pair.key_file).map_err(|e| {
                StartError::new(
                    format!("loading the certificate of {name}"),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            })?,
        ),
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| StartError::new(format!("binding {name} to {}", config.listen), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| StartError::new(format!("reading the address of {name}"), e))?;
    // Tests and scripts wait for this line (with port 0 it is the only way to learn the port).
    tracing::info!(connector = sink.connector(), listener = %name, addr = %bound, "listening");
    Ok(tokio::spawn(serve(listener, tls, config, sink, cancel)))
}

/// Serves the webhook on a bound listener until `cancel`.
pub fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    config: &WebhookSource,
    sink: Sink,
    cancel: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let name = format!("webhook {}", sink.connector());
    let hook = Arc::new(Hook {
        path: config.path.clone(),
        max_body: config.max_body_bytes,
        hmac: config.hmac.as_ref().map(|hmac| {
            let key =
                ring::hmac::Key::new(ring::hmac::HMAC_SHA256, hmac.secret.expose().as_bytes());
            (key, hmac.header.clone())
        }),
        sink,
    });
    let service = hyper::service::service_fn(move |request| {
        let hook = hook.clone();
        async move { Ok::<_, Infallible>(hook.handle(request).await) }
    });
    let options = ServeOptions {
        name,
        max_connections: MAX_CONNECTIONS,
        tls,
    };
    http_server::serve(listener, options, service, cancel)
}

impl Hook {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() != self.path {
            return answer(StatusCode::NOT_FOUND, "no webhook at this path");
        }
        if request.method() != Method::POST {
            let mut response = answer(StatusCode::METHOD_NOT_ALLOWED, "send a POST");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        // Refused before reading a byte of the body when it says it is too long.
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_body as u64) {
            return self.refuse(StatusCode::PAYLOAD_TOO_LARGE, &self.too_large());
        }
        let signature = self.hmac.as_ref().map(|(_, header)| {
            request
                .headers()
                .get(header.as_str())
                .map(|v| v.as_bytes().to_vec())
        });
        let declared_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_type);
        let body = match Limited::new(request.into_body(), self.max_body)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return self.refuse(StatusCode::PAYLOAD_TOO_LARGE, &self.too_large());
            }
            Err(e) => {
                tracing::debug!(connector = self.sink.connector(), error = %e, "reading a webhook body");
                return self.refuse(StatusCode::BAD_REQUEST, "the body could not be read");
            }
        };
        if let (Some((key, header)), Some(signature)) = (&self.hmac, signature) {
            if let Err(why) = verify_signature(key, signature.as_deref(), &body) {
                tracing::debug!(
                    connector = self.sink.connector(),
                    header,
                    why,
                    "webhook refused"
                );
                return self.refuse(StatusCode::UNAUTHORIZED, why);
            }
        }
        if let Err(why) = check_body(&body, declared_json) {
            return self.refuse(StatusCode::BAD_REQUEST, &why);
        }
        match self.sink.accept(KIND, Vec::from(body)).await {
            Ok(sequence) => {
                let mut response = Response::new(Full::new(Bytes::from(format!(
                    "{{\"sequence\":{sequence}}}\n"
                ))));
                *response.status_mut() = StatusCode::ACCEPTED;
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            Err(SpoolError::TooLarge { .. }) => {
                answer(StatusCode::PAYLOAD_TOO_LARGE, "larger than the whole spool")
            }
            Err(e) => {
                if !matches!(e, SpoolError::Full { .. }) {
                    tracing::error!(connector = self.sink.connector(), error = %e, "spooling a webhook");
                }
                let mut response = answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not accepted: the spool cannot take it now; retry later",
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
                response
            }
        }
    }

    fn too_large(&self) -> String {
        format!("the body is longer than {} bytes", self.max_body)
    }

    /// Bad input from the sender: counted, answered, nothing stored.
    fn refuse(&self, status: StatusCode, why: &str) -> Response<Full<Bytes>> {
        self.sink.reject();
        answer(status, why)
    }
}

fn answer(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `application/json`, `application/<x>+json`, with or without parameters.
fn is_json_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The header's hex HMAC-SHA256 (optionally `sha256=`-prefixed) against the body's.
fn verify_signature(
    key: &ring::hmac::Key,
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<(), &'static str> {
    let header = header.ok_or("the signature header is missing")?;
    let hex_text = header.strip_prefix(b"sha256=").unwrap_or(header);
    let tag = hex::decode(hex_text).map_err(|_| "the signature is not hex")?;
    ring::hmac::verify(key, body, &tag).map_err(|_| "the signature does not match the body")
}

/// What an event body must be: text the uplink's JSON can carry, JSON if it says so.
fn check_body(body: &[u8], declared_json: bool) -> Result<(), String> {
    if body.is_empty() {
        return Err("the body is empty".into());
    }
    if std::str::from_utf8(body).is_err() {
        return Err("the body is not UTF-8 text".into());
    }
    if declared_json {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            return Err(format!("the body is not JSON: {e}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ring::hmac::Key {
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"It's a Secret to Everybody")
    }

    #[test]
    fn githubs_documented_signature_verifies() {
        // The example of GitHub's "Validating webhook deliveries" page.
        let header = b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify_signature(&key(), Some(header), b"Hello, World!"),
            Ok(())
        );
        // Without the prefix too.
        assert_eq!(
            verify_signature(&key(), Some(&header[7..]), b"Hello, World!"),
            Ok(())
        );
    }

    #[test]
    fn bad_signatures_are_refused_with_their_reason() {
        let good = b"757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify_signature(&key(), Some(good), b"Hello, World?").is_err());
        assert_eq!(
            verify_signature(&key(), None, b"x"),
            Err("the signature header is missing")
        );
        assert_eq!(
            verify_signature(&key(), Some(b"sha256=zz"), b"x"),
            Err("the signature is not hex")
        );
        assert!(verify_signature(&key(), Some(&good[..10]), b"Hello, World!").is_err());
    }

    #[test]
    fn bodies_must_be_text_and_json_when_declared() {
        assert!(check_body(b"{\"a\":1}", true).is_ok());
        assert!(check_body(b"plain text", false).is_ok());
        assert!(check_body(b"", false).is_err());
        assert!(check_body(&[0xff, 0xfe], false).is_err());
        assert!(check_body(b"{\"a\":", true)
            .unwrap_err()
            .contains("not JSON"));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_type("application/json"));
        assert!(is_json_type("Application/JSON; charset=utf-8"));
        assert!(is_json_type("application/cloudevents+json"));
        assert!(!is_json_type("text/plain"));
    }
}
