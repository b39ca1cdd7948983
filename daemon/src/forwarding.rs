//! The relay connectors at run time: the spool in the state directory, the sources that
//! feed it, the uplink that drains it (and sends the periodic status reports), and the TCP
//! relays. A reload applies `[[connectors]]` and `[[relays]]` as diffs and restarts the
//! uplink when `[uplink]` changed; the spool's bound takes effect at the next restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use siteward_config::{Connector, Relay, Uplink};
use siteward_connectors::net::Resolver;
use siteward_connectors::relay::{self, RelayCounters};
use siteward_connectors::running::{SetChanges, TaskSet};
use siteward_connectors::sources::{self, ConnectorCounters, Sink};
use siteward_connectors::spool::Spool;
use siteward_connectors::uplink::client::UplinkClient;
use siteward_connectors::uplink::deliver::{BatchLimits, Deliverer, UplinkCounters};
use siteward_connectors::uplink::policy::RetryPolicy;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The spool's file in the state directory.
pub const SPOOL_FILE: &str = "spool.redb";

pub struct Forwarding {
    appliance: String,
    resolver: Resolver,
    pub spool: Arc<Spool>,
    /// Sources notify it after an append, so an idle uplink wakes at once.
    appended: Arc<Notify>,
    pub uplink_counters: Arc<UplinkCounters>,
    pub sources: TaskSet<Connector, ConnectorCounters>,
    pub relays: TaskSet<Relay, RelayCounters>,
    uplink: Mutex<Option<RunningUplink>>,
}

struct RunningUplink {
    config: Uplink,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Forwarding {
    /// Opens (or creates) the spool; nothing runs yet.
    /// Names (AMI targets, relay targets) are resolved with `resolver`, the daemon's one.
    pub fn open(
        appliance: &str,
        state_dir: &Path,
        max_bytes: u64,
        resolver: Resolver,
    ) -> anyhow::Result<Forwarding> {
        let path: PathBuf = state_dir.join(SPOOL_FILE);
        let spool = Spool::open(&path, max_bytes).context("opening the spool")?;
        Ok(Forwarding {
            appliance: appliance.to_string(),
            resolver,
            spool: Arc::new(spool),
            appended: Arc::new(Notify::new()),
            uplink_counters: Arc::new(UplinkCounters::default()),
            sources: TaskSet::default(),
            relays: TaskSet::default(),
            uplink: Mutex::new(None),
        })
    }

    pub async fn apply_connectors(&self, connectors: &[Connector]) -> SetChanges {
        let (spool, appended) = (self.spool.clone(), self.appended.clone());
        let resolver = &self.resolver;
        self.sources
            .apply(connectors, move |connector, counters, cancel| {
                let sink = Sink::new(
                    &connector.name,
                    connector.when_full,
                    spool.clone(),
                    appended.clone(),
                    counters,
                );
                async move { sources::start(&connector, sink, resolver, cancel).await }
            })
            .await
    }

    pub async fn apply_relays(&self, relays: &[Relay]) -> SetChanges {
        self.relays
            .apply(relays, |relay, counters, cancel| {
                let resolver = self.resolver.clone();
                async move { relay::start(&relay, resolver, counters, cancel).await }
            })
            .await
    }

    /// Starts, restarts or stops the uplink (delivery and status reports) to match
    /// `uplink`; `status` builds each status report's payload.
    pub async fn apply_uplink(
        &self,
        uplink: Option<&Uplink>,
        status: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
    ) -> anyhow::Result<()> {
        if self.lock_uplink().as_ref().map(|r| &r.config) == uplink {
            return Ok(());
        }
        let running = self.lock_uplink().take();
        if let Some(running) = running {
            running.stop().await;
        }
        let Some(config) = uplink else {
            return Ok(());
        };
        // Both clients first: a failure must not leave a task running unrecorded.
        let client = UplinkClient::new(config).context("setting up the uplink")?;
        let status_client = match config.status_interval {
            Some(interval) => Some((
                interval,
                UplinkClient::new(config).context("setting up the status reports")?,
            )),
            None => None,
        };
        let cancel = CancellationToken::new();
        let deliverer = Deliverer {
            appliance: self.appliance.clone(),
            spool: self.spool.clone(),
            client,
            limits: BatchLimits {
                max_events: config.batch_max_events,
                max_bytes: config.batch_max_bytes,
                max_wait: config.batch_max_wait,
            },
            policy: RetryPolicy::default(),
            appended: self.appended.clone(),
            counters: self.uplink_counters.clone(),
        };
        let mut tasks = vec![tokio::spawn(deliverer.run(cancel.clone()))];
        if let Some((interval, client)) = status_client {
            tasks.push(tokio::spawn(report_status(
                client,
                self.appliance.clone(),
                interval,
                status,
                cancel.clone(),
            )));
        }
        tracing::info!(url = %config.url, "uplink started");
        *self.lock_uplink() = Some(RunningUplink {
            config: config.clone(),
            cancel,
            tasks,
        });
        Ok(())
    }

    /// Every dead letter back into the queue; wakes the uplink.
    pub async fn replay(&self) -> Result<u64, siteward_connectors::spool::SpoolError> {
        let replayed = self.spool.replay().await?;
        self.appended.notify_one();
        tracing::info!(replayed, "dead letters replayed");
        Ok(replayed)
    }

    /// Stops sources and relays first (no new events), then the uplink.
    pub async fn shutdown(&self) {
        self.sources.shutdown().await;
        self.relays.shutdown().await;
        let running = self.lock_uplink().take();
        if let Some(running) = running {
            running.stop().await;
        }
    }

    fn lock_uplink(&self) -> std::sync::MutexGuard<'_, Option<RunningUplink>> {
        self.uplink.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RunningUplink {
    async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Posts a status report every `interval`. A report that fails is not retried: the next
/// one replaces it.
async fn report_status(
    mut client: UplinkClient,
    appliance: String,
    interval: std::time::Duration,
    status: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let body = siteward_connectors::uplink::batch::status_body(
            &appliance,
            std::time::SystemTime::now(),
            status(),
        );
        let answer = tokio::select! {
            _ = cancel.cancelled() => return,
            answer = client.post(body) => answer,
        };
        if !answer.is_success() {
            tracing::warn!(?answer, "the platform did not take the status report");
        }
    }
}
