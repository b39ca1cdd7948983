//! The sources of `[[connectors]]`: each turns what arrives (a webhook, an AMI event, a
//! dropped file, a syslog message) into [`Event`]s and hands them to its [`Sink`], which
//! returns only once the event is durable in the spool. A source tells its sender
//! "accepted" only after that.

pub mod asterisk_ami;
pub mod file_drop;
pub mod syslog;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;

use siteward_config::{Connector, Source, WhenFull};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::net::Resolver;
use crate::spool::{now_ms, Event, FullPolicy, Spool, SpoolError};

/// What the metrics and the API show of one connector.
#[derive(Debug, Default)]
pub struct ConnectorCounters {
    /// Events durable in the spool.
    pub received: AtomicU64,
    /// Input refused as malformed (bad signature, bad syslog line, bad CSV row...).
    pub rejected: AtomicU64,
    /// Events the spool could not take (full with `block`, or a storage error), each
    /// counted once, however often its source tried again.
    pub refused: AtomicU64,
    /// 1 while the source is connected to its peer (AMI), else 0; unused by listeners.
    pub connected: AtomicU64,
}

/// A connector's way into the spool: stamps each event with the connector's name and the
/// time, appends it under the connector's `when_full` policy, and wakes the uplink.
#[derive(Clone)]
pub struct Sink {
    connector: Arc<str>,
    policy: FullPolicy,
    spool: Arc<Spool>,
    appended: Arc<Notify>,
    counters: Arc<ConnectorCounters>,
}

impl Sink {
    pub fn new(
        connector: &str,
        when_full: WhenFull,
        spool: Arc<Spool>,
        appended: Arc<Notify>,
        counters: Arc<ConnectorCounters>,
    ) -> Sink {
        Sink {
            connector: connector.into(),
            policy: match when_full {
                WhenFull::Block => FullPolicy::Block,
                WhenFull::DropOldest => FullPolicy::DropOldest,
            },
            spool,
            appended,
            counters,
        }
    }

    pub fn connector(&self) -> &str {
        &self.connector
    }

    pub fn counters(&self) -> &ConnectorCounters {
        &self.counters
    }

    /// Appends one event; `Ok` means it is durable and may be acknowledged. A refusal is
    /// counted: the caller gives the event up (a webhook answers 503, a datagram is dropped).
    pub async fn accept(&self, kind: &str, payload: Vec<u8>) -> Result<u64, SpoolError> {
        let result = self.append(kind, payload).await;
        if result.is_err() {
            self.count_refused(1);
        }
        result
    }

    /// Appends `payloads` concurrently, so they share the spool's group commit, yet starts
    /// them in order (an append is queued to the spool's writer when first polled), so they
    /// are stored in the order given; the results come back in the same order. Refusals are
    /// not counted: a source that waits and tries again counts each event once, with
    /// [`Sink::count_refused`], and one that gives up counts what it gave up.
    pub async fn append_in_order(
        &self,
        kind: &str,
        payloads: impl IntoIterator<Item = Vec<u8>>,
    ) -> Vec<Result<u64, SpoolError>> {
        type Append<'a> = Pin<Box<dyn Future<Output = Result<u64, SpoolError>> + Send + 'a>>;
        enum Slot<'a> {
            Running(Append<'a>),
            Done(Result<u64, SpoolError>),
        }
        let mut slots: Vec<Slot<'_>> = payloads
            .into_iter()
            .map(|payload| Slot::Running(Box::pin(self.append(kind, payload))))
            .collect();
        std::future::poll_fn(|cx| {
            let mut finished = true;
            for slot in slots.iter_mut() {
                if let Slot::Running(append) = slot {
                    match append.as_mut().poll(cx) {
                        Poll::Ready(result) => *slot = Slot::Done(result),
                        Poll::Pending => finished = false,
                    }
                }
            }
            if finished {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Done(result) => result,
                Slot::Running(_) => Err(SpoolError::Closed),
            })
            .collect()
    }

    /// Counts `events` the spool could not take.
    pub fn count_refused(&self, events: u64) {
        self.counters.refused.fetch_add(events, Ordering::Relaxed);
    }

    /// One attempt, its refusal not counted (see [`Sink::append_in_order`]): stamps the
    /// event, appends it, counts and announces it once durable.
    pub async fn append(&self, kind: &str, payload: Vec<u8>) -> Result<u64, SpoolError> {
        let event = Event {
            connector: self.connector.to_string(),
            kind: kind.to_string(),
            received_at_ms: now_ms(),
            payload,
        };
        let sequence = self.spool.append(&event, self.policy).await?;
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        self.appended.notify_one();
        Ok(sequence)
    }

    /// Counts one piece of malformed input.
    pub fn reject(&self) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
    }
}

