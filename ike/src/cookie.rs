//! Stateless cookies (RFC 7296 §2.6): when too many IKE SAs are half-open, a responder
//! answers IKE_SA_INIT with a COOKIE and creates state only for initiators that echo it,
//! which proves they receive at their source address.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use crate::message::{notify, ExchangeType, Message, Notify, Payload};

/// How long a secret is used before a new one; cookies made with the previous one are
/// still accepted, so a cookie stays valid for at least this long.
const ROTATE_EVERY: Duration = Duration::from_secs(120);

pub struct Cookies {
    rng: SystemRandom,
    current: Secret,
    previous: Option<Secret>,
    rotated: Instant,
}

struct Secret {
    version: u8,
    bytes: [u8; 32],
}

/// What to do with an IKE_SA_INIT request while cookies are required.
#[derive(Debug, PartialEq, Eq)]
pub enum CookieCheck {
    /// It carries a valid cookie: go on.
    Valid,
    /// Answer with this (a response carrying our cookie) and keep no state.
    Challenge(Vec<u8>),
}

impl Cookies {
    pub fn new(now: Instant) -> Cookies {
        let rng = SystemRandom::new();
        let current = Secret {
            version: 0,
            bytes: random(&rng),
        };
        Cookies {
            rng,
            current,
            previous: None,
            rotated: now,
        }
    }

    /// Replaces the secret when it is old enough.
    pub fn rotate(&mut self, now: Instant) {
        if now.duration_since(self.rotated) < ROTATE_EVERY {
            return;
        }
        let next = Secret {
            version: self.current.version.wrapping_add(1),
            bytes: random(&self.rng),
        };
        self.previous = Some(std::mem::replace(&mut self.current, next));
        self.rotated = now;
    }

    /// Checks `request` (a decoded IKE_SA_INIT request from `from`) for our cookie.
    pub fn check(&self, request: &Message, from: IpAddr) -> CookieCheck {
        let nonce = request.payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.as_slice()),
            _ => None,
        });
        let Some(nonce) = nonce else {
            return CookieCheck::Challenge(Vec::new());
        };
        let presented = match request.payloads.first() {
            Some(Payload::Notify(n)) if n.kind == notify::COOKIE => Some(n.data.as_slice()),
            _ => None,
        };
        if let Some(cookie) = presented {
            let secrets = std::iter::once(&self.current).chain(self.previous.as_ref());
            for secret in secrets {
                if cookie.first() == Some(&secret.version)
                    && ring::constant_time::verify_slices_are_equal(
                        cookie,
                        &make(secret, nonce, from, request.spi_i),
                    )
                    .is_ok()
                {
                    return CookieCheck::Valid;
                }
            }
        }
        let cookie = make(&self.current, nonce, from, request.spi_i);
        CookieCheck::Challenge(
            Message {
                spi_i: request.spi_i,
                spi_r: 0,
                exchange: ExchangeType::IkeSaInit,
                initiator: false,
                response: true,
                message_id: 0,
                payloads: vec![Payload::Notify(Notify {
                    protocol: 0,
                    spi: Vec::new(),
                    kind: notify::COOKIE,
                    data: cookie,
                })],
            }
            .encode(),
        )
    }
}

/// Cookie = VersionIDofSecret | SHA-256(Ni | IPi | SPIi | secret).
fn make(secret: &Secret, nonce: &[u8], from: IpAddr, spi_i: u64) -> Vec<u8> {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(nonce);
    match from {
        IpAddr::V4(ip) => context.update(&ip.octets()),
        IpAddr::V6(ip) => context.update(&ip.octets()),
    }
    context.update(&spi_i.to_be_bytes());
    context.update(&secret.bytes);
    let mut cookie = vec![secret.version];
    cookie.extend_from_slice(context.finish().as_ref());
    cookie
}

fn random(rng: &SystemRandom) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    // SystemRandom fails only without an OS entropy source, where nothing else works either.
    let _ = rng.fill(&mut bytes);
    bytes
}
