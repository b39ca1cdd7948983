//! Two IKE SAs talking to each other in memory: every exchange, both roles, and the
//! failures, with simulated time (no sleeps, no sockets).

use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::*;
use crate::crypto::auth::SigningKey;
use crate::crypto::certs::TrustAnchors;
use crate::identity::Identity;
use crate::proposal::{EspProposal, IkeProposal};

fn ts(net: &str) -> Vec<TrafficSelector> {
    vec![TrafficSelector::from_net(net.parse().unwrap())]
}

fn psk_config(psk: &str, local: &str, remote: &str, local_ts: &str, remote_ts: &str) -> SaConfig {
    SaConfig {
        proposals: vec![IkeProposal::parse("aes256gcm16-prfsha256-x25519").unwrap()],
        esp_proposals: vec![EspProposal::parse("aes256gcm16").unwrap()],
        local_id: Some(Identity::parse(local).unwrap()),
        remote_id: Some(Identity::parse(remote).unwrap()),
        local_auth: LocalAuth::Psk(Zeroizing::new(psk.as_bytes().to_vec())),
        remote_auth: RemoteAuth::Psk(Zeroizing::new(psk.as_bytes().to_vec())),
        local_ts: ts(local_ts),
        remote_ts: ts(remote_ts),
        dpd_delay: Some(Duration::from_secs(30)),
        ike_rekey_time: Duration::from_secs(4 * 3600),
        child_rekey_time: Duration::from_secs(3600),
        child_rekey_bytes: None,
        force_encap: false,
        fragmentation: true,
        retransmit: Retransmit::default(),
        half_open_timeout: Duration::from_secs(30),
    }
}

const PSK: &str = "correct horse battery staple";

fn site_a() -> SaConfig {
    psk_config(
        PSK,
        "a.example.net",
        "b.example.net",
        "10.1.0.0/16",
        "10.2.0.0/16",
    )
}

fn site_b() -> SaConfig {
    psk_config(
        PSK,
        "b.example.net",
        "a.example.net",
        "10.2.0.0/16",
        "10.1.0.0/16",
    )
}

/// What one side did, apart from sending.
#[derive(Default)]
struct Seen {
    children_up: Vec<NewChild>,
    children_down: Vec<(u32, u32)>,
    established: usize,
    closed: Vec<Option<Failure>>,
    child_failures: Vec<Failure>,
    path_changes: Vec<Path>,
    rekeyed: usize,
    retired: usize,
    initial_contact: usize,
}

struct Side {
    sa: IkeSa,
    seen: Seen,
}

/// An initiator and (once its first message arrives) a responder, joined by a lossless
/// wire that can be told to drop datagrams.
struct Pair {
    now: Instant,
    initiator: Side,
    responder: Option<Side>,
    responder_config: Arc<SaConfig>,
    /// Datagrams dropped and counted instead of delivered while > 0.
    drop_to_responder: usize,
    drop_to_initiator: usize,
    /// Everything put on the wire, by direction.
    sent_by_initiator: Vec<Vec<u8>>,
    sent_by_responder: Vec<Vec<u8>>,
    /// Answers the responder gave without creating an SA.
    refusals: usize,
}

fn initiator_path() -> Path {
    Path {
        local: "192.0.2.1:500".parse().unwrap(),
        remote: "192.0.2.2:500".parse().unwrap(),
    }
}

fn mirrored(path: Path) -> Path {
    Path {
        local: path.remote,
        remote: path.local,
    }
}

impl Pair {
    fn start(initiator: SaConfig, responder: SaConfig) -> Pair {
        let now = Instant::now();
        let sa = IkeSa::initiate(Arc::new(initiator), initiator_path(), now).unwrap();
        let mut pair = Pair {
            now,
            initiator: Side {
                sa,
                seen: Seen::default(),
            },
            responder: None,
            responder_config: Arc::new(responder),
            drop_to_responder: 0,
            drop_to_initiator: 0,
            sent_by_initiator: Vec::new(),
            sent_by_responder: Vec::new(),
            refusals: 0,
        };
        pair.run();
        pair
    }

