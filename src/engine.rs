//! The engine: the event store, the local projections fed by it, and the actor registry. Both
//! the HTTP server and the CLI (when the server is stopped) work through it.

use crate::actors::{Registry, UserActor};
use crate::store::sled_store::{
    decode, open_db_with_cache, raw_range, SledStore, SERVING_CACHE_BYTES,
};
use crate::store::{EventStore, StoreError};
use projections::ReadModels;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Directory of the sled database inside the data directory.
pub const STORE_DIR: &str = "store";

/// The write side and the local read side of one data directory.
pub struct Engine {
    /// The event log.
    pub store: Arc<SledStore>,
    /// The local read models, applied before appenders are answered.
    pub models: Arc<ReadModels>,
    /// The client actors.
    pub registry: Arc<Registry>,
    /// The data directory.
    pub data_dir: PathBuf,
    users: std::sync::Mutex<Option<actix::Addr<UserActor>>>,
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

impl Engine {
    /// Opens a data directory: the store, the projections (caught up with the log) and the
    /// registry. Catching up reads only the events after the projections' checkpoint.
    pub fn open(data_dir: &Path, actor_idle: Duration) -> Result<Self, EngineError> {
        let engine = Self::open_stale(data_dir, actor_idle)?;
        catch_up(&engine.store, &engine.models, |_| {})?;
        Ok(engine)
    }

    /// Opens without catching the projections up: for `replay`, which rebuilds them anyway.
    pub fn open_stale(data_dir: &Path, actor_idle: Duration) -> Result<Self, EngineError> {
        Self::open_stale_with_cache(data_dir, actor_idle, SERVING_CACHE_BYTES)
    }

    /// [`Engine::open_stale`] with a page cache of `cache_bytes` (a rebuild wants a larger one).
    pub fn open_stale_with_cache(
        data_dir: &Path,
        actor_idle: Duration,
        cache_bytes: u64,
    ) -> Result<Self, EngineError> {
        let db = open_db_with_cache(&data_dir.join(STORE_DIR), cache_bytes)?;
        let models = Arc::new(ReadModels::open(&db)?);
        let hook_models = models.clone();
        let log = db
            .open_tree(crate::store::sled_store::LOG_TREE)
            .map_err(StoreError::from)?;
        let store = Arc::new(SledStore::start(
            db,
            Box::new(move |events| {
                if let Err(e) = hook_models.apply(events) {
                    // The events are durable. A projection refuses to apply past a gap, so it
                    // first catches up from the log, then takes this group again.
                    tracing::warn!(error = %e, "projection behind the log; catching up");
                    let repaired = catch_up_from_tree(&log, &hook_models)
                        .and_then(|_| hook_models.apply(events).map_err(EngineError::from));
                    if let Err(e) = repaired {
                        tracing::error!(error = %e, "applying events to the projections failed");
                    }
                }
            }),
        )?);
        let registry = Registry::new(
            store.clone() as Arc<dyn EventStore>,
            models.clone(),
            actor_idle,
        );
        Ok(Self {
            store,
            models,
            registry,
            data_dir: data_dir.to_owned(),
            users: std::sync::Mutex::new(None),
        })
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
                let addr = UserActor::new(
                    self.store.clone() as Arc<dyn EventStore>,
                    self.models.clone(),
                )
                .start();
                *slot = Some(addr.clone());
                addr
            }
        }
    }
}

/// Events applied per atomic projection batch when catching up. Small: sled holds one epoch
/// guard for a whole batch, and huge ones bloat its memory and slow it down.
const REPLAY_BATCH: usize = 512;

/// Applies every event after the projections' checkpoint; `progress` hears how many were
/// applied so far.
pub fn catch_up(
    store: &SledStore,
    models: &ReadModels,
    progress: impl FnMut(u64),
) -> Result<u64, EngineError> {
    let from = models.checkpoint()? + 1;
    apply_in_batches(
        models,
        store.raw_events(from).map(|r| r.map(|(_, bytes)| bytes)),
        progress,
    )
}

/// The writer's own catch-up, from inside its commit hook: it reads the `log` tree directly,
/// since the group being committed is not yet below the store's durable head.
fn catch_up_from_tree(log: &sled::Tree, models: &ReadModels) -> Result<u64, EngineError> {
    let from = models.checkpoint()? + 1;
    apply_in_batches(models, raw_range(log, from), |_| {})
}

/// Applies the log from its first event into `models` (fresh ones, in another database), up
/// to and including the last event recorded at or before `until` (all of it when `None`).
/// Answers the events applied and the last position applied.
pub fn rebuild_into(
    store: &SledStore,
    models: &ReadModels,
    until: Option<time::OffsetDateTime>,
    progress: impl FnMut(u64),
) -> Result<(u64, u64), EngineError> {
    let mut last = 0u64;
    let events = store.raw_events(1).map(|r| r.map(|(_, bytes)| bytes));
    let applied = apply_in_batches_until(models, events, until, &mut last, progress)?;
    Ok((applied, last))
}

fn apply_in_batches(
    models: &ReadModels,
    stored: impl Iterator<Item = Result<sled::IVec, StoreError>>,
    progress: impl FnMut(u64),
) -> Result<u64, EngineError> {
    let mut last = models.checkpoint()?;
    apply_in_batches_until(models, stored, None, &mut last, progress)
}

/// Applies stored events in batches, up to the last recorded at or before `until`; `last` is
/// the position applied before the first and, after, the last one applied. A gap in the
/// positions is a run compaction removed: the projections step over it.
fn apply_in_batches_until(
    models: &ReadModels,
    stored: impl Iterator<Item = Result<sled::IVec, StoreError>>,
    until: Option<time::OffsetDateTime>,
    last: &mut u64,
    mut progress: impl FnMut(u64),
) -> Result<u64, EngineError> {
    let mut chunk: Vec<domain::RecordedEvent> = Vec::with_capacity(REPLAY_BATCH);
    let mut applied = 0;
    for bytes in stored {
        let e = decode(&bytes?)?;
        // Recorded times never go backwards, so the first later event ends it.
        if until.is_some_and(|t| e.recorded_at > t) {
            break;
        }
        if e.position > *last + 1 {
            models.apply_split(&chunk)?;
            applied += chunk.len() as u64;
            chunk.clear();
            models.skip_gap(*last, e.position - 1)?;
        }
        *last = e.position;
        chunk.push(e);
        if chunk.len() == REPLAY_BATCH {
            models.apply_split(&chunk)?;
            applied += chunk.len() as u64;
            progress(applied);
            chunk.clear();
        }
    }
    models.apply_split(&chunk)?;
    applied += chunk.len() as u64;
    progress(applied);
    Ok(applied)
}
