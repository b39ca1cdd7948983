//! The check engine: one task per configured check, on a fixed schedule.
//!
//! Each task runs its probe every `interval` (first run spread over the interval by a
//! hash of the name, so 1,000 checks do not fire at once), applies rise/fall, and records
//! the outcome in the check's [`CheckState`]. The daemon reads [`Engine::snapshot`] for the
//! API and [`Engine::metrics`] for `/metrics`, asks for a run with [`Engine::run_now`], and on reload hands the new
//! list to [`Engine::apply`], which restarts only what changed.

mod histogram;
mod state;

pub use histogram::{Histogram, DURATION_BUCKETS, LATENESS_BUCKETS};
pub use state::{CheckCounters, CheckState, Status, HISTORY_LEN};

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use siteward_config::Check;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::net::Resolver;
use crate::{probes, Outcome};

/// A check as the engine runs it.
struct Runtime {
    check: Arc<Check>,
    state: Mutex<CheckState>,
    run_now: mpsc::Sender<oneshot::Sender<Outcome>>,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// A point-in-time copy of one check, for the API and metrics.
#[derive(Debug, Clone)]
pub struct CheckSnapshot {
    pub check: Arc<Check>,
    pub state: CheckState,
}

/// What `/metrics` renders of one check: its status and counters, without the history.
#[derive(Debug, Clone)]
pub struct CheckMetrics {
    pub check: Arc<Check>,
    pub status: Status,
    pub counters: CheckCounters,
}

/// What [`Engine::apply`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: usize,
}

/// Runs the configured checks. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Engine {
    resolver: Resolver,
    /// In configuration order.
    checks: RwLock<Vec<Arc<Runtime>>>,
    lateness: Arc<Mutex<Histogram>>,
}

impl Engine {
    pub fn new(resolver: Resolver) -> Self {
        Engine {
            resolver,
            checks: RwLock::new(Vec::new()),
            lateness: Arc::new(Mutex::new(Histogram::new(LATENESS_BUCKETS))),
        }
    }