    fn responder(&mut self) -> &mut Side {
        self.responder.as_mut().expect("the responder exists")
    }

    /// Delivers datagrams both ways until neither side has anything to say.
    fn run(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for output in self.initiator.sa.take_outputs() {
                if let Output::Send { path, datagram } = output {
                    moved = true;
                    self.sent_by_initiator.push(datagram.clone());
                    if self.drop_to_responder > 0 {
                        self.drop_to_responder -= 1;
                        continue;
                    }
                    self.deliver_to_responder(mirrored(path), &datagram);
                } else {
                    record(&mut self.initiator.seen, output);
                }
            }
            if let Some(responder) = &mut self.responder {
                for output in responder.sa.take_outputs() {
                    if let Output::Send { path, datagram } = output {
                        moved = true;
                        self.sent_by_responder.push(datagram.clone());
                        if self.drop_to_initiator > 0 {
                            self.drop_to_initiator -= 1;
                            continue;
                        }
                        self.initiator
                            .sa
                            .handle(mirrored(path), &datagram, self.now);
                    } else {
                        record(&mut responder.seen, output);
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the two SAs never fell silent");
    }

    fn deliver_to_responder(&mut self, path: Path, datagram: &[u8]) {
        match &mut self.responder {
            Some(responder) => responder.sa.handle(path, datagram, self.now),
            None => match IkeSa::respond(self.responder_config.clone(), path, datagram, self.now) {
                Ok(sa) => {
                    self.responder = Some(Side {
                        sa,
                        seen: Seen::default(),
                    })
                }
                Err(Refusal::Answer {
                    datagram: answer, ..
                }) => {
                    self.refusals += 1;
                    self.sent_by_responder.push(answer.clone());
                    self.initiator.sa.handle(mirrored(path), &answer, self.now);
                }
                Err(Refusal::Drop(why)) => panic!("responder dropped IKE_SA_INIT: {why}"),
            },
        }
    }

    /// Lets simulated time pass in steps, polling both sides at every deadline.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            let next = [
                self.initiator.sa.next_deadline(),
                self.responder.as_ref().and_then(|r| r.sa.next_deadline()),
            ]
            .into_iter()
            .flatten()
            .filter(|d| *d <= end)
            .min();
            let Some(next) = next else {
                break;
            };
            self.now = next.max(self.now);
            self.initiator.sa.poll(self.now);
            if let Some(responder) = &mut self.responder {
                responder.sa.poll(self.now);
            }
            self.run();
        }
        self.now = end;
        self.initiator.sa.poll(self.now);
        if let Some(responder) = &mut self.responder {
            responder.sa.poll(self.now);
        }
        self.run();
    }
}

fn record(seen: &mut Seen, output: Output) {
    match output {
        Output::Send { .. } => {}
        Output::ChildUp(child) => seen.children_up.push(*child),
        Output::ChildDown { spi_in, spi_out } => seen.children_down.push((spi_in, spi_out)),
        Output::Established => seen.established += 1,
        Output::PathChanged(path) => seen.path_changes.push(path),
        Output::InitialContact => seen.initial_contact += 1,
        Output::IkeRekeyed => seen.rekeyed += 1,
        Output::SpisRetired { .. } => seen.retired += 1,
        Output::ChildFailed(failure) => seen.child_failures.push(failure),
        Output::Closed { failure } => seen.closed.push(failure),
    }
}

