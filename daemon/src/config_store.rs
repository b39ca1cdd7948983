//! What the web UI and the API keep about the configuration file, in
//! `<state_dir>/config/`: every version that ran (history), the staged candidate, a commit
//! waiting for confirmation, and the audit log. The config file itself stays the source of
//! truth: a commit writes it (atomically, keeping its mode) and a reload reads it.
//!
//! Files, all private (0600 in a 0700 directory):
//! - `history/NNNNNN.toml` (the file as it ran) and `history/NNNNNN.json` ([`Version`]);
//! - `candidate.toml` and `candidate.json` ([`CandidateInfo`]): absent when nothing is staged;
//! - `pending.json` ([`Pending`]): present while a commit waits for confirmation, so a
//!   restart in the confirm window still rolls back at the deadline;
//! - `audit.log`: one JSON object per line ([`AuditEntry`]).
//!
//! Nothing here applies a configuration; `apply.rs` does, under its own lock.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::state_files::{ensure_private_dir, remove_if_exists, replace_atomically, write_private};

/// Versions kept in the history; the oldest go first beyond it.
const MAX_HISTORY: usize = 200;
/// Audit lines returned by one listing.
pub const MAX_AUDIT_LISTING: usize = 1000;

/// Who did something, from where: the audit log's "who" and "from".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// A web UI account (`admin`), an API token (`token:ci`), or `siteward` itself.
    pub name: String,
    /// The client's address; empty for the daemon's own actions.
    pub from: String,
}

impl Actor {
    pub fn daemon() -> Actor {
        Actor {
            name: "siteward".to_string(),
            from: String::new(),
        }
    }
}

/// One version of the file in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub version: u64,
    /// Unix seconds.
    pub at: u64,
    pub by: Actor,
    /// How it came to run: `started`, `reloaded`, `committed`, `rolled back to 3`,
    /// `restored: not confirmed in time`.
    pub action: String,
    #[serde(default)]
    pub comment: String,
}

/// The staged candidate's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateInfo {
    /// Bumped by every edit: a form carries the revision it was opened at, so two admins
    /// editing at once cannot overwrite each other unknowingly.
    pub revision: u64,
    /// The running version the candidate was staged from.
    pub base_version: u64,
    pub edited_by: Actor,
    pub edited_at: u64,
}

/// A commit waiting for confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The version committed (and running).
    pub version: u64,
    /// The version restored if the deadline passes: the one before the first unconfirmed
    /// commit, so several commits in one window roll back together.
    pub restore_version: u64,
    /// Unix milliseconds.
    pub deadline_ms: u64,
    pub by: Actor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: u64,
    pub by: Actor,
    /// `login`, `login failed`, `stage`, `commit`, `confirm`, `rollback`, ...
    pub action: String,
    /// What: the entry edited, the version, the reason. Never a secret.
    pub detail: String,
}

/// The candidate as staged.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub text: String,
    pub info: CandidateInfo,
}

pub struct ConfigStore {
    config_path: PathBuf,
    dir: PathBuf,
}

