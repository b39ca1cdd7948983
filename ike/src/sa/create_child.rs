//! CREATE_CHILD_SA (RFC 7296 §1.3, §2.8, §2.17, §2.18): rekeying a CHILD_SA (make before
//! break: the new SA carries traffic before the old one is deleted), creating one, and
//! rekeying the IKE SA, in both roles.

use std::time::{Duration, Instant};

use super::init::{responder_child, traffic_selectors};
use super::{
    error_notify, notifies, notify_payload, requested_group, ChildState, ChildTerms, Exchange,
    Failure, IkeSa, Keys, Pending, Request, Retiring, RETIRE_TIMEOUT,
};
use crate::algorithms::DhGroup;
use crate::crypto::dh::DhPrivate;
use crate::crypto::keys::IkeKeys;
use crate::message::{notify, protocol, ExchangeType, Message, Notify, Payload};
use crate::negotiate;
use crate::ts;

/// Wait before retrying a rekey the peer refused for now (TEMPORARY_FAILURE, §2.25).
const RETRY_LATER: Duration = Duration::from_secs(10);
/// Wait before retrying a rekey that failed outright.
const RETRY_FAILED: Duration = Duration::from_secs(60);

/// Our CHILD_SA rekey in flight.
pub(super) struct ChildRekey {
    old_spi_in: u32,
    new_spi_in: u32,
    ni: Vec<u8>,
    dh: Option<DhPrivate>,
}

/// Our IKE SA rekey in flight.
pub(super) struct IkeRekey {
    new_spi: u64,
    ni: Vec<u8>,
    dh: DhPrivate,
}

pub(super) fn start_child_rekey(sa: &mut IkeSa, spi_in: u32, group: Option<DhGroup>, now: Instant) {
    let Some(child) = sa.children.iter().find(|c| c.spi_in == spi_in) else {
        return;
    };
    let (local_ts, remote_ts) = (child.local_ts.clone(), child.remote_ts.clone());
    let dh = match group.map(DhPrivate::generate) {
        Some(Ok((dh, ke))) => Some((dh, ke)),
        Some(Err(e)) => {
            sa.failure = Some(Failure::Local(format!("CHILD_SA rekey: {e}")));
            return;
        }
        None => None,
    };
    let new_spi_in = sa.random_child_spi();
    let ni = sa.nonce();
    let mut payloads = vec![
        Payload::Notify(Notify {
            protocol: protocol::ESP,
            spi: spi_in.to_be_bytes().to_vec(),
            kind: notify::REKEY_SA,
            data: Vec::new(),
        }),
        Payload::Sa(negotiate::esp_offer(
            &sa.config.esp_proposals,
            new_spi_in,
            group.is_some(),
        )),
        Payload::Nonce(ni.clone()),
    ];
    if let (Some(group), Some((_, ke))) = (group, &dh) {
        payloads.push(Payload::Ke {
            group: group.id(),
            data: ke.clone(),
        });
    }
    payloads.push(Payload::TsI(local_ts));
    payloads.push(Payload::TsR(remote_ts));
    sa.request(
        ExchangeType::CreateChildSa,
        payloads,
        Request::RekeyChild { spi_in, group },
        now,
    );
    sa.exchange = Exchange::RekeyChild(Box::new(ChildRekey {
        old_spi_in: spi_in,
        new_spi_in,
        ni,
        dh: dh.map(|(dh, _)| dh),
    }));
}

/// A rekey that did not happen: the old CHILD_SA carries on and is tried again later.
fn rekey_later(sa: &mut IkeSa, spi_in: u32, wait: Duration, now: Instant) {
    if let Some(child) = sa.children.iter_mut().find(|c| c.spi_in == spi_in) {
        child.state = ChildState::Installed;
        child.rekey_at = now + wait;
    }
}

