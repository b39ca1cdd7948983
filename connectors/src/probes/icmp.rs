//! `icmp`: `count` echo requests through a raw socket; RTT and loss over the replies.
//!
//! Raw sockets because datagram ("ping") ICMP sockets are refused on the appliances even
//! as root; this needs root or CAP_NET_RAW. A raw socket sees every ICMP packet reaching
//! the host (other checks' replies, and on loopback our own requests), so a reply counts
//! only if it is an echo reply from the target carrying this run's random identifier and
//! random payload token, for a sequence number we sent. The socket is connected to the
//! target, so the kernel already drops packets from other sources (the only filter for
//! IPv6, where raw sockets deliver no IP header).
//!
//! Requests go out every 200 ms, or closer together when the timeout would not leave
//! room for that (`(timeout - margin) / count`). Replies are awaited until all came back
//! or the deadline minus a small margin. Up when at least one reply came back and the loss
//! is at most `max_loss_percent`; otherwise `packet_loss`, or `unreachable` when nothing
//! came back and the kernel reported the target unreachable.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use siteward_config::IcmpProbe;
use siteward_netstack::SocketPlacement;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::net::{placement_failure, ProbeEnv};
use crate::{Failure, Observation, ProbeResult, Reason};

const MAX_INTERVAL: Duration = Duration::from_millis(200);
/// Stop waiting at most this long before the deadline, to report in our own words.
const MAX_MARGIN: Duration = Duration::from_millis(50);
/// Second half of every payload, after the run's random token.
const MARK: &[u8; 8] = b"siteward";
/// Our replies are 24 bytes of ICMP plus the IPv4 header; bigger packets are not ours
/// and a truncated read of them is harmless.
const RECV_BUF: usize = 512;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

pub async fn probe(p: &IcmpProbe, env: &ProbeEnv<'_>) -> ProbeResult {
    let target = env
        .resolve(&p.target)
        .await?
        .first()
        .copied()
        .ok_or_else(|| {
            Failure::new(
                Reason::ResolveFailed,
                format!("{} has no address", p.target),
            )
        })?;
    let socket = siteward_netstack::reactor::register(open_socket(target, env)?)
        .map_err(|e| Failure::from(e).context("registering the ICMP socket"))?;
    let run = Run {
        target,
        ident: rand::random(),
        token: rand::random(),
    };
    let count = usize::try_from(p.count.max(1)).unwrap_or(1);
    let margin = MAX_MARGIN.min(env.remaining() / 10);
    let start = Instant::now();
    let finish = env.deadline.checked_sub(margin).unwrap_or(start).max(start);
    let interval = MAX_INTERVAL.min((finish - start) / p.count.max(1));

    let mut sent_at: Vec<Option<Instant>> = vec![None; count];
    let mut rtts: Vec<Option<Duration>> = vec![None; count];
    let mut unreachable: Option<String> = None;
    let mut next = 0usize;
    let mut buf = [0u8; RECV_BUF];
    loop {
        while next < count && Instant::now() >= start + interval * next as u32 {
            // `count` is at most 100 (validated), so the sequence fits in a u16.
            let packet = run.echo_request(next as u16);
            match send(&socket, &packet).await {
                Ok(_) => sent_at[next] = Some(Instant::now()),
                Err(e) if is_unreachable(&e) => unreachable = Some(e.to_string()),
                Err(e) => {
                    return Err(
                        Failure::from(e).context(&format!("sending an echo request to {target}"))
                    )
                }
            }
            next += 1;
        }
        let all_answered = sent_at
            .iter()
            .zip(&rtts)
            .all(|(sent, rtt)| sent.is_none() || rtt.is_some());
        let now = Instant::now();
        if (next == count && all_answered) || now >= finish {
            break;
        }
        let wake = if next < count {
            (start + interval * next as u32).min(finish)
        } else {
            finish
        };
        match tokio::time::timeout_at(wake, recv(&socket, &mut buf)).await {
            Err(_) => {}
            Ok(Ok(n)) => {
                let received = Instant::now();
                let seq = buf.get(..n).and_then(|packet| run.parse_reply(packet));
                if let Some(seq) = seq.map(usize::from) {
                    if let (Some(Some(at)), Some(rtt @ None)) =
                        (sent_at.get(seq), rtts.get_mut(seq))
                    {
                        *rtt = Some(received - *at);
                    }
                }
            }
            // An ICMP error (host unreachable...) for our packets, reported by the kernel
            // on the connected socket.
            Ok(Err(e)) if is_unreachable(&e) => unreachable = Some(e.to_string()),
            Ok(Err(e)) => {
                return Err(Failure::from(e).context(&format!("reading echo replies from {target}")))
            }
        }
    }
    verdict(target, &rtts, p.max_loss_percent, unreachable)
}

