//! The audit trail's indexes: by client, by subject, by event type and by time.
//!
//! The events themselves stay in the log. Index rows are postings: the key names the index
//! (client, subject, type, request id or correlation id) and the block (position / 256), and the
//! row holds which of the block's 256 positions the index has: fewer than 32 as one byte each
//! (the offset in the block, ascending), 32 or more as a 256-bit bitmap of 32 bytes, so a row
//! never exceeds 32 bytes. An apply writes one row per index and block rather than one per
//! event. Blocks depend only on positions, so any batching of the same events builds the same
//! rows. The time index keeps, for each distinct recorded time (ms), the first position.

use crate::storage::{CheckpointStore, CheckpointedTree, ProjectionError, Write};
use domain::RecordedEvent;
use std::collections::BTreeMap;
use std::iter::Peekable;

/// Separates a name from the block in index keys; it never occurs in UTF-8 text.
const SEP: u8 = 0xFF;

/// Position and recorded time (ms) of the last applied event.
const LAST_TIME: &[u8] = b"\x00last-time";

/// Reads events from the log by position, for the query to resolve index rows.
pub trait EventLookup {
    /// The event at `position`, if any.
    fn event_at(&self, position: u64) -> Result<Option<RecordedEvent>, ProjectionError>;
    /// Up to `limit` events from `position` on, in global order.
    fn events_from(
        &self,
        position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, ProjectionError>;
}

/// What an event must be to be shown: every filter given must hold. Queries and the live
/// stream use the same filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only events of this client.
    pub client: Option<String>,
    /// Only events about this subject.
    pub subject: Option<String>,
    /// Only events of these types (any of them).
    pub types: Vec<String>,
    /// Only events recorded for this request id.
    pub request_id: Option<String>,
    /// Only events of this correlation id.
    pub correlation_id: Option<String>,
}

impl AuditFilter {
    /// Whether `e` passes every filter.
    pub fn matches(&self, e: &RecordedEvent) -> bool {
        self.client
            .as_deref()
            .is_none_or(|c| e.event.client_id().map(|id| id.as_str()) == Some(c))
            && self
                .subject
                .as_deref()
                .is_none_or(|s| e.event.subject().as_deref() == Some(s))
            && (self.types.is_empty() || self.types.iter().any(|t| t == e.event.type_name()))
            && self
                .request_id
                .as_deref()
                .is_none_or(|r| e.metadata.request_id.as_deref() == Some(r))
            && self
                .correlation_id
                .as_deref()
                .is_none_or(|c| e.metadata.correlation_id.as_deref() == Some(c))
    }
}

/// Which way a page runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first; the cursor is the last position shown, the next page comes after it.
    #[default]
    Ascending,
    /// Newest first; the cursor is the last (oldest) position shown, the next page comes
    /// before it.
    Descending,
}

/// An audit query; every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Which events.
    pub filter: AuditFilter,
    /// Recorded at or after.
    pub since: Option<time::OffsetDateTime>,
    /// Recorded at or before.
    pub until: Option<time::OffsetDateTime>,
    /// Only events at or before this position (time travel: the log as it was then).
    pub upto: Option<u64>,
    /// The cursor of the previous page: the next page starts just past it.
    pub cursor: Option<u64>,
    /// Oldest or newest first.
    pub order: Order,
    /// At most this many.
    pub limit: usize,
}

/// One page of results.
#[derive(Debug, Clone, Default)]
pub struct AuditPage {
    /// Matching events in global order.
    pub events: Vec<RecordedEvent>,
    /// The cursor for the next page, when there may be more.
    pub next_cursor: Option<u64>,
}

/// Positions per postings block.
pub const BLOCK: u64 = 256;

/// The projection's name: its checkpoint file is `audit.ckpt`.
pub const NAME: &str = "audit";

/// Positions per row of the request and correlation id indexes, whose ids are hashed into
/// [`ID_BUCKETS`] lists: nearly every request has an id of its own, so a row per id would be a
/// row per event. A list of a bucket holds about `WIDE / ID_BUCKETS` = 8 positions per row,
/// and a query reads the events of its bucket and keeps those with the id.
pub const WIDE: u64 = 65_536;

/// Lists the request and correlation ids are hashed into.
pub const ID_BUCKETS: u16 = 8_192;

