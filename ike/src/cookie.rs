//! Stateless cookies (RFC 7296 §2.6): when too many IKE SAs are half-open, a responder
//! answers IKE_SA_INIT with a COOKIE and creates state only for initiators that echo it,
//! which proves they receive at their source address.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

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
    /// Not an IKE_SA_INIT a cookie can be made for (no nonce): drop it.
    Drop,
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
            return CookieCheck::Drop;
        };
        let presented = match request.payloads.first() {
            Some(Payload::Notify(n)) if n.kind == notify::COOKIE => Some(n.data.as_slice()),
            _ => None,
        };
        if let Some(cookie) = presented {
            let secrets = std::iter::once(&self.current).chain(self.previous.as_ref());
            for secret in secrets {
                if cookie.first() == Some(&secret.version)
                    && bool::from(cookie.ct_eq(&make(secret, nonce, from, request.spi_i)))
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
                payloads: vec![Payload::Notify(Notify::new(notify::COOKIE, cookie))],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::decode;

    fn init_request(cookie: Option<&[u8]>) -> Message {
        let mut payloads = Vec::new();
        if let Some(cookie) = cookie {
            payloads.push(Payload::Notify(Notify::new(
                notify::COOKIE,
                cookie.to_vec(),
            )));
        }
        payloads.push(Payload::Nonce(vec![7; 32]));
        Message {
            spi_i: 0x1122_3344_5566_7788,
            spi_r: 0,
            exchange: ExchangeType::IkeSaInit,
            initiator: true,
            response: false,
            message_id: 0,
            payloads,
        }
    }

    fn cookie_of(answer: &[u8]) -> Vec<u8> {
        let answer = decode(answer).unwrap();
        match &answer.payloads[..] {
            [Payload::Notify(n)] if n.kind == notify::COOKIE => n.data.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_echoed_cookie_passes_and_a_forged_one_is_challenged() {
        let now = Instant::now();
        let cookies = Cookies::new(now);
        let from: IpAddr = "192.0.2.9".parse().unwrap();
        let CookieCheck::Challenge(answer) = cookies.check(&init_request(None), from) else {
            panic!("a request without a cookie is challenged");
        };
        let cookie = cookie_of(&answer);
        assert_eq!(
            cookies.check(&init_request(Some(&cookie)), from),
            CookieCheck::Valid
        );
        // From another address, or tampered: challenged again.
        let elsewhere: IpAddr = "192.0.2.10".parse().unwrap();
        assert!(matches!(
            cookies.check(&init_request(Some(&cookie)), elsewhere),
            CookieCheck::Challenge(_)
        ));
        let mut forged = cookie.clone();
        forged[5] ^= 1;
        assert!(matches!(
            cookies.check(&init_request(Some(&forged)), from),
            CookieCheck::Challenge(_)
        ));
    }

    #[test]
    fn a_request_without_a_nonce_is_dropped_not_answered() {
        let cookies = Cookies::new(Instant::now());
        let mut request = init_request(None);
        request.payloads.clear();
        let from: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(cookies.check(&request, from), CookieCheck::Drop);
    }

    #[test]
    fn a_cookie_survives_one_rotation_but_not_two() {
        let now = Instant::now();
        let mut cookies = Cookies::new(now);
        let from: IpAddr = "198.51.100.1".parse().unwrap();
        let CookieCheck::Challenge(answer) = cookies.check(&init_request(None), from) else {
            panic!("challenged");
        };
        let cookie = cookie_of(&answer);
        cookies.rotate(now + ROTATE_EVERY);
        assert_eq!(
            cookies.check(&init_request(Some(&cookie)), from),
            CookieCheck::Valid
        );
        cookies.rotate(now + ROTATE_EVERY * 2);
        assert!(matches!(
            cookies.check(&init_request(Some(&cookie)), from),
            CookieCheck::Challenge(_)
        ));
    }
}
