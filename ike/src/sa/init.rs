//! IKE_SA_INIT and IKE_AUTH (RFC 7296 §1.2, §2.15, §2.23), initiator and responder.

use std::time::{Instant, SystemTime};

use zeroize::Zeroizing;

use super::nat::detection_hash;
use super::{
    error_notify, notifies, notify_payload, requested_group, ChildTerms, Exchange, Failure, IkeSa,
    Keys, LocalAuth, NewChild, Output, Path, Pending, Refusal, RemoteAuth, Request, State,
};
use crate::algorithms::DhGroup;
use crate::crypto::auth::{self, SignatureHash, AUTH_DIGITAL_SIGNATURE, AUTH_SHARED_KEY};
use crate::crypto::dh::DhPrivate;
use crate::crypto::keys::IkeKeys;
use crate::crypto::CryptoError;
use crate::identity::{id_type, Identity};
use crate::message::{
    self, notify, ExchangeType, IdPayload, Message, Payload, ProposalWire, TrafficSelector,
};
use crate::negotiate;
use crate::ts;

/// X.509 Certificate - Signature (RFC 7296 §3.6): the encoding of CERT and CERTREQ.
const CERT_ENCODING_X509: u8 = 4;
/// How often the initiator follows a COOKIE or INVALID_KE_PAYLOAD before giving up.
const MAX_INIT_ROUNDS: u8 = 3;

/// The initiator's IKE_SA_INIT in flight.
pub(super) struct InitiatorInit {
    dh: DhPrivate,
    ke: Vec<u8>,
    ni: Vec<u8>,
    cookie: Option<Vec<u8>>,
    rounds: u8,
    /// The request as sent: the initiator signs it in IKE_AUTH.
    request: Vec<u8>,
}

/// The initiator's IKE_AUTH in flight.
pub(super) struct AuthContext {
    child_spi_in: u32,
    /// The responder's IKE_SA_INIT message, which its AUTH signs.
    init_response: Vec<u8>,
}

/// The responder's IKE_SA_INIT data, kept until IKE_AUTH arrives.
pub(super) struct ResponderInit {
    request: Vec<u8>,
    pub(super) response: Vec<u8>,
}

pub(super) fn start_initiator(sa: &mut IkeSa, now: Instant) -> Result<(), Failure> {
    let group = sa
        .config
        .proposals
        .first()
        .and_then(|p| p.dh.first().copied())
        .ok_or_else(|| Failure::Local("no IKE proposal with a DH group".into()))?;
    let ni = sa.nonce();
    send_init_request(sa, group, ni, None, 0, now)
}

fn send_init_request(
    sa: &mut IkeSa,
    group: DhGroup,
    ni: Vec<u8>,
    cookie: Option<Vec<u8>>,
    rounds: u8,
    now: Instant,
) -> Result<(), Failure> {
    let (dh, ke) = DhPrivate::generate(group).map_err(|e| Failure::Local(e.to_string()))?;
    send_init(sa, dh, ke, ni, cookie, rounds, now);
    Ok(())
}

/// Sends IKE_SA_INIT with key share `ke` (of `dh`) and nonce `ni`, behind `cookie` if the
/// responder asked for one, and waits for the answer.
fn send_init(
    sa: &mut IkeSa,
    dh: DhPrivate,
    ke: Vec<u8>,
    ni: Vec<u8>,
    cookie: Option<Vec<u8>>,
    rounds: u8,
    now: Instant,
) {
    let mut payloads = Vec::new();
    if let Some(cookie) = &cookie {
        // RFC 7296 §2.6: the cookie goes first.
        payloads.push(notify_payload(notify::COOKIE, cookie));
    }
    payloads.push(Payload::Sa(negotiate::ike_offer(
        &sa.config.proposals,
        None,
    )));
    payloads.push(Payload::Ke {
        group: dh.group().id(),
        data: ke.clone(),
    });
    payloads.push(Payload::Nonce(ni.clone()));
    payloads.extend(nat_detection(sa, sa.spi_i, 0));
    if sa.config.fragmentation {
        payloads.push(notify_payload(notify::IKEV2_FRAGMENTATION_SUPPORTED, &[]));
    }
    payloads.push(signature_hashes_notify());
    let request = Message {
        spi_i: sa.spi_i,
        spi_r: 0,
        exchange: ExchangeType::IkeSaInit,
        initiator: true,
        response: false,
        message_id: 0,
        payloads,
    }
    .encode();
    sa.send(request.clone());
    sa.pending = Some(Pending {
        message_id: 0,
        datagrams: vec![request.clone()],
        request: Request::Setup,
        sent: 1,
        deadline: now + sa.config.retransmit.wait(0),
        give_up: None,
    });
    sa.state = State::InitSent;
    sa.exchange = Exchange::Init(Box::new(InitiatorInit {
        dh,
        ke,
        ni,
        cookie,
        rounds,
        request,
    }));
}

