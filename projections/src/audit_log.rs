//! The audit trail's indexes: by client, by subject, by event type and by time.
//!
//! The events themselves stay in the log; the index rows hold only keys ending in the global
//! position, so a query filtered to one client reads that client's rows and nothing else.

use crate::storage::{CheckpointedTree, ProjectionError, Write};
use domain::RecordedEvent;
use std::iter::Peekable;

/// Separates a name from the position in index keys; it never occurs in UTF-8 text.
const SEP: u8 = 0xFF;

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

fn key(prefix: u8, name: &str, position: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 10);
    k.push(prefix);
    k.extend_from_slice(name.as_bytes());
    k.push(SEP);
    k.extend_from_slice(&position.to_be_bytes());
    k
}

fn millis(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn time_key(ms: i64, position: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(b'm');
    // Offset so that negative times still sort before positive ones.
    k.extend_from_slice(&((ms as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(&position.to_be_bytes());
    k
}

/// The pure part: the index rows an event writes.
pub fn changes(event: &RecordedEvent, out: &mut Vec<Write>) {
    let p = event.position;
    out.push(Write::Put(
        key(b'c', event.event.client_id().as_str(), p),
        Vec::new(),
    ));
    if let Some(subject) = event.event.subject() {
        out.push(Write::Put(key(b's', subject, p), Vec::new()));
    }
    out.push(Write::Put(
        key(b't', event.event.type_name(), p),
        Vec::new(),
    ));
    out.push(Write::Put(
        time_key(millis(event.recorded_at), p),
        Vec::new(),
    ));
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

    /// Applies events past the checkpoint.
    pub fn apply<E: AsRef<RecordedEvent>>(&self, events: &[E]) -> Result<(), ProjectionError> {
        self.store.apply(events, changes)
    }

    /// Removes every row.
    pub fn clear(&self) -> Result<(), ProjectionError> {
        self.store.clear()
    }

    /// Every stored row, in key order: used to compare two builds.
    pub fn dump(&self) -> Result<crate::storage::Rows, ProjectionError> {
        self.store.dump()
    }

    fn index_positions(&self, prefix: u8, name: &str, from: u64, to: u64) -> PositionIter {
        let start = key(prefix, name, from);
        let end = key(prefix, name, to);
        Box::new(self.store.tree.range(start..=end).map(|r| {
            let (k, _) = r?;
            let tail = k.len().saturating_sub(8);
            crate::storage::u64_from(&k[tail..])
        }))
    }

    /// First position recorded at or after `t`.
    fn first_at_or_after(&self, t: time::OffsetDateTime) -> Result<Option<u64>, ProjectionError> {
        let start = time_key(millis(t), 0);
        let end = time_key(i64::MAX, u64::MAX);
        match self.store.tree.range(start..=end).next() {
            Some(r) => {
                let (k, _) = r?;
                Ok(Some(crate::storage::u64_from(&k[9..])?))
            }
            None => Ok(None),
        }
    }

    /// Last position recorded at or before `t`.
    fn last_at_or_before(&self, t: time::OffsetDateTime) -> Result<Option<u64>, ProjectionError> {
        let start = time_key(i64::MIN, 0);
        let end = time_key(millis(t), u64::MAX);
        match self.store.tree.range(start..=end).next_back() {
            Some(r) => {
                let (k, _) = r?;
                Ok(Some(crate::storage::u64_from(&k[9..])?))
            }
            None => Ok(None),
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
                .is_none_or(|c| e.event.client_id().as_str() == c)
                && q.subject
                    .as_deref()
                    .is_none_or(|s| e.event.subject() == Some(s))
                && (q.types.is_empty() || q.types.iter().any(|t| t == e.event.type_name()))
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
