//! The PostgreSQL backend: one event log shared by several nodes (ADR 0018 for the driver,
//! ADR 0019 for the order).
//!
//! - **Writes.** Each node's writer task merges the appends that arrive while the previous
//!   group is on its way into one call of `authledger_append` (one round trip, one
//!   transaction): the stream versions are checked there, and the events are inserted under
//!   the transaction's own id (`xid8`). Writers of different nodes never wait for each other
//!   unless they write the same stream.
//! - **Order.** `authledger_sequence()` numbers, in (xid, idx) order, every transaction that
//!   finished below the oldest one still running: a transaction that commits late can only
//!   hold the numbering back, never be skipped by it. Each node calls it after its own
//!   commits and when it polls.
//! - **Following.** Every node copies the numbered log, in order, into a [`Log`] of its own
//!   (the data directory's segment files): its projections, stream index, subscriptions,
//!   hash chain and verification are those of the embedded log, and they end the same on
//!   every node. An append is answered once this node's copy (and so its projections) holds
//!   it: a node reads its own writes.
//!
//! Reads (`read_stream`, `read_all`, `stream_version`, ...) answer from the local copy. An
//! append refused for a stale version is answered only once the copy holds what the
//! database held then, so that the actor that reloads sees the write it lost to.

use super::{AppendResult, EventStore, NewEvent, PendingAppend, StoreError, Subscription};
use crate::store::log::{Clock, Log};
use domain::event::GENESIS_HASH;
use domain::RecordedEvent;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use uuid::Uuid;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// Most appends merged into one transaction.
const MAX_GROUP: usize = 1024;
/// Most transactions of events a follower copies in one read.
const FOLLOW_BATCH: i64 = 512;
/// How often a follower looks for new events when no notification came: the fallback for a
/// lost `LISTEN` connection, and what numbers the groups of a node that died between its
/// commit and its call of the sequencer.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Groups remembered after they were copied, for a writer that learns its transaction id
/// only after the copy took it in (another node's sequencer can be that quick).
const RECENT_GROUPS: usize = 65_536;
/// How long an append committed to PostgreSQL waits for this node's copy before it is
/// answered as unavailable.
const APPEND_WAIT: Duration = Duration::from_secs(5);
/// The notification channel `authledger_sequence()` wakes followers on.
const CHANNEL: &str = "authledger_log";

/// Where the shared log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// A libpq-style URL or key=value string: `postgres://user@host:5432/db`.
    pub url: String,
    /// Connections in this node's pool.
    pub pool_size: usize,
}

impl PgSettings {
    /// Settings for `url` with the default pool.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            pool_size: 8,
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: {e}"))
}

/// A database error, with PostgreSQL's own message when there is one.
fn db_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => unavailable(format!("{} ({})", db.message(), db.code().code())),
        None => unavailable(e),
    }
}

/// Connects, applies the migrations (each once, whichever node gets there first), and answers
/// the log's identity.
async fn prepare(settings: &PgSettings) -> Result<(deadpool_postgres::Pool, String), StoreError> {
    let pg: tokio_postgres::Config = settings
        .url
        .parse()
        .map_err(|e| StoreError::io("the database URL does not parse", e))?;
    let manager = deadpool_postgres::Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(settings.pool_size.max(2))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(unavailable)?;
    let mut client = pool.get().await.map_err(unavailable)?;
    // Two nodes starting at once: the migrations run under a lock, one after the other.
    client
        .execute("SELECT pg_advisory_lock(4242170000)", &[])
        .await
        .map_err(db_error)?;
    let migrated = embedded::migrations::runner()
        .set_migration_table_name("authledger_migrations")
        .run_async(&mut **client)
        .await;
    let _ = client
        .execute("SELECT pg_advisory_unlock(4242170000)", &[])
        .await;
    migrated.map_err(|e| StoreError::io("migrating the database", e))?;
    let row = client
        .query_one(
            "SELECT log_id::text FROM authledger_identity WHERE id = 1",
            &[],
        )
        .await
        .map_err(db_error)?;
    Ok((pool, row.get(0)))
}

/// One append on its way: its stream, the version it expects, its events as recorded (position
/// 0 until the copy numbers them), and whom to answer.
struct Job {
    stream: String,
    expected: u64,
    /// The id of the event this node's previous append to the stream ends with, when that
    /// append was still unanswered as this one was made on top of it.
    after: Option<Uuid>,
    events: Vec<RecordedEvent>,
    reply: oneshot::Sender<AppendResult>,
    tail: Option<TailGuard>,
}

/// An answer owed once a transaction is in the local copy: the slice of its events that are
/// this append's.
struct Waiter {
    first: usize,
    count: usize,
    reply: oneshot::Sender<AppendResult>,
    _tail: Option<TailGuard>,
    since: std::time::Instant,
}

/// The last unanswered append this node made to each stream: the version it ends at and its
/// last event's id.
type Tails = Arc<Mutex<std::collections::HashMap<String, (u64, Uuid)>>>;

/// Forgets a stream's entry in [`Tails`] once its append is answered, unless a later append
/// has replaced it.
struct TailGuard {
    tails: Tails,
    stream: String,
    id: Uuid,
}

impl Drop for TailGuard {
    fn drop(&mut self) {
        if let Ok(mut t) = self.tails.lock() {
            if t.get(&self.stream).is_some_and(|(_, id)| *id == self.id) {
                t.remove(&self.stream);
            }
        }
    }
}

/// How this node's copy stands against the database.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SharedHealth {
    /// Milliseconds since the follower last heard from PostgreSQL (`None`: never).
    pub last_contact_ms: Option<u64>,
    /// The last numbered position the follower saw in the database.
    pub numbered_head: u64,
    /// The last position this node's copy holds.
    pub copied_head: u64,
    /// Why the copy stopped, if it did.
    pub halted: Option<String>,
}

impl SharedHealth {
    /// Why the node should not take requests, if it should not: the database has not been
    /// reached for [`UNREACHABLE_AFTER`], the copy is more than [`BEHIND_BY`] events behind
    /// it, or it stopped.
    pub fn not_ready(&self) -> Option<String> {
        if let Some(h) = &self.halted {
            return Some(format!("the copy of the shared log stopped: {h}"));
        }
        match self.last_contact_ms {
            None => return Some("PostgreSQL has not answered yet".into()),
            Some(ms) if ms > UNREACHABLE_AFTER.as_millis() as u64 => {
                return Some(format!("PostgreSQL has not answered for {} ms", ms))
            }
            Some(_) => {}
        }
        let behind = self.numbered_head.saturating_sub(self.copied_head);
        (behind > BEHIND_BY).then(|| {
            format!("this node's copy is {behind} events behind the shared log; it is catching up")
        })
    }
}