/// NAT_DETECTION_SOURCE_IP and _DESTINATION_IP for the current path. With forced
/// encapsulation the source hash is random, so the peer sees a NAT (RFC 7296 §2.23 allows
/// it; strongSwan's `encap = yes` does the same).
fn nat_detection(sa: &IkeSa, spi_i: u64, spi_r: u64) -> Vec<Payload> {
    let source = if sa.config.force_encap {
        sa.nonce()[..20].to_vec()
    } else {
        detection_hash(spi_i, spi_r, sa.path.local)
    };
    vec![
        notify_payload(notify::NAT_DETECTION_SOURCE_IP, &source),
        notify_payload(
            notify::NAT_DETECTION_DESTINATION_IP,
            &detection_hash(spi_i, spi_r, sa.path.remote),
        ),
    ]
}

/// Whether the peer's NAT detection notifies show a NAT between us. `arrival` is the path
/// the message came in on (its remote is the peer's address as we see it).
fn nat_detected(message: &Message, spi_i: u64, spi_r: u64, arrival: Path) -> bool {
    let sources: Vec<&[u8]> = notifies(message)
        .filter(|n| n.kind == notify::NAT_DETECTION_SOURCE_IP)
        .map(|n| n.data.as_slice())
        .collect();
    let destination = notifies(message)
        .find(|n| n.kind == notify::NAT_DETECTION_DESTINATION_IP)
        .map(|n| n.data.as_slice());
    let (Some(destination), false) = (destination, sources.is_empty()) else {
        // A peer that does not do NAT detection: assume none.
        return false;
    };
    let peer_seen = detection_hash(spi_i, spi_r, arrival.remote);
    let we_are_seen = detection_hash(spi_i, spi_r, arrival.local);
    !sources.contains(&peer_seen.as_slice()) || destination != we_are_seen.as_slice()
}

fn signature_hashes_notify() -> Payload {
    let mut data = Vec::new();
    for hash in SignatureHash::ALL {
        data.extend_from_slice(&hash.id().to_be_bytes());
    }
    notify_payload(notify::SIGNATURE_HASH_ALGORITHMS, &data)
}

fn peer_signature_hashes(message: &Message) -> Vec<SignatureHash> {
    notifies(message)
        .filter(|n| n.kind == notify::SIGNATURE_HASH_ALGORITHMS)
        .flat_map(|n| n.data.chunks_exact(2))
        .filter_map(|pair| SignatureHash::from_id(u16::from_be_bytes([pair[0], pair[1]])))
        .collect()
}

fn peer_supports_fragmentation(message: &Message) -> bool {
    notifies(message).any(|n| n.kind == notify::IKEV2_FRAGMENTATION_SUPPORTED)
}

