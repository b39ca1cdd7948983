//! The sources of `[[connectors]]`: each turns what arrives (a webhook, an AMI event, a
//! dropped file, a syslog message) into [`Event`]s and hands them to its [`Sink`], which
//! returns only once the event is durable in the spool. A source tells its sender
//! "accepted" only after that.

pub mod asterisk_ami;
pub mod file_drop;
pub mod syslog;
pub mod webhook;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use siteward_config::{Connector, Source, WhenFull};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::spool::{Event, FullPolicy, Spool, SpoolError};

/// What the metrics and the API show of one connector.
#[derive(Debug, Default)]
pub struct ConnectorCounters {
    /// Events durable in the spool.
    pub received: AtomicU64,
    /// Input refused as malformed (bad signature, bad syslog line, bad CSV row...).
    pub rejected: AtomicU64,
    /// Events the spool could not take (full with `block`, or a storage error).
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

    /// Appends one event; `Ok` means it is durable and may be acknowledged.
    pub async fn accept(&self, kind: &str, payload: Vec<u8>) -> Result<u64, SpoolError> {
        let event = Event {
            connector: self.connector.to_string(),
            kind: kind.to_string(),
            received_at_ms: now_ms(),
            payload,
        };
        match self.spool.append(&event, self.policy).await {
            Ok(sequence) => {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                self.appended.notify_one();
                Ok(sequence)
            }
            Err(e) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Counts one piece of malformed input.
    pub fn reject(&self) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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

/// Starts the source of `connector`, feeding `sink`, until `cancel`.
pub async fn start(
    connector: &Connector,
    sink: Sink,
    cancel: CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    match &connector.source {
        Source::Webhook(config) => webhook::start(config, sink, cancel).await,
        Source::Syslog(config) => syslog::start(config, sink, cancel).await,
        Source::FileDrop(config) => file_drop::start(config, sink, cancel).await,
        Source::AsteriskAmi(config) => asterisk_ami::start(config, sink, cancel).await,
    }
}
