//! The HTTPS client that posts batches to the platform: rustls (the platform's CA, or the
//! system's roots; optionally this box's client certificate), HTTP/1.1 with the connection
//! kept for the next batch, one deadline per request. Every outcome becomes a
//! [`policy::Answer`](super::policy::Answer); nothing here decides what to do with it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use siteward_config::{Secret, Uplink};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::policy::Answer;

/// How much of an error answer's body is kept (for the dead-letter reason and logs).
const BODY_EXCERPT: usize = 512;
/// The most of any answer's body read at all: a platform that sends garbage cannot make
/// the uplink buffer it.
const MAX_ANSWER_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("uplink.url: {0}")]
    Url(String),
    #[error("uplink.ca_file {path}: {why}")]
    CaFile { path: String, why: String },
    #[error("uplink client certificate: {0}")]
    CertAndKey(String),
    #[error("uplink TLS settings: {0}")]
    Tls(String),
}

/// Where the platform is, from `https://host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As it goes into `Host:` (with the port when it is not 443).
    pub authority: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, ClientError> {
        let bad = |why: &str| ClientError::Url(format!("{url}: {why}"));
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| bad("not https://"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            (host.to_string(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            None => 443,
            Some(port) => port.parse().map_err(|_| bad("the port is not a number"))?,
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Endpoint {
            authority: authority.to_string(),
            host,
            port,
            path,
        })
    }
}

pub struct UplinkClient {
    endpoint: Endpoint,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    token: Option<Secret>,
    timeout: Duration,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl UplinkClient {
    pub fn new(config: &Uplink) -> Result<UplinkClient, ClientError> {
        let endpoint = Endpoint::parse(&config.url)?;
        let server_name = ServerName::try_from(endpoint.host.clone())
            .map_err(|e| ClientError::Url(format!("{}: {e}", config.url)))?;
        let roots = match &config.ca_file {
            Some(path) => roots_from(path)?,
            None => system_roots()?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let mut tls = match &config.client_cert {
            None => builder.with_no_client_auth(),
            Some(client) => {
                let certs = CertificateDer::pem_file_iter(&client.cert_file)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        ClientError::CertAndKey(format!("{}: {e}", client.cert_file.display()))
                    })?;
                let key = PrivateKeyDer::from_pem_file(&client.key_file).map_err(|e| {
                    ClientError::CertAndKey(format!("{}: {e}", client.key_file.display()))
                })?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| ClientError::CertAndKey(e.to_string()))?
            }
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UplinkClient {
            endpoint,
            server_name,
            connector: TlsConnector::from(Arc::new(tls)),
            token: config.token.clone(),
            timeout: config.timeout,
            connection: None,
        })
    }

    /// Posts `body` (a batch, JSON) and says how the platform answered.
    pub async fn post(&mut self, body: Vec<u8>) -> Answer {
        match tokio::time::timeout(self.timeout, self.exchange(body)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(why)) => {
                self.connection = None;
                Answer::Unreachable(why)
            }
            Err(_) => {
                // The connection may be mid-request: never reuse it.
                self.connection = None;
                Answer::Timeout
            }
        }
    }

    async fn exchange(&mut self, body: Vec<u8>) -> Result<Answer, String> {
        let mut sender = match self.connection.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut request = Request::post(&self.endpoint.path)
            .header(HOST, &self.endpoint.authority)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("siteward/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| "the token is not a valid header value".to_string())?;
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("sending the batch: {e}"))?;
        let code = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = Limited::new(response.into_body(), MAX_ANSWER_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("reading the answer: {e}"))?;
        self.connection = Some(sender);
        let excerpt = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT)])
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .trim()
            .to_string();
        Ok(Answer::Status {
            code,
            retry_after,
            body: excerpt,
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let Endpoint { host, port, .. } = &self.endpoint;
        let tcp = TcpStream::connect((host.as_str(), *port))
            .await
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP with {host}:{port}: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "uplink connection ended");
            }
        });
        Ok(sender)
    }
}

fn roots_from(path: &Path) -> Result<RootCertStore, ClientError> {
    let fail = |why: String| ClientError::CaFile {
        path: path.display().to_string(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(fail("holds no usable certificate".into()));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, ClientError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(ClientError::Tls(
            "no usable system root certificates (is ca-certificates installed?); set uplink.ca_file"
                .into(),
        ));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_split_into_host_port_and_path() {
        let e = Endpoint::parse("https://ingest.example.net/v1/events").unwrap();
        assert_eq!(
            (
                e.authority.as_str(),
                e.host.as_str(),
                e.port,
                e.path.as_str()
            ),
            (
                "ingest.example.net",
                "ingest.example.net",
                443,
                "/v1/events"
            )
        );
        let e = Endpoint::parse("https://192.0.2.10:8443").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("192.0.2.10", 8443, "/")
        );
        let e = Endpoint::parse("https://[2001:db8::1]:9443/in?x=1").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("2001:db8::1", 9443, "/in?x=1")
        );
        assert!(Endpoint::parse("http://ingest.example.net/").is_err());
        assert!(Endpoint::parse("https://:443/").is_err());
        assert!(Endpoint::parse("https://host:port/").is_err());
    }
}

#[cfg(test)]
mod exchange_tests {
    use super::*;
    use crate::probes::tls_client::test_support::{pki, serve};
    use crate::uplink::test_config;

    #[tokio::test]
    async fn a_batch_is_posted_with_its_token_and_the_answer_reported() {
        let pki = pki(&["127.0.0.1"], (2090, 1, 1));
        let response = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\n\
            Content-Length: 10\r\nConnection: close\r\n\r\nbusy\x07 now!"
            .to_vec();
        let (addr, mut heads) = serve(Some(pki.server.clone()), response).await;
        let config = test_config(format!("https://{addr}/v1/events"), pki.ca_file.path());
        let mut client = UplinkClient::new(&config).unwrap();
        let answer = client
            .post(br#"{"appliance":"a","events":[]}"#.to_vec())
            .await;
        assert_eq!(
            answer,
            Answer::Status {
                code: 503,
                retry_after: Some(7),
                body: "busy  now!".into()
            }
        );
        let head = heads.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("post /v1/events http/1.1\r\n"), "{head}");
        assert!(
            head.contains("authorization: bearer platform-token-0123456789"),
            "{head}"
        );
        assert!(head.contains("content-type: application/json"), "{head}");
    }

    #[tokio::test]
    async fn an_untrusted_platform_or_a_closed_port_is_unreachable() {
        let platform = pki(&["127.0.0.1"], (2090, 1, 1));
        let other = pki(&["127.0.0.1"], (2090, 1, 1));
        let (addr, _heads) = serve(Some(platform.server.clone()), Vec::new()).await;
        let config = test_config(format!("https://{addr}/"), other.ca_file.path());
        let answer = UplinkClient::new(&config).unwrap().post(Vec::new()).await;
        assert!(
            matches!(&answer, Answer::Unreachable(why) if why.contains("TLS")),
            "{answer:?}"
        );

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let config = test_config(
            format!("https://127.0.0.1:{port}/"),
            platform.ca_file.path(),
        );
        let answer = UplinkClient::new(&config).unwrap().post(Vec::new()).await;
        assert!(
            matches!(&answer, Answer::Unreachable(why) if why.contains("connecting")),
            "{answer:?}"
        );
    }
}
