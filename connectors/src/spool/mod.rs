//! The durable spool: events the sources accepted, kept on disk (redb, in the state
//! directory) until the uplink has delivered them.
//!
//! - An append returns only once its commit is durable (fsync), so a source may then tell
//!   its sender the event is accepted.
//! - Group commit: one writer thread takes every append waiting at that moment into one
//!   transaction, so many concurrent sources share one fsync.
//! - The spool is bounded by bytes. When an append does not fit, the connector's
//!   [`FullPolicy`] decides: `Block` refuses it ([`SpoolError::Full`], the source pushes
//!   back: a webhook answers 503), `DropOldest` deletes the oldest events in the same
//!   transaction and counts them.
//! - Events the platform rejects move to a dead-letter table, from which they can be
//!   replayed (with new sequence numbers) or purged.
//!
//! Sequence numbers grow forever (never reused, even after a purge), so the uplink's ids
//! (`<appliance>-<sequence>`) stay unique.

mod record;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

pub use record::{now_ms, Event, RecordError};

/// Sequence number -> encoded [`Event`].
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Sequence number -> reason length (u16 BE), reason, encoded [`Event`].
const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SEQUENCE: &str = "next_sequence";
/// Most commands one commit takes: a flood shares fsyncs, yet the first waits for at most
/// this many.
const MAX_GROUP: usize = 4096;
/// redb's page cache. Its default (1 GiB) would let a backlog of events fill the box's
/// memory; the spool reads each event about once (oldest first), so a small cache serves.
const CACHE_BYTES: usize = 16 << 20;
/// Longest dead-letter reason kept.
const MAX_REASON: usize = 1024;

/// What an append does when the event does not fit under the spool's byte bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Refuse it: the source pushes back.
    Block,
    /// Delete the oldest events until it fits, and count them.
    DropOldest,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("opening the spool {}: {message}", path.display())]
    Open { path: PathBuf, message: String },
    #[error("the spool is full ({bytes} of {max_bytes} bytes used)")]
    Full { bytes: u64, max_bytes: u64 },
    #[error("an event of {len} bytes can never fit in a spool of {max_bytes} bytes")]
    TooLarge { len: u64, max_bytes: u64 },
    #[error("the spool's storage failed: {0}")]
    Storage(String),
    #[error("the spool is closed")]
    Closed,
    #[error("encoding the event: {0}")]
    Record(#[from] RecordError),
}

fn storage(e: impl std::fmt::Display) -> SpoolError {
    SpoolError::Storage(e.to_string())
}

/// What the spool holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub events: u64,
    /// Bytes of the stored events (what the bound counts).
    pub bytes: u64,
    /// When the oldest waiting event was received (ms since the Unix epoch).
    pub oldest_received_at_ms: Option<u64>,
    pub dead_letters: u64,
    /// Events `DropOldest` deleted since the spool was opened.
    pub dropped: u64,
    /// Commits (fsyncs) since the spool was opened: fewer than appends under load.
    pub commits: u64,
}

impl SpoolStats {
    /// How long the oldest waiting event has waited; `None` when the spool is empty.
    pub fn oldest_event_age(&self) -> Option<std::time::Duration> {
        self.oldest_received_at_ms.map(record::age_since)
    }
}

/// An event waiting in the dead-letter table, and why the platform refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub sequence: u64,
    pub reason: String,
    pub event: Event,
}

