//! Web UI sessions and the login rate limit, kept in memory (a restart logs everyone out,
//! which is what an appliance's operator expects after an upgrade).
//!
//! - A session has a random 256-bit id (the cookie) and its own random CSRF token, which
//!   every state-changing request must echo (form field or header); it ends after
//!   `idle` without a request or `absolute` after login, whichever comes first.
//! - Logins are limited per source address: after `max_failures` failures within
//!   `window`, that source is refused until the window has passed since its first failure
//!   in it. A success clears the source's count.
//!
//! Times are passed in (`now`), so every rule is tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use subtle::ConstantTimeEq;

/// At most this many sessions live at once; the oldest goes first beyond it.
const MAX_SESSIONS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    pub source: IpAddr,
    created: Instant,
    last_seen: Instant,
}

pub struct Sessions {
    idle: Duration,
    absolute: Duration,
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new(idle: Duration, absolute: Duration) -> Sessions {
        Sessions {
            idle,
            absolute,
            by_id: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session for `user`; returns its id (for the cookie) and the session.
    pub fn create(&self, user: &str, source: IpAddr, now: Instant) -> (String, Session) {
        let session = Session {
            user: user.to_string(),
            csrf: random_token(),
            source,
            created: now,
            last_seen: now,
        };
        let id = random_token();
        let mut sessions = self.lock();
        sessions.retain(|_, s| self.alive(s, now));
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session of cookie `id`, its idle timer restarted; `None` if unknown or
    /// expired (an expired one is forgotten).
    pub fn touch(&self, id: &str, now: Instant) -> Option<Session> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(id)?;
        if !self.alive(session, now) {
            sessions.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Logs a session out.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Ends every session of `user` (after a password change).
    pub fn remove_user(&self, user: &str) {
        self.lock().retain(|_, s| s.user != user);
    }

    fn alive(&self, session: &Session, now: Instant) -> bool {
        now.saturating_duration_since(session.last_seen) < self.idle
            && now.saturating_duration_since(session.created) < self.absolute
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `presented` is the session's CSRF token (constant time).
pub fn csrf_matches(session: &Session, presented: &str) -> bool {
    !presented.is_empty() && bool::from(session.csrf.as_bytes().ct_eq(presented.as_bytes()))
}

/// Failed logins per source address.
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `source` is locked out: how long until it may try again.
    pub fn check(&self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut failures = self.lock();
        match failures.get(&source) {
            Some(&(first, _)) if now.saturating_duration_since(first) >= self.window => {
                failures.remove(&source);
                Ok(())
            }
            Some(&(first, count)) if count >= self.max_failures => {
                Err(self.window - now.saturating_duration_since(first))
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, source: IpAddr, now: Instant) {
        let mut failures = self.lock();
        // Forget sources whose window has passed, so the table stays small.
        failures.retain(|_, (first, _)| now.saturating_duration_since(*first) < self.window);
        let entry = failures.entry(source).or_insert((now, 0));
        entry.1 = entry.1.saturating_add(1);
    }

    pub fn succeeded(&self, source: IpAddr) {
        self.lock().remove(&source);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// 256 random bits, hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults of `[admin] session_idle` and `session_lifetime`.
    const IDLE: Duration = Duration::from_secs(4 * 3600);
    const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);

    fn source() -> IpAddr {
        "192.0.2.10".parse().unwrap()
    }

    #[test]
    fn a_session_ends_when_idle_or_too_old() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(300));
        let t0 = Instant::now();
        let (id, session) = sessions.create("admin", source(), t0);
        assert_eq!(id.len(), 64);
        assert_ne!(id, session.csrf);
        // Requests every 50 s keep it alive...
        for step in 1..6 {
            assert!(sessions
                .touch(&id, t0 + Duration::from_secs(50 * step))
                .is_some());
        }
        // ...but not past the absolute limit.
        assert!(sessions.touch(&id, t0 + Duration::from_secs(300)).is_none());

        let (id, _) = sessions.create("admin", source(), t0);
        assert!(sessions.touch(&id, t0 + Duration::from_secs(61)).is_none());
        assert!(sessions.touch("not-a-session", t0).is_none());
    }

    #[test]
    fn logout_and_password_changes_end_sessions() {
        let sessions = Sessions::new(IDLE, ABSOLUTE);
        let now = Instant::now();
        let (a, _) = sessions.create("admin", source(), now);
        let (b, _) = sessions.create("admin", source(), now);
        let (c, _) = sessions.create("ops", source(), now);
        sessions.remove(&a);
        assert!(sessions.touch(&a, now).is_none());
        sessions.remove_user("admin");
        assert!(sessions.touch(&b, now).is_none());
        assert!(sessions.touch(&c, now).is_some());
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let sessions = Sessions::new(IDLE, ABSOLUTE);
        let (_, session) = sessions.create("admin", source(), Instant::now());
        assert!(csrf_matches(&session, &session.csrf.clone()));
        assert!(!csrf_matches(&session, ""));
        assert!(!csrf_matches(&session, &session.csrf[..63]));
        let (_, other) = sessions.create("admin", source(), Instant::now());
        assert!(!csrf_matches(&session, &other.csrf));
    }

    #[test]
    fn logins_are_limited_per_source() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(600));
        let t0 = Instant::now();
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check(source(), t0), Ok(()));
            limiter.failed(source(), t0);
        }
        let wait = limiter
            .check(source(), t0 + Duration::from_secs(100))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(500));
        // Another source is not affected; the window's end lets the first try again.
        assert_eq!(limiter.check(other, t0), Ok(()));
        assert_eq!(
            limiter.check(source(), t0 + Duration::from_secs(600)),
            Ok(())
        );
        // A success clears the count.
        limiter.failed(other, t0);
        limiter.succeeded(other);
        limiter.failed(other, t0);
        limiter.failed(other, t0);
        assert_eq!(limiter.check(other, t0), Ok(()));
    }

    #[test]
    fn the_oldest_session_goes_when_too_many_live() {
        let sessions = Sessions::new(IDLE, ABSOLUTE);
        let t0 = Instant::now();
        let (first, _) = sessions.create("admin", source(), t0);
        for i in 1..=MAX_SESSIONS {
            sessions.create("admin", source(), t0 + Duration::from_millis(i as u64));
        }
        assert!(sessions
            .touch(&first, t0 + Duration::from_secs(1))
            .is_none());
    }
}