pub(super) fn handle_init_response(sa: &mut IkeSa, path: Path, datagram: &[u8], now: Instant) {
    let Ok(message) = message::decode(datagram) else {
        return;
    };
    if message.spi_i != sa.spi_i || message.message_id != 0 || message.initiator {
        return;
    }
    let Exchange::Init(init) = std::mem::replace(&mut sa.exchange, Exchange::None) else {
        return;
    };
    let init = *init;
    if let Some(cookie) = notifies(&message).find(|n| n.kind == notify::COOKIE) {
        if init.rounds < MAX_INIT_ROUNDS && !cookie.data.is_empty() && cookie.data.len() <= 64 {
            let cookie = cookie.data.clone();
            resend_with_cookie(sa, init, cookie, now);
        } else {
            sa.exchange = Exchange::Init(Box::new(init));
        }
        return;
    }
    if let Some(invalid_ke) = notifies(&message).find(|n| n.kind == notify::INVALID_KE_PAYLOAD) {
        let acceptable = requested_group(invalid_ke).filter(|g| {
            *g != init.dh.group() && sa.config.proposals.iter().any(|p| p.dh.contains(g))
        });
        match acceptable {
            Some(group) if init.rounds < MAX_INIT_ROUNDS => {
                sa.pending = None;
                if let Err(failure) =
                    send_init_request(sa, group, init.ni, init.cookie, init.rounds + 1, now)
                {
                    sa.finish(Some(failure));
                }
            }
            _ => {
                sa.pending = None;
                sa.finish(Some(Failure::NoProposalChosen { ike: true }));
            }
        }
        return;
    }
    sa.pending = None;
    if let Some(error) = error_notify(&message) {
        sa.finish(Some(Failure::from_notify(error.kind, true)));
        return;
    }
    if let Err(failure) = complete_init(sa, init, &message, datagram, path, now) {
        sa.finish(Some(failure));
    }
}

/// The same request as before (same key share and nonce), with the cookie first.
fn resend_with_cookie(sa: &mut IkeSa, init: InitiatorInit, cookie: Vec<u8>, now: Instant) {
    let InitiatorInit {
        dh, ke, ni, rounds, ..
    } = init;
    send_init(sa, dh, ke, ni, Some(cookie), rounds + 1, now);
}

fn single_payload<'a, T>(
    message: &'a Message,
    what: &str,
    pick: impl Fn(&'a Payload) -> Option<T>,
) -> Result<T, Failure> {
    message
        .payloads
        .iter()
        .find_map(pick)
        .ok_or_else(|| Failure::Protocol(format!("{:?} without {what} payload", message.exchange)))
}

/// The initiator's half after the responder's IKE_SA_INIT: keys, NAT-T, and IKE_AUTH.
fn complete_init(
    sa: &mut IkeSa,
    init: InitiatorInit,
    message: &Message,
    datagram: &[u8],
    path: Path,
    now: Instant,
) -> Result<(), Failure> {
    let answer = single_payload(message, "SA", |p| match p {
        Payload::Sa(proposals) => Some(proposals.as_slice()),
        _ => None,
    })?;
    let (suite, _) = negotiate::accept_ike(&sa.config.proposals, answer)
        .map_err(|e| Failure::Protocol(format!("the responder's IKE proposal: {e}")))?;
    let (group, ke) = single_payload(message, "KE", |p| match p {
        Payload::Ke { group, data } => Some((*group, data.as_slice())),
        _ => None,
    })?;
    if group != suite.dh.id() || suite.dh != init.dh.group() {
        return Err(Failure::Protocol(format!(
            "the responder chose DH group {} but sent a key share for {group}",
            suite.dh.id()
        )));
    }
    let nr = single_payload(message, "Nonce", |p| match p {
        Payload::Nonce(n) => Some(n.clone()),
        _ => None,
    })?;
    check_nonce(&nr)?;
    if message.spi_r == 0 {
        return Err(Failure::Protocol(
            "IKE_SA_INIT response with a zero SPI".into(),
        ));
    }
    let shared = init
        .dh
        .agree(ke)
        .map_err(|e| Failure::Protocol(format!("the responder's key share: {e}")))?;
    let spi_i = sa.spi_i;
    let spi_r = message.spi_r;
    let ike_keys = IkeKeys::derive(&suite, &shared, &init.ni, &nr, spi_i, spi_r);
    let (outbound, inbound) = ike_keys
        .transforms(&suite, true)
        .map_err(|e| Failure::Local(e.to_string()))?;
    sa.spi_r = spi_r;
    sa.peer_fragmentation = peer_supports_fragmentation(message);
    sa.peer_hashes = peer_signature_hashes(message);
    if sa.config.force_encap || nat_detected(message, spi_i, spi_r, path) {
        sa.nat_t = true;
        if !sa.path.is_nat_t() {
            sa.path = sa.path.to_nat_t();
            sa.outputs.push(Output::PathChanged(sa.path));
        }
    }
    sa.keys = Some(Keys {
        // IKE_SA_INIT took message ID 0.
        next_request_id: 1,
        ..Keys::new((spi_i, spi_r), true, suite, ike_keys, (outbound, inbound))
    });
    sa.ni = init.ni;
    sa.nr = nr;
    send_auth_request(sa, &init.request, datagram.to_vec(), now)
}

