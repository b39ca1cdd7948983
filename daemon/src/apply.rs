//! Applying a configuration to the running daemon: the one path shared by SIGHUP (the file
//! changed on disk), a commit from the web UI or the API, a rollback, and the automatic
//! restore of a commit that was not confirmed in time.
//!
//! Every change goes through [`Applier`]'s lock, so a SIGHUP, two admins and the confirm
//! timer never interleave. A commit validates the text exactly as `check-config` does,
//! writes the file (still the source of truth), records the version in the history, then
//! applies it; a broken text changes nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use siteward_config::{Config, FieldError};
use siteward_connectors::engine::Engine;
use siteward_connectors::running::SetChanges;
use siteward_netstack::{TunnelChanges, Tunnels};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::config_store::{unix_now, unix_now_ms, Actor, ConfigStore, Pending};
use crate::forwarding::Forwarding;
use crate::metrics::DaemonStats;
use crate::sd_notify::Notifier;

/// The longest confirm window a commit may ask for.
pub const MAX_CONFIRM_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The confirm window the UI offers first.
pub const DEFAULT_CONFIRM_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Builds the payload of a status report: what the API shows of checks, tunnels, the spool.
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What a configuration is applied to.
pub struct Parts {
    pub engine: Arc<Engine>,
    pub tunnels: Arc<Tunnels>,
    pub forwarding: Arc<Forwarding>,
    pub status: StatusFn,
    pub stats: Arc<DaemonStats>,
    /// `systemctl status` follows every applied change, a commit from the web UI as much
    /// as a SIGHUP.
    pub notifier: Arc<Notifier>,
}

/// What applying a configuration did, for the UI's message and the API's answer.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ApplyReport {
    /// Sections whose changes wait for the next restart (`admin`, `metrics`, ...).
    pub restart_needed: Vec<&'static str>,
    /// Tunnels, connectors and relays that failed to start, with why.
    pub failed: Vec<String>,
}

/// The result of a commit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Committed {
    pub version: u64,
    /// Unix milliseconds by which the commit must be confirmed, if it must.
    pub confirm_by_ms: Option<u64>,
    pub applied: ApplyReport,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("the configuration has {} error(s)", .0.len())]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Refused(String),
    #[error("{0:#}")]
    Io(#[from] anyhow::Error),
}

pub struct Applier {
    parts: Parts,
    store: ConfigStore,
    running: RwLock<Arc<Config>>,
    running_version: AtomicU64,
    lock: Mutex<()>,
    pending_changed: Notify,
}

impl Applier {
    /// `config` is running (applied by the supervisor at start) and `running_version` its
    /// number in the history.
    pub fn new(parts: Parts, store: ConfigStore, config: Config, running_version: u64) -> Applier {
        Applier {
            parts,
            store,
            running: RwLock::new(Arc::new(config)),
            running_version: AtomicU64::new(running_version),
            lock: Mutex::new(()),
            pending_changed: Notify::new(),
        }
    }

    pub fn store(&self) -> &ConfigStore {
        &self.store
    }