/// The two ends of a CHILD_SA hold the same keys: what one seals the other opens.
fn assert_child_keys_match(a: &NewChild, b: &NewChild) {
    assert_eq!(a.spi_in, b.spi_out);
    assert_eq!(a.spi_out, b.spi_in);
    assert_eq!(a.suite, b.suite);
    for (seal, open) in [(&a.outbound, &b.inbound), (&b.outbound, &a.inbound)] {
        let aad = [0u8, 0, 1, 0, 0, 0, 0, 7];
        let iv = vec![9u8; seal.iv_len()];
        let plain = vec![0x45u8; 64];
        let mut data = plain.clone();
        let mut icv = vec![0u8; seal.icv_len()];
        seal.seal(&aad, &iv, &mut data, &mut icv).unwrap();
        open.open(&aad, &iv, &mut data, &icv)
            .expect("same keys both ends");
        assert_eq!(data, plain);
    }
}

#[test]
fn a_request_with_an_unknown_critical_payload_is_refused_whole() {
    let mut pair = established_pair(site_a(), site_b());
    // A Delete of the IKE SA, next to a critical payload the responder cannot know: the
    // message is refused (RFC 7296 §2.5) and the Delete is not carried out.
    let now = pair.now;
    pair.initiator.sa.request(
        ExchangeType::Informational,
        vec![
            Payload::Unknown {
                kind: 200,
                critical: true,
                data: vec![1, 2, 3],
            },
            Payload::Delete {
                protocol: crate::message::protocol::IKE,
                spis: Vec::new(),
            },
        ],
        Request::Dpd,
        now,
    );
    pair.run();
    let responder = pair.responder();
    assert_eq!(responder.sa.state(), State::Established);
    assert!(
        responder.seen.closed.is_empty(),
        "{:?}",
        responder.seen.closed
    );
    assert!(responder.seen.children_down.is_empty());
}

fn established_pair(initiator: SaConfig, responder: SaConfig) -> Pair {
    let pair = Pair::start(initiator, responder);
    assert_eq!(pair.initiator.sa.state(), State::Established);
    assert_eq!(
        pair.responder.as_ref().unwrap().sa.state(),
        State::Established
    );
    assert_eq!(pair.initiator.seen.children_up.len(), 1);
    assert_eq!(pair.responder.as_ref().unwrap().seen.children_up.len(), 1);
    assert_child_keys_match(
        &pair.initiator.seen.children_up[0],
        &pair.responder.as_ref().unwrap().seen.children_up[0],
    );
    pair
}

#[test]
fn psk_tunnel_comes_up_with_matching_child_keys() {
    let mut pair = established_pair(site_a(), site_b());
    let child = &pair.initiator.seen.children_up[0];
    assert_eq!(child.local_ts, ts("10.1.0.0/16"));
    assert_eq!(child.remote_ts, ts("10.2.0.0/16"));
    assert!(!child.encap);
    assert_eq!(pair.responder().seen.initial_contact, 1);
    assert_eq!(pair.initiator.seen.established, 1);
    // Four messages: IKE_SA_INIT and IKE_AUTH, nothing else.
    assert_eq!(pair.sent_by_initiator.len(), 2);
    assert_eq!(pair.sent_by_responder.len(), 2);
}

#[test]
fn every_configured_algorithm_set_comes_up() {
    for (ike, esp) in [
        ("aes256gcm16-prfsha256-x25519", "aes256gcm16"),
        ("aes256-sha256-modp2048", "aes256-sha256"),
        ("aes256gcm16-prfsha384-ecp384", "aes128gcm16"),
        ("aes128-sha512-prfsha512-ecp256", "aes128-sha384"),
    ] {
        let mut a = site_a();
        let mut b = site_b();
        for config in [&mut a, &mut b] {
            config.proposals = vec![IkeProposal::parse(ike).unwrap()];
            config.esp_proposals = vec![EspProposal::parse(esp).unwrap()];
        }
        let pair = established_pair(a, b);
        let status = pair.initiator.sa.status();
        assert_eq!(
            status.suite.unwrap().dh,
            IkeProposal::parse(ike).unwrap().dh[0],
            "{ike}"
        );
    }
}