pub(super) fn handle_child_rekey_response(
    sa: &mut IkeSa,
    rekey: ChildRekey,
    message: Message,
    now: Instant,
) {
    if let Some(error) = error_notify(&message) {
        match error.kind {
            notify::INVALID_KE_PAYLOAD => {
                let wanted = requested_group(error)
                    .filter(|g| sa.config.esp_proposals.iter().any(|p| p.dh.contains(g)));
                match wanted {
                    Some(group) if rekey.dh.as_ref().map(|d| d.group()) != Some(group) => {
                        sa.queue.push_front(Request::RekeyChild {
                            spi_in: rekey.old_spi_in,
                            group: Some(group),
                        });
                    }
                    _ => rekey_later(sa, rekey.old_spi_in, RETRY_FAILED, now),
                }
            }
            notify::TEMPORARY_FAILURE => rekey_later(sa, rekey.old_spi_in, RETRY_LATER, now),
            notify::CHILD_SA_NOT_FOUND => {
                // The peer lost the CHILD_SA; start over with a fresh IKE SA.
                sa.failure = Some(Failure::PeerError(notify::CHILD_SA_NOT_FOUND));
                sa.close(now);
            }
            kind => {
                sa.child_failed(Failure::from_notify(kind, false));
                rekey_later(sa, rekey.old_spi_in, RETRY_FAILED, now);
            }
        }
        return;
    }
    match complete_child_rekey(sa, rekey, &message, now) {
        Ok(()) => {}
        Err((spi_in, failure)) => {
            sa.child_failed(failure);
            rekey_later(sa, spi_in, RETRY_FAILED, now);
        }
    }
}

fn complete_child_rekey(
    sa: &mut IkeSa,
    rekey: ChildRekey,
    message: &Message,
    now: Instant,
) -> Result<(), (u32, Failure)> {
    let old = rekey.old_spi_in;
    let fail = |why: String| (old, Failure::Protocol(why));
    let keys = sa.keys.as_ref().ok_or_else(|| fail("no keys".into()))?;
    let answer = message
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Sa(proposals) => Some(proposals.as_slice()),
            _ => None,
        })
        .ok_or_else(|| fail("CREATE_CHILD_SA response without SA".into()))?;
    let (suite, spi_out) =
        negotiate::accept_esp(&sa.config.esp_proposals, answer, rekey.dh.is_some())
            .map_err(|e| fail(format!("the peer's ESP proposal: {e}")))?;
    let nr =
        nonce_of(message).ok_or_else(|| fail("CREATE_CHILD_SA response without Nonce".into()))?;
    let shared = match rekey.dh {
        Some(dh) => {
            let group = dh.group();
            let ke = key_share(message, group)
                .ok_or_else(|| fail(format!("no key share for DH group {}", group.id())))?;
            Some(
                dh.agree(ke)
                    .map_err(|e| fail(format!("the peer's key share: {e}")))?,
            )
        }
        None => None,
    };
    let (tsi, tsr) = traffic_selectors(message).map_err(|f| (old, f))?;
    let (local_ts, remote_ts) = match sa.children.iter().find(|c| c.spi_in == old) {
        Some(child) => (child.local_ts.clone(), child.remote_ts.clone()),
        None => (sa.config.local_ts.clone(), sa.config.remote_ts.clone()),
    };
    if !ts::is_subset(&tsi, &local_ts) || !ts::is_subset(&tsr, &remote_ts) {
        return Err(fail("the peer widened the traffic selectors".into()));
    }
    let terms = ChildTerms {
        spi_in: rekey.new_spi_in,
        spi_out,
        suite,
        local_ts: tsi,
        remote_ts: tsr,
        replaces: Some(old),
    };
    let child = sa
        .keyed_child(
            keys,
            terms,
            shared.as_ref().map(|s| s.as_slice()),
            (&rekey.ni, nr),
            true,
        )
        .map_err(|e| (old, Failure::Local(e.to_string())))?;
    let lowest_nonce = lowest(&rekey.ni, nr);
    sa.install_child(child, now);
    record_rekey(
        sa,
        RekeyRecord {
            old_spi_in: old,
            new_spi_in: rekey.new_spi_in,
            nonce: lowest_nonce,
            by_us: true,
        },
    );
    if let Some(child) = sa.children.iter_mut().find(|c| c.spi_in == old) {
        child.state = ChildState::Rekeyed;
    }
    sa.queue.push_front(Request::DeleteChild { spi_in: old });
    Ok(())
}

