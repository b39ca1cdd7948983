//! `kind = "file-drop"`: batch jobs drop files into a directory; each complete file becomes
//! events (one per file, or one per CSV row or JSON line, see [`records`]) and then moves
//! to `done/`, or to `failed/` with the reason beside it.
//!
//! ```text
//! <directory>/             files are dropped here (not in subdirectories)
//! <directory>/done/        taken: every record is durable in the spool
//! <directory>/failed/      refused: <name> and <name>.error (the line and why)
//! <directory>/.siteward/   progress records of the file being taken (private)
//! ```
//!
//! - **Complete files only.** A file renamed into place (inotify `IN_MOVED_TO`) is taken at
//!   once; any other file once its size and modification time have not changed for
//!   `settle` (every write restarts the wait, so a file written slowly is not taken early).
//!   Hidden names (`.x`) and temporary names (`*.tmp`, `*.part`) are left alone until
//!   renamed. Files already there at start (dropped while the daemon was down) are found by
//!   a scan and settle the same way. Files are taken one at a time, oldest change first.
//! - **All or nothing per file.** A file is parsed and validated whole before any record
//!   is accepted; a bad line sends nothing, moves the file to `failed/` and counts one
//!   rejection, so a fixed copy can simply be dropped again. So does a file larger than
//!   `max_file_bytes`.
//! - **At least once across crashes.** Records go to the spool in order, in chunks; after
//!   each chunk a progress record (file identity and the count durable) is written
//!   atomically, and a restart resumes after that count. A crash therefore repeats at most
//!   the chunk in flight; every record carries its file's name, hash and number, so the
//!   platform can drop the repeat. The file moves to `done/` only once every record is
//!   durable.
//! - **Backpressure.** While the spool refuses (full with `block`, or a storage error) the
//!   source keeps the file where it is, takes no other, and retries with backoff. A record
//!   that can never fit in the spool moves the file to `failed/`; the records before it
//!   were accepted by then, which its `.error` says.

mod progress;
pub mod records;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{EventMask, EventOwned, EventStream, Inotify, WatchMask};
use siteward_config::{FileDropSource, FileFormat};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::progress::{sync_directory, FileIdentity, Progress, ProgressStore};
use self::records::Records;
use super::{Sink, StartError};
use crate::spool::SpoolError;

const DONE: &str = "done";
const FAILED: &str = "failed";
const STATE: &str = ".siteward";
/// Names a writer uses while the file is incomplete; taken only once renamed.
const TEMPORARY_SUFFIXES: [&str; 2] = [".tmp", ".part"];

/// Watches `config.directory` and turns the files dropped there into events through `sink`
/// until `cancel`. The directory must exist; `done/`, `failed/` and `.siteward/` are
/// created in it.
pub async fn start(
    config: &FileDropSource,
    sink: Sink,
    cancel: CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    start_tuned(config, sink, cancel, Tuning::default()).await
}

/// Knobs the tests turn; production uses [`Tuning::default`].
#[derive(Debug, Clone)]
struct Tuning {
    /// Records accepted between two progress records: at most this many are sent again
    /// after a crash, and a file costs one extra fsync per this many records.
    chunk: usize,
    backoff_min: Duration,
    backoff_max: Duration,
    /// Ends the task right after this many chunks are durable, before the last one's
    /// progress is written: the state a crash at the worst moment leaves.
    #[cfg(test)]
    crash_after_chunks: Option<usize>,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            chunk: 256,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            #[cfg(test)]
            crash_after_chunks: None,
        }
    }
}