impl ConfigStore {
    pub fn new(config_path: &Path, state_dir: &Path) -> ConfigStore {
        ConfigStore {
            // Absolute, so that its directory (for the temporary file of an atomic write,
            // and relative paths inside it) is never "".
            config_path: std::path::absolute(config_path)
                .unwrap_or_else(|_| config_path.to_path_buf()),
            dir: state_dir.join("config"),
        }
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The directory relative paths in the file are taken from.
    pub fn base_dir(&self) -> &Path {
        self.config_path.parent().unwrap_or(Path::new("."))
    }

    pub fn read_config_file(&self) -> anyhow::Result<String> {
        fs::read_to_string(&self.config_path)
            .with_context(|| format!("reading {}", self.config_path.display()))
    }

    /// Replaces the config file atomically, keeping its mode (0600 for a new file: it
    /// may hold secrets).
    pub fn write_config_file(&self, text: &str) -> anyhow::Result<()> {
        write_keeping_mode(&self.config_path, text.as_bytes())
    }

    /// Records `text` as the running file if it differs from the newest version; returns
    /// the running version's number.
    pub fn record_running(&self, text: &str, by: &Actor, action: &str) -> anyhow::Result<u64> {
        if let Some(newest) = self.newest_number()? {
            if self.version_text(newest)? == text {
                return Ok(newest);
            }
        }
        self.add_version(text, by, action, "")
    }

    /// Adds `text` to the history as a new version.
    pub fn add_version(
        &self,
        text: &str,
        by: &Actor,
        action: &str,
        comment: &str,
    ) -> anyhow::Result<u64> {
        let number = self.newest_number()?.map_or(1, |n| n + 1);
        let version = Version {
            version: number,
            at: unix_now(),
            by: by.clone(),
            action: action.to_string(),
            comment: comment.to_string(),
        };
        let history = self.history_dir();
        write_private(&history.join(format!("{number:06}.toml")), text.as_bytes())?;
        write_private(
            &history.join(format!("{number:06}.json")),
            &serde_json::to_vec_pretty(&version)?,
        )?;
        self.prune_history()?;
        Ok(number)
    }

    /// Every version kept, newest first.
    pub fn versions(&self) -> anyhow::Result<Vec<Version>> {
        let mut numbers = self.version_numbers()?;
        numbers.sort_unstable_by_key(|&n| std::cmp::Reverse(n));
        let mut versions = Vec::with_capacity(numbers.len());
        for number in numbers {
            // One pruned since the listing is simply not shown.
            versions.extend(self.version(number)?);
        }
        Ok(versions)
    }

    /// Version `number`, from its own file.
    pub fn version(&self, number: u64) -> anyhow::Result<Option<Version>> {
        read_json_if_exists(&self.history_dir().join(format!("{number:06}.json")))
    }

    /// The number of the version kept before `number`, if any (from the file names).
    pub fn previous_number(&self, number: u64) -> anyhow::Result<Option<u64>> {
        Ok(self
            .version_numbers()?
            .into_iter()
            .filter(|&n| n < number)
            .max())
    }

    fn newest_number(&self) -> anyhow::Result<Option<u64>> {
        Ok(self.version_numbers()?.into_iter().max())
    }

    pub fn version_text(&self, number: u64) -> anyhow::Result<String> {
        let path = self.history_dir().join(format!("{number:06}.toml"));
        fs::read_to_string(&path).with_context(|| format!("reading version {number}"))
    }

    /// The staged candidate, if any.
    pub fn candidate(&self) -> anyhow::Result<Option<Candidate>> {
        let Some(info) = self.candidate_info()? else {
            return Ok(None);
        };
        let (text_path, _) = self.candidate_paths();
        let text = fs::read_to_string(&text_path)
            .with_context(|| format!("reading {}", text_path.display()))?;
        Ok(Some(Candidate { text, info }))
    }

    /// The staged candidate's bookkeeping (its revision) without its text.
    pub fn candidate_info(&self) -> anyhow::Result<Option<CandidateInfo>> {
        read_json_if_exists(&self.candidate_paths().1)
    }

    /// Stages `text`, if the candidate is still at `expected_revision` (0: nothing
    /// staged yet). Returns the new revision.
    pub fn stage(
        &self,
        text: &str,
        expected_revision: u64,
        base_version: u64,
        by: &Actor,
    ) -> Result<u64, StageError> {
        let current = self.candidate_info().map_err(StageError::Io)?;
        let revision = current.as_ref().map_or(0, |c| c.revision);
        if revision != expected_revision {
            return Err(StageError::Stale {
                expected: expected_revision,
                current: revision,
            });
        }
        let info = CandidateInfo {
            revision: revision + 1,
            base_version: current.map_or(base_version, |c| c.base_version),
            edited_by: by.clone(),
            edited_at: unix_now(),
        };
        let (text_path, info_path) = self.candidate_paths();
        write_private(&text_path, text.as_bytes()).map_err(StageError::Io)?;
        write_private(
            &info_path,
            &serde_json::to_vec_pretty(&info).map_err(|e| StageError::Io(e.into()))?,
        )
        .map_err(StageError::Io)?;
        Ok(info.revision)
    }

    /// Drops the staged candidate.
    pub fn discard_candidate(&self) -> anyhow::Result<()> {
        let (text_path, info_path) = self.candidate_paths();
        // The info file marks a candidate: remove it first so a crash in between leaves none.
        remove_if_exists(&info_path)?;
        remove_if_exists(&text_path)
    }

    pub fn pending(&self) -> anyhow::Result<Option<Pending>> {
        read_json_if_exists(&self.pending_path())
    }

    pub fn set_pending(&self, pending: &Pending) -> anyhow::Result<()> {
        write_private(&self.pending_path(), &serde_json::to_vec_pretty(pending)?)
    }

    pub fn clear_pending(&self) -> anyhow::Result<()> {
        remove_if_exists(&self.pending_path())
    }

    /// Appends one line to the audit log (synced: the log is evidence).
    pub fn audit(&self, by: &Actor, action: &str, detail: &str) -> anyhow::Result<()> {
        ensure_private_dir(&self.dir)?;
        let entry = AuditEntry {
            at: unix_now(),
            by: by.clone(),
            action: action.to_string(),
            detail: detail.to_string(),
        };
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        let path = self.dir.join("audit.log");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(&line)
            .and_then(|_| file.sync_data())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The newest `limit` audit entries, newest first. A damaged line is skipped.
    pub fn audit_entries(&self, limit: usize) -> anyhow::Result<Vec<AuditEntry>> {
        let path = self.dir.join("audit.log");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(text
            .lines()
            .rev()
            .filter_map(|line| serde_json::from_str(line).ok())
            .take(limit.min(MAX_AUDIT_LISTING))
            .collect())
    }

    fn history_dir(&self) -> PathBuf {
        self.dir.join("history")
    }

    fn candidate_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.join("candidate.toml"),
            self.dir.join("candidate.json"),
        )
    }