/// A node that has not reached PostgreSQL for this long is not ready.
const UNREACHABLE_AFTER: Duration = Duration::from_secs(3);
/// A node whose copy is more than this many events behind the database is not ready.
const BEHIND_BY: u64 = 10_000;

/// When the follower last heard from the database, and what it saw there.
#[derive(Default)]
struct Contact {
    at: Option<std::time::Instant>,
    numbered_head: u64,
}

/// What the writer and the follower share.
#[derive(Default)]
struct Followed {
    /// Answers owed, by transaction id.
    waiters: BTreeMap<i64, Vec<Waiter>>,
    /// The highest transaction id in the copy.
    applied_xid: i64,
    /// Recent transactions in the copy: (xid, first position, events).
    recent: VecDeque<(i64, u64, usize)>,
    /// This node's committed transactions not yet in the copy, with their events (versions
    /// as they landed): the follower takes these from memory instead of reading them back.
    own: std::collections::HashMap<i64, Vec<RecordedEvent>>,
}

/// The shared log, as one node sees it.
pub struct PgLog {
    mirror: Arc<Log>,
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    tails: Tails,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    head: watch::Receiver<u64>,
    pool: deadpool_postgres::Pool,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    /// Why the follower stopped, if it did (the copy diverged): appends are refused.
    halted: Arc<std::sync::OnceLock<String>>,
    contact: Arc<Mutex<Contact>>,
}

/// What the engine does with a copied batch that holds a `HistoryCompacted`: take the runs it
/// lists out of this node's copy and projections, as the compacting node did.
pub type CopiedHook = Arc<dyn Fn(&[Arc<RecordedEvent>]) -> Result<(), StoreError> + Send + Sync>;

/// A started backend, before it owns its runtime.
struct Parts {
    mirror: Arc<Log>,
    jobs: mpsc::UnboundedSender<Job>,
    writer: tokio::task::JoinHandle<()>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    head: watch::Receiver<u64>,
    pool: deadpool_postgres::Pool,
    halted: Arc<std::sync::OnceLock<String>>,
    contact: Arc<Mutex<Contact>>,
}

impl Parts {
    fn into_log(self, runtime: tokio::runtime::Runtime) -> PgLog {
        PgLog {
            mirror: self.mirror,
            jobs: Mutex::new(Some(self.jobs)),
            tails: Tails::default(),
            writer: Mutex::new(Some(self.writer)),
            wake: self.wake,
            stop: self.stop,
            head: self.head,
            pool: self.pool,
            runtime: Mutex::new(Some(runtime)),
            halted: self.halted,
            contact: self.contact,
        }
    }
}

/// The local copy's meta entry that names the shared log it copies.
const META_LOG_ID: &str = "postgres-log-id";
/// Its value once the copy was made an embedded log of its own.
const DETACHED: &[u8] = b"detached";

/// Makes a node's copy an embedded log of its own (the end of `migrate` to a data
/// directory): it no longer follows the shared log, and takes appends of its own.
pub fn detach(copy: &Log) -> Result<(), StoreError> {
    copy.medium().save_meta(META_LOG_ID, DETACHED)
}