enum Command {
    Append {
        record: Vec<u8>,
        policy: FullPolicy,
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
    /// Delivered: delete them.
    Remove {
        sequences: Vec<u64>,
        reply: oneshot::Sender<Result<(), SpoolError>>,
    },
    DeadLetter {
        sequences: Vec<u64>,
        reason: String,
        reply: oneshot::Sender<Result<(), SpoolError>>,
    },
    /// Every dead letter back into the queue, with new sequence numbers.
    Replay {
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
    Purge {
        dead_letters: bool,
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
}

/// The spool; cheap to share behind an `Arc`. Dropping the last one stops the writer.
pub struct Spool {
    db: Arc<Database>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    stats: Arc<Mutex<SpoolStats>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    max_bytes: u64,
}

impl Spool {
    /// Opens (or creates) the spool file at `path`, bounded to `max_bytes` of events.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let open_error = |message: String| SpoolError::Open {
            path: path.to_path_buf(),
            message,
        };
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| open_error(e.to_string()))?;
        let stats = initial_stats(&db).map_err(|e| open_error(e.to_string()))?;
        let db = Arc::new(db);
        let stats = Arc::new(Mutex::new(stats));
        let (commands, receiver) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            stats: stats.clone(),
            max_bytes,
        };
        let writer = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| open_error(format!("starting the writer thread: {e}")))?;
        Ok(Spool {
            db,
            commands: Mutex::new(Some(commands)),
            stats,
            writer: Mutex::new(Some(writer)),
            max_bytes,
        })
    }

    /// Stores `event` durably; returns its sequence number once the commit is on disk.
    pub async fn append(&self, event: &Event, policy: FullPolicy) -> Result<u64, SpoolError> {
        let record = event.encode()?;
        self.call(|reply| Command::Append {
            record,
            policy,
            reply,
        })
        .await
    }

    /// The uplink delivered these: forget them.
    pub async fn remove(&self, sequences: Vec<u64>) -> Result<(), SpoolError> {
        self.call(|reply| Command::Remove { sequences, reply })
            .await
    }

    /// The platform refused these for good: move them to the dead letters with `reason`.
    pub async fn dead_letter(&self, sequences: Vec<u64>, reason: &str) -> Result<(), SpoolError> {
        let reason = crate::text::prefix(reason, MAX_REASON).to_string();
        self.call(|reply| Command::DeadLetter {
            sequences,
            reason,
            reply,
        })
        .await
    }

    /// Moves every dead letter back into the queue (new sequence numbers, so new ids);
    /// returns how many.
    pub async fn replay(&self) -> Result<u64, SpoolError> {
        self.call(|reply| Command::Replay { reply }).await
    }

    /// Deletes every waiting event (or every dead letter); returns how many.
    pub async fn purge(&self, dead_letters: bool) -> Result<u64, SpoolError> {
        self.call(|reply| Command::Purge {
            dead_letters,
            reply,
        })
        .await
    }

    async fn call<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, SpoolError>>) -> Command,
    ) -> Result<T, SpoolError> {
        let (reply, answer) = oneshot::channel();
        {
            let commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
            let sender = commands.as_ref().ok_or(SpoolError::Closed)?;
            sender
                .send(command(reply))
                .map_err(|_| SpoolError::Closed)?;
        }
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// The oldest waiting events after `after` (exclusive), at most `max_events` and (but
    /// for the first) `max_bytes` of payload: the uplink's next batch.
    pub fn peek(
        &self,
        after: Option<u64>,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Event)>, SpoolError> {
        let read = self.db.begin_read().map_err(storage)?;
        let table = match read.open_table(EVENTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage(e)),
        };
        let start = after.map_or(0, |s| s.saturating_add(1));
        let mut batch = Vec::new();
        let mut bytes = 0;
        for entry in table.range(start..).map_err(storage)? {
            if batch.len() >= max_events {
                break;
            }
            let (sequence, record) = entry.map_err(storage)?;
            let event = Event::decode(record.value())?;
            if !batch.is_empty() && bytes + event.payload.len() > max_bytes {
                break;
            }
            bytes += event.payload.len();
            batch.push((sequence.value(), event));
        }
        Ok(batch)
    }

    /// The dead letters, oldest first, at most `limit`.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, SpoolError> {
        let read = self.db.begin_read().map_err(storage)?;
        let table = match read.open_table(DEAD_LETTERS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage(e)),
        };
        let mut letters = Vec::new();
        for entry in table.range(0..).map_err(storage)?.take(limit) {
            let (sequence, value) = entry.map_err(storage)?;
            let (reason, record) = split_dead_letter(value.value())?;
            letters.push(DeadLetter {
                sequence: sequence.value(),
                reason,
                event: Event::decode(record)?,
            });
        }
        Ok(letters)
    }

    pub fn stats(&self) -> SpoolStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The bound on the stored events' bytes ([`SpoolStats::bytes`]) it was opened with.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Closing the channel ends the writer after what is queued.
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