/// Both ends rekeyed the same CHILD_SA at once (§2.8.1): the new SA made by the exchange
/// with the lowest nonce is redundant, and the end that initiated that exchange deletes it.
fn record_rekey(sa: &mut IkeSa, record: RekeyRecord) {
    let twin = sa
        .rekeys
        .iter()
        .position(|r| r.old_spi_in == record.old_spi_in && r.by_us != record.by_us);
    let Some(index) = twin else {
        sa.rekeys.push(record);
        return;
    };
    let twin = sa.rekeys.remove(index);
    let (ours, theirs) = if record.by_us {
        (record, twin)
    } else {
        (twin, record)
    };
    if ours.nonce < theirs.nonce {
        if let Some(child) = sa.children.iter_mut().find(|c| c.spi_in == ours.new_spi_in) {
            child.state = ChildState::Rekeyed;
        }
        sa.queue.push_back(Request::DeleteChild {
            spi_in: ours.new_spi_in,
        });
    }
}

/// A CHILD_SA rekey that completed, kept until the old SA is gone to spot a collision.
pub(super) struct RekeyRecord {
    pub(super) old_spi_in: u32,
    new_spi_in: u32,
    /// The lower of the exchange's two nonces.
    nonce: Vec<u8>,
    by_us: bool,
}

fn lowest(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a <= b {
        a.to_vec()
    } else {
        b.to_vec()
    }
}

fn nonce_of(message: &Message) -> Option<&[u8]> {
    message.payloads.iter().find_map(|p| match p {
        Payload::Nonce(n) if (16..=256).contains(&n.len()) => Some(n.as_slice()),
        _ => None,
    })
}

fn key_share(message: &Message, group: DhGroup) -> Option<&[u8]> {
    message.payloads.iter().find_map(|p| match p {
        Payload::Ke { group: g, data } if *g == group.id() => Some(data.as_slice()),
        _ => None,
    })
}

/// The peer's CREATE_CHILD_SA request.
pub(super) fn handle_request(sa: &mut IkeSa, message: &Message, now: Instant) -> Vec<Payload> {
    let offers_ike = message.payloads.iter().any(|p| match p {
        Payload::Sa(proposals) => proposals.iter().any(|p| p.protocol == protocol::IKE),
        _ => false,
    });
    if offers_ike {
        return respond_ike_rekey(sa, message, now);
    }
    respond_child(sa, message, now)
}