impl PgLog {
    /// Connects to the database, migrates it, and starts this node's writer and follower;
    /// returns once `mirror` holds everything numbered at the start.
    /// `on_copied` runs on every copied batch that holds a `HistoryCompacted`, from the first.
    pub fn open(
        settings: &PgSettings,
        mirror: Arc<Log>,
        clock: &crate::clock::Clock,
        on_copied: Option<CopiedHook>,
    ) -> Result<Self, StoreError> {
        let clock = crate::store::log::stamp_with(clock);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("authledger-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::io("starting the database runtime", e))?;
        match Self::start(settings, mirror, clock, on_copied, &runtime) {
            Ok(parts) => Ok(parts.into_log(runtime)),
            Err(e) => {
                // Dropping a runtime blocks, which an async caller (the server's start) forbids.
                runtime.shutdown_background();
                Err(e)
            }
        }
    }

    fn start(
        settings: &PgSettings,
        mirror: Arc<Log>,
        clock: Clock,
        hook: Option<CopiedHook>,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<Parts, StoreError> {
        let (pool, log_id) = {
            let settings = settings.clone();
            wait_on(runtime.handle(), async move { prepare(&settings).await })?
        };
        let id = log_id;
        match mirror.medium().load_meta(META_LOG_ID)? {
            Some(held) if held == DETACHED => {
                return Err(StoreError::failed(
                    "this data directory holds a log exported from PostgreSQL, now an embedded \
                     log of its own; to share it again, import it with `authledger migrate`",
                ))
            }
            Some(held) if held != id.as_bytes() => {
                return Err(StoreError::failed(format!(
                    "this data directory holds a copy of another shared log ({}), not of the \
                     database's ({id}); give this node a data directory of its own",
                    String::from_utf8_lossy(&held)
                )))
            }
            Some(_) => {}
            None if mirror.head_position() > 0 => {
                return Err(StoreError::failed(
                    "this data directory holds an embedded log; to move it into PostgreSQL use \
                     `authledger migrate`, and give the node an empty data directory",
                ))
            }
            None => mirror.medium().save_meta(META_LOG_ID, id.as_bytes())?,
        }
        let followed = Arc::new(Mutex::new(Followed::default()));
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let (head_tx, head) = watch::channel(mirror.head_position());
        let halted: Arc<std::sync::OnceLock<String>> = Arc::default();
        let contact: Arc<Mutex<Contact>> = Arc::default();
        let on_copied: Arc<std::sync::OnceLock<CopiedHook>> = Arc::default();
        if let Some(hook) = hook {
            let _ = on_copied.set(hook);
        }
        let follower = Follower {
            on_copied: on_copied.clone(),
            contact: contact.clone(),
            pool: pool.clone(),
            mirror: mirror.clone(),
            followed: followed.clone(),
            head: head_tx,
            halted: halted.clone(),
        };
        // Everything numbered before the start is copied before the node serves.
        let follower = wait_on(runtime.handle(), async move {
            let mut client = follower.pool.get().await.map_err(unavailable)?;
            sequence(&client).await?;
            while follower.copy_batch(&mut client).await? {}
            if let Ok(mut c) = follower.contact.lock() {
                c.at = Some(std::time::Instant::now());
                c.numbered_head = follower.mirror.head_position();
            }
            Ok::<_, StoreError>(follower)
        })?;
        runtime.spawn(follower.run(wake.clone(), stopped.clone(), settings.url.clone()));
        let kick = Arc::new(Notify::new());
        runtime.spawn(sequencer(
            pool.clone(),
            kick.clone(),
            wake.clone(),
            stopped.clone(),
        ));
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = runtime.spawn(
            Writer {
                pool: pool.clone(),
                mirror: mirror.clone(),
                kick,
                followed: followed.clone(),
                wake: wake.clone(),
                head: head.clone(),
                clock,
                last_xid: 0,
            }
            .run(rx),
        );
        Ok(Parts {
            mirror,
            jobs: tx,
            writer,
            wake,
            stop,
            head,
            pool,
            halted,
            contact,
        })
    }

    /// Drops the stored bytes of compacted events in the database, keeping their hashes and
    /// the hash each has in the copies (`copy_hashes`, hex), so that the chains still verify
    /// and a node copying afresh steps over them; answers the rows changed.
    pub fn tombstone(
        &self,
        positions: &[u64],
        copy_hashes: &[String],
        compacted_by: u64,
    ) -> Result<u64, StoreError> {
        let positions: Vec<i64> = positions.iter().map(|p| *p as i64).collect();
        let hashes = copy_hashes
            .iter()
            .map(|h| hex::decode(h).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect::<Result<Vec<Vec<u8>>, _>>()?;
        let pool = self.pool.clone();
        self.on_runtime(async move {
            let client = pool.get().await.map_err(unavailable)?;
            let row = client
                .query_one(
                    "SELECT authledger_compact($1, $2, $3)",
                    &[&positions, &hashes, &(compacted_by as i64)],
                )
                .await
                .map_err(db_error)?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    /// How this node's copy stands against the database (for `/healthz`).
    pub fn health(&self) -> SharedHealth {
        let (at, numbered_head) = self
            .contact
            .lock()
            .map(|c| (c.at, c.numbered_head))
            .unwrap_or((None, 0));
        SharedHealth {
            last_contact_ms: at.map(|t| t.elapsed().as_millis() as u64),
            numbered_head,
            copied_head: self.mirror.head_position(),
            halted: self.halted.get().cloned(),
        }
    }

    /// This node's copy of the log.
    pub fn mirror(&self) -> &Arc<Log> {
        &self.mirror
    }

    /// Waits until the local copy holds every event numbered in the database now.
    pub fn sync(&self) -> Result<u64, StoreError> {
        let pool = self.pool.clone();
        let head = self.on_runtime(async move {
            let client = pool.get().await.map_err(unavailable)?;
            sequence(&client).await?;
            numbered_head(&client).await
        })?;
        self.wake.notify_one();
        let mut watch = self.head.clone();
        self.on_runtime(async move {
            let waited =
                tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|h| *h >= head)).await;
            match waited {
                Ok(Ok(_)) => Ok(head),
                _ => Err(unavailable(
                    "the local copy did not catch up with the database within 30 s",
                )),
            }
        })
    }

    /// Runs `f` on the backend's runtime and waits for it from any thread (an actix worker
    /// included: a runtime's own `block_on` refuses to run inside another runtime).
    fn on_runtime<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let handle = match self.runtime.lock() {
            Ok(rt) => match rt.as_ref() {
                Some(rt) => rt.handle().clone(),
                None => return Err(StoreError::Closed),
            },
            Err(_) => return Err(StoreError::Closed),
        };
        wait_on(&handle, f)
    }

    /// Stops the writer (after what is queued) and the follower.
    pub fn close(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        // Appends already sent get their answers: the writer drains its queue, and the
        // follower copies their groups, before both stop.
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = self.on_runtime(async move { writer.await.map_err(|_| StoreError::Closed) });
            if let Err(e) = self.sync() {
                tracing::warn!(error = %e, "appends may be unanswered at close");
            }
        }
        let _ = self.stop.send(true);
        let runtime = self.runtime.lock().ok().and_then(|mut r| r.take());
        if let Some(rt) = runtime {
            // Its tasks have ended or are idle; a blocking shutdown is refused on an async
            // thread, and the server closes from one.
            rt.shutdown_background();
        }
    }
}

impl Drop for PgLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl EventStore for PgLog {
    fn append(&self, stream: &str, expected_version: u64, events: Vec<NewEvent>) -> PendingAppend {
        let (tx, rx) = oneshot::channel();
        if let Some(reason) = self.halted.get() {
            let _ = tx.send(Err(StoreError::Unavailable(reason.clone())));
            return PendingAppend::new(rx);
        }
        let any = expected_version == super::ANY_VERSION;
        let recorded = events
            .into_iter()
            .enumerate()
            .map(|(i, new)| RecordedEvent {
                position: 0,
                stream: stream.to_owned(),
                // At any version: the database numbers it (the copy takes its row's version).
                version: if any {
                    0
                } else {
                    expected_version + 1 + i as u64
                },
                id: Uuid::now_v7(),
                // Stamped by the writer, when the group is formed.
                recorded_at: time::OffsetDateTime::UNIX_EPOCH,
                schema_version: new.event.schema_version(),
                event: new.event,
                metadata: new.metadata,
                prev_hash: GENESIS_HASH.to_owned(),
            })
            .collect::<Vec<_>>();
        // An append made on top of one still on its way must follow that very one.
        let (after, tail) = match recorded.last() {
            // Where it lands is not known before it does: nothing can be chained on it.
            Some(_) if any => {
                self.tails
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(stream);
                (None, None)
            }
            Some(last) => {
                let mut tails = self
                    .tails
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let after = tails
                    .get(stream)
                    .filter(|(v, _)| *v == expected_version)
                    .map(|(_, id)| *id);
                tails.insert(stream.to_owned(), (last.version, last.id));
                let guard = TailGuard {
                    tails: self.tails.clone(),
                    stream: stream.to_owned(),
                    id: last.id,
                };
                (after, Some(guard))
            }
            None => (None, None),
        };
        let job = Job {
            stream: stream.to_owned(),
            expected: expected_version,
            after,
            events: recorded,
            reply: tx,
            tail,
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
        self.mirror.read_stream(stream, from_version)
    }

    fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.mirror.read_all(from_position, limit)
    }

    fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        self.mirror.stream_version(stream)
    }

    fn head_position(&self) -> u64 {
        self.mirror.head_position()
    }

    fn subscribe(&self, after: u64) -> Result<Subscription, StoreError> {
        self.mirror.subscribe(after)
    }

    fn save_snapshot(&self, stream: &str, version: u64, state: &[u8]) -> Result<(), StoreError> {
        self.mirror.save_snapshot(stream, version, state)
    }

    fn load_snapshot(&self, stream: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.mirror.load_snapshot(stream)
    }
}

/// Runs `f` on `handle`'s runtime and waits for it from any thread (an actix worker included:
/// a runtime's own `block_on` refuses to run inside another runtime).
fn wait_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    f: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().unwrap_or(Err(StoreError::Closed))
}

