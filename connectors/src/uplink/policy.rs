//! What the uplink does with the platform's answer to a batch, and when it tries again:
//! no I/O and no clock of its own (times are passed in), so every rule is tested here.
//!
//! - 2xx: delivered; the events leave the spool.
//! - 408, 429, 5xx, timeouts, connection errors: retried, after an exponential backoff
//!   with full jitter (a random wait between zero and the cap, so appliances that lost
//!   the platform together do not return together), or after `Retry-After` when the
//!   platform sends one (bounded, so a hostile value cannot park the uplink for days).
//! - any other 4xx: the platform refuses these events for good; they go to the dead
//!   letters with the status and the start of the body as the reason.
//! - A circuit breaker: after `failures_to_open` retryable failures in a row it opens, and
//!   the uplink sends nothing but one probe batch per backoff step until one succeeds.

use std::time::{Duration, Instant};

/// How the platform answered one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Status {
        code: u16,
        /// `Retry-After`, in seconds (the HTTP-date form is turned into seconds by the
        /// caller, or ignored).
        retry_after: Option<u64>,
        /// The start of the body, for the dead-letter reason.
        body: String,
    },
    /// No answer within the request timeout.
    Timeout,
    /// Could not connect, TLS failed, or the connection broke.
    Unreachable(String),
}

impl Answer {
    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            Answer::Status {
                code: 200..=299,
                ..
            }
        )
    }
}

/// What to do with the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Keep the events; send again no earlier than `at`.
    Retry {
        at: Instant,
        why: String,
    },
    /// Move the events to the dead letters with this reason.
    DeadLetter {
        reason: String,
    },
}

/// Backoff and circuit-breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// Retryable failures in a row that open the circuit.
    pub failures_to_open: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(600),
            failures_to_open: 5,
        }
    }
}

/// The uplink's delivery state: failures in a row and whether the circuit is open.
#[derive(Debug, Clone)]
pub struct Delivery {
    policy: RetryPolicy,
    failures: u32,
    open: bool,
}

impl Delivery {
    pub fn new(policy: RetryPolicy) -> Delivery {
        Delivery {
            policy,
            failures: 0,
            open: false,
        }
    }

    /// The circuit is open: the platform failed `failures_to_open` times in a row and
    /// only probes go out until one succeeds.
    pub fn circuit_open(&self) -> bool {
        self.open
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Judges `answer` at `now`; `jitter` is a random number in [0, 1) (the caller's RNG,
    /// so tests can pin it).
    pub fn judge(&mut self, answer: &Answer, now: Instant, jitter: f64) -> Verdict {
        let retry = |delivery: &mut Delivery, retry_after: Option<u64>, why: String| {
            delivery.failures = delivery.failures.saturating_add(1);
            if delivery.failures >= delivery.policy.failures_to_open {
                delivery.open = true;
            }
            let wait = match retry_after {
                Some(seconds) => Duration::from_secs(seconds).min(delivery.policy.max_retry_after),
                None => delivery.backoff(jitter),
            };
            Verdict::Retry {
                at: now + wait,
                why,
            }
        };
        match answer {
            Answer::Status { code, .. } if (200..300).contains(code) => {
                self.failures = 0;
                self.open = false;
                Verdict::Delivered
            }
            Answer::Status {
                code: code @ (408 | 429 | 500..=599),
                retry_after,
                ..
            } => retry(self, *retry_after, format!("HTTP {code}")),
            Answer::Status { code, body, .. } => {
                // The platform is up and answering: this is about the events, not the link.
                self.failures = 0;
                self.open = false;
                Verdict::DeadLetter {
                    reason: if body.is_empty() {
                        format!("HTTP {code}")
                    } else {
                        format!("HTTP {code}: {body}")
                    },
                }
            }
            Answer::Timeout => retry(self, None, "no answer in time".into()),
            Answer::Unreachable(why) => retry(self, None, format!("unreachable: {why}")),
        }
    }

    /// Full jitter: a uniform wait between zero and min(max, first * 2^(failures-1)).
    fn backoff(&self, jitter: f64) -> Duration {
        let exponent = self.failures.saturating_sub(1).min(30);
        let cap = self
            .policy
            .first_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.policy.max_backoff);
        cap.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Answer {
        Answer::Status {
            code,
            retry_after: None,
            body: String::new(),
        }
    }

    fn wait(verdict: &Verdict, now: Instant) -> Duration {
        match verdict {
            Verdict::Retry { at, .. } => *at - now,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn success_client_errors_and_server_errors_are_told_apart() {
        let now = Instant::now();
        let mut d = Delivery::new(RetryPolicy::default());
        assert_eq!(d.judge(&status(202), now, 0.5), Verdict::Delivered);
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(d.judge(&status(code), now, 0.5), Verdict::Retry { .. }),
                "{code}"
            );
        }
        d = Delivery::new(RetryPolicy::default());
        let refused = Answer::Status {
            code: 400,
            retry_after: None,
            body: "unknown connector".into(),
        };
        assert_eq!(
            d.judge(&refused, now, 0.5),
            Verdict::DeadLetter {
                reason: "HTTP 400: unknown connector".into()
            }
        );
        assert!(matches!(
            d.judge(&Answer::Timeout, now, 0.5),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            d.judge(&Answer::Unreachable("connection refused".into()), now, 0.5),
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let now = Instant::now();
        let policy = RetryPolicy {
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
            ..RetryPolicy::default()
        };
        let mut d = Delivery::new(policy);
        // With jitter 1.0 the wait is the cap itself: 1, 2, 4, 8, 8 s.
        let waits: Vec<u64> = (0..5)
            .map(|_| wait(&d.judge(&status(503), now, 1.0), now).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 8]);
        // Jitter scales it down anywhere to zero.
        assert_eq!(wait(&d.judge(&status(503), now, 0.0), now), Duration::ZERO);
        assert_eq!(
            wait(&d.judge(&status(503), now, 0.25), now),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let now = Instant::now();
        let mut d = Delivery::new(RetryPolicy::default());
        let answer = |seconds| Answer::Status {
            code: 429,
            retry_after: Some(seconds),
            body: String::new(),
        };
        assert_eq!(
            wait(&d.judge(&answer(7), now, 0.0), now),
            Duration::from_secs(7)
        );
        assert_eq!(
            wait(&d.judge(&answer(86_400 * 30), now, 0.0), now),
            RetryPolicy::default().max_retry_after
        );
    }

    #[test]
    fn the_circuit_opens_after_failures_in_a_row_and_closes_on_success() {
        let now = Instant::now();
        let mut d = Delivery::new(RetryPolicy {
            failures_to_open: 3,
            ..RetryPolicy::default()
        });
        for _ in 0..2 {
            d.judge(&Answer::Timeout, now, 0.5);
        }
        assert!(!d.circuit_open());
        d.judge(&status(500), now, 0.5);
        assert!(d.circuit_open());
        assert_eq!(d.failures(), 3);
        assert_eq!(d.judge(&status(200), now, 0.5), Verdict::Delivered);
        assert!(!d.circuit_open());
        assert_eq!(d.failures(), 0);
    }
}