/// Our identity as the ID payload carries it. A DN that is our certificate's subject
/// goes out as the certificate's own DER, so the peer compares exactly what the
/// certificate says; without a configured identity, the certificate's subject or our
/// address is used.
fn our_id_payload(sa: &IkeSa) -> IdPayload {
    let subject = match &sa.config.local_auth {
        LocalAuth::Cert { chain, .. } => chain.first().map(|cert| cert.subject_der().to_vec()),
        LocalAuth::Psk(_) => None,
    };
    match (&sa.config.local_id, subject) {
        (None, Some(subject)) => IdPayload {
            id_type: id_type::DER_ASN1_DN,
            data: subject,
        },
        (Some(id @ Identity::Dn(_)), Some(subject))
            if Identity::from_wire(id_type::DER_ASN1_DN, &subject)
                .ok()
                .as_ref()
                == Some(id) =>
        {
            IdPayload {
                id_type: id_type::DER_ASN1_DN,
                data: subject,
            }
        }
        (Some(id), _) => {
            let (id_type, data) = id.to_wire();
            IdPayload { id_type, data }
        }
        (None, None) => {
            let id = match sa.path.local.ip() {
                std::net::IpAddr::V4(ip) => Identity::Ipv4(ip),
                std::net::IpAddr::V6(ip) => Identity::Ipv6(ip),
            };
            let (id_type, data) = id.to_wire();
            IdPayload { id_type, data }
        }
    }
}

/// The octets an AUTH payload signs (RFC 7296 §2.15): the signer's IKE_SA_INIT message,
/// the other side's nonce, and prf(SK_p, ID) with the signer's SK_pi or SK_pr.
fn auth_octets(
    sa: &IkeSa,
    init_message: &[u8],
    by_initiator: bool,
    id: &IdPayload,
) -> Result<Vec<u8>, Failure> {
    let keys = sa.keys()?;
    let (nonce, sk_p) = if by_initiator {
        (&sa.nr, &keys.ike_keys.sk_pi)
    } else {
        (&sa.ni, &keys.ike_keys.sk_pr)
    };
    Ok(auth::signed_octets(
        keys.suite.prf,
        init_message,
        nonce,
        sk_p,
        &id.body(),
    ))
}

/// Our AUTH payload over `octets`, plus the CERT payloads that go with it.
fn our_auth(sa: &IkeSa, octets: &[u8]) -> Result<(Vec<Payload>, Payload), Failure> {
    let keys = sa.keys()?;
    match &sa.config.local_auth {
        LocalAuth::Psk(psk) => Ok((
            Vec::new(),
            Payload::Auth {
                method: AUTH_SHARED_KEY,
                data: auth::psk_auth(keys.suite.prf, psk, octets),
            },
        )),
        LocalAuth::Cert { key, chain } => {
            let hashes = if sa.peer_hashes.is_empty() {
                vec![SignatureHash::Sha256]
            } else {
                sa.peer_hashes.clone()
            };
            let data = key
                .sign(octets, &hashes)
                .map_err(|e| Failure::Local(format!("signing AUTH: {e}")))?;
            let certs = chain
                .iter()
                .map(|cert| Payload::Cert {
                    encoding: CERT_ENCODING_X509,
                    data: cert.der().to_vec(),
                })
                .collect();
            Ok((
                certs,
                Payload::Auth {
                    method: AUTH_DIGITAL_SIGNATURE,
                    data,
                },
            ))
        }
    }
}

fn certreq_payload(sa: &IkeSa) -> Option<Payload> {
    match &sa.config.remote_auth {
        RemoteAuth::Cert(anchors) => Some(Payload::CertReq {
            encoding: CERT_ENCODING_X509,
            data: anchors.certreq_data(),
        }),
        RemoteAuth::Psk(_) => None,
    }
}

