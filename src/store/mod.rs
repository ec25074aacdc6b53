//! The storage boundary: the append-only log every decision is written to, its contract, and
//! the backends behind it. Nothing outside this module names a storage engine.
//!
//! - [`EventStore`]: what actors and projections need of any backend (append with an expected
//!   version, durable on return; stream and global reads; the head; subscriptions; snapshots).
//! - [`Log`]: the single-writer log (group commit, hash chain, stream index, verification,
//!   compaction) over a [`Medium`]: [`SegmentFiles`], the embedded log of our own format
//!   (`docs/log-format.md`), or [`MemoryMedium`] for tests.
//! - [`checkpoints::FileCheckpoints`]: where the projections' checkpoints are kept.
//! - [`lock::DirLock`]: one process owns a data directory.

pub mod checkpoints;
pub mod lock;
pub mod log;
pub mod memory;
pub mod postgres;
pub mod record;
pub mod segments;
pub mod sled_import;
pub mod verify;

use domain::{Event, Metadata, RecordedEvent};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};

pub use log::{Log, Medium};
pub use memory::MemoryMedium;
pub use segments::SegmentFiles;

/// A store failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the version the appender expected; nothing was written.
    #[error("stream {stream} is at version {actual}, not the expected {expected}")]
    Conflict {
        /// The stream.
        stream: String,
        /// The version the appender expected.
        expected: u64,
        /// The version the stream is at.
        actual: u64,
    },
    /// The storage failed: what it was doing, and the error underneath when there is one.
    // The cause is in the message too: most callers print one line, not the chain.
    #[error("storage: {context}{}", source.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
    Io {
        /// What failed, in words an operator can act on.
        context: String,
        /// The cause (an I/O error, a database error), for the log's source chain.
        #[source]
        source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// Nothing was written and the store cannot take writes now (a full disk, a failed
    /// write); the request may be retried later.
    #[error("the store cannot take writes now: {0}")]
    Unavailable(String),
    /// A stored record fails its own checks: a changed byte at a known place.
    #[error(transparent)]
    Corrupted(Box<Corruption>),
    /// Stored bytes did not decode.
    #[error("stored event is corrupt: {0}")]
    Corrupt(String),
    /// The store is shut down.
    #[error("the event store is closed")]
    Closed,
    /// Another process holds the store.
    #[error("the data directory is in use by another process (is the server running?)")]
    Locked,
}

impl StoreError {
    /// A storage failure with its cause.
    pub fn io(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Io {
            context: context.into(),
            source: Some(std::sync::Arc::new(source)),
        }
    }

    /// A storage failure found by our own checks (nothing underneath failed).
    pub fn failed(context: impl Into<String>) -> Self {
        Self::Io {
            context: context.into(),
            source: None,
        }
    }
}

/// Where a stored record fails its checks, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the log is damaged{}: {reason} (file {file}, offset {offset}); nothing was cut off or \
     repaired. Restore the data directory from a backup, or start with --allow-unverified to \
     serve read-only what precedes the damage",
    position.map(|p| format!(" at event {p}")).unwrap_or_default()
)]
pub struct Corruption {
    /// The event the record claims to be, when its frame is readable.
    pub position: Option<u64>,
    /// The file that holds it.
    pub file: String,
    /// Byte offset of the record in that file.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// The expected version of an append that may land at whatever version its stream is at:
/// the store numbers its events after the stream's last (see
/// [`domain::token::TokenCommand::independent_of_stream`]).
pub const ANY_VERSION: u64 = u64::MAX;

/// An event to append, with its request context; the store adds the envelope.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The event.
    pub event: Event,
    /// Who caused it and in which request.
    pub metadata: Metadata,
}

impl NewEvent {
    /// The events of one decision, all under the same request context.
    pub fn all(events: Vec<Event>, metadata: &Metadata) -> Vec<NewEvent> {
        events
            .into_iter()
            .map(|event| NewEvent {
                event,
                metadata: metadata.clone(),
            })
            .collect()
    }
}

/// The outcome of one append: the recorded events, durable.
pub type AppendResult = Result<Vec<Arc<RecordedEvent>>, StoreError>;

/// An append on its way to disk; resolves once the events are durable (or refused).
pub struct PendingAppend(oneshot::Receiver<AppendResult>);

impl PendingAppend {
    pub(crate) fn new(rx: oneshot::Receiver<AppendResult>) -> Self {
        Self(rx)
    }

    /// Waits for the outcome on a thread that is not running an async runtime.
    pub fn wait(self) -> AppendResult {
        self.0.blocking_recv().unwrap_or(Err(StoreError::Closed))
    }
}

impl Future for PendingAppend {
    type Output = AppendResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StoreError::Closed)))
    }
}

/// Delivers recorded events in global order, each once.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Arc<RecordedEvent>>,
    last: u64,
}

impl Subscription {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Arc<RecordedEvent>>, after: u64) -> Self {
        Self { rx, last: after }
    }

    fn accept(&mut self, e: Arc<RecordedEvent>) -> Option<Arc<RecordedEvent>> {
        // The catch-up read and the live feed may overlap by a few events.
        if e.position > self.last {
            self.last = e.position;
            Some(e)
        } else {
            None
        }
    }

    /// The next event; `None` once the store is closed.
    pub async fn next(&mut self) -> Option<Arc<RecordedEvent>> {
        loop {
            let e = self.rx.recv().await?;
            if let Some(e) = self.accept(e) {
                return Some(e);
            }
        }
    }

    /// The next event, waiting at most `timeout`, on a thread without an async runtime.
    pub fn next_blocking(&mut self, timeout: std::time::Duration) -> Option<Arc<RecordedEvent>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.rx.try_recv() {
                Ok(e) => {
                    if let Some(e) = self.accept(e) {
                        return Some(e);
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    if std::time::Instant::now() >= deadline {
                        return None;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
            }
        }
    }
}

/// What every backend offers (design brief §5).
pub trait EventStore: Send + Sync {
    /// Appends events to `stream` if it is at `expected_version` (0: the stream is new;
    /// [`ANY_VERSION`]: wherever it is).
    /// The returned future resolves once the events are durable; a stale version is refused
    /// and nothing is written. An append of no events is a barrier: it resolves once every
    /// append queued before it is durable, and fails if the store failed.
    fn append(&self, stream: &str, expected_version: u64, events: Vec<NewEvent>) -> PendingAppend;
    /// Events of one stream from `from_version` on.
    fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;
    /// Up to `limit` durable events from `from_position` on, in global order.
    fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;
    /// The current version of a stream (0 if it has no events).
    fn stream_version(&self, stream: &str) -> Result<u64, StoreError>;
    /// The position of the last durable event (0 if none).
    fn head_position(&self) -> u64;
    /// Every durable event after `after`, then every new one, in global order.
    fn subscribe(&self, after: u64) -> Result<Subscription, StoreError>;
    /// Saves a snapshot of an aggregate's state at a stream version (a cache, never truth).
    fn save_snapshot(&self, stream: &str, version: u64, state: &[u8]) -> Result<(), StoreError>;
    /// The latest snapshot of a stream: its version and bytes.
    fn load_snapshot(&self, stream: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError>;
}
