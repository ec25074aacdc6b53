//! The engine: the event log, the local projections fed by it, and the actor registry. Both
//! the HTTP server and the CLI (when the server is stopped) work through it.
//!
//! A data directory holds `LOCK` (one process at a time), `log/` (the segment files and the
//! log's checkpoint) and `projections/` (each projection's checkpoint). A directory written by
//! the sled release (`store/`) is imported into `log/` on first open (see
//! [`crate::store::sled_import`]) and left in place for the operator to remove.

use crate::actors::{Registry, UserActor};
use crate::clock::Clock as ServerClock;
use crate::store::checkpoints::FileCheckpoints;
use crate::store::lock::DirLock;
use crate::store::log::{decode, Log, Medium};
use crate::store::postgres::{PgLog, PgSettings};
use crate::store::segments::{SegmentFiles, DEFAULT_SEGMENT_BYTES, LOG_DIR};
use crate::store::{EventStore, StoreError};
use projections::{CheckpointStore, Part, ReadModels};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Directory of the sled database a data directory of the previous release holds.
pub const SLED_STORE_DIR: &str = "store";
/// Directory of the projections' checkpoints inside the data directory.
pub const PROJECTIONS_DIR: &str = "projections";
/// Environment variable that sets the size of new log segments, in MiB (default 64).
pub const SEGMENT_MB_ENV: &str = "AUTHLEDGER_SEGMENT_MB";

/// Which store holds the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded log in the data directory.
    #[default]
    Embedded,
    /// A log shared with other nodes in PostgreSQL; the data directory holds this node's copy
    /// of it and its projections.
    Postgres(PgSettings),
}

/// The write side and the local read side of one data directory.
pub struct Engine {
    /// The log as this node holds it: the embedded log, or this node's copy of the shared log.
    /// Reads, verification and replay go here.
    pub store: Arc<Log>,
    /// Where appends go: `store` itself, or the shared log.
    pub writes: Arc<dyn EventStore>,
    /// The shared log, when the store is PostgreSQL.
    pub shared: Option<Arc<PgLog>>,
    /// The local read models: all but the audit postings are applied before appenders are
    /// answered; the audit postings follow on a thread of their own ([`AuditFollower`]).
    pub models: Arc<ReadModels>,
    /// The audit postings' thread, and how far it has applied.
    pub audit: Arc<AuditFollower>,
    /// The client actors.
    pub registry: Arc<Registry>,
    /// The data directory.
    pub data_dir: PathBuf,
    users: std::sync::Mutex<Option<actix::Addr<UserActor>>>,
    checkpoints: FileCheckpoints,
    checkpointer: std::sync::Mutex<Option<Checkpointer>>,
    /// The lowest position the projections' checkpoint files hold: as loaded, then as saved
    /// (0: some projection has no file yet).
    saved_at: std::sync::atomic::AtomicU64,
    /// The key of the hashes at rest: set from the KEK the server was configured with when its
    /// keys start, else resolved on first use the way commands other than `serve` find it.
    hash_key: std::sync::OnceLock<domain::values::HashKey>,
    /// The server's clock: it stamps the log, and every reading of time goes through it.
    pub clock: ServerClock,
}

struct Checkpointer {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// An engine that could not open.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed (or is locked by a running server).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A projection failed.
    #[error(transparent)]
    Projection(#[from] projections::ProjectionError),
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Invalid(String),
}

fn segment_bytes() -> u64 {
    std::env::var(SEGMENT_MB_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|mb| *mb > 0)
        .map_or(DEFAULT_SEGMENT_BYTES, |mb| mb * 1024 * 1024)
}

impl Engine {
    /// Uses the hash key derived from the KEK the keys were opened with.
    pub fn use_hash_key(&self, key: domain::values::HashKey) {
        let _ = self.hash_key.set(key);
    }

    /// The key under which tokens, codes and client secrets are hashed at rest (derived from
    /// the KEK; see [`crate::keys::kek::Kek::hash_key`]).
    pub fn hash_key(&self) -> Result<&domain::values::HashKey, EngineError> {
        if let Some(k) = self.hash_key.get() {
            return Ok(k);
        }
        let env = std::env::var(crate::keys::kek::KEK_ENV).ok();
        let kek = crate::actors::keys::resolve_kek(&self.data_dir, &*self.store, env.as_deref())
            .map_err(|e| EngineError::Invalid(format!("{e:#}")))?;
        Ok(self.hash_key.get_or_init(|| kek.hash_key()))
    }

