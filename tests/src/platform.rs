//! A stand-in for the cloud integration platform: an HTTPS receiver of the uplink's
//! batches (README, "Uplink HTTP contract") with its own test CA, optionally demanding a
//! client certificate. It records every event it accepted, and fails on command: an HTTP
//! status (5xx, 429 with Retry-After, 400), a hang, a reset, or garbage instead of HTTP.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use serde_json::Value;

use crate::pki::{KeyKind, Leaf, TestCa};
use crate::wait_until;

/// Largest request body read (the uplink's batches are at most 16 MiB).
const MAX_BODY: usize = 32 << 20;

/// How the platform answers the next requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 and the events are recorded.
    Accept,
    /// This status (and `Retry-After` if given) with a short body; nothing recorded.
    Status { code: u16, retry_after: Option<u64> },
    /// Read the request, never answer.
    Hang,
    /// Read the request, then reset the connection.
    Reset,
    /// Answer bytes that are not HTTP.
    Garbage,
}

/// One event the platform accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub connector: String,
    pub kind: String,
    pub received_at: String,
    pub payload: Value,
    /// The batch's `appliance`.
    pub appliance: String,
    /// The event's `idempotency_key`.
    pub idempotency_key: String,
}

#[derive(Default)]
struct Shared {
    behaviour: Mutex<Option<Behaviour>>,
    accepted: Mutex<Vec<Received>>,
    requests: Mutex<Vec<RequestSeen>>,
}

/// What the platform saw of a request (accepted or not).
#[derive(Debug, Clone)]
pub struct RequestSeen {
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub events: usize,
    /// The ids of the request's events (status reports included).
    pub ids: Vec<String>,
}

pub struct Platform {
    addr: SocketAddr,
    ca_file: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Issues client certificates when the platform demands one.
    client_ca: Option<TestCa>,
    _dir: tempfile::TempDir,
}

impl Platform {
    /// A platform on 127.0.0.1 (a free port) that accepts everything.
    pub fn start() -> Platform {
        Platform::start_with(false)
    }