fn respond_child(sa: &mut IkeSa, message: &Message, now: Instant) -> Vec<Payload> {
    let Some(ni) = nonce_of(message).map(<[u8]>::to_vec) else {
        return vec![notify_payload(notify::INVALID_SYNTAX, &[])];
    };
    let rekeyed = notifies(message)
        .find(|n| n.kind == notify::REKEY_SA && n.protocol == protocol::ESP)
        .map(|n| n.spi.clone());
    let old_spi_in = match rekeyed {
        Some(spi) => {
            let spi_out = <[u8; 4]>::try_from(spi.as_slice()).map(u32::from_be_bytes);
            match spi_out
                .ok()
                .and_then(|spi| sa.children.iter().find(|c| c.spi_out == spi))
            {
                Some(child) => Some(child.spi_in),
                None => {
                    return vec![Payload::Notify(Notify {
                        protocol: protocol::ESP,
                        spi,
                        kind: notify::CHILD_SA_NOT_FOUND,
                        data: Vec::new(),
                    })]
                }
            }
        }
        None => None,
    };
    // With a key share the CHILD_SA gets its own DH (PFS): the group must be one we allow.
    let peer_ke = message.payloads.iter().find_map(|p| match p {
        Payload::Ke { group, data } => Some((*group, data.clone())),
        _ => None,
    });
    let pfs = match peer_ke {
        Some((group_id, ke)) => {
            let group = DhGroup::from_id(group_id)
                .filter(|g| sa.config.esp_proposals.iter().any(|p| p.dh.contains(g)));
            let Some(group) = group else {
                return invalid_ke(sa);
            };
            let (dh, our_ke) = match DhPrivate::generate(group) {
                Ok(pair) => pair,
                Err(_) => return vec![notify_payload(notify::TEMPORARY_FAILURE, &[])],
            };
            let Ok(shared) = dh.agree(&ke) else {
                return vec![notify_payload(notify::INVALID_SYNTAX, &[])];
            };
            Some((group, shared, our_ke))
        }
        None => None,
    };
    let nr = sa.nonce();
    let result = responder_child(
        sa,
        message,
        &ni,
        &nr,
        pfs.as_ref()
            .map(|(group, shared, _)| (*group, shared.as_slice())),
    );
    let (mut child, answer) = match result {
        Ok(pair) => pair,
        Err((_, notify::NO_PROPOSAL_CHOSEN))
            if pfs.is_none() && sa.config.esp_proposals.iter().all(|p| !p.dh.is_empty()) =>
        {
            // We insist on PFS and the peer sent no key share.
            return invalid_ke(sa);
        }
        Err((_, kind)) => return vec![notify_payload(kind, &[])],
    };
    child.replaces = old_spi_in;
    let tsi = child.remote_ts.clone();
    let tsr = child.local_ts.clone();
    let new_spi_in = child.spi_in;
    let mut payloads = vec![Payload::Sa(vec![answer]), Payload::Nonce(nr.clone())];
    if let Some((group, _, our_ke)) = pfs {
        payloads.push(Payload::Ke {
            group: group.id(),
            data: our_ke,
        });
    }
    payloads.push(Payload::TsI(tsi));
    payloads.push(Payload::TsR(tsr));
    sa.install_child(child, now);
    if let Some(old) = old_spi_in {
        // Our own queued rekey of the same SA is moot now.
        sa.queue
            .retain(|r| !matches!(r, Request::RekeyChild { spi_in, .. } if *spi_in == old));
        record_rekey(
            sa,
            RekeyRecord {
                old_spi_in: old,
                new_spi_in,
                nonce: lowest(&ni, &nr),
                by_us: false,
            },
        );
        if let Some(child) = sa.children.iter_mut().find(|c| c.spi_in == old) {
            // The peer deletes the old one; it keeps carrying inbound traffic until then.
            if child.state == ChildState::Installed {
                child.state = ChildState::Rekeyed;
            }
        }
    }
    payloads
}

fn invalid_ke(sa: &IkeSa) -> Vec<Payload> {
    let group = sa
        .config
        .esp_proposals
        .iter()
        .find_map(|p| p.dh.first())
        .map(|g| g.id())
        .unwrap_or(0);
    vec![notify_payload(
        notify::INVALID_KE_PAYLOAD,
        &group.to_be_bytes(),
    )]
}

pub(super) fn start_ike_rekey(sa: &mut IkeSa, group: DhGroup, now: Instant) {
    let (dh, ke) = match DhPrivate::generate(group) {
        Ok(pair) => pair,
        Err(e) => {
            sa.failure = Some(Failure::Local(format!("IKE SA rekey: {e}")));
            return;
        }
    };
    let new_spi = sa.random_spi();
    let ni = sa.nonce();
    let payloads = vec![
        Payload::Sa(negotiate::ike_offer(&sa.config.proposals, Some(new_spi))),
        Payload::Nonce(ni.clone()),
        Payload::Ke {
            group: group.id(),
            data: ke,
        },
    ];
    sa.request(
        ExchangeType::CreateChildSa,
        payloads,
        Request::RekeyIke { group },
        now,
    );
    sa.exchange = Exchange::RekeyIke(Box::new(IkeRekey { new_spi, ni, dh }));
}

pub(super) fn handle_ike_rekey_response(
    sa: &mut IkeSa,
    rekey: IkeRekey,
    message: Message,
    now: Instant,
) {
    if let Some(error) = error_notify(&message) {
        let retry = match error.kind {
            notify::INVALID_KE_PAYLOAD => {
                let wanted = requested_group(error)
                    .filter(|g| *g != rekey.dh.group())
                    .filter(|g| sa.config.proposals.iter().any(|p| p.dh.contains(g)));
                if let Some(group) = wanted {
                    sa.queue.push_front(Request::RekeyIke { group });
                    return;
                }
                RETRY_FAILED
            }
            notify::TEMPORARY_FAILURE => RETRY_LATER,
            kind => {
                sa.failure = Some(Failure::from_notify(kind, true));
                RETRY_FAILED
            }
        };
        sa.ike_rekey_at = Some(now + retry);
        return;
    }
    match complete_ike_rekey(sa, rekey, &message) {
        Ok(keys) => {
            retire_current(sa, now, true);
            swap_keys(sa, keys, now);
        }
        Err(failure) => {
            sa.failure = Some(failure);
            sa.ike_rekey_at = Some(now + RETRY_FAILED);
        }
    }
}