    /// Opens a data directory: the log, the projections (caught up with the log) and the
    /// registry. Catching up reads only the events after the projections' checkpoints.
    pub fn open(data_dir: &Path, actor_idle: Duration) -> Result<Self, EngineError> {
        Self::open_with(data_dir, actor_idle, &StoreChoice::Embedded)
    }

    /// [`Engine::open`] on the chosen store.
    pub fn open_with(
        data_dir: &Path,
        actor_idle: Duration,
        choice: &StoreChoice,
    ) -> Result<Self, EngineError> {
        let engine = Self::open_stale_with(data_dir, actor_idle, choice)?;
        catch_up(&engine.store, &engine.models, |_| {})?;
        Ok(engine)
    }

    /// Opens without catching the projections up: the server verifies the chain first, and
    /// `replay` rebuilds them anyway.
    pub fn open_stale(data_dir: &Path, actor_idle: Duration) -> Result<Self, EngineError> {
        Self::open_stale_with(data_dir, actor_idle, &StoreChoice::Embedded)
    }

    /// [`Engine::open_stale`] on the chosen store. On PostgreSQL the local copy takes in what
    /// the shared log holds before this returns (its projections follow as it does).
    pub fn open_stale_with(
        data_dir: &Path,
        actor_idle: Duration,
        choice: &StoreChoice,
    ) -> Result<Self, EngineError> {
        Self::open_inner(data_dir, actor_idle, ServerClock::system(), false, choice)
    }

    /// What `serve` opens: [`Engine::open_stale_with`] (or, `past_damage`, as
    /// [`Engine::open_stale_past_damage`]) on the server's clock.
    pub fn open_serving(
        data_dir: &Path,
        actor_idle: Duration,
        choice: &StoreChoice,
        clock: ServerClock,
        past_damage: bool,
    ) -> Result<Self, EngineError> {
        Self::open_inner(data_dir, actor_idle, clock, past_damage, choice)
    }

    /// [`Engine::open_stale`] on a log that may be damaged (`serve --allow-unverified`): damage
    /// in the newest segment ends the log before it, and the log then takes no writes.
    pub fn open_stale_past_damage(
        data_dir: &Path,
        actor_idle: Duration,
    ) -> Result<Self, EngineError> {
        Self::open_inner(
            data_dir,
            actor_idle,
            ServerClock::system(),
            true,
            &StoreChoice::Embedded,
        )
    }

    fn open_inner(
        data_dir: &Path,
        actor_idle: Duration,
        clock: ServerClock,
        past_damage: bool,
        choice: &StoreChoice,
    ) -> Result<Self, EngineError> {
        let lock = DirLock::acquire(data_dir)?;
        let log_dir = data_dir.join(LOG_DIR);
        let sled_dir = data_dir.join(SLED_STORE_DIR);
        let embedded = *choice == StoreChoice::Embedded;
        if embedded && !log_dir.exists() && sled_dir.join("db").exists() {
            // The first start of this release on an old data dir: the import can take minutes
            // on a large store, so it shows the same bar as `authledger migrate` (on a
            // terminal) and a log line every million events (anywhere).
            let bar = crate::cli::progress::events(0, false);
            bar.set_message("migrate");
            let mut logged = 0u64;
            crate::store::sled_import::import(&sled_dir, &log_dir, |copied, total| {
                bar.set_length(total);
                bar.set_position(copied);
                if copied >= logged + 1_000_000 {
                    logged = copied;
                    tracing::info!(copied, total, "importing the sled store");
                }
            })?;
            bar.finish_and_clear();
        }
        let (files, recovery) = if past_damage {
            SegmentFiles::open_past_damage(&log_dir, segment_bytes())?
        } else {
            SegmentFiles::open(&log_dir, segment_bytes())?
        };
        let medium: Arc<dyn Medium> = Arc::new(files);
        let checkpoints = FileCheckpoints::new(&data_dir.join(PROJECTIONS_DIR));
        let engine = Self::assemble(medium, checkpoints, actor_idle, clock, data_dir, choice)?;
        engine.store.hold(lock);
        if let Some(damage) = recovery.damaged {
            engine.store.refuse_writes(&damage);
        }
        Ok(engine)
    }

