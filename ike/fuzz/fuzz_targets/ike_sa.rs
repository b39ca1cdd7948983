//! Fuzzes the IKE SA state machine's message handling (not just the decoder): arbitrary
//! datagrams given to
//! - a responder, as a new IKE_SA_INIT (`IkeSa::respond`: proposal choice, key exchange,
//!   NAT detection);
//! - an initiator waiting for its IKE_SA_INIT response, with the header's SPIs patched to
//!   be its own so that the input reaches the response's handling (key agreement,
//!   INVALID_KE_PAYLOAD, COOKIE, error notifies);
//! - both ends of an IKE SA established in memory, with the SPIs patched likewise: random
//!   input stops at the integrity check, so this part covers the header, role and
//!   message-ID checks in front of it.
//!
//! `ike_message` fuzzes the protected payloads past the integrity check with a known key.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use siteward_ike::identity::Identity;
use siteward_ike::message::TrafficSelector;
use siteward_ike::proposal::{EspProposal, IkeProposal};
use siteward_ike::sa::{IkeSa, LocalAuth, Output, Path, RemoteAuth, Retransmit, SaConfig, State};
use zeroize::Zeroizing;

fn config(local: &str, remote: &str, local_ts: &str, remote_ts: &str) -> Arc<SaConfig> {
    let psk = || Zeroizing::new(b"fuzzing pre-shared key".to_vec());
    let ts = |net: &str| vec![TrafficSelector::from_net(net.parse().expect("a network"))];
    Arc::new(SaConfig {
        proposals: vec![IkeProposal::parse("aes256gcm16-prfsha256-x25519").expect("proposal")],
        esp_proposals: vec![EspProposal::parse("aes256gcm16").expect("proposal")],
        local_id: Some(Identity::parse(local).expect("identity")),
        remote_id: Some(Identity::parse(remote).expect("identity")),
        local_auth: LocalAuth::Psk(psk()),
        remote_auth: RemoteAuth::Psk(psk()),
        local_ts: ts(local_ts),
        remote_ts: ts(remote_ts),
        dpd_delay: Some(Duration::from_secs(30)),
        ike_rekey_time: Duration::from_secs(3600),
        child_rekey_time: Duration::from_secs(3600),
        child_rekey_bytes: None,
        force_encap: false,
        fragmentation: true,
        retransmit: Retransmit::default(),
        half_open_timeout: Duration::from_secs(30),
    })
}

fn paths() -> (Path, Path) {
    let a: SocketAddr = "192.0.2.1:500".parse().expect("address");
    let b: SocketAddr = "192.0.2.2:500".parse().expect("address");
    (
        Path { local: a, remote: b },
        Path { local: b, remote: a },
    )
}

fn sends(sa: &mut IkeSa) -> Vec<Vec<u8>> {
    sa.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { datagram, .. } => Some(datagram),
            _ => None,
        })
        .collect()
}

/// Writes `spi_i`, `spi_r` into the IKE header, if the input has one.
fn with_spis(data: &[u8], spi_i: u64, spi_r: u64) -> Vec<u8> {
    let mut datagram = data.to_vec();
    if datagram.len() >= 16 {
        datagram[..8].copy_from_slice(&spi_i.to_be_bytes());
        datagram[8..16].copy_from_slice(&spi_r.to_be_bytes());
    }
    datagram
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let (a_path, b_path) = paths();
    let a = config("a.example", "b.example", "10.1.0.0/16", "10.2.0.0/16");
    let b = config("b.example", "a.example", "10.2.0.0/16", "10.1.0.0/16");
    let Ok(mut initiator) = IkeSa::initiate(a, a_path, now) else {
        return;
    };
    match selector % 3 {
        0 => {
            let _ = IkeSa::respond(b, b_path, input, now);
        }
        1 => {
            let _ = sends(&mut initiator);
            let (spi_i, _) = initiator.spis();
            initiator.handle(a_path, &with_spis(input, spi_i, 0x0102_0304_0506_0708), now);
            initiator.poll(now + Duration::from_secs(1));
            let _ = initiator.take_outputs();
        }
        _ => {
            // Establish the pair in memory, then hand the input to both ends.
            let mut to_b = sends(&mut initiator);
            let Some(first) = to_b.pop() else {
                return;
            };
            let Ok(mut responder) = IkeSa::respond(b, b_path, &first, now) else {
                return;
            };
            for _ in 0..4 {
                for datagram in sends(&mut responder) {
                    initiator.handle(a_path, &datagram, now);
                }
                for datagram in sends(&mut initiator) {
                    responder.handle(b_path, &datagram, now);
                }
            }
            if initiator.state() != State::Established || responder.state() != State::Established
            {
                return;
            }
            let (spi_i, spi_r) = initiator.spis();
            let datagram = with_spis(input, spi_i, spi_r);
            initiator.handle(a_path, &datagram, now);
            responder.handle(b_path, &datagram, now);
            let _ = (initiator.take_outputs(), responder.take_outputs());
        }
    }
});