/// Numbers the groups this node committed, one call for every commit that came in while the
/// previous call ran, and wakes the follower.
async fn sequencer(
    pool: deadpool_postgres::Pool,
    kick: Arc<Notify>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = kick.notified() => {}
            _ = stop.changed() => return,
        }
        let numbered = match pool.get().await {
            Ok(client) => sequence(&client).await,
            Err(e) => Err(unavailable(e)),
        };
        if let Err(e) = numbered {
            // The followers' polls number it once the database answers again.
            tracing::debug!(error = %e, "numbering after a commit failed");
        }
        wake.notify_one();
    }
}

/// Numbers what can be numbered (see the module docs).
async fn sequence(client: &deadpool_postgres::Object) -> Result<i64, StoreError> {
    let row = client
        .query_one("SELECT authledger_sequence()", &[])
        .await
        .map_err(db_error)?;
    Ok(row.get(0))
}

/// The position of the last numbered event (0 if none).
async fn numbered_head(client: &deadpool_postgres::Object) -> Result<u64, StoreError> {
    let row = client
        .query_one(
            "SELECT coalesce((SELECT position + count - 1 FROM authledger_order \
             ORDER BY position DESC LIMIT 1), 0)",
            &[],
        )
        .await
        .map_err(db_error)?;
    Ok(row.get::<_, i64>(0) as u64)
}

struct Writer {
    pool: deadpool_postgres::Pool,
    mirror: Arc<Log>,
    /// Wakes the sequencer task after a commit.
    kick: Arc<Notify>,
    followed: Arc<Mutex<Followed>>,
    wake: Arc<Notify>,
    head: watch::Receiver<u64>,
    clock: Clock,
    /// This node's last transaction of events: a barrier waits for it.
    last_xid: i64,
}

/// What `authledger_append` answered: the transaction id (0 if nothing was written), per
/// append the stream's version when it was refused, and per append the version its first
/// event landed at when it was written.
type AppendOutcome = (i64, Vec<Option<i64>>, Vec<Option<i64>>);

/// The parameters of one call of `authledger_append`, one entry per append (per event for
/// `records` and `ids`).
struct Group<'a> {
    streams: &'a [&'a str],
    expected: &'a [i64],
    after: &'a [Option<Uuid>],
    counts: &'a [i32],
    records: &'a [Vec<u8>],
    ids: &'a [Uuid],
}

/// How often a group whose transaction met another node's insert of the same stream version
/// is tried again (the second try sees the other's rows and refuses the stale appends).
const CONFLICT_RETRIES: usize = 3;

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            while jobs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            self.commit(jobs).await;
        }
    }

    async fn commit(&mut self, mut jobs: Vec<Job>) {
        let now = (self.clock)();
        let mut streams: Vec<&str> = Vec::new();
        let mut expected: Vec<i64> = Vec::new();
        let mut after: Vec<Option<Uuid>> = Vec::new();
        let mut counts: Vec<i32> = Vec::new();
        let mut records: Vec<Vec<u8>> = Vec::new();
        let mut ids: Vec<Uuid> = Vec::new();
        let mut encoded: Vec<Result<(), StoreError>> = Vec::with_capacity(jobs.len());
        for job in &mut jobs {
            if job.events.is_empty() {
                encoded.push(Ok(()));
                continue;
            }
            let mut bytes = Vec::with_capacity(job.events.len());
            let mut failed = None;
            for e in &mut job.events {
                e.recorded_at = now;
                match super::record::encode(e) {
                    Ok(b) => bytes.push(b),
                    Err(x) => {
                        failed = Some(StoreError::Corrupt(x.to_string()));
                        break;
                    }
                }
            }
            match failed {
                Some(e) => encoded.push(Err(e)),
                None => {
                    streams.push(&job.stream);
                    expected.push(if job.expected == super::ANY_VERSION {
                        -1
                    } else {
                        job.expected as i64
                    });
                    after.push(job.after);
                    counts.push(job.events.len() as i32);
                    records.extend(bytes);
                    ids.extend(job.events.iter().map(|e| e.id));
                    encoded.push(Ok(()));
                }
            }
        }
        let outcome = if streams.is_empty() {
            Ok((0, Vec::new(), Vec::new()))
        } else {
            self.append(Group {
                streams: &streams,
                expected: &expected,
                after: &after,
                counts: &counts,
                records: &records,
                ids: &ids,
            })
            .await
        };
        let (xid, actual, landed) = match outcome {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "a group of appends did not reach PostgreSQL; its appends were refused");
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
                return;
            }
        };
        if xid != 0 {
            self.last_xid = xid;
        }
        let mut owed: Vec<Waiter> = Vec::new();
        let mut conflicts: Vec<(oneshot::Sender<AppendResult>, Option<TailGuard>, StoreError)> =
            Vec::new();
        let (mut written, mut first) = (0usize, 0usize);
        let mut own: Vec<RecordedEvent> = Vec::new();
        for (mut job, enc) in jobs.into_iter().zip(encoded) {
            if let Err(e) = enc {
                let _ = job.reply.send(Err(e));
                continue;
            }
            if job.events.is_empty() {
                owed.push(Waiter {
                    first: 0,
                    count: 0,
                    reply: job.reply,
                    _tail: job.tail,
                    since: std::time::Instant::now(),
                });
                continue;
            }
            let outcome = actual.get(written).copied().flatten();
            let first_version = landed.get(written).copied().flatten();
            written += 1;
            match outcome {
                Some(actual) => conflicts.push((
                    job.reply,
                    job.tail,
                    StoreError::Conflict {
                        stream: job.stream,
                        expected: job.expected,
                        actual: actual as u64,
                    },
                )),
                None => {
                    if let Some(v) = first_version {
                        for (i, e) in job.events.iter_mut().enumerate() {
                            e.version = v as u64 + i as u64;
                        }
                    }
                    own.extend(job.events.iter().cloned());
                    owed.push(Waiter {
                        first,
                        count: job.events.len(),
                        reply: job.reply,
                        _tail: job.tail,
                        since: std::time::Instant::now(),
                    });
                    first += job.events.len();
                }
            }
        }
        let wait_on = if xid != 0 { xid } else { self.last_xid };
        if xid != 0 {
            if let Ok(mut f) = self.followed.lock() {
                if xid > f.applied_xid {
                    f.own.insert(xid, own);
                }
            }
        }
        self.owe(wait_on, owed);
        // Numbering right after the commit, not only in the followers' polls, keeps an
        // append's answer one round trip behind it; the sequencer task does it while this
        // writer sends the next group.
        self.kick.notify_one();
        if conflicts.is_empty() {
            return;
        }
        // Answered once the copy holds the write that won, so that a reload sees it.
        let mut watch = self.head.clone();
        let pool = self.pool.clone();
        let wake = self.wake.clone();
        tokio::spawn(async move {
            let head = match pool.get().await {
                Ok(client) => match sequence(&client).await {
                    Ok(_) => numbered_head(&client).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(unavailable(e)),
            };
            wake.notify_one();
            if let Ok(head) = head {
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|h| *h >= head))
                        .await;
            }
            for (reply, tail, e) in conflicts {
                let _ = reply.send(Err(e));
                drop(tail);
            }
        });
    }

    async fn append(&self, g: Group<'_>) -> Result<AppendOutcome, StoreError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let statement = client
            .prepare_cached(
                "SELECT txid, actual, landed FROM authledger_append($1, $2, $3, $4, $5, $6)",
            )
            .await
            .map_err(db_error)?;
        let mut tries = 0;
        let started = std::time::Instant::now();
        loop {
            match client
                .query_one(
                    &statement,
                    &[
                        &g.streams,
                        &g.expected,
                        &g.after,
                        &g.counts,
                        &g.records,
                        &g.ids,
                    ],
                )
                .await
            {
                Ok(row) => {
                    crate::metrics::group_commit(g.records.len(), started.elapsed());
                    return Ok((row.get(0), row.get(1), row.get(2)));
                }
                Err(e)
                    if tries < CONFLICT_RETRIES
                        && e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                {
                    // Another node inserted the same stream version meanwhile; nothing of
                    // this group was written. The next try sees its rows.
                    tries += 1;
                }
                Err(e) => return Err(db_error(e)),
            }
        }
    }

    /// Registers answers owed once transaction `xid` is in the copy, or answers them at once
    /// when it already is.
    fn owe(&self, xid: i64, owed: Vec<Waiter>) {
        if owed.is_empty() {
            return;
        }
        let Ok(mut f) = self.followed.lock() else {
            for w in owed {
                let _ = w.reply.send(Err(StoreError::Closed));
            }
            return;
        };
        if xid == 0 {
            // This node has written nothing yet: a barrier holds at once.
            drop(f);
            answer(owed, Ok(Vec::new()));
            return;
        }
        if xid > f.applied_xid {
            f.waiters.entry(xid).or_default().extend(owed);
            return;
        }
        // Another node's sequencer numbered it, and the copy took it in, before the writer
        // heard its own commit's answer.
        let found = f.recent.iter().find(|(x, _, _)| *x == xid).copied();
        drop(f);
        let events = match found {
            Some((_, position, count)) => self.mirror_events(position, count),
            None => Err(StoreError::failed(format!(
                "transaction {xid} was copied too long ago to answer its append"
            ))),
        };
        answer(owed, events);
    }

    fn mirror_events(
        &self,
        position: u64,
        count: usize,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        Ok(self
            .mirror
            .read_all(position, count)?
            .into_iter()
            .map(Arc::new)
            .collect())
    }
}

