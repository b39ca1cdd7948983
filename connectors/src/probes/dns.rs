//! `dns`: ask one server for one name and record type (recursion desired), over UDP or TCP.
//!
//! Up when the server answers NOERROR with at least one record of the asked type and, if
//! `expect_answer` is set, one of those records' data equals one of the expected values.
//! Record data is compared as text: the IP address for A/AAAA (compared as addresses, so
//! `2001:db8::1` equals `2001:0db8:0::1`), the name for CNAME/NS/PTR, `preference exchange`
//! for MX, `priority weight port target` for SRV, `mname rname serial refresh retry expire
//! minimum` for SOA (all case-insensitive, a trailing dot on any name ignored) and the
//! strings joined without separator for TXT (case-insensitive, dots kept).
//!
//! Over UDP the query is sent again when no answer came after an interval (a third of the
//! timeout, between 200 ms and 1 s), at most three times; datagrams with another id or
//! question are ignored. A truncated (TC) UDP answer is asked again over TCP, as a resolver
//! would. Over TCP, messages carry the RFC 1035 two-byte length prefix.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use siteward_config::{DnsProbe, DnsRecordType, Transport};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::net::{self, ProbeEnv};
use crate::{Failure, Observation, ProbeResult, Reason};

/// We do not advertise EDNS, so a conforming UDP answer is at most 512 bytes; the extra
/// room keeps a sloppy server's answer from being cut (then undecodable).
const UDP_LIMIT: usize = 4096;
/// Length prefix plus the largest DNS message.
const TCP_LIMIT: usize = 2 + 65_535;
const UDP_SENDS: u32 = 3;
const MIN_RETRANSMIT: Duration = Duration::from_millis(200);
const MAX_RETRANSMIT: Duration = Duration::from_secs(1);
/// Stop waiting this long before the deadline, to report what happened in our own words.
const DEADLINE_MARGIN: Duration = Duration::from_millis(20);
/// Bound on the answers listed in a detail.
const LIST_LIMIT: usize = 200;

pub async fn probe(p: &DnsProbe, env: &ProbeEnv<'_>) -> ProbeResult {
    let query = question(p)?;
    let (response, server, via) = match p.transport {
        Transport::Udp => match udp_exchange(&query, p, env).await? {
            UdpAnswer::Complete(response, server) => (response, server, "udp"),
            UdpAnswer::Truncated => {
                let (response, server) = tcp_exchange(&query, p, env).await?;
                (response, server, "tcp after a truncated udp answer")
            }
        },
        Transport::Tcp => {
            let (response, server) = tcp_exchange(&query, p, env).await?;
            (response, server, "tcp")
        }
    };
    verdict(p, &response)
        .map(|answers| Observation::new(format!("{answers} from {server} over {via}")))
        .map_err(|f| Failure::new(f.reason, format!("{server}: {}", f.detail)))
}

/// The record type a configured `record_type` asks for.
pub fn record_type(t: DnsRecordType) -> RecordType {
    match t {
        DnsRecordType::A => RecordType::A,
        DnsRecordType::Aaaa => RecordType::AAAA,
        DnsRecordType::Cname => RecordType::CNAME,
        DnsRecordType::Mx => RecordType::MX,
        DnsRecordType::Ns => RecordType::NS,
        DnsRecordType::Ptr => RecordType::PTR,
        DnsRecordType::Soa => RecordType::SOA,
        DnsRecordType::Srv => RecordType::SRV,
        DnsRecordType::Txt => RecordType::TXT,
    }
}

/// The question, with the name made absolute (the server must not append a search domain).
fn question(p: &DnsProbe) -> Result<Query, Failure> {
    let mut name = Name::from_ascii(p.query.trim_end_matches('.')).map_err(|e| {
        Failure::new(
            Reason::IoError,
            format!("\"{}\" is not a DNS name: {e}", p.query),
        )
    })?;
    name.set_fqdn(true);
    let mut query = Query::query(name, record_type(p.record_type));
    query.query_class = DNSClass::IN;
    Ok(query)
}

/// A query message with a fresh random id (guessing it is what a spoofed answer would need).
fn encode_query(id: u16, query: &Query) -> Result<Vec<u8>, Failure> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(query.clone());
    message
        .to_vec()
        .map_err(|e| Failure::new(Reason::IoError, format!("encoding the DNS query: {e}")))
}

