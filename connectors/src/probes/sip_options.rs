//! `sip-options`: an RFC 3261 OPTIONS request over UDP or TCP.
//!
//! Any final response proves the SIP stack is reachable; 2xx counts as up, and any other
//! final status too when `accept_any_status` is set (some PBXs answer OPTIONS with 404),
//! otherwise it is `bad_status`. Provisional 1xx responses only extend the wait.
//! Responses are matched to the request by top Via branch, Call-ID and CSeq.
//!
//! Over UDP the request is retransmitted on the non-INVITE client schedule (RFC 3261
//! 17.1.2.2, timer E, the non-INVITE twin of timer A): after T1 = 500 ms, doubling, at
//! most T2 = 4 s apart, and every T2 once a provisional response came; until the check's
//! deadline. ICMP port unreachable (ConnectionRefused on the connected socket) is
//! `refused`. Datagrams from the target that are not SIP are ignored while waiting; if
//! nothing else came by the deadline, the result is `bad_response` rather than `timeout`.

use std::io;
use std::net::SocketAddr;

use siteward_config::{Host, HostPort, SipOptionsProbe, Transport};
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;
use tokio::time::{sleep_until, timeout_at, Duration, Instant};

use crate::net::{read_more, ProbeEnv};
use crate::protocol::sip::{
    decode_datagram, decode_stream, Message, OptionsRequest, StartLine, ViaTransport, MAX_MESSAGE,
};
use crate::{Failure, Observation, ProbeResult, Reason};

/// RFC 3261 T1: the round-trip estimate, first retransmission interval.
const T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2: the longest retransmission interval for non-INVITE requests.
const T2: Duration = Duration::from_secs(4);

/// Bytes of unrelated messages read on a TCP connection while waiting for our response.
const MAX_SKIPPED_BYTES: usize = 1024 * 1024;

pub async fn probe(p: &SipOptionsProbe, env: &ProbeEnv<'_>) -> ProbeResult {
    let uri = p
        .request_uri
        .clone()
        .unwrap_or_else(|| format!("sip:{}", p.target));
    match p.transport {
        Transport::Udp => probe_udp(p, uri, env).await,
        Transport::Tcp => probe_tcp(p, uri, env).await,
    }
}

/// What the wait for a final response saw, for the detail text.
#[derive(Default)]
struct Waiting {
    provisional: Option<String>,
    not_sip: usize,
    first_not_sip: Option<String>,
}

impl Waiting {
    fn provisional_note(&self) -> String {
        self.provisional
            .as_ref()
            .map(|p| format!(" (only a provisional {p})"))
            .unwrap_or_default()
    }
}

/// Tries the target's addresses in turn while they refuse (e.g. `localhost` resolving to
/// `::1` first, with the PBX listening on 127.0.0.1 only), as a TCP connect would.
async fn probe_udp(p: &SipOptionsProbe, uri: String, env: &ProbeEnv<'_>) -> ProbeResult {
    let ips = env.resolve(&p.target.host).await?;
    let mut refused = None;
    for ip in ips {
        let target = HostPort {
            host: Host::Ip(ip),
            port: p.target.port,
        };
        match options_over_udp(p, &target, uri.clone(), env).await {
            Err(f) if f.reason == Reason::Refused => refused = Some(f),
            result => return result,
        }
    }
    Err(refused.unwrap_or_else(|| {
        Failure::new(
            Reason::ResolveFailed,
            format!("{} has no addresses", p.target.host),
        )
    }))
}

/// One UDP client transaction with one address.
async fn options_over_udp(
    p: &SipOptionsProbe,
    target: &HostPort,
    uri: String,
    env: &ProbeEnv<'_>,
) -> ProbeResult {
    let (socket, peer) = env.connect_udp(target).await?;
    let local = socket
        .local_addr()
        .map_err(|e| Failure::from(e).context("reading the local UDP address"))?;
    let request = OptionsRequest::new(uri, ViaTransport::Udp, local, p.from_user.clone());
    let wire = encode(&request)?;

    let started = Instant::now();
    let mut sent = 0u32;
    let mut interval = T1;
    let mut next_send = started;
    let mut seen = Waiting::default();
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        let now = Instant::now();
        if now >= env.deadline {
            return Err(udp_deadline(&seen, peer, sent, started));
        }
        if now >= next_send {
            send(&socket, &wire, peer).await?;
            sent += 1;
            next_send = now + interval;
            interval = (interval * 2).min(T2);
        }
        tokio::select! {
            received = socket.recv(&mut buf) => {
                let n = received.map_err(|e| udp_error(e, peer))?;
                let datagram = buf.get(..n).unwrap_or_default();
                let response = match decode_datagram(datagram) {
                    Ok(message) => message,
                    Err(e) => {
                        seen.not_sip += 1;
                        seen.first_not_sip.get_or_insert_with(|| e.to_string());
                        continue;
                    }
                };
                if !request.is_answered_by(&response) {
                    continue;
                }
                if let Some(line) = provisional(&response) {
                    // Proceeding: the server has the request; retransmit at T2 only.
                    seen.provisional = Some(line);
                    interval = T2;
                    continue;
                }
                return conclude(p, &response, peer, sent.saturating_sub(1));
            }
            _ = sleep_until(next_send.min(env.deadline)) => {}
        }
    }
}

