//! `http`: one `GET` over HTTP/1.1 (TLS for `https://`), up when the status is in the
//! expected set and, if asked, the first 64 KiB of the body contain a text.
//!
//! Redirects are not followed: a 301 is just a status, counted as up only if listed in
//! `expect_status` (following one would probe a different server than the one configured).
//! Each run opens a new connection and sends `Connection: close`.

use std::error::Error as _;
use std::io;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderValue, CONNECTION, HOST, LOCATION, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use siteward_config::{Host, HostPort, HttpProbe};
use tokio::io::{AsyncRead, AsyncWrite};

use super::tls_client;
use crate::net::ProbeEnv;
use crate::{Failure, Observation, ProbeResult, Reason};

/// How much of the body `body_contains` looks at (and the most we read of it).
const BODY_LIMIT: usize = 64 * 1024;
/// Bound on the response head (status line and headers) hyper buffers.
const HEAD_LIMIT: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
const USER_AGENT_VALUE: &str = concat!("siteward/", env!("CARGO_PKG_VERSION"));

pub async fn probe(p: &HttpProbe, env: &ProbeEnv<'_>) -> ProbeResult {
    let url = ParsedUrl::parse(&p.url)
        .map_err(|e| Failure::new(Reason::IoError, format!("URL {}: {e}", p.url)))?;
    let request = request(&url)?;
    let target = p.connect_to.clone().unwrap_or_else(|| HostPort {
        host: url.host.clone(),
        port: url.port,
    });
    let stream = env.connect_tcp(&target).await?;
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| target.to_string());
    let want_body = p.body_contains.as_deref().map(str::as_bytes);

    let (answer, tls) = if url.https {
        let name = tls_client::server_name(None, &url.host)?;
        let session = tls_client::handshake(stream, name, &p.trust).await?;
        let tls = Some((session.describe(), session.not_after()));
        let not_after = session.not_after();
        let answer = exchange(session.stream, request, want_body, &peer)
            .await
            .map_err(|mut f| {
                f.tls_not_after = not_after;
                f
            })?;
        (answer, tls)
    } else {
        (exchange(stream, request, want_body, &peer).await?, None)
    };
    let tls_not_after = tls.as_ref().and_then(|(_, not_after)| *not_after);
    let fail = |reason, detail: String| {
        let mut failure = Failure::new(reason, detail);
        failure.tls_not_after = tls_not_after;
        failure
    };

    let status = status_text(answer.status, answer.phrase.as_deref());
    if !p.expect_status.contains(&answer.status.as_u16()) {
        let location = answer
            .location
            .map(|l| format!(", Location: {l}"))
            .unwrap_or_default();
        return Err(fail(
            Reason::BadStatus,
            format!("{status} from {peer}{location}"),
        ));
    }
    let mut detail = format!("{status} from {peer}");
    if let (Some(needle), Some(body)) = (&p.body_contains, &answer.body) {
        let shown = shorten(needle, 40);
        if !body.found {
            return Err(fail(
                Reason::BadResponse,
                format!(
                    "{status} from {peer}, but the body ({} bytes read) does not contain \"{shown}\"",
                    body.read
                ),
            ));
        }
        detail.push_str(&format!(", body contains \"{shown}\""));
    }
    if let Some((tls_text, _)) = tls {
        detail.push_str(&format!(" ({tls_text})"));
    }
    Ok(Observation {
        detail,
        tls_not_after,
    })
}

/// "HTTP 503 Service Unavailable", with the server's own reason phrase when it sent one
/// that differs from the standard one.
fn status_text(status: StatusCode, phrase: Option<&str>) -> String {
    match phrase.or(status.canonical_reason()) {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(max_chars).collect();
        short.push('…');
        short
    }
}

fn request(url: &ParsedUrl) -> Result<Request<Empty<Bytes>>, Failure> {
    let bad = |e: &dyn std::fmt::Display| {
        Failure::new(
            Reason::IoError,
            format!("cannot build a request for {}: {e}", url.authority),
        )
    };
    let host = HeaderValue::from_str(&url.authority).map_err(|e| bad(&e))?;
    Request::get(url.path_and_query.as_str())
        .header(HOST, host)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| bad(&e))
}

/// The parts of the answer the verdict needs.
struct Answer {
    status: StatusCode,
    /// A non-standard reason phrase, as sent.
    phrase: Option<String>,
    location: Option<String>,
    /// Only when `body_contains` asked for it.
    body: Option<BodyScan>,
}

