//! The configuration operations the web UI and the REST API share: read the working
//! document (the staged candidate, or the running version), stage an edit of one entry,
//! an addition, a removal or a whole imported file, review the candidate, commit it.
//!
//! An edit is staged only if the entry it touched validates (the whole file is validated
//! as `check-config` does, and the errors at that entry's path are the edit's); problems
//! elsewhere in the candidate do not block an edit, they block the commit.

use std::collections::BTreeMap;

use siteward_config::edit::{self, EntryRef};
use siteward_config::export::{self, ExportError, SecretHandling};
use siteward_config::view::{self, DiffLine};
use siteward_config::FieldError;
use toml_edit::DocumentMut;

use crate::apply::{Applier, CommitError};
use crate::config_store::{Actor, StageError};

/// The document edits apply to.
pub struct Working {
    pub text: String,
    /// The candidate's revision; 0 when nothing is staged.
    pub revision: u64,
    /// The running version it started from.
    pub base_version: u64,
}

impl Working {
    pub fn document(&self) -> anyhow::Result<DocumentMut> {
        self.text
            .parse::<DocumentMut>()
            .map_err(|e| anyhow::anyhow!("the configuration is not valid TOML: {e}"))
    }
}

/// Why an edit was not staged.
#[derive(Debug)]
pub enum StageFailure {
    /// Problems of the edited entry. `at` is the entry; `None` for a new entry, whose
    /// errors' paths are then relative to it (`target`, not `checks[3].target`).
    Fields {
        at: Option<EntryRef>,
        errors: Vec<FieldError>,
    },
    /// Staged by someone else in the meantime, or not a thing one can do.
    Refused(String),
    Internal(anyhow::Error),
}

impl From<StageError> for StageFailure {
    fn from(e: StageError) -> Self {
        match e {
            StageError::Stale { .. } => StageFailure::Refused(e.to_string()),
            StageError::Io(e) => StageFailure::Internal(e),
        }
    }
}

pub fn working(applier: &Applier) -> anyhow::Result<Working> {
    let store = applier.store();
    if let Some(candidate) = store.candidate()? {
        return Ok(Working {
            text: candidate.text,
            revision: candidate.info.revision,
            base_version: candidate.info.base_version,
        });
    }
    let version = applier.running_version();
    Ok(Working {
        text: running_text(applier)?,
        revision: 0,
        base_version: version,
    })
}

/// The text of the running version.
pub fn running_text(applier: &Applier) -> anyhow::Result<String> {
    applier.store().version_text(applier.running_version())
}

/// Writes the submitted values into entry `at` of the working document and stages it.
pub fn stage_entry(
    applier: &Applier,
    actor: &Actor,
    revision: u64,
    at: &EntryRef,
    values: &BTreeMap<String, String>,
) -> Result<EntryRef, StageFailure> {
    let working = working(applier).map_err(StageFailure::Internal)?;
    let mut doc = working.document().map_err(StageFailure::Internal)?;
    edit::set_entry(&mut doc, at, values).map_err(|errors| StageFailure::Fields {
        at: Some(*at),
        errors,
    })?;
    let text = doc.to_string();
    let errors = errors_at(applier, &text, &at.path());
    if !errors.is_empty() {
        return Err(StageFailure::Fields {
            at: Some(*at),
            errors,
        });
    }
    applier
        .store()
        .stage(&text, revision, working.base_version, actor)?;
    applier.audit(actor, "stage", &format!("{} changed", describe(&doc, at)));
    Ok(*at)
}

/// Appends an entry to a repeated section (a peer to tunnel `tunnel`) and stages it.
pub fn stage_new_entry(
    applier: &Applier,
    actor: &Actor,
    revision: u64,
    section: &'static str,
    tunnel: Option<usize>,
    values: &BTreeMap<String, String>,
) -> Result<EntryRef, StageFailure> {
    let working = working(applier).map_err(StageFailure::Internal)?;
    let mut doc = working.document().map_err(StageFailure::Internal)?;
    let predicted = match tunnel {
        Some(tunnel) => EntryRef::Peer {
            tunnel,
            peer: count_peers(&doc, tunnel),
        },
        None => EntryRef::Item {
            section,
            index: count_entries(&doc, section),
        },
    };
    let relative = |errors: Vec<FieldError>, prefix: &str| StageFailure::Fields {
        at: None,
        errors: errors
            .into_iter()
            .map(|e| FieldError {
                path: relative_path(&e.path, prefix),
                message: e.message,
            })
            .collect(),
    };
    let at = edit::add_entry(&mut doc, section, tunnel, values)
        .map_err(|errors| relative(errors, &predicted.path()))?;
    let text = doc.to_string();
    let errors = errors_at(applier, &text, &at.path());
    if !errors.is_empty() {
        return Err(relative(errors, &at.path()));
    }
    applier
        .store()
        .stage(&text, revision, working.base_version, actor)?;
    applier.audit(actor, "stage", &format!("{} added", describe(&doc, &at)));
    Ok(at)
}