#[test]
fn wrong_psk_fails_on_both_sides_and_installs_nothing() {
    let mut b = site_b();
    b.local_auth = LocalAuth::Psk(Zeroizing::new(b"another shared secret".to_vec()));
    b.remote_auth = RemoteAuth::Psk(Zeroizing::new(b"another shared secret".to_vec()));
    let mut pair = Pair::start(site_a(), b);
    assert_eq!(pair.initiator.sa.state(), State::Closed);
    assert_eq!(
        pair.initiator.seen.closed,
        vec![Some(Failure::AuthenticationRejected)]
    );
    let responder = pair.responder();
    assert_eq!(responder.sa.state(), State::Closed);
    assert!(matches!(
        responder.seen.closed.as_slice(),
        [Some(Failure::AuthenticationFailed(why))] if why.contains("pre-shared key")
    ));
    assert!(pair.initiator.seen.children_up.is_empty());
    assert!(pair.responder().seen.children_up.is_empty());
}

#[test]
fn unexpected_peer_identity_fails_authentication() {
    let mut a = site_a();
    a.remote_id = Some(Identity::parse("c.example.net").unwrap());
    let mut pair = Pair::start(a, site_b());
    assert!(matches!(
        pair.initiator.seen.closed.as_slice(),
        [Some(Failure::AuthenticationFailed(why))] if why.contains("c.example.net")
    ));
    assert!(pair.initiator.seen.children_up.is_empty());
    // The responder had installed its CHILD_SA; the initiator's notify closes it.
    assert_eq!(pair.responder().sa.state(), State::Closed);
}

#[test]
fn disjoint_ike_proposals_fail_with_no_proposal_chosen() {
    let mut b = site_b();
    b.proposals = vec![IkeProposal::parse("aes256-sha256-modp2048").unwrap()];
    let pair = Pair::start(site_a(), b);
    assert!(pair.responder.is_none(), "no state on the responder");
    assert_eq!(pair.refusals, 1);
    assert_eq!(
        pair.initiator.seen.closed,
        vec![Some(Failure::NoProposalChosen { ike: true })]
    );
}

#[test]
fn disjoint_esp_proposals_fail_and_install_nothing() {
    let mut b = site_b();
    b.esp_proposals = vec![EspProposal::parse("aes256-sha512").unwrap()];
    let mut pair = Pair::start(site_a(), b);
    assert!(pair.initiator.seen.children_up.is_empty());
    assert!(pair.responder().seen.children_up.is_empty());
    assert_eq!(
        pair.initiator.seen.closed,
        vec![Some(Failure::NoProposalChosen { ike: false })]
    );
    assert_eq!(
        pair.responder().seen.child_failures,
        vec![Failure::NoProposalChosen { ike: false }]
    );
    assert_eq!(pair.responder().sa.state(), State::Closed);
}

#[test]
fn disjoint_traffic_selectors_fail_with_ts_unacceptable() {
    let mut b = site_b();
    b.remote_ts = ts("10.9.0.0/16");
    let mut pair = Pair::start(site_a(), b);
    assert!(pair.initiator.seen.children_up.is_empty());
    assert!(pair.responder().seen.children_up.is_empty());
    assert_eq!(
        pair.initiator.seen.closed,
        vec![Some(Failure::TsUnacceptable)]
    );
    // The responder says why too, though its IKE SA was established.
    assert_eq!(
        pair.responder().seen.child_failures,
        vec![Failure::TsUnacceptable]
    );
}

#[test]
fn traffic_selectors_are_narrowed_to_the_responders() {
    let mut b = site_b();
    b.remote_ts = ts("10.1.2.0/24");
    let pair = established_pair(site_a(), b);
    assert_eq!(
        pair.initiator.seen.children_up[0].local_ts,
        ts("10.1.2.0/24")
    );
}