/// Why a message is not the answer to our query.
#[derive(Debug, PartialEq)]
enum Mismatch {
    /// Too short for a header, or another query's id.
    WrongId,
    /// Our id, but not decodable.
    Undecodable(String),
    /// Our id, but a query rather than a response, or another question.
    WrongQuestion,
}

/// Checks that `bytes` answer query `id` for `query`: same id, a response, and the same
/// question (a server may omit the question, e.g. in FORMERR answers).
fn match_response(bytes: &[u8], id: u16, query: &Query) -> Result<Message, Mismatch> {
    match bytes.get(..2) {
        Some(head) if u16::from_be_bytes([head[0], head[1]]) == id => {}
        _ => return Err(Mismatch::WrongId),
    }
    let message = Message::from_vec(bytes).map_err(|e| Mismatch::Undecodable(e.to_string()))?;
    let same_question = message.queries.is_empty()
        || message.queries.iter().any(|q| {
            q.name == query.name
                && q.query_type == query.query_type
                && q.query_class == query.query_class
        });
    if message.metadata.message_type != MessageType::Response || !same_question {
        return Err(Mismatch::WrongQuestion);
    }
    Ok(message)
}

/// The TC bit of a raw header, for a truncated answer too mangled to decode.
fn truncated_header(bytes: &[u8]) -> bool {
    bytes.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

enum UdpAnswer {
    Complete(Message, SocketAddr),
    Truncated,
}

async fn udp_exchange(
    query: &Query,
    p: &DnsProbe,
    env: &ProbeEnv<'_>,
) -> Result<UdpAnswer, Failure> {
    let (socket, server) = env.connect_udp(&p.server).await?;
    let id: u16 = rand::random();
    let packet = encode_query(id, query)?;
    let give_up = env
        .deadline
        .checked_sub(DEADLINE_MARGIN)
        .unwrap_or(env.deadline);
    let interval = (env.remaining() / UDP_SENDS).clamp(MIN_RETRANSMIT, MAX_RETRANSMIT);
    let mut buf = vec![0u8; UDP_LIMIT];
    let mut sent = 0;
    let mut next_send = Instant::now();
    let mut ignored = 0u32;
    loop {
        if sent < UDP_SENDS && Instant::now() >= next_send {
            socket
                .send(&packet)
                .await
                .map_err(|e| Failure::from(e).context(&format!("sending the query to {server}")))?;
            sent += 1;
            next_send = Instant::now() + interval;
        }
        let wake = if sent < UDP_SENDS {
            next_send.min(give_up)
        } else {
            give_up
        };
        match tokio::time::timeout_at(wake, socket.recv(&mut buf)).await {
            Err(_) if Instant::now() >= give_up => {
                let ignored = match ignored {
                    0 => String::new(),
                    n => format!(" ({n} unrelated datagrams ignored)"),
                };
                let times = match sent {
                    1 => "once".to_string(),
                    n => format!("{n} times"),
                };
                return Err(Failure::new(
                    Reason::Timeout,
                    format!("{server}: no answer over udp (query sent {times}){ignored}"),
                ));
            }
            Err(_) => continue,
            Ok(Err(e)) => {
                // ICMP port unreachable comes back as "connection refused".
                return Err(Failure::from(e).context(&format!("querying {server}")));
            }
            Ok(Ok(n)) => {
                let datagram = &buf[..n];
                match match_response(datagram, id, query) {
                    Ok(message) if message.metadata.truncation => return Ok(UdpAnswer::Truncated),
                    Ok(message) => return Ok(UdpAnswer::Complete(message, server)),
                    Err(Mismatch::Undecodable(_)) if truncated_header(datagram) => {
                        return Ok(UdpAnswer::Truncated)
                    }
                    Err(Mismatch::Undecodable(e)) => {
                        return Err(Failure::new(
                            Reason::BadResponse,
                            format!("{server}: undecodable answer: {e}"),
                        ))
                    }
                    Err(Mismatch::WrongId | Mismatch::WrongQuestion) => ignored += 1,
                }
            }
        }
    }
}

async fn tcp_exchange(
    query: &Query,
    p: &DnsProbe,
    env: &ProbeEnv<'_>,
) -> Result<(Message, SocketAddr), Failure> {
    let mut stream = env.connect_tcp(&p.server).await?;
    let server = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::new(IpAddr::from([0u8; 4]), p.server.port));
    let id: u16 = rand::random();
    let packet = encode_query(id, query)?;
    let mut framed = Vec::with_capacity(packet.len() + 2);
    framed.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    framed.extend_from_slice(&packet);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| Failure::from(e).context(&format!("sending the query to {server}")))?;
    let mut buf = Vec::new();
    let bytes = net::read_message(&mut stream, &mut buf, TCP_LIMIT, tcp_frame)
        .await
        .map_err(|f| f.context(&format!("reading the answer from {server}")))?;
    let message = match_response(&bytes, id, query).map_err(|m| {
        let why = match m {
            Mismatch::WrongId => "an answer to another query (wrong id)".to_string(),
            Mismatch::WrongQuestion => "an answer to another question".to_string(),
            Mismatch::Undecodable(e) => format!("an undecodable answer: {e}"),
        };
        Failure::new(Reason::BadResponse, format!("{server} sent {why}"))
    })?;
    Ok((message, server))
}