async fn start_tuned(
    config: &FileDropSource,
    sink: Sink,
    cancel: CancellationToken,
    tuning: Tuning,
) -> Result<JoinHandle<()>, StartError> {
    let layout = Layout::new(&config.directory);
    let shown = layout.directory.display().to_string();
    let metadata = fs::metadata(&layout.directory)
        .map_err(|e| StartError::new(format!("opening the file-drop directory {shown}"), e))?;
    if !metadata.is_dir() {
        return Err(StartError::new(
            format!("opening the file-drop directory {shown}"),
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    for (directory, private) in [
        (&layout.done, false),
        (&layout.failed, false),
        (&layout.state, true),
    ] {
        create_directory(directory, private)
            .map_err(|e| StartError::new(format!("creating {}", directory.display()), e))?;
    }
    // Watch before the scan, so that nothing dropped in between is missed.
    let watching = format!("watching {shown} with inotify");
    let inotify = Inotify::init().map_err(|e| StartError::new(&watching, e))?;
    inotify
        .watches()
        .add(
            &layout.directory,
            WatchMask::CLOSE_WRITE
                | WatchMask::MOVED_TO
                | WatchMask::CREATE
                | WatchMask::MODIFY
                | WatchMask::MOVED_FROM
                | WatchMask::DELETE
                | WatchMask::DELETE_SELF
                | WatchMask::MOVE_SELF,
        )
        .map_err(|e| StartError::new(&watching, e))?;
    let events = inotify
        .into_event_stream(vec![0u8; 16 * 1024])
        .map_err(|e| StartError::new(&watching, e))?;
    let mut watcher = Watcher {
        progress: ProgressStore::new(layout.state.clone()),
        layout,
        settle: config.settle,
        format: config.format,
        max_file_bytes: config.max_file_bytes,
        sink,
        cancel,
        tuning,
        candidates: HashMap::new(),
    };
    watcher
        .scan_at_start()
        .map_err(|e| StartError::new(format!("reading {shown}"), e))?;
    Ok(tokio::spawn(watcher.run(events)))
}

fn create_directory(path: &Path, private: bool) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.mode(if private { 0o700 } else { 0o755 });
    match builder.create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        result => result,
    }
}

#[derive(Debug, Clone)]
struct Layout {
    directory: PathBuf,
    done: PathBuf,
    failed: PathBuf,
    state: PathBuf,
}

impl Layout {
    fn new(directory: &Path) -> Layout {
        Layout {
            directory: directory.to_path_buf(),
            done: directory.join(DONE),
            failed: directory.join(FAILED),
            state: directory.join(STATE),
        }
    }
}

/// Names left alone: hidden files (our state directory among them) and files still being
/// written under a temporary name.
fn is_ignored(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    bytes.starts_with(b".")
        || TEMPORARY_SUFFIXES
            .iter()
            .any(|suffix| bytes.ends_with(suffix.as_bytes()))
}

/// What a look at a file showed; a change restarts its settle time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    size: u64,
    mtime_s: i64,
    mtime_ns: i64,
    inode: u64,
}

/// The file, if it is a regular file (not a symlink, directory or device).
fn look(path: &Path) -> Option<(Seen, fs::Metadata)> {
    let metadata = fs::symlink_metadata(path).ok()?;
    metadata.file_type().is_file().then(|| {
        let seen = Seen {
            size: metadata.size(),
            mtime_s: metadata.mtime(),
            mtime_ns: metadata.mtime_nsec(),
            inode: metadata.ino(),
        };
        (seen, metadata)
    })
}

/// A file in the directory waiting to be taken.
#[derive(Debug)]
struct Candidate {
    seen: Seen,
    changed_at: Instant,
    /// Renamed into place, or already being taken before a restart: no settling.
    complete: bool,
}

struct Watcher {
    layout: Layout,
    progress: ProgressStore,
    settle: Duration,
    format: FileFormat,
    max_file_bytes: u64,
    sink: Sink,
    cancel: CancellationToken,
    tuning: Tuning,
    candidates: HashMap<OsString, Candidate>,
}

/// Whether the source goes on after a file.
enum Flow {
    Continue,
    Stop,
}

/// What reading and validating a file gave.
enum Loaded {
    /// Gone, or no longer a regular file.
    Gone,
    /// Changed while it was read: it was not complete after all.
    Changed,
    Refused(String),
    Ready {
        records: Records,
        identity: FileIdentity,
        durable: usize,
    },
}

