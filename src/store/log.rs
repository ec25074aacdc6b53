//! The single-writer log: group commit, the hash chain, the stream index and the log's own
//! checkpoint, over a [`Medium`] that keeps the records (segment files, or memory).
//!
//! Appends are queued to one writer thread. It takes every append queued while the previous
//! group was being made durable, checks each expected version, chains and numbers the
//! accepted events, hands the group to the medium (one sequential write and one sync), hands
//! the events to the commit hook (the local projections) and only then answers every appender.
//! One process owns a data directory, so the writer's order is the global order: there is no
//! gap for a reader to skip.
//!
//! The stream index (stream → version and the positions of its events) and the actors'
//! snapshots live in memory. [`Log::checkpoint`] saves them with the position they reflect and
//! the head marker (position and hash of the last event); an open loads that and reads only
//! the records after it.

use super::verify::{self, CompactedRun, HeadMarker, Verification};
use super::{AppendResult, EventStore, NewEvent, PendingAppend, StoreError, Subscription};
use domain::event::GENESIS_HASH;
use domain::values::hex;
use domain::RecordedEvent;
use roaring::RoaringTreemap;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, OnceLock, RwLock};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

/// One record handed to the medium: an event's position and its stored bytes
/// ([`super::record`]).
#[derive(Debug, Clone)]
pub struct Record {
    /// Global position.
    pub position: u64,
    /// The event as stored; its SHA-256 is the next event's `prev_hash`.
    pub bytes: Vec<u8>,
}

/// Why a medium did not write a group.
#[derive(Debug)]
pub enum WriteFailure {
    /// Nothing was written (no room for a new segment, for example); a later write may succeed.
    Unavailable(String),
    /// The write or the sync failed part-way: what is on disk is unknown.
    Failed(String),
}

/// Stored records in order, read lazily.
pub type RawIter<'a> = Box<dyn Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + Send + 'a>;

/// Where a single-writer log keeps its records and its small metadata.
pub trait Medium: Send + Sync {
    /// Writes the records (ascending positions, following the last one) and makes them
    /// durable with one sync. Called from the writer thread only.
    fn write(&self, records: &[Record]) -> Result<(), WriteFailure>;
    /// The stored bytes of the event at `position`.
    fn read(&self, position: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stored events from `from` to `to` (inclusive) in order; compacted positions are absent.
    fn scan(&self, from: u64, to: u64) -> RawIter<'_>;
    /// The last stored event, found when the medium opened.
    fn last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError>;
    /// Removes events (compaction) durably, giving their space back.
    fn remove(&self, positions: &BTreeSet<u64>) -> Result<(), StoreError>;
    /// Saves a named piece of metadata atomically and durably.
    fn save_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// A named piece of metadata, if saved and intact.
    fn load_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Where the record at `position` lives, for messages.
    fn describe(&self, position: u64) -> String;
    /// Remembers how far the records are known durable, for the next recovery.
    fn save_tail(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Called on the writer thread with each durable group, before appenders are answered.
pub type CommitHook = Box<dyn FnMut(&[Arc<RecordedEvent>]) + Send>;

/// Most appends merged into one group.
const MAX_GROUP: usize = 1024;

/// Metadata names.
const META_INDEX: &str = "index";
const META_RUNS: &str = "runs";
const META_VERIFIED: &str = "verified";
const META_HEAD: &str = "head";

/// Decodes an event as stored (either envelope, [`super::record`]).
pub fn decode(bytes: &[u8]) -> Result<RecordedEvent, StoreError> {
    Ok(super::record::decode(bytes)?)
}

/// The hash chained into the next event: SHA-256 of the stored bytes.
pub fn chain_hash(stored: &[u8]) -> String {
    hex(&Sha256::digest(stored))
}

/// Each stream's version and the positions of its events.
///
/// A persistent map, so that the checkpointer's copy costs O(1) under the read lock: a deep
/// copy of 200,000 streams held the writer (and, the lock preferring writers, every reader)
/// for 120 ms at normal priority and 1.2 s at the checkpointer's. After a copy, the first
/// append to a stream copies its path and its bitmap once.
#[derive(Default, Clone)]
struct StreamIndex {
    /// The last position reflected.
    position: u64,
    /// Names as `Arc<str>`: copying a node of the map (after a copy of it) copies no strings.
    streams: imbl::HashMap<Arc<str>, StreamEntry>,
}

#[derive(Default, Clone)]
struct StreamEntry {
    version: u64,
    positions: Arc<RoaringTreemap>,
}

impl StreamIndex {
    fn add(&mut self, stream: &str, version: u64, position: u64) {
        let entry = match self.streams.get_mut(stream) {
            Some(e) => e,
            None => self.streams.entry(Arc::from(stream)).or_default(),
        };
        entry.version = entry.version.max(version);
        Arc::make_mut(&mut entry.positions).insert(position);
        self.position = self.position.max(position);
    }

    /// Moves a stream's version past events it no longer holds (a skipped compacted run).
    fn bump(&mut self, stream: &str, version: u64) {
        let entry = match self.streams.get_mut(stream) {
            Some(e) => e,
            None => self.streams.entry(Arc::from(stream)).or_default(),
        };
        entry.version = entry.version.max(version);
    }

    fn add_stored(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let p = super::record::placement(bytes)?;
        self.add(&p.stream, p.version, p.position);
        Ok(())
    }

    fn version(&self, stream: &str) -> u64 {
        self.streams.get(stream).map_or(0, |e| e.version)
    }

    fn encode(&self, snapshots: &HashMap<String, (u64, Vec<u8>)>, head: &HeadMarker) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut out, self.position);
        put_u64(&mut out, head.position);
        put_bytes(&mut out, head.hash.as_bytes());
        put_u64(&mut out, self.streams.len() as u64);
        for (name, e) in &self.streams {
            put_bytes(&mut out, name.as_bytes());
            put_u64(&mut out, e.version);
            let mut bitmap = Vec::with_capacity(e.positions.serialized_size());
            // Writing into a Vec cannot fail.
            let _ = e.positions.serialize_into(&mut bitmap);
            put_bytes(&mut out, &bitmap);
        }
        put_u64(&mut out, snapshots.len() as u64);
        for (name, (version, state)) in snapshots {
            put_bytes(&mut out, name.as_bytes());
            put_u64(&mut out, *version);
            put_bytes(&mut out, state);
        }
        out
    }

    #[allow(clippy::type_complexity)]
    fn decode(bytes: &[u8]) -> Option<(Self, HashMap<String, (u64, Vec<u8>)>, HeadMarker)> {
        let mut r = Reader(bytes);
        let position = r.u64()?;
        let head = HeadMarker {
            position: r.u64()?,
            hash: String::from_utf8(r.bytes()?.to_vec()).ok()?,
        };
        let mut streams = imbl::HashMap::new();
        for _ in 0..r.u64()? {
            let name: Arc<str> = std::str::from_utf8(r.bytes()?).ok()?.into();
            let version = r.u64()?;
            let positions = Arc::new(RoaringTreemap::deserialize_from(r.bytes()?).ok()?);
            streams.insert(name, StreamEntry { version, positions });
        }
        let mut snapshots = HashMap::new();
        for _ in 0..r.u64()? {
            let name = String::from_utf8(r.bytes()?.to_vec()).ok()?;
            let version = r.u64()?;
            snapshots.insert(name, (version, r.bytes()?.to_vec()));
        }
        Some((Self { position, streams }, snapshots, head))
    }
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_le_bytes(*head))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u64()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (b, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(b)
    }
}