struct BodyScan {
    found: bool,
    /// Bytes looked at (at most [`BODY_LIMIT`]).
    read: usize,
}

/// Sends `request` on `io` and reads the answer (and at most [`BODY_LIMIT`] bytes of the
/// body when `needle` is given), driving hyper's connection in this same task so that a
/// timeout drops everything at once.
async fn exchange<S>(
    io: S,
    request: Request<Empty<Bytes>>,
    needle: Option<&[u8]>,
    peer: &str,
) -> Result<Answer, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(HEAD_LIMIT)
        .max_headers(MAX_HEADERS)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| hyper_failure(&e, peer))?;
    let work = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| hyper_failure(&e, peer))?;
        let status = response.status();
        let phrase = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|p| shorten(&String::from_utf8_lossy(p.as_bytes()), 60));
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(|l| shorten(l, 200));
        let body = match needle {
            None => None,
            Some(needle) => Some(scan_body(response.into_body(), needle, peer).await?),
        };
        Ok(Answer {
            status,
            phrase,
            location,
            body,
        })
    };
    let mut work = std::pin::pin!(work);
    let mut connection = std::pin::pin!(connection);
    let mut connection_done = false;
    loop {
        tokio::select! {
            biased;
            answer = &mut work => return answer,
            // A connection error also fails the pending request, which reports it; keep
            // polling `work` until it does.
            _ = &mut connection, if !connection_done => connection_done = true,
        }
    }
}