fn send_auth_request(
    sa: &mut IkeSa,
    init_request: &[u8],
    init_response: Vec<u8>,
    now: Instant,
) -> Result<(), Failure> {
    let idi = our_id_payload(sa);
    let octets = auth_octets(sa, init_request, true, &idi)?;
    let (certs, auth_payload) = our_auth(sa, &octets)?;
    let child_spi_in = sa.random_child_spi();
    let mut payloads = vec![Payload::IdI(idi)];
    payloads.extend(certs);
    payloads.extend(certreq_payload(sa));
    if let Some(remote_id) = &sa.config.remote_id {
        let (id_type, data) = remote_id.to_wire();
        payloads.push(Payload::IdR(IdPayload { id_type, data }));
    }
    payloads.push(auth_payload);
    payloads.push(notify_payload(notify::INITIAL_CONTACT, &[]));
    payloads.push(Payload::Sa(negotiate::esp_offer(
        &sa.config.esp_proposals,
        child_spi_in,
        false,
    )));
    payloads.push(Payload::TsI(sa.config.local_ts.clone()));
    payloads.push(Payload::TsR(sa.config.remote_ts.clone()));
    sa.state = State::AuthSent;
    sa.request(ExchangeType::IkeAuth, payloads, Request::Setup, now);
    sa.exchange = Exchange::Auth(Box::new(AuthContext {
        child_spi_in,
        init_response,
    }));
    Ok(())
}

fn check_nonce(nonce: &[u8]) -> Result<(), Failure> {
    if !(16..=256).contains(&nonce.len()) {
        return Err(Failure::Protocol(format!(
            "nonce of {} bytes (RFC 7296 requires 16 to 256)",
            nonce.len()
        )));
    }
    Ok(())
}

/// Checks the peer's identity and AUTH payload. `octets` are what its AUTH must cover.
fn verify_peer(
    sa: &IkeSa,
    message: &Message,
    id: &IdPayload,
    octets: &[u8],
) -> Result<Identity, Failure> {
    let keys = sa.keys()?;
    let identity = Identity::from_wire(id.id_type, &id.data)
        .map_err(|e| Failure::AuthenticationFailed(format!("the peer's identity: {e}")))?;
    if let Some(expected) = &sa.config.remote_id {
        if *expected != identity {
            return Err(Failure::AuthenticationFailed(format!(
                "the peer identifies as {identity}, expected {expected}"
            )));
        }
    }
    let (method, data) = single_payload(message, "AUTH", |p| match p {
        Payload::Auth { method, data } => Some((*method, data.as_slice())),
        _ => None,
    })
    .map_err(|_| Failure::AuthenticationFailed("no AUTH payload".into()))?;
    match &sa.config.remote_auth {
        RemoteAuth::Psk(psk) => {
            if method != AUTH_SHARED_KEY {
                return Err(Failure::AuthenticationFailed(format!(
                    "the peer used AUTH method {method}, this tunnel expects a pre-shared key"
                )));
            }
            auth::verify_psk(keys.suite.prf, psk, octets, data)
                .map_err(|_| Failure::AuthenticationFailed("pre-shared key mismatch".into()))?;
        }
        RemoteAuth::Cert(anchors) => {
            if method != AUTH_DIGITAL_SIGNATURE {
                return Err(Failure::AuthenticationFailed(format!(
                    "the peer used AUTH method {method}, this tunnel expects a certificate signature (14)"
                )));
            }
            let mut certs = message.payloads.iter().filter_map(|p| match p {
                Payload::Cert {
                    encoding: CERT_ENCODING_X509,
                    data,
                } => Some(data.clone()),
                _ => None,
            });
            let end_entity = certs.next().ok_or_else(|| {
                Failure::AuthenticationFailed("the peer sent no certificate".into())
            })?;
            let intermediates: Vec<Vec<u8>> = certs.collect();
            let cert = anchors
                .verify(&end_entity, &intermediates, SystemTime::now())
                .map_err(|e| {
                    Failure::AuthenticationFailed(match e {
                        CryptoError::Certificate(why) => why,
                        other => format!("the peer's certificate: {other}"),
                    })
                })?;
            if !cert.matches(&identity) {
                return Err(Failure::AuthenticationFailed(format!(
                    "the peer's certificate does not name its identity {identity}"
                )));
            }
            auth::verify_signature(&cert, data, octets).map_err(|e| {
                Failure::AuthenticationFailed(format!("the peer's AUTH signature: {e}"))
            })?;
        }
    }
    Ok(identity)
}

