//! The live log view of the web UI: the last [`CAPACITY`] log events kept in memory, each
//! with an increasing sequence number, so a page can ask for "everything after N" and wait
//! for the next line. The layer sits beside the stderr output under the same level filter,
//! so it holds exactly what stderr gets (and secrets are absent there already).

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Lines kept; older ones are dropped as new ones arrive.
pub const CAPACITY: usize = 2_000;
/// Longest message, and longest rendered fields, kept per line (a huge debug dump must not
/// make the ring hold megabytes).
const MAX_TEXT: usize = 4 * 1024;

/// One log event as the view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// 1 for the first line of the process, one more for each next line.
    pub seq: u64,
    pub time: SystemTime,
    pub level: Level,
    pub target: String,
    pub message: String,
    /// The event's other fields, `key=value` separated by spaces, in the order logged.
    pub fields: String,
}

/// A handle on the ring; clones share it.
#[derive(Clone)]
pub struct LogView {
    inner: Arc<Inner>,
}

struct Inner {
    ring: Mutex<Ring>,
    /// The newest sequence number, for waiters.
    newest: watch::Sender<u64>,
}

struct Ring {
    lines: VecDeque<LogLine>,
    capacity: usize,
    next_seq: u64,
}

impl Default for LogView {
    fn default() -> Self {
        LogView::with_capacity(CAPACITY)
    }
}

impl LogView {
    fn with_capacity(capacity: usize) -> Self {
        LogView {
            inner: Arc::new(Inner {
                ring: Mutex::new(Ring {
                    lines: VecDeque::with_capacity(capacity),
                    capacity,
                    next_seq: 1,
                }),
                newest: watch::channel(0).0,
            }),
        }
    }

    /// The layer that feeds this view, to install in the subscriber.
    pub fn layer(&self) -> LogViewLayer {
        LogViewLayer { view: self.clone() }
    }

    fn push(&self, time: SystemTime, level: Level, target: &str, fields: Fields) {
        let seq = {
            let mut ring = self
                .inner
                .ring
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let seq = ring.next_seq;
            ring.next_seq += 1;
            if ring.lines.len() >= ring.capacity {
                ring.lines.pop_front();
            }
            ring.lines.push_back(LogLine {
                seq,
                time,
                level,
                target: target.to_string(),
                message: fields.message,
                fields: fields.rest,
            });
            seq
        };
        self.inner.newest.send_replace(seq);
    }

    /// Up to `limit` lines newer than `after` whose level is `min_level` or more severe,
    /// oldest first, and the `after` to ask with next time. Lines filtered out by level
    /// are skipped for good (the next `after` is past them). When `after` is older than the
    /// oldest line kept, the page starts at the oldest one.
    pub fn since(&self, after: u64, min_level: Level, limit: usize) -> (Vec<LogLine>, u64) {
        let ring = self
            .inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut lines = Vec::new();
        let mut next_after = after;
        // Sequence numbers are consecutive, so the first newer line is found by arithmetic.
        let oldest = ring.lines.front().map_or(ring.next_seq, |l| l.seq);
        let skip =
            usize::try_from(after.saturating_add(1).saturating_sub(oldest)).unwrap_or(usize::MAX);
        for line in ring.lines.iter().skip(skip) {
            if lines.len() >= limit {
                break;
            }
            next_after = line.seq;
            // `Level` orders from ERROR (least) to TRACE (greatest).
            if line.level <= min_level {
                lines.push(line.clone());
            }
        }
        (lines, next_after)
    }

    /// Like [`LogView::since`], but when nothing matches yet, waits up to `wait` for a
    /// matching line to arrive; returns an empty page when none did.
    pub async fn wait_since(
        &self,
        after: u64,
        min_level: Level,
        limit: usize,
        wait: Duration,
    ) -> (Vec<LogLine>, u64) {
        if limit == 0 {
            // No line could ever be returned: nothing to wait for.
            return (Vec::new(), after);
        }
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribed before looking, so a line logged in between is not missed.
        let mut newest = self.inner.newest.subscribe();
        let mut after = after;
        loop {
            let (lines, next_after) = self.since(after, min_level, limit);
            if !lines.is_empty() {
                return (lines, next_after);
            }
            after = next_after;
            let newer = newest.wait_for(|newest| *newest > after);
            match tokio::time::timeout_at(deadline, newer).await {
                Ok(Ok(_)) => continue,
                // Timed out, or the view is gone (it cannot be while `self` lives).
                _ => return (Vec::new(), after),
            }
        }
    }
}

/// Feeds a [`LogView`] from tracing events.
pub struct LogViewLayer {
    view: LogView,
}

impl<S: Subscriber> Layer<S> for LogViewLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        self.view.push(
            SystemTime::now(),
            *metadata.level(),
            metadata.target(),
            fields,
        );
    }
}

/// An event's fields rendered as the human log format does: the message as text, the
/// others as `key=value` (strings quoted, other values as their `Debug`, which for a
/// `%value` field is its `Display`).
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Fields {
    fn add(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if field.name() == "message" {
            push_bounded(&mut self.message, format_args!("{value}"));
        } else {
            let separator = if self.rest.is_empty() { "" } else { " " };
            push_bounded(
                &mut self.rest,
                format_args!("{separator}{}={value}", field.name()),
            );
        }
    }
}

