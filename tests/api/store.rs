//! The store contract, run against every backend (the in-memory log, the embedded log, and
//! the log shared in PostgreSQL as one node holds it), then what only the embedded log
//! promises: reopening, crashes, torn writes and corruption.

use authledger::store::postgres::{PgLog, PgSettings};
use authledger::store::{EventStore, Log, NewEvent, StoreError};
use domain::event::{ClientDeleted, Event};
use domain::values::ClientId;
use domain::Metadata;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

fn event(n: usize) -> NewEvent {
    NewEvent {
        event: Event::ClientDeleted(ClientDeleted {
            client_id: ClientId::parse(&format!("c{n}")).unwrap(),
        }),
        metadata: Metadata::system(),
    }
}

/// A fresh log of one backend: where appends go, and the log as this process holds it (the
/// log itself, or this node's copy of the shared one). The directory, if any, lives as long
/// as the log is used.
pub struct Backend {
    pub store: Arc<dyn EventStore>,
    pub log: Arc<Log>,
    _shared: Option<Arc<PgLog>>,
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for Backend {
    type Target = dyn EventStore;
    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl Backend {
    /// The shared log this node follows (PostgreSQL backends only).
    pub fn shared(&self) -> &PgLog {
        self._shared.as_deref().expect("a node of the shared log")
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(pg) = &self._shared {
            pg.close();
        }
    }
}

pub fn memory() -> Backend {
    let log = Arc::new(Log::in_memory().unwrap());
    Backend {
        store: log.clone(),
        log,
        _shared: None,
        _dir: None,
    }
}

pub fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::embedded(dir.path()).unwrap());
    Backend {
        store: log.clone(),
        log,
        _shared: None,
        _dir: Some(dir),
    }
}

/// One node of a log shared in a fresh database (its copy in a directory of its own).
pub fn postgres() -> Backend {
    node_of(&crate::pg::database())
}

/// A node on the shared log in `url`.
pub fn node_of(url: &str) -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::embedded(dir.path()).unwrap());
    log.copy_only();
    let pg = Arc::new(
        PgLog::open(
            &PgSettings::new(url),
            log.clone(),
            &authledger::clock::Clock::system(),
            None,
        )
        .unwrap(),
    );
    Backend {
        store: pg.clone(),
        log,
        _shared: Some(pg),
        _dir: Some(dir),
    }
}

/// The contract: each test runs once per backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_memory {
            $(#[test] fn $name() { super::$name(super::memory()) })*
        }
        mod on_embedded_log {
            $(#[test] fn $name() { super::$name(super::embedded()) })*
        }
        mod on_postgres {
            $(#[test] fn $name() { super::$name(super::postgres()) })*
        }
    };
}

contract!(
    a_stale_expected_version_is_refused_and_nothing_is_written,
    eight_threads_appending_keep_a_gap_free_global_order_and_stream_versions,
    a_subscription_delivers_old_then_new_events_once_each_in_order,
    a_subscription_taken_while_appends_run_delivers_every_event_exactly_once,
    streams_read_from_a_version_and_snapshots_read_back,
);

// Compaction of the shared log is not built yet (the PostgreSQL issue's own item).
mod compaction {
    #[test]
    fn on_memory() {
        super::compaction_removes_events_and_the_chain_still_verifies(super::memory())
    }
    #[test]
    fn on_embedded_log() {
        super::compaction_removes_events_and_the_chain_still_verifies(super::embedded())
    }
}

fn a_stale_expected_version_is_refused_and_nothing_is_written(store: Backend) {
    store
        .append("s", 0, vec![event(1), event(2)])
        .wait()
        .unwrap();
    let err = store.append("s", 1, vec![event(3)]).wait().unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{err}"
    );
    let err = store.append("s", 0, vec![event(3)]).wait().unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }));
    assert_eq!(store.read_stream("s", 1).unwrap().len(), 2);
    assert_eq!(store.read_all(1, 100).unwrap().len(), 2);
    assert_eq!(store.stream_version("s").unwrap(), 2);
}

fn eight_threads_appending_keep_a_gap_free_global_order_and_stream_versions(store: Backend) {
    let store = Arc::new(store);
    let mut threads = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        threads.push(std::thread::spawn(move || {
            let own = format!("own-{t}");
            let mut shared_ok = 0;
            for i in 0..100 {
                store
                    .append(&own, i, vec![event(i as usize)])
                    .wait()
                    .unwrap();
                // Contended stream: retry on conflict with the version the store reports.
                loop {
                    let v = store.stream_version("shared").unwrap();
                    match store.append("shared", v, vec![event(t)]).wait() {
                        Ok(_) => {
                            shared_ok += 1;
                            break;
                        }
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            shared_ok
        }));
    }
    let shared: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(shared, 800);
    let all = store.read_all(1, 10_000).unwrap();
    assert_eq!(all.len(), 1600);
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut prev_hash = domain::event::GENESIS_HASH.to_owned();
    let raw: Vec<_> = store.log.raw_events(1).map(|r| r.unwrap()).collect();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1, "gap in the global order");
        let v = versions.entry(e.stream.clone()).or_default();
        *v += 1;
        assert_eq!(e.version, *v, "stream {} skipped a version", e.stream);
        assert_eq!(
            e.prev_hash, prev_hash,
            "hash chain broken at {}",
            e.position
        );
        prev_hash = authledger::store::log::chain_hash(&raw[i].1);
    }
    assert_eq!(versions["shared"], 800);
}