pub(super) fn handle_auth_response(
    sa: &mut IkeSa,
    context: AuthContext,
    message: Message,
    now: Instant,
) {
    let has_auth = message
        .payloads
        .iter()
        .any(|p| matches!(p, Payload::Auth { .. }));
    if !has_auth {
        let failure = match error_notify(&message).map(|n| n.kind) {
            Some(notify::AUTHENTICATION_FAILED) => Failure::AuthenticationRejected,
            Some(kind) => Failure::from_notify(kind, false),
            None => Failure::Protocol("IKE_AUTH response without AUTH".into()),
        };
        sa.finish(Some(failure));
        return;
    }
    let verified = (|| {
        let idr = single_payload(&message, "IDr", |p| match p {
            Payload::IdR(id) => Some(id.clone()),
            _ => None,
        })?;
        let octets = auth_octets(sa, &context.init_response, false, &idr)?;
        verify_peer(sa, &message, &idr, &octets)
    })();
    if let Err(failure) = verified {
        // Tell the responder (RFC 7296 §2.21.2), without waiting for an answer.
        sa.request(
            ExchangeType::Informational,
            vec![notify_payload(notify::AUTHENTICATION_FAILED, &[])],
            Request::Setup,
            now,
        );
        sa.finish(Some(failure));
        return;
    }
    sa.mark_established(now);
    match initiator_child(sa, &context, &message) {
        Ok(child) => sa.install_child(child, now),
        Err(failure) => {
            // The IKE SA is up but carries nothing: say why, and close it.
            sa.failure = Some(failure);
            sa.close(now);
        }
    }
}

fn child_failure(message: &Message) -> Option<Failure> {
    error_notify(message).map(|n| Failure::from_notify(n.kind, false))
}

fn initiator_child(
    sa: &IkeSa,
    context: &AuthContext,
    message: &Message,
) -> Result<NewChild, Failure> {
    if let Some(failure) = child_failure(message) {
        return Err(failure);
    }
    let keys = sa.keys()?;
    let answer = single_payload(message, "SA", |p| match p {
        Payload::Sa(proposals) => Some(proposals.as_slice()),
        _ => None,
    })?;
    let (suite, spi_out) = negotiate::accept_esp(&sa.config.esp_proposals, answer, false)
        .map_err(|e| Failure::Protocol(format!("the responder's ESP proposal: {e}")))?;
    let (tsi, tsr) = traffic_selectors(message)?;
    if !ts::is_subset(&tsi, &sa.config.local_ts) || !ts::is_subset(&tsr, &sa.config.remote_ts) {
        return Err(Failure::Protocol(
            "the responder widened the traffic selectors".into(),
        ));
    }
    let terms = ChildTerms {
        spi_in: context.child_spi_in,
        spi_out,
        suite,
        local_ts: tsi,
        remote_ts: tsr,
        replaces: None,
    };
    sa.keyed_child(keys, terms, None, (&sa.ni, &sa.nr), true)
        .map_err(|e| Failure::Local(e.to_string()))
}

pub(super) fn traffic_selectors(
    message: &Message,
) -> Result<(Vec<TrafficSelector>, Vec<TrafficSelector>), Failure> {
    let tsi = single_payload(message, "TSi", |p| match p {
        Payload::TsI(ts) => Some(ts.clone()),
        _ => None,
    })?;
    let tsr = single_payload(message, "TSr", |p| match p {
        Payload::TsR(ts) => Some(ts.clone()),
        _ => None,
    })?;
    Ok((tsi, tsr))
}