/// How sending a file's records ended.
enum Delivery {
    Durable,
    /// A record the spool can never take: the reason, for `failed/`.
    Refused(String),
    /// Cancelled, or the spool closed.
    Stopped,
}

impl Watcher {
    fn connector(&self) -> &str {
        self.sink.connector()
    }

    /// Files dropped while the daemon was down; a file whose progress record matches was
    /// being taken when it stopped, so it is complete. Progress records of files no longer
    /// here are deleted.
    fn scan_at_start(&mut self) -> io::Result<()> {
        self.scan()?;
        for (name, candidate) in &mut self.candidates {
            if let Ok(Some(progress)) = self.progress.load(name) {
                candidate.complete = look(&self.layout.directory.join(name))
                    .is_some_and(|(_, metadata)| progress.identity.same_metadata(&metadata));
            }
        }
        self.progress
            .forget_all_but(self.candidates.keys().map(OsString::as_os_str))
    }

    /// Every file in the directory becomes a candidate (those already known are kept).
    fn scan(&mut self) -> io::Result<()> {
        let now = Instant::now();
        for entry in fs::read_dir(&self.layout.directory)? {
            let name = entry?.file_name();
            if is_ignored(&name) || self.candidates.contains_key(&name) {
                continue;
            }
            if let Some((seen, _)) = look(&self.layout.directory.join(&name)) {
                let candidate = Candidate {
                    seen,
                    changed_at: now,
                    complete: false,
                };
                self.candidates.insert(name, candidate);
            }
        }
        Ok(())
    }