#[test]
fn events_survive_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Log::embedded(dir.path()).unwrap();
        store.append("a", 0, vec![event(1)]).wait().unwrap();
        store
            .append("b", 0, vec![event(2), event(3)])
            .wait()
            .unwrap();
    }
    let store = Log::embedded(dir.path()).unwrap();
    assert!(matches!(Log::embedded(dir.path()), Err(StoreError::Locked)));
    assert_eq!(store.head_position(), 3);
    assert_eq!(store.read_stream("b", 2).unwrap()[0].position, 3);
    store.append("a", 1, vec![event(4)]).wait().unwrap();
    assert_eq!(store.read_all(4, 10).unwrap()[0].prev_hash.len(), 64);
}

fn a_subscription_delivers_old_then_new_events_once_each_in_order(store: Backend) {
    store
        .append("a", 0, vec![event(1), event(2)])
        .wait()
        .unwrap();
    let mut sub = store.subscribe(1).unwrap();
    store.append("a", 2, vec![event(3)]).wait().unwrap();
    let got: Vec<u64> = (0..2)
        .map(|_| {
            sub.next_blocking(std::time::Duration::from_secs(5))
                .unwrap()
                .position
        })
        .collect();
    assert_eq!(got, [2, 3]);
    assert!(sub
        .next_blocking(std::time::Duration::from_millis(100))
        .is_none());
}

/// Not a test on its own: the child process of the crash test below, which appends in a loop
/// and prints each acknowledged position. Ignored, so that only that test runs it (with
/// `--ignored`); run any other way it fails instead of passing without doing anything.
#[test]
#[ignore = "the child process of a_store_killed_mid_append_keeps_every_acknowledged_event"]
fn crash_child_appends_until_killed() {
    let dir = std::env::var("AUTHLEDGER_CRASH_CHILD_DIR")
        .expect("AUTHLEDGER_CRASH_CHILD_DIR: this is the crash test's child, run by it");
    let store = Log::embedded(std::path::Path::new(&dir)).unwrap();
    let mut version = store.stream_version("crash").unwrap();
    loop {
        let recorded = store
            .append("crash", version, vec![event(1), event(2)])
            .wait()
            .unwrap();
        version += 2;
        println!("ACK {}", recorded.last().unwrap().position);
    }
}

#[test]
fn a_store_killed_mid_append_keeps_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "store::crash_child_appends_until_killed",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("AUTHLEDGER_CRASH_CHILD_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = 0u64;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked < 300 {
        let line = lines.next().expect("child stopped early").unwrap();
        if let Some(p) = line.strip_prefix("ACK ") {
            acked = p.parse().unwrap();
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let store = Log::embedded(dir.path()).unwrap();
    let all = store.read_all(1, 1_000_000).unwrap();
    assert!(
        all.len() as u64 >= acked,
        "acknowledged {acked}, found {}",
        all.len()
    );
    assert_eq!(all.len() % 2, 0, "an append was half written");
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1);
        assert_eq!(e.version, i as u64 + 1);
    }
}

fn a_subscription_taken_while_appends_run_delivers_every_event_exactly_once(store: Backend) {
    let store = Arc::new(store);
    for i in 0..500 {
        store.append("s", i, vec![event(1)]).wait().unwrap();
    }
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 500..1500 {
                store.append("s", i, vec![event(1)]).wait().unwrap();
            }
        })
    };
    let mut sub = store.subscribe(100).unwrap();
    writer.join().unwrap();
    let mut seen = Vec::new();
    while let Some(e) = sub.next_blocking(std::time::Duration::from_millis(500)) {
        seen.push(e.position);
    }
    let expected: Vec<u64> = (101..=1500).collect();
    assert_eq!(seen, expected);
}

fn streams_read_from_a_version_and_snapshots_read_back(store: Backend) {
    for i in 0..5 {
        store.append("x", i, vec![event(1)]).wait().unwrap();
        store
            .append("y", i * 2, vec![event(2), event(3)])
            .wait()
            .unwrap();
    }
    let y: Vec<u64> = store
        .read_stream("y", 7)
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(y, [7, 8, 9, 10]);
    assert!(store.read_stream("y", 11).unwrap().is_empty());
    assert!(store.read_stream("nobody", 1).unwrap().is_empty());
    assert_eq!(store.stream_version("x").unwrap(), 5);
    assert_eq!(store.head_position(), 15);
    // An empty append is a barrier: it answers once what was queued before it is durable.
    assert!(store.append("x", 5, vec![]).wait().unwrap().is_empty());
    assert_eq!(store.load_snapshot("x").unwrap(), None);
    store.save_snapshot("x", 3, b"state").unwrap();
    store.save_snapshot("x", 5, b"later").unwrap();
    assert_eq!(
        store.load_snapshot("x").unwrap(),
        Some((5, b"later".to_vec()))
    );
}