/// Removes entry `at` from the working document and stages the result.
pub fn stage_removal(
    applier: &Applier,
    actor: &Actor,
    revision: u64,
    at: &EntryRef,
) -> Result<(), StageFailure> {
    let working = working(applier).map_err(StageFailure::Internal)?;
    let mut doc = working.document().map_err(StageFailure::Internal)?;
    let what = describe(&doc, at);
    edit::remove_entry(&mut doc, at).map_err(|e| StageFailure::Refused(e.to_string()))?;
    applier
        .store()
        .stage(&doc.to_string(), revision, working.base_version, actor)?;
    applier.audit(actor, "stage", &format!("{what} removed"));
    Ok(())
}

/// Stages a whole file (an import, a version from the history): it must validate.
pub fn stage_text(
    applier: &Applier,
    actor: &Actor,
    revision: u64,
    text: &str,
    what: &str,
) -> Result<(), StageFailure> {
    if let Err(e) = applier.validate(text) {
        return Err(match e {
            CommitError::Invalid(errors) => StageFailure::Fields { at: None, errors },
            other => StageFailure::Refused(other.to_string()),
        });
    }
    let working = working(applier).map_err(StageFailure::Internal)?;
    applier
        .store()
        .stage(text, revision, working.base_version, actor)?;
    applier.audit(actor, "stage", what);
    Ok(())
}

/// Why an import was not staged.
#[derive(Debug)]
pub enum ImportFailure {
    /// The file cannot be read back (syntax, a wrong passphrase, a damaged value).
    File(ExportError),
    Stage(StageFailure),
}

/// Stages an exported file: encrypted secrets decrypted with `passphrase`, secrets the
/// file left out kept from the working document by section and name; staged only if the
/// result validates. Returns the paths of the secrets kept.
pub fn stage_import(
    applier: &Applier,
    actor: &Actor,
    revision: u64,
    text: &str,
    passphrase: Option<&str>,
    what: &str,
) -> Result<Vec<String>, ImportFailure> {
    let current = working(applier)
        .map_err(|e| ImportFailure::Stage(StageFailure::Internal(e)))?
        .text;
    // The key derivation takes a moment: off the async worker's hot path.
    let imported = tokio::task::block_in_place(|| export::import(text, passphrase, &current))
        .map_err(ImportFailure::File)?;
    let detail = format!(
        "{what} staged ({} secret(s) kept from the current configuration)",
        imported.secrets_kept_from_current.len()
    );
    match stage_text(applier, actor, revision, &imported.text, &detail) {
        Ok(()) => Ok(imported.secrets_kept_from_current),
        Err(StageFailure::Fields { at, mut errors }) => {
            errors.extend(imported.secrets_missing.iter().map(|path| {
                FieldError {
                    path: path.clone(),
                    message: "the file left this secret out and the current configuration has \
                          none to keep"
                        .to_string(),
                }
            }));
            Err(ImportFailure::Stage(StageFailure::Fields { at, errors }))
        }
        Err(other) => Err(ImportFailure::Stage(other)),
    }
}

/// The running file for download, its secrets left out or encrypted; audited.
pub fn export_running(
    applier: &Applier,
    actor: &Actor,
    secrets: SecretHandling<'_>,
) -> Result<String, ImportFailure> {
    let detail = match secrets {
        SecretHandling::Omit => "running configuration, secrets left out",
        SecretHandling::Encrypt { .. } => "running configuration, secrets encrypted",
    };
    let text =
        running_text(applier).map_err(|e| ImportFailure::Stage(StageFailure::Internal(e)))?;
    let exported = tokio::task::block_in_place(|| export::export(&text, secrets))
        .map_err(ImportFailure::File)?;
    applier.audit(actor, "export", detail);
    Ok(exported)
}

pub fn discard(applier: &Applier, actor: &Actor) -> anyhow::Result<bool> {
    let staged = applier.store().candidate_info()?.is_some();
    if staged {
        applier.store().discard_candidate()?;
        applier.audit(actor, "discard", "staged changes dropped");
    }
    Ok(staged)
}

/// The candidate against the running version.
pub struct Review {
    pub staged: bool,
    pub revision: u64,
    /// The running version the staged edits started from, when it is no longer the one
    /// running (a reload, a rollback or another commit since): the diff then also shows
    /// what committing would undo.
    pub stale_base: Option<u64>,
    pub diff: Vec<DiffLine>,
    /// Every problem of the candidate; a commit is refused while there are any.
    pub errors: Vec<FieldError>,
}