/// A raw ICMP socket toward `target`, placed per the check's source/interface, nonblocking
/// and connected (so the kernel only passes on packets from the target).
fn open_socket(target: IpAddr, env: &ProbeEnv<'_>) -> Result<Socket, Failure> {
    let (domain, protocol) = match target {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let socket = Socket::new(domain, Type::RAW, Some(protocol)).map_err(|e| {
        Failure::from(e).context("opening a raw ICMP socket (needs root or CAP_NET_RAW)")
    })?;
    socket
        .set_nonblocking(true)
        .map_err(|e| Failure::from(e).context("making the ICMP socket nonblocking"))?;
    env.placement
        .place_socket(&socket, target)
        .map_err(placement_failure)?;
    socket
        .connect(&SocketAddr::new(target, 0).into())
        .map_err(|e| crate::net::connect_failure(e, SocketAddr::new(target, 0)).context("ICMP"))?;
    Ok(socket)
}

/// No route, or an ICMP "unreachable" for our packets: a verdict, not a local error.
fn is_unreachable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable
    )
}

async fn send(socket: &AsyncFd<Socket>, packet: &[u8]) -> io::Result<usize> {
    loop {
        let mut guard = socket.writable().await?;
        if let Ok(result) = guard.try_io(|s| s.get_ref().send(packet)) {
            return result;
        }
    }
}

async fn recv(socket: &AsyncFd<Socket>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = socket.readable().await?;
        if let Ok(result) = guard.try_io(|s| {
            let mut reader: &Socket = s.get_ref();
            reader.read(buf)
        }) {
            return result;
        }
    }
}

/// What tells this run's replies apart from every other ICMP packet.
struct Run {
    target: IpAddr,
    ident: u16,
    token: [u8; 8],
}