/// A source or relay that could not start (a listener that cannot bind, a directory that
/// cannot be watched...): what was being done, and the system's reason.
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {source}")]
pub struct StartError {
    pub doing: String,
    #[source]
    pub source: std::io::Error,
}

impl StartError {
    pub fn new(doing: impl Into<String>, source: std::io::Error) -> StartError {
        StartError {
            doing: doing.into(),
            source,
        }
    }
}

/// Starts the source of `connector`, feeding `sink`, until `cancel`; names (an AMI
/// target) are resolved with `resolver`, the daemon's one.
pub async fn start(
    connector: &Connector,
    sink: Sink,
    resolver: &Resolver,
    cancel: CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    match &connector.source {
        Source::Webhook(config) => webhook::start(config, sink, cancel).await,
        Source::Syslog(config) => syslog::start(config, sink, cancel).await,
        Source::FileDrop(config) => file_drop::start(config, sink, cancel).await,
        Source::AsteriskAmi(config) => {
            asterisk_ami::start(config, sink, resolver.clone(), cancel).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(spool: Arc<Spool>) -> Sink {
        let counters = Arc::new(ConnectorCounters::default());
        Sink::new(
            "hooks",
            WhenFull::Block,
            spool,
            Arc::new(Notify::new()),
            counters,
        )
    }

    #[tokio::test]
    async fn appends_in_order_share_commits_and_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(&dir.path().join("spool.redb"), 1 << 20).unwrap());
        let sink = sink(spool.clone());
        let payloads = (0..50).map(|n| format!("{n}").into_bytes());
        let results = sink.append_in_order("webhook", payloads).await;
        let sequences: Vec<u64> = results.into_iter().map(Result::unwrap).collect();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
        let stored = spool.peek(None, 100, usize::MAX).unwrap();
        let payloads: Vec<Vec<u8>> = stored.into_iter().map(|(_, e)| e.payload).collect();
        let expected: Vec<Vec<u8>> = (0..50).map(|n| format!("{n}").into_bytes()).collect();
        assert_eq!(payloads, expected);
        assert!(spool.stats().commits < 50, "{:?}", spool.stats());
        assert_eq!(sink.counters().received.load(Ordering::Relaxed), 50);
    }

    #[tokio::test]
    async fn only_accept_counts_a_refusal_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        // Room for one small event only.
        let spool = Arc::new(Spool::open(&dir.path().join("spool.redb"), 1 << 20).unwrap());
        let sink = sink(spool);
        let big = vec![b'x'; 600 << 10];
        sink.accept("webhook", big.clone()).await.unwrap();
        let refused = || sink.counters().refused.load(Ordering::Relaxed);
        // Tries of a source that waits are not counted...
        assert!(sink.append("webhook", big.clone()).await.is_err());
        assert!(sink.append_in_order("webhook", [big.clone()]).await[0].is_err());
        assert_eq!(refused(), 0);
        // ...it counts the event once; a source that gives up is counted by accept.
        sink.count_refused(1);
        assert!(sink.accept("webhook", big).await.is_err());
        assert_eq!(refused(), 2);
    }
}
