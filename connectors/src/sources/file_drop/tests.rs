//! The source against a real directory, inotify and spool. Waits are bounded polls of the
//! spool or the directory, never sleeps standing in for readiness.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use siteward_config::{FileDropSource, FileFormat, WhenFull};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{records, start, start_tuned, Tuning};
use crate::sources::{ConnectorCounters, Sink};
use crate::spool::{Event, Spool};
use crate::test_util::poll_until;

const CONNECTOR: &str = "files";
/// Long enough for any test to finish: a file taken under it was taken for its rename.
const FOREVER: Duration = Duration::from_secs(3600);
const SETTLE: Duration = Duration::from_millis(200);
const DEADLINE: Duration = Duration::from_secs(20);

struct Harness {
    _temp: tempfile::TempDir,
    directory: PathBuf,
    spool_path: PathBuf,
    spool: Option<Arc<Spool>>,
    counters: Arc<ConnectorCounters>,
    running: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Harness {
    fn new(spool_bytes: u64) -> Harness {
        let temp = tempfile::tempdir().unwrap();
        let directory = temp.path().join("drop");
        std::fs::create_dir(&directory).unwrap();
        let spool_path = temp.path().join("spool.redb");
        let spool = Arc::new(Spool::open(&spool_path, spool_bytes).unwrap());
        Harness {
            _temp: temp,
            directory,
            spool_path,
            spool: Some(spool),
            counters: Arc::new(ConnectorCounters::default()),
            running: None,
        }
    }

    fn config(&self, format: FileFormat, settle: Duration) -> FileDropSource {
        FileDropSource {
            directory: self.directory.clone(),
            settle,
            format,
            max_file_bytes: 1 << 20,
        }
    }

    fn sink(&self) -> Sink {
        Sink::new(
            CONNECTOR,
            WhenFull::Block,
            self.spool().clone(),
            Arc::new(Notify::new()),
            self.counters.clone(),
        )
    }

    fn spool(&self) -> &Arc<Spool> {
        self.spool.as_ref().unwrap()
    }

    async fn start(&mut self, config: &FileDropSource, tuning: Tuning) {
        let cancel = CancellationToken::new();
        let handle = start_tuned(config, self.sink(), cancel.clone(), tuning)
            .await
            .unwrap();
        self.running = Some((cancel, handle));
    }

    /// Cancels the source and waits for its task to end.
    async fn stop(&mut self) {
        let (cancel, handle) = self.running.take().unwrap();
        cancel.cancel();
        tokio::time::timeout(DEADLINE, handle)
            .await
            .unwrap()
            .unwrap();
    }

    /// Closes the spool (as the daemon's exit would) and opens the file again.
    fn reopen_spool(&mut self, spool_bytes: u64) {
        let spool = self.spool.take().unwrap();
        drop(Arc::into_inner(spool).expect("the source still holds the spool"));
        self.spool = Some(Arc::new(
            Spool::open(&self.spool_path, spool_bytes).unwrap(),
        ));
    }

    fn stored(&self) -> Vec<(u64, Event)> {
        self.spool().peek(None, 100_000, usize::MAX).unwrap()
    }

    fn payloads(&self) -> Vec<Value> {
        self.stored()
            .iter()
            .map(|(_, event)| serde_json::from_slice(&event.payload).unwrap())
            .collect()
    }

    /// Payloads from the file called `name`.
    fn payloads_of(&self, name: &str) -> Vec<Value> {
        self.payloads()
            .into_iter()
            .filter(|p| p["file"] == name)
            .collect()
    }

    fn progress_records(&self) -> usize {
        std::fs::read_dir(self.path(".siteward")).unwrap().count()
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.directory.join(relative)
    }

    /// Writes `name` under a temporary name and renames it into place.
    fn drop_file(&self, name: &str, contents: &[u8]) {
        let temporary = self.path(&format!("{name}.part"));
        std::fs::write(&temporary, contents).unwrap();
        std::fs::rename(&temporary, self.path(name)).unwrap();
    }

    /// Waits until `relative` exists (a file moved to `done/` or `failed/`).
    async fn wait_for_file(&self, relative: &str) {
        let path = self.path(relative);
        self.wait_until(&format!("{relative} exists"), |_| path.exists())
            .await;
    }

    async fn wait_until(&self, what: &str, mut condition: impl FnMut(&Harness) -> bool) {
        let reached = poll_until(DEADLINE, || condition(self)).await;
        assert!(
            reached,
            "timed out waiting until {what}; stored: {:?}; directory: {:?}",
            self.payloads(),
            listing(&self.directory)
        );
    }
}

fn listing(directory: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in walk(directory) {
        names.push(entry.strip_prefix(directory).unwrap().display().to_string());
    }
    names.sort();
    names
}

fn walk(directory: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            paths.extend(walk(&path));
        } else {
            paths.push(path);
        }
    }
    paths
}