/// Whether rows of this index are wide (positions of [`WIDE`] blocks, ids hashed).
fn is_wide(prefix: u8) -> bool {
    matches!(prefix, b'q' | b'o')
}

/// The bucket of a request or correlation id: the first bits of its SHA-256, so that it is the
/// same in every build and on every machine (the rows are saved).
fn id_bucket(id: &str) -> [u8; 2] {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(id.as_bytes());
    (u16::from_be_bytes([d[0], d[1]]) % ID_BUCKETS).to_be_bytes()
}

/// The row key of `name` in index `prefix` for the row holding `position`.
fn row_key(prefix: u8, name: &str, position: u64) -> Vec<u8> {
    if is_wide(prefix) {
        key(prefix, &id_bucket(name), position / WIDE)
    } else {
        key(prefix, name.as_bytes(), position / BLOCK)
    }
}

fn key(prefix: u8, name: &[u8], block: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 10);
    k.push(prefix);
    k.extend_from_slice(name);
    k.push(SEP);
    k.extend_from_slice(&block.to_be_bytes());
    k
}

fn millis(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn time_key(ms: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'm');
    // Offset so that negative times still sort before positive ones.
    k.extend_from_slice(&((ms as u64) ^ (1 << 63)).to_be_bytes());
    k
}

/// Postings rows to extend (row key → positions to append) and time rows (key, first position).
pub type Postings = (BTreeMap<Vec<u8>, Vec<u64>>, Vec<(Vec<u8>, u64)>);

/// The pure part: the postings each index gains from `events` (in position order), and the
/// time rows of recorded times not seen before (`previous_ms`: the time of the event just
/// before the first one, if known).
pub fn postings(events: &[&RecordedEvent], previous_ms: Option<i64>) -> Postings {
    let mut rows: BTreeMap<Vec<u8>, Vec<u64>> = BTreeMap::new();
    let mut times = Vec::new();
    let mut last_ms = previous_ms;
    for e in events {
        let p = e.position;
        if let Some(client) = e.event.client_id() {
            rows.entry(row_key(b'c', client.as_str(), p))
                .or_default()
                .push(p);
        }
        if let Some(subject) = e.event.subject() {
            rows.entry(row_key(b's', &subject, p)).or_default().push(p);
        }
        rows.entry(row_key(b't', e.event.type_name(), p))
            .or_default()
            .push(p);
        if let Some(r) = &e.metadata.request_id {
            rows.entry(row_key(b'q', r, p)).or_default().push(p);
        }
        if let Some(c) = &e.metadata.correlation_id {
            rows.entry(row_key(b'o', c, p)).or_default().push(p);
        }
        let ms = millis(e.recorded_at);
        if last_ms != Some(ms) {
            times.push((time_key(ms), p));
            last_ms = Some(ms);
        }
    }
    (rows, times)
}

/// The positions of one block (a set of offsets 0..=255).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BlockSet([u64; 4]);

/// Rows with fewer offsets than this list them; rows with more are bitmaps.
const LISTED: usize = 32;

impl BlockSet {
    fn decode(v: &[u8]) -> Result<Self, ProjectionError> {
        let mut set = Self::default();
        if v.len() == LISTED {
            for (i, word) in set.0.iter_mut().enumerate() {
                let mut a = [0u8; 8];
                a.copy_from_slice(&v[i * 8..i * 8 + 8]);
                *word = u64::from_le_bytes(a);
            }
        } else if v.len() < LISTED {
            v.iter().for_each(|&o| set.insert(o));
        } else {
            return Err(ProjectionError::Corrupt(format!(
                "an audit postings row of {} bytes",
                v.len()
            )));
        }
        Ok(set)
    }

    fn insert(&mut self, offset: u8) {
        self.0[usize::from(offset / 64)] |= 1 << (offset % 64);
    }

    fn remove(&mut self, offset: u8) {
        self.0[usize::from(offset / 64)] &= !(1 << (offset % 64));
    }

    fn offsets(&self) -> impl DoubleEndedIterator<Item = u8> + '_ {
        (0..=255u8).filter(|o| self.0[usize::from(o / 64)] & (1 << (o % 64)) != 0)
    }

    fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    fn encode(&self) -> Vec<u8> {
        if self.len() < LISTED {
            self.offsets().collect()
        } else {
            self.0.iter().flat_map(|w| w.to_le_bytes()).collect()
        }
    }
}