pub fn review(applier: &Applier) -> anyhow::Result<Review> {
    let working = working(applier)?;
    let running = running_text(applier)?;
    let diff = view::diff(&running, &working.text)
        .map_err(|e| anyhow::anyhow!("comparing with the running configuration: {e}"))?;
    let errors = match applier.validate(&working.text) {
        Ok(_) => Vec::new(),
        Err(CommitError::Invalid(errors)) => errors,
        Err(e) => vec![FieldError {
            path: String::new(),
            message: e.to_string(),
        }],
    };
    let staged = working.revision > 0;
    Ok(Review {
        staged,
        revision: working.revision,
        stale_base: (staged && working.base_version != applier.running_version())
            .then_some(working.base_version),
        diff,
        errors,
    })
}

/// Commits the staged candidate (if it is still at `revision`) and drops it.
pub async fn commit_candidate(
    applier: &Applier,
    actor: &Actor,
    revision: u64,
    confirm_within: Option<std::time::Duration>,
    comment: &str,
) -> Result<crate::apply::Committed, CommitError> {
    let Some(candidate) = applier.store().candidate()? else {
        return Err(CommitError::Refused(
            "nothing is staged: edit the configuration first".to_string(),
        ));
    };
    if candidate.info.revision != revision {
        return Err(CommitError::Refused(format!(
            "the staged configuration changed since you reviewed it (revision {} now, {revision} \
             reviewed); review it again",
            candidate.info.revision
        )));
    }
    let committed = applier
        .commit(&candidate.text, confirm_within, actor, "committed", comment)
        .await?;
    applier.store().discard_candidate()?;
    Ok(committed)
}

/// Commits version `version` of the history again.
pub async fn rollback_to(
    applier: &Applier,
    actor: &Actor,
    version: u64,
    confirm_within: Option<std::time::Duration>,
) -> Result<crate::apply::Committed, CommitError> {
    let Some(_) = applier.store().version(version)? else {
        return Err(CommitError::Refused(format!(
            "there is no version {version}"
        )));
    };
    let text = applier.store().version_text(version)?;
    applier
        .commit(
            &text,
            confirm_within,
            actor,
            &format!("rolled back to {version}"),
            "",
        )
        .await
}

/// The problems validation finds at `prefix` or inside it.
fn errors_at(applier: &Applier, text: &str, prefix: &str) -> Vec<FieldError> {
    match applier.validate(text) {
        Ok(_) => Vec::new(),
        Err(CommitError::Invalid(errors)) => errors
            .into_iter()
            .filter(|e| {
                e.path == prefix
                    || e.path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
            .collect(),
        Err(e) => vec![FieldError {
            path: prefix.to_string(),
            message: e.to_string(),
        }],
    }
}

/// `checks[3].target` relative to `checks[3]` is `target`; the entry itself is empty.
fn relative_path(path: &str, prefix: &str) -> String {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.strip_prefix('.').unwrap_or(rest).to_string(),
        None => path.to_string(),
    }
}

/// `checks[2] (db1)` for the audit log.
fn describe(doc: &DocumentMut, at: &EntryRef) -> String {
    let name = edit::entry_values(doc, at).ok().and_then(|values| {
        values.into_iter().find_map(|(key, value)| match value {
            edit::ShownValue::Text(name) if key == "name" && !name.is_empty() => Some(name),
            _ => None,
        })
    });
    match name {
        Some(name) => format!("{} ({name})", at.path()),
        None => at.path(),
    }
}

pub fn count_entries(doc: &DocumentMut, section: &str) -> usize {
    doc.get(section)
        .and_then(|item| item.as_array_of_tables())
        .map_or(0, |tables| tables.len())
}

pub fn count_peers(doc: &DocumentMut, tunnel: usize) -> usize {
    doc.get("tunnels")
        .and_then(|item| item.as_array_of_tables())
        .and_then(|tunnels| tunnels.get(tunnel))
        .and_then(|t| t.get("peers"))
        .and_then(|peers| peers.as_array_of_tables())
        .map_or(0, |peers| peers.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_relative_to_a_new_entry() {
        assert_eq!(relative_path("checks[3].target", "checks[3]"), "target");
        assert_eq!(relative_path("checks[3]", "checks[3]"), "");
        assert_eq!(
            relative_path("tunnels[0].peers[2].endpoint", "tunnels[0].peers[2]"),
            "endpoint"
        );
        assert_eq!(
            relative_path("relays[0].name", "checks[3]"),
            "relays[0].name"
        );
    }
}