    fn pending_path(&self) -> PathBuf {
        self.dir.join("pending.json")
    }

    fn version_numbers(&self) -> anyhow::Result<Vec<u64>> {
        let dir = self.history_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut numbers = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(number) = name.strip_suffix(".json").and_then(|n| n.parse().ok()) {
                numbers.push(number);
            }
        }
        Ok(numbers)
    }

    fn prune_history(&self) -> anyhow::Result<()> {
        let mut numbers = self.version_numbers()?;
        if numbers.len() <= MAX_HISTORY {
            return Ok(());
        }
        numbers.sort_unstable();
        let keep_pending = self.pending()?.map(|p| p.restore_version);
        for number in &numbers[..numbers.len() - MAX_HISTORY] {
            if Some(*number) == keep_pending {
                continue;
            }
            for ext in ["json", "toml"] {
                remove_if_exists(&self.history_dir().join(format!("{number:06}.{ext}")))?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(
        "the staged configuration changed since this form was opened (revision {current}, \
         the form has {expected}); reload it and apply your change again"
    )]
    Stale { expected: u64, current: u64 },
    #[error("{0:#}")]
    Io(anyhow::Error),
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A JSON file's value; `None` when the file does not exist.
fn read_json_if_exists<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("parsing {}", path.display()))
}