/// The responder's IKE_SA_INIT: choose, answer, derive keys.
pub(super) fn respond_init(sa: &mut IkeSa, request: &[u8], now: Instant) -> Result<(), Refusal> {
    let message = message::decode(request).map_err(|e| Refusal::Drop(e.to_string()))?;
    if message.exchange != ExchangeType::IkeSaInit
        || message.response
        || !message.initiator
        || message.message_id != 0
        || message.spi_i == 0
        || message.spi_r != 0
    {
        return Err(Refusal::Drop("not an IKE_SA_INIT request".into()));
    }
    let refuse = |kind: u16, data: &[u8], failure: Option<Failure>| Refusal::Answer {
        datagram: Message {
            spi_i: message.spi_i,
            spi_r: 0,
            exchange: ExchangeType::IkeSaInit,
            initiator: false,
            response: true,
            message_id: 0,
            payloads: vec![notify_payload(kind, data)],
        }
        .encode(),
        failure,
    };
    let offered: &[ProposalWire] = single_payload(&message, "SA", |p| match p {
        Payload::Sa(proposals) => Some(proposals.as_slice()),
        _ => None,
    })
    .map_err(|e| Refusal::Drop(e.to_string()))?;
    let Ok((suite, answer)) = negotiate::select_ike(&sa.config.proposals, offered, None) else {
        return Err(refuse(
            notify::NO_PROPOSAL_CHOSEN,
            &[],
            Some(Failure::NoProposalChosen { ike: true }),
        ));
    };
    let (group, ke) = single_payload(&message, "KE", |p| match p {
        Payload::Ke { group, data } => Some((*group, data.clone())),
        _ => None,
    })
    .map_err(|e| Refusal::Drop(e.to_string()))?;
    if group != suite.dh.id() {
        return Err(refuse(
            notify::INVALID_KE_PAYLOAD,
            &suite.dh.id().to_be_bytes(),
            None,
        ));
    }
    let ni = single_payload(&message, "Nonce", |p| match p {
        Payload::Nonce(n) => Some(n.clone()),
        _ => None,
    })
    .map_err(|e| Refusal::Drop(e.to_string()))?;
    check_nonce(&ni).map_err(|e| Refusal::Drop(e.to_string()))?;
    let (dh, our_ke) = DhPrivate::generate(suite.dh).map_err(|e| Refusal::Drop(e.to_string()))?;
    let shared: Zeroizing<Vec<u8>> = dh
        .agree(&ke)
        .map_err(|e| Refusal::Drop(format!("the initiator's key share: {e}")))?;
    sa.spi_i = message.spi_i;
    sa.spi_r = sa.random_spi();
    let nr = sa.nonce();
    let ike_keys = IkeKeys::derive(&suite, &shared, &ni, &nr, sa.spi_i, sa.spi_r);
    let (outbound, inbound) = ike_keys
        .transforms(&suite, false)
        .map_err(|e| Refusal::Drop(e.to_string()))?;
    sa.nat_t =
        sa.config.force_encap || sa.path.is_nat_t() || nat_detected(&message, sa.spi_i, 0, sa.path);
    sa.peer_fragmentation = peer_supports_fragmentation(&message);
    sa.peer_hashes = peer_signature_hashes(&message);
    let mut payloads = vec![
        Payload::Sa(vec![answer]),
        Payload::Ke {
            group: suite.dh.id(),
            data: our_ke,
        },
        Payload::Nonce(nr.clone()),
    ];
    payloads.extend(nat_detection(sa, sa.spi_i, sa.spi_r));
    payloads.extend(certreq_payload(sa));
    if sa.config.fragmentation && sa.peer_fragmentation {
        payloads.push(notify_payload(notify::IKEV2_FRAGMENTATION_SUPPORTED, &[]));
    }
    payloads.push(signature_hashes_notify());
    let response = Message {
        spi_i: sa.spi_i,
        spi_r: sa.spi_r,
        exchange: ExchangeType::IkeSaInit,
        initiator: false,
        response: true,
        message_id: 0,
        payloads,
    }
    .encode();
    sa.send(response.clone());
    sa.keys = Some(Keys {
        // IKE_SA_INIT took message ID 0.
        next_peer_id: 1,
        ..Keys::new(
            (sa.spi_i, sa.spi_r),
            false,
            suite,
            ike_keys,
            (outbound, inbound),
        )
    });
    sa.ni = ni;
    sa.nr = nr;
    sa.responder_init = Some(Box::new(ResponderInit {
        request: request.to_vec(),
        response,
    }));
    sa.state = State::HalfOpen;
    sa.created = now;
    Ok(())
}