    /// The configuration in force (sections that need a restart keep their values from
    /// the start).
    pub fn running(&self) -> Arc<Config> {
        self.running
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn running_version(&self) -> u64 {
        self.running_version.load(Ordering::Relaxed)
    }

    /// SIGHUP: loads the file again; applies it if valid, else keeps the running
    /// configuration.
    pub async fn reload_from_disk(&self) {
        let _guard = self.lock.lock().await;
        let path = self.store.config_path();
        tracing::info!(config = %path.display(), "SIGHUP: reloading the configuration");
        let loaded = self
            .store
            .read_config_file()
            .map_err(|e| {
                vec![FieldError {
                    path: String::new(),
                    message: format!("{e:#}"),
                }]
            })
            .and_then(|text| {
                siteward_config::parse(&text, self.store.base_dir())
                    .map(|config| (text, config))
                    .map_err(|e| e.field_errors())
            });
        let (text, new) = match loaded {
            Ok(loaded) => loaded,
            Err(problems) => {
                self.parts
                    .stats
                    .reloads_failed
                    .fetch_add(1, Ordering::Relaxed);
                for problem in problems {
                    tracing::error!(path = %problem.path, "{}", problem.message);
                }
                tracing::error!("reload failed; the running configuration stays in force");
                return;
            }
        };
        // Recorded first, so that once "configuration reloaded" is logged, the history
        // and the running version already say so.
        match self
            .store
            .record_running(&text, &Actor::daemon(), "reloaded")
        {
            Ok(version) => self.running_version.store(version, Ordering::Relaxed),
            Err(e) => tracing::error!("recording the reloaded configuration: {e:#}"),
        }
        self.apply(new).await;
    }

    /// Validates `text`, writes it as the config file, records and applies it. With
    /// `confirm_within`, the previous configuration comes back unless [`Self::confirm`]
    /// is called in time; without, a commit waiting for confirmation is confirmed too.
    pub async fn commit(
        &self,
        text: &str,
        confirm_within: Option<Duration>,
        by: &Actor,
        action: &str,
        comment: &str,
    ) -> Result<Committed, CommitError> {
        if confirm_within.is_some_and(|w| w.is_zero() || w > MAX_CONFIRM_WINDOW) {
            return Err(CommitError::Refused(format!(
                "the confirm window must be between 1 second and {}",
                humantime::format_duration(MAX_CONFIRM_WINDOW)
            )));
        }
        let _guard = self.lock.lock().await;
        let new = self.validate(text)?;
        let previous = self.running_version();
        self.store.write_config_file(text)?;
        let version = self.store.add_version(text, by, action, comment)?;
        self.running_version.store(version, Ordering::Relaxed);
        let applied = self.apply(new).await;

        let pending = self.store.pending()?;
        let confirm_by_ms = match confirm_within {
            Some(window) => {
                let deadline_ms = unix_now_ms() + window.as_millis() as u64;
                self.store.set_pending(&Pending {
                    version,
                    restore_version: pending.map_or(previous, |p| p.restore_version),
                    deadline_ms,
                    by: by.clone(),
                })?;
                Some(deadline_ms)
            }
            None => {
                if pending.is_some() {
                    self.store.clear_pending()?;
                }
                None
            }
        };
        self.pending_changed.notify_one();
        let detail = match confirm_by_ms {
            Some(ms) => format!(
                "version {version} ({action}), to be confirmed within {}",
                humantime::format_duration(Duration::from_secs(
                    (ms.saturating_sub(unix_now_ms())) / 1000
                ))
            ),
            None => format!("version {version} ({action})"),
        };
        self.audit(by, "commit", &detail);
        tracing::info!(version, by = %by.name, from = %by.from, confirm_by_ms, "configuration committed");
        Ok(Committed {
            version,
            confirm_by_ms,
            applied,
        })
    }

    /// Keeps a commit that waits for confirmation. Returns its version.
    pub async fn confirm(&self, by: &Actor) -> Result<u64, CommitError> {
        let _guard = self.lock.lock().await;
        let Some(pending) = self.store.pending()? else {
            return Err(CommitError::Refused(
                "no commit is waiting for confirmation".to_string(),
            ));
        };
        self.store.clear_pending()?;
        self.pending_changed.notify_one();
        self.audit(by, "confirm", &format!("version {}", pending.version));
        tracing::info!(version = pending.version, by = %by.name, "commit confirmed");
        Ok(pending.version)
    }

    /// Restores the version before an unconfirmed commit once its deadline has passed.
    /// Returns whether it did.
    pub async fn expire_pending(&self) -> anyhow::Result<bool> {
        self.restore_before_pending(None).await
    }

    /// "Roll back now": restores the version before an unconfirmed commit without
    /// waiting for its deadline.
    pub async fn roll_back_pending(&self, by: &Actor) -> anyhow::Result<bool> {
        self.restore_before_pending(Some(by)).await
    }

    async fn restore_before_pending(&self, asked_by: Option<&Actor>) -> anyhow::Result<bool> {
        let _guard = self.lock.lock().await;
        let Some(pending) = self.store.pending()? else {
            return Ok(false);
        };
        let why = match asked_by {
            None if unix_now_ms() < pending.deadline_ms => return Ok(false),
            None => "not confirmed in time".to_string(),
            Some(by) => format!("rolled back by {}", by.name),
        };
        let (version, text) = restore_files(&self.store, &pending, &why)?;
        self.running_version.store(version, Ordering::Relaxed);
        match siteward_config::parse(&text, self.store.base_dir()) {
            Ok(config) => {
                self.apply(config).await;
            }
            Err(e) => {
                // It ran before; a secret file removed since can break it. The file is
                // restored either way, and the next reload or restart reports why.
                tracing::error!("the restored configuration does not load: {e}");
            }
        }
        self.store.clear_pending()?;
        self.pending_changed.notify_one();
        Ok(true)
    }

    /// Waits for pending commits' deadlines until `cancel`; started once by the supervisor.
    pub async fn watch_pending(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let deadline = match self.store.pending() {
                Ok(pending) => pending.map(|p| p.deadline_ms),
                Err(e) => {
                    tracing::error!("reading the pending commit: {e:#}");
                    None
                }
            };
            let wait = deadline.map(|ms| Duration::from_millis(ms.saturating_sub(unix_now_ms())));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.pending_changed.notified() => continue,
                _ = sleep_or_forever(wait) => {
                    if let Err(e) = self.expire_pending().await {
                        tracing::error!("restoring the configuration of an unconfirmed commit: {e:#}");
                        // Try again shortly rather than spin on a persistent error.
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                        }
                    }
                }
            }
        }
    }

    /// Writes an audit line; a failure to write it is logged, not fatal to the change.
    pub fn audit(&self, by: &Actor, action: &str, detail: &str) {
        if let Err(e) = self.store.audit(by, action, detail) {
            tracing::error!("writing the audit log: {e:#}");
        }
    }

    /// The same validation as `check-config`, plus what a running daemon cannot follow.
    pub fn validate(&self, text: &str) -> Result<Config, CommitError> {
        let new = siteward_config::parse(text, self.store.base_dir())
            .map_err(|e| CommitError::Invalid(e.field_errors()))?;
        if new.appliance.state_dir != self.running().appliance.state_dir {
            // The history, the pending commit and the spool live there: moving it is a
            // job for the file and a restart, not for a commit that may roll back.
            return Err(CommitError::Invalid(vec![FieldError {
                path: "appliance.state_dir".to_string(),
                message: "the state directory cannot be changed from the web UI or the API; \
                          edit the file and restart"
                    .to_string(),
            }]));
        }
        Ok(new)
    }

    /// Applies a validated configuration; sections that need a restart keep their values.
    async fn apply(&self, new: Config) -> ApplyReport {
        let Parts {
            engine,
            tunnels,
            forwarding,
            status,
            stats,
            notifier,
        } = &self.parts;
        let running = self.running();
        let mut report = ApplyReport::default();
        for (section, changed) in [
            ("appliance", new.appliance != running.appliance),
            ("admin", new.admin != running.admin),
            ("metrics", new.metrics != running.metrics),
            ("spool", new.spool != running.spool),
        ] {
            if changed {
                tracing::warn!(
                    section,
                    "changes to [{section}] take effect at the next restart"
                );
                report.restart_needed.push(section);
            }
        }
        let tunnel_changes = tunnels.apply(&new.tunnels).await;
        log_tunnel_changes(&tunnel_changes);
        report.failed.extend(
            tunnel_changes
                .failed
                .iter()
                .map(|name| format!("tunnel {name} failed to start")),
        );
        for (what, changes) in [
            (
                "connectors",
                forwarding.apply_connectors(&new.connectors).await,
            ),
            ("relays", forwarding.apply_relays(&new.relays).await),
        ] {
            log_set_changes(what, &changes);
            report.failed.extend(
                changes
                    .failed
                    .iter()
                    .map(|(name, error)| format!("{what} {name}: {error}")),
            );
        }
        if let Err(e) = forwarding
            .apply_uplink(new.uplink.as_ref(), status.clone())
            .await
        {
            tracing::error!("{e:#}; the uplink stays stopped until the next reload");
            report.failed.push(format!("uplink: {e:#}"));
        }
        let summary = engine.apply(&new.checks);
        stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
        stats
            .last_reload_success
            .store(unix_now(), Ordering::Relaxed);
        tracing::info!(
            added = ?summary.added,
            removed = ?summary.removed,
            restarted = ?summary.restarted,
            unchanged = summary.unchanged,
            "configuration reloaded"
        );
        let mut next = (*running).clone();
        next.checks = new.checks;
        next.tunnels = new.tunnels;
        next.connectors = new.connectors;
        next.relays = new.relays;
        next.uplink = new.uplink;
        notifier.status(&status_line(&next));
        *self
            .running
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
        report
    }
}