/// One length-prefixed message from the start of `buf`, once complete.
fn tcp_frame(buf: &[u8]) -> Result<Option<Vec<u8>>, Failure> {
    let Some(prefix) = buf.get(..2) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    if len < 12 {
        return Err(Failure::new(
            Reason::BadResponse,
            format!("a {len}-byte message is shorter than a DNS header"),
        ));
    }
    Ok(buf.get(2..2 + len).map(<[u8]>::to_vec))
}

/// "NXDOMAIN", "SERVFAIL"... as dig prints them.
fn rcode_name(code: ResponseCode) -> String {
    match u16::from(code) {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        other => format!("RCODE {other}"),
    }
}

/// Up or down from a matched response: the answers of the asked type, for the detail.
fn verdict(p: &DnsProbe, response: &Message) -> Result<String, Failure> {
    let asked = record_type(p.record_type);
    let what = format!("{} {}", p.query, p.record_type.as_str());
    let rcode = response.metadata.response_code;
    if rcode != ResponseCode::NoError {
        return Err(Failure::new(
            Reason::BadStatus,
            format!("{} for {what}", rcode_name(rcode)),
        ));
    }
    let answers: Vec<String> = response
        .answers
        .iter()
        .filter(|r| r.record_type() == asked)
        .map(|r| render(&r.data))
        .collect();
    if answers.is_empty() {
        let others: Vec<String> = response
            .answers
            .iter()
            .map(|r| r.record_type().to_string())
            .collect();
        let others = match others.len() {
            0 => "no answer records".to_string(),
            _ => format!("only {}", others.join(", ")),
        };
        return Err(Failure::new(
            Reason::BadResponse,
            format!(
                "NOERROR but no {} record for {} ({})",
                p.record_type.as_str(),
                p.query,
                bounded(&others)
            ),
        ));
    }
    let listed = bounded(&answers.join(", "));
    if !p.expect_answer.is_empty()
        && !answers
            .iter()
            .any(|a| p.expect_answer.iter().any(|e| same_data(asked, a, e)))
    {
        return Err(Failure::new(
            Reason::BadResponse,
            format!(
                "{what} is {listed}, expected {}",
                bounded(&p.expect_answer.join(" or "))
            ),
        ));
    }
    Ok(format!("{what}: {listed}"))
}

/// Record data as text (see the module doc).
pub fn render(data: &RData) -> String {
    match data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|part| String::from_utf8_lossy(part))
            .collect(),
        other => other.to_string(),
    }
}

/// Compares an answer with an expected value (see the module doc).
fn same_data(asked: RecordType, answer: &str, expected: &str) -> bool {
    match asked {
        RecordType::A | RecordType::AAAA => {
            match (answer.parse::<IpAddr>(), expected.trim().parse::<IpAddr>()) {
                (Ok(a), Ok(e)) => a == e,
                _ => false,
            }
        }
        RecordType::TXT => answer.eq_ignore_ascii_case(expected),
        _ => normalized(answer) == normalized(expected),
    }
}