fn complete_ike_rekey(sa: &mut IkeSa, rekey: IkeRekey, message: &Message) -> Result<Keys, Failure> {
    let protocol = |why: &str| Failure::Protocol(format!("IKE SA rekey: {why}"));
    let old = sa.keys.as_ref().ok_or_else(|| protocol("no keys"))?;
    let answer = message
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Sa(proposals) => Some(proposals.as_slice()),
            _ => None,
        })
        .ok_or_else(|| protocol("response without SA"))?;
    let (suite, chosen) = negotiate::accept_ike(&sa.config.proposals, answer)
        .map_err(|e| Failure::Protocol(format!("IKE SA rekey: the peer's proposal: {e}")))?;
    let peer_spi = <[u8; 8]>::try_from(chosen.spi.as_slice())
        .map(u64::from_be_bytes)
        .map_err(|_| protocol("the peer's new SPI is not 8 bytes"))?;
    if suite.dh != rekey.dh.group() {
        return Err(protocol(
            "the peer chose another DH group than our key share",
        ));
    }
    let nr = nonce_of(message).ok_or_else(|| protocol("response without Nonce"))?;
    let ke = key_share(message, suite.dh).ok_or_else(|| protocol("response without KE"))?;
    let shared = rekey
        .dh
        .agree(ke)
        .map_err(|e| Failure::Protocol(format!("IKE SA rekey: the peer's key share: {e}")))?;
    let ike_keys = IkeKeys::derive_rekey(
        &suite,
        old.suite.prf,
        &old.ike_keys.sk_d,
        &shared,
        &rekey.ni,
        nr,
        rekey.new_spi,
        peer_spi,
    );
    let (outbound, inbound) = ike_keys
        .transforms(&suite, true)
        .map_err(|e| Failure::Local(e.to_string()))?;
    let nr = nr.to_vec();
    sa.ni = rekey.ni;
    sa.nr = nr;
    Ok(Keys::new(
        (rekey.new_spi, peer_spi),
        true,
        suite,
        ike_keys,
        (outbound, inbound),
    ))
}

fn respond_ike_rekey(sa: &mut IkeSa, message: &Message, _now: Instant) -> Vec<Payload> {
    let Some(old) = sa.keys.as_ref() else {
        return vec![notify_payload(notify::INVALID_SYNTAX, &[])];
    };
    if sa.retiring.is_some() || sa.swap_after_answer.is_some() {
        // One rekey at a time.
        return vec![notify_payload(notify::TEMPORARY_FAILURE, &[])];
    }
    let Some(offered) = message.payloads.iter().find_map(|p| match p {
        Payload::Sa(proposals) => Some(proposals.as_slice()),
        _ => None,
    }) else {
        return vec![notify_payload(notify::INVALID_SYNTAX, &[])];
    };
    let our_spi = sa.random_spi();
    let Ok((suite, answer)) = negotiate::select_ike(&sa.config.proposals, offered, Some(our_spi))
    else {
        return vec![notify_payload(notify::NO_PROPOSAL_CHOSEN, &[])];
    };
    let Some(peer_spi) = offered
        .iter()
        .find(|p| p.number == answer.number)
        .and_then(|p| <[u8; 8]>::try_from(p.spi.as_slice()).ok())
        .map(u64::from_be_bytes)
        .filter(|spi| *spi != 0)
    else {
        return vec![notify_payload(notify::INVALID_SYNTAX, &[])];
    };
    let Some(ni) = nonce_of(message).map(<[u8]>::to_vec) else {
        return vec![notify_payload(notify::INVALID_SYNTAX, &[])];
    };
    let Some(ke) = key_share(message, suite.dh).map(<[u8]>::to_vec) else {
        return vec![notify_payload(
            notify::INVALID_KE_PAYLOAD,
            &suite.dh.id().to_be_bytes(),
        )];
    };
    let Ok((dh, our_ke)) = DhPrivate::generate(suite.dh) else {
        return vec![notify_payload(notify::TEMPORARY_FAILURE, &[])];
    };
    let Ok(shared) = dh.agree(&ke) else {
        return vec![notify_payload(notify::INVALID_SYNTAX, &[])];
    };
    let nr = sa.nonce();
    let ike_keys = IkeKeys::derive_rekey(
        &suite,
        old.suite.prf,
        &old.ike_keys.sk_d,
        &shared,
        &ni,
        &nr,
        peer_spi,
        our_spi,
    );
    let Ok((outbound, inbound)) = ike_keys.transforms(&suite, false) else {
        return vec![notify_payload(notify::NO_PROPOSAL_CHOSEN, &[])];
    };
    sa.swap_after_answer = Some(Box::new(Keys::new(
        (peer_spi, our_spi),
        false,
        suite,
        ike_keys,
        (outbound, inbound),
    )));
    sa.pending_nonces = Some((ni, nr.clone()));
    vec![
        Payload::Sa(vec![answer]),
        Payload::Nonce(nr),
        Payload::Ke {
            group: suite.dh.id(),
            data: our_ke,
        },
    ]
}