/// The line `systemctl status` shows for a running configuration.
pub fn status_line(config: &Config) -> String {
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    format!(
        "running: {}, {}, {}, {}",
        count(config.checks.len(), "check"),
        count(config.tunnels.len(), "tunnel"),
        count(config.connectors.len(), "connector"),
        count(config.relays.len(), "relay"),
    )
}

/// At start, before anything runs: restores the previous file if a commit's confirm
/// window passed while the daemon was down. Returns whether it did.
pub fn restore_if_expired(store: &ConfigStore) -> anyhow::Result<bool> {
    let Some(pending) = store.pending()? else {
        return Ok(false);
    };
    if unix_now_ms() < pending.deadline_ms {
        return Ok(false);
    }
    restore_pending(store, &pending, "not confirmed in time")?;
    Ok(true)
}

/// Restores the version a pending commit would roll back to, now: when the daemon cannot
/// start with the committed file, waiting for the deadline would only keep the box down.
/// Returns the new version's number and text.
pub fn restore_pending(
    store: &ConfigStore,
    pending: &Pending,
    why: &str,
) -> anyhow::Result<(u64, String)> {
    let restored = restore_files(store, pending, why)?;
    store.clear_pending()?;
    Ok(restored)
}

/// The file, the audit line and the history entry of a restore; the pending commit is
/// cleared by the caller once the restore is complete (applied, for a running daemon),
/// so whoever sees it gone sees everything else done.
fn restore_files(
    store: &ConfigStore,
    pending: &Pending,
    why: &str,
) -> anyhow::Result<(u64, String)> {
    let text = store.version_text(pending.restore_version)?;
    store.write_config_file(&text)?;
    let action = format!(
        "restored {}: version {} {why}",
        pending.restore_version, pending.version
    );
    store.audit(&Actor::daemon(), "rollback", &action)?;
    let version = store.add_version(&text, &Actor::daemon(), &action, "")?;
    tracing::warn!("{action}");
    Ok((version, text))
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

fn log_set_changes(what: &str, changes: &SetChanges) {
    if changes == &SetChanges::default() {
        return;
    }
    for (name, error) in &changes.failed {
        tracing::error!(name, "{error}");
    }
    tracing::info!(
        added = ?changes.added,
        removed = ?changes.removed,
        restarted = ?changes.restarted,
        failed = changes.failed.len(),
        unchanged = changes.unchanged,
        "{what} applied"
    );
}

pub fn log_tunnel_changes(changes: &TunnelChanges) {
    if changes == &TunnelChanges::default() {
        return;
    }
    tracing::info!(
        added = ?changes.added,
        removed = ?changes.removed,
        updated = ?changes.updated,
        restarted = ?changes.restarted,
        failed = ?changes.failed,
        unchanged = changes.unchanged,
        "tunnels applied"
    );
}

/// Logs what the supervisor's first apply of connectors and relays did.
pub fn log_start_changes(what: &str, changes: &SetChanges) {
    log_set_changes(what, changes);
}
