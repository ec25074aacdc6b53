//! The log shared in PostgreSQL, beyond the store contract: the global order when writers
//! commit out of order, and nodes whose copies agree.

use crate::store::{node_of, Backend};
use authledger::store::{EventStore, NewEvent};
use domain::event::{ClientDeleted, Event, GENESIS_HASH};
use domain::values::ClientId;
use domain::{Metadata, RecordedEvent};
use std::time::{Duration, Instant};

fn event(n: usize) -> NewEvent {
    NewEvent {
        event: Event::ClientDeleted(ClientDeleted {
            client_id: ClientId::parse(&format!("c{n}")).unwrap(),
        }),
        metadata: Metadata::system(),
    }
}

/// The stored form of an event as a node's writer sends it (position 0, not yet numbered).
fn record(stream: &str, version: u64) -> Vec<u8> {
    let new = event(version as usize);
    authledger::store::record::encode(&RecordedEvent {
        position: 0,
        stream: stream.into(),
        version,
        id: uuid::Uuid::now_v7(),
        recorded_at: time::OffsetDateTime::now_utc(),
        schema_version: new.event.schema_version(),
        event: new.event,
        metadata: new.metadata,
        prev_hash: GENESIS_HASH.into(),
    })
    .unwrap()
}

/// A writer of our own, held open between its insert and its commit (the test hook).
struct HeldWriter {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl HeldWriter {
    fn connect(url: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
        });
        Self { rt, client }
    }

    /// Begins a transaction and appends one event to `stream` in it; answers its xid.
    fn begin_append(&self, stream: &str) -> i64 {
        self.rt.block_on(async {
            self.client.batch_execute("BEGIN").await.unwrap();
            let row = self
                .client
                .query_one(
                    "SELECT txid FROM authledger_append($1, $2, $3, $4, $5, $6)",
                    &[
                        &vec![stream],
                        &vec![0i64],
                        &vec![None::<uuid::Uuid>],
                        &vec![1i32],
                        &vec![record(stream, 1)],
                        &vec![uuid::Uuid::now_v7()],
                    ],
                )
                .await
                .unwrap();
            row.get(0)
        })
    }

    fn run(&self, sql: &str) {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn count(&self, sql: &str) -> i64 {
        self.rt.block_on(async {
            let row = self.client.query_one(sql, &[]).await.unwrap();
            row.get(0)
        })
    }
}

/// Waits until `sql` counts `n`, at most 10 s (a condition, not a pause).
fn until_count(on: &HeldWriter, sql: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while on.count(sql) != n {
        assert!(Instant::now() < deadline, "{sql} never counted {n}");
        std::thread::yield_now();
    }
}

fn positions(node: &Backend) -> Vec<(u64, String)> {
    node.read_all(1, 100)
        .unwrap()
        .into_iter()
        .map(|e| (e.position, e.stream))
        .collect()
}

#[test]
fn a_writer_that_commits_after_a_later_one_holds_the_order_back_and_is_never_skipped() {
    let url = crate::pg::database();
    let node = node_of(&url);
    node.append("early", 0, vec![event(1)]).wait().unwrap();
    let held = HeldWriter::connect(&url);
    let watcher = HeldWriter::connect(&url);
    let held_xid = held.begin_append("held");
    // The node's next group gets a later transaction id and commits first.
    let late = node.append("late", 0, vec![event(2)]);
    until_count(
        &watcher,
        "SELECT count(*) FROM authledger_events WHERE stream = 'late'",
        1,
    );
    let late_xid =
        watcher.count("SELECT xid::text::bigint FROM authledger_events WHERE stream = 'late'");
    assert!(late_xid > held_xid, "{late_xid} should follow {held_xid}");
    // Committed, yet not numbered: the held transaction could still commit below it.
    assert_eq!(watcher.count("SELECT authledger_sequence()"), 0);
    assert_eq!(watcher.count("SELECT count(*) FROM authledger_order"), 1);
    assert_eq!(positions(&node), [(1, "early".to_owned())]);
    held.run("COMMIT");
    // Both are numbered in transaction order: the one that committed last comes first.
    let late = late.wait().unwrap();
    assert_eq!(late[0].position, 3);
    assert_eq!(
        positions(&node),
        [
            (1, "early".to_owned()),
            (2, "held".to_owned()),
            (3, "late".to_owned())
        ]
    );
    // A held writer that rolls back leaves no gap.
    held.begin_append("rolled-back");
    let after = node.append("after", 0, vec![event(3)]);
    until_count(
        &watcher,
        "SELECT count(*) FROM authledger_events WHERE stream = 'after'",
        1,
    );
    assert_eq!(node.head_position(), 3);
    held.run("ROLLBACK");
    assert_eq!(after.wait().unwrap()[0].position, 4);
    assert_eq!(node.read_all(1, 100).unwrap().len(), 4);
    assert_eq!(node.stream_version("rolled-back").unwrap(), 0);
}