/// Answers each waiter with its slice of a transaction's events.
fn answer(owed: Vec<Waiter>, events: Result<Vec<Arc<RecordedEvent>>, StoreError>) {
    for w in owed {
        let reply = match &events {
            Ok(all) => all
                .get(w.first..w.first + w.count)
                .map(|s| {
                    // Answered once per append this node made: counted here, not in the copy.
                    crate::metrics::appended(s);
                    s.to_vec()
                })
                .ok_or_else(|| StoreError::failed("an append's events are missing from the copy")),
            Err(e) => Err(e.clone()),
        };
        let _ = w.reply.send(reply);
    }
}

struct Follower {
    /// Runs on every copied batch that holds a `HistoryCompacted` (see [`PgLog::on_copied`]).
    on_copied: Arc<std::sync::OnceLock<CopiedHook>>,
    contact: Arc<Mutex<Contact>>,
    pool: deadpool_postgres::Pool,
    mirror: Arc<Log>,
    followed: Arc<Mutex<Followed>>,
    head: watch::Sender<u64>,
    halted: Arc<std::sync::OnceLock<String>>,
}

impl Follower {
    async fn run(self, wake: Arc<Notify>, mut stop: watch::Receiver<bool>, url: String) {
        let listener = tokio::spawn(listen(url, wake.clone(), stop.clone()));
        loop {
            let polled = tokio::select! {
                _ = wake.notified() => false,
                _ = tokio::time::sleep(POLL_EVERY) => true,
                _ = stop.changed() => break,
            };
            if polled {
                self.give_up_on_stale_waiters();
            }
            if let Err(e) = self.follow(polled).await {
                match e {
                    StoreError::Corrupt(reason) => {
                        tracing::error!(%reason, "the local copy of the shared log stopped");
                        let _ = self.halted.set(reason);
                        break;
                    }
                    e => tracing::warn!(error = %e, "following the shared log failed; retrying"),
                }
            }
        }
        listener.abort();
    }

    /// Steps the copy over the compacted events met so far, one run per stretch of
    /// consecutive positions.
    async fn skip_gone(
        &self,
        gone: &mut Vec<(u64, String, u64, String, u64)>,
    ) -> Result<(), StoreError> {
        let mut rest = std::mem::take(gone).into_iter().peekable();
        while let Some((first, stream, version, hash, by)) = rest.next() {
            let mut last = (first, hash);
            let mut versions = vec![(stream, version)];
            while let Some((p, _, _, _, b)) = rest.peek() {
                if *p != last.0 + 1 || *b != by {
                    break;
                }
                let Some((p, stream, version, hash, _)) = rest.next() else {
                    break;
                };
                last = (p, hash);
                versions.push((stream, version));
            }
            let run = super::verify::CompactedRun {
                first,
                last: last.0,
                prev_hash: self.mirror.head()?.hash,
                last_hash: last.1,
                compacted_by: by,
            };
            self.mirror.skip_compacted(run, versions).await?;
        }
        Ok(())
    }

