//! The embedded sled backend: one writer thread, group commit, one atomic batch per group.
//!
//! Layout of the `log` tree (all in one tree so that a group is one atomic sled batch):
//! - `e` + position (u64 BE) → the event as stored (JSON); its SHA-256 is the next event's
//!   `prev_hash`;
//! - `s` + stream + 0xFF + version (u64 BE) → position;
//! - `h` + stream → current version of the stream;
//! - `\x00head` → position (u64 BE) and hash of the last event, written with it (the chain's
//!   end, so that a change to the last event is caught too);
//! - `x` + position (u64 BE) → a run of events removed by compaction, starting there (JSON
//!   [`CompactedRun`]).
//!
//! Appends are queued to a single writer thread. It takes every queued append at once, checks
//! each expected version, writes the accepted ones in one batch, flushes once (fsync), hands the
//! events to the commit hook (the local projections) and only then answers every appender.

use super::verify::{self, CompactedRun, HeadMarker, Verification};
use super::{AppendResult, EventStore, NewEvent, PendingAppend, StoreError, Subscription};
use domain::event::GENESIS_HASH;
use domain::values::hex;
use domain::RecordedEvent;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, OnceLock};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

/// Called on the writer thread with each durable group, before appenders are answered.
pub type CommitHook = Box<dyn FnMut(&[Arc<RecordedEvent>]) + Send>;

/// Most appends merged into one flush.
const MAX_GROUP: usize = 1024;

struct Job {
    stream: String,
    expected: u64,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<AppendResult>,
}

type Subscribers = Arc<Mutex<Vec<mpsc::UnboundedSender<Arc<RecordedEvent>>>>>;

/// The sled event store.
pub struct SledStore {
    db: sled::Db,
    log: sled::Tree,
    snapshots: sled::Tree,
    jobs: Mutex<Option<std_mpsc::Sender<Job>>>,
    durable_head: Arc<AtomicU64>,
    head_watch: watch::Receiver<u64>,
    subscribers: Subscribers,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    failure: Arc<OnceLock<String>>,
}

/// Name of the tree that holds the log.
pub const LOG_TREE: &str = "log";

/// Stored bytes of every event in `log` from `from` on, including those not yet flushed (for
/// the writer's own catch-up).
pub fn raw_range(
    log: &sled::Tree,
    from: u64,
) -> impl Iterator<Item = Result<sled::IVec, StoreError>> {
    log.range(event_key(from)..=event_key(u64::MAX))
        .map(|r| r.map(|(_, v)| v).map_err(StoreError::from))
}

/// Opens the sled database of a data directory's store.
pub fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    open_db_with_cache(path, SERVING_CACHE_BYTES)
}

/// sled's page cache while serving: small, since the hot rows (recent tokens, clients) are
/// few and the server's memory is what operators pay for.
pub const SERVING_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Opens the database with a page cache of `cache_bytes`.
pub fn open_db_with_cache(path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        // Every group is flushed by the writer; sled's own timer would only add fsyncs that
        // stall it (p99 of token issuance 42 ms with a 1 s timer, 8 ms without).
        .flush_every_ms(None)
        .open()
        .map_err(|e| match &e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                StoreError::Locked
            }
            _ if e.to_string().contains("acquire lock") => StoreError::Locked,
            _ => StoreError::from(e),
        })
}

/// Key of the head marker.
const HEAD_MARKER: &[u8] = b"\x00head";
/// Key of the verified mark: the last event a walk of the chain found intact, and its hash.
const VERIFIED_MARK: &[u8] = b"\x00verified";

fn head_marker_value(position: u64, hash: &str) -> Vec<u8> {
    let mut v = position.to_be_bytes().to_vec();
    v.extend_from_slice(hash.as_bytes());
    v
}

fn run_key(first: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'x';
    k[1..].copy_from_slice(&first.to_be_bytes());
    k
}

fn event_key(position: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'e';
    k[1..].copy_from_slice(&position.to_be_bytes());
    k
}

fn stream_key(stream: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 10);
    k.push(b's');
    k.extend_from_slice(stream.as_bytes());
    k.push(0xFF);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn head_key(stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 1);
    k.push(b'h');
    k.extend_from_slice(stream.as_bytes());
    k
}

fn be_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("expected 8 bytes, got {}", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}