/// Lowercase, single spaces, no trailing dot on any field.
fn normalized(text: &str) -> String {
    text.split_whitespace()
        .map(|field| field.trim_end_matches('.').to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Cuts a list for the detail text.
fn bounded(text: &str) -> String {
    let mut text = text.to_string();
    crate::text::ellipsize(&mut text, LIST_LIMIT);
    text
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use hickory_proto::rr::rdata::{A, MX, TXT};
    use hickory_proto::rr::Record;
    use proptest::prelude::*;
    use siteward_config::{Check, Host, HostPort, Placement, Probe};
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, UdpSocket};

    use super::*;
    use crate::net::Resolver;
    use crate::Outcome;

    /// How the test server answers over UDP (over TCP it always answers properly).
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Answer,
        NxDomain,
        /// First a datagram with another id, then the real answer.
        WrongIdFirst,
        /// An empty answer with the TC bit: the client must ask again over TCP.
        Truncate,
        /// Only answers the second copy of a query (the first one is "lost").
        DropFirst,
        Garbage,
    }

    fn a_record(name: &Name, ip: Ipv4Addr) -> Record {
        Record::from_rdata(name.clone(), 60, RData::A(A(ip)))
    }

    /// The answer for a query: A 192.0.2.10 and 192.0.2.11 for any name.
    fn answer_for(query: &Message, truncate: bool, rcode: ResponseCode) -> Vec<u8> {
        let mut response = Message::response(query.metadata.id, OpCode::Query);
        response.metadata.recursion_desired = query.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.metadata.response_code = rcode;
        response.add_queries(query.queries.clone());
        if truncate {
            response.metadata.truncation = true;
        } else if rcode == ResponseCode::NoError {
            let name = query.queries[0].name.clone();
            response.add_answer(a_record(&name, Ipv4Addr::new(192, 0, 2, 10)));
            response.add_answer(a_record(&name, Ipv4Addr::new(192, 0, 2, 11)));
        }
        response.to_vec().unwrap()
    }

    /// A UDP DNS server on 127.0.0.1 and a TCP one on the same port. Returns the port and
    /// the number of UDP queries received.
    async fn dns_server(mode: Mode) -> (u16, Arc<AtomicU32>) {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let port = udp.local_addr().unwrap().port();
        let queries = Arc::new(AtomicU32::new(0));
        let counter = queries.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                let seen = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let reply = match mode {
                    Mode::Answer => answer_for(&query, false, ResponseCode::NoError),
                    Mode::NxDomain => answer_for(&query, false, ResponseCode::NXDomain),
                    Mode::Truncate => answer_for(&query, true, ResponseCode::NoError),
                    Mode::DropFirst if seen == 1 => continue,
                    Mode::DropFirst => answer_for(&query, false, ResponseCode::NoError),
                    Mode::Garbage => {
                        let mut junk = buf[..2].to_vec(); // our id, then nonsense
                        junk.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 9, 0, 0, 0, 0, 0xff]);
                        junk
                    }
                    Mode::WrongIdFirst => {
                        let mut other = query.clone();
                        other.metadata.id = query.metadata.id.wrapping_add(1);
                        let spoof = answer_for(&other, false, ResponseCode::NXDomain);
                        let _ = udp.send_to(&spoof, from).await;
                        answer_for(&query, false, ResponseCode::NoError)
                    }
                };
                let _ = udp.send_to(&reply, from).await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut prefix = [0u8; 2];
                    if stream.read_exact(&mut prefix).await.is_err() {
                        return;
                    }
                    let mut query = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
                    if stream.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    let Ok(query) = Message::from_vec(&query) else {
                        return;
                    };
                    let reply = answer_for(&query, false, ResponseCode::NoError);
                    let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&reply);
                    let _ = stream.write_all(&framed).await;
                });
            }
        });
        (port, queries)
    }

    fn dns_probe(port: u16, transport: Transport, expect: &[&str]) -> DnsProbe {
        DnsProbe {
            server: HostPort {
                host: Host::Ip("127.0.0.1".parse().unwrap()),
                port,
            },
            query: "db.corp.example".into(),
            record_type: DnsRecordType::A,
            transport,
            expect_answer: expect.iter().map(|e| e.to_string()).collect(),
        }
    }

    async fn run(probe: DnsProbe, timeout_ms: u64) -> Outcome {
        let check = Check {
            name: "dns-test".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_millis(timeout_ms),
            rise: 1,
            fall: 1,
            placement: Placement::default(),
            probe: Probe::Dns(probe),
        };
        let resolver = Resolver::from_system().unwrap();
        crate::probes::run(&check, &resolver).await
    }

    #[tokio::test]
    async fn udp_a_answer_is_up() {
        let (port, _) = dns_server(Mode::Answer).await;
        let outcome = run(dns_probe(port, Transport::Udp, &[]), 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert!(
            outcome.detail.contains("192.0.2.10, 192.0.2.11"),
            "{}",
            outcome.detail
        );
        assert!(outcome.detail.ends_with("over udp"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn tcp_a_answer_is_up() {
        let (port, udp_queries) = dns_server(Mode::Answer).await;
        let outcome = run(dns_probe(port, Transport::Tcp, &["192.0.2.11"]), 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert!(outcome.detail.ends_with("over tcp"), "{}", outcome.detail);
        assert_eq!(udp_queries.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn expected_answer_match_and_mismatch() {
        let (port, _) = dns_server(Mode::Answer).await;
        let outcome = run(
            dns_probe(port, Transport::Udp, &["10.0.0.1", "192.0.2.11"]),
            2000,
        )
        .await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        let outcome = run(dns_probe(port, Transport::Udp, &["10.0.0.1"]), 2000).await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{}", outcome.detail);
        assert!(
            outcome
                .detail
                .contains("is 192.0.2.10, 192.0.2.11, expected 10.0.0.1"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn nxdomain_is_bad_status() {
        let (port, _) = dns_server(Mode::NxDomain).await;
        let outcome = run(dns_probe(port, Transport::Udp, &[]), 2000).await;
        assert_eq!(outcome.reason, Reason::BadStatus, "{}", outcome.detail);
        assert!(
            outcome.detail.contains("NXDOMAIN for db.corp.example A"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn datagram_with_wrong_id_is_ignored() {
        let (port, _) = dns_server(Mode::WrongIdFirst).await;
        let outcome = run(dns_probe(port, Transport::Udp, &[]), 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
    }

    #[tokio::test]
    async fn truncated_udp_answer_falls_back_to_tcp() {
        let (port, _) = dns_server(Mode::Truncate).await;
        let outcome = run(dns_probe(port, Transport::Udp, &["192.0.2.10"]), 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert!(
            outcome
                .detail
                .ends_with("over tcp after a truncated udp answer"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn lost_query_is_sent_again() {
        let (port, queries) = dns_server(Mode::DropFirst).await;
        // A 900 ms timeout gives a 300 ms retransmit interval.
        let outcome = run(dns_probe(port, Transport::Udp, &[]), 900).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert_eq!(queries.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn garbage_with_our_id_is_bad_response() {
        let (port, _) = dns_server(Mode::Garbage).await;
        let outcome = run(dns_probe(port, Transport::Udp, &[]), 2000).await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{}", outcome.detail);
        assert!(outcome.detail.contains("undecodable"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn silent_server_times_out_after_retransmitting() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let outcome = run(dns_probe(port, Transport::Udp, &[]), 700).await;
        assert_eq!(outcome.reason, Reason::Timeout, "{}", outcome.detail);
        assert!(
            outcome.detail.contains("query sent 3 times"),
            "{}",
            outcome.detail
        );
        let mut buf = [0u8; 512];
        let mut received = 0;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(10), silent.recv_from(&mut buf)).await
        {
            received += 1;
        }
        assert_eq!(received, 3);
    }

    #[tokio::test]
    async fn closed_udp_port_is_refused() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        drop(socket);
        let outcome = run(dns_probe(port, Transport::Udp, &[]), 1000).await;
        assert_eq!(outcome.reason, Reason::Refused, "{}", outcome.detail);
    }

    #[tokio::test]
    async fn closed_tcp_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let outcome = run(dns_probe(port, Transport::Tcp, &[]), 1000).await;
        assert_eq!(outcome.reason, Reason::Refused, "{}", outcome.detail);
    }

    fn query_for(name: &str, rtype: RecordType) -> Query {
        let mut name = Name::from_ascii(name).unwrap();
        name.set_fqdn(true);
        Query::query(name, rtype)
    }

    #[test]
    fn response_matching() {
        let query = query_for("db.corp.example", RecordType::A);
        let mut request = Message::new(7, MessageType::Query, OpCode::Query);
        request.add_query(query.clone());
        let ok = answer_for(&request, false, ResponseCode::NoError);
        assert!(match_response(&ok, 7, &query).is_ok());
        assert_eq!(
            match_response(&ok, 8, &query).unwrap_err(),
            Mismatch::WrongId
        );
        // Case differences in the echoed name do not matter.
        let upper = query_for("DB.Corp.Example", RecordType::A);
        assert!(match_response(&ok, 7, &upper).is_ok());
        let other = query_for("www.corp.example", RecordType::A);
        assert_eq!(
            match_response(&ok, 7, &other).unwrap_err(),
            Mismatch::WrongQuestion
        );
        let aaaa = query_for("db.corp.example", RecordType::AAAA);
        assert_eq!(
            match_response(&ok, 7, &aaaa).unwrap_err(),
            Mismatch::WrongQuestion
        );
        // Our own query echoed back is not an answer.
        let echoed = request.to_vec().unwrap();
        assert_eq!(
            match_response(&echoed, 7, &query).unwrap_err(),
            Mismatch::WrongQuestion
        );
        assert!(matches!(
            match_response(&ok[..ok.len() - 3], 7, &query),
            Err(Mismatch::Undecodable(_))
        ));
        assert_eq!(
            match_response(&[0], 0, &query).unwrap_err(),
            Mismatch::WrongId
        );
    }

    #[test]
    fn tcp_framing() {
        assert_eq!(tcp_frame(&[]).unwrap(), None);
        assert_eq!(tcp_frame(&[0]).unwrap(), None);
        let mut framed = vec![0, 12];
        framed.extend_from_slice(&[1; 11]);
        assert_eq!(tcp_frame(&framed).unwrap(), None);
        framed.extend_from_slice(&[1; 5]);
        assert_eq!(tcp_frame(&framed).unwrap(), Some(vec![1; 12]));
        assert_eq!(
            tcp_frame(&[0, 3, 1, 2, 3]).unwrap_err().reason,
            Reason::BadResponse
        );
    }

    fn message_with(answers: Vec<Record>) -> Message {
        let mut m = Message::response(1, OpCode::Query);
        for a in answers {
            m.add_answer(a);
        }
        m
    }

    #[test]
    fn verdicts_for_other_record_types() {
        let name = Name::from_ascii("corp.example.").unwrap();
        let mx = Record::from_rdata(
            name.clone(),
            60,
            RData::MX(MX::new(10, Name::from_ascii("Mail.Corp.Example.").unwrap())),
        );
        let txt = Record::from_rdata(
            name.clone(),
            60,
            RData::TXT(TXT::new(vec!["v=spf1 ".into(), "-all".into()])),
        );
        let mut p = dns_probe(53, Transport::Udp, &["10 mail.corp.example"]);
        p.record_type = DnsRecordType::Mx;
        let m = message_with(vec![mx.clone(), txt.clone()]);
        assert_eq!(
            verdict(&p, &m).unwrap(),
            "db.corp.example MX: 10 Mail.Corp.Example."
        );
        p.expect_answer = vec!["20 mail.corp.example.".into()];
        assert_eq!(verdict(&p, &m).unwrap_err().reason, Reason::BadResponse);

        p.record_type = DnsRecordType::Txt;
        p.expect_answer = vec!["V=SPF1 -ALL".into()];
        assert!(verdict(&p, &m).is_ok());

        p.record_type = DnsRecordType::Aaaa;
        p.expect_answer = Vec::new();
        let failure = verdict(&p, &m).unwrap_err();
        assert_eq!(failure.reason, Reason::BadResponse);
        assert!(
            failure.detail.contains("only MX, TXT"),
            "{}",
            failure.detail
        );
        let failure = verdict(&p, &message_with(Vec::new())).unwrap_err();
        assert!(
            failure.detail.contains("no answer records"),
            "{}",
            failure.detail
        );
    }

    #[test]
    fn data_comparison() {
        assert!(same_data(RecordType::AAAA, "2001:db8::1", "2001:0db8:0::1"));
        assert!(!same_data(RecordType::A, "192.0.2.1", "192.0.2.10"));
        assert!(!same_data(RecordType::A, "192.0.2.1", "not-an-ip"));
        assert!(same_data(
            RecordType::CNAME,
            "Host.Example.",
            "host.example"
        ));
        assert!(same_data(
            RecordType::SRV,
            "0 5 5060 sip.example.",
            "0  5 5060 SIP.example"
        ));
        assert!(!same_data(RecordType::TXT, "hello.", "hello"));
    }

    #[test]
    fn long_lists_are_cut() {
        let long = "é".repeat(300);
        let cut = bounded(&long);
        assert!(cut.len() <= LIST_LIMIT + "…".len());
        assert!(cut.ends_with('…'));
    }

    proptest! {
        #[test]
        fn matching_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), id in any::<u16>()) {
            let query = query_for("db.corp.example", RecordType::A);
            let _ = match_response(&bytes, id, &query);
            let _ = tcp_frame(&bytes);
        }
    }
}