    /// Answers 503 to appends committed longer than [`APPEND_WAIT`] ago that this node could
    /// not copy yet (the database went away between the commit and the copy): the events are
    /// durable, but the caller is not kept waiting for the database to come back.
    fn give_up_on_stale_waiters(&self) {
        let stale: Vec<Waiter> = {
            let Ok(mut f) = self.followed.lock() else {
                return;
            };
            let mut stale = Vec::new();
            f.waiters.retain(|_, ws| {
                let (old, young): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(ws)
                    .into_iter()
                    .partition(|w| w.since.elapsed() > APPEND_WAIT);
                stale.extend(old);
                *ws = young;
                !ws.is_empty()
            });
            stale
        };
        if !stale.is_empty() {
            tracing::warn!(
                appends = stale.len(),
                "appends committed to PostgreSQL were not copied to this node in time; answered as unavailable"
            );
            answer(
                stale,
                Err(unavailable(
                    "the append was committed but this node could not read it back in time",
                )),
            );
        }
    }

    async fn follow(&self, polled: bool) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(unavailable)?;
        if polled {
            sequence(&client).await?;
            let head = numbered_head(&client).await?;
            if let Ok(mut c) = self.contact.lock() {
                c.numbered_head = c.numbered_head.max(head);
            }
        }
        while self.copy_batch(&mut client).await? {}
        if let Ok(mut c) = self.contact.lock() {
            c.at = Some(std::time::Instant::now());
            c.numbered_head = c.numbered_head.max(self.mirror.head_position());
        }
        Ok(())
    }

    /// Copies the next numbered transactions into the local copy; answers whether there were any.
    /// This node's own transactions come from memory; only the others' events are read.
    async fn copy_batch(&self, client: &mut deadpool_postgres::Object) -> Result<bool, StoreError> {
        let head = self.mirror.head_position();
        let numbered = client
            .prepare_cached(
                "SELECT position, xid::text::bigint, count FROM authledger_order \
                 WHERE position > $1 ORDER BY position LIMIT $2",
            )
            .await
            .map_err(db_error)?;
        let order = client
            .query(&numbered, &[&(head as i64), &FOLLOW_BATCH])
            .await
            .map_err(db_error)?;
        if order.is_empty() {
            return Ok(false);
        }
        let groups: Vec<(i64, u64, usize)> = order
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(1),
                    r.get::<_, i64>(0) as u64,
                    r.get::<_, i32>(2) as usize,
                )
            })
            .collect();
        let mut mine: std::collections::HashMap<i64, Vec<RecordedEvent>> = {
            let mut f = self.followed.lock().map_err(|_| StoreError::Closed)?;
            groups
                .iter()
                .filter_map(|(xid, _, n)| {
                    f.own
                        .remove(xid)
                        .filter(|events| events.len() == *n)
                        .map(|events| (*xid, events))
                })
                .collect()
        };
        let theirs: Vec<String> = groups
            .iter()
            .filter(|(xid, _, _)| !mine.contains_key(xid))
            .map(|(xid, _, _)| xid.to_string())
            .collect();
        let mut read: std::collections::HashMap<i64, Vec<tokio_postgres::Row>> = Default::default();
        if !theirs.is_empty() {
            let events = client
                .prepare_cached(
                    "SELECT xid::text::bigint, idx, record, version, stream, copy_hash, \
                     compacted_by FROM authledger_events \
                     WHERE xid = ANY($1::text[]::xid8[]) ORDER BY xid, idx",
                )
                .await
                .map_err(db_error)?;
            for row in client.query(&events, &[&theirs]).await.map_err(db_error)? {
                read.entry(row.get::<_, i64>(0)).or_default().push(row);
            }
        }
        let mut events = Vec::new();
        let mut stored = Vec::new();
        let mut copied: Vec<Arc<RecordedEvent>> = Vec::new();
        // Compacted events met in a row: (position, stream, version, copy hash, compacted by).
        let mut gone: Vec<(u64, String, u64, String, u64)> = Vec::new();
        for (xid, first, count) in &groups {
            if let Some(own) = mine.remove(xid) {
                self.skip_gone(&mut gone).await?;
                for (idx, mut e) in own.into_iter().enumerate() {
                    e.position = first + idx as u64;
                    events.push(e);
                    stored.push(None);
                }
                continue;
            }
            let rows = read.remove(xid).unwrap_or_default();
            if rows.len() != *count {
                return Err(StoreError::Corrupt(format!(
                    "transaction {xid} is numbered with {count} events but {} are stored",
                    rows.len()
                )));
            }
            for row in &rows {
                let idx: i32 = row.get(1);
                let position = first + idx as u64;
                let version = row.get::<_, i64>(3) as u64;
                let Some(record) = row.get::<_, Option<&[u8]>>(2) else {
                    // Compacted before this copy reached it: stepped over, as the copies
                    // that held it removed it.
                    let copy_hash: Option<Vec<u8>> = row.get(5);
                    let by: Option<i64> = row.get(6);
                    let (Some(copy_hash), Some(by)) = (copy_hash, by) else {
                        return Err(StoreError::Corrupt(format!(
                            "event {position} has no stored bytes and no compaction record"
                        )));
                    };
                    let copied_so_far = self
                        .mirror
                        .replicate(std::mem::take(&mut events), std::mem::take(&mut stored));
                    copied.extend(copied_so_far.await?);
                    gone.push((
                        position,
                        row.get(4),
                        version,
                        hex::encode(copy_hash),
                        by as u64,
                    ));
                    continue;
                };
                self.skip_gone(&mut gone).await?;
                let mut e = super::record::decode(record).map_err(|x| {
                    StoreError::Corrupt(format!("an event of transaction {xid}: {x}"))
                })?;
                // An append at any version recorded 0; the row holds the version it landed at.
                e.version = version;
                // Imported from an embedded log: its bytes there, kept if they fit this place.
                stored.push((e.position == position).then(|| record.to_vec()));
                e.position = position;
                events.push(e);
            }
        }
        self.skip_gone(&mut gone).await?;
        copied.extend(self.mirror.replicate(events, stored).await?);
        if let Some(hook) = self.on_copied.get() {
            if copied
                .iter()
                .any(|e| matches!(e.event, domain::Event::HistoryCompacted(_)))
            {
                // The runs a copied HistoryCompacted lists leave this copy and its projections
                // before anyone is answered (the compacting node's own command included).
                let hook = hook.clone();
                let events = copied.clone();
                tokio::task::spawn_blocking(move || hook(&events))
                    .await
                    .map_err(|e| StoreError::io("applying copied events", e))??;
            }
        }
        let new_head = self.mirror.head_position().max(head);
        let mut answered: Vec<(Vec<Waiter>, Vec<Arc<RecordedEvent>>)> = Vec::new();
        {
            let mut f = self.followed.lock().map_err(|_| StoreError::Closed)?;
            // The copied events are in position order, as the groups are (compacted events
            // stepped over leave gaps): one pass takes each group's.
            let mut at = 0usize;
            for (xid, position, count) in &groups {
                let end = position + *count as u64;
                while at < copied.len() && copied[at].position < *position {
                    at += 1;
                }
                let from = at;
                while at < copied.len() && copied[at].position < end {
                    at += 1;
                }
                let slice: Vec<Arc<RecordedEvent>> = copied[from..at].to_vec();
                // Waiters of this transaction, and barriers registered before it.
                let ready: Vec<i64> = f.waiters.range(..=*xid).map(|(x, _)| *x).collect();
                for x in ready {
                    if let Some(ws) = f.waiters.remove(&x) {
                        if x == *xid {
                            answered.push((ws, slice.clone()));
                        } else {
                            answered.push((ws, Vec::new()));
                        }
                    }
                }
                f.applied_xid = f.applied_xid.max(*xid);
                f.recent.push_back((*xid, *position, *count));
                if f.recent.len() > RECENT_GROUPS {
                    f.recent.pop_front();
                }
            }
        }
        if let Ok(mut f) = self.followed.lock() {
            // A group another node numbered, and this follower read back, before this node's
            // writer kept it in memory: nothing will take it now.
            let applied = f.applied_xid;
            f.own.retain(|x, _| *x > applied);
        }
        self.head.send_replace(new_head);
        for (ws, events) in answered {
            answer(ws, Ok(events));
        }
        Ok(true)
    }
}

