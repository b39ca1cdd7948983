//! `siteward simulate sip`: a SIP peer that answers OPTIONS, as a PBX's SIP stack does for
//! keep-alive pings, over UDP and TCP on the same port (RFC 3261 18: a server listens on
//! both).
//!
//! From RFC 3261: a request needs Via, From, To, Call-ID and CSeq (8.1.1), and the CSeq
//! method must be the request's (a `400 Bad Request` otherwise, 8.2); the response copies
//! Via, From, Call-ID and CSeq and adds a To tag (8.2.6.2); OPTIONS is answered like an
//! INVITE would be, with `Allow`, `Accept`, `Accept-Encoding` and `Accept-Language`
//! (11.2); a method the peer does not support gets `405 Method Not Allowed` with `Allow`
//! (8.2.1); ACK never gets a response (17.2); responses are never answered. Over UDP the
//! top Via gets `received=` when its host is not the datagram's source (18.2.1) and
//! `rport=` when the client asked for it (RFC 3581), and the response goes back to the
//! source address, as RFC 3581 servers do.
//!
//! Failure modes: `--status` answers OPTIONS with another final status (404, 503...);
//! `--mode silent` reads requests and never answers.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{accept_loop, read_some};
use crate::protocol::sip::{decode_datagram, decode_stream, header_param, Message, StartLine};

/// The methods this peer answers (besides ACK, which is never answered).
const ALLOW: &str = "OPTIONS";
/// The headers every request must carry (RFC 3261 8.1.1).
const MANDATORY: [&str; 5] = ["Via", "From", "To", "Call-ID", "CSeq"];
/// The `Server` header of every response.
const SERVER: &str = "siteward-simulator";

/// How the simulator treats requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Answer OPTIONS with --status, other methods with 405.
    Ok,
    /// Read requests and never answer (a firewall dropping replies, a hung PBX).
    Silent,
}

/// Options of `siteward simulate sip`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How to treat requests.
    #[arg(long, value_enum, default_value_t = Mode::Ok)]
    pub mode: Mode,
    /// Final status answered to OPTIONS (200-699), e.g. 404 or 503 to see how a check
    /// reports a PBX that answers but refuses.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(200..=699))]
    pub status: u16,
    /// Close TCP connections that stay idle this many seconds.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout_secs: u64,
}

/// Serves SIP on `udp` and `tcp` (usually the same port) until `shutdown` is cancelled.
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    options: Options,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let datagrams = serve_udp(udp, options.clone(), shutdown.clone());
    let streams = accept_loop(tcp, shutdown, "sip", move |stream, peer| {
        let options = options.clone();
        async move { handle_tcp(stream, peer, &options).await }
    });
    let (udp_result, tcp_result) = tokio::join!(datagrams, streams);
    udp_result.and(tcp_result)
}

async fn serve_udp(
    socket: UdpSocket,
    options: Options,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let local = socket.local_addr()?;
    info!(%local, "sip simulator listening on UDP");
    // One byte more than the largest message, so an oversized datagram is seen as such.
    let mut buf = vec![0u8; crate::protocol::sip::MAX_MESSAGE + 1];
    loop {
        let (n, source) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            received = socket.recv_from(&mut buf) => match received {
                Ok(pair) => pair,
                Err(e) => {
                    // An ICMP error for an earlier answer surfaces here: not fatal.
                    debug!("sip: receiving a datagram: {e}");
                    continue;
                }
            },
        };
        let request = match decode_datagram(buf.get(..n).unwrap_or_default()) {
            Ok(message) => message,
            Err(e) => {
                info!(%source, "sip: ignored a datagram that is not SIP: {e}");
                continue;
            }
        };
        let Some(response) = answer(&request, &options, Some(source)) else {
            continue;
        };
        match response.encode() {
            Ok(wire) => {
                if let Err(e) = socket.send_to(&wire, source).await {
                    warn!(%source, "sip: sending a response: {e}");
                }
            }
            Err(e) => warn!(%source, "sip: encoding a response: {e}"),
        }
    }
}

