//! A deliberately small blocking HTTP/1.1 client (one request per connection), over plain
//! TCP for `/metrics` and over rustls for the admin API, with real certificate verification.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Limit on a response the tests read (a scrape of a few checks is a few KiB).
const MAX_RESPONSE: usize = 8 * 1024 * 1024;
/// Reads and writes that stall longer than this fail the request instead of hanging a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// A request to send: method, path, extra headers, optional body.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn get(path: &'a str) -> Self {
        Request {
            method: "GET",
            path,
            headers: Vec::new(),
            body: b"",
        }
    }

    pub fn post(path: &'a str) -> Self {
        Request {
            method: "POST",
            ..Request::get(path)
        }
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Adds `Authorization: Bearer TOKEN`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }
}

/// Sends `request` over `stream` (with `Connection: close`) and reads the whole response.
pub fn exchange<S: Read + Write>(
    stream: &mut S,
    host: &str,
    request: &Request<'_>,
) -> io::Result<Response> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        request.method,
        request.path,
        request.body.len()
    );
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(request.body)?;
    stream.flush()?;
    read_response(stream)
}

/// Reads one response: head, then a body framed by Content-Length, chunked encoding or EOF.
pub fn read_response<R: Read>(stream: &mut R) -> io::Result<Response> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if read_some(stream, &mut buf)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before the response head ({} bytes)",
                    buf.len()
                ),
            ));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf.split_off(head_end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };

    let body = if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {length:?}")))?;
        if length > MAX_RESPONSE {
            return Err(invalid(format!("Content-Length {length} is too large")));
        }
        while rest.len() < length {
            if read_some(stream, &mut rest)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside the body",
                ));
            }
        }
        rest.truncate(length);
        rest
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(stream, rest)?
    } else {
        while read_some(stream, &mut rest)? > 0 {}
        rest
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk<R: Read>(stream: &mut R, mut raw: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(&raw, b"\r\n") {
                break i;
            }
            if read_some(stream, &mut raw)? == 0 {
                return Err(invalid("connection closed inside a chunk size".into()));
            }
        };
        let size_text = String::from_utf8_lossy(&raw[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        raw.drain(..line_end + 2);
        if size == 0 {
            return Ok(body);
        }
        if body.len() + size > MAX_RESPONSE {
            return Err(invalid("chunked body too large".into()));
        }
        while raw.len() < size + 2 {
            if read_some(stream, &mut raw)? == 0 {
                return Err(invalid("connection closed inside a chunk".into()));
            }
        }
        body.extend_from_slice(&raw[..size]);
        raw.drain(..size + 2);
    }
}

/// One read appended to `buf`; 0 at end of stream. A TLS peer that closes without
/// close_notify counts as end of stream (the framing above decides if that was early).
fn read_some<R: Read>(stream: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.len() > MAX_RESPONSE {
        return Err(invalid(format!(
            "response larger than {MAX_RESPONSE} bytes"
        )));
    }
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk) {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        Err(e) => Err(e),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Plain HTTP over an already connected `stream` (opened wherever the caller needs, e.g.
/// inside a namespace) to `addr`: sends `request`, returns the response.
pub fn plain(stream: TcpStream, addr: SocketAddr, request: &Request<'_>) -> io::Result<Response> {
    let mut stream = stream;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    exchange(&mut stream, &addr.to_string(), request)
}

/// A TLS client that trusts only the certificates in one PEM file.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// Trusts exactly the certificates in `ca_pem` (e.g. the daemon's self-signed one).
    pub fn trusting(ca_pem: &Path) -> io::Result<TlsClient> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_pem)
            .map_err(|e| invalid(format!("reading {}: {e}", ca_pem.display())))?
        {
            let cert = cert.map_err(|e| invalid(format!("parsing {}: {e}", ca_pem.display())))?;
            roots
                .add(cert)
                .map_err(|e| invalid(format!("trusting {}: {e}", ca_pem.display())))?;
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid(format!("TLS versions: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
        })
    }

    /// Sends `request` over TLS on `stream`, verifying the server as `server_name`
    /// (a DNS name or an IP address literal).
    pub fn send(
        &self,
        stream: TcpStream,
        server_name: &str,
        request: &Request<'_>,
    ) -> io::Result<Response> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let name = match server_name.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(server_name.to_string())
                .map_err(|e| invalid(format!("server name {server_name:?}: {e}")))?,
        };
        let connection = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| invalid(format!("TLS client: {e}")))?;
        let mut tls = StreamOwned::new(connection, stream);
        exchange(&mut tls, server_name, request)
    }
}
