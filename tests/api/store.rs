//! The store contract, run against the sled backend.

use authledger::store::{EventStore, NewEvent, SledStore, StoreError};
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

#[test]
fn a_stale_expected_version_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
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

#[test]
fn eight_threads_appending_keep_a_gap_free_global_order_and_stream_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
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
    let raw: Vec<_> = store.raw_events(1).map(|r| r.unwrap()).collect();
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
        prev_hash = authledger::store::sled_store::chain_hash(&raw[i].1);
    }
    assert_eq!(versions["shared"], 800);
}

#[test]
fn events_survive_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store.append("a", 0, vec![event(1)]).wait().unwrap();
        store
            .append("b", 0, vec![event(2), event(3)])
            .wait()
            .unwrap();
    }
    // sled's I/O threads may hold the directory's lock a moment after the store is dropped.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let store = loop {
        match SledStore::open(dir.path()) {
            Err(authledger::store::StoreError::Locked) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(store.head_position(), 3);
    assert_eq!(store.read_stream("b", 2).unwrap()[0].position, 3);
    store.append("a", 1, vec![event(4)]).wait().unwrap();
    assert_eq!(store.read_all(4, 10).unwrap()[0].prev_hash.len(), 64);
}

#[test]
fn a_subscription_delivers_old_then_new_events_once_each_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
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
/// and prints each acknowledged position. Without the variable it returns at once.
#[test]
fn crash_child_appends_until_killed() {
    let Ok(dir) = std::env::var("AUTHLEDGER_CRASH_CHILD_DIR") else {
        return;
    };
    let store = SledStore::open(std::path::Path::new(&dir)).unwrap();
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
    let store = SledStore::open(dir.path()).unwrap();
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

#[test]
fn a_subscription_taken_while_appends_run_delivers_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
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