    /// Makes the running set match `checks`: new ones start, removed ones stop, changed
    /// ones restart with fresh state, and unchanged ones keep running untouched.
    /// Must be called inside a Tokio runtime.
    pub fn apply(&self, checks: &[Check]) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        let mut running = self.checks.write().unwrap_or_else(|e| e.into_inner());
        let mut old: HashMap<String, Arc<Runtime>> = running
            .drain(..)
            .map(|rt| (rt.check.name.clone(), rt))
            .collect();
        for check in checks {
            match old.remove(&check.name) {
                Some(rt) if *rt.check == *check => {
                    summary.unchanged += 1;
                    running.push(rt);
                }
                Some(rt) => {
                    rt.cancel.cancel();
                    summary.restarted.push(check.name.clone());
                    running.push(self.start(check.clone()));
                }
                None => {
                    summary.added.push(check.name.clone());
                    running.push(self.start(check.clone()));
                }
            }
        }
        for (name, rt) in old {
            rt.cancel.cancel();
            summary.removed.push(name);
        }
        summary.removed.sort();
        summary
    }

    fn start(&self, check: Check) -> Arc<Runtime> {
        let (tx, rx) = mpsc::channel(4);
        let rt = Arc::new(Runtime {
            check: Arc::new(check),
            state: Mutex::new(CheckState::default()),
            run_now: tx,
            cancel: CancellationToken::new(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(schedule(
            rt.clone(),
            self.resolver.clone(),
            self.lateness.clone(),
            rx,
        ));
        *rt.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        rt
    }

    /// Every check's configuration and state, in configuration order.
    pub fn snapshot(&self) -> Vec<CheckSnapshot> {
        let running = self.checks.read().unwrap_or_else(|e| e.into_inner());
        running.iter().map(|rt| rt.snapshot()).collect()
    }

    /// Every check's status and counters, in configuration order (cheaper than
    /// [`Engine::snapshot`], which copies the history too).
    pub fn metrics(&self) -> Vec<CheckMetrics> {
        let running = self.checks.read().unwrap_or_else(|e| e.into_inner());
        running
            .iter()
            .map(|rt| {
                let state = rt.state.lock().unwrap_or_else(|e| e.into_inner());
                CheckMetrics {
                    check: rt.check.clone(),
                    status: state.status,
                    counters: state.counters.clone(),
                }
            })
            .collect()
    }

    /// One check's configuration and state.
    pub fn snapshot_of(&self, name: &str) -> Option<CheckSnapshot> {
        self.find(name).map(|rt| rt.snapshot())
    }

    /// How late scheduled runs started, over all checks.
    pub fn lateness(&self) -> Histogram {
        self.lateness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs `name` now (outside its schedule) and returns the outcome, which also counts
    /// toward its state. `None` if there is no such check or it was stopped meanwhile.
    pub async fn run_now(&self, name: &str) -> Option<Outcome> {
        let rt = self.find(name)?;
        let (reply, answer) = oneshot::channel();
        rt.run_now.send(reply).await.ok()?;
        answer.await.ok()
    }

    /// Stops every check and waits for their tasks to end.
    pub async fn shutdown(&self) {
        let running: Vec<_> = self
            .checks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for rt in &running {
            rt.cancel.cancel();
        }
        for rt in running {
            let task = rt.task.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(task) = task {
                let _ = task.await;
            }
        }
    }

    fn find(&self, name: &str) -> Option<Arc<Runtime>> {
        let running = self.checks.read().unwrap_or_else(|e| e.into_inner());
        running.iter().find(|rt| rt.check.name == name).cloned()
    }
}

impl Runtime {
    fn snapshot(&self) -> CheckSnapshot {
        CheckSnapshot {
            check: self.check.clone(),
            state: self.state.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    fn record(&self, outcome: &Outcome) {
        let change = self.state.lock().unwrap_or_else(|e| e.into_inner()).record(
            outcome,
            self.check.rise,
            self.check.fall,
        );
        if let Some((from, to)) = change {
            tracing::info!(
                check = %self.check.name,
                kind = self.check.probe.kind(),
                from = from.as_str(),
                to = to.as_str(),
                reason = outcome.reason.as_str(),
                detail = %outcome.detail,
                "check state changed"
            );
        }
    }
}

/// The task behind one check: scheduled runs, on-demand runs, until cancelled.
async fn schedule(
    rt: Arc<Runtime>,
    resolver: Resolver,
    lateness: Arc<Mutex<Histogram>>,
    mut run_now: mpsc::Receiver<oneshot::Sender<Outcome>>,
) {
    let interval = rt.check.interval;
    let mut next = Instant::now() + spread(&rt.check.name, interval);
    loop {
        tokio::select! {
            _ = rt.cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {
                let started = Instant::now();
                lateness
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .observe(started.saturating_duration_since(next).as_secs_f64());
                let Some(outcome) = run_cancellable(&rt, &resolver).await else { return };
                rt.record(&outcome);
                next = next_tick(next, interval, Instant::now());
            }
            Some(reply) = run_now.recv() => {
                let Some(outcome) = run_cancellable(&rt, &resolver).await else { return };
                rt.record(&outcome);
                let _ = reply.send(outcome);
            }
        }
    }
}

async fn run_cancellable(rt: &Runtime, resolver: &Resolver) -> Option<Outcome> {
    tokio::select! {
        _ = rt.cancel.cancelled() => None,
        // Boxed: the probe's state machine (the largest kind's, kilobytes) lives only while
        // it runs, instead of in every check's task for its whole life.
        outcome = Box::pin(probes::run(&rt.check, resolver)) => Some(outcome),
    }
}

/// The first tick after `now` on the grid `previous + k * interval`: a run that overran
/// skips the ticks it missed instead of firing them in a burst.
fn next_tick(previous: Instant, interval: Duration, now: Instant) -> Instant {
    let next = previous + interval;
    if next > now {
        return next;
    }
    let behind = now.duration_since(next).as_nanos();
    let step = interval.as_nanos().max(1);
    let skipped = (behind / step + 1) as u32;
    next + interval * skipped
}

/// A stable offset within the interval, from the check's name.
fn spread(name: &str, interval: Duration) -> Duration {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    let nanos = interval.as_nanos().max(1) as u64;
    Duration::from_nanos(hasher.finish() % nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use siteward_config::{HostPort, Placement, Probe, TcpProbe};

    fn tcp_check(name: &str, port: u16, interval_ms: u64) -> Check {
        Check {
            name: name.into(),
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(interval_ms / 2),
            rise: 1,
            fall: 1,
            placement: Placement::default(),
            probe: Probe::Tcp(TcpProbe {
                target: HostPort {
                    host: siteward_config::Host::Ip("127.0.0.1".parse().unwrap()),
                    port,
                },
            }),
        }
    }

    #[test]
    fn next_tick_skips_missed_ticks() {
        let t0 = Instant::now();
        let i = Duration::from_secs(1);
        assert_eq!(next_tick(t0, i, t0 + Duration::from_millis(10)), t0 + i);
        assert_eq!(
            next_tick(t0, i, t0 + Duration::from_millis(2500)),
            t0 + 3 * i
        );
        assert_eq!(next_tick(t0, i, t0 + i), t0 + 2 * i);
    }

    #[test]
    fn spread_is_stable_and_inside_interval() {
        let i = Duration::from_secs(10);
        assert_eq!(spread("a", i), spread("a", i));
        assert!(spread("b", i) < i);
    }

    /// Every check's task lives as long as the check: its future must not carry the
    /// largest probe's state machine (kilobytes, times 1,000 checks).
    #[tokio::test]
    async fn check_task_stays_small() {
        let engine = Engine::new(Resolver::from_system().unwrap());
        let rt = engine.start(tcp_check("a", 1, 60_000));
        let (_tx, rx) = mpsc::channel(1);
        let task = schedule(rt, engine.resolver.clone(), engine.lateness.clone(), rx);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1024, "the check task's future is {size} bytes");
        engine.shutdown().await;
    }

    #[tokio::test]
    async fn apply_diffs_and_keeps_unchanged_state() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let engine = Engine::new(Resolver::from_system().unwrap());
        let a = tcp_check("a", port, 60_000);
        let b = tcp_check("b", port, 60_000);
        let summary = engine.apply(&[a.clone(), b.clone()]);
        assert_eq!(summary.added, vec!["a", "b"]);

        let outcome = engine.run_now("a").await.unwrap();
        assert!(outcome.up(), "{outcome:?}");
        assert_eq!(engine.snapshot_of("a").unwrap().state.status, Status::Up);

        let mut b2 = b.clone();
        b2.rise = 3;
        let c = tcp_check("c", port, 60_000);
        let summary = engine.apply(&[a.clone(), b2, c]);
        assert_eq!(summary.unchanged, 1);
        assert_eq!(summary.restarted, vec!["b"]);
        assert_eq!(summary.added, vec!["c"]);
        // "a" kept its state across the reload.
        assert_eq!(engine.snapshot_of("a").unwrap().state.status, Status::Up);

        let summary = engine.apply(&[a]);
        assert_eq!(summary.removed, vec!["b", "c"]);
        assert!(engine.run_now("b").await.is_none());
        engine.shutdown().await;
        assert!(engine.snapshot().is_empty());
    }
}