    fn assemble(
        medium: Arc<dyn Medium>,
        checkpoints: FileCheckpoints,
        actor_idle: Duration,
        clock: ServerClock,
        data_dir: &Path,
        choice: &StoreChoice,
    ) -> Result<Self, EngineError> {
        let models = Arc::new(ReadModels::open(&checkpoints)?);
        let (audit, audit_feed) = AuditFollower::start(models.clone(), medium.clone())?;
        let hook_models = models.clone();
        let hook_medium = medium.clone();
        let store = Arc::new(Log::start(
            medium,
            Box::new(move |events| {
                if let Err(e) = hook_models.apply_part(Part::AllButAudit, events) {
                    // The events are durable. A projection refuses to apply past a gap, so it
                    // first catches up from the log, then takes this group again.
                    tracing::warn!(error = %e, "projection behind the log; catching up");
                    let repaired =
                        catch_up_from_medium(&*hook_medium, &hook_models, Part::AllButAudit, None)
                            .and_then(|_| {
                                hook_models
                                    .apply_part(Part::AllButAudit, events)
                                    .map_err(EngineError::from)
                            });
                    if let Err(e) = repaired {
                        tracing::error!(error = %e, "applying events to the projections failed");
                    }
                }
                // Before the appenders are answered: a reader of the trail who started after
                // the answer waits for this group (`AuditFollower::wait_for_writes`).
                audit_feed.send(events);
            }),
            &clock,
        )?);
        // A checkpoint from a longer log than this one (a restored backup) is not this log's.
        let head = store.head_position();
        if models.checkpoint_max()? > head {
            tracing::warn!(
                head,
                "projection checkpoints are ahead of the log; rebuilding the projections"
            );
            models.clear()?;
        }
        let loaded_at = models.checkpoint()?;
        let shared = match choice {
            StoreChoice::Embedded => None,
            StoreChoice::Postgres(settings) => {
                store.copy_only();
                let (copy, read, postings) = (store.clone(), models.clone(), audit.clone());
                let hook: crate::store::postgres::CopiedHook = Arc::new(move |events| {
                    for e in events {
                        if let domain::Event::HistoryCompacted(h) = &e.event {
                            crate::retention::apply_copied(&copy, &read, &postings, h, e.position)
                                .map_err(|e| StoreError::io("applying a copied compaction", e))?;
                        }
                    }
                    Ok(())
                });
                Some(Arc::new(PgLog::open(
                    settings,
                    store.clone(),
                    &clock,
                    Some(hook),
                )?))
            }
        };
        let writes: Arc<dyn EventStore> = match &shared {
            Some(pg) => pg.clone(),
            None => store.clone(),
        };
        let registry = Registry::new(writes.clone(), models.clone(), actor_idle);
        Ok(Self {
            audit,
            writes,
            shared,
            store,
            models,
            registry,
            data_dir: data_dir.to_owned(),
            users: std::sync::Mutex::new(None),
            checkpoints,
            checkpointer: std::sync::Mutex::new(None),
            saved_at: std::sync::atomic::AtomicU64::new(loaded_at),
            hash_key: std::sync::OnceLock::new(),
            clock,
        })
    }

    /// Saves the projections' and the log's checkpoints now (refused while the log is served
    /// read-only past damage: the data directory is then left exactly as found).
    pub fn checkpoint(&self) -> Result<u64, EngineError> {
        let log = self.store.checkpoint()?;
        let models = self.models.save_checkpoints(&self.checkpoints)?;
        self.saved_at
            .fetch_max(models, std::sync::atomic::Ordering::SeqCst);
        Ok(log.min(models))
    }