#[test]
fn invalid_ke_payload_makes_the_initiator_retry_with_the_peers_group() {
    let mut a = site_a();
    a.proposals = vec![IkeProposal::parse("aes256gcm16-prfsha256-x25519-ecp256").unwrap()];
    let mut b = site_b();
    b.proposals = vec![IkeProposal::parse("aes256gcm16-prfsha256-ecp256").unwrap()];
    let pair = established_pair(a, b);
    assert_eq!(pair.refusals, 1);
    assert_eq!(
        pair.initiator.sa.status().suite.unwrap().dh,
        crate::algorithms::DhGroup::Ecp256
    );
}

#[test]
fn lost_messages_are_retransmitted_and_duplicates_answered_once() {
    let a = site_a();
    let mut pair = Pair::start(a, site_b());
    assert_eq!(pair.initiator.sa.state(), State::Established);
    // Lose the responder's answer to a DPD: the initiator retransmits, the responder
    // answers the retransmission from its cache.
    pair.drop_to_initiator = 1;
    pair.initiator.sa.queue.push_back(Request::Dpd);
    pair.initiator.sa.flush_queue(pair.now);
    pair.run();
    let before = pair.sent_by_responder.len();
    pair.advance(Duration::from_secs(20));
    assert!(pair.sent_by_responder.len() > before);
    assert_eq!(pair.initiator.sa.state(), State::Established);
    assert!(pair.initiator.sa.pending.is_none());
}

/// The responder without DPD of its own, so everything the initiator sends is a request.
fn site_b_without_dpd() -> SaConfig {
    SaConfig {
        dpd_delay: None,
        ..site_b()
    }
}

#[test]
fn the_initiator_gives_up_on_a_silent_peer() {
    let mut pair = Pair::start(site_a(), site_b_without_dpd());
    pair.drop_to_responder = usize::MAX;
    pair.initiator.sa.close(pair.now);
    pair.run();
    pair.advance(Duration::from_secs(600));
    assert_eq!(pair.initiator.sa.state(), State::Closed);
    // 1 + 5 retransmissions of the Delete.
    let deletes = pair.sent_by_initiator.len() - 2;
    assert_eq!(deletes, 6);
}

#[test]
fn peer_unreachable_during_setup() {
    let now = Instant::now();
    let mut sa = IkeSa::initiate(Arc::new(site_a()), initiator_path(), now).unwrap();
    let mut sent = 0;
    let mut closed = None;
    let mut at = now;
    while let Some(deadline) = sa.next_deadline() {
        at = deadline;
        sa.poll(at);
        for output in sa.take_outputs() {
            match output {
                Output::Send { .. } => sent += 1,
                Output::Closed { failure } => closed = Some(failure),
                _ => {}
            }
        }
        if closed.is_some() {
            break;
        }
    }
    assert_eq!(closed, Some(Some(Failure::PeerUnreachable)));
    assert_eq!(sent, 6, "the first IKE_SA_INIT and five retransmissions");
    // 2 + 3.6 + 6.48 + 11.66 + 21 + 37.8 s
    let waited = at - now;
    assert!(
        waited > Duration::from_secs(80) && waited < Duration::from_secs(85),
        "{waited:?}"
    );
}

#[test]
fn dpd_declares_a_silent_peer_dead_within_two_delays() {
    let mut pair = Pair::start(site_a(), site_b());
    let start = pair.now;
    pair.drop_to_responder = usize::MAX;
    // Silence from 0 s: DPD goes out at 30 s and is given up at 60 s.
    pair.advance(Duration::from_secs(59));
    assert!(pair.initiator.seen.closed.is_empty());
    pair.advance(Duration::from_secs(2));
    assert_eq!(
        pair.initiator.seen.closed,
        vec![Some(Failure::DeadPeer)],
        "closed {:?} after the silence began",
        pair.now - start
    );
}