fn compaction_removes_events_and_the_chain_still_verifies(store: Backend) {
    use authledger::store::verify::{CompactedRun, Verification};
    for i in 0..20 {
        store
            .append("s", i, vec![event(i as usize)])
            .wait()
            .unwrap();
    }
    let raw: Vec<(u64, Vec<u8>)> = store.log.raw_events(1).map(|r| r.unwrap()).collect();
    let hash = |p: u64| authledger::store::log::chain_hash(&raw[p as usize - 1].1);
    let prev = |p: u64| {
        authledger::store::log::decode(&raw[p as usize - 1].1)
            .unwrap()
            .prev_hash
    };
    // A run 5..=8, recorded by an event that lists it (as retention does).
    let runs = vec![CompactedRun {
        first: 5,
        last: 8,
        prev_hash: prev(5),
        last_hash: hash(8),
        compacted_by: 21,
    }];
    let record = domain::Event::HistoryCompacted(domain::event::HistoryCompacted {
        class: "access-tokens".into(),
        cutoff: 0,
        removed: 4,
        runs: vec![domain::event::CompactedRange {
            first: 5,
            last: 8,
            prev_hash: prev(5),
            last_hash: hash(8),
        }],
    });
    store
        .append(
            "retention",
            0,
            vec![NewEvent {
                event: record,
                metadata: Metadata::system(),
            }],
        )
        .wait()
        .unwrap();
    let removed: Vec<(u64, String, u64)> = (5..=8).map(|p| (p, "s".to_owned(), p)).collect();
    store.log.remove_compacted(&removed, &runs).unwrap();
    let left: Vec<u64> = store
        .read_all(1, 100)
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(
        left,
        [1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]
    );
    assert_eq!(store.read_stream("s", 1).unwrap().len(), 16);
    assert_eq!(store.read_stream("s", 9).unwrap()[0].position, 9);
    assert_eq!(store.stream_version("s").unwrap(), 20);
    match store.log.verify(|_| {}).unwrap() {
        Verification::Verified {
            head_position,
            checkpoints,
            ..
        } => assert_eq!((head_position, checkpoints.len()), (21, 1)),
        broken => panic!("{broken:?}"),
    }
    // Appends go on after compaction.
    store.append("s", 20, vec![event(1)]).wait().unwrap();
    assert_eq!(store.head_position(), 22);
}

fn small_segments(dir: &std::path::Path) -> Log {
    use authledger::store::SegmentFiles;
    let (files, _) = SegmentFiles::open(dir, 64 * 1024).unwrap();
    Log::start(
        Arc::new(files),
        Box::new(|_| {}),
        &authledger::clock::Clock::system(),
    )
    .unwrap()
}

#[test]
fn a_log_of_many_segments_reads_back_whole_after_reopening_and_compaction_gives_space_back() {
    use authledger::store::verify::Verification;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = small_segments(dir.path());
        for i in 0..3000u64 {
            store
                .append("many", i, vec![event(i as usize)])
                .wait()
                .unwrap();
        }
    }
    let segments = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir.join("."))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        v.sort();
        v
    };
    let files = segments(dir.path());
    assert!(files.len() > 3, "{} segments", files.len());
    // Every segment but the newest is cut to its records.
    let sealed = std::fs::metadata(&files[0]).unwrap().len();
    assert!(sealed < 64 * 1024, "{sealed}");
    let store = small_segments(dir.path());
    assert_eq!(store.head_position(), 3000);
    assert_eq!(store.read_all(1, 10_000).unwrap().len(), 3000);
    let middle = store.read_stream("many", 1500).unwrap();
    assert_eq!((middle.len(), middle[0].position), (1501, 1500));
    assert!(matches!(
        store.verify(|_| {}).unwrap(),
        Verification::Verified { events: 3000, .. }
    ));
    // Compaction rewrites the first segment without its events, smaller.
    let raw: Vec<(u64, Vec<u8>)> = store.raw_events(1).take(50).map(|r| r.unwrap()).collect();
    let removed: Vec<(u64, String, u64)> = (10..=40).map(|p| (p, "many".to_owned(), p)).collect();
    let runs = vec![authledger::store::verify::CompactedRun {
        first: 10,
        last: 40,
        prev_hash: authledger::store::log::decode(&raw[9].1).unwrap().prev_hash,
        last_hash: authledger::store::log::chain_hash(&raw[39].1),
        compacted_by: 1,
    }];
    store.remove_compacted(&removed, &runs).unwrap();
    assert!(std::fs::metadata(&files[0]).unwrap().len() < sealed);
    assert_eq!(store.read_all(1, 10_000).unwrap().len(), 3000 - 31);
    store.append("many", 3000, vec![event(1)]).wait().unwrap();
    drop(store);
    let store = small_segments(dir.path());
    assert_eq!(store.read_all(1, 10_000).unwrap().len(), 3000 - 31 + 1);
    assert_eq!(store.read_stream("many", 41).unwrap()[0].position, 41);
}