async fn send(socket: &UdpSocket, wire: &[u8], peer: SocketAddr) -> Result<(), Failure> {
    socket
        .send(wire)
        .await
        .map(|_| ())
        .map_err(|e| udp_error(e, peer))
}

/// An ICMP error from an earlier datagram surfaces on the next call of a connected socket.
fn udp_error(e: io::Error, peer: SocketAddr) -> Failure {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        Failure::new(
            Reason::Refused,
            format!("{peer} answered OPTIONS with ICMP port unreachable"),
        )
    } else {
        Failure::from(e).context(&format!("OPTIONS over UDP to {peer}"))
    }
}

fn udp_deadline(seen: &Waiting, peer: SocketAddr, sent: u32, started: Instant) -> Failure {
    let waited = started.elapsed().as_millis();
    if seen.provisional.is_none() && seen.not_sip > 0 {
        return Failure::new(
            Reason::BadResponse,
            format!(
                "{peer} sent {} datagram(s) that are not SIP, and no response to OPTIONS: {}",
                seen.not_sip,
                seen.first_not_sip.as_deref().unwrap_or_default()
            ),
        );
    }
    Failure::new(
        Reason::Timeout,
        format!(
            "no final response to OPTIONS from {peer} in {waited} ms ({sent} sent){}",
            seen.provisional_note()
        ),
    )
}

async fn probe_tcp(p: &SipOptionsProbe, uri: String, env: &ProbeEnv<'_>) -> ProbeResult {
    let mut stream = env.connect_tcp(&p.target).await?;
    let local = stream
        .local_addr()
        .map_err(|e| Failure::from(e).context("reading the local TCP address"))?;
    let peer = stream
        .peer_addr()
        .map_err(|e| Failure::from(e).context("reading the peer's TCP address"))?;
    let request = OptionsRequest::new(uri, ViaTransport::Tcp, local, p.from_user.clone());
    let wire = encode(&request)?;
    let mut seen = Waiting::default();
    let exchange = async {
        stream
            .write_all(&wire)
            .await
            .map_err(|e| Failure::from(e).context(&format!("sending OPTIONS to {peer}")))?;
        let mut buf = Vec::new();
        let mut skipped = 0usize;
        loop {
            match decode_stream(&buf) {
                Ok(Some((message, used))) => {
                    buf.drain(..used);
                    if !request.is_answered_by(&message) {
                        skipped = skipped.saturating_add(used);
                        if skipped > MAX_SKIPPED_BYTES {
                            return Err(Failure::new(
                                Reason::BadResponse,
                                format!("{peer} sent over {MAX_SKIPPED_BYTES} bytes of other SIP messages"),
                            ));
                        }
                        continue;
                    }
                    match provisional(&message) {
                        Some(line) => seen.provisional = Some(line),
                        None => return Ok(message),
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Failure::new(
                        Reason::BadResponse,
                        format!("answer to OPTIONS from {peer}: {e}"),
                    ))
                }
            }
            read_more(&mut stream, &mut buf, MAX_MESSAGE + 1)
                .await
                .map_err(|f| {
                    f.context(&format!("waiting for the answer to OPTIONS from {peer}"))
                })?;
        }
    };
    let response = match timeout_at(env.deadline, exchange).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(Failure::new(
                Reason::Timeout,
                format!(
                    "no final response to OPTIONS from {peer}{}",
                    seen.provisional_note()
                ),
            ))
        }
    };
    conclude(p, &response, peer, 0)
}

fn encode(request: &OptionsRequest) -> Result<Vec<u8>, Failure> {
    request.encode().map_err(|e| {
        Failure::new(
            Reason::IoError,
            format!("cannot build the OPTIONS request: {e}"),
        )
    })
}

/// `Some("100 Trying")` for a 1xx response.
fn provisional(response: &Message) -> Option<String> {
    response
        .status()
        .filter(|code| (100..200).contains(code))
        .map(|_| response.start.to_string())
}

