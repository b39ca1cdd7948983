//! A set of named background tasks started from configuration entries (connectors,
//! relays), applied as a diff on reload: added entries start, removed ones stop, changed
//! ones restart, unchanged ones are left alone. An entry that fails to start is kept with
//! its error (shown by the API) and tried again at the next reload. Counters belong to the
//! name, so they survive a restart and stay monotonic for Prometheus.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::sources::StartError;

/// How long a stopping task gets before it is aborted.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// An entry of the set: something with a unique name.
pub trait Named {
    fn name(&self) -> &str;
}

impl Named for siteward_config::Connector {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for siteward_config::Relay {
    fn name(&self) -> &str {
        &self.name
    }
}

/// What an [`TaskSet::apply`] did, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SetChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    /// Entries that could not start, with the reason.
    pub failed: Vec<(String, String)>,
    pub unchanged: usize,
}

/// One entry as the API and metrics see it.
#[derive(Debug, Clone)]
pub struct EntryStatus<C, K> {
    pub config: C,
    pub counters: Arc<K>,
    /// Why it is not running, if it could not start.
    pub error: Option<String>,
}

struct Entry<C, K> {
    config: C,
    counters: Arc<K>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
    error: Option<String>,
}

pub struct TaskSet<C, K> {
    entries: Mutex<Vec<Entry<C, K>>>,
}

impl<C, K> Default for TaskSet<C, K> {
    fn default() -> Self {
        TaskSet {
            entries: Mutex::new(Vec::new()),
        }
    }
}

impl<C, K> TaskSet<C, K>
where
    C: Named + Clone + PartialEq,
    K: Default,
{
    /// Brings the set to `wanted`, starting entries with `start`. Entries stop before
    /// any starts, so a changed one can bind its port again.
    pub async fn apply<F, Fut>(&self, wanted: &[C], start: F) -> SetChanges
    where
        F: Fn(C, Arc<K>, CancellationToken) -> Fut,
        Fut: Future<Output = Result<JoinHandle<()>, StartError>>,
    {
        let mut changes = SetChanges::default();
        let old: Vec<Entry<C, K>> = std::mem::take(&mut *self.lock());
        let mut kept = Vec::new();
        let mut stopping = Vec::new();
        let mut counters_of = Vec::new();
        for entry in old {
            let name = entry.config.name().to_string();
            match wanted.iter().find(|c| c.name() == name) {
                Some(config) if *config == entry.config && entry.error.is_none() => {
                    changes.unchanged += 1;
                    kept.push(entry);
                }
                Some(_) => {
                    changes.restarted.push(name.clone());
                    counters_of.push((name, entry.counters.clone()));
                    stopping.push(entry);
                }
                None => {
                    changes.removed.push(name);
                    stopping.push(entry);
                }
            }
        }
        for entry in stopping {
            stop(entry).await;
        }
        for config in wanted {
            let name = config.name();
            if kept.iter().any(|e| e.config.name() == name) {
                continue;
            }
            let counters = match counters_of.iter().find(|(n, _)| n == name) {
                Some((_, counters)) => counters.clone(),
                None => {
                    changes.added.push(name.to_string());
                    Arc::new(K::default())
                }
            };
            let cancel = CancellationToken::new();
            let (task, error) = match start(config.clone(), counters.clone(), cancel.clone()).await
            {
                Ok(task) => (Some(task), None),
                Err(e) => {
                    changes.failed.push((name.to_string(), e.to_string()));
                    (None, Some(e.to_string()))
                }
            };
            kept.push(Entry {
                config: config.clone(),
                counters,
                cancel,
                task,
                error,
            });
        }
        // The configuration's order, for the API.
        kept.sort_by_key(|e| wanted.iter().position(|c| c.name() == e.config.name()));
        *self.lock() = kept;
        changes
    }

    /// Every entry, in the configuration's order.
    pub fn statuses(&self) -> Vec<EntryStatus<C, K>> {
        self.lock()
            .iter()
            .map(|e| EntryStatus {
                config: e.config.clone(),
                counters: e.counters.clone(),
                error: e.error.clone(),
            })
            .collect()
    }

    /// Stops every entry.
    pub async fn shutdown(&self) {
        let entries = std::mem::take(&mut *self.lock());
        for entry in entries {
            stop(entry).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry<C, K>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn stop<C: Named, K>(entry: Entry<C, K>) {
    entry.cancel.cancel();
    if let Some(mut task) = entry.task {
        if tokio::time::timeout(STOP_TIMEOUT, &mut task).await.is_err() {
            tracing::warn!(
                name = entry.config.name(),
                "did not stop within {STOP_TIMEOUT:?}; aborted"
            );
            task.abort();
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Job {
        name: String,
        setting: u32,
    }

    impl Named for Job {
        fn name(&self) -> &str {
            &self.name
        }
    }

    fn job(name: &str, setting: u32) -> Job {
        Job {
            name: name.into(),
            setting,
        }
    }

    /// Starts a task that counts its starts and runs until cancelled; setting 0 fails.
    async fn start(
        job: Job,
        starts: Arc<AtomicU64>,
        cancel: CancellationToken,
    ) -> Result<JoinHandle<()>, StartError> {
        if job.setting == 0 {
            return Err(StartError::new(
                format!("starting {}", job.name),
                std::io::Error::from(std::io::ErrorKind::AddrInUse),
            ));
        }
        starts.fetch_add(1, Ordering::Relaxed);
        Ok(tokio::spawn(async move { cancel.cancelled().await }))
    }

    #[tokio::test]
    async fn a_reload_starts_stops_and_restarts_by_difference() {
        let set: TaskSet<Job, AtomicU64> = TaskSet::default();
        let changes = set.apply(&[job("a", 1), job("b", 1)], start).await;
        assert_eq!(changes.added, ["a", "b"]);

        let changes = set
            .apply(&[job("b", 2), job("c", 1), job("a", 1)], start)
            .await;
        assert_eq!(changes.added, ["c"]);
        assert_eq!(changes.restarted, ["b"]);
        assert_eq!(changes.unchanged, 1);
        let statuses = set.statuses();
        let names: Vec<&str> = statuses.iter().map(|s| s.config.name()).collect();
        assert_eq!(names, ["b", "c", "a"]);
        // b's counters survived its restart: two starts on one counter.
        assert_eq!(statuses[0].counters.load(Ordering::Relaxed), 2);

        let mut changes = set.apply(&[job("c", 1)], start).await;
        changes.removed.sort();
        assert_eq!(changes.removed, ["a", "b"]);
        set.shutdown().await;
        assert!(set.statuses().is_empty());
    }

    #[tokio::test]
    async fn a_failed_entry_is_kept_with_its_error_and_retried() {
        let set: TaskSet<Job, AtomicU64> = TaskSet::default();
        let changes = set.apply(&[job("a", 0)], start).await;
        assert_eq!(changes.failed.len(), 1);
        assert!(changes.failed[0].1.contains("starting a"), "{changes:?}");
        assert!(set.statuses()[0].error.is_some());
        // The same configuration is tried again (the port may be free now).
        let changes = set.apply(&[job("a", 0)], start).await;
        assert_eq!(changes.restarted, ["a"]);
        let changes = set.apply(&[job("a", 1)], start).await;
        assert!(changes.failed.is_empty());
        assert!(set.statuses()[0].error.is_none());
    }
}