#[test]
fn nodes_on_one_database_hold_the_same_log_and_lose_no_write_to_each_other() {
    let url = crate::pg::database();
    let a = std::sync::Arc::new(node_of(&url));
    let b = std::sync::Arc::new(node_of(&url));
    // Both write their own streams and fight over one, as two nodes serving one client would.
    let writers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(n, node)| {
            std::thread::spawn(move || {
                for i in 0..60u64 {
                    node.append(&format!("own-{n}"), 2 * i, vec![event(1), event(2)])
                        .wait()
                        .unwrap();
                    loop {
                        let v = node.stream_version("shared").unwrap();
                        match node.append("shared", v, vec![event(n)]).wait() {
                            Ok(_) => break,
                            Err(authledger::store::StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    // A third node, started afterwards, copies the same log.
    let c = node_of(&url);
    for node in [&*a, &*b] {
        node_sync(node);
    }
    let all = |n: &Backend| n.log.read_all(1, 10_000).unwrap();
    let (la, lb, lc) = (all(&a), all(&b), all(&c));
    assert_eq!(la.len(), 60 * 2 * 2 + 120);
    for (i, e) in la.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1, "gap in the global order");
    }
    let key = |l: &[RecordedEvent]| -> Vec<(u64, String, u64, uuid::Uuid, String)> {
        l.iter()
            .map(|e| {
                (
                    e.position,
                    e.stream.clone(),
                    e.version,
                    e.id,
                    e.prev_hash.clone(),
                )
            })
            .collect()
    };
    for other in [key(&lb), key(&lc)] {
        let first = key(&la).into_iter().zip(other).find(|(x, y)| x != y);
        assert_eq!(first, None, "the copies differ");
    }
    assert_eq!(a.stream_version("shared").unwrap(), 120);
    let head = |n: &Backend| n.log.head().unwrap();
    assert_eq!(head(&a), head(&b));
    assert_eq!(head(&a), head(&c));
}

/// Waits until a node's copy holds everything numbered in its database.
fn node_sync(node: &Backend) {
    node.shared().sync().unwrap();
}

#[test]
fn an_append_made_on_top_of_one_that_failed_fails_too_though_another_node_filled_its_version() {
    let url = crate::pg::database();
    let a = node_of(&url);
    let b = node_of(&url);
    a.append("s", 0, vec![event(1)]).wait().unwrap();
    b.shared().sync().unwrap();
    // B writes version 2 first; A, not knowing, sends version 2 and, on top of it, version 3
    // before hearing back. Its first fails; the second expects version 2 as the stream's
    // head, and the stream is indeed at 2, but with B's event, not with A's.
    b.append("s", 1, vec![event(2)]).wait().unwrap();
    let first = a.append("s", 1, vec![event(3)]);
    let second = a.append("s", 2, vec![event(4)]);
    assert!(matches!(
        first.wait(),
        Err(authledger::store::StoreError::Conflict { .. })
    ));
    assert!(matches!(
        second.wait(),
        Err(authledger::store::StoreError::Conflict { .. })
    ));
    // Once it has heard, A appends on what the stream holds.
    a.append("s", 2, vec![event(5)]).wait().unwrap();
    let versions: Vec<(u64, String)> = a
        .read_stream("s", 1)
        .unwrap()
        .into_iter()
        .map(|e| (e.version, format!("{:?}", e.event)))
        .collect();
    assert_eq!(versions.len(), 3);
    assert!(
        versions[1].1.contains("c2") && versions[2].1.contains("c5"),
        "{versions:?}"
    );
}