impl Run {
    /// An echo request: type, code, checksum, identifier, sequence, then token and mark.
    /// ICMPv6's checksum covers a pseudo-header with our source address, which the kernel
    /// knows and fills in for raw ICMPv6 sockets; ICMPv4's is ours to compute.
    fn echo_request(&self, seq: u16) -> Vec<u8> {
        let v4 = self.target.is_ipv4();
        let mut packet = Vec::with_capacity(8 + 16);
        packet.push(if v4 { ECHO_REQUEST_V4 } else { ECHO_REQUEST_V6 });
        packet.push(0);
        packet.extend_from_slice(&[0, 0]);
        packet.extend_from_slice(&self.ident.to_be_bytes());
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&self.token);
        packet.extend_from_slice(MARK);
        if v4 {
            let sum = checksum(&packet);
            packet[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        packet
    }

    /// The sequence number of `packet` if it is an echo reply to this run from the target.
    /// IPv4 raw sockets deliver the IP header first (its length is in IHL); IPv6 ones don't.
    fn parse_reply(&self, packet: &[u8]) -> Option<u16> {
        let (icmp, reply_type) = match self.target {
            IpAddr::V4(target) => {
                let first = *packet.first()?;
                let header_len = usize::from(first & 0x0f) * 4;
                if first >> 4 != 4 || header_len < 20 || *packet.get(9)? != 1 {
                    return None;
                }
                if packet.get(12..16)? != target.octets() {
                    return None;
                }
                (packet.get(header_len..)?, ECHO_REPLY_V4)
            }
            IpAddr::V6(_) => (packet, ECHO_REPLY_V6),
        };
        let header = icmp.get(..8)?;
        let payload = icmp.get(8..24)?;
        let ident = u16::from_be_bytes([header[4], header[5]]);
        if header[0] != reply_type
            || header[1] != 0
            || ident != self.ident
            || payload[..8] != self.token
            || &payload[8..] != MARK
        {
            return None;
        }
        Some(u16::from_be_bytes([header[6], header[7]]))
    }
}

/// The Internet checksum (RFC 1071): one's complement of the one's-complement sum.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Up or down from the round-trip times (one slot per request, `None` = no reply).
fn verdict(
    target: IpAddr,
    rtts: &[Option<Duration>],
    max_loss_percent: u8,
    unreachable: Option<String>,
) -> ProbeResult {
    let count = rtts.len();
    let replies: Vec<Duration> = rtts.iter().flatten().copied().collect();
    let lost = count - replies.len();
    let loss = (lost * 100).checked_div(count).unwrap_or(100);
    if replies.is_empty() {
        return Err(match unreachable {
            Some(why) => Failure::new(
                Reason::Unreachable,
                format!("no reply from {target} to {count} echo requests: {why}"),
            ),
            None => Failure::new(
                Reason::PacketLoss,
                format!("no reply from {target} to {count} echo requests (100% loss)"),
            ),
        });
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let min = replies.iter().min().copied().unwrap_or_default();
    let max = replies.iter().max().copied().unwrap_or_default();
    let avg = replies.iter().sum::<Duration>() / replies.len() as u32;
    let summary = format!(
        "{}/{count} replies from {target}, {loss}% loss, rtt min/avg/max {:.3}/{:.3}/{:.3} ms",
        replies.len(),
        ms(min),
        ms(avg),
        ms(max)
    );
    // Exact: lost/count <= max/100, without rounding the percentage first.
    if lost * 100 <= usize::from(max_loss_percent) * count {
        Ok(Observation::new(summary))
    } else {
        Err(Failure::new(
            Reason::PacketLoss,
            format!("{summary} (more than {max_loss_percent}% allowed)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;
    use siteward_config::{Check, Host, Placement, Probe};

    use super::*;
    use crate::net::Resolver;
    use crate::Outcome;

    fn run_for(target: IpAddr) -> Run {
        Run {
            target,
            ident: 0x1234,
            token: *b"tokentok",
        }
    }

    /// An IPv4 packet as a raw socket delivers it: header (with `options` extra bytes),
    /// then `icmp`.
    fn ipv4_packet(source: Ipv4Addr, options: usize, icmp: &[u8]) -> Vec<u8> {
        let header_len = 20 + options;
        let mut packet = vec![0u8; header_len];
        packet[0] = 0x40 | (header_len / 4) as u8;
        packet[8] = 64;
        packet[9] = 1;
        packet[12..16].copy_from_slice(&source.octets());
        packet[16..20].copy_from_slice(&[127, 0, 0, 1]);
        packet.extend_from_slice(icmp);
        packet
    }

    /// A reply as the target would send it: our request with the type changed.
    fn reply_to(run: &Run, seq: u16) -> Vec<u8> {
        let mut icmp = run.echo_request(seq);
        icmp[0] = if run.target.is_ipv4() {
            ECHO_REPLY_V4
        } else {
            ECHO_REPLY_V6
        };
        icmp
    }

    #[test]
    fn echo_request_has_a_valid_checksum() {
        let run = run_for(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let packet = run.echo_request(7);
        assert_eq!(packet.len(), 24);
        assert_eq!(packet[0], ECHO_REQUEST_V4);
        assert_eq!(&packet[4..8], &[0x12, 0x34, 0, 7]);
        // Summing a packet that includes its own checksum gives zero.
        assert_eq!(checksum(&packet), 0);
        assert_ne!(&packet[2..4], &[0, 0]);
        // Odd length and carries.
        // 0xffff + 0xff00 = 0x1feff, folded 0xff00, complemented 0x00ff.
        assert_eq!(checksum(&[0xff, 0xff, 0xff]), 0x00ff);
        let v6 = run_for(IpAddr::V6(Ipv6Addr::LOCALHOST)).echo_request(1);
        assert_eq!(v6[0], ECHO_REQUEST_V6);
    }

    #[test]
    fn ipv4_replies_are_matched_and_everything_else_ignored() {
        let target = Ipv4Addr::new(127, 0, 0, 1);
        let run = run_for(IpAddr::V4(target));
        let reply = reply_to(&run, 2);
        assert_eq!(run.parse_reply(&ipv4_packet(target, 0, &reply)), Some(2));
        // IP options: the ICMP message starts after IHL*4 bytes, not at 20.
        assert_eq!(run.parse_reply(&ipv4_packet(target, 8, &reply)), Some(2));
        // Our own request, seen on loopback.
        let request = run.echo_request(2);
        assert_eq!(run.parse_reply(&ipv4_packet(target, 0, &request)), None);
        // Another source.
        let other = Ipv4Addr::new(127, 0, 0, 2);
        assert_eq!(run.parse_reply(&ipv4_packet(other, 0, &reply)), None);
        // Another run's identifier or token (another check pinging the same host).
        let mut foreign = reply.clone();
        foreign[5] ^= 1;
        assert_eq!(run.parse_reply(&ipv4_packet(target, 0, &foreign)), None);
        let mut foreign = reply.clone();
        foreign[8] ^= 1;
        assert_eq!(run.parse_reply(&ipv4_packet(target, 0, &foreign)), None);
        // Truncated anywhere, bad IHL, not IPv4, not ICMP.
        let full = ipv4_packet(target, 0, &reply);
        for len in 0..full.len() {
            assert_eq!(run.parse_reply(&full[..len]), None, "length {len}");
        }
        let mut bad_ihl = full.clone();
        bad_ihl[0] = 0x44;
        assert_eq!(run.parse_reply(&bad_ihl), None);
        let mut v6 = full.clone();
        v6[0] = 0x65;
        assert_eq!(run.parse_reply(&v6), None);
        let mut udp = full;
        udp[9] = 17;
        assert_eq!(run.parse_reply(&udp), None);
    }

    #[test]
    fn ipv6_replies_have_no_ip_header() {
        let run = run_for(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(run.parse_reply(&reply_to(&run, 9)), Some(9));
        assert_eq!(run.parse_reply(&run.echo_request(9)), None);
        assert_eq!(run.parse_reply(&reply_to(&run, 9)[..23]), None);
    }

    #[test]
    fn verdict_applies_max_loss() {
        let target = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let ms = |n| Some(Duration::from_millis(n));
        let ok = verdict(target, &[ms(1), ms(2), ms(3)], 0, None).unwrap();
        assert!(
            ok.detail.contains(
                "3/3 replies from 127.0.0.1, 0% loss, rtt min/avg/max 1.000/2.000/3.000 ms"
            ),
            "{}",
            ok.detail
        );
        // One of three lost is 33.3%: within 34%, beyond 33%.
        assert!(verdict(target, &[ms(1), None, ms(3)], 34, None).is_ok());
        let lossy = verdict(target, &[ms(1), None, ms(3)], 33, None).unwrap_err();
        assert_eq!(lossy.reason, Reason::PacketLoss);
        assert!(lossy.detail.contains("2/3 replies"), "{}", lossy.detail);
        // 100% allowed still needs one reply.
        let silent = verdict(target, &[None, None], 100, None).unwrap_err();
        assert_eq!(silent.reason, Reason::PacketLoss);
        assert!(silent.detail.contains("no reply"), "{}", silent.detail);
        let unreachable =
            verdict(target, &[None], 100, Some("No route to host".into())).unwrap_err();
        assert_eq!(unreachable.reason, Reason::Unreachable);
        // A reply wins over an earlier unreachable report.
        assert!(verdict(target, &[None, ms(1)], 50, Some("x".into())).is_ok());
    }

    fn icmp_check(target: IpAddr, count: u32) -> Check {
        Check {
            name: "icmp-test".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 1,
            placement: Placement::default(),
            probe: Probe::Icmp(IcmpProbe {
                target: Host::Ip(target),
                count,
                max_loss_percent: 0,
            }),
        }
    }

    async fn run(check: &Check) -> Outcome {
        let resolver = Resolver::from_system().unwrap();
        crate::probes::run(check, &resolver).await
    }

    /// Needs root (raw sockets), as the daemon does.
    #[tokio::test]
    async fn loopback_answers_every_echo() {
        let outcome = run(&icmp_check(IpAddr::V4(Ipv4Addr::LOCALHOST), 3)).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert!(
            outcome
                .detail
                .starts_with("3/3 replies from 127.0.0.1, 0% loss, rtt min/avg/max"),
            "{}",
            outcome.detail
        );
        // Two requests 200 ms apart, then the last reply at once.
        assert!(outcome.duration >= Duration::from_millis(400));
        assert!(
            outcome.duration < Duration::from_millis(1000),
            "{:?}",
            outcome.duration
        );
    }

    #[tokio::test]
    async fn ipv6_loopback_answers() {
        let outcome = run(&icmp_check(IpAddr::V6(Ipv6Addr::LOCALHOST), 2)).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert!(
            outcome.detail.starts_with("2/2 replies from ::1"),
            "{}",
            outcome.detail
        );
    }

    /// Concurrent checks of one host each see the other's replies on their raw sockets
    /// and must count only their own.
    #[tokio::test]
    async fn concurrent_runs_keep_their_replies_apart() {
        let check = icmp_check(IpAddr::V4(Ipv4Addr::LOCALHOST), 3);
        let (a, b) = tokio::join!(run(&check), run(&check));
        for outcome in [a, b] {
            assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
            assert!(
                outcome.detail.starts_with("3/3 replies"),
                "{}",
                outcome.detail
            );
        }
    }

    #[tokio::test]
    async fn short_timeout_packs_requests_closer() {
        let mut check = icmp_check(IpAddr::V4(Ipv4Addr::LOCALHOST), 5);
        check.timeout = Duration::from_millis(300);
        let outcome = run(&check).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert!(
            outcome.detail.starts_with("5/5 replies"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn unusable_interface_is_bind_error() {
        let mut check = icmp_check(IpAddr::V4(Ipv4Addr::LOCALHOST), 1);
        check.placement.interface = Some("siteward-nope0".into());
        let outcome = run(&check).await;
        assert_eq!(outcome.reason, Reason::BindError, "{}", outcome.detail);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = run_for(IpAddr::V4(Ipv4Addr::LOCALHOST)).parse_reply(&bytes);
            let _ = run_for(IpAddr::V6(Ipv6Addr::LOCALHOST)).parse_reply(&bytes);
        }
    }
}
