use std::sync::Arc;

use super::*;

fn event(n: u64, payload_len: usize) -> Event {
    Event {
        connector: "hooks".into(),
        kind: "webhook".into(),
        received_at_ms: 1_795_000_000_000 + n,
        payload: vec![b'x'; payload_len],
    }
}

fn open(dir: &tempfile::TempDir, max_bytes: u64) -> Spool {
    Spool::open(&dir.path().join("spool.redb"), max_bytes).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn events_come_back_in_order_and_go_when_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir, 1 << 20);
    runtime().block_on(async {
        let mut sequences = Vec::new();
        for n in 0..5 {
            sequences.push(
                spool
                    .append(&event(n, 10), FullPolicy::Block)
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(sequences, [1, 2, 3, 4, 5]);
        let batch = spool.peek(None, 3, usize::MAX).unwrap();
        assert_eq!(
            batch
                .iter()
                .map(|(s, e)| (*s, e.received_at_ms))
                .collect::<Vec<_>>(),
            [
                (1, event(0, 0).received_at_ms),
                (2, event(1, 0).received_at_ms),
                (3, event(2, 0).received_at_ms)
            ]
        );
        assert_eq!(spool.peek(Some(3), 10, usize::MAX).unwrap().len(), 2);
        let stats = spool.stats();
        assert_eq!(stats.events, 5);
        assert_eq!(stats.bytes, 5 * event(0, 10).encoded_len() as u64);
        assert_eq!(
            stats.oldest_received_at_ms,
            Some(event(0, 0).received_at_ms)
        );

        spool.remove(vec![1, 2, 3]).await.unwrap();
        let left: Vec<u64> = spool
            .peek(None, 10, usize::MAX)
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(left, [4, 5]);
        let stats = spool.stats();
        assert_eq!(
            (stats.events, stats.oldest_received_at_ms),
            (2, Some(event(3, 0).received_at_ms))
        );
    });
}

#[test]
fn a_batch_stops_at_its_byte_limit_but_always_takes_one() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir, 1 << 20);
    runtime().block_on(async {
        for n in 0..4 {
            spool
                .append(&event(n, 100), FullPolicy::Block)
                .await
                .unwrap();
        }
    });
    assert_eq!(spool.peek(None, 10, 250).unwrap().len(), 2);
    assert_eq!(spool.peek(None, 10, 50).unwrap().len(), 1);
}

#[test]
fn what_was_acknowledged_survives_a_reopen_and_sequences_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    {
        let spool = open(&dir, 1 << 20);
        rt.block_on(async {
            for n in 0..3 {
                spool
                    .append(&event(n, 10), FullPolicy::Block)
                    .await
                    .unwrap();
            }
        });
    }
    let spool = open(&dir, 1 << 20);
    let stats = spool.stats();
    assert_eq!(
        (stats.events, stats.bytes),
        (3, 3 * event(0, 10).encoded_len() as u64)
    );
    assert_eq!(spool.peek(None, 10, usize::MAX).unwrap()[2].1, event(2, 10));
    rt.block_on(async {
        assert_eq!(spool.purge(false).await.unwrap(), 3);
        assert_eq!(
            spool.append(&event(9, 1), FullPolicy::Block).await.unwrap(),
            4
        );
    });
}

#[test]
fn concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(open(&dir, 1 << 30));
    const WRITERS: u64 = 400;
    let sequences = runtime().block_on(async {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|n| {
                let spool = spool.clone();
                tokio::spawn(async move { spool.append(&event(n, 1024), FullPolicy::Block).await })
            })
            .collect();
        let mut sequences = Vec::new();
        for task in tasks {
            sequences.push(task.await.unwrap().unwrap());
        }
        sequences
    });
    let mut unique = sequences.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len() as u64,
        WRITERS,
        "every append got its own sequence"
    );
    let stats = spool.stats();
    assert_eq!(stats.events, WRITERS);
    // One commit for the tables at open is not counted; appends waiting together shared.
    assert!(
        stats.commits < WRITERS,
        "{} commits for {WRITERS} appends",
        stats.commits
    );
}

#[test]
fn a_full_spool_blocks_or_drops_the_oldest_as_told() {
    let dir = tempfile::tempdir().unwrap();
    let one = event(0, 100).encoded_len() as u64;
    let spool = open(&dir, 3 * one);
    runtime().block_on(async {
        for n in 0..3 {
            spool
                .append(&event(n, 100), FullPolicy::Block)
                .await
                .unwrap();
        }
        let full = spool.append(&event(3, 100), FullPolicy::Block).await;
        assert!(matches!(full, Err(SpoolError::Full { .. })), "{full:?}");
        assert_eq!(spool.stats().events, 3);

        let sequence = spool
            .append(&event(4, 100), FullPolicy::DropOldest)
            .await
            .unwrap();
        let left: Vec<u64> = spool
            .peek(None, 10, usize::MAX)
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(left, [2, 3, sequence]);
        assert_eq!(spool.stats().dropped, 1);

        let huge = spool.append(&event(5, 1000), FullPolicy::DropOldest).await;
        assert!(matches!(huge, Err(SpoolError::TooLarge { .. })), "{huge:?}");
        assert_eq!(spool.stats().events, 3, "a refused event drops nothing");

        // Room again once something is delivered.
        spool.remove(vec![2]).await.unwrap();
        spool
            .append(&event(6, 100), FullPolicy::Block)
            .await
            .unwrap();
    });
}

#[test]
fn dead_letters_keep_their_reason_and_can_be_replayed_or_purged() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir, 1 << 20);
    runtime().block_on(async {
        for n in 0..3 {
            spool
                .append(&event(n, 10), FullPolicy::Block)
                .await
                .unwrap();
        }
        spool
            .dead_letter(vec![1, 3], "HTTP 400: unknown connector")
            .await
            .unwrap();
        let letters = spool.dead_letters(10).unwrap();
        assert_eq!(letters.len(), 2);
        assert_eq!(letters[0].sequence, 1);
        assert_eq!(letters[0].reason, "HTTP 400: unknown connector");
        assert_eq!(letters[1].event, event(2, 10));
        let stats = spool.stats();
        assert_eq!((stats.events, stats.dead_letters), (1, 2));

        assert_eq!(spool.replay().await.unwrap(), 2);
        let waiting: Vec<u64> = spool
            .peek(None, 10, usize::MAX)
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(waiting, [2, 4, 5], "replayed events get new sequences");
        assert_eq!(spool.stats().dead_letters, 0);

        spool.dead_letter(vec![4], "again").await.unwrap();
        assert_eq!(spool.purge(true).await.unwrap(), 1);
        assert!(spool.dead_letters(10).unwrap().is_empty());
    });
}