/// Decodes an event as stored.
pub fn decode(bytes: &[u8]) -> Result<RecordedEvent, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The hash chained into the next event: SHA-256 of the stored bytes.
pub fn chain_hash(stored: &[u8]) -> String {
    hex(&Sha256::digest(stored))
}

impl SledStore {
    /// Opens the store on an open database and starts its writer; `hook` sees every durable
    /// group before its appenders are answered.
    pub fn start(db: sled::Db, hook: CommitHook) -> Result<Self, StoreError> {
        let log = db.open_tree(LOG_TREE)?;
        let snapshots = db.open_tree("snapshots")?;
        // Recorded times never go backwards, across restarts too.
        let (head, last_hash, last_time) = last_event(&log)?;
        let durable_head = Arc::new(AtomicU64::new(head));
        let (head_tx, head_watch) = watch::channel(head);
        let subscribers: Subscribers = Arc::new(Mutex::new(Vec::new()));
        let failure: Arc<OnceLock<String>> = Arc::default();
        let (tx, rx) = std_mpsc::channel();
        let mut writer = Writer {
            db: db.clone(),
            log: log.clone(),
            heads: HashMap::new(),
            next_position: head + 1,
            last_hash,
            last_time,
            failed: failure.clone(),
            hook,
            durable_head: durable_head.clone(),
            head_tx,
            subscribers: subscribers.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("authledger-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Self {
            db,
            log,
            snapshots,
            jobs: Mutex::new(Some(tx)),
            durable_head,
            head_watch,
            subscribers,
            writer: Mutex::new(Some(handle)),
            failure,
        })
    }