/// Replaces the file atomically, keeping its mode (0600 for a new one).
fn write_keeping_mode(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    replace_atomically(path, contents, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ConfigStore) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("siteward.toml");
        fs::write(&config, "one\n").unwrap();
        let store = ConfigStore::new(&config, &dir.path().join("state"));
        (dir, store)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn alice() -> Actor {
        Actor {
            name: "alice".into(),
            from: "192.0.2.7".into(),
        }
    }

    #[test]
    fn the_running_file_is_recorded_once_per_change() {
        let (_dir, store) = store();
        assert_eq!(
            store.record_running("one\n", &alice(), "started").unwrap(),
            1
        );
        assert_eq!(
            store.record_running("one\n", &alice(), "started").unwrap(),
            1
        );
        assert_eq!(
            store.record_running("two\n", &alice(), "reloaded").unwrap(),
            2
        );
        let versions = store.versions().unwrap();
        assert_eq!(
            versions.iter().map(|v| v.version).collect::<Vec<_>>(),
            [2, 1]
        );
        assert_eq!(versions[0].action, "reloaded");
        assert_eq!(store.version(2).unwrap().as_ref(), Some(&versions[0]));
        assert_eq!(store.version(3).unwrap(), None);
        assert_eq!(store.previous_number(2).unwrap(), Some(1));
        assert_eq!(store.previous_number(1).unwrap(), None);
        assert_eq!(store.version_text(1).unwrap(), "one\n");
        assert_eq!(mode(&store.history_dir().join("000001.toml")), 0o600);
    }

    #[test]
    fn staging_refuses_a_stale_revision() {
        let (_dir, store) = store();
        assert_eq!(store.stage("a", 0, 1, &alice()).unwrap(), 1);
        assert_eq!(store.stage("b", 1, 1, &alice()).unwrap(), 2);
        let stale = store.stage("c", 1, 1, &alice()).unwrap_err();
        assert!(matches!(
            stale,
            StageError::Stale {
                expected: 1,
                current: 2
            }
        ));
        assert_eq!(store.candidate().unwrap().unwrap().text, "b");
        store.discard_candidate().unwrap();
        assert!(store.candidate().unwrap().is_none());
        // After a discard, staging starts again from revision 0.
        assert_eq!(store.stage("d", 0, 1, &alice()).unwrap(), 1);
    }

    #[test]
    fn the_config_file_keeps_its_mode_when_replaced() {
        let (_dir, store) = store();
        fs::set_permissions(store.config_path(), fs::Permissions::from_mode(0o640)).unwrap();
        store.write_config_file("new\n").unwrap();
        assert_eq!(store.read_config_file().unwrap(), "new\n");
        assert_eq!(mode(store.config_path()), 0o640);
    }

    #[test]
    fn pending_and_audit_round_trip() {
        let (_dir, store) = store();
        assert!(store.pending().unwrap().is_none());
        let pending = Pending {
            version: 3,
            restore_version: 2,
            deadline_ms: 1_000,
            by: alice(),
        };
        store.set_pending(&pending).unwrap();
        assert_eq!(store.pending().unwrap(), Some(pending));
        store.clear_pending().unwrap();
        assert!(store.pending().unwrap().is_none());

        store.audit(&alice(), "commit", "version 3").unwrap();
        store.audit(&alice(), "confirm", "version 3").unwrap();
        let entries = store.audit_entries(10).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].action, "confirm");
        assert_eq!(entries[1].by, alice());
        assert_eq!(store.audit_entries(1).unwrap().len(), 1);
    }

    #[test]
    fn history_is_bounded() {
        let (_dir, store) = store();
        for i in 0..MAX_HISTORY + 3 {
            store
                .add_version(&format!("v{i}\n"), &alice(), "committed", "")
                .unwrap();
        }
        let versions = store.versions().unwrap();
        assert_eq!(versions.len(), MAX_HISTORY);
        assert_eq!(versions[0].version, (MAX_HISTORY + 3) as u64);
        assert_eq!(versions.last().unwrap().version, 4);
        assert_eq!(store.previous_number(4).unwrap(), None);
        assert_eq!(store.version(3).unwrap(), None);
    }
}