    /// Saves checkpoints in the background every `every` (the server's checkpointer), so
    /// that a start applies only the log written since the last one.
    pub fn start_checkpointer(self: &Arc<Self>, every: Duration) {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let engine = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("authledger-checkpointer".into())
            .spawn(move || {
                // Checkpoints are a cache: on two cores, requests come first.
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
                // What the files held at the start counts as saved: a start that applied
                // nothing new has nothing to write.
                let mut saved = engine
                    .upgrade()
                    .map_or(0, |e| e.saved_at.load(std::sync::atomic::Ordering::SeqCst));
                let mut marked = 0u64;
                let mut last_full = std::time::Instant::now();
                let mut cost = Duration::ZERO;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(HEAD_EVERY.min(every))
                {
                    let Some(engine) = engine.upgrade() else {
                        return;
                    };
                    let head = engine.store.head_position();
                    if engine.store.read_only().is_some() {
                        continue;
                    }
                    if head != marked {
                        match engine.store.save_head() {
                            Ok(p) => marked = p,
                            Err(e) => tracing::warn!(error = %e, "saving the head marker failed"),
                        }
                    }
                    let since = last_full.elapsed();
                    if head == saved || !checkpoint_due(head.abs_diff(saved), since, every, cost) {
                        continue;
                    }
                    last_full = std::time::Instant::now();
                    let started = std::time::Instant::now();
                    match engine.checkpoint() {
                        Ok(at) => {
                            saved = head;
                            cost = started.elapsed();
                            tracing::debug!(
                                position = at,
                                ms = started.elapsed().as_millis() as u64,
                                "checkpoint saved"
                            );
                        }
                        // A full disk, say: the log is still the truth; try again later.
                        Err(e) => tracing::warn!(error = %e, "saving a checkpoint failed"),
                    }
                }
            });
        match thread {
            Ok(thread) => {
                if let Ok(mut slot) = self.checkpointer.lock() {
                    *slot = Some(Checkpointer { stop, thread });
                }
            }
            Err(e) => tracing::warn!(error = %e, "the checkpointer did not start"),
        }
    }