async fn handle_tcp(mut stream: TcpStream, peer: SocketAddr, options: &Options) -> io::Result<()> {
    let idle = Duration::from_secs(options.idle_timeout_secs);
    let mut buf = Vec::new();
    loop {
        match decode_stream(&buf) {
            Ok(Some((request, used))) => {
                buf.drain(..used);
                if let Some(response) = answer(&request, options, None) {
                    let wire = response
                        .encode()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    stream.write_all(&wire).await?;
                }
                continue;
            }
            Ok(None) => {}
            // A stream that is not SIP cannot be resynchronized: close it.
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        if !read_some(&mut stream, &mut buf, idle).await? {
            info!(%peer, "sip: connection idle or closed");
            return Ok(());
        }
    }
}

/// The response to `request`, or `None` when none is due (ACK, a response, silent mode,
/// a request without a Via to send the answer along). `source` is the datagram's sender
/// over UDP (stamped into the top Via), `None` on a stream.
pub fn answer(request: &Message, options: &Options, source: Option<SocketAddr>) -> Option<Message> {
    let StartLine::Request { method, .. } = &request.start else {
        return None;
    };
    if options.mode == Mode::Silent || method == "ACK" {
        info!(method = %method, "sip: request not answered");
        return None;
    }
    // Without a Via there is no way to send an answer along (RFC 3261 8.2.6.2).
    request.header("Via")?;
    let response = if let Some(missing) = MANDATORY.iter().find(|h| request.header(h).is_none()) {
        with_reason(
            request,
            400,
            &format!("Bad Request (missing {missing})"),
            source,
        )
    } else if request
        .cseq()
        .is_none_or(|(_, cseq_method)| cseq_method != method)
    {
        with_reason(
            request,
            400,
            "Bad Request (CSeq does not match the method)",
            source,
        )
    } else if method == "OPTIONS" {
        let mut response = with_reason(
            request,
            options.status,
            reason_phrase(options.status),
            source,
        );
        for (name, value) in [
            ("Allow", ALLOW),
            ("Accept", "application/sdp"),
            ("Accept-Encoding", "identity"),
            ("Accept-Language", "en"),
        ] {
            response.headers.push((name.to_string(), value.to_string()));
        }
        response
    } else {
        let mut response = with_reason(request, 405, "Method Not Allowed", source);
        response
            .headers
            .push(("Allow".to_string(), ALLOW.to_string()));
        response
    };
    info!(method = %method, status = %response.start, "sip: answered");
    Some(response)
}

/// A response with the headers RFC 3261 8.2.6.2 copies, the top Via stamped for `source`.
fn with_reason(request: &Message, code: u16, reason: &str, source: Option<SocketAddr>) -> Message {
    let to_tag = format!("{:08x}", rand::random::<u32>());
    let mut response = request.response_to(code, reason, &to_tag);
    if let Some(source) = source {
        let top = response
            .headers
            .iter_mut()
            .find(|(name, _)| name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v"));
        if let Some((_, value)) = top {
            *value = stamp_via(value, source);
        }
    }
    response
        .headers
        .push(("Server".to_string(), SERVER.to_string()));
    response
}

/// The Via header value with its first entry given `received=` when its host is not the
/// source's address (RFC 3261 18.2.1) and `rport=<port>` when it asks for one (RFC 3581).
fn stamp_via(value: &str, source: SocketAddr) -> String {
    let (first, rest) = match value.split_once(',') {
        Some((first, rest)) => (first.trim(), Some(rest)),
        None => (value.trim(), None),
    };
    let mut parts: Vec<String> = first.split(';').map(|p| p.trim().to_string()).collect();
    let sent_by_host = parts
        .first()
        .and_then(|protocol_and_sent_by| protocol_and_sent_by.split_whitespace().nth(1))
        .map(host_of)
        .unwrap_or_default();
    let source_ip = source.ip().to_canonical().to_string();
    let wants_rport = header_param(first, "rport") == Some("");
    let is_param = |p: &str, name: &str| {
        p.split('=')
            .next()
            .is_some_and(|k| k.trim().eq_ignore_ascii_case(name))
    };
    if wants_rport {
        for part in parts.iter_mut().skip(1) {
            if is_param(part, "rport") {
                *part = format!("rport={}", source.port());
            }
        }
    }
    // RFC 3581 4: with rport, received is added even when the host matches.
    if (sent_by_host != source_ip || wants_rport)
        && !parts.iter().skip(1).any(|p| is_param(p, "received"))
    {
        parts.push(format!("received={source_ip}"));
    }
    let stamped = parts.join(";");
    match rest {
        Some(rest) => format!("{stamped},{rest}"),
        None => stamped,
    }
}

/// The host of a Via sent-by (`host`, `host:port`, `[v6]:port`), without brackets.
fn host_of(sent_by: &str) -> String {
    if let Some(v6) = sent_by.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default().to_string();
    }
    match sent_by.rsplit_once(':') {
        Some((host, _)) => host.to_string(),
        None => sent_by.to_string(),
    }
}

/// RFC 3261 21's reason phrases for the statuses one would simulate.
fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        202 => "Accepted",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        483 => "Too Many Hops",
        486 => "Busy Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Simulated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Resolver;
    use crate::protocol::sip::{OptionsRequest, ViaTransport};
    use crate::Reason;
    use siteward_config::{Check, Host, HostPort, Placement, Probe, SipOptionsProbe, Transport};
    use tokio::io::AsyncReadExt;

    fn options(mode: Mode, status: u16) -> Options {
        Options {
            mode,
            status,
            idle_timeout_secs: 5,
        }
    }

    async fn start(mode: Mode, status: u16) -> (SocketAddr, CancellationToken) {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        let token = CancellationToken::new();
        tokio::spawn(serve(udp, tcp, options(mode, status), token.clone()));
        (addr, token)
    }

    fn check(addr: SocketAddr, transport: Transport) -> Check {
        Check {
            name: "pbx-sip".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_millis(1500),
            rise: 1,
            fall: 1,
            placement: Placement::default(),
            probe: Probe::SipOptions(SipOptionsProbe {
                target: HostPort {
                    host: Host::Ip(addr.ip()),
                    port: addr.port(),
                },
                transport,
                request_uri: None,
                from_user: "siteward".into(),
                accept_any_status: false,
            }),
        }
    }

    fn request(method: &str) -> Message {
        let mut message = OptionsRequest::new(
            "sip:pbx.example".into(),
            ViaTransport::Udp,
            "192.0.2.7:5062".parse().unwrap(),
            "siteward".into(),
        )
        .to_message();
        message.start = StartLine::Request {
            method: method.into(),
            uri: "sip:pbx.example".into(),
        };
        for (name, value) in message.headers.iter_mut() {
            if name == "CSeq" {
                *value = format!("1 {method}");
            }
        }
        message
    }

    #[tokio::test]
    async fn the_sip_options_check_is_up_over_udp_and_tcp() {
        let (addr, token) = start(Mode::Ok, 200).await;
        let resolver = Resolver::from_system().unwrap();
        for transport in [Transport::Udp, Transport::Tcp] {
            let outcome = crate::probes::run(&check(addr, transport), &resolver).await;
            assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
            assert!(outcome.detail.contains("200 OK"), "{}", outcome.detail);
        }
        token.cancel();
    }

    #[tokio::test]
    async fn another_status_is_reported_and_silence_times_out() {
        let resolver = Resolver::from_system().unwrap();
        let (addr, token) = start(Mode::Ok, 503).await;
        let outcome = crate::probes::run(&check(addr, Transport::Udp), &resolver).await;
        assert_eq!(outcome.reason, Reason::BadStatus, "{}", outcome.detail);
        assert!(
            outcome.detail.contains("503 Service Unavailable"),
            "{}",
            outcome.detail
        );
        token.cancel();

        let (addr, token) = start(Mode::Silent, 200).await;
        let outcome = crate::probes::run(&check(addr, Transport::Udp), &resolver).await;
        assert_eq!(outcome.reason, Reason::Timeout, "{}", outcome.detail);
        token.cancel();
    }

    #[test]
    fn options_gets_the_rfc_3261_headers_and_a_to_tag() {
        let request = request("OPTIONS");
        let response = answer(&request, &options(Mode::Ok, 200), None).unwrap();
        assert_eq!(response.status(), Some(200));
        assert_eq!(response.header("Allow"), Some("OPTIONS"));
        assert_eq!(response.header("Accept"), Some("application/sdp"));
        assert_eq!(response.header("Call-ID"), request.header("Call-ID"));
        assert_eq!(response.header("CSeq"), Some("1 OPTIONS"));
        let to = response.header("To").unwrap();
        assert!(
            header_param(to, "tag").is_some_and(|t| !t.is_empty()),
            "{to}"
        );
        // The request's Via comes back unchanged on a stream.
        assert_eq!(response.header("Via"), request.header("Via"));
    }

    #[test]
    fn other_methods_get_405_ack_and_responses_nothing() {
        let response = answer(&request("INVITE"), &options(Mode::Ok, 200), None).unwrap();
        assert_eq!(response.status(), Some(405));
        assert_eq!(response.header("Allow"), Some("OPTIONS"));
        assert!(answer(&request("ACK"), &options(Mode::Ok, 200), None).is_none());
        let a_response = request("OPTIONS").response_to(200, "OK", "x");
        assert!(answer(&a_response, &options(Mode::Ok, 200), None).is_none());
        assert!(answer(&request("OPTIONS"), &options(Mode::Silent, 200), None).is_none());
    }

    #[test]
    fn malformed_requests_get_400_or_nothing_without_a_via() {
        let mut no_call_id = request("OPTIONS");
        no_call_id.headers.retain(|(n, _)| n != "Call-ID");
        let response = answer(&no_call_id, &options(Mode::Ok, 200), None).unwrap();
        assert_eq!(response.status(), Some(400));
        assert!(
            response.start.to_string().contains("Call-ID"),
            "{}",
            response.start
        );

        let mut wrong_cseq = request("OPTIONS");
        for (name, value) in wrong_cseq.headers.iter_mut() {
            if name == "CSeq" {
                *value = "1 INVITE".into();
            }
        }
        let response = answer(&wrong_cseq, &options(Mode::Ok, 200), None).unwrap();
        assert_eq!(response.status(), Some(400));

        let mut no_via = request("OPTIONS");
        no_via.headers.retain(|(n, _)| n != "Via");
        assert!(answer(&no_via, &options(Mode::Ok, 200), None).is_none());
    }

    #[test]
    fn the_top_via_is_stamped_with_received_and_rport() {
        let source: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        assert_eq!(
            stamp_via("SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKa;rport", source),
            "SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKa;rport=40000;received=203.0.113.9"
        );
        // Same host, no rport: unchanged. Only the first entry is touched.
        assert_eq!(
            stamp_via(
                "SIP/2.0/UDP 203.0.113.9:5062;branch=z9hG4bKb, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKc",
                source
            ),
            "SIP/2.0/UDP 203.0.113.9:5062;branch=z9hG4bKb, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKc"
        );
        assert_eq!(
            stamp_via("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKd", source),
            "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKd;received=203.0.113.9"
        );
    }

    #[tokio::test]
    async fn a_stream_that_is_not_sip_is_closed() {
        let (addr, token) = start(Mode::Ok, 200).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"\x16\x03\x01 not sip at all\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
            .await
            .expect("the simulator closes the connection");
        assert!(read.is_err() || rest.is_empty(), "{rest:?}");
        token.cancel();
    }
}