/// The positions of one row of a wide index: offsets 0..WIDE, ascending, each a u16 (LE).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct WideSet(Vec<u16>);

impl WideSet {
    fn decode(v: &[u8]) -> Result<Self, ProjectionError> {
        if !v.len().is_multiple_of(2) {
            return Err(ProjectionError::Corrupt(format!(
                "an audit id postings row of {} bytes",
                v.len()
            )));
        }
        let offsets: Vec<u16> = v
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        if !offsets.windows(2).all(|w| w[0] < w[1]) {
            return Err(ProjectionError::Corrupt(
                "an audit id postings row out of order".into(),
            ));
        }
        Ok(Self(offsets))
    }

    fn insert(&mut self, offset: u16) {
        if let Err(at) = self.0.binary_search(&offset) {
            self.0.insert(at, offset);
        }
    }

    fn remove(&mut self, offset: u16) {
        if let Ok(at) = self.0.binary_search(&offset) {
            self.0.remove(at);
        }
    }

    fn encode(&self) -> Vec<u8> {
        self.0.iter().flat_map(|o| o.to_le_bytes()).collect()
    }
}

/// A postings row of either kind, by its key's index.
enum RowSet {
    Block(BlockSet),
    Wide(WideSet),
}

impl RowSet {
    fn empty(key: &[u8]) -> Self {
        if key.first().is_some_and(|&p| is_wide(p)) {
            RowSet::Wide(WideSet::default())
        } else {
            RowSet::Block(BlockSet::default())
        }
    }

    fn decode(key: &[u8], v: &[u8]) -> Result<Self, ProjectionError> {
        Ok(match Self::empty(key) {
            RowSet::Wide(_) => RowSet::Wide(WideSet::decode(v)?),
            RowSet::Block(_) => RowSet::Block(BlockSet::decode(v)?),
        })
    }

    fn insert(&mut self, position: u64) {
        match self {
            RowSet::Block(b) => b.insert((position % BLOCK) as u8),
            RowSet::Wide(w) => w.insert((position % WIDE) as u16),
        }
    }