    /// Opens the store in `path` with no commit hook.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::start(open_db(path)?, Box::new(|_| {}))
    }

    /// The underlying database, where projections keep their trees.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Why the store stopped taking writes, if it did (a failed write or flush).
    pub fn write_failure(&self) -> Option<String> {
        self.failure.get().cloned()
    }

    /// Stops the writer after it finished what was queued, and flushes (unless a write failed:
    /// a late flush could then make durable what its callers were told had failed).
    pub fn close(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Ok(mut w) = self.writer.lock() {
            if let Some(h) = w.take() {
                let _ = h.join();
            }
        }
        if self.write_failure().is_none() {
            let _ = self.db.flush();
        }
    }

    /// Follows the durable head: changes once each group is durable and projected, so that
    /// readers (the live event stream) wake only when there is something to read.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.head_watch.clone()
    }

    /// The head marker, if the log has one (logs written before it existed have none until
    /// their next append).
    pub fn head_marker(&self) -> Result<Option<HeadMarker>, StoreError> {
        let Some(v) = self.log.get(HEAD_MARKER)? else {
            return Ok(None);
        };
        if v.len() < 8 {
            return Err(StoreError::Corrupt("the head marker is truncated".into()));
        }
        Ok(Some(HeadMarker {
            position: be_u64(&v[..8])?,
            hash: String::from_utf8_lossy(&v[8..]).into_owned(),
        }))
    }

    /// Removes compacted events (position, stream, version) and records the runs they formed,
    /// in one atomic batch, flushed. The `HistoryCompacted` event listing the runs must be
    /// durable first: a crash in between leaves the events in place, and compaction finds them
    /// again.
    pub fn remove_compacted(
        &self,
        removed: &[(u64, String, u64)],
        runs: &[CompactedRun],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (position, stream, version) in removed {
            batch.remove(&event_key(*position)[..]);
            batch.remove(stream_key(stream, *version));
        }
        for run in runs {
            let bytes = serde_json::to_vec(run).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            batch.insert(&run_key(run.first)[..], bytes);
        }
        self.log.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Every run of events removed by compaction, by first position.
    pub fn compacted_runs(
        &self,
    ) -> Result<std::collections::BTreeMap<u64, CompactedRun>, StoreError> {
        let mut runs = std::collections::BTreeMap::new();
        for r in self.log.range(run_key(0)..=run_key(u64::MAX)) {
            let (_, v) = r?;
            let run: CompactedRun =
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            runs.insert(run.first, run);
        }
        Ok(runs)
    }

    /// Walks the hash chain of the whole log (see [`verify`]); `progress` gets the count of
    /// events read. A walk that holds records how far it got (the verified mark).
    pub fn verify(&self, progress: impl FnMut(u64)) -> Result<Verification, StoreError> {
        self.walk(None, progress)
    }

    /// Walks the chain from the verified mark on: the event there must still hash as it did,
    /// and every later link must hold. What start-up checks, so that its cost follows the
    /// events written since the last walk, not the length of the log; `audit verify` walks
    /// everything.
    pub fn verify_since_mark(&self) -> Result<Verification, StoreError> {
        let mark = match self.log.get(VERIFIED_MARK)? {
            Some(v) if v.len() > 8 => HeadMarker {
                position: be_u64(&v[..8])?,
                hash: String::from_utf8_lossy(&v[8..]).into_owned(),
            },
            _ => return self.walk(None, |_| {}),
        };
        match self.log.get(event_key(mark.position))? {
            Some(bytes) if chain_hash(&bytes) == mark.hash => self.walk(Some(mark), |_| {}),
            // Gone, or changed since it was verified (or compacted away): walk it all.
            _ => self.walk(None, |_| {}),
        }
    }

    fn walk(
        &self,
        from: Option<HeadMarker>,
        progress: impl FnMut(u64),
    ) -> Result<Verification, StoreError> {
        let runs = self.compacted_runs()?;
        let head = self.head_marker()?;
        let start = from.as_ref().map_or(0, |f| f.position + 1);
        // The marker and its events are written in one batch: events past the marker read
        // here were appended during the walk, and are the next walk's.
        let end = head.as_ref().map_or(u64::MAX, |h| h.position);
        let events = self.log.range(event_key(start)..=event_key(end)).map(|r| {
            let (k, v) = r?;
            Ok((be_u64(&k[1..])?, v.to_vec()))
        });
        let outcome = verify::verify(events, &runs, head.as_ref(), from.as_ref(), progress)?;
        // A run is only as good as the chained event that recorded it.
        if let Verification::Verified { checkpoints, .. } = &outcome {
            for run in checkpoints {
                let recorded = match self.log.get(event_key(run.compacted_by))? {
                    Some(bytes) => match decode(&bytes)?.event {
                        domain::Event::HistoryCompacted(h) => h.runs.iter().any(|r| {
                            r.first == run.first
                                && r.last == run.last
                                && r.prev_hash == run.prev_hash
                                && r.last_hash == run.last_hash
                        }),
                        _ => false,
                    },
                    None => false,
                };
                if !recorded {
                    return Ok(Verification::Broken {
                        position: run.first,
                        reason: format!(
                            "the compaction checkpoint for positions {}–{} is not the one event \
                             {} recorded",
                            run.first, run.last, run.compacted_by
                        ),
                        verified: 0,
                    });
                }
            }
        }
        if let Verification::Verified {
            head_position,
            head_hash,
            ..
        } = &outcome
        {
            if *head_position > 0 {
                self.log
                    .insert(VERIFIED_MARK, head_marker_value(*head_position, head_hash))?;
            }
        }
        Ok(outcome)
    }

    /// Every stored event with its raw bytes, in order: for verification and export.
    pub fn raw_events(
        &self,
        from_position: u64,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> + '_ {
        let head = self.head_position();
        self.log
            .range(event_key(from_position)..=event_key(head))
            .map(|r| {
                let (k, v) = r?;
                Ok((be_u64(&k[1..])?, v))
            })
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// The log's last position, the hash that chains the next event to it, and when it was recorded.
fn last_event(log: &sled::Tree) -> Result<(u64, String, time::OffsetDateTime), StoreError> {
    match log.range(event_key(0)..=event_key(u64::MAX)).next_back() {
        Some(r) => {
            let (k, v) = r?;
            Ok((be_u64(&k[1..])?, chain_hash(&v), decode(&v)?.recorded_at))
        }
        None => Ok((0, GENESIS_HASH.to_owned(), time::OffsetDateTime::UNIX_EPOCH)),
    }
}

struct Writer {
    db: sled::Db,
    log: sled::Tree,
    heads: HashMap<String, u64>,
    next_position: u64,
    last_hash: String,
    last_time: time::OffsetDateTime,
    /// Set once a write or flush failed: what is on disk is then unknown, so the writer takes
    /// no more appends until the process restarts and reads the disk again.
    failed: Arc<OnceLock<String>>,
    hook: CommitHook,
    durable_head: Arc<AtomicU64>,
    head_tx: watch::Sender<u64>,
    subscribers: Subscribers,
}

impl Writer {
    fn run(&mut self, rx: std_mpsc::Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            self.commit(jobs);
        }
    }

    fn head_of(&mut self, stream: &str) -> Result<u64, StoreError> {
        if let Some(v) = self.heads.get(stream) {
            return Ok(*v);
        }
        let v = match self.log.get(head_key(stream))? {
            Some(b) => be_u64(&b)?,
            None => 0,
        };
        self.heads.insert(stream.to_owned(), v);
        Ok(v)
    }

    fn commit(&mut self, jobs: Vec<Job>) {
        if let Some(cause) = self.failed.get() {
            for job in jobs {
                let _ = job.reply.send(Err(StoreError::Io(format!(
                    "the store stopped taking writes after a failed write ({cause}); restart the server"
                ))));
            }
            return;
        }
        let mut batch = sled::Batch::default();
        let mut new_heads: HashMap<String, u64> = HashMap::new();
        let mut accepted: Vec<(oneshot::Sender<AppendResult>, Vec<Arc<RecordedEvent>>)> =
            Vec::new();
        let now = time::OffsetDateTime::now_utc();
        // The trail's time index relies on recorded times never going backwards.
        let recorded_at = if now > self.last_time {
            now
        } else {
            self.last_time
        };
        for job in jobs {
            if job.events.is_empty() {
                // A barrier: answered with the group, after everything queued before it.
                accepted.push((job.reply, Vec::new()));
                continue;
            }
            let current = match new_heads.get(&job.stream) {
                Some(v) => *v,
                None => match self.head_of(&job.stream) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = job.reply.send(Err(e));
                        continue;
                    }
                },
            };
            if current != job.expected {
                let _ = job.reply.send(Err(StoreError::Conflict {
                    stream: job.stream,
                    expected: job.expected,
                    actual: current,
                }));
                continue;
            }
            let mut recorded = Vec::with_capacity(job.events.len());
            let mut version = current;
            let mut failed = None;
            let mut job_batch = Vec::new();
            let mut hash = self.last_hash.clone();
            let mut position = self.next_position;
            for new in job.events {
                version += 1;
                let event = RecordedEvent {
                    position,
                    stream: job.stream.clone(),
                    version,
                    id: Uuid::now_v7(),
                    recorded_at,
                    schema_version: new.event.schema_version(),
                    event: new.event,
                    metadata: new.metadata,
                    prev_hash: hash.clone(),
                };
                match serde_json::to_vec(&event) {
                    Ok(bytes) => {
                        hash = chain_hash(&bytes);
                        job_batch.push((event_key(position).to_vec(), bytes));
                        job_batch.push((
                            stream_key(&job.stream, version),
                            position.to_be_bytes().to_vec(),
                        ));
                        recorded.push(Arc::new(event));
                        position += 1;
                    }
                    Err(e) => {
                        failed = Some(StoreError::Corrupt(e.to_string()));
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                let _ = job.reply.send(Err(e));
                continue;
            }
            for (k, v) in job_batch {
                batch.insert(k, v);
            }
            batch.insert(head_key(&job.stream), &version.to_be_bytes());
            new_heads.insert(job.stream, version);
            self.next_position = position;
            self.last_hash = hash;
            accepted.push((job.reply, recorded));
        }
        if accepted.is_empty() {
            return;
        }
        if self.next_position > 1 {
            batch.insert(
                HEAD_MARKER,
                head_marker_value(self.next_position - 1, &self.last_hash),
            );
        }
        let written = self
            .log
            .apply_batch(batch)
            .and_then(|()| self.db.flush().map(|_| ()));
        if let Err(e) = written {
            tracing::error!(error = %e, "a write to the log failed; the store takes no more writes until restarted");
            let err = StoreError::from(e);
            for (reply, _) in accepted {
                let _ = reply.send(Err(err.clone()));
            }
            // Whether the group reached the disk is unknown: stop here rather than number
            // later events against a guess. A restart reads what the disk holds.
            let _ = self.failed.set(err.to_string());
            return;
        }
        self.last_time = recorded_at;
        self.heads.extend(new_heads);
        let all: Vec<Arc<RecordedEvent>> = accepted
            .iter()
            .flat_map(|(_, evs)| evs.iter().cloned())
            .collect();
        (self.hook)(&all);
        if let Ok(mut subs) = self.subscribers.lock() {
            self.durable_head
                .store(self.next_position - 1, Ordering::SeqCst);
            subs.retain(|tx| all.iter().all(|e| tx.send(e.clone()).is_ok()));
        }
        self.head_tx.send_replace(self.next_position - 1);
        for (reply, events) in accepted {
            let _ = reply.send(Ok(events));
        }
    }
}

impl EventStore for SledStore {
    fn append(&self, stream: &str, expected_version: u64, events: Vec<NewEvent>) -> PendingAppend {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            stream: stream.to_owned(),
            expected: expected_version,
            events,
            reply: tx,
        };
        let sent = match self.jobs.lock() {
            Ok(jobs) => match jobs.as_ref() {
                Some(s) => s.send(job).map_err(|e| e.0),
                None => Err(job),
            },
            Err(_) => Err(job),
        };
        if let Err(job) = sent {
            let _ = job.reply.send(Err(StoreError::Closed));
        }
        PendingAppend::new(rx)
    }

    fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let start = stream_key(stream, from_version.max(1));
        let end = stream_key(stream, u64::MAX);
        let mut out = Vec::new();
        for r in self.log.range(start..=end) {
            let (_, pos) = r?;
            let pos = be_u64(&pos)?;
            match self.log.get(event_key(pos))? {
                Some(bytes) => out.push(decode(&bytes)?),
                None => return Err(StoreError::Corrupt(format!("missing event {pos}"))),
            }
        }
        Ok(out)
    }

    fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let head = self.head_position();
        if from_position > head {
            return Ok(Vec::new());
        }
        self.log
            .range(event_key(from_position)..=event_key(head))
            .take(limit)
            .map(|r| {
                let (_, v) = r?;
                decode(&v)
            })
            .collect()
    }

    fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        match self.log.get(head_key(stream))? {
            Some(b) => be_u64(&b),
            None => Ok(0),
        }
    }

    fn head_position(&self) -> u64 {
        self.durable_head.load(Ordering::SeqCst)
    }

    fn subscribe(&self, after: u64) -> Result<Subscription, StoreError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let send_from = |from: &mut u64| -> Result<(), StoreError> {
            loop {
                let chunk = self.read_all(*from, 4096)?;
                let Some(last) = chunk.last().map(|e| e.position) else {
                    return Ok(());
                };
                for e in chunk {
                    let _ = tx.send(Arc::new(e));
                }
                *from = last + 1;
            }
        };
        // The long catch-up runs without the lock, so appends are not held up by it...
        let mut from = after + 1;
        send_from(&mut from)?;
        // ...and the short remainder under it: the writer cannot publish between this read and
        // the registration, so nothing is missed (repeats are dropped by the subscription).
        let mut subs = self
            .subscribers
            .lock()
            .map_err(|_| StoreError::Io("subscriber list poisoned".into()))?;
        send_from(&mut from)?;
        subs.push(tx);
        Ok(Subscription::new(rx, after))
    }

    fn save_snapshot(&self, stream: &str, version: u64, state: &[u8]) -> Result<(), StoreError> {
        let mut v = Vec::with_capacity(8 + state.len());
        v.extend_from_slice(&version.to_be_bytes());
        v.extend_from_slice(state);
        self.snapshots.insert(stream.as_bytes(), v)?;
        Ok(())
    }

    fn load_snapshot(&self, stream: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        match self.snapshots.get(stream.as_bytes())? {
            Some(v) if v.len() >= 8 => Ok(Some((be_u64(&v[..8])?, v[8..].to_vec()))),
            _ => Ok(None),
        }
    }
}

impl projections::EventLookup for SledStore {
    fn event_at(
        &self,
        position: u64,
    ) -> Result<Option<RecordedEvent>, projections::ProjectionError> {
        let map = |e: StoreError| projections::ProjectionError::Log(e.to_string());
        match self
            .log
            .get(event_key(position))
            .map_err(StoreError::from)
            .map_err(map)?
        {
            Some(bytes) => Ok(Some(decode(&bytes).map_err(map)?)),
            None => Ok(None),
        }
    }

    fn events_from(
        &self,
        position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, projections::ProjectionError> {
        self.read_all(position, limit)
            .map_err(|e| projections::ProjectionError::Log(e.to_string()))
    }
}