fn split_dead_letter(value: &[u8]) -> Result<(String, &[u8]), SpoolError> {
    let damaged = || SpoolError::Storage("a damaged dead letter".into());
    let (len, rest) = value.split_first_chunk::<2>().ok_or_else(damaged)?;
    let len = usize::from(u16::from_be_bytes(*len));
    let reason = rest.get(..len).ok_or_else(damaged)?;
    Ok((String::from_utf8_lossy(reason).into_owned(), &rest[len..]))
}

/// Counts what an existing file holds (once, when the spool opens).
fn initial_stats(db: &Database) -> Result<SpoolStats, redb::Error> {
    let write = db.begin_write()?;
    // Create the tables so that readers always find them.
    let mut stats = SpoolStats::default();
    {
        let events = write.open_table(EVENTS)?;
        for entry in events.range(0..)? {
            let (_, record) = entry?;
            stats.events += 1;
            stats.bytes += record.value().len() as u64;
        }
        stats.oldest_received_at_ms = oldest_received_at(&events)?;
        let dead = write.open_table(DEAD_LETTERS)?;
        stats.dead_letters = dead.len()?;
        write.open_table(META)?;
    }
    write.commit()?;
    Ok(stats)
}

fn oldest_received_at(
    table: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<Option<u64>, redb::Error> {
    Ok(match table.first()? {
        Some((_, record)) => Event::decode(record.value()).ok().map(|e| e.received_at_ms),
        None => None,
    })
}

/// The one thread that writes: it takes every command waiting, applies them in order in
/// one transaction, commits (fsync), then answers them all.
struct Writer {
    db: Arc<Database>,
    stats: Arc<Mutex<SpoolStats>>,
    max_bytes: u64,
}

/// An answer held back until the commit is durable.
enum Pending {
    Sequence(
        oneshot::Sender<Result<u64, SpoolError>>,
        Result<u64, SpoolError>,
    ),
    Unit(
        oneshot::Sender<Result<(), SpoolError>>,
        Result<(), SpoolError>,
    ),
}

impl Pending {
    fn send(self, commit: &Result<(), String>) {
        match (self, commit) {
            (Pending::Sequence(reply, result), Ok(())) => {
                let _ = reply.send(result);
            }
            (Pending::Unit(reply, result), Ok(())) => {
                let _ = reply.send(result);
            }
            (Pending::Sequence(reply, _), Err(e)) => {
                let _ = reply.send(Err(SpoolError::Storage(e.clone())));
            }
            (Pending::Unit(reply, _), Err(e)) => {
                let _ = reply.send(Err(SpoolError::Storage(e.clone())));
            }
        }
    }
}

impl Writer {
    fn run(self, commands: mpsc::Receiver<Command>) {
        while let Ok(first) = commands.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match commands.try_recv() {
                    Ok(command) => group.push(command),
                    Err(_) => break,
                }
            }
            self.apply(group);
        }
    }

    fn apply(&self, group: Vec<Command>) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut pending = Vec::with_capacity(group.len());
        let commit = (|| -> Result<(), redb::Error> {
            let write = self.db.begin_write()?;
            {
                let mut events = write.open_table(EVENTS)?;
                let mut dead = write.open_table(DEAD_LETTERS)?;
                let mut meta = write.open_table(META)?;
                let mut next = meta.get(NEXT_SEQUENCE)?.map_or(1, |v| v.value());
                for command in group {
                    match command {
                        Command::Append {
                            record,
                            policy,
                            reply,
                        } => {
                            let result =
                                self.append(&mut events, &mut stats, &mut next, &record, policy)?;
                            pending.push(Pending::Sequence(reply, result));
                        }
                        Command::Remove { sequences, reply } => {
                            for sequence in sequences {
                                if let Some(old) = events.remove(sequence)? {
                                    stats.events -= 1;
                                    stats.bytes -= old.value().len() as u64;
                                }
                            }
                            pending.push(Pending::Unit(reply, Ok(())));
                        }
                        Command::DeadLetter {
                            sequences,
                            reason,
                            reply,
                        } => {
                            for sequence in sequences {
                                let Some(old) = events.remove(sequence)? else {
                                    continue;
                                };
                                let record = old.value().to_vec();
                                drop(old);
                                stats.events -= 1;
                                stats.bytes -= record.len() as u64;
                                let mut value = Vec::with_capacity(2 + reason.len() + record.len());
                                value.extend_from_slice(&(reason.len() as u16).to_be_bytes());
                                value.extend_from_slice(reason.as_bytes());
                                value.extend_from_slice(&record);
                                dead.insert(sequence, value.as_slice())?;
                                stats.dead_letters += 1;
                            }
                            pending.push(Pending::Unit(reply, Ok(())));
                        }
                        Command::Replay { reply } => {
                            let mut moved = 0;
                            while let Some((_, value)) = dead.pop_first()? {
                                let value = value.value().to_vec();
                                stats.dead_letters -= 1;
                                let Ok((_, record)) = split_dead_letter(&value) else {
                                    continue;
                                };
                                events.insert(next, record)?;
                                next += 1;
                                stats.events += 1;
                                stats.bytes += record.len() as u64;
                                moved += 1;
                            }
                            pending.push(Pending::Sequence(reply, Ok(moved)));
                        }
                        Command::Purge {
                            dead_letters,
                            reply,
                        } => {
                            let table = if dead_letters { &mut dead } else { &mut events };
                            let mut purged = 0;
                            while table.pop_first()?.is_some() {
                                purged += 1;
                            }
                            if dead_letters {
                                stats.dead_letters = 0;
                            } else {
                                stats.events = 0;
                                stats.bytes = 0;
                            }
                            pending.push(Pending::Sequence(reply, Ok(purged)));
                        }
                    }
                }
                meta.insert(NEXT_SEQUENCE, next)?;
                stats.oldest_received_at_ms = oldest_received_at(&events)?;
            }
            write.commit()?;
            stats.commits += 1;
            Ok(())
        })()
        .map_err(|e| e.to_string());
        match &commit {
            Ok(()) => *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = stats,
            Err(e) => tracing::error!(error = %e, "the spool could not commit"),
        }
        for answer in pending {
            answer.send(&commit);
        }
    }

    /// One append inside the group's transaction. The outer error aborts the whole
    /// commit; the inner one refuses this event alone.
    fn append(
        &self,
        events: &mut redb::Table<'_, u64, &'static [u8]>,
        stats: &mut SpoolStats,
        next: &mut u64,
        record: &[u8],
        policy: FullPolicy,
    ) -> Result<Result<u64, SpoolError>, redb::Error> {
        let len = record.len() as u64;
        if len > self.max_bytes {
            return Ok(Err(SpoolError::TooLarge {
                len,
                max_bytes: self.max_bytes,
            }));
        }
        while stats.bytes + len > self.max_bytes {
            if policy == FullPolicy::Block {
                return Ok(Err(SpoolError::Full {
                    bytes: stats.bytes,
                    max_bytes: self.max_bytes,
                }));
            }
            let Some((_, old)) = events.pop_first()? else {
                break;
            };
            stats.events -= 1;
            stats.bytes -= old.value().len() as u64;
            stats.dropped += 1;
        }
        let sequence = *next;
        events.insert(sequence, record)?;
        *next += 1;
        stats.events += 1;
        stats.bytes += len;
        Ok(Ok(sequence))
    }
}