#[test]
fn dpd_keeps_a_live_peer() {
    let mut pair = Pair::start(site_a(), site_b());
    pair.advance(Duration::from_secs(600));
    assert_eq!(pair.initiator.sa.state(), State::Established);
    assert_eq!(pair.responder().sa.state(), State::Established);
    assert!(pair.initiator.seen.closed.is_empty());
    // A liveness check every 30 s of silence, answered.
    assert!(pair.sent_by_initiator.len() >= 2 + 600 / 31);
}

#[test]
fn esp_traffic_postpones_dpd() {
    let mut pair = Pair::start(site_a(), site_b_without_dpd());
    let sent = pair.sent_by_initiator.len();
    for _ in 0..10 {
        let now = pair.now + Duration::from_secs(10);
        pair.initiator.sa.note_inbound_traffic(now);
        pair.advance(Duration::from_secs(10));
    }
    assert_eq!(
        pair.sent_by_initiator.len(),
        sent,
        "no DPD while ESP arrives"
    );
}

fn rekey_child_from(initiator_side: bool) {
    let mut pair = established_pair(site_a(), site_b());
    let now = pair.now;
    if initiator_side {
        pair.initiator.sa.rekey_children(now);
    } else {
        pair.responder().sa.rekey_children(now);
    }
    pair.run();
    let (a, b) = (&pair.initiator.seen, &pair.responder.as_ref().unwrap().seen);
    assert_eq!(a.children_up.len(), 2);
    assert_eq!(b.children_up.len(), 2);
    let old_a = &a.children_up[0];
    let new_a = &a.children_up[1];
    let new_b = &b.children_up[1];
    assert_eq!(new_a.replaces, Some(old_a.spi_in));
    assert_eq!(new_b.replaces, Some(b.children_up[0].spi_in));
    assert_child_keys_match(new_a, new_b);
    assert_eq!(a.children_down, vec![(old_a.spi_in, old_a.spi_out)]);
    assert_eq!(b.children_down.len(), 1);
    assert_eq!(pair.initiator.sa.status().children.len(), 1);
    assert_eq!(pair.responder().sa.status().children.len(), 1);
}

#[test]
fn child_rekey_started_by_the_initiator() {
    rekey_child_from(true);
}

#[test]
fn child_rekey_started_by_the_responder() {
    rekey_child_from(false);
}

#[test]
fn child_rekey_with_pfs() {
    let mut a = site_a();
    let mut b = site_b();
    for config in [&mut a, &mut b] {
        config.esp_proposals = vec![EspProposal::parse("aes256gcm16-ecp256").unwrap()];
    }
    let mut pair = established_pair(a, b);
    let now = pair.now;
    pair.initiator.sa.rekey_children(now);
    pair.run();
    let new_a = &pair.initiator.seen.children_up[1];
    let new_b = &pair.responder.as_ref().unwrap().seen.children_up[1];
    assert_eq!(new_a.suite.dh, Some(crate::algorithms::DhGroup::Ecp256));
    assert_child_keys_match(new_a, new_b);
}

#[test]
fn simultaneous_child_rekeys_leave_one_child() {
    let mut pair = established_pair(site_a(), site_b());
    let now = pair.now;
    pair.initiator.sa.rekey_children(now);
    pair.responder().sa.rekey_children(now);
    pair.run();
    pair.advance(Duration::from_secs(5));
    let a = pair.initiator.sa.status().children;
    let b = pair.responder().sa.status().children;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(a[0].spi_in, b[0].spi_out);
}

#[test]
fn child_rekey_is_due_by_time_with_jitter() {
    let mut a = site_a();
    a.child_rekey_time = Duration::from_secs(100);
    let mut pair = established_pair(a, site_b());
    pair.advance(Duration::from_secs(89));
    assert_eq!(pair.initiator.seen.children_up.len(), 1);
    pair.advance(Duration::from_secs(11));
    assert_eq!(pair.initiator.seen.children_up.len(), 2);
}