    fn remove(&mut self, position: u64) {
        match self {
            RowSet::Block(b) => b.remove((position % BLOCK) as u8),
            RowSet::Wide(w) => w.remove((position % WIDE) as u16),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            RowSet::Block(b) => b.len() == 0,
            RowSet::Wide(w) => w.0.is_empty(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            RowSet::Block(b) => b.encode(),
            RowSet::Wide(w) => w.encode(),
        }
    }

    /// The positions, ascending, of the row whose key names `block`.
    fn positions(&self, block: u64) -> Vec<u64> {
        match self {
            RowSet::Block(b) => b.offsets().map(|o| block * BLOCK + u64::from(o)).collect(),
            RowSet::Wide(w) => w.0.iter().map(|&o| block * WIDE + u64::from(o)).collect(),
        }
    }
}

/// The block a postings row's key names (its last 8 bytes).
fn block_of(key: &[u8]) -> u64 {
    key.len()
        .checked_sub(8)
        .and_then(|at| key[at..].try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// The positions a postings row holds, ascending.
fn decode_positions(key: &[u8], v: &[u8]) -> Result<Vec<u64>, ProjectionError> {
    Ok(RowSet::decode(key, v)?.positions(block_of(key)))
}

/// The row that names the index's row format; it sorts before every row.
const ROW_FORMAT: &[u8] = b"\x00format";
/// Postings as offsets or bitmaps, request and correlation ids hashed into wide rows (earlier
/// builds kept u64 positions (1), then a row per id (2)).
const ROW_FORMAT_V3: &[u8] = b"3";

/// The audit indexes and their storage (projection `audit`).
pub struct AuditLog {
    pub(crate) store: CheckpointedTree,
    /// Held by each read-modify-write of postings rows (apply, forget, clear): a server applies
    /// on its audit thread while compaction forgets, and two of them interleaved would lose a
    /// row's update.
    writing: std::sync::Mutex<()>,
}

type PositionIter = Box<dyn Iterator<Item = Result<u64, ProjectionError>>>;

impl AuditLog {
    /// Opens the indexes from their last checkpoint in `source`.
    /// A checkpoint of another row format (an earlier build's) is dropped, and the indexes
    /// rebuilt from the log.
    pub fn open(source: &dyn CheckpointStore) -> Result<Self, ProjectionError> {
        let log = Self {
            store: CheckpointedTree::open(source, NAME)?,
            writing: std::sync::Mutex::new(()),
        };
        if log.store.tree.get(ROW_FORMAT)?.as_deref() != Some(ROW_FORMAT_V3) {
            log.clear()?;
        }
        Ok(log)
    }

    /// Last applied global position.
    pub fn checkpoint(&self) -> Result<u64, ProjectionError> {
        self.store.checkpoint()
    }

    fn writing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies events past the checkpoint: one read and one write per postings row touched.
    pub fn apply<E: AsRef<RecordedEvent>>(&self, events: &[E]) -> Result<(), ProjectionError> {
        let _writing = self.writing();
        let pending = self.store.pending(events)?;
        let Some(last) = pending.last().map(|e| e.position) else {
            return Ok(());
        };
        let previous_ms = match pending[0].position.checked_sub(1) {
            Some(p) if p > 0 => self.time_of(p)?,
            _ => None,
        };
        let (rows, times) = postings(&pending, previous_ms);
        let mut writes = Vec::with_capacity(rows.len() + times.len() + 1);
        for (k, positions) in rows {
            let mut set = match self.store.tree.get(&k)? {
                Some(v) => RowSet::decode(&k, &v)?,
                None => RowSet::empty(&k),
            };
            // A set: a position applied again (after an interrupted clear) is held once.
            positions.iter().for_each(|&p| set.insert(p));
            writes.push(Write::Put(k, set.encode()));
        }
        for (k, p) in times {
            writes.push(Write::Put(k, p.to_be_bytes().to_vec()));
        }
        writes.push(Write::Put(LAST_TIME.to_vec(), {
            let ms = millis(pending[pending.len() - 1].recorded_at);
            let mut v = last.to_be_bytes().to_vec();
            v.extend_from_slice(&ms.to_be_bytes());
            v
        }));
        self.store.commit(writes, last)
    }

    /// The recorded time (ms) of the last event applied, if it lies at or before `position`.
    fn time_of(&self, position: u64) -> Result<Option<i64>, ProjectionError> {
        let Some(v) = self.store.tree.get(LAST_TIME)? else {
            return Ok(None);
        };
        // The last applied event precedes `position` in the log even when compaction left a
        // gap between them.
        if v.len() != 16 || crate::storage::u64_from(&v[..8])? > position {
            return Ok(None);
        }
        Ok(Some(crate::storage::u64_from(&v[8..])? as i64))
    }

    /// Takes the positions of `events`, removed from the log by compaction, out of the
    /// postings, and moves a time row that pointed at one of them to the next event still in
    /// `log` recorded in the same millisecond (or drops it), so that the rows are what a
    /// rebuild from the compacted log gives.
    pub fn forget(
        &self,
        events: &[&RecordedEvent],
        log: &dyn EventLookup,
    ) -> Result<(), ProjectionError> {
        let _writing = self.writing();
        let (rows, _) = postings(events, None);
        let mut batch = crate::storage::Batch::default();
        for (k, gone) in rows {
            let Some(v) = self.store.tree.get(&k)? else {
                continue;
            };
            let mut kept = RowSet::decode(&k, &v)?;
            gone.iter().for_each(|&p| kept.remove(p));
            if kept.is_empty() {
                batch.remove(k);
            } else {
                batch.insert(k, kept.encode());
            }
        }
        for e in events {
            let ms = millis(e.recorded_at);
            let tk = time_key(ms);
            let points_here = match self.store.tree.get(&tk)? {
                Some(v) => crate::storage::u64_from(&v)? == e.position,
                None => false,
            };
            if !points_here {
                continue;
            }
            let next = log
                .events_from(e.position + 1, 1)?
                .into_iter()
                .next()
                .filter(|n| millis(n.recorded_at) == ms);
            match next {
                Some(n) => batch.insert(tk, n.position.to_be_bytes().to_vec()),
                None => batch.remove(tk),
            }
        }
        self.store.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Removes every row.
    pub fn clear(&self) -> Result<(), ProjectionError> {
        let _writing = self.writing();
        self.store.clear()?;
        let mut batch = crate::storage::Batch::default();
        batch.insert(ROW_FORMAT, ROW_FORMAT_V3);
        self.store.tree.apply_batch(batch)
    }

    /// Forgets only the checkpoint, as a clear interrupted after its first key would.
    #[cfg(test)]
    pub(crate) fn forget_checkpoint(&self) -> Result<(), ProjectionError> {
        self.store.tree.remove(b"\x00checkpoint")?;
        Ok(())
    }

    /// Every stored row, in key order: used to compare two builds.
    pub fn dump(&self) -> Result<crate::storage::Rows, ProjectionError> {
        self.store.dump()
    }

    fn index_positions(
        &self,
        prefix: u8,
        name: &str,
        from: u64,
        to: u64,
        order: Order,
    ) -> PositionIter {
        let (start, end) = (row_key(prefix, name, from), row_key(prefix, name, to));
        let rows = self
            .store
            .tree
            .range_ordered(start..=end, order == Order::Descending);
        Box::new(
            rows.flat_map(move |r| -> Vec<Result<u64, ProjectionError>> {
                match r {
                    Ok((k, v)) => {
                        let mut ps: Vec<Result<u64, ProjectionError>> =
                            match decode_positions(&k, &v) {
                                Ok(ps) => ps
                                    .into_iter()
                                    .filter(|p| (from..=to).contains(p))
                                    .map(Ok)
                                    .collect(),
                                Err(e) => vec![Err(e)],
                            };
                        if order == Order::Descending {
                            ps.reverse();
                        }
                        ps
                    }
                    Err(e) => vec![Err(e)],
                }
            }),
        )
    }

    /// First position recorded at or after `t`.
    fn first_at_or_after(&self, t: time::OffsetDateTime) -> Result<Option<u64>, ProjectionError> {
        let start = time_key(millis(t));
        let end = time_key(i64::MAX);
        match self.store.tree.range(start..=end).next() {
            Some(r) => Ok(Some(crate::storage::u64_from(&r?.1)?)),
            None => Ok(None),
        }
    }

    /// Last position recorded at or before `t`: just before the first one recorded after it.
    fn last_at_or_before(&self, t: time::OffsetDateTime) -> Result<Option<u64>, ProjectionError> {
        let Some(after) = millis(t).checked_add(1) else {
            return Ok(Some(u64::MAX));
        };
        let start = time_key(after);
        let end = time_key(i64::MAX);
        match self.store.tree.range(start..=end).next() {
            Some(r) => Ok(crate::storage::u64_from(&r?.1)?
                .checked_sub(1)
                .filter(|p| *p > 0)),
            None => Ok(Some(u64::MAX)),
        }
    }

    /// Answers a query from the indexes, resolving positions through `log`. The most
    /// selective index given is walked (client, request id, correlation id, subject, then
    /// types); without one, the log is scanned between the time bounds.
    pub fn query(
        &self,
        q: &AuditQuery,
        log: &dyn EventLookup,
    ) -> Result<AuditPage, ProjectionError> {
        let limit = q.limit.max(1);
        let mut lower = 1u64;
        let mut upper = q.upto.unwrap_or(u64::MAX);
        match (q.order, q.cursor) {
            (Order::Ascending, Some(c)) => lower = c.saturating_add(1),
            (Order::Descending, Some(c)) => upper = upper.min(c.saturating_sub(1)),
            _ => {}
        }
        if let Some(since) = q.since {
            match self.first_at_or_after(since)? {
                Some(p) => lower = lower.max(p),
                None => return Ok(AuditPage::default()),
            }
        }
        if let Some(until) = q.until {
            match self.last_at_or_before(until)? {
                Some(p) => upper = upper.min(p),
                None => return Ok(AuditPage::default()),
            }
        }
        if upper == u64::MAX {
            // Descending scans need a real end; nothing lies past the last applied event.
            upper = self.checkpoint()?;
        }
        if lower > upper {
            return Ok(AuditPage::default());
        }
        let f = &q.filter;
        let matches = |e: &RecordedEvent| {
            f.matches(e)
                // The time index is kept in milliseconds; the bounds are exact.
                && q.since.is_none_or(|t| e.recorded_at >= t)
                && q.until.is_none_or(|t| e.recorded_at <= t)
        };
        let one =
            |prefix: u8, name: &str| self.index_positions(prefix, name, lower, upper, q.order);
        let indexed: Option<PositionIter> = if let Some(c) = &f.client {
            Some(one(b'c', c))
        } else if let Some(r) = &f.request_id {
            Some(one(b'q', r))
        } else if let Some(c) = &f.correlation_id {
            Some(one(b'o', c))
        } else if let Some(s) = &f.subject {
            Some(one(b's', s))
        } else if !f.types.is_empty() {
            let iters = f.types.iter().map(|t| one(b't', t).peekable()).collect();
            Some(Box::new(Merge {
                iters,
                order: q.order,
            }))
        } else {
            None
        };
        let mut events = Vec::new();
        match indexed {
            Some(positions) => {
                for p in positions {
                    let p = p?;
                    // A position whose event was compacted away has nothing to show.
                    if let Some(e) = log.event_at(p)? {
                        if matches(&e) {
                            events.push(e);
                            if events.len() == limit {
                                break;
                            }
                        }
                    }
                }
            }
            None if q.order == Order::Ascending => {
                let mut from = lower;
                'scan: loop {
                    let chunk = log.events_from(from, 1024)?;
                    let Some(last) = chunk.last().map(|e| e.position) else {
                        break;
                    };
                    for e in chunk {
                        if e.position > upper {
                            break 'scan;
                        }
                        if matches(&e) {
                            events.push(e);
                            if events.len() == limit {
                                break 'scan;
                            }
                        }
                    }
                    from = last + 1;
                }
            }
            None => {
                let mut to = upper;
                'back: while to >= lower {
                    let from = to.saturating_sub(1023).max(lower);
                    let chunk = log.events_from(from, (to - from + 1) as usize)?;
                    for e in chunk.into_iter().rev() {
                        if e.position > to {
                            continue;
                        }
                        if matches(&e) {
                            events.push(e);
                            if events.len() == limit {
                                break 'back;
                            }
                        }
                    }
                    if from == lower {
                        break;
                    }
                    to = from - 1;
                }
            }
        }
        let next_cursor = if events.len() == limit {
            events.last().map(|e| e.position)
        } else {
            None
        };
        Ok(AuditPage {
            events,
            next_cursor,
        })
    }
}

/// Merges position iterators that run the same way into one, without repeats.
struct Merge {
    iters: Vec<Peekable<PositionIter>>,
    order: Order,
}

impl Iterator for Merge {
    type Item = Result<u64, ProjectionError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<u64> = None;
        for it in self.iters.iter_mut() {
            match it.peek() {
                Some(Ok(p))
                    if best.is_none_or(|b| match self.order {
                        Order::Ascending => *p < b,
                        Order::Descending => *p > b,
                    }) =>
                {
                    best = Some(*p)
                }
                Some(Err(_)) => return it.next(),
                _ => {}
            }
        }
        let p = best?;
        for it in self.iters.iter_mut() {
            if matches!(it.peek(), Some(Ok(q)) if *q == p) {
                it.next();
            }
        }
        Some(Ok(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postings_row_lists_few_offsets_and_maps_many_in_at_most_32_bytes() {
        let k = key(b'c', b"billing", 3);
        for count in [1usize, 31, 32, 200, 256] {
            let mut set = BlockSet::default();
            (0..count).for_each(|i| set.insert((i * 255 / count.max(2)) as u8));
            let v = set.encode();
            assert!(v.len() <= 32, "{count}: {} bytes", v.len());
            assert_eq!(BlockSet::decode(&v).unwrap(), set);
            let ps = decode_positions(&k, &v).unwrap();
            assert_eq!(ps.len(), set.len());
            assert!(ps.windows(2).all(|w| w[0] < w[1]));
            assert!(ps.iter().all(|p| (3 * BLOCK..4 * BLOCK).contains(p)));
        }
        assert!(BlockSet::decode(&[0; 33]).is_err());
    }

    struct Log(Vec<RecordedEvent>);

    impl EventLookup for Log {
        fn event_at(&self, position: u64) -> Result<Option<RecordedEvent>, ProjectionError> {
            Ok(self.0.iter().find(|e| e.position == position).cloned())
        }
        fn events_from(
            &self,
            position: u64,
            limit: usize,
        ) -> Result<Vec<RecordedEvent>, ProjectionError> {
            Ok(self
                .0
                .iter()
                .filter(|e| e.position >= position)
                .take(limit)
                .cloned()
                .collect())
        }
    }

    /// Event n (from 1) of request `req-n`; every three share the correlation id `op-(n/3)`.
    fn requests(n: u64) -> Vec<RecordedEvent> {
        use domain::event::{ClientDeleted, Event};
        use domain::values::ClientId;
        use domain::{Cause, Metadata};
        (1..=n)
            .map(|p| RecordedEvent {
                position: p,
                stream: "client-c".into(),
                version: p,
                id: uuid::Uuid::from_u128(p.into()),
                recorded_at: time::OffsetDateTime::from_unix_timestamp(1_800_000_000 + p as i64)
                    .unwrap(),
                schema_version: 1,
                event: Event::ClientDeleted(ClientDeleted {
                    client_id: ClientId::parse("c").unwrap(),
                }),
                metadata: Metadata {
                    caused_by: Cause::System,
                    request_id: Some(format!("req-{p}")),
                    correlation_id: Some(format!("op-{}", p / 3)),
                    source_ip: None,
                    user_agent: None,
                },
                prev_hash: "0".repeat(64),
            })
            .collect()
    }

    fn by(filter: AuditFilter, order: Order, log: &Log, audit: &AuditLog) -> Vec<u64> {
        let q = AuditQuery {
            filter,
            since: None,
            until: None,
            upto: None,
            cursor: None,
            order,
            limit: 100,
        };
        let page = audit.query(&q, log).unwrap();
        page.events.iter().map(|e| e.position).collect()
    }

    #[test]
    fn ids_of_their_own_for_every_request_take_a_row_per_bucket_not_per_event() {
        let log = Log(requests(200_000));
        let audit = AuditLog::open(&crate::NoCheckpoints).unwrap();
        for chunk in log.0.chunks(4096) {
            audit.apply(chunk).unwrap();
        }
        let rows = |prefix: u8| {
            audit
                .store
                .tree
                .range(vec![prefix]..=vec![prefix, 0xFF, 0xFF, 0xFF])
                .count()
        };
        // 200,000 requests in 4 wide blocks of 8,192 buckets: at most 32,768 rows.
        assert!(rows(b'q') <= 4 * usize::from(ID_BUCKETS), "{}", rows(b'q'));
        assert!(rows(b'o') <= 4 * usize::from(ID_BUCKETS), "{}", rows(b'o'));
        let request = |id: &str| AuditFilter {
            request_id: Some(id.into()),
            ..AuditFilter::default()
        };
        assert_eq!(
            by(request("req-123457"), Order::Ascending, &log, &audit),
            [123_457]
        );
        assert_eq!(
            by(request("req-0"), Order::Ascending, &log, &audit),
            Vec::<u64>::new()
        );
        let op = AuditFilter {
            correlation_id: Some("op-40000".into()),
            ..AuditFilter::default()
        };
        assert_eq!(
            by(op.clone(), Order::Ascending, &log, &audit),
            [120_000, 120_001, 120_002]
        );
        assert_eq!(
            by(op.clone(), Order::Descending, &log, &audit),
            [120_002, 120_001, 120_000]
        );

        // Compaction takes a removed event out of its bucket's row, and only it.
        let gone = log.0[120_000].clone();
        audit.forget(&[&gone], &log).unwrap();
        let log = Log(log
            .0
            .into_iter()
            .filter(|e| e.position != 120_001)
            .collect());
        assert_eq!(by(op, Order::Ascending, &log, &audit), [120_000, 120_002]);
        assert_eq!(
            by(request("req-120001"), Order::Ascending, &log, &audit),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn a_wide_row_keeps_its_offsets_sorted_once_each_and_refuses_a_damaged_one() {
        let mut set = WideSet::default();
        for o in [9u16, 3, 65_535, 3, 0] {
            set.insert(o);
        }
        assert_eq!(set.0, [0, 3, 9, 65_535]);
        let v = set.encode();
        assert_eq!(WideSet::decode(&v).unwrap(), set);
        set.remove(3);
        assert_eq!(set.0, [0, 9, 65_535]);
        assert!(WideSet::decode(&v[..3]).is_err());
        assert!(WideSet::decode(&[5, 0, 4, 0]).is_err());
        let k = key(b'q', &id_bucket("req-1"), 2);
        let ps = decode_positions(&k, &v).unwrap();
        assert_eq!(ps, [2 * WIDE, 2 * WIDE + 3, 2 * WIDE + 9, 3 * WIDE - 1]);
    }
}
