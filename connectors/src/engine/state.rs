//! Per-check state: rise/fall, last outcome, history and counters.

use std::collections::VecDeque;
use std::time::SystemTime;

use super::histogram::{Histogram, DURATION_BUCKETS};
use crate::{Outcome, Reason};

/// Outcomes kept per check for the API.
pub const HISTORY_LEN: usize = 20;
/// Longest detail text kept, so a chatty peer cannot grow the state.
const MAX_DETAIL: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not enough runs yet to reach `rise` or `fall`.
    Unknown,
    Up,
    Down,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Up => "up",
            Status::Down => "down",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CheckState {
    pub status: Status,
    pub since: Option<SystemTime>,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    pub last: Option<Outcome>,
    /// Newest last.
    pub history: VecDeque<Outcome>,
    pub counters: CheckCounters,
}

/// The cumulative part of a check's state: all `/metrics` needs beside the status, and
/// small enough to copy for every check at every scrape.
#[derive(Debug, Clone)]
pub struct CheckCounters {
    /// Runs per [`Reason`], indexed by [`Reason::index`].
    pub runs: [u64; Reason::ALL.len()],
    pub duration: Histogram,
    /// notAfter of the last certificate a peer presented (Unix time).
    pub tls_not_after: Option<i64>,
}

impl Default for CheckCounters {
    fn default() -> Self {
        CheckCounters {
            runs: [0; Reason::ALL.len()],
            duration: Histogram::new(DURATION_BUCKETS),
            tls_not_after: None,
        }
    }
}

impl Default for CheckState {
    fn default() -> Self {
        CheckState {
            status: Status::Unknown,
            since: None,
            consecutive_successes: 0,
            consecutive_failures: 0,
            last: None,
            history: VecDeque::with_capacity(HISTORY_LEN),
            counters: CheckCounters::default(),
        }
    }
}

impl CheckState {
    /// Records an outcome; returns `(from, to)` if the status changed.
    pub fn record(&mut self, outcome: &Outcome, rise: u32, fall: u32) -> Option<(Status, Status)> {
        let mut outcome = outcome.clone();
        let keep = crate::text::prefix(&outcome.detail, MAX_DETAIL).len();
        outcome.detail.truncate(keep);
        let counters = &mut self.counters;
        counters.runs[outcome.reason.index()] += 1;
        counters.duration.observe(outcome.duration.as_secs_f64());
        if outcome.tls_not_after.is_some() {
            counters.tls_not_after = outcome.tls_not_after;
        }

        let before = self.status;
        if outcome.up() {
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            self.consecutive_failures = 0;
            if self.consecutive_successes >= rise {
                self.status = Status::Up;
            }
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_successes = 0;
            if self.consecutive_failures >= fall {
                self.status = Status::Down;
            }
        }
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(outcome.clone());
        let changed = (before != self.status).then(|| {
            self.since = Some(outcome.at);
            (before, self.status)
        });
        self.last = Some(outcome);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn outcome(reason: Reason) -> Outcome {
        Outcome {
            reason,
            detail: "x".repeat(1000),
            duration: Duration::from_millis(5),
            at: SystemTime::now(),
            tls_not_after: None,
        }
    }

    #[test]
    fn rise_and_fall_need_consecutive_runs() {
        let mut s = CheckState::default();
        assert_eq!(s.record(&outcome(Reason::Ok), 2, 3), None);
        assert_eq!(s.status, Status::Unknown);
        assert_eq!(
            s.record(&outcome(Reason::Ok), 2, 3),
            Some((Status::Unknown, Status::Up))
        );
        assert_eq!(s.record(&outcome(Reason::Timeout), 2, 3), None);
        assert_eq!(s.record(&outcome(Reason::Timeout), 2, 3), None);
        // A success in between resets the failure count.
        assert_eq!(s.record(&outcome(Reason::Ok), 2, 3), None);
        for _ in 0..2 {
            assert_eq!(s.record(&outcome(Reason::Refused), 2, 3), None);
        }
        assert_eq!(
            s.record(&outcome(Reason::Refused), 2, 3),
            Some((Status::Up, Status::Down))
        );
        assert_eq!(s.counters.runs[Reason::Ok.index()], 3);
        assert_eq!(s.counters.runs[Reason::Refused.index()], 3);
        assert_eq!(s.counters.duration.count(), 8);
    }

    #[test]
    fn history_and_detail_are_bounded() {
        let mut s = CheckState::default();
        for _ in 0..(HISTORY_LEN + 5) {
            s.record(&outcome(Reason::Ok), 1, 1);
        }
        assert_eq!(s.history.len(), HISTORY_LEN);
        assert_eq!(s.last.as_ref().unwrap().detail.len(), MAX_DETAIL);
    }
}
