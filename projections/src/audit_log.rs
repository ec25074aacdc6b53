//! The audit trail's indexes: by client, by subject, by event type and by time.
//!
//! The events themselves stay in the log. Index rows are postings: the key names the index
//! (client, subject or type), the block (position / 256) and the row holds the ascending
//! positions of that block, so an apply writes one row per index and block rather than one per
//! event. Blocks depend only on positions, so any batching of the same events builds the same
//! rows. The time index keeps, for each distinct recorded time (ms), the first position.

use crate::storage::{CheckpointedTree, ProjectionError, Write};
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

/// An audit query; every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only events of this client.
    pub client: Option<String>,
    /// Only events about this subject.
    pub subject: Option<String>,
    /// Only events of these types (any of them).
    pub types: Vec<String>,
    /// Recorded at or after.
    pub since: Option<time::OffsetDateTime>,
    /// Recorded at or before.
    pub until: Option<time::OffsetDateTime>,
    /// Only events after this position (the cursor of the previous page).
    pub after: Option<u64>,
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
const BLOCK: u64 = 256;

fn key(prefix: u8, name: &str, block: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 10);
    k.push(prefix);
    k.extend_from_slice(name.as_bytes());
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
        let block = p / BLOCK;
        if let Some(client) = e.event.client_id() {
            rows.entry(key(b'c', client.as_str(), block))
                .or_default()
                .push(p);
        }
        if let Some(subject) = e.event.subject() {
            rows.entry(key(b's', &subject, block)).or_default().push(p);
        }
        rows.entry(key(b't', e.event.type_name(), block))
            .or_default()
            .push(p);
        let ms = millis(e.recorded_at);
        if last_ms != Some(ms) {
            times.push((time_key(ms), p));
            last_ms = Some(ms);
        }
    }
    (rows, times)
}

fn decode_positions(v: &[u8]) -> impl Iterator<Item = u64> + '_ {
    v.chunks_exact(8).map(|c| {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        u64::from_be_bytes(a)
    })
}

/// The audit indexes and their storage (tree `proj.audit`).
pub struct AuditLog {
    store: CheckpointedTree,
}

type PositionIter = Box<dyn Iterator<Item = Result<u64, ProjectionError>>>;

impl AuditLog {
    /// Opens the indexes in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, ProjectionError> {
        Ok(Self {
            store: CheckpointedTree::open(db, "proj.audit")?,
        })
    }

    /// Last applied global position.
    pub fn checkpoint(&self) -> Result<u64, ProjectionError> {
        self.store.checkpoint()
    }

    /// Applies events past the checkpoint: one read and one write per postings row touched.
    pub fn apply<E: AsRef<RecordedEvent>>(&self, events: &[E]) -> Result<(), ProjectionError> {
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
            let mut v = self
                .store
                .tree
                .get(&k)?
                .map(|v| v.to_vec())
                .unwrap_or_default();
            // A row may already hold these positions if a clear was interrupted: never twice.
            let held = decode_positions(&v).last().unwrap_or(0);
            for p in positions.into_iter().filter(|p| *p > held) {
                v.extend_from_slice(&p.to_be_bytes());
            }
            writes.push(Write::Put(k, v));
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

    /// The recorded time (ms) of the event at `position`, if it was the last one applied.
    fn time_of(&self, position: u64) -> Result<Option<i64>, ProjectionError> {
        let Some(v) = self.store.tree.get(LAST_TIME)? else {
            return Ok(None);
        };
        if v.len() != 16 || crate::storage::u64_from(&v[..8])? != position {
            return Ok(None);
        }
        Ok(Some(crate::storage::u64_from(&v[8..])? as i64))
    }

    /// Removes every row.
    pub fn clear(&self) -> Result<(), ProjectionError> {
        self.store.clear()
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

    fn index_positions(&self, prefix: u8, name: &str, from: u64, to: u64) -> PositionIter {
        let start = key(prefix, name, from / BLOCK);
        let end = key(prefix, name, to / BLOCK);
        Box::new(self.store.tree.range(start..=end).flat_map(
            move |r| -> Vec<Result<u64, ProjectionError>> {
                match r {
                    Ok((_, v)) => decode_positions(&v)
                        .filter(|p| (from..=to).contains(p))
                        .map(Ok)
                        .collect(),
                    Err(e) => vec![Err(e.into())],
                }
            },
        ))
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

    /// Answers a query from the indexes, resolving positions through `log`.
    pub fn query(
        &self,
        q: &AuditQuery,
        log: &dyn EventLookup,
    ) -> Result<AuditPage, ProjectionError> {
        let limit = q.limit.max(1);
        let mut lower = q.after.map_or(1, |a| a.saturating_add(1));
        let mut upper = u64::MAX;
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
        if lower > upper {
            return Ok(AuditPage::default());
        }
        let matches = |e: &RecordedEvent| {
            q.client
                .as_deref()
                .is_none_or(|c| e.event.client_id().map(|id| id.as_str()) == Some(c))
                && q.subject
                    .as_deref()
                    .is_none_or(|s| e.event.subject().as_deref() == Some(s))
                && (q.types.is_empty() || q.types.iter().any(|t| t == e.event.type_name()))
                // The time index is kept in milliseconds; the bounds are exact.
                && q.since.is_none_or(|t| e.recorded_at >= t)
                && q.until.is_none_or(|t| e.recorded_at <= t)
        };
        let mut events = Vec::new();
        let indexed: Option<PositionIter> = if let Some(c) = &q.client {
            Some(self.index_positions(b'c', c, lower, upper))
        } else if let Some(s) = &q.subject {
            Some(self.index_positions(b's', s, lower, upper))
        } else if !q.types.is_empty() {
            let iters = q
                .types
                .iter()
                .map(|t| self.index_positions(b't', t, lower, upper).peekable())
                .collect();
            Some(Box::new(Merge { iters }))
        } else {
            None
        };
        match indexed {
            Some(positions) => {
                for p in positions {
                    let p = p?;
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
            None => {
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

/// Merges ascending position iterators into one ascending iterator without repeats.
struct Merge {
    iters: Vec<Peekable<PositionIter>>,
}

impl Iterator for Merge {
    type Item = Result<u64, ProjectionError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<u64> = None;
        for it in self.iters.iter_mut() {
            match it.peek() {
                Some(Ok(p)) if best.is_none_or(|b| *p < b) => best = Some(*p),
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