/// Listens for the sequencer's notifications and wakes the follower; reconnects on its own.
async fn listen(url: String, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(m) = futures_util::StreamExt::next(&mut messages).await {
                        match m {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                                let _ = tx.send(());
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .await
                    .is_ok()
                {
                    loop {
                        tokio::select! {
                            got = rx.recv() => match got {
                                Some(()) => wake.notify_one(),
                                None => break,
                            },
                            _ = stop.changed() => { driver.abort(); return; }
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => {
                tracing::debug!(error = %e, "the notification connection failed; polling meanwhile")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A runtime and a migrated pool for one command (an import, a walk of the database).
fn one_off(
    settings: &PgSettings,
) -> Result<(tokio::runtime::Runtime, deadpool_postgres::Pool), StoreError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| StoreError::io("starting the database runtime", e))?;
    let settings = settings.clone();
    let pool = wait_on(runtime.handle(), async move {
        prepare(&settings).await.map(|(p, _)| p)
    })?;
    Ok((runtime, pool))
}

/// What an import of an embedded log into PostgreSQL did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Imported {
    /// Events copied.
    pub events: u64,
    /// The last position, the same in both logs.
    pub head_position: u64,
    /// The hash of the last event in the embedded log, which every node's copy reaches too.
    pub head_hash: String,
}

/// Events per transaction of an import: each is one `COPY`, numbered as it commits.
const IMPORT_BATCH: usize = 50_000;

/// Copies an embedded log, whose chain the caller has verified, into an empty shared log:
/// `COPY` in batches of [`IMPORT_BATCH`] events, one transaction each, numbered in order as
/// they commit. The events keep their stored bytes, so every node's copy has the same hash
/// chain as `log`. `progress` hears the events copied so far.
pub fn import(
    settings: &PgSettings,
    log: &Log,
    mut progress: impl FnMut(u64),
) -> Result<Imported, StoreError> {
    use sha2::{Digest, Sha256};
    if !log.compacted_runs()?.is_empty() {
        return Err(StoreError::failed(
            "this log has compacted runs; the shared log numbers its events without gaps, so \
             a compacted log cannot be moved into PostgreSQL yet",
        ));
    }
    let (runtime, pool) = one_off(settings)?;
    let handle = runtime.handle().clone();
    let empty = {
        let pool = pool.clone();
        wait_on(&handle, async move {
            let client = pool.get().await.map_err(unavailable)?;
            let row = client
                .query_one("SELECT NOT EXISTS (SELECT 1 FROM authledger_events)", &[])
                .await
                .map_err(db_error)?;
            Ok(row.get::<_, bool>(0))
        })?
    };
    if !empty {
        return Err(StoreError::failed(
            "the database already holds a shared log; import into an empty database",
        ));
    }
    let mut chains: std::collections::HashMap<String, [u8; 32]> = Default::default();
    let mut expected = 1u64;
    let mut batch: Vec<ImportRow> = Vec::with_capacity(IMPORT_BATCH);
    let mut head_hash = GENESIS_HASH.to_owned();
    let mut raw = log.raw_events(1).peekable();
    while raw.peek().is_some() {
        batch.clear();
        for r in raw.by_ref().take(IMPORT_BATCH) {
            let (position, bytes) = r?;
            if position != expected {
                return Err(StoreError::failed(format!(
                    "the log has no event {expected} (the next is {position}); only a log \
                     without gaps can be imported"
                )));
            }
            expected += 1;
            let e = super::record::decode(&bytes)?;
            let hash: [u8; 32] = Sha256::digest(&bytes).into();
            let prev = chains.get(&e.stream).copied().unwrap_or([0u8; 32]);
            let mut h = Sha256::new();
            h.update(prev);
            h.update(hash);
            let chain: [u8; 32] = h.finalize().into();
            chains.insert(e.stream.clone(), chain);
            head_hash = super::log::chain_hash(&bytes);
            batch.push(ImportRow {
                idx: batch.len() as i32,
                stream: e.stream,
                version: e.version as i64,
                id: e.id,
                record: bytes,
                hash: hash.to_vec(),
                chain: chain.to_vec(),
            });
        }
        let rows = std::mem::take(&mut batch);
        let pool = pool.clone();
        batch = wait_on(&handle, async move {
            copy_batch_in(&pool, &rows).await?;
            Ok(rows)
        })?;
        progress(expected - 1);
    }
    let numbered = wait_on(&handle, async move {
        let client = pool.get().await.map_err(unavailable)?;
        sequence(&client).await?;
        numbered_head(&client).await
    })?;
    runtime.shutdown_background();
    if numbered != expected - 1 {
        return Err(StoreError::failed(format!(
            "the database numbered {numbered} events of the {} imported; another writer was \
             running",
            expected - 1
        )));
    }
    Ok(Imported {
        events: expected - 1,
        head_position: expected - 1,
        head_hash,
    })
}

/// One event of an import, as its row.
struct ImportRow {
    idx: i32,
    stream: String,
    version: i64,
    id: Uuid,
    record: Vec<u8>,
    hash: Vec<u8>,
    chain: Vec<u8>,
}

/// One transaction: a binary `COPY` of the rows (their xid is the transaction's own).
async fn copy_batch_in(
    pool: &deadpool_postgres::Pool,
    rows: &[ImportRow],
) -> Result<(), StoreError> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let mut client = pool.get().await.map_err(unavailable)?;
    let tx = client.transaction().await.map_err(db_error)?;
    let sink = tx
        .copy_in(
            "COPY authledger_events (idx, stream, version, id, record, hash, chain) \
             FROM STDIN BINARY",
        )
        .await
        .map_err(db_error)?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT4,
            Type::TEXT,
            Type::INT8,
            Type::UUID,
            Type::BYTEA,
            Type::BYTEA,
            Type::BYTEA,
        ],
    );
    let mut writer = std::pin::pin!(writer);
    for r in rows {
        writer
            .as_mut()
            .write(&[
                &r.idx, &r.stream, &r.version, &r.id, &r.record, &r.hash, &r.chain,
            ])
            .await
            .map_err(db_error)?;
    }
    writer.finish().await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    // Numbered now, while nothing else writes: the batches keep their order.
    let client = pool.get().await.map_err(unavailable)?;
    sequence(&client).await?;
    Ok(())
}

/// Walks the shared log in PostgreSQL itself, in its global order: every event's hash over
/// its stored bytes, every stream's chain and version sequence, the order table's chain over
/// all of them, and that no event is left out of the order. A node's copy is verified like an
/// embedded log; this catches a row changed in the database after the nodes copied it.
/// `progress` hears the events walked so far.
pub fn verify_shared(
    settings: &PgSettings,
    mut progress: impl FnMut(u64),
) -> Result<super::verify::Verification, StoreError> {
    use super::verify::Verification;
    use sha2::{Digest, Sha256};
    let (runtime, pool) = one_off(settings)?;
    let handle = runtime.handle().clone();
    let mut streams: std::collections::HashMap<String, (u64, [u8; 32])> = Default::default();
    let mut tie = [0u8; 32];
    let mut position = 0u64;
    let mut walked = 0u64;
    let broken = |position: u64, reason: String, verified: u64| Verification::Broken {
        position,
        reason,
        verified,
    };
    loop {
        let pool = pool.clone();
        let rows = wait_on(&handle, async move {
            let client = pool.get().await.map_err(unavailable)?;
            client
                .query(
                    "WITH g AS (SELECT position, xid, count, chain FROM authledger_order \
                     WHERE position > $1 ORDER BY position LIMIT 256) \
                     SELECT g.position, g.count, g.chain, e.idx, e.stream, e.version, e.record, \
                     e.hash, e.chain FROM g CROSS JOIN LATERAL (SELECT * FROM authledger_events \
                     x WHERE x.xid = g.xid ORDER BY x.idx) e ORDER BY g.position, e.idx",
                    &[&(position as i64)],
                )
                .await
                .map_err(db_error)
        })?;
        if rows.is_empty() {
            break;
        }
        let mut i = 0;
        while i < rows.len() {
            let first = rows[i].get::<_, i64>(0) as u64;
            let count = rows[i].get::<_, i32>(1) as usize;
            let stated: Vec<u8> = rows[i].get(2);
            if first != position + 1 {
                return Ok(broken(
                    position + 1,
                    format!("the order skips from {position} to {first}"),
                    walked,
                ));
            }
            let group: Vec<&tokio_postgres::Row> = rows[i..]
                .iter()
                .take_while(|r| r.get::<_, i64>(0) as u64 == first)
                .collect();
            if group.len() != count {
                return Ok(broken(
                    first,
                    format!(
                        "the transaction numbered at {first} holds {} events, not {count}",
                        group.len()
                    ),
                    walked,
                ));
            }
            let mut h = Sha256::new();
            h.update(tie);
            for (k, row) in group.iter().enumerate() {
                let at = first + k as u64;
                let stream: String = row.get(4);
                let version = row.get::<_, i64>(5) as u64;
                let record: Option<&[u8]> = row.get(6);
                let hash: &[u8] = row.get(7);
                let chain: &[u8] = row.get(8);
                let own: [u8; 32] = match record {
                    Some(bytes) => Sha256::digest(bytes).into(),
                    // Compacted: its bytes are gone, its hash stays in the chains.
                    None => hash.try_into().map_err(|_| {
                        StoreError::Corrupt(format!(
                            "event {at} has a hash of {} bytes",
                            hash.len()
                        ))
                    })?,
                };
                if own.as_slice() != hash {
                    return Ok(broken(
                        at,
                        "the stored bytes do not match their hash (the row was changed)".into(),
                        walked,
                    ));
                }
                let (last, prev) = streams.get(&stream).copied().unwrap_or((0, [0u8; 32]));
                if version != last + 1 {
                    return Ok(broken(
                        at,
                        format!("{stream} goes from version {last} to {version}"),
                        walked,
                    ));
                }
                let mut c = Sha256::new();
                c.update(prev);
                c.update(own);
                let linked: [u8; 32] = c.finalize().into();
                if linked.as_slice() != chain {
                    return Ok(broken(
                        at,
                        format!("the chain of {stream} breaks at version {version}"),
                        walked,
                    ));
                }
                streams.insert(stream, (version, linked));
                h.update(own);
                walked += 1;
            }
            tie = h.finalize().into();
            if tie.as_slice() != stated.as_slice() {
                return Ok(broken(
                    first,
                    "the order's chain does not match the events it numbers".into(),
                    walked,
                ));
            }
            position = first + count as u64 - 1;
            i += group.len();
        }
        progress(walked);
    }
    let unnumbered = wait_on(&handle, async move {
        let client = pool.get().await.map_err(unavailable)?;
        sequence(&client).await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM authledger_events e WHERE NOT EXISTS \
                 (SELECT 1 FROM authledger_order o WHERE o.xid = e.xid) \
                 AND e.xid < (SELECT horizon FROM authledger_sequencer WHERE id = 1)",
                &[],
            )
            .await
            .map_err(db_error)?;
        Ok(row.get::<_, i64>(0))
    })?;
    runtime.shutdown_background();
    if unnumbered > 0 {
        return Ok(broken(
            position + 1,
            format!("{unnumbered} stored events are in no numbered transaction (rows were added)"),
            walked,
        ));
    }
    Ok(Verification::Verified {
        events: walked,
        head_position: position,
        head_hash: hex::encode(tie),
        checkpoints: Vec::new(),
    })
}