/// Up or down from a final response, with the status, the peer's software and the
/// number of retransmissions in the detail.
fn conclude(
    p: &SipOptionsProbe,
    response: &Message,
    peer: SocketAddr,
    retransmissions: u32,
) -> ProbeResult {
    let (code, reason) = match &response.start {
        StartLine::Response { code, reason } => (*code, reason.as_str()),
        StartLine::Request { .. } => (0, ""),
    };
    let mut detail = format!("{peer} answered OPTIONS with {code} {reason}");
    let software = response
        .header("Server")
        .map(|s| ("Server", s))
        .or_else(|| response.header("User-Agent").map(|s| ("User-Agent", s)));
    if let Some((header, value)) = software {
        let value: String = value.chars().take(100).collect();
        detail.push_str(&format!(" ({header}: {value})"));
    }
    match retransmissions {
        0 => {}
        1 => detail.push_str(", after 1 retransmission"),
        n => detail.push_str(&format!(", after {n} retransmissions")),
    }
    if (200..300).contains(&code) || p.accept_any_status {
        Ok(Observation::new(detail))
    } else {
        Err(Failure::new(Reason::BadStatus, detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Resolver;
    use crate::probes::testing::TestEnv;
    use siteward_config::{Check, Placement, Probe};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// What the fake SIP server does with each request it receives.
    #[derive(Clone, Default)]
    struct Script {
        /// Requests received and ignored before answering (UDP retransmission).
        drop_first: usize,
        /// Responses sent to each answered request, in order.
        answers: Vec<(u16, &'static str)>,
        /// Send a response with a foreign branch first (over UDP also a non-SIP datagram).
        strays_first: bool,
        /// Answer with this instead of SIP.
        garbage: Option<&'static [u8]>,
    }

    /// What the fake server saw.
    #[derive(Default)]
    struct Seen {
        requests: AtomicUsize,
        /// Via sent-by values that did not match the request's real source address.
        wrong_via: Mutex<Vec<String>>,
        uris: Mutex<Vec<String>>,
    }

    impl Seen {
        fn record(&self, request: &Message, source: SocketAddr) {
            if let StartLine::Request { uri, .. } = &request.start {
                self.uris.lock().unwrap().push(uri.clone());
            }
            let via = request.header("Via").unwrap_or_default();
            let sent_by = via
                .split(';')
                .next()
                .and_then(|v| v.split_whitespace().nth(1))
                .unwrap_or_default();
            if sent_by != source.to_string() || !via.contains(";rport") {
                self.wrong_via
                    .lock()
                    .unwrap()
                    .push(format!("{via} from {source}"));
            }
        }
    }

    fn answers(script: &Script, request: &Message, udp: bool) -> Vec<Vec<u8>> {
        if let Some(garbage) = script.garbage {
            return vec![garbage.to_vec()];
        }
        let mut out = Vec::new();
        if script.strays_first {
            let mut stray = request.response_to(200, "OK", "stray");
            for (name, value) in stray.headers.iter_mut() {
                if name == "Via" {
                    *value = value.replace("z9hG4bK", "z9hG4bKother");
                }
            }
            out.push(stray.encode().unwrap());
            if udp {
                out.push(b"\x00\x01 not sip".to_vec());
            }
        }
        for (code, reason) in &script.answers {
            let mut response = request.response_to(*code, reason, "fake");
            response
                .headers
                .push(("Server".into(), "FakePBX 1.0".into()));
            out.push(response.encode().unwrap());
        }
        out
    }

    async fn udp_server(script: Script) -> (u16, Arc<Seen>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let seen2 = seen.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, source)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let count = seen2.requests.fetch_add(1, Ordering::SeqCst) + 1;
                let Ok(request) = decode_datagram(&buf[..n]) else {
                    continue;
                };
                seen2.record(&request, source);
                if count <= script.drop_first {
                    continue;
                }
                for datagram in answers(&script, &request, true) {
                    socket.send_to(&datagram, source).await.unwrap();
                }
            }
        });
        (port, seen)
    }

    async fn tcp_server(script: Script) -> (u16, Arc<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let seen2 = seen.clone();
        tokio::spawn(async move {
            let (mut conn, source) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 2048];
            loop {
                while let Ok(Some((request, used))) = decode_stream(&buf) {
                    buf.drain(..used);
                    seen2.requests.fetch_add(1, Ordering::SeqCst);
                    seen2.record(&request, source);
                    for bytes in answers(&script, &request, false) {
                        let _ = conn.write_all(&bytes).await;
                    }
                }
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
        (port, seen)
    }

    fn sip(port: u16, transport: Transport, accept_any_status: bool) -> SipOptionsProbe {
        SipOptionsProbe {
            target: HostPort {
                host: Host::Ip("127.0.0.1".parse().unwrap()),
                port,
            },
            transport,
            request_uri: None,
            from_user: "siteward".into(),
            accept_any_status,
        }
    }

    async fn run_probe(p: &SipOptionsProbe, timeout_ms: u64) -> ProbeResult {
        probe(p, &TestEnv::new(timeout_ms).env()).await
    }

    fn ok_script(answers: Vec<(u16, &'static str)>) -> Script {
        Script {
            answers,
            ..Script::default()
        }
    }

    #[tokio::test]
    async fn udp_200_is_up_through_the_engine() {
        let (port, seen) = udp_server(ok_script(vec![(200, "OK")])).await;
        let check = Check {
            name: "pbx-sip".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 1,
            placement: Placement::default(),
            probe: Probe::SipOptions(sip(port, Transport::Udp, false)),
        };
        let outcome = crate::probes::run(&check, &Resolver::from_system().unwrap()).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert!(outcome.detail.contains("200 OK"), "{}", outcome.detail);
        assert!(
            outcome.detail.contains("Server: FakePBX 1.0"),
            "{}",
            outcome.detail
        );
        assert!(
            !outcome.detail.contains("retransmission"),
            "{}",
            outcome.detail
        );
        assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
        assert!(
            seen.wrong_via.lock().unwrap().is_empty(),
            "{:?}",
            seen.wrong_via
        );
    }

    #[tokio::test]
    async fn udp_404_is_bad_status_unless_any_status_is_accepted() {
        let (port, _) = udp_server(ok_script(vec![(404, "Not Found")])).await;
        let failure = run_probe(&sip(port, Transport::Udp, false), 2000)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::BadStatus, "{}", failure.detail);
        assert!(
            failure.detail.contains("404 Not Found"),
            "{}",
            failure.detail
        );
        let obs = run_probe(&sip(port, Transport::Udp, true), 2000)
            .await
            .unwrap();
        assert!(obs.detail.contains("404 Not Found"), "{}", obs.detail);
    }

    #[tokio::test]
    async fn udp_retransmits_until_answered() {
        let (port, seen) = udp_server(Script {
            drop_first: 1,
            answers: vec![(200, "OK")],
            ..Script::default()
        })
        .await;
        let obs = run_probe(&sip(port, Transport::Udp, false), 2000)
            .await
            .unwrap();
        assert!(
            obs.detail.contains("after 1 retransmission"),
            "{}",
            obs.detail
        );
        assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
        assert!(seen.wrong_via.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn udp_silent_peer_times_out_after_retransmitting() {
        // T1 = 500 ms: within 800 ms the request goes out at 0 and 500 ms.
        let (port, seen) = udp_server(Script {
            drop_first: usize::MAX,
            ..Script::default()
        })
        .await;
        let failure = run_probe(&sip(port, Transport::Udp, false), 800)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Timeout, "{}", failure.detail);
        assert!(failure.detail.contains("2 sent"), "{}", failure.detail);
        assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn udp_provisional_then_final_is_up() {
        let (port, _) = udp_server(ok_script(vec![(100, "Trying"), (200, "OK")])).await;
        let obs = run_probe(&sip(port, Transport::Udp, false), 2000)
            .await
            .unwrap();
        assert!(obs.detail.contains("200 OK"), "{}", obs.detail);
    }

    #[tokio::test]
    async fn udp_only_provisional_is_timeout_with_note() {
        let (port, _) = udp_server(ok_script(vec![(100, "Trying")])).await;
        let failure = run_probe(&sip(port, Transport::Udp, false), 300)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Timeout, "{}", failure.detail);
        assert!(failure.detail.contains("100 Trying"), "{}", failure.detail);
    }

    #[tokio::test]
    async fn udp_stray_datagrams_are_ignored() {
        let (port, _) = udp_server(Script {
            strays_first: true,
            answers: vec![(486, "Busy Here")],
            ..Script::default()
        })
        .await;
        // The stray 200 must not count: the real answer is 486.
        let failure = run_probe(&sip(port, Transport::Udp, false), 2000)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::BadStatus, "{}", failure.detail);
        assert!(
            failure.detail.contains("486 Busy Here"),
            "{}",
            failure.detail
        );
    }

    #[tokio::test]
    async fn udp_garbage_only_is_bad_response() {
        let (port, _) = udp_server(Script {
            garbage: Some(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            ..Script::default()
        })
        .await;
        let failure = run_probe(&sip(port, Transport::Udp, false), 300)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::BadResponse, "{}", failure.detail);
        assert!(failure.detail.contains("not SIP"), "{}", failure.detail);
    }

    #[tokio::test]
    async fn udp_closed_port_is_refused() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        drop(socket);
        let failure = run_probe(&sip(port, Transport::Udp, false), 2000)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Refused, "{}", failure.detail);
    }

    #[tokio::test]
    async fn udp_tries_the_next_address_when_one_refuses() {
        // `localhost` may resolve to ::1 before 127.0.0.1; the server listens on the latter.
        let (port, seen) = udp_server(ok_script(vec![(200, "OK")])).await;
        let mut p = sip(port, Transport::Udp, false);
        p.target.host = Host::Name("localhost".into());
        let obs = run_probe(&p, 2000).await.unwrap();
        assert!(obs.detail.starts_with("127.0.0.1:"), "{}", obs.detail);
        assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn tcp_200_is_up_with_real_via() {
        let (port, seen) = tcp_server(ok_script(vec![(200, "OK")])).await;
        let obs = run_probe(&sip(port, Transport::Tcp, false), 2000)
            .await
            .unwrap();
        assert!(obs.detail.contains("200 OK"), "{}", obs.detail);
        assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
        assert!(
            seen.wrong_via.lock().unwrap().is_empty(),
            "{:?}",
            seen.wrong_via
        );
    }

    #[tokio::test]
    async fn tcp_provisional_then_final_is_up() {
        let (port, _) = tcp_server(ok_script(vec![
            (100, "Trying"),
            (180, "Ringing"),
            (200, "OK"),
        ]))
        .await;
        let obs = run_probe(&sip(port, Transport::Tcp, false), 2000)
            .await
            .unwrap();
        assert!(obs.detail.contains("200 OK"), "{}", obs.detail);
    }

    #[tokio::test]
    async fn tcp_stray_response_is_skipped() {
        let (port, _) = tcp_server(Script {
            strays_first: true,
            answers: vec![(403, "Forbidden")],
            ..Script::default()
        })
        .await;
        // The stray 200 (foreign branch) comes first and must not count.
        let failure = run_probe(&sip(port, Transport::Tcp, false), 2000)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::BadStatus, "{}", failure.detail);
        assert!(
            failure.detail.contains("403 Forbidden"),
            "{}",
            failure.detail
        );
    }

    #[tokio::test]
    async fn tcp_404_with_and_without_accept_any_status() {
        let (port, _) = tcp_server(ok_script(vec![(404, "Not Found")])).await;
        let failure = run_probe(&sip(port, Transport::Tcp, false), 2000)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::BadStatus, "{}", failure.detail);
        let (port, _) = tcp_server(ok_script(vec![(404, "Not Found")])).await;
        assert!(run_probe(&sip(port, Transport::Tcp, true), 2000)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn tcp_garbage_is_bad_response() {
        let (port, _) = tcp_server(Script {
            garbage: Some(b"SSH-2.0-OpenSSH_9.6\r\n"),
            ..Script::default()
        })
        .await;
        let failure = run_probe(&sip(port, Transport::Tcp, false), 2000)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::BadResponse, "{}", failure.detail);
        assert!(failure.detail.contains("SSH-2.0"), "{}", failure.detail);
    }

    #[tokio::test]
    async fn tcp_silent_is_timeout_and_closed_is_refused() {
        let (port, _) = tcp_server(ok_script(vec![])).await;
        let failure = run_probe(&sip(port, Transport::Tcp, false), 300)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Timeout, "{}", failure.detail);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let failure = run_probe(&sip(port, Transport::Tcp, false), 1000)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Refused, "{}", failure.detail);
    }

    #[tokio::test]
    async fn request_uri_defaults_to_the_target_and_can_be_set() {
        let (port, seen) = udp_server(ok_script(vec![(200, "OK")])).await;
        let mut p = sip(port, Transport::Udp, false);
        assert!(run_probe(&p, 2000).await.is_ok());
        p.request_uri = Some("sip:ping@pbx.example".into());
        assert!(run_probe(&p, 2000).await.is_ok());
        assert_eq!(
            *seen.uris.lock().unwrap(),
            [
                format!("sip:127.0.0.1:{port}"),
                "sip:ping@pbx.example".to_string()
            ]
        );
        p.from_user = "bad user\r\n".into();
        let failure = run_probe(&p, 2000).await.unwrap_err();
        assert!(failure.detail.contains("From user"), "{}", failure.detail);
    }
}