struct Job {
    stream: String,
    expected: u64,
    events: Vec<NewEvent>,
    /// Events another store already ordered (a node's copy of a shared log): they keep their
    /// position, stream version, id and time, and only the local chain is computed here.
    replica: Vec<RecordedEvent>,
    /// Stored bytes to keep for some of them, as they were in the log they came from.
    replica_stored: Vec<Option<Vec<u8>>>,
    /// A run compacted in the shared log before this copy reached it (see
    /// [`Log::skip_compacted`]).
    skip: Option<(CompactedRun, Vec<(String, u64)>)>,
    reply: oneshot::Sender<AppendResult>,
}

type Subscribers = Arc<Mutex<Vec<mpsc::UnboundedSender<Arc<RecordedEvent>>>>>;
type Snapshots = Arc<RwLock<HashMap<String, (u64, Vec<u8>)>>>;

/// The clock the writer stamps `recorded_at` with.
pub type Clock = Arc<dyn Fn() -> time::OffsetDateTime + Send + Sync>;

/// A log over a medium, with its writer thread.
pub struct Log {
    medium: Arc<dyn Medium>,
    jobs: Mutex<Option<std_mpsc::Sender<Job>>>,
    durable_head: Arc<AtomicU64>,
    head_watch: watch::Receiver<u64>,
    subscribers: Subscribers,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    failure: Arc<OnceLock<String>>,
    read_only: Arc<OnceLock<String>>,
    index: Arc<RwLock<StreamIndex>>,
    snapshots: Snapshots,
    last_hash: Arc<RwLock<(u64, String)>>,
    closed: std::sync::atomic::AtomicBool,
    lock: Mutex<Option<super::lock::DirLock>>,
    /// A node's copy of a shared log takes only [`Log::replicate`]: an append of its own
    /// would fork the copy from the log it follows.
    copy_only: std::sync::atomic::AtomicBool,
}

/// The writer's stamp from the server's clock.
pub fn stamp_with(clock: &crate::clock::Clock) -> Clock {
    let clock = clock.clone();
    Arc::new(move || clock.now())
}