    /// With `require_client_cert`, the TLS handshake fails without a certificate from
    /// [`Platform::issue_client_cert`]'s CA.
    pub fn start_with(require_client_cert: bool) -> Platform {
        let dir = tempfile::Builder::new()
            .prefix("siteward-platform-")
            .tempdir()
            .expect("creating the platform's directory");
        let ca = TestCa::new("Test Platform CA");
        let leaf = ca.issue_leaf(
            "platform.test",
            &["127.0.0.1", "localhost"],
            KeyKind::EcdsaP256,
        );
        let ca_file = dir.path().join("platform-ca.pem");
        std::fs::write(&ca_file, ca.cert_pem()).expect("writing the platform CA");
        let client_ca = require_client_cert.then(|| TestCa::new("Test Appliance CA"));
        let tls = Arc::new(server_config(&leaf, client_ca.as_ref()));

        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the platform");
        let addr = listener.local_addr().expect("the platform's address");
        let shared = Arc::new(Shared::default());
        *shared.behaviour.lock().unwrap() = Some(Behaviour::Accept);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (shared, tls, stop) = (shared.clone(), tls.clone(), stop.clone());
                    std::thread::spawn(move || serve_connection(stream, tls, &shared, &stop));
                }
            })
        };
        Platform {
            addr,
            ca_file,
            shared,
            stop,
            thread: Some(thread),
            client_ca,
            _dir: dir,
        }
    }

    /// `https://127.0.0.1:PORT/v1/events`.
    pub fn url(&self) -> String {
        format!("https://{}/v1/events", self.addr)
    }

    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A client certificate the platform accepts, written as `cert.pem`/`key.pem` into `dir`.
    pub fn issue_client_cert(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let ca = self
            .client_ca
            .as_ref()
            .expect("the platform was started without client certificates");
        let leaf = ca.issue_leaf("appliance.test", &["appliance.test"], KeyKind::EcdsaP256);
        let (cert, key) = (dir.join("client-cert.pem"), dir.join("client-key.pem"));
        std::fs::write(&cert, leaf.cert_pem).expect("writing the client certificate");
        std::fs::write(&key, leaf.key_pem).expect("writing the client key");
        (cert, key)
    }

    /// How the next requests are answered.
    pub fn set(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = Some(behaviour);
    }

    /// Every event accepted so far (status reports excluded), in arrival order.
    pub fn events(&self) -> Vec<Received> {
        self.shared
            .accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind != "status")
            .cloned()
            .collect()
    }

    /// Accepted status reports.
    pub fn status_reports(&self) -> Vec<Received> {
        self.shared
            .accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind == "status")
            .cloned()
            .collect()
    }

    /// Every request seen, in order.
    pub fn requests(&self) -> Vec<RequestSeen> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` distinct event ids were accepted; returns every accepted
    /// event (duplicates included). Panics after `timeout`.
    pub fn wait_for_distinct(&self, n: usize, timeout: Duration) -> Vec<Received> {
        wait_until(timeout, || {
            let events = self.events();
            let distinct: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
            (distinct.len() >= n).then(|| events.clone())
        })
        .unwrap_or_else(|| {
            let events = self.events();
            let distinct: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
            panic!(
                "the platform has {} distinct events after {timeout:?}, expected {n}",
                distinct.len()
            )
        })
    }

    /// Waits until `n` requests were seen. Panics after `timeout`.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RequestSeen> {
        wait_until(timeout, || {
            let seen = self.requests();
            (seen.len() >= n).then_some(seen)
        })
        .unwrap_or_else(|| {
            panic!(
                "the platform saw {} requests after {timeout:?}, expected {n}",
                self.requests().len()
            )
        })
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn server_config(leaf: &Leaf, client_ca: Option<&TestCa>) -> ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("the platform's certificate");
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("the platform's key");
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
                roots
                    .add(cert.expect("the client CA"))
                    .expect("adding the client CA");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(certs, key)
        .expect("the platform's TLS configuration")
}

fn serve_connection(tcp: TcpStream, tls: Arc<ServerConfig>, shared: &Shared, stop: &AtomicBool) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(connection) = ServerConnection::new(tls) else {
        return;
    };
    let mut stream = BufReader::new(StreamOwned::new(connection, tcp));
    while !stop.load(Ordering::Relaxed) {
        let Ok(Some(request)) = read_request(&mut stream) else {
            return;
        };
        let behaviour = shared
            .behaviour
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(Behaviour::Accept);
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let events = body["events"].as_array().cloned().unwrap_or_default();
        shared.requests.lock().unwrap().push(RequestSeen {
            authorization: request.header("authorization"),
            content_type: request.header("content-type"),
            events: events.len(),
            ids: events
                .iter()
                .filter_map(|e| e["id"].as_str().map(str::to_string))
                .collect(),
        });
        let answer: Vec<u8> = match behaviour {
            Behaviour::Accept => {
                let appliance = body["appliance"].as_str().unwrap_or("").to_string();
                let mut accepted = shared.accepted.lock().unwrap();
                for event in &events {
                    accepted.push(Received {
                        id: event["id"].as_str().unwrap_or("").to_string(),
                        connector: event["connector"].as_str().unwrap_or("").to_string(),
                        kind: event["kind"].as_str().unwrap_or("").to_string(),
                        received_at: event["received_at"].as_str().unwrap_or("").to_string(),
                        payload: event["payload"].clone(),
                        appliance: appliance.clone(),
                        idempotency_key: event["idempotency_key"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    });
                }
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"
                    .to_vec()
            }
            Behaviour::Status { code, retry_after } => {
                let body = format!("refused with {code}");
                let retry = retry_after
                    .map(|s| format!("Retry-After: {s}\r\n"))
                    .unwrap_or_default();
                format!(
                    "HTTP/1.1 {code} Test\r\nContent-Length: {}\r\n{retry}\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            Behaviour::Hang => {
                // Hold the connection until the client gives up or the platform stops.
                let mut sink = [0u8; 1];
                let _ = stream
                    .get_mut()
                    .sock
                    .set_read_timeout(Some(Duration::from_secs(120)));
                let _ = stream.read(&mut sink);
                return;
            }
            Behaviour::Reset => {
                let _ = stream.get_mut().sock.shutdown(Shutdown::Both);
                return;
            }
            Behaviour::Garbage => b"\x00\x01garbage, not HTTP at all\r\n\r\n".to_vec(),
        };
        let writer = stream.get_mut();
        if writer
            .write_all(&answer)
            .and_then(|()| writer.flush())
            .is_err()
        {
            return;
        }
    }
}

struct HttpRequest {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// One request with a Content-Length body; `None` at a clean end of the connection.
fn read_request<R: BufRead>(stream: &mut R) -> io::Result<Option<HttpRequest>> {
    let mut line = String::new();
    if stream.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        stream.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok(Some(HttpRequest { headers, body }))
}