    /// Stops the writer (after what is queued), then saves the projections' checkpoints unless
    /// they are fewer than `CHECKPOINT_MIN_EVENTS` behind (the log's own is always saved).
    pub fn close(&self) {
        if let Ok(mut slot) = self.checkpointer.lock() {
            if let Some(c) = slot.take() {
                let _ = c.stop.send(());
                let _ = c.thread.join();
            }
        }
        if let Some(pg) = &self.shared {
            // Its queued appends are answered, and copied here, before the copy closes.
            pg.close();
        }
        self.store.close();
        // The writer has stopped and dropped its feed: the audit thread applies what it was
        // handed and ends, so the checkpoint below holds every acknowledged event.
        self.audit.join();
        if self.store.write_failure().is_none() && self.store.read_only().is_none() {
            // A few events past files that all exist are cheaper to apply again at the next
            // start than every projection is to write (600 MB at 10M events, whose writeback
            // then slowed that start by a second).
            let saved = self.saved_at.load(std::sync::atomic::Ordering::SeqCst);
            let behind = self.store.head_position().saturating_sub(saved);
            if saved > 0 && behind < CHECKPOINT_MIN_EVENTS {
                tracing::debug!(
                    behind,
                    "projection checkpoints left as they are; the next start applies the events after them"
                );
                return;
            }
            if let Err(e) = self.models.save_checkpoints(&self.checkpoints) {
                tracing::warn!(error = %e, "saving the projections' checkpoints at close failed");
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}

impl Engine {
    /// The user actor, started on first use (inside an actix system).
    pub fn users(&self) -> actix::Addr<UserActor> {
        use actix::Actor as _;
        let mut slot = self
            .users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*slot {
            Some(addr) if addr.connected() => addr.clone(),
            _ => {
                let addr = UserActor::new(self.writes.clone(), self.models.clone()).start();
                *slot = Some(addr.clone());
                addr
            }
        }
    }
}

/// How often the checkpointer saves the head marker.
const HEAD_EVERY: Duration = Duration::from_secs(1);

/// Events that make a checkpoint worth writing before [`QUIET_CHECKPOINT_FACTOR`] intervals
/// have passed: catching up on fewer at the next start costs less than writing every
/// projection again (2.1 s for the projections of a 10M-event log).
const CHECKPOINT_MIN_EVENTS: u64 = 4096;
/// After this many intervals, any change is checkpointed.
const QUIET_CHECKPOINT_FACTOR: u32 = 10;
/// A checkpoint waits at least this many times as long as the last one took, so that saving
/// takes at most a twentieth of one core however large the projections grow.
const CHECKPOINT_SPACING: u32 = 20;

/// Whether to save the projections now: `changed` events since the last save, `since` it.
fn checkpoint_due(changed: u64, since: Duration, every: Duration, last_cost: Duration) -> bool {
    changed > 0
        && since >= every.max(last_cost * CHECKPOINT_SPACING)
        && (changed >= CHECKPOINT_MIN_EVENTS || since >= every * QUIET_CHECKPOINT_FACTOR)
}

/// Events applied per projection batch when catching up.
const REPLAY_BATCH: usize = 4096;

/// Applies every event after the projections' checkpoint; `progress` hears how many were
/// applied so far.
pub fn catch_up(
    store: &Log,
    models: &ReadModels,
    progress: impl FnMut(u64),
) -> Result<u64, EngineError> {
    let from = models.checkpoint()? + 1;
    reserve_for(store, models, from);
    apply_in_batches(
        models,
        store.raw_events(from).map(|r| r.map(|(_, bytes)| bytes)),
        progress,
    )
}

/// [`catch_up`] that stops at the first damaged record instead of failing: the projections
/// then hold everything before it, and the log takes no more writes (read-only serving past
/// damage, `serve --allow-unverified`).
pub fn catch_up_to_damage(store: &Log, models: &ReadModels) -> Result<u64, EngineError> {
    match catch_up(store, models, |_| {}) {
        Err(EngineError::Store(StoreError::Corrupted(c))) => {
            tracing::error!(error = %c, "the projections stop before the damaged record; serving read-only");
            store.refuse_writes(&format!("the log is damaged ({c}); serving read-only"));
            models.checkpoint().map_err(EngineError::from)
        }
        other => other,
    }
}

/// Catches `part` up from the medium directly, up to `to` (everything when `None`): from
/// inside the writer's commit hook, whose group is not yet below the log's durable head, or from
/// the audit thread, which reads no further than the group it was handed (a later group may be
/// half written).
fn catch_up_from_medium(
    medium: &dyn Medium,
    models: &ReadModels,
    part: Part,
    to: Option<u64>,
) -> Result<u64, EngineError> {
    let from = models.checkpoint_of(part)? + 1;
    let mut last = from - 1;
    apply_in_batches_until(
        models,
        part,
        medium
            .scan(from, to.unwrap_or(u64::MAX))
            .map(|r| r.map(|(_, b)| b)),
        None,
        &mut last,
        |_| {},
    )
}

/// Applies the log from its first event into `models` (fresh ones), up to and including the
/// last event recorded at or before `until` (all of it when `None`). Answers the events
/// applied and the last position applied.
pub fn rebuild_into(
    store: &Log,
    models: &ReadModels,
    until: Option<time::OffsetDateTime>,
    progress: impl FnMut(u64),
) -> Result<(u64, u64), EngineError> {
    let mut last = 0u64;
    reserve_for(store, models, 1);
    let events = store.raw_events(1).map(|r| r.map(|(_, bytes)| bytes));
    let applied = apply_in_batches_until(models, Part::All, events, until, &mut last, progress)?;
    Ok((applied, last))
}

/// Makes room in the token index for the events from `from` to the head, as if each were a
/// token: at most 10 bytes an event too many, against rehashing the index again and again.
fn reserve_for(store: &Log, models: &ReadModels, from: u64) {
    let pending = store.head_position().saturating_sub(from.saturating_sub(1));
    models.tokens.reserve(pending as usize);
}

/// Saves `models` as checkpoints in `dir` (a view of the past, a rebuild).
pub fn save_models(models: &ReadModels, dir: &Path) -> Result<(), EngineError> {
    models.save_checkpoints(&FileCheckpoints::new(dir))?;
    Ok(())
}

/// Opens the models checkpointed in `dir`.
pub fn load_models(dir: &Path) -> Result<ReadModels, EngineError> {
    let source: &dyn CheckpointStore = &FileCheckpoints::new(dir);
    Ok(ReadModels::open(source)?)
}

fn apply_in_batches(
    models: &ReadModels,
    stored: impl Iterator<Item = Result<Vec<u8>, StoreError>> + Send,
    progress: impl FnMut(u64),
) -> Result<u64, EngineError> {
    let mut last = models.checkpoint()?;
    apply_in_batches_until(models, Part::All, stored, None, &mut last, progress)
}

/// Applies stored events in batches, up to the last recorded at or before `until`; `last` is
/// the position applied before the first and, after, the last one applied. A gap in the
/// positions is a run compaction removed: the projections step over it.
///
/// Reading and decoding run on a thread of its own, a batch ahead of the projections: they cost
/// about as much as applying, so the two overlap.
fn apply_in_batches_until(
    models: &ReadModels,
    part: Part,
    stored: impl Iterator<Item = Result<Vec<u8>, StoreError>> + Send,
    until: Option<time::OffsetDateTime>,
    last: &mut u64,
    mut progress: impl FnMut(u64),
) -> Result<u64, EngineError> {
    use std::sync::mpsc::sync_channel;
    /// A batch of decoded events, and the read failure that ended the log early, if one did.
    type Decoded = (Vec<domain::RecordedEvent>, Option<StoreError>);
    std::thread::scope(|s| {
        let (decoded_tx, decoded_rx) = sync_channel::<Decoded>(2);
        // Applied batches go back to be dropped where they were allocated, which the
        // allocator serves faster than a free from another thread.
        let (recycle_tx, recycle_rx) = sync_channel::<Vec<domain::RecordedEvent>>(4);
        s.spawn(move || {
            let mut stored = stored;
            loop {
                while let Ok(applied) = recycle_rx.try_recv() {
                    drop(applied);
                }
                let mut batch = Vec::with_capacity(REPLAY_BATCH);
                let mut failure = None;
                for bytes in stored.by_ref() {
                    match bytes.and_then(|b| decode(&b)) {
                        Ok(e) => batch.push(e),
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                    if batch.len() == REPLAY_BATCH {
                        break;
                    }
                }
                let end = failure.is_some() || batch.len() < REPLAY_BATCH;
                if decoded_tx.send((batch, failure)).is_err() || end {
                    break;
                }
            }
        });
        let mut applied = 0;
        let mut chunk: Vec<domain::RecordedEvent> = Vec::with_capacity(REPLAY_BATCH);
        for decoded in decoded_rx {
            let (batch, failure) = decoded;
            let mut reached_until = false;
            for e in batch {
                // Recorded times never go backwards, so the first later event ends it.
                if until.is_some_and(|t| e.recorded_at > t) {
                    reached_until = true;
                    break;
                }
                if e.position > *last + 1 {
                    apply_chunk(models, part, &chunk)?;
                    applied += chunk.len() as u64;
                    chunk.clear();
                    models.skip_gap_of(part, *last, e.position - 1)?;
                }
                *last = e.position;
                chunk.push(e);
            }
            // What came before a failure is applied: a caller may serve up to it.
            apply_chunk(models, part, &chunk)?;
            applied += chunk.len() as u64;
            progress(applied);
            let done = std::mem::replace(&mut chunk, Vec::with_capacity(REPLAY_BATCH));
            // A full channel (or an ended reader) drops it here.
            let _ = recycle_tx.try_send(done);
            if reached_until {
                break;
            }
            if let Some(e) = failure {
                return Err(e.into());
            }
        }
        Ok(applied)
    })
}

/// A batch of catching up: every projection on two threads (the audit postings on one), or
/// one part on this thread.
fn apply_chunk(
    models: &ReadModels,
    part: Part,
    chunk: &[domain::RecordedEvent],
) -> Result<(), projections::ProjectionError> {
    match part {
        Part::All => models.apply_split(chunk),
        part => models.apply_part(part, chunk),
    }
}

/// Groups the audit thread may have queued before the writer waits for it (about 0.4 s of
/// appends at 30,000 tokens/s in groups of 12).
const AUDIT_QUEUE_GROUPS: usize = 1024;

/// The audit postings' thread while a server runs.
///
/// The postings are the costliest projection to apply (with 100,000 clients, a fifth of the
/// writer's time went into their lookups, each a cache miss), and no answer to an append reads
/// them. So the writer hands each durable group to this thread instead of applying it before
/// it answers; a query of the trail first waits until everything acknowledged before it began
/// is applied ([`AuditFollower::wait_for_writes`]), so a reader still sees their own writes.
pub struct AuditFollower {
    /// The last position handed over, before its appenders were answered.
    sent: std::sync::atomic::AtomicU64,
    state: std::sync::Mutex<FollowerState>,
    changed: std::sync::Condvar,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct FollowerState {
    applied: u64,
    failed: Option<String>,
}

/// The writer's end of the audit thread's queue.
pub struct AuditFeed {
    tx: std::sync::mpsc::SyncSender<Vec<Arc<domain::RecordedEvent>>>,
    follower: Arc<AuditFollower>,
}

impl AuditFeed {
    /// Hands a durable group over (the events are shared, not copied).
    fn send(&self, events: &[Arc<domain::RecordedEvent>]) {
        let Some(last) = events.last().map(|e| e.position) else {
            return;
        };
        self.follower
            .sent
            .store(last, std::sync::atomic::Ordering::SeqCst);
        if self.tx.send(events.to_vec()).is_err() {
            self.follower
                .fail("the audit thread has stopped; restart the server".into());
        }
    }
}

impl AuditFollower {
    fn start(
        models: Arc<ReadModels>,
        medium: Arc<dyn Medium>,
    ) -> Result<(Arc<Self>, AuditFeed), EngineError> {
        let follower = Arc::new(Self {
            sent: std::sync::atomic::AtomicU64::new(0),
            state: std::sync::Mutex::new(FollowerState::default()),
            changed: std::sync::Condvar::new(),
            thread: std::sync::Mutex::new(None),
        });
        // Bounded: an audit thread that falls behind slows the appends (the writer waits here)
        // instead of holding an ever longer queue of events in memory.
        let (tx, rx) =
            std::sync::mpsc::sync_channel::<Vec<Arc<domain::RecordedEvent>>>(AUDIT_QUEUE_GROUPS);
        let shared = follower.clone();
        let thread = std::thread::Builder::new()
            .name("authledger-audit".into())
            .spawn(move || {
                while let Ok(mut batch) = rx.recv() {
                    // Whatever queued meanwhile goes in the same batch.
                    while let Ok(more) = rx.try_recv() {
                        batch.extend(more);
                    }
                    let last = batch.last().map_or(0, |e| e.position);
                    let outcome = models.apply_part(Part::Audit, &batch).or_else(|e| {
                        tracing::warn!(error = %e, "audit postings behind the log; catching up");
                        catch_up_from_medium(&*medium, &models, Part::Audit, Some(last))
                            .and_then(|_| {
                                models
                                    .apply_part(Part::Audit, &batch)
                                    .map_err(EngineError::from)
                            })
                            .map_err(|e| e.to_string())
                    });
                    drop(batch);
                    match outcome {
                        Ok(()) => shared.applied(last),
                        Err(e) => {
                            tracing::error!(error = %e, "applying events to the audit postings failed");
                            shared.fail(format!(
                                "the audit trail's indexes stopped at an error ({e}); restart the server, or run `authledger replay` to rebuild them"
                            ));
                        }
                    }
                }
            })
            .map_err(|e| EngineError::Store(StoreError::io("starting the audit thread", e)))?;
        if let Ok(mut slot) = follower.thread.lock() {
            *slot = Some(thread);
        }
        let feed = AuditFeed {
            tx,
            follower: follower.clone(),
        };
        Ok((follower, feed))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FollowerState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last position the audit postings hold.
    pub fn applied_position(&self) -> u64 {
        self.state().applied
    }

    fn applied(&self, position: u64) {
        let mut state = self.state();
        state.applied = state.applied.max(position);
        self.changed.notify_all();
    }

    fn fail(&self, reason: String) {
        let mut state = self.state();
        state.failed.get_or_insert(reason);
        self.changed.notify_all();
    }

    /// Waits until the audit postings hold every event acknowledged before this call, for at
    /// most `timeout`; answers why not otherwise.
    pub fn wait_for_writes(&self, timeout: Duration) -> Result<(), String> {
        let target = self.sent.load(std::sync::atomic::Ordering::SeqCst);
        let deadline = std::time::Instant::now() + timeout;
        let mut state = self.state();
        loop {
            if state.applied >= target {
                return Ok(());
            }
            if let Some(reason) = &state.failed {
                return Err(reason.clone());
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "the audit trail's indexes are behind the log (at event {}, the log at {target}); try again shortly",
                    state.applied
                ));
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Waits for the thread to apply what it was handed and end (after the writer stopped).
    fn join(&self) {
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewEvent;
    use domain::event::{ChainVerified, Event, INTEGRITY_STREAM};
    use domain::Metadata;

    fn walked(n: u64) -> NewEvent {
        NewEvent {
            event: Event::ChainVerified(ChainVerified {
                events: n,
                head_position: n,
                head_hash: "0".repeat(64),
                millis: 1,
            }),
            metadata: Metadata::system(),
        }
    }

    #[test]
    fn a_query_after_an_answered_append_finds_it_in_the_audit_postings_and_a_close_applies_all() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), Duration::from_secs(5)).unwrap();
        let mut version = engine.store.stream_version(INTEGRITY_STREAM).unwrap();
        for round in 0..50u64 {
            let appended = engine
                .store
                .append(
                    INTEGRITY_STREAM,
                    version,
                    vec![walked(round), walked(round)],
                )
                .wait()
                .unwrap();
            version += 2;
            let last = appended.last().unwrap().position;
            // Answered: the other projections hold it already, the postings once waited for.
            assert!(engine.models.checkpoint_of(Part::AllButAudit).unwrap() >= last);
            engine
                .audit
                .wait_for_writes(Duration::from_secs(10))
                .unwrap();
            assert!(
                engine.models.audit.checkpoint().unwrap() >= last,
                "round {round}"
            );
        }
        // Appends nobody waited for are applied before the close saves the checkpoints.
        for _ in 0..20 {
            engine
                .store
                .append(INTEGRITY_STREAM, version, vec![walked(0)])
                .wait()
                .unwrap();
            version += 1;
        }
        let head = engine.store.head_position();
        engine.close();
        assert_eq!(engine.models.audit.checkpoint().unwrap(), head);
    }

    #[test]
    fn a_close_a_few_events_past_saved_checkpoints_leaves_them_and_the_next_start_applies_the_rest()
    {
        let dir = tempfile::tempdir().unwrap();
        let files = |dir: &Path| -> Vec<(std::ffi::OsString, Vec<u8>)> {
            let mut out: Vec<_> = std::fs::read_dir(dir.join(PROJECTIONS_DIR))
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (e.file_name(), std::fs::read(e.path()).unwrap())
                })
                .collect();
            out.sort();
            out
        };
        let append = |engine: &Engine, n: u64| {
            for _ in 0..n {
                let v = engine.store.stream_version(INTEGRITY_STREAM).unwrap();
                engine
                    .store
                    .append(INTEGRITY_STREAM, v, vec![walked(1)])
                    .wait()
                    .unwrap();
            }
        };
        // A first close writes every file: none existed.
        let engine = Engine::open(dir.path(), Duration::from_secs(5)).unwrap();
        append(&engine, 10);
        drop(engine);
        let saved = files(dir.path());
        assert_eq!(saved.len(), 5);
        // A few events later, the files are left as they were...
        let engine = Engine::open(dir.path(), Duration::from_secs(5)).unwrap();
        append(&engine, 5);
        drop(engine);
        assert_eq!(files(dir.path()), saved);
        // ...and the next start applies the five from the log.
        let engine = Engine::open_stale(dir.path(), Duration::from_secs(5)).unwrap();
        let head = engine.store.head_position();
        assert!(engine.models.checkpoint().unwrap() < head);
        catch_up(&engine.store, &engine.models, |_| {}).unwrap();
        assert_eq!(engine.models.checkpoint().unwrap(), head);
    }

    #[test]
    fn a_failed_audit_thread_is_an_answer_not_a_wait() {
        let follower = AuditFollower {
            sent: std::sync::atomic::AtomicU64::new(7),
            state: std::sync::Mutex::new(FollowerState {
                applied: 5,
                failed: None,
            }),
            changed: std::sync::Condvar::new(),
            thread: std::sync::Mutex::new(None),
        };
        let behind = follower.wait_for_writes(Duration::ZERO).unwrap_err();
        assert!(behind.contains("at event 5, the log at 7"), "{behind}");
        follower.fail("disk gone".into());
        let failed = follower
            .wait_for_writes(Duration::from_secs(60))
            .unwrap_err();
        assert_eq!(failed, "disk gone");
        follower.applied(7);
        assert!(follower.wait_for_writes(Duration::ZERO).is_ok());
    }

    #[test]
    fn a_checkpoint_waits_for_enough_events_or_a_long_quiet_and_for_its_own_cost() {
        let every = Duration::from_secs(30);
        let s = Duration::from_secs;
        // Enough events after the interval.
        assert!(checkpoint_due(5000, s(30), every, s(0)));
        assert!(!checkpoint_due(5000, s(29), every, s(0)));
        // A few events wait for ten intervals.
        assert!(!checkpoint_due(1, s(299), every, s(0)));
        assert!(checkpoint_due(1, s(300), every, s(0)));
        assert!(!checkpoint_due(0, s(3000), every, s(0)));
        // A checkpoint that took 2.1 s is next due after 42 s.
        assert!(!checkpoint_due(
            5000,
            s(41),
            every,
            Duration::from_millis(2100)
        ));
        assert!(checkpoint_due(
            5000,
            s(42),
            every,
            Duration::from_millis(2100)
        ));
    }
}