    async fn run(mut self, mut events: EventStream<Vec<u8>>) {
        tracing::info!(
            connector = %self.connector(),
            directory = %self.layout.directory.display(),
            "watching for dropped files"
        );
        loop {
            while let Some(name) = self.next_due() {
                if self.cancel.is_cancelled() {
                    return;
                }
                if let Flow::Stop = self.take(name).await {
                    return;
                }
            }
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        if let Flow::Stop = self.on_event(event) {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::error!(
                            connector = %self.connector(),
                            error = %e,
                            "reading inotify events failed; no longer watching"
                        );
                        return;
                    }
                    None => {
                        tracing::error!(
                            connector = %self.connector(),
                            "the inotify stream ended; no longer watching"
                        );
                        return;
                    }
                },
                _ = sleep_until(deadline), if deadline.is_some() => {}
            }
        }
    }

    fn on_event(&mut self, event: EventOwned) -> Flow {
        let mask = event.mask;
        if mask.contains(EventMask::Q_OVERFLOW) {
            tracing::warn!(
                connector = %self.connector(),
                "inotify events were lost; scanning the directory again"
            );
            if let Err(e) = self.scan() {
                tracing::warn!(
                    connector = %self.connector(),
                    error = %e,
                    "scanning the directory failed"
                );
            }
            return Flow::Continue;
        }
        if mask.intersects(
            EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::UNMOUNT,
        ) {
            tracing::error!(
                connector = %self.connector(),
                directory = %self.layout.directory.display(),
                "the directory was removed, moved or unmounted; no longer watching"
            );
            return Flow::Stop;
        }
        let Some(name) = event.name else {
            return Flow::Continue;
        };
        if mask.contains(EventMask::ISDIR) || is_ignored(&name) {
            return Flow::Continue;
        }
        if mask.intersects(EventMask::MOVED_FROM | EventMask::DELETE) {
            self.candidates.remove(&name);
            return Flow::Continue;
        }
        let Some((seen, _)) = look(&self.layout.directory.join(&name)) else {
            self.candidates.remove(&name);
            return Flow::Continue;
        };
        let now = Instant::now();
        let candidate = self.candidates.entry(name).or_insert(Candidate {
            seen,
            changed_at: now,
            complete: false,
        });
        candidate.seen = seen;
        if mask.contains(EventMask::MOVED_TO) {
            candidate.complete = true;
            candidate.changed_at = now;
        } else if mask.intersects(EventMask::CREATE | EventMask::MODIFY) {
            // Written after a rename too: that writer was not done, so wait.
            candidate.complete = false;
            candidate.changed_at = now;
        } else if !candidate.complete {
            candidate.changed_at = now;
        }
        Flow::Continue
    }

    /// The next file to take: complete, or unchanged for `settle` (checked again now, in
    /// case an event was missed); oldest change first.
    fn next_due(&mut self) -> Option<OsString> {
        loop {
            let now = Instant::now();
            let name = self
                .candidates
                .iter()
                .filter(|(_, c)| self.due_at(c).is_some_and(|due| due <= now))
                .min_by_key(|(_, c)| c.changed_at)
                .map(|(name, _)| name.clone())?;
            let Some((seen, _)) = look(&self.layout.directory.join(&name)) else {
                self.candidates.remove(&name);
                continue;
            };
            let candidate = self.candidates.get_mut(&name)?;
            if !candidate.complete && candidate.seen != seen {
                candidate.seen = seen;
                candidate.changed_at = now;
                continue;
            }
            self.candidates.remove(&name);
            return Some(name);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.candidates
            .values()
            .filter_map(|c| self.due_at(c))
            .min()
    }

    /// When `candidate` may be taken; `None` for a settle time too long to reach.
    fn due_at(&self, candidate: &Candidate) -> Option<Instant> {
        if candidate.complete {
            Some(candidate.changed_at)
        } else {
            candidate.changed_at.checked_add(self.settle)
        }
    }

    /// Reads, validates, sends and moves one file.
    async fn take(&mut self, name: OsString) -> Flow {
        let shown = name.to_string_lossy().into_owned();
        let loaded = {
            let layout = self.layout.clone();
            let progress = self.progress.clone();
            let (format, max) = (self.format, self.max_file_bytes);
            let (name, connector) = (name.clone(), self.connector().to_string());
            blocking(move || load(&layout, &progress, &name, format, max, &connector)).await
        };
        let (records, identity, durable) = match loaded {
            Ok(Loaded::Ready {
                records,
                identity,
                durable,
            }) => (records, identity, durable),
            Ok(Loaded::Gone) => return Flow::Continue,
            Ok(Loaded::Changed) => {
                tracing::debug!(
                    connector = %self.connector(),
                    file = %shown,
                    "the file changed while it was read; waiting for it to settle"
                );
                self.scan_one(name);
                return Flow::Continue;
            }
            Ok(Loaded::Refused(reason)) => {
                self.sink.reject();
                self.fail(name, reason).await;
                return Flow::Continue;
            }
            Err(e) => {
                self.sink.reject();
                self.fail(name, format!("reading the file: {e}")).await;
                return Flow::Continue;
            }
        };
        if durable > 0 {
            tracing::info!(
                connector = %self.connector(),
                file = %shown,
                durable,
                "resuming a file taken before a restart"
            );
        }
        match self.deliver(&name, &records, &identity, durable).await {
            Delivery::Durable => {}
            Delivery::Refused(reason) => {
                self.sink.reject();
                self.fail(name, reason).await;
                return Flow::Continue;
            }
            Delivery::Stopped => return Flow::Stop,
        }
        let moved = {
            let (layout, progress, name) =
                (self.layout.clone(), self.progress.clone(), name.clone());
            blocking(move || {
                let target = move_unique(&layout.directory, &name, &layout.done, None)?;
                // Only once the move is durable: a crash before it resumes at the end.
                progress.remove(&name)?;
                Ok(target)
            })
            .await
        };
        match moved {
            Ok(target) => tracing::info!(
                connector = %self.connector(),
                file = %shown,
                records = records.len(),
                to = %target.display(),
                "file taken"
            ),
            Err(e) => tracing::error!(
                connector = %self.connector(),
                file = %shown,
                error = %e,
                "every record is durable but the file could not be moved to done/"
            ),
        }
        Flow::Continue
    }

    /// A file found again (changed while read) waits to settle.
    fn scan_one(&mut self, name: OsString) {
        if let Some((seen, _)) = look(&self.layout.directory.join(&name)) {
            let candidate = Candidate {
                seen,
                changed_at: Instant::now(),
                complete: false,
            };
            self.candidates.insert(name, candidate);
        }
    }

    /// Sends records `durable..` in order, chunk by chunk, recording progress after each.
    async fn deliver(
        &self,
        name: &OsStr,
        records: &Records,
        identity: &FileIdentity,
        mut durable: usize,
    ) -> Delivery {
        let total = records.len();
        let chunk = self.tuning.chunk.max(1);
        let mut backoff = self.tuning.backoff_min;
        let mut counted_to = durable;
        #[cfg(test)]
        let mut chunks = 0;
        while durable < total {
            let end = durable.saturating_add(chunk).min(total);
            let payloads = (durable..end).filter_map(|index| records.payload(index));
            let results = tokio::select! {
                results = self.sink.append_in_order(records.kind(), payloads) => results,
                _ = self.cancel.cancelled() => return Delivery::Stopped,
            };
            // A record refused again after a wait was counted the first time.
            let refused_now = (durable..)
                .zip(&results)
                .filter(|(index, result)| *index >= counted_to && result.is_err())
                .count();
            self.sink.count_refused(refused_now as u64);
            counted_to = counted_to.max(durable + results.len());
            let before = durable;
            durable += results.iter().take_while(|r| r.is_ok()).count();
            let failure = results.into_iter().find_map(Result::err);
            #[cfg(test)]
            if failure.is_none() {
                chunks += 1;
                if Some(chunks) == self.tuning.crash_after_chunks {
                    return Delivery::Stopped;
                }
            }
            if durable > before && durable < total {
                self.save_progress(name, identity, durable).await;
            }
            match failure {
                None => backoff = self.tuning.backoff_min,
                Some(SpoolError::Closed) => {
                    tracing::warn!(
                        connector = %self.connector(),
                        "the spool is closed; no longer taking files"
                    );
                    return Delivery::Stopped;
                }
                Some(e @ (SpoolError::Full { .. } | SpoolError::Storage(_))) => {
                    tracing::warn!(
                        connector = %self.connector(),
                        file = %name.to_string_lossy(),
                        error = %e,
                        retry_in = ?backoff,
                        "the spool refuses records; waiting"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.cancel.cancelled() => return Delivery::Stopped,
                    }
                    backoff = (backoff * 2).min(self.tuning.backoff_max);
                }
                Some(e) => {
                    return Delivery::Refused(format!(
                        "record {}: {e} (the {durable} records before it were accepted)",
                        durable + 1
                    ))
                }
            }
        }
        Delivery::Durable
    }

    async fn save_progress(&self, name: &OsStr, identity: &FileIdentity, durable: usize) {
        let record = Progress {
            name: name.to_string_lossy().into_owned(),
            identity: identity.clone(),
            durable: durable as u64,
        };
        let (store, name_owned) = (self.progress.clone(), name.to_os_string());
        if let Err(e) = blocking(move || store.store(&name_owned, &record)).await {
            // Only costs duplicates after a crash: the records are durable in the spool.
            tracing::warn!(
                connector = %self.connector(),
                file = %name.to_string_lossy(),
                error = %e,
                "could not record progress"
            );
        }
    }

    /// Moves the file to `failed/` with `<name>.error` holding `reason`.
    async fn fail(&self, name: OsString, reason: String) {
        let shown = name.to_string_lossy().into_owned();
        let (layout, progress) = (self.layout.clone(), self.progress.clone());
        let error_text = reason.clone();
        let moved = blocking(move || {
            let target = move_unique(&layout.directory, &name, &layout.failed, Some(&error_text))?;
            progress.remove(&name)?;
            Ok(target)
        })
        .await;
        match moved {
            Ok(target) => {
                tracing::warn!(
                    connector = %self.connector(),
                    file = %shown,
                    reason = %reason,
                    to = %target.display(),
                    "file refused"
                )
            }
            Err(e) => {
                tracing::error!(
                    connector = %self.connector(),
                    file = %shown,
                    reason = %reason,
                    error = %e,
                    "file refused, and it could not be moved to failed/"
                )
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

/// Opens, reads and validates `name`. Blocking.
fn load(
    layout: &Layout,
    progress: &ProgressStore,
    name: &OsStr,
    format: FileFormat,
    max_file_bytes: u64,
    connector: &str,
) -> io::Result<Loaded> {
    let path = layout.directory.join(name);
    // No symlinks (a link to a private file would ship it off the box), and no blocking
    // on a FIFO swapped in since the last look.
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path);
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Loaded::Gone)
        }
        Err(e) => return Err(e),
    };
    let before = file.metadata()?;
    if !before.file_type().is_file() {
        return Ok(Loaded::Gone);
    }
    let too_large = |size: u64| {
        Loaded::Refused(format!(
            "the file has {size} bytes, more than max_file_bytes ({max_file_bytes})"
        ))
    };
    if before.size() > max_file_bytes {
        return Ok(too_large(before.size()));
    }
    let mut contents = Vec::with_capacity(usize::try_from(before.size()).unwrap_or(0));
    (&mut file)
        .take(max_file_bytes.saturating_add(1))
        .read_to_end(&mut contents)?;
    if contents.len() as u64 > max_file_bytes {
        return Ok(too_large(contents.len() as u64));
    }
    let after = file.metadata()?;
    if contents.len() as u64 != before.size()
        || after.size() != before.size()
        || after.mtime() != before.mtime()
        || after.mtime_nsec() != before.mtime_nsec()
    {
        return Ok(Loaded::Changed);
    }
    let records = match records::parse(format, &name.to_string_lossy(), &contents) {
        Ok(records) => records,
        Err(e) => return Ok(Loaded::Refused(e.to_string())),
    };
    let identity = FileIdentity::new(&before, records.sha256());
    let durable = match progress.durable(name, &identity) {
        Ok(durable) => usize::try_from(durable).unwrap_or(usize::MAX),
        Err(e) => {
            tracing::warn!(
                connector,
                file = %name.to_string_lossy(),
                error = %e,
                "an unreadable progress record; taking the file from its start"
            );
            0
        }
    };
    Ok(Loaded::Ready {
        durable: durable.min(records.len()),
        records,
        identity,
    })
}