/// Moves the current keys into retirement. The rekey's initiator deletes the old SA;
/// the responder waits for that Delete.
fn retire_current(sa: &mut IkeSa, now: Instant, send_delete: bool) {
    let fragment = sa.config.fragmentation && sa.peer_fragmentation;
    let Some(mut old) = sa.keys.take() else {
        return;
    };
    let mut pending = None;
    if send_delete {
        let message_id = old.next_request_id;
        old.next_request_id = old.next_request_id.wrapping_add(1);
        let message = Message {
            spi_i: old.spi_i,
            spi_r: old.spi_r,
            exchange: ExchangeType::Informational,
            initiator: old.initiator,
            response: false,
            message_id,
            payloads: vec![Payload::Delete {
                protocol: protocol::IKE,
                spis: Vec::new(),
            }],
        };
        let datagrams = super::protect_with(&mut old, &sa.rng, &message, fragment);
        for datagram in &datagrams {
            sa.send(datagram.clone());
        }
        pending = Some(Pending {
            message_id,
            datagrams,
            request: Request::DeleteIke,
            sent: 1,
            deadline: now + sa.config.retransmit.wait(0),
            give_up: None,
        });
    }
    // A second rekey before the first one retired: the older generation is done.
    sa.retire_done();
    sa.retiring = Some(Retiring {
        keys: old,
        until: now + RETIRE_TIMEOUT,
        pending,
    });
}

/// Takes the rekeyed IKE SA's keys into use; CHILD_SAs carry over untouched.
pub(super) fn swap_keys(sa: &mut IkeSa, keys: Keys, now: Instant) {
    if sa.keys.is_some() {
        retire_current(sa, now, false);
    }
    if let Some((ni, nr)) = sa.pending_nonces.take() {
        sa.ni = ni;
        sa.nr = nr;
    }
    // A request of ours still in flight on the old SA is asked again on the new one.
    if let Some(pending) = sa.pending.take() {
        if !matches!(pending.request, Request::Dpd | Request::RekeyIke { .. }) {
            sa.queue.push_front(pending.request);
        }
        if let Some(rekey) = match std::mem::replace(&mut sa.exchange, Exchange::None) {
            Exchange::RekeyChild(rekey) => Some(rekey.old_spi_in),
            _ => None,
        } {
            if let Some(child) = sa.children.iter_mut().find(|c| c.spi_in == rekey) {
                child.state = ChildState::Rekeying;
            }
        }
    }
    sa.spi_i = keys.spi_i;
    sa.spi_r = keys.spi_r;
    sa.keys = Some(keys);
    sa.ike_rekey_at = Some(now + sa.jittered(sa.config.ike_rekey_time));
    sa.outputs.push(super::Output::IkeRekeyed);
}