fn lock_err<T>(_: T) -> StoreError {
    StoreError::failed("a lock of the log was poisoned")
}

impl Log {
    /// Opens the log on `medium` and starts its writer; `hook` sees every durable group
    /// before its appenders are answered. `clock` stamps each group's `recorded_at`; it is
    /// told the last recorded time, so that a clock set back while the server was down
    /// revives nothing.
    pub fn start(
        medium: Arc<dyn Medium>,
        hook: CommitHook,
        clock: &crate::clock::Clock,
    ) -> Result<Self, StoreError> {
        let (head, last_hash, last_time) = match medium.last()? {
            Some((position, bytes)) => (position, chain_hash(&bytes), decode(&bytes)?.recorded_at),
            None => (0, GENESIS_HASH.to_owned(), time::OffsetDateTime::UNIX_EPOCH),
        };
        clock.not_before(last_time);
        let now = stamp_with(clock);
        let (mut index, snapshots) = match medium.load_meta(META_INDEX)? {
            Some(bytes) => match StreamIndex::decode(&bytes) {
                Some((index, snapshots, _)) if index.position <= head => (index, snapshots),
                Some((index, _, _)) => {
                    tracing::warn!(
                        checkpoint = index.position,
                        head,
                        "the log's checkpoint is ahead of its last record; rebuilding the stream index from the whole log"
                    );
                    (StreamIndex::default(), HashMap::new())
                }
                None => {
                    tracing::warn!("the log's checkpoint does not decode; rebuilding the stream index from the whole log");
                    (StreamIndex::default(), HashMap::new())
                }
            },
            None => (StreamIndex::default(), HashMap::new()),
        };
        // Recovery reads only what follows the checkpoint.
        if index.position < head {
            for r in medium.scan(index.position + 1, head) {
                let (_, bytes) = r?;
                index.add_stored(&bytes)?;
            }
        }
        index.position = head;
        let index = Arc::new(RwLock::new(index));
        let durable_head = Arc::new(AtomicU64::new(head));
        let (head_tx, head_watch) = watch::channel(head);
        let subscribers: Subscribers = Arc::new(Mutex::new(Vec::new()));
        let failure: Arc<OnceLock<String>> = Arc::default();
        let read_only: Arc<OnceLock<String>> = Arc::default();
        let last = Arc::new(RwLock::new((head, last_hash.clone())));
        let (tx, rx) = std_mpsc::channel();
        let mut writer = Writer {
            medium: medium.clone(),
            index: index.clone(),
            next_position: head + 1,
            last_hash,
            last_time,
            failed: failure.clone(),
            read_only: read_only.clone(),
            hook,
            now,
            durable_head: durable_head.clone(),
            head_tx,
            subscribers: subscribers.clone(),
            last: last.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("authledger-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::io("starting the log writer", e))?;
        Ok(Self {
            medium,
            jobs: Mutex::new(Some(tx)),
            durable_head,
            head_watch,
            subscribers,
            writer: Mutex::new(Some(handle)),
            failure,
            read_only,
            index,
            snapshots: Arc::new(RwLock::new(snapshots)),
            last_hash: last,
            closed: std::sync::atomic::AtomicBool::new(false),
            lock: Mutex::new(None),
            copy_only: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The embedded log in `dir` (segment files), owning the directory, with no commit hook.
    pub fn embedded(dir: &std::path::Path) -> Result<Self, StoreError> {
        let lock = super::lock::DirLock::acquire(dir)?;
        let (files, _) = super::SegmentFiles::open(dir, super::segments::DEFAULT_SEGMENT_BYTES)?;
        let log = Self::start(
            Arc::new(files),
            Box::new(|_| {}),
            &crate::clock::Clock::system(),
        )?;
        log.hold(lock);
        Ok(log)
    }

    /// The log of a data directory whose server is stopped (`<data_dir>/log`), owning the
    /// directory's lock, with no commit hook: for commands that need the log alone (a walk of
    /// the chain, a copy into another store).
    pub fn of_data_dir(data_dir: &std::path::Path) -> Result<Self, StoreError> {
        let lock = super::lock::DirLock::acquire(data_dir)?;
        let (files, _) = super::SegmentFiles::open(
            &data_dir.join(super::segments::LOG_DIR),
            super::segments::DEFAULT_SEGMENT_BYTES,
        )?;
        let log = Self::start(
            Arc::new(files),
            Box::new(|_| {}),
            &crate::clock::Clock::system(),
        )?;
        log.hold(lock);
        Ok(log)
    }

    /// A log in memory, with no commit hook.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::start(
            Arc::new(super::MemoryMedium::new()),
            Box::new(|_| {}),
            &crate::clock::Clock::system(),
        )
    }

    /// Appends events already ordered elsewhere (the PostgreSQL backend's shared log), each at
    /// its own position, which must follow this log's head. The local hash chain, the stream
    /// index, the commit hook and the subscribers treat them as any other group. An event
    /// recorded earlier than the one before it (nodes' clocks differ) takes that one's time,
    /// so that times never go backwards here, and do so the same way on every node.
    ///
    /// `stored` may give, per event, the bytes it was stored as in an embedded log it was
    /// imported from: they are kept as they are when they carry the position, previous hash
    /// and time this log gives the event, so the imported log's hash chain carries over.
    pub fn replicate(
        &self,
        events: Vec<RecordedEvent>,
        stored: Vec<Option<Vec<u8>>>,
    ) -> PendingAppend {
        let (tx, rx) = oneshot::channel();
        if events.is_empty() {
            // Nothing to copy (and an empty job would be a barrier of this log's own).
            let _ = tx.send(Ok(Vec::new()));
            return PendingAppend::new(rx);
        }
        self.send(Job {
            stream: String::new(),
            expected: 0,
            events: Vec::new(),
            replica: events,
            replica_stored: stored,
            skip: None,
            reply: tx,
        });
        PendingAppend::new(rx)
    }

    fn send(&self, job: Job) {
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
    }

    /// Makes this log a copy of a shared one: from now on it takes only [`Log::replicate`].
    pub fn copy_only(&self) {
        self.copy_only.store(true, Ordering::SeqCst);
    }

    /// Keeps the data directory's lock for as long as the log is open.
    pub fn hold(&self, lock: super::lock::DirLock) {
        if let Ok(mut l) = self.lock.lock() {
            *l = Some(lock);
        }
    }

    /// The medium under the log.
    pub fn medium(&self) -> &Arc<dyn Medium> {
        &self.medium
    }

    /// Stops taking writes for good (until restarted): every append is refused with
    /// `reason`. For a log served read-only past damage.
    pub fn refuse_writes(&self, reason: &str) {
        let _ = self.read_only.set(reason.to_owned());
    }

    /// Why the log serves read-only, if it was opened past damage.
    pub fn read_only(&self) -> Option<String> {
        self.read_only.get().cloned()
    }

    /// Why the log stopped taking writes, if it did (a write or sync failed part-way).
    pub fn write_failure(&self) -> Option<String> {
        self.failure.get().cloned()
    }

    /// Saves the stream index, the snapshots and the head marker with the position they
    /// reflect, so that the next open reads only the records after it. Safe while appending.
    pub fn checkpoint(&self) -> Result<u64, StoreError> {
        if let Some(reason) = self.read_only() {
            // Served past damage: nothing is written, so the next start sees the log as it is.
            return Err(StoreError::Unavailable(reason));
        }
        // Any durable event makes a head marker; the last one known is the best.
        let head = self.head()?;
        let index = self.index.read().map_err(lock_err)?.clone();
        let snapshots = self.snapshots.read().map_err(lock_err)?.clone();
        self.medium.save_tail()?;
        self.medium
            .save_meta(META_INDEX, &index.encode(&snapshots, &head))?;
        Ok(index.position)
    }

    /// Stops the writer after it finished what was queued and saves a checkpoint (unless a
    /// write failed: the state on disk is then unknown).
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Ok(mut w) = self.writer.lock() {
            if let Some(h) = w.take() {
                let _ = h.join();
            }
        }
        if self.write_failure().is_none() && self.read_only().is_none() {
            if let Err(e) = self.checkpoint() {
                tracing::warn!(error = %e, "saving the log's checkpoint at close failed");
            }
        }
        if let Ok(mut l) = self.lock.lock() {
            l.take();
        }
    }

    /// Follows the durable head: changes once each group is durable and projected.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.head_watch.clone()
    }

    /// Saves the head marker alone (cheap: the server does it every second), so that a walk
    /// notices events removed from the end of the log since.
    pub fn save_head(&self) -> Result<u64, StoreError> {
        if let Some(reason) = self.read_only() {
            return Err(StoreError::Unavailable(reason));
        }
        let (position, hash) = self.last_hash.read().map_err(lock_err)?.clone();
        let mut v = position.to_le_bytes().to_vec();
        v.extend_from_slice(hash.as_bytes());
        self.medium.save_meta(META_HEAD, &v)?;
        Ok(position)
    }

    /// The last saved head marker: a position the log must still reach, and the hash its
    /// event had then.
    pub fn head_marker(&self) -> Result<Option<HeadMarker>, StoreError> {
        let from_head = self.medium.load_meta(META_HEAD)?.and_then(|v| {
            let position = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
            let hash = String::from_utf8(v.get(8..)?.to_vec()).ok()?;
            Some(HeadMarker { position, hash })
        });
        let from_index = self
            .medium
            .load_meta(META_INDEX)?
            .and_then(|b| StreamIndex::decode(&b))
            .map(|(_, _, head)| head);
        // The later of the two: both are written now and then, each atomically.
        Ok([from_head, from_index]
            .into_iter()
            .flatten()
            .filter(|h| h.position > 0)
            .max_by_key(|h| h.position))
    }

    /// The last event's position and hash (what a signed checkpoint states).
    pub fn head(&self) -> Result<HeadMarker, StoreError> {
        let (position, hash) = self.last_hash.read().map_err(lock_err)?.clone();
        Ok(HeadMarker { position, hash })
    }

    /// Removes compacted events (position, stream, version) and records the runs they formed.
    /// The `HistoryCompacted` event listing the runs must be durable first: a crash in between
    /// leaves the events in place, and compaction finds them again.
    pub fn remove_compacted(
        &self,
        removed: &[(u64, String, u64)],
        runs: &[CompactedRun],
    ) -> Result<(), StoreError> {
        // The runs first: events missing without their run would read as a broken chain.
        save_runs(&*self.medium, runs)?;
        let positions: BTreeSet<u64> = removed.iter().map(|(p, _, _)| *p).collect();
        self.medium.remove(&positions)?;
        {
            let mut index = self.index.write().map_err(lock_err)?;
            for (position, stream, _) in removed {
                if let Some(e) = index.streams.get_mut(stream.as_str()) {
                    Arc::make_mut(&mut e.positions).remove(*position);
                }
            }
        }
        // The saved index must not name the removed events after a crash.
        self.checkpoint()?;
        Ok(())
    }

    /// Every run of events removed by compaction, by first position.
    pub fn compacted_runs(&self) -> Result<BTreeMap<u64, CompactedRun>, StoreError> {
        load_runs(&*self.medium)
    }

    /// Steps a copy of a shared log over a run of events compacted before the copy reached
    /// them: the run is recorded as [`Log::remove_compacted`] records it, the next event is
    /// expected after it, chained to its last hash, and `versions` (stream, version of each
    /// compacted event) move the streams' versions past it.
    pub fn skip_compacted(&self, run: CompactedRun, versions: Vec<(String, u64)>) -> PendingAppend {
        let (tx, rx) = oneshot::channel();
        self.send(Job {
            stream: String::new(),
            expected: 0,
            events: Vec::new(),
            replica: Vec::new(),
            replica_stored: Vec::new(),
            skip: Some((run, versions)),
            reply: tx,
        });
        PendingAppend::new(rx)
    }

    /// Walks the hash chain of the whole log (see [`verify`]); `progress` gets the count of
    /// events read. A walk that holds records how far it got (the verified mark).
    pub fn verify(&self, progress: impl FnMut(u64)) -> Result<Verification, StoreError> {
        self.walk(None, progress)
    }

    /// Walks the chain from the verified mark on: the event there must still hash as it did,
    /// and every later link must hold. What start-up checks, so that its cost follows the
    /// events written since the last walk, not the length of the log.
    pub fn verify_since_mark(&self) -> Result<Verification, StoreError> {
        let mark = match self.medium.load_meta(META_VERIFIED)? {
            Some(v) if v.len() > 8 => HeadMarker {
                position: u64::from_le_bytes(v[..8].try_into().unwrap_or([0; 8])),
                hash: String::from_utf8_lossy(&v[8..]).into_owned(),
            },
            _ => return self.walk(None, |_| {}),
        };
        match self.medium.read(mark.position) {
            Ok(Some(bytes)) if chain_hash(&bytes) == mark.hash => self.walk(Some(mark), |_| {}),
            // Gone, changed or unreadable since it was verified: walk it all.
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
        let start = from.as_ref().map_or(1, |f| f.position + 1);
        let end = self.head_position();
        let events = self.medium.scan(start, end);
        let outcome = verify::verify(events, &runs, head.as_ref(), from.as_ref(), progress)?;
        // A run is only as good as the chained event that recorded it.
        if let Verification::Verified { checkpoints, .. } = &outcome {
            for run in checkpoints {
                let recorded = match self.medium.read(run.compacted_by)? {
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
            if *head_position > 0 && self.read_only().is_none() {
                let mut v = head_position.to_le_bytes().to_vec();
                v.extend_from_slice(head_hash.as_bytes());
                self.medium.save_meta(META_VERIFIED, &v)?;
            }
        }
        Ok(outcome)
    }

    /// Every stored event with its raw bytes from `from_position` to the durable head.
    pub fn raw_events(&self, from_position: u64) -> RawIter<'_> {
        self.medium.scan(from_position.max(1), self.head_position())
    }

    /// The stored bytes of one event.
    pub fn raw_event(&self, position: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if position > self.head_position() {
            return Ok(None);
        }
        self.medium.read(position)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    medium: Arc<dyn Medium>,
    index: Arc<RwLock<StreamIndex>>,
    next_position: u64,
    last_hash: String,
    last_time: time::OffsetDateTime,
    /// Set once a write failed part-way: what is on disk is then unknown, so the writer
    /// takes no more appends until the process restarts and reads the disk again.
    failed: Arc<OnceLock<String>>,
    /// Set when the log is served read-only past damage: every append is refused.
    read_only: Arc<OnceLock<String>>,
    hook: CommitHook,
    now: Clock,
    durable_head: Arc<AtomicU64>,
    head_tx: watch::Sender<u64>,
    subscribers: Subscribers,
    last: Arc<RwLock<(u64, String)>>,
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

    fn commit(&mut self, jobs: Vec<Job>) {
        if let Some(reason) = self.read_only.get() {
            for job in jobs {
                let _ = job.reply.send(Err(StoreError::Unavailable(reason.clone())));
            }
            return;
        }
        if let Some(cause) = self.failed.get() {
            for job in jobs {
                let _ = job.reply.send(Err(StoreError::Unavailable(format!(
                    "the log stopped taking writes after a failed write ({cause}); restart the server"
                ))));
            }
            return;
        }
        let mut new_heads: HashMap<String, u64> = HashMap::new();
        let mut accepted: Vec<(oneshot::Sender<AppendResult>, Vec<Arc<RecordedEvent>>)> =
            Vec::new();
        let mut records: Vec<Record> = Vec::new();
        let now = (self.now)();
        // The trail's time index relies on recorded times never going backwards.
        let recorded_at = now.max(self.last_time);
        let mut replica_time = self.last_time;
        let mut local = false;
        // This node's own appends (not copies of the shared log's), for the metrics.
        let mut local_events: Vec<Arc<RecordedEvent>> = Vec::new();
        // Kept only when metrics are recorded: the writer thread is the log's bottleneck.
        let metered = crate::metrics::enabled();
        // Versions of streams whose events a skipped run held (no positions to index).
        let mut skipped: Vec<(String, u64)> = Vec::new();
        let mut hash = self.last_hash.clone();
        let mut position = self.next_position;
        {
            let index = match self.index.read() {
                Ok(i) => i,
                Err(p) => p.into_inner(),
            };
            for job in jobs {
                if let Some((run, versions)) = job.skip {
                    if run.first != position || run.last < run.first {
                        let _ = job.reply.send(Err(StoreError::Corrupt(format!(
                            "the local copy of the shared log has diverged: a compacted run \
                             {}-{} arrived where event {position} was due",
                            run.first, run.last
                        ))));
                        continue;
                    }
                    if let Err(e) = save_runs(&*self.medium, std::slice::from_ref(&run)) {
                        let _ = job.reply.send(Err(e));
                        continue;
                    }
                    position = run.last + 1;
                    hash = run.last_hash.clone();
                    for (stream, version) in versions {
                        let v = new_heads.entry(stream.clone()).or_insert(0);
                        *v = (*v).max(version);
                        skipped.push((stream, version));
                    }
                    accepted.push((job.reply, Vec::new()));
                    continue;
                }
                if !job.replica.is_empty() {
                    match replica_records(
                        job.replica,
                        job.replica_stored,
                        &index,
                        &mut new_heads,
                        &mut position,
                        &mut hash,
                        &mut replica_time,
                    ) {
                        Ok((recorded, job_records)) => {
                            records.extend(job_records);
                            accepted.push((job.reply, recorded));
                        }
                        Err(e) => {
                            let _ = job.reply.send(Err(e));
                        }
                    }
                    continue;
                }
                local = true;
                if job.events.is_empty() {
                    // A barrier: answered with the group, after everything queued before it.
                    accepted.push((job.reply, Vec::new()));
                    continue;
                }
                let current = new_heads
                    .get(&job.stream)
                    .copied()
                    .unwrap_or_else(|| index.version(&job.stream));
                if job.expected != super::ANY_VERSION && current != job.expected {
                    let _ = job.reply.send(Err(StoreError::Conflict {
                        stream: job.stream,
                        expected: job.expected,
                        actual: current,
                    }));
                    continue;
                }
                let mut recorded = Vec::with_capacity(job.events.len());
                let mut job_records = Vec::with_capacity(job.events.len());
                let (mut version, mut job_hash, mut job_position) =
                    (current, hash.clone(), position);
                let mut failed = None;
                for new in job.events {
                    version += 1;
                    let event = RecordedEvent {
                        position: job_position,
                        stream: job.stream.clone(),
                        version,
                        id: Uuid::now_v7(),
                        recorded_at,
                        schema_version: new.event.schema_version(),
                        event: new.event,
                        metadata: new.metadata,
                        prev_hash: job_hash.clone(),
                    };
                    match super::record::encode(&event) {
                        Ok(bytes) => {
                            job_hash = chain_hash(&bytes);
                            job_records.push(Record {
                                position: job_position,
                                bytes,
                            });
                            recorded.push(Arc::new(event));
                            job_position += 1;
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
                records.extend(job_records);
                if metered {
                    local_events.extend(recorded.iter().cloned());
                }
                new_heads.insert(job.stream, version);
                position = job_position;
                hash = job_hash;
                accepted.push((job.reply, recorded));
            }
        }
        if accepted.is_empty() {
            return;
        }
        if !records.is_empty() {
            let started = std::time::Instant::now();
            match self.medium.write(&records) {
                Ok(()) => crate::metrics::group_commit(records.len(), started.elapsed()),
                Err(WriteFailure::Unavailable(cause)) => {
                    // Nothing was written: the positions are free again, and the next group
                    // may find room.
                    tracing::error!(error = %cause, "the log could not take a group; its appends were refused");
                    for (reply, _) in accepted {
                        let _ = reply.send(Err(StoreError::Unavailable(cause.clone())));
                    }
                    return;
                }
                Err(WriteFailure::Failed(cause)) => {
                    tracing::error!(error = %cause, "a write to the log failed; the log takes no more writes until restarted");
                    for (reply, _) in accepted {
                        let _ = reply.send(Err(StoreError::Unavailable(cause.clone())));
                    }
                    // Whether the group reached the disk is unknown: stop here rather than
                    // number later events against a guess. A restart reads what the disk holds.
                    let _ = self.failed.set(cause);
                    return;
                }
            }
        }
        self.next_position = position;
        self.last_hash = hash;
        // A copy's times come from the shared log alone: mixing in this node's clock would
        // make the copies of different nodes differ.
        self.last_time = if local {
            recorded_at.max(replica_time)
        } else {
            replica_time
        };
        {
            let mut index = match self.index.write() {
                Ok(i) => i,
                Err(p) => p.into_inner(),
            };
            for (_, events) in &accepted {
                for e in events {
                    index.add(&e.stream, e.version, e.position);
                }
            }
            for (stream, version) in &skipped {
                index.bump(stream, *version);
            }
            index.position = index.position.max(position.saturating_sub(1));
        }
        if let Ok(mut last) = self.last.write() {
            *last = (self.next_position - 1, self.last_hash.clone());
        }
        let all: Vec<Arc<RecordedEvent>> = accepted
            .iter()
            .flat_map(|(_, evs)| evs.iter().cloned())
            .collect();
        (self.hook)(&all);
        crate::metrics::appended(&local_events);
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

/// The compacted runs a medium records, by first position.
fn load_runs(medium: &dyn Medium) -> Result<BTreeMap<u64, CompactedRun>, StoreError> {
    let Some(bytes) = medium.load_meta(META_RUNS)? else {
        return Ok(BTreeMap::new());
    };
    let list: Vec<CompactedRun> =
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(list.into_iter().map(|r| (r.first, r)).collect())
}

/// Adds `runs` to those a medium records.
fn save_runs(medium: &dyn Medium, runs: &[CompactedRun]) -> Result<(), StoreError> {
    let mut all = load_runs(medium)?;
    for run in runs {
        all.insert(run.first, run.clone());
    }
    let list: Vec<&CompactedRun> = all.values().collect();
    let bytes = serde_json::to_vec(&list).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    medium.save_meta(META_RUNS, &bytes)
}

/// The records of a replicated job: each event must sit at the next position and the next
/// version of its stream, or the copy has diverged from the shared log and nothing is written.
fn replica_records(
    events: Vec<RecordedEvent>,
    stored: Vec<Option<Vec<u8>>>,
    index: &StreamIndex,
    new_heads: &mut HashMap<String, u64>,
    position: &mut u64,
    hash: &mut String,
    time: &mut time::OffsetDateTime,
) -> Result<(Vec<Arc<RecordedEvent>>, Vec<Record>), StoreError> {
    let (mut p, mut h, mut t) = (*position, hash.clone(), *time);
    let mut heads: HashMap<String, u64> = HashMap::new();
    let mut recorded = Vec::with_capacity(events.len());
    let mut out = Vec::with_capacity(events.len());
    let mut stored = stored.into_iter();
    for mut e in events {
        let original = stored.next().flatten();
        let current = heads
            .get(&e.stream)
            .or_else(|| new_heads.get(&e.stream))
            .copied()
            .unwrap_or_else(|| index.version(&e.stream));
        // Versions may skip: a run compacted before this copy reached it (the shared log
        // checks every stream's versions itself, see `postgres::verify_shared`).
        if e.position != p || e.version <= current {
            return Err(StoreError::Corrupt(format!(
                "the local copy of the shared log has diverged: event {} ({} version {}) \
                 arrived where event {p} (version {} of that stream) was due; delete the data \
                 directory's log and projections and start again to copy the log afresh",
                e.position,
                e.stream,
                e.version,
                current + 1
            )));
        }
        let bytes = match original {
            Some(b) if e.prev_hash == h && e.recorded_at >= t => b,
            _ => {
                e.recorded_at = t.max(e.recorded_at);
                e.prev_hash = h;
                super::record::encode(&e).map_err(|x| StoreError::Corrupt(x.to_string()))?
            }
        };
        t = e.recorded_at;
        h = chain_hash(&bytes);
        heads.insert(e.stream.clone(), e.version);
        out.push(Record { position: p, bytes });
        recorded.push(Arc::new(e));
        p += 1;
    }
    new_heads.extend(heads);
    (*position, *hash, *time) = (p, h, t);
    Ok((recorded, out))
}

impl EventStore for Log {
    fn append(&self, stream: &str, expected_version: u64, events: Vec<NewEvent>) -> PendingAppend {
        let (tx, rx) = oneshot::channel();
        if self.copy_only.load(Ordering::SeqCst) {
            let _ = tx.send(Err(StoreError::failed(
                "this log is a node's copy of the shared log; appends go to the shared log",
            )));
            return PendingAppend::new(rx);
        }
        self.send(Job {
            stream: stream.to_owned(),
            expected: expected_version,
            events,
            replica: Vec::new(),
            replica_stored: Vec::new(),
            skip: None,
            reply: tx,
        });
        PendingAppend::new(rx)
    }

    fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let positions: Vec<u64> = {
            let index = self.index.read().map_err(lock_err)?;
            let Some(entry) = index.streams.get(stream) else {
                return Ok(Vec::new());
            };
            let from = from_version.max(1);
            // Versions and positions line up one to one until compaction removes some.
            if entry.positions.len() == entry.version {
                match entry.positions.select(from - 1) {
                    Some(first) => entry.positions.iter().filter(|p| *p >= first).collect(),
                    None => Vec::new(),
                }
            } else {
                entry.positions.iter().collect()
            }
        };
        let mut out = Vec::with_capacity(positions.len());
        for p in positions {
            match self.medium.read(p)? {
                Some(bytes) => {
                    let e = decode(&bytes)?;
                    if e.version >= from_version {
                        out.push(e);
                    }
                }
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "event {p} of stream {stream} is missing ({})",
                        self.medium.describe(p)
                    )))
                }
            }
        }
        Ok(out)
    }

    fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let head = self.head_position();
        if from_position > head || limit == 0 {
            return Ok(Vec::new());
        }
        self.medium
            .scan(from_position.max(1), head)
            .take(limit)
            .map(|r| decode(&r?.1))
            .collect()
    }

    fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        Ok(self.index.read().map_err(lock_err)?.version(stream))
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
        let mut subs = self.subscribers.lock().map_err(lock_err)?;
        send_from(&mut from)?;
        subs.push(tx);
        Ok(Subscription::new(rx, after))
    }

    fn save_snapshot(&self, stream: &str, version: u64, state: &[u8]) -> Result<(), StoreError> {
        self.snapshots
            .write()
            .map_err(lock_err)?
            .insert(stream.to_owned(), (version, state.to_vec()));
        Ok(())
    }

    fn load_snapshot(&self, stream: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self
            .snapshots
            .read()
            .map_err(lock_err)?
            .get(stream)
            .cloned())
    }
}

impl projections::EventLookup for Log {
    fn event_at(
        &self,
        position: u64,
    ) -> Result<Option<RecordedEvent>, projections::ProjectionError> {
        let map = |e: StoreError| projections::ProjectionError::Log(e.to_string());
        match self.raw_event(position).map_err(map)? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_of_the_stream_index_keeps_what_it_held_while_the_original_grows() {
        let mut index = StreamIndex::default();
        for p in 1..=1000 {
            index.add(&format!("tokens-c{}", p % 7), p / 7 + 1, p);
        }
        let copy = index.clone();
        let encoded = copy.encode(
            &HashMap::new(),
            &HeadMarker {
                position: 1000,
                hash: String::new(),
            },
        );
        index.add("tokens-c1", 500, 1001);
        index.add("client-new", 1, 1002);
        assert_eq!(copy.version("tokens-c1"), 995 / 7 + 1);
        assert_eq!(index.version("tokens-c1"), 500);
        assert_eq!(copy.version("client-new"), 0);
        assert_eq!(copy.position, 1000);
        assert!(!copy.streams["tokens-c1"].positions.contains(1001));
        assert!(index.streams["tokens-c1"].positions.contains(1001));
        assert_eq!(
            copy.encode(
                &HashMap::new(),
                &HeadMarker {
                    position: 1000,
                    hash: String::new()
                }
            ),
            encoded,
            "the copy encodes as it did when taken"
        );
        let (back, _, _) = StreamIndex::decode(&encoded).unwrap();
        assert_eq!(back.streams.len(), 7);
        assert_eq!(back.version("tokens-c3"), copy.version("tokens-c3"));
    }
}