/// Appends to `text` unless it is already at [`MAX_TEXT`]; cuts at a character boundary.
fn push_bounded(text: &mut String, value: fmt::Arguments<'_>) {
    if text.len() >= MAX_TEXT {
        return;
    }
    let _ = text.write_fmt(value);
    siteward_connectors::text::ellipsize(text, MAX_TEXT);
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.add(field, format_args!("{value}"));
        } else {
            self.add(field, format_args!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.add(field, format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siteward_config::Secret;
    use tracing_subscriber::layer::SubscriberExt;

    /// Runs `log` with a subscriber that feeds only `view`.
    fn logged(view: &LogView, log: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(view.layer());
        tracing::subscriber::with_default(subscriber, log);
    }

    #[test]
    fn lines_carry_level_target_message_and_fields() {
        let view = LogView::default();
        logged(&view, || {
            tracing::warn!(listener = "admin API", port = 8443, "listening {}", "now");
        });
        let (lines, next) = view.since(0, Level::TRACE, 10);
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line.seq, 1);
        assert_eq!(next, 1);
        assert_eq!(line.level, Level::WARN);
        assert_eq!(line.target, module_path!());
        assert_eq!(line.message, "listening now");
        assert_eq!(line.fields, "listener=\"admin API\" port=8443");
    }

    #[test]
    fn a_secret_field_shows_as_stars() {
        let view = LogView::default();
        let secret = Secret::new("hunter2-very-secret");
        logged(&view, || {
            tracing::info!(password = %secret, debug = ?secret, "login");
        });
        let (lines, _) = view.since(0, Level::TRACE, 10);
        assert_eq!(lines[0].fields, "password=*** debug=Secret(***)");
        assert!(!format!("{lines:?}").contains("hunter2"));
    }

    #[test]
    fn the_ring_keeps_the_last_2000_and_since_pages_through_them() {
        let view = LogView::default();
        logged(&view, || {
            for i in 0..CAPACITY + 150 {
                tracing::info!(i, "line");
            }
        });
        // The first 150 are gone: a reader that saw none starts at the oldest kept.
        let (page, next) = view.since(0, Level::TRACE, 100);
        assert_eq!(page.len(), 100);
        assert_eq!(page[0].seq, 151);
        assert_eq!(page[0].fields, "i=150");
        assert_eq!(next, 250);
        let mut seen = page.len();
        let mut after = next;
        loop {
            let (page, next) = view.since(after, Level::TRACE, 700);
            if page.is_empty() {
                assert_eq!(next, after, "an empty page keeps the position");
                break;
            }
            assert_eq!(page[0].seq, after + 1, "pages follow each other");
            seen += page.len();
            after = next;
        }
        assert_eq!(seen, CAPACITY);
        assert_eq!(after, (CAPACITY + 150) as u64);
    }

    #[test]
    fn the_level_filter_skips_lines_and_moves_past_them() {
        let view = LogView::default();
        logged(&view, || {
            tracing::info!("one");
            tracing::error!("two");
            tracing::debug!("three");
            tracing::warn!("four");
            tracing::info!("five");
        });
        let (lines, next) = view.since(0, Level::WARN, 10);
        let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["two", "four"]);
        assert_eq!(
            next, 5,
            "the info line after the last warning was looked at too"
        );
        let (lines, _) = view.since(0, Level::INFO, 2);
        let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["one", "two"]);
    }

    #[test]
    fn long_values_are_cut() {
        let view = LogView::default();
        let long = "é".repeat(MAX_TEXT);
        logged(&view, || tracing::info!(value = %long, "{long}"));
        let (lines, _) = view.since(0, Level::TRACE, 1);
        assert!(lines[0].message.len() <= MAX_TEXT + '…'.len_utf8());
        assert!(lines[0].message.ends_with('…'));
        assert!(lines[0].fields.len() <= MAX_TEXT + '…'.len_utf8());
    }

    #[tokio::test]
    async fn a_waiting_reader_gets_the_next_matching_line() {
        let view = LogView::default();
        logged(&view, || tracing::info!("before"));
        let (_, after) = view.since(0, Level::TRACE, 10);
        let waiting = tokio::spawn({
            let view = view.clone();
            async move {
                view.wait_since(after, Level::WARN, 10, Duration::from_secs(3600))
                    .await
            }
        });
        // Logged while the reader waits (or before it looks: it must not miss them).
        logged(&view, || {
            tracing::info!("not severe enough");
            tracing::warn!("this one");
        });
        let (lines, next) = waiting.await.unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].message, "this one");
        assert_eq!(next, 3);
    }

    #[tokio::test]
    async fn a_wait_that_ends_without_a_matching_line_returns_an_empty_page() {
        let view = LogView::default();
        logged(&view, || tracing::debug!("too verbose"));
        let (lines, next) = view.wait_since(0, Level::INFO, 10, Duration::ZERO).await;
        assert!(lines.is_empty());
        assert_eq!(next, 1, "the filtered-out line is not looked at again");
    }
}