/// The responder's IKE_AUTH: verify the initiator, answer with our AUTH and the CHILD_SA.
pub(super) fn handle_auth_request(sa: &mut IkeSa, message: &Message, now: Instant) -> Vec<Payload> {
    let Some(init) = sa.responder_init.take() else {
        return vec![notify_payload(notify::INVALID_SYNTAX, &[])];
    };
    let verified = (|| {
        let idi = single_payload(message, "IDi", |p| match p {
            Payload::IdI(id) => Some(id.clone()),
            _ => None,
        })?;
        let octets = auth_octets(sa, &init.request, true, &idi)?;
        verify_peer(sa, message, &idi, &octets)
    })();
    if let Err(failure) = verified {
        sa.failure = Some(failure);
        sa.state = State::Closing;
        return vec![notify_payload(notify::AUTHENTICATION_FAILED, &[])];
    }
    let idr = our_id_payload(sa);
    let ours =
        auth_octets(sa, &init.response, false, &idr).and_then(|octets| our_auth(sa, &octets));
    let (certs, auth_payload) = match ours {
        Ok(ours) => ours,
        Err(failure) => {
            sa.failure = Some(failure);
            sa.state = State::Closing;
            return vec![notify_payload(notify::AUTHENTICATION_FAILED, &[])];
        }
    };
    if notifies(message).any(|n| n.kind == notify::INITIAL_CONTACT) {
        sa.outputs.push(Output::InitialContact);
    }
    sa.mark_established(now);
    let mut payloads = vec![Payload::IdR(idr)];
    payloads.extend(certs);
    payloads.push(auth_payload);
    match responder_child(sa, message, &sa.ni, &sa.nr, None) {
        Ok((child, answer)) => {
            let tsi = child.remote_ts.clone();
            let tsr = child.local_ts.clone();
            payloads.push(Payload::Sa(vec![answer]));
            payloads.push(Payload::TsI(tsi));
            payloads.push(Payload::TsR(tsr));
            sa.install_child(child, now);
        }
        Err((failure, kind)) => {
            sa.child_failed(failure);
            payloads.push(notify_payload(kind, &[]));
        }
    }
    payloads
}

/// Chooses and keys a CHILD_SA the peer asked for, in IKE_AUTH or CREATE_CHILD_SA.
/// `ni`/`nr` are the exchange's nonces, `pfs` its DH group and shared secret. Errors carry
/// the notify to answer with.
pub(super) fn responder_child(
    sa: &IkeSa,
    message: &Message,
    ni: &[u8],
    nr: &[u8],
    pfs: Option<(DhGroup, &[u8])>,
) -> Result<(NewChild, ProposalWire), (Failure, u16)> {
    let protocol = |why: String| (Failure::Protocol(why), notify::INVALID_SYNTAX);
    let keys = sa.keys.as_ref().ok_or_else(|| protocol("no keys".into()))?;
    let offered = single_payload(message, "SA", |p| match p {
        Payload::Sa(proposals) => Some(proposals.as_slice()),
        _ => None,
    })
    .map_err(|e| protocol(e.to_string()))?;
    let spi_in = sa.random_child_spi();
    let (suite, spi_out, answer) = negotiate::select_esp(
        &sa.config.esp_proposals,
        offered,
        spi_in,
        pfs.map(|(group, _)| group),
    )
    .map_err(|_| {
        (
            Failure::NoProposalChosen { ike: false },
            notify::NO_PROPOSAL_CHOSEN,
        )
    })?;
    let (offered_tsi, offered_tsr) =
        traffic_selectors(message).map_err(|e| protocol(e.to_string()))?;
    let (tsi, tsr) = ts::narrow(
        &sa.config.local_ts,
        &sa.config.remote_ts,
        &offered_tsi,
        &offered_tsr,
    )
    .ok_or((Failure::TsUnacceptable, notify::TS_UNACCEPTABLE))?;
    let terms = ChildTerms {
        spi_in,
        spi_out,
        suite,
        local_ts: tsr,
        remote_ts: tsi,
        replaces: None,
    };
    let child = sa
        .keyed_child(keys, terms, pfs.map(|(_, shared)| shared), (ni, nr), false)
        .map_err(|e| (Failure::Local(e.to_string()), notify::NO_PROPOSAL_CHOSEN))?;
    Ok((child, answer))
}