#[test]
fn child_rekey_is_due_by_bytes() {
    let mut a = site_a();
    a.child_rekey_bytes = Some(1_000_000);
    let mut pair = established_pair(a, site_b());
    let spi = pair.initiator.seen.children_up[0].spi_in;
    pair.initiator.sa.note_child_bytes(spi, 999_999);
    pair.advance(Duration::from_secs(1));
    assert_eq!(pair.initiator.seen.children_up.len(), 1);
    pair.initiator.sa.note_child_bytes(spi, 1_000_000);
    pair.advance(Duration::from_secs(1));
    assert_eq!(pair.initiator.seen.children_up.len(), 2);
}

fn rekey_ike_from(initiator_side: bool) {
    let mut pair = established_pair(site_a(), site_b());
    let old_spis = pair.initiator.sa.spis();
    let now = pair.now;
    if initiator_side {
        pair.initiator.sa.rekey_ike(now);
    } else {
        pair.responder().sa.rekey_ike(now);
    }
    pair.run();
    let new_spis = pair.initiator.sa.spis();
    assert_ne!(old_spis, new_spis);
    assert_eq!(new_spis, pair.responder().sa.spis());
    assert_eq!(pair.initiator.seen.rekeyed, 1);
    assert_eq!(pair.initiator.seen.retired, 1);
    assert_eq!(pair.responder().seen.retired, 1);
    // CHILD_SAs untouched, and the new IKE SA works: rekey a child over it.
    assert!(pair.initiator.seen.children_down.is_empty());
    let now = pair.now;
    pair.initiator.sa.rekey_children(now);
    pair.run();
    assert_child_keys_match(
        &pair.initiator.seen.children_up[1],
        &pair.responder.as_ref().unwrap().seen.children_up[1],
    );
    assert_eq!(pair.initiator.sa.status().initiator, initiator_side);
}

#[test]
fn ike_rekey_started_by_the_initiator() {
    rekey_ike_from(true);
}

#[test]
fn ike_rekey_started_by_the_responder() {
    rekey_ike_from(false);
}

#[test]
fn close_deletes_on_both_sides() {
    let mut pair = established_pair(site_a(), site_b());
    let now = pair.now;
    pair.initiator.sa.close(now);
    pair.run();
    assert_eq!(pair.initiator.seen.closed, vec![None]);
    assert_eq!(
        pair.responder().seen.closed,
        vec![Some(Failure::DeletedByPeer)]
    );
}

#[test]
fn forced_encapsulation_moves_to_nat_t() {
    let mut a = site_a();
    a.force_encap = true;
    let mut pair = established_pair(a, site_b());
    let nat_t = initiator_path().to_nat_t();
    assert_eq!(pair.initiator.seen.path_changes, vec![nat_t]);
    assert!(pair.initiator.seen.children_up[0].encap);
    assert!(pair.responder().seen.children_up[0].encap);
    assert_eq!(pair.responder().sa.path(), mirrored(nat_t));
}

#[test]
fn a_half_open_sa_times_out() {
    let now = Instant::now();
    let request = {
        let mut sa = IkeSa::initiate(Arc::new(site_a()), initiator_path(), now).unwrap();
        match sa.take_outputs().remove(0) {
            Output::Send { datagram, .. } => datagram,
            other => panic!("{other:?}"),
        }
    };
    let mut responder = IkeSa::respond(
        Arc::new(site_b()),
        mirrored(initiator_path()),
        &request,
        now,
    )
    .unwrap();
    assert_eq!(responder.state(), State::HalfOpen);
    responder.poll(now + Duration::from_secs(31));
    assert!(responder.take_outputs().iter().any(|o| matches!(
        o,
        Output::Closed {
            failure: Some(Failure::HalfOpenTimeout)
        }
    )));
}