fn sha256(contents: &[u8]) -> String {
    hex::encode(Sha256::digest(contents))
}

fn quick() -> Tuning {
    Tuning {
        chunk: 4,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        crash_after_chunks: None,
    }
}

fn jsonl(records: std::ops::RangeInclusive<u32>) -> Vec<u8> {
    records
        .map(|n| format!("{{\"n\":{n}}}\n"))
        .collect::<String>()
        .into_bytes()
}

fn numbers(payloads: &[Value]) -> Vec<u64> {
    payloads
        .iter()
        .map(|p| p["data"]["n"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_file_renamed_into_place_is_taken_at_once() {
    let mut h = Harness::new(1 << 20);
    h.start(&h.config(FileFormat::JsonLines, FOREVER), quick())
        .await;
    h.drop_file("calls.jsonl", b"{\"n\":1}\n{\"n\":2}\n");
    h.wait_for_file("done/calls.jsonl").await;
    assert_eq!(numbers(&h.payloads_of("calls.jsonl")), vec![1, 2]);
    assert!(!h.path("calls.jsonl").exists());
    assert_eq!(h.counters.received.load(Ordering::Relaxed), 2);
    assert_eq!(
        h.progress_records(),
        0,
        "a file of one chunk needs no progress record"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_slowly_is_taken_only_once_it_settles() {
    let mut h = Harness::new(1 << 20);
    h.start(&h.config(FileFormat::JsonLines, SETTLE), quick())
        .await;

    // A writer appending a line every 20 ms, far inside the settle time, until told to
    // finish; it then writes one last line and closes.
    let finish = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (finish, written) = (finish.clone(), written.clone());
        let mut file = std::fs::File::create(h.path("slow.jsonl")).unwrap();
        std::thread::spawn(move || {
            let mut n = 0;
            loop {
                let last = finish.load(Ordering::SeqCst);
                n += 1;
                file.write_all(format!("{{\"n\":{n}}}\n").as_bytes())
                    .unwrap();
                written.store(n, Ordering::SeqCst);
                if last {
                    return n;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    h.wait_until("the writer has written 5 lines", |_| {
        written.load(Ordering::SeqCst) >= 5
    })
    .await;
    // The source is live and has handled the events of the writes before this file.
    h.drop_file("marker.jsonl", b"{\"n\":0}\n");
    h.wait_for_file("done/marker.jsonl").await;
    assert!(
        h.payloads_of("slow.jsonl").is_empty(),
        "taken while being written"
    );
    assert!(h.path("slow.jsonl").exists());
    finish.store(true, Ordering::SeqCst);
    let lines = writer.join().unwrap();

    h.wait_for_file("done/slow.jsonl").await;
    let expected: Vec<u64> = (1..=lines as u64).collect();
    assert_eq!(numbers(&h.payloads_of("slow.jsonl")), expected);
    h.stop().await;
}

#[tokio::test]
async fn csv_rows_become_json_objects() {
    let mut h = Harness::new(1 << 20);
    h.start(&h.config(FileFormat::Csv, FOREVER), quick()).await;
    let csv = "\u{FEFF}order,customer,note\r\n1001,ACME,\"rush, \"\"today\"\"\"\r\n1002,Globex,\r\n1003,Initech,\"two\r\nlines\"\r\n1004,Umbrella,x\r\n1005,Hooli,y\r\n";
    h.drop_file("orders.csv", csv.as_bytes());
    h.wait_for_file("done/orders.csv").await;
    let hash = sha256(csv.as_bytes());
    let row = |record: u32, line: u32, data: Value| json!({"file": "orders.csv", "sha256": hash, "record": record, "line": line, "data": data});
    assert_eq!(
        h.payloads(),
        vec![
            row(
                1,
                2,
                json!({"order": "1001", "customer": "ACME", "note": "rush, \"today\""})
            ),
            row(
                2,
                3,
                json!({"order": "1002", "customer": "Globex", "note": ""})
            ),
            row(
                3,
                4,
                json!({"order": "1003", "customer": "Initech", "note": "two\r\nlines"})
            ),
            row(
                4,
                6,
                json!({"order": "1004", "customer": "Umbrella", "note": "x"})
            ),
            row(
                5,
                7,
                json!({"order": "1005", "customer": "Hooli", "note": "y"})
            ),
        ]
    );
    let stored = h.stored();
    assert!(stored
        .iter()
        .all(|(_, e)| e.kind == "file.record" && e.connector == CONNECTOR));
    assert!(stored.windows(2).all(|w| w[0].0 < w[1].0));
    h.stop().await;
}

#[tokio::test]
async fn json_lines_become_one_event_each_and_a_whole_file_one() {
    let mut h = Harness::new(1 << 20);
    h.start(&h.config(FileFormat::JsonLines, FOREVER), quick())
        .await;
    h.drop_file("events.jsonl", b"{\"a\":[1,2]}\n\n\"text\"\r\n7\n");
    h.wait_for_file("done/events.jsonl").await;
    let data: Vec<Value> = h.payloads().iter().map(|p| p["data"].clone()).collect();
    assert_eq!(data, vec![json!({"a": [1, 2]}), json!("text"), json!(7)]);
    let lines: Vec<Value> = h.payloads().iter().map(|p| p["line"].clone()).collect();
    assert_eq!(lines, vec![json!(1), json!(3), json!(4)]);
    h.stop().await;

    let mut h = Harness::new(1 << 20);
    h.start(&h.config(FileFormat::Whole, FOREVER), quick())
        .await;
    h.drop_file("report.json", b"{\"total\": 3}");
    h.wait_for_file("done/report.json").await;
    assert_eq!(
        h.payloads(),
        vec![
            json!({"file": "report.json", "sha256": sha256(b"{\"total\": 3}"),
                    "record": 1, "encoding": "json", "data": {"total": 3}})
        ]
    );
    assert_eq!(h.stored()[0].1.kind, "file");
    h.stop().await;
}

#[tokio::test]
async fn malformed_csv_goes_to_failed_with_the_line_and_sends_nothing() {
    let mut h = Harness::new(1 << 20);
    h.start(&h.config(FileFormat::Csv, FOREVER), quick()).await;
    h.drop_file("bad.csv", b"a,b\n1,2\n3,4\n5,\"6\n");
    h.wait_for_file("failed/bad.csv").await;
    let reason = std::fs::read_to_string(h.path("failed/bad.csv.error")).unwrap();
    assert_eq!(reason, "line 4: a quoted field is never closed\n");
    assert!(h.stored().is_empty());
    assert_eq!(h.counters.rejected.load(Ordering::Relaxed), 1);
    assert_eq!(h.counters.received.load(Ordering::Relaxed), 0);

    // The same name again, fixed: taken, and the failed copy keeps its own name.
    h.drop_file("bad.csv", b"a,b\n1,2\n");
    h.wait_for_file("done/bad.csv").await;
    assert_eq!(h.payloads_of("bad.csv").len(), 1);
    // Another bad one under the same name gets a numbered name in failed/.
    h.drop_file("bad.csv", b"a,b\n1\n");
    h.wait_for_file("failed/bad.1.csv").await;
    assert_eq!(
        std::fs::read_to_string(h.path("failed/bad.1.csv.error")).unwrap(),
        "line 2: 1 fields where the header has 2\n"
    );
    assert_eq!(h.counters.rejected.load(Ordering::Relaxed), 2);
    h.stop().await;
}

#[tokio::test]
async fn a_file_too_large_goes_to_failed() {
    let mut h = Harness::new(1 << 20);
    let mut config = h.config(FileFormat::JsonLines, FOREVER);
    config.max_file_bytes = 16;
    h.start(&config, quick()).await;
    h.drop_file("big.jsonl", &jsonl(1..=3));
    h.wait_for_file("failed/big.jsonl").await;
    assert_eq!(
        std::fs::read_to_string(h.path("failed/big.jsonl.error")).unwrap(),
        "the file has 24 bytes, more than max_file_bytes (16)\n"
    );
    assert!(h.stored().is_empty());
    assert_eq!(h.counters.rejected.load(Ordering::Relaxed), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_file_present_at_start_is_taken() {
    let mut h = Harness::new(1 << 20);
    std::fs::write(h.path("waiting.jsonl"), jsonl(1..=3)).unwrap();
    h.start(&h.config(FileFormat::JsonLines, SETTLE), quick())
        .await;
    h.wait_for_file("done/waiting.jsonl").await;
    assert_eq!(numbers(&h.payloads_of("waiting.jsonl")), vec![1, 2, 3]);
    h.stop().await;
}

#[tokio::test]
async fn files_in_done_are_not_taken_again() {
    let mut h = Harness::new(1 << 20);
    std::fs::create_dir(h.path("done")).unwrap();
    std::fs::write(h.path("done/old.jsonl"), jsonl(1..=1)).unwrap();
    let config = h.config(FileFormat::JsonLines, SETTLE);
    h.start(&config, quick()).await;
    h.drop_file("first.jsonl", &jsonl(1..=2));
    h.wait_for_file("done/first.jsonl").await;
    h.stop().await;

    h.start(&config, quick()).await;
    h.drop_file("second.jsonl", &jsonl(1..=1));
    h.wait_for_file("done/second.jsonl").await;
    let files: Vec<Value> = h.payloads().iter().map(|p| p["file"].clone()).collect();
    assert_eq!(
        files,
        vec![
            json!("first.jsonl"),
            json!("first.jsonl"),
            json!("second.jsonl")
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn hidden_and_temporary_files_wait_for_their_rename() {
    let mut h = Harness::new(1 << 20);
    h.start(&h.config(FileFormat::JsonLines, SETTLE), quick())
        .await;
    for name in [".hidden.jsonl", "upload.jsonl.tmp", "upload2.jsonl.part"] {
        std::fs::write(h.path(name), jsonl(1..=1)).unwrap();
    }
    // Written after them without a rename: once it has settled, so would they have.
    std::fs::write(h.path("sentinel.jsonl"), jsonl(1..=1)).unwrap();
    h.wait_for_file("done/sentinel.jsonl").await;
    assert_eq!(h.payloads().len(), 1);
    for name in [".hidden.jsonl", "upload.jsonl.tmp", "upload2.jsonl.part"] {
        assert!(h.path(name).exists(), "{name} was taken");
    }
    std::fs::rename(h.path("upload.jsonl.tmp"), h.path("upload.jsonl")).unwrap();
    h.wait_for_file("done/upload.jsonl").await;
    assert_eq!(h.payloads_of("upload.jsonl").len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_restart_mid_file_repeats_at_most_one_chunk() {
    let mut h = Harness::new(1 << 20);
    let config = h.config(FileFormat::JsonLines, FOREVER);
    // The first run "crashes" once two chunks (8 records) are durable but before the
    // progress of the second is written.
    let mut crashing = quick();
    crashing.crash_after_chunks = Some(2);
    h.start(&config, crashing).await;
    h.drop_file("calls.jsonl", &jsonl(1..=10));
    let (_, handle) = h.running.take().unwrap();
    tokio::time::timeout(DEADLINE, handle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(numbers(&h.payloads()), (1..=8).collect::<Vec<_>>());
    assert!(
        h.path("calls.jsonl").exists(),
        "moved before every record was durable"
    );
    assert!(!h.path("done/calls.jsonl").exists());

    h.reopen_spool(1 << 20);
    h.start(&config, quick()).await;
    h.wait_for_file("done/calls.jsonl").await;
    let stored = numbers(&h.payloads());
    let mut counts = BTreeMap::new();
    for n in &stored {
        *counts.entry(*n).or_insert(0) += 1;
    }
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    let repeated = stored.len() - counts.len();
    assert!(repeated <= quick().chunk, "{repeated} repeated: {stored:?}");
    // Resumed after the first chunk's progress: records 5..=8 again, then the rest.
    assert_eq!(stored, vec![1, 2, 3, 4, 5, 6, 7, 8, 5, 6, 7, 8, 9, 10]);
    // Removed right after the move.
    h.wait_until("no progress record is left", |h| h.progress_records() == 0)
        .await;
    h.stop().await;
}

#[tokio::test]
async fn a_full_spool_holds_the_file_until_there_is_room() {
    let contents = jsonl(1..=7);
    let parsed = records::parse(FileFormat::JsonLines, "held.jsonl", &contents).unwrap();
    let event_bytes = |index: usize| {
        Event {
            connector: CONNECTOR.into(),
            kind: parsed.kind().into(),
            received_at_ms: 0,
            payload: parsed.payload(index).unwrap(),
        }
        .encoded_len() as u64
    };
    // Room for exactly three records (all the same size).
    let mut h = Harness::new((0..3).map(event_bytes).sum());
    h.start(&h.config(FileFormat::JsonLines, FOREVER), quick())
        .await;
    h.drop_file("held.jsonl", &contents);
    h.wait_until("the spool is full and refusing", |h| {
        h.spool().stats().events == 3 && h.counters.refused.load(Ordering::Relaxed) > 0
    })
    .await;
    assert!(h.path("held.jsonl").exists());
    assert!(!h.path("done/held.jsonl").exists());
    // No other file is taken while the spool refuses.
    h.drop_file("next.jsonl", &jsonl(8..=8));

    // The uplink delivers what is there, over and over, until everything went through.
    let mut delivered = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !(h.path("done/held.jsonl").exists() && h.path("done/next.jsonl").exists()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; {:?}",
            listing(&h.directory)
        );
        let batch = h.stored();
        let sequences = batch.iter().map(|(sequence, _)| *sequence).collect();
        delivered.extend(
            batch
                .iter()
                .map(|(_, e)| serde_json::from_slice::<Value>(&e.payload).unwrap()),
        );
        h.spool().remove(sequences).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    delivered.extend(h.payloads());
    assert_eq!(numbers(&delivered), (1..=8).collect::<Vec<_>>());
    h.stop().await;
}

#[tokio::test]
async fn a_record_the_spool_can_never_hold_fails_the_file() {
    // Room for the short record only.
    let contents = b"{\"n\":1}\n{\"n\":2,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n";
    let parsed = records::parse(FileFormat::JsonLines, "long.jsonl", contents).unwrap();
    let first = Event {
        connector: CONNECTOR.into(),
        kind: parsed.kind().into(),
        received_at_ms: 0,
        payload: parsed.payload(0).unwrap(),
    };
    let mut h = Harness::new(first.encoded_len() as u64 + 10);
    h.start(&h.config(FileFormat::JsonLines, FOREVER), quick())
        .await;
    h.drop_file("long.jsonl", contents);
    h.wait_for_file("failed/long.jsonl").await;
    let reason = std::fs::read_to_string(h.path("failed/long.jsonl.error")).unwrap();
    assert!(reason.starts_with("record 2: an event of "), "{reason}");
    assert!(
        reason.ends_with("(the 1 records before it were accepted)\n"),
        "{reason}"
    );
    assert_eq!(numbers(&h.payloads()), vec![1]);
    assert_eq!(h.counters.rejected.load(Ordering::Relaxed), 1);
    // Removed right after the move.
    h.wait_until("no progress record is left", |h| h.progress_records() == 0)
        .await;
    h.stop().await;
}

#[tokio::test]
async fn a_missing_directory_is_an_error_at_start() {
    let h = Harness::new(1 << 20);
    let mut config = h.config(FileFormat::Csv, SETTLE);
    config.directory = h.path("absent");
    let error = start(&config, h.sink(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with(&format!(
            "opening the file-drop directory {}",
            config.directory.display()
        )),
        "{error}"
    );
}
