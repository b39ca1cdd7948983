//! The delivery loop: the oldest events of the spool, in batches, to the platform, until
//! the spool is empty; then wait for more. Each answer goes through
//! [`Delivery::judge`](super::policy::Delivery::judge): delivered events leave the spool,
//! refused ones become dead letters, and failures wait for the backoff. While the circuit
//! is open, each attempt carries a single event (a probe), so a platform that comes back
//! is not hit by a full batch on its first breath.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::batch::batch_body;
use super::client::UplinkClient;
use super::policy::{Delivery, RetryPolicy, Verdict};
use crate::spool::Spool;

/// What the metrics and the API show of the uplink.
#[derive(Debug, Default)]
pub struct UplinkCounters {
    pub delivered: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub circuit_open: AtomicBool,
}

/// Batch limits, from `[uplink]`.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    /// How long the oldest event may wait for a batch to fill.
    pub max_wait: Duration,
}

pub struct Deliverer {
    pub appliance: String,
    pub spool: Arc<Spool>,
    pub client: UplinkClient,
    pub limits: BatchLimits,
    pub policy: RetryPolicy,
    /// Notified by sources after an append, so an idle uplink wakes at once.
    pub appended: Arc<Notify>,
    pub counters: Arc<UplinkCounters>,
}

impl Deliverer {
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut delivery = Delivery::new(self.policy);
        let mut retry_at: Option<Instant> = None;
        loop {
            if let Some(at) = retry_at.take() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
            }
            let max_events = if delivery.circuit_open() {
                1
            } else {
                self.limits.max_events
            };
            let batch = match self.spool.peek(None, max_events, self.limits.max_bytes) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "reading the spool for the uplink");
                    retry_at = Some(Instant::now() + Duration::from_secs(1));
                    continue;
                }
            };
            let Some((_, oldest)) = batch.first() else {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.appended.notified() => {}
                }
                continue;
            };
            // A small batch waits (at most max_wait after its oldest event) for company.
            if batch.len() < max_events {
                let age = oldest.age();
                if age < self.limits.max_wait {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(self.limits.max_wait - age) => {}
                    }
                    continue;
                }
            }
            let sequences: Vec<u64> = batch.iter().map(|(s, _)| *s).collect();
            let count = sequences.len() as u64;
            let answer = tokio::select! {
                _ = cancel.cancelled() => return,
                answer = self.client.post(batch_body(&self.appliance, &batch)) => answer,
            };
            let jitter = rand::rng().random::<f64>();
            let verdict = delivery.judge(&answer, Instant::now(), jitter);
            self.counters
                .circuit_open
                .store(delivery.circuit_open(), Ordering::Relaxed);
            match verdict {
                Verdict::Delivered => match self.spool.remove(sequences).await {
                    Ok(()) => {
                        self.counters.delivered.fetch_add(count, Ordering::Relaxed);
                    }
                    Err(e) => tracing::error!(error = %e, "removing delivered events"),
                },
                Verdict::DeadLetter { reason } => {
                    tracing::warn!(events = count, %reason, "the platform refused events");
                    match self.spool.dead_letter(sequences, &reason).await {
                        Ok(()) => {
                            self.counters
                                .dead_lettered
                                .fetch_add(count, Ordering::Relaxed);
                        }
                        Err(e) => tracing::error!(error = %e, "moving events to the dead letters"),
                    }
                }
                Verdict::Retry { at, why } => {
                    self.counters
                        .failed_attempts
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%why, failures = delivery.failures(),
                        circuit_open = delivery.circuit_open(), "the uplink will try again");
                    retry_at = Some(at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::probes::tls_client::test_support::{pki, serve};
    use crate::spool::{Event, FullPolicy};
    use crate::test_util::poll_until;
    use crate::uplink::test_config;

    fn event(n: u64) -> Event {
        Event {
            connector: "hooks".into(),
            kind: "webhook".into(),
            received_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
                - 10_000
                + n,
            payload: format!("{{\"n\":{n}}}").into_bytes(),
        }
    }

    async fn deliver_with(response: &[u8]) -> (Arc<Spool>, Arc<UplinkCounters>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(&dir.path().join("spool.redb"), 1 << 20).unwrap());
        for n in 0..5 {
            spool.append(&event(n), FullPolicy::Block).await.unwrap();
        }
        let pki = pki(&["127.0.0.1"], (2090, 1, 1));
        let (addr, mut heads) = serve(Some(pki.server.clone()), response.to_vec()).await;
        let config = test_config(format!("https://{addr}/in"), pki.ca_file.path());
        let counters = Arc::new(UplinkCounters::default());
        let deliverer = Deliverer {
            appliance: "plant-01".into(),
            spool: spool.clone(),
            client: UplinkClient::new(&config).unwrap(),
            limits: BatchLimits {
                max_events: 2,
                max_bytes: 1 << 20,
                max_wait: Duration::from_millis(10),
            },
            policy: RetryPolicy::default(),
            appended: Arc::new(Notify::new()),
            counters: counters.clone(),
        };
        let cancel = CancellationToken::new();
        let task = tokio::spawn(deliverer.run(cancel.clone()));
        // Three batches (2 + 2 + 1) reach the platform.
        let mut requests = 0;
        while requests < 3 {
            tokio::time::timeout(Duration::from_secs(10), heads.recv())
                .await
                .expect("a request within 10 s")
                .unwrap();
            requests += 1;
        }
        // Let the last answer be applied before looking: every event leaves the queue.
        // The tests then assert on what is left.
        poll_until(Duration::from_secs(10), || spool.stats().events == 0).await;
        cancel.cancel();
        task.await.unwrap();
        (spool, counters, requests)
    }

    #[tokio::test]
    async fn accepted_batches_leave_the_spool() {
        let (spool, counters, _) = deliver_with(
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 5);
        assert_eq!(spool.stats().events, 0);
    }

    #[tokio::test]
    async fn refused_batches_become_dead_letters() {
        let (spool, counters, _) = deliver_with(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 17\r\nConnection: close\r\n\r\nunknown connector",
        )
        .await;
        assert_eq!(counters.dead_lettered.load(Ordering::Relaxed), 5);
        let letters = spool.dead_letters(10).unwrap();
        assert_eq!(letters.len(), 5);
        assert_eq!(letters[0].reason, "HTTP 400: unknown connector");
    }
}
