//! INFORMATIONAL exchanges (RFC 7296 §1.4, §2.4): liveness checks (DPD), Delete of
//! CHILD_SAs and IKE SAs, error notifies, and the retiring SA of an IKE rekey.

use std::time::Instant;

use super::{answer_with, notifies, ChildState, Failure, IkeSa, Path, Request, State};
use crate::message::{notify, protocol, ExchangeType, Message, Payload, Protected};

/// The peer's INFORMATIONAL request; returns our answer's payloads.
pub(super) fn handle_request(sa: &mut IkeSa, message: &Message, _now: Instant) -> Vec<Payload> {
    let mut answer = Vec::new();
    if notifies(message).any(|n| n.kind == notify::AUTHENTICATION_FAILED) {
        // The peer could not verify our AUTH after all (§2.21.2).
        sa.failure = Some(Failure::AuthenticationRejected);
        sa.state = State::Closing;
        return answer;
    }
    let mut deleted_in = Vec::new();
    for payload in &message.payloads {
        let Payload::Delete { protocol, spis } = payload else {
            continue;
        };
        match *protocol {
            protocol::IKE => {
                sa.failure = Some(Failure::DeletedByPeer);
                sa.state = State::Closing;
                return Vec::new();
            }
            protocol::ESP => {
                for spi in spis {
                    let Ok(bytes) = <[u8; 4]>::try_from(spi.as_slice()) else {
                        continue;
                    };
                    let spi_out = u32::from_be_bytes(bytes);
                    if let Some(child) = sa.children.iter().find(|c| c.spi_out == spi_out) {
                        deleted_in.push(child.spi_in);
                    }
                }
            }
            _ => {}
        }
    }
    if !deleted_in.is_empty() {
        // A Delete we had queued for the same SA is answered by this one.
        sa.queue.retain(
            |r| !matches!(r, Request::DeleteChild { spi_in } if deleted_in.contains(spi_in)),
        );
        answer.push(Payload::Delete {
            protocol: protocol::ESP,
            spis: deleted_in
                .iter()
                .map(|s| s.to_be_bytes().to_vec())
                .collect(),
        });
        for spi_in in deleted_in {
            sa.remove_child(spi_in);
        }
    }
    answer
}

/// The answer to one of our INFORMATIONAL requests.
pub(super) fn handle_informational_response(
    sa: &mut IkeSa,
    request: Option<Request>,
    _message: Message,
    _now: Instant,
) {
    match request {
        Some(Request::DeleteChild { spi_in }) => sa.remove_child(spi_in),
        Some(Request::DeleteIke) => sa.finish(sa.failure.clone()),
        // DPD answered: the peer lives; `handle` already noted the inbound message.
        _ => {}
    }
}

pub(super) fn send_delete_child(sa: &mut IkeSa, spi_in: u32, now: Instant) {
    let Some(child) = sa.children.iter_mut().find(|c| c.spi_in == spi_in) else {
        return;
    };
    child.state = ChildState::Rekeyed;
    sa.request(
        ExchangeType::Informational,
        vec![Payload::Delete {
            protocol: protocol::ESP,
            spis: vec![spi_in.to_be_bytes().to_vec()],
        }],
        Request::DeleteChild { spi_in },
        now,
    );
}

pub(super) fn send_delete_ike(sa: &mut IkeSa, now: Instant) {
    sa.request(
        ExchangeType::Informational,
        vec![Payload::Delete {
            protocol: protocol::IKE,
            spis: Vec::new(),
        }],
        Request::DeleteIke,
        now,
    );
    sa.state = State::Closing;
}

/// A message for the SA that an IKE rekey replaced: only its Delete exchange (either
/// direction) and liveness checks are answered; anything else is refused for now.
pub(super) fn handle_retiring(
    sa: &mut IkeSa,
    path: Path,
    datagram: &[u8],
    header: &Message,
    now: Instant,
) {
    let fragment = sa.config.fragmentation && sa.peer_fragmentation;
    let Some(retiring) = &mut sa.retiring else {
        return;
    };
    let keys = &mut retiring.keys;
    if header.initiator == keys.initiator {
        return;
    }
    if header.response {
        if retiring.pending.as_ref().map(|p| p.message_id) != Some(header.message_id) {
            return;
        }
    } else if let Some((id, answer)) = &keys.last_response {
        if *id == header.message_id {
            let answer = answer.clone();
            for datagram in answer {
                sa.send_on(path, datagram);
            }
            return;
        }
    }
    let Ok(Protected::Complete(message)) = keys.decoder.decode_protected(datagram, &keys.inbound)
    else {
        return;
    };
    sa.last_inbound = now;
    if message.response {
        retiring.pending = None;
        sa.retire_done();
        return;
    }
    if message.message_id != keys.next_peer_id {
        return;
    }
    let deletes_ike = message.payloads.iter().any(|p| {
        matches!(
            p,
            Payload::Delete {
                protocol: protocol::IKE,
                ..
            }
        )
    });
    let payloads = match message.exchange {
        ExchangeType::Informational => Vec::new(),
        _ => vec![super::notify_payload(notify::TEMPORARY_FAILURE, &[])],
    };
    let rng = sa.rng.clone();
    let datagrams = answer_with(
        keys,
        &rng,
        fragment,
        message.message_id,
        message.exchange,
        payloads,
    );
    for datagram in datagrams {
        sa.send_on(path, datagram);
    }
    if deletes_ike {
        sa.retire_done();
    }
}