/// Most numbered names tried for one file in `done/` or `failed/`.
const MAX_NUMBERED: u32 = 100_000;

/// Moves `from_dir/name` into `to_dir` under its name, or `<stem>.<n>.<ext>` when that is
/// taken; with a `reason`, writes `<target>.error` first. Both directories are synced.
fn move_unique(
    from_dir: &Path,
    name: &OsStr,
    to_dir: &Path,
    reason: Option<&str>,
) -> io::Result<PathBuf> {
    for n in 0..MAX_NUMBERED {
        let target = to_dir.join(numbered(name, n));
        let mut error_path = target.clone().into_os_string();
        error_path.push(".error");
        let error_path = PathBuf::from(error_path);
        if exists(&target)? || (reason.is_some() && exists(&error_path)?) {
            continue;
        }
        if let Some(reason) = reason {
            let mut text = reason.to_string();
            text.push('\n');
            fs::write(&error_path, text)?;
            fs::File::open(&error_path)?.sync_all()?;
        }
        fs::rename(from_dir.join(name), &target)?;
        sync_directory(to_dir)?;
        sync_directory(from_dir)?;
        return Ok(target);
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "no free name for {} in {}",
            name.to_string_lossy(),
            to_dir.display()
        ),
    ))
}

fn exists(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `orders.csv` numbered 2 is `orders.2.csv`; `orders` is `orders.2`.
fn numbered(name: &OsStr, n: u32) -> OsString {
    if n == 0 {
        return name.to_os_string();
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + 8);
    match bytes.iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 => {
            out.extend_from_slice(&bytes[..dot]);
            out.extend_from_slice(format!(".{n}").as_bytes());
            out.extend_from_slice(&bytes[dot..]);
        }
        _ => {
            out.extend_from_slice(bytes);
            out.extend_from_slice(format!(".{n}").as_bytes());
        }
    }
    OsString::from_vec(out)
}