/// Reads body frames until `needle` shows up, the body ends, or [`BODY_LIMIT`] bytes were
/// looked at, never holding more than that.
async fn scan_body(
    mut body: hyper::body::Incoming,
    needle: &[u8],
    peer: &str,
) -> Result<BodyScan, Failure> {
    let mut seen = Vec::new();
    while seen.len() < BODY_LIMIT {
        let frame = match body.frame().await {
            None => break,
            Some(frame) => {
                frame.map_err(|e| hyper_failure(&e, peer).context("reading the body"))?
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let start = seen.len();
        let room = BODY_LIMIT - start;
        seen.extend_from_slice(&data[..data.len().min(room)]);
        // Only the new bytes, plus an overlap for a needle split between frames.
        let from = start.saturating_sub(needle.len().saturating_sub(1));
        if contains(&seen[from..], needle) {
            return Ok(BodyScan {
                found: true,
                read: seen.len(),
            });
        }
    }
    Ok(BodyScan {
        found: false,
        read: seen.len(),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// An I/O error under hyper's error keeps its meaning (reset, refused...); anything else
/// is the peer not speaking HTTP properly.
fn hyper_failure(e: &hyper::Error, peer: &str) -> Failure {
    let mut text = e.to_string();
    let mut source = e.source();
    let mut io_kind = None;
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        source = cause.source();
    }
    let reason = match io_kind {
        Some(kind) => Failure::from(io::Error::from(kind)).reason,
        None => Reason::BadResponse,
    };
    Failure::new(reason, format!("HTTP exchange with {peer}: {text}"))
}

/// The pieces of an `http(s)://host[:port][/path][?query]` URL the probe needs.
#[derive(Debug, PartialEq)]
struct ParsedUrl {
    https: bool,
    host: Host,
    port: u16,
    /// `host[:port]` as written: the Host header.
    authority: String,
    /// Never empty: `/` when the URL has no path.
    path_and_query: String,
}

impl ParsedUrl {
    fn parse(url: &str) -> Result<ParsedUrl, String> {
        let (https, rest) = if let Some(rest) = strip_prefix_ignore_case(url, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(url, "http://") {
            (false, rest)
        } else {
            return Err("must start with http:// or https://".into());
        };
        // The fragment is for the browser; it never goes on the wire.
        let rest = rest.split('#').next().unwrap_or_default();
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported".into());
        }
        let (host_text, port_text) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (inside, after) = bracketed.split_once(']').ok_or("unclosed [ in the host")?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or("junk after ]")?),
            };
            (inside, port)
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let host = match host_text.parse::<std::net::IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) if authority.starts_with('[') => {
                return Err(format!("\"{host_text}\" is not an IPv6 address"))
            }
            Err(_) if host_text.is_empty() => return Err("no host".into()),
            Err(_) => Host::Name(host_text.to_string()),
        };
        let port = match port_text {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("\"{p}\" is not a port"))?,
        };
        let path_and_query = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(ParsedUrl {
            https,
            host,
            port,
            authority: authority.to_string(),
            path_and_query,
        })
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use siteward_config::{Check, Placement, Probe, TlsTrust};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::tls_client::test_support::{pki, serve};
    use super::*;
    use crate::net::Resolver;
    use crate::probes::testing::closed_port;
    use crate::Outcome;

    fn http_probe(url: &str) -> HttpProbe {
        HttpProbe {
            url: url.to_string(),
            connect_to: None,
            expect_status: (200..300).collect(),
            body_contains: None,
            trust: TlsTrust::SystemRoots,
        }
    }

    async fn run(probe: HttpProbe, timeout_ms: u64) -> Outcome {
        let check = Check {
            name: "http-test".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_millis(timeout_ms),
            rise: 1,
            fall: 1,
            placement: Placement::default(),
            probe: Probe::Http(probe),
        };
        let resolver = Resolver::from_system().unwrap();
        crate::probes::run(&check, &resolver).await
    }

    fn response(status_line: &str, extra_headers: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status_line}\r\nContent-Length: {}\r\n{extra_headers}\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn ok_status_is_up_and_request_is_well_formed() {
        let (addr, mut heads) = serve(None, response("200 OK", "", "pong")).await;
        let outcome = run(http_probe(&format!("http://{addr}/ping?x=1")), 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert!(
            outcome.detail.starts_with("HTTP 200 OK"),
            "{}",
            outcome.detail
        );
        assert_eq!(outcome.tls_not_after, None);
        let head = heads.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /ping?x=1 http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("host: {addr}\r\n")), "{head}");
        assert!(head.contains("user-agent: siteward/"), "{head}");
        assert!(head.contains("connection: close\r\n"), "{head}");
    }

    #[tokio::test]
    async fn unexpected_status_is_bad_status() {
        let (addr, _) = serve(None, response("503 Service Unavailable", "", "")).await;
        let outcome = run(http_probe(&format!("http://{addr}/")), 2000).await;
        assert_eq!(outcome.reason, Reason::BadStatus, "{}", outcome.detail);
        assert!(
            outcome.detail.starts_with("HTTP 503 Service Unavailable"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn redirect_is_not_followed() {
        let moved = response("301 Moved Permanently", "Location: /elsewhere\r\n", "");
        let (addr, _) = serve(None, moved).await;
        let outcome = run(http_probe(&format!("http://{addr}/")), 2000).await;
        assert_eq!(outcome.reason, Reason::BadStatus, "{}", outcome.detail);
        assert!(
            outcome.detail.contains("Location: /elsewhere"),
            "{}",
            outcome.detail
        );
        let mut p = http_probe(&format!("http://{addr}/"));
        p.expect_status = vec![301];
        let outcome = run(p, 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
    }

    #[tokio::test]
    async fn body_match_and_mismatch() {
        let (addr, _) = serve(None, response("200 OK", "", "status: green")).await;
        let mut p = http_probe(&format!("http://{addr}/"));
        p.body_contains = Some("green".into());
        let outcome = run(p.clone(), 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert!(
            outcome.detail.contains("body contains"),
            "{}",
            outcome.detail
        );
        p.body_contains = Some("red".into());
        let outcome = run(p, 2000).await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{}", outcome.detail);
        assert!(outcome.detail.contains("\"red\""), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn https_with_ca_file_reports_expiry_also_on_bad_status() {
        let pki = pki(&["localhost"], (2080, 6, 30));
        let (addr, mut heads) = serve(Some(pki.server.clone()), response("200 OK", "", "")).await;
        let mut p = http_probe(&format!("https://localhost:{}/", addr.port()));
        // SNI and verification by the URL's host; the socket goes to the test server.
        p.connect_to = Some(HostPort {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        });
        p.trust = TlsTrust::CaFile(pki.ca_file.path().to_path_buf());
        let outcome = run(p.clone(), 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert_eq!(outcome.tls_not_after, Some(pki.not_after));
        assert!(outcome.detail.contains("TLS 1.3"), "{}", outcome.detail);
        let head = heads.recv().await.unwrap().to_ascii_lowercase();
        assert!(
            head.contains(&format!("host: localhost:{}\r\n", addr.port())),
            "{head}"
        );

        let (addr, _) = serve(Some(pki.server.clone()), response("500 Oops", "", "")).await;
        p.connect_to = Some(HostPort {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        });
        let outcome = run(p, 2000).await;
        assert_eq!(outcome.reason, Reason::BadStatus, "{}", outcome.detail);
        assert!(
            outcome.detail.starts_with("HTTP 500 Oops"),
            "{}",
            outcome.detail
        );
        assert_eq!(outcome.tls_not_after, Some(pki.not_after));
    }

    #[tokio::test]
    async fn https_with_untrusted_certificate_is_tls_error() {
        let pki = pki(&["127.0.0.1"], (2080, 6, 30));
        let (addr, _) = serve(Some(pki.server.clone()), response("200 OK", "", "")).await;
        let outcome = run(http_probe(&format!("https://{addr}/")), 2000).await;
        assert_eq!(outcome.reason, Reason::TlsError, "{}", outcome.detail);
        assert_eq!(outcome.tls_not_after, Some(pki.not_after));
    }

    #[tokio::test]
    async fn connect_to_overrides_the_address_not_the_host_header() {
        let (addr, mut heads) = serve(None, response("204 No Content", "", "")).await;
        let mut p = http_probe("http://app.example.invalid:8080/health");
        p.connect_to = Some(HostPort {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        });
        let outcome = run(p, 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        let head = heads.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /health http/1.1\r\n"), "{head}");
        assert!(
            head.contains("host: app.example.invalid:8080\r\n"),
            "{head}"
        );
    }

    /// A server streaming an endless chunked body: the probe must stop at 64 KiB and
    /// answer, rather than read (and hold) everything until the timeout.
    #[tokio::test]
    async fn endless_body_is_read_only_up_to_the_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
            while stream.write_all(chunk.as_bytes()).await.is_ok() {}
        });
        let mut p = http_probe(&format!("http://{addr}/"));
        p.body_contains = Some("never-there".into());
        let outcome = run(p, 3000).await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{}", outcome.detail);
        assert!(
            outcome.detail.contains(&format!("{BODY_LIMIT} bytes read")),
            "{}",
            outcome.detail
        );
        assert!(outcome.duration < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn garbage_answer_is_bad_response() {
        let (addr, _) = serve(None, b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()).await;
        let outcome = run(http_probe(&format!("http://{addr}/")), 2000).await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{}", outcome.detail);
    }

    #[tokio::test]
    async fn oversized_head_is_bad_response() {
        let huge = format!("X-Filler: {}\r\n", "y".repeat(2 * HEAD_LIMIT));
        let (addr, _) = serve(None, response("200 OK", &huge, "")).await;
        let outcome = run(http_probe(&format!("http://{addr}/")), 2000).await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{}", outcome.detail);
    }

    #[tokio::test]
    async fn closed_before_answer_is_bad_response() {
        let (addr, _) = serve(None, Vec::new()).await;
        let outcome = run(http_probe(&format!("http://{addr}/")), 2000).await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{}", outcome.detail);
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let port = closed_port().await;
        let outcome = run(http_probe(&format!("http://127.0.0.1:{port}/")), 2000).await;
        assert_eq!(outcome.reason, Reason::Refused, "{}", outcome.detail);
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let outcome = run(http_probe(&format!("http://{addr}/")), 300).await;
        assert_eq!(outcome.reason, Reason::Timeout, "{}", outcome.detail);
        drop(listener);
    }

    #[test]
    fn url_parsing() {
        let u = ParsedUrl::parse("http://example.com").unwrap();
        assert_eq!(
            u,
            ParsedUrl {
                https: false,
                host: Host::Name("example.com".into()),
                port: 80,
                authority: "example.com".into(),
                path_and_query: "/".into(),
            }
        );
        let u = ParsedUrl::parse("https://[2001:db8::1]:8443/a/b?c=d#frag").unwrap();
        assert!(u.https);
        assert_eq!(u.host, Host::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, 8443);
        assert_eq!(u.authority, "[2001:db8::1]:8443");
        assert_eq!(u.path_and_query, "/a/b?c=d");
        let u = ParsedUrl::parse("HTTPS://[::1]?q").unwrap();
        assert_eq!((u.port, u.path_and_query.as_str()), (443, "/?q"));
        let u = ParsedUrl::parse("http://10.0.0.1:8000/sap/public/icman/ping").unwrap();
        assert_eq!(u.host, Host::Ip("10.0.0.1".parse().unwrap()));
        assert_eq!(u.port, 8000);
        for bad in [
            "ftp://x",
            "http://",
            "http://[::1",
            "http://[nothost]/",
            "http://[::1]x/",
            "http://h:0/",
            "http://h:99999/",
            "http://user:pw@h/",
            "http://2001:db8::1/",
        ] {
            assert!(ParsedUrl::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn needle_search() {
        assert!(contains(b"abcdef", b"cde"));
        assert!(!contains(b"abc", b"abcd"));
        assert!(!contains(b"", b"a"));
    }
}