#[test]
fn failures_read_as_plain_words() {
    assert_eq!(
        Failure::AuthenticationRejected.to_string(),
        "AUTHENTICATION_FAILED: the peer rejected our authentication"
    );
    assert!(Failure::TsUnacceptable
        .to_string()
        .starts_with("TS_UNACCEPTABLE"));
    assert!(Failure::NoProposalChosen { ike: false }
        .to_string()
        .starts_with("NO_PROPOSAL_CHOSEN"));
    assert!(Failure::DeadPeer.to_string().contains("unreachable"));
}

mod certificates {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
        PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    };

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        pem: String,
    }

    fn ca(cn: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let pem = params.clone().self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// A leaf with `extra_sans` more DNS names (to make the certificate large).
    fn leaf(ca: &Ca, name: &str, extra_sans: usize) -> (Vec<u8>, String) {
        let mut sans = vec![name.to_string()];
        sans.extend((0..extra_sans).map(|i| format!("alias-{i}.{name}")));
        let mut params = CertificateParams::new(sans).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.der().to_vec(), key.serialize_pem())
    }

    fn cert_config(base: SaConfig, ca: &Ca, own: (Vec<u8>, String)) -> SaConfig {
        SaConfig {
            local_auth: LocalAuth::Cert {
                key: Box::new(SigningKey::from_pem(own.1.as_bytes()).unwrap()),
                chain: vec![crate::crypto::certs::PeerCert::from_der(own.0).unwrap()],
            },
            remote_auth: RemoteAuth::Cert(TrustAnchors::from_pem(ca.pem.as_bytes()).unwrap()),
            ..base
        }
    }

    #[test]
    fn certificate_tunnel_comes_up() {
        let ca = ca("Siteward Test CA");
        let a = cert_config(site_a(), &ca, leaf(&ca, "a.example.net", 0));
        let b = cert_config(site_b(), &ca, leaf(&ca, "b.example.net", 0));
        established_pair(a, b);
    }

    #[test]
    fn large_certificates_are_fragmented() {
        let ca = ca("Siteward Test CA");
        let a = cert_config(site_a(), &ca, leaf(&ca, "a.example.net", 60));
        let b = cert_config(site_b(), &ca, leaf(&ca, "b.example.net", 60));
        let pair = established_pair(a, b);
        assert!(
            pair.sent_by_initiator.len() > 2,
            "IKE_AUTH went in fragments"
        );
        for datagram in pair.sent_by_initiator.iter().chain(&pair.sent_by_responder) {
            assert!(datagram.len() <= FRAGMENT_DATAGRAM, "{}", datagram.len());
        }
    }

    #[test]
    fn untrusted_certificate_fails() {
        let ca_ours = ca("Siteward Test CA");
        let ca_other = ca("Someone Else's CA");
        let a = cert_config(site_a(), &ca_ours, leaf(&ca_other, "a.example.net", 0));
        let b = cert_config(site_b(), &ca_ours, leaf(&ca_ours, "b.example.net", 0));
        let mut pair = Pair::start(a, b);
        assert_eq!(
            pair.initiator.seen.closed,
            vec![Some(Failure::AuthenticationRejected)]
        );
        assert!(matches!(
            pair.responder().seen.closed.as_slice(),
            [Some(Failure::AuthenticationFailed(why))] if why.contains("certificate")
        ));
        assert!(pair.responder().seen.children_up.is_empty());
    }

    #[test]
    fn certificate_must_name_the_identity() {
        let ca = ca("Siteward Test CA");
        let mut a = cert_config(site_a(), &ca, leaf(&ca, "a.example.net", 0));
        // Claims to be c.example.net with a certificate for a.example.net.
        a.local_id = Some(Identity::parse("c.example.net").unwrap());
        let mut b = cert_config(site_b(), &ca, leaf(&ca, "b.example.net", 0));
        b.remote_id = None;
        let mut pair = Pair::start(a, b);
        assert!(matches!(
            pair.responder().seen.closed.as_slice(),
            [Some(Failure::AuthenticationFailed(why))] if why.contains("does not name")
        ));
    }
}
