//! What the projections share: the write type of pure `apply`s, the in-memory ordered trees
//! they keep their rows in, and the boundary to whatever stores their checkpoints.
//!
//! A projection's rows live in memory (an [`imbl::OrdMap`], so that taking a consistent copy
//! for a background checkpoint is O(1) and never holds the writer up). Durability is the
//! log's: a projection is only ever a function of it. A [`CheckpointStore`] keeps copies of
//! the trees, each with the log position it reflects (the checkpoint row), so that a start
//! applies only the events after it.

use domain::RecordedEvent;
use std::sync::RwLock;

/// A storage failure of a projection.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Writing or reading a checkpoint failed.
    #[error("projection checkpoint {name}: {source}")]
    Checkpoint {
        /// The projection.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stored row did not decode.
    #[error("projection row is corrupt: {0}")]
    Corrupt(String),
    /// Reading the log failed.
    #[error("reading the log: {0}")]
    Log(String),
    /// Events were offered past a gap after the checkpoint; applying them would lose the
    /// missing ones, so nothing was applied.
    #[error("projection is at position {checkpoint} but was offered position {offered}; catch up from the log first")]
    Gap {
        /// Last applied position.
        checkpoint: u64,
        /// First position offered after it.
        offered: u64,
    },
}

/// One change a pure `apply` asks its storage to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Set a key.
    Put(Vec<u8>, Vec<u8>),
    /// Remove a key.
    Delete(Vec<u8>),
}

/// Every row of a projection, in key order.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// A projection's rows: an ordered map whose clones share structure.
pub type Map = imbl::OrdMap<Vec<u8>, Vec<u8>>;

/// Receives the rows of a copy one at a time, and may stop the walk with an error.
pub type RowSink<'a> = dyn FnMut(&[u8], &[u8]) -> std::io::Result<()> + 'a;

/// A consistent copy of one projection, handed to a [`CheckpointStore`] to save.
pub trait RowSource {
    /// The log position the copy reflects.
    fn position(&self) -> u64;
    /// Calls `row` with every row of the copy, in key order, and stops at its first error.
    fn for_each_row(&self, row: &mut RowSink<'_>) -> std::io::Result<()>;
}

impl RowSource for Map {
    fn position(&self) -> u64 {
        checkpoint_of(self)
    }
    fn for_each_row(&self, row: &mut RowSink<'_>) -> std::io::Result<()> {
        self.iter().try_for_each(|(k, v)| row(k, v))
    }
}

/// Where copies of the projections are kept between starts (files in a data directory, or
/// nowhere). Rows stream in both directions, so neither a save nor a load holds a second
/// copy of a projection in memory.
pub trait CheckpointStore: Send + Sync {
    /// Feeds every row of the last saved copy of projection `name` to `row`, and answers
    /// whether there was a copy that could be trusted. A copy that fails its own checks is
    /// reported by the store and answered as `false`, possibly after some of its rows were
    /// fed: the caller then drops what it was given and rebuilds the projection from the log.
    fn load(
        &self,
        name: &str,
        row: &mut dyn FnMut(Vec<u8>, Vec<u8>),
    ) -> Result<bool, ProjectionError>;
    /// Saves a copy of projection `name` (its checkpoint row included), replacing the last
    /// one only once the new copy is complete.
    fn save(&self, name: &str, rows: &dyn RowSource) -> Result<(), ProjectionError>;
}

/// Keeps nothing: every open starts empty (tests, scratch rebuilds).
pub struct NoCheckpoints;

impl CheckpointStore for NoCheckpoints {
    fn load(
        &self,
        _name: &str,
        _row: &mut dyn FnMut(Vec<u8>, Vec<u8>),
    ) -> Result<bool, ProjectionError> {
        Ok(false)
    }
    fn save(&self, _name: &str, _rows: &dyn RowSource) -> Result<(), ProjectionError> {
        Ok(())
    }
}

/// The checkpoint key: `0x00` sorts before every row prefix.
pub const CHECKPOINT: &[u8] = b"\x00checkpoint";

/// The log position a projection's rows reflect (0 without a checkpoint row).
pub fn checkpoint_of(rows: &Map) -> u64 {
    rows.get(CHECKPOINT)
        .and_then(|v| u64_from(v).ok())
        .unwrap_or(0)
}

/// One row read out of a tree.
pub(crate) type Row = Result<(Vec<u8>, Vec<u8>), ProjectionError>;
/// Rows read out of a tree, in key order.
pub(crate) type RowIter = std::vec::IntoIter<Row>;

/// An in-memory ordered tree with the small surface the projections need.
#[derive(Default)]
pub(crate) struct Tree {
    map: RwLock<Map>,
}

/// Changes applied to a tree at once.
#[derive(Default)]
pub(crate) struct Batch(Vec<Write>);

impl Batch {
    pub(crate) fn insert(&mut self, k: impl Into<Vec<u8>>, v: impl Into<Vec<u8>>) {
        self.0.push(Write::Put(k.into(), v.into()));
    }
    pub(crate) fn remove(&mut self, k: impl Into<Vec<u8>>) {
        self.0.push(Write::Delete(k.into()));
    }
}

/// Reads `lock` even if a writer panicked: each write leaves the data whole, so a panic
/// elsewhere must not take the read models down with it.
pub(crate) fn read_lock<T>(lock: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`read_lock`] for writing.
pub(crate) fn write_lock<T>(lock: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Tree {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map> {
        read_lock(&self.map)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Map> {
        write_lock(&self.map)
    }

    pub(crate) fn get(&self, k: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, ProjectionError> {
        Ok(self.read().get(k.as_ref()).cloned())
    }

    pub(crate) fn contains_key(&self, k: impl AsRef<[u8]>) -> Result<bool, ProjectionError> {
        Ok(self.read().contains_key(k.as_ref()))
    }

    /// The rows between two keys (inclusive), read lazily from a consistent copy of the tree
    /// (O(1) to take): a query that stops after a few rows copies only those.
    pub(crate) fn range(&self, range: std::ops::RangeInclusive<Vec<u8>>) -> LazyRows {
        self.range_ordered(range, false)
    }

    /// [`Tree::range`], from the last key down when `descending`.
    pub(crate) fn range_ordered(
        &self,
        range: std::ops::RangeInclusive<Vec<u8>>,
        descending: bool,
    ) -> LazyRows {
        let (start, end) = range.into_inner();
        let empty = start > end;
        LazyRows {
            map: self.snapshot(),
            low: std::ops::Bound::Included(start),
            high: std::ops::Bound::Included(end),
            descending,
            buffer: std::collections::VecDeque::new(),
            done: empty,
        }
    }

    /// Calls `f` with the key of every row that starts with `prefix`, without copying rows.
    pub(crate) fn for_each_key_with_prefix(&self, prefix: &[u8], mut f: impl FnMut(&[u8])) {
        let map = self.read();
        map.range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .for_each(|(k, _)| f(k));
    }

    /// The rows whose key starts with `prefix`, copied out.
    pub(crate) fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> RowIter {
        let prefix = prefix.as_ref();
        let map = self.read();
        let rows: Vec<_> = map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| Ok((k.clone(), v.clone())))
            .collect();
        rows.into_iter()
    }

    pub(crate) fn apply_batch(&self, batch: Batch) -> Result<(), ProjectionError> {
        let mut map = self.write();
        for w in batch.0 {
            match w {
                Write::Put(k, v) => {
                    map.insert(k, v);
                }
                Write::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn remove(&self, k: impl AsRef<[u8]>) -> Result<(), ProjectionError> {
        self.write().remove(k.as_ref());
        Ok(())
    }

    pub(crate) fn clear(&self) -> Result<(), ProjectionError> {
        *self.write() = Map::new();
        Ok(())
    }

    /// A consistent copy of every row: O(1), the copy shares the tree's nodes.
    pub(crate) fn snapshot(&self) -> Map {
        self.read().clone()
    }

    pub(crate) fn replace(&self, map: Map) {
        *self.write() = map;
    }
}

/// Rows of a range, fetched a chunk at a time from a copy of the tree.
pub(crate) struct LazyRows {
    map: Map,
    low: std::ops::Bound<Vec<u8>>,
    high: std::ops::Bound<Vec<u8>>,
    descending: bool,
    buffer: std::collections::VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

/// Rows fetched per chunk.
const CHUNK: usize = 64;

impl Iterator for LazyRows {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        use std::ops::Bound;
        if self.buffer.is_empty() && !self.done {
            let range = (self.low.clone(), self.high.clone());
            let chunk: Vec<(Vec<u8>, Vec<u8>)> = if self.descending {
                self.map
                    .range(range)
                    .rev()
                    .take(CHUNK)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            } else {
                self.map
                    .range(range)
                    .take(CHUNK)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            if chunk.len() < CHUNK {
                self.done = true;
            }
            if let Some((last, _)) = chunk.last() {
                // The range is never handed an empty or inverted pair of bounds.
                let at_the_end = match (&self.low, &self.high) {
                    (_, Bound::Included(end)) if !self.descending => last >= end,
                    (Bound::Included(start), _) if self.descending => last <= start,
                    _ => false,
                };
                if at_the_end {
                    self.done = true;
                } else if self.descending {
                    self.high = Bound::Excluded(last.clone());
                } else {
                    self.low = Bound::Excluded(last.clone());
                }
            }
            self.buffer.extend(chunk);
        }
        self.buffer.pop_front().map(Ok)
    }
}

/// A tree holding one projection's rows and its checkpoint, changed atomically.
pub(crate) struct CheckpointedTree {
    pub(crate) tree: Tree,
    pub(crate) name: &'static str,
}

impl CheckpointedTree {
    /// The projection `name`, from its last checkpoint in `source` (empty without one).
    pub(crate) fn open(
        source: &dyn CheckpointStore,
        name: &'static str,
    ) -> Result<Self, ProjectionError> {
        Ok(Self::open_split(source, name, None, &mut |_, _| {})?.0)
    }

    /// [`CheckpointedTree::open`] for a projection that keeps part of its rows elsewhere:
    /// saved rows whose key starts with `prefix` go to `other` instead of the tree. Answers whether the saved copy was trusted;
    /// when it was not, the tree is empty and whatever `other` was given must be dropped.
    pub(crate) fn open_split(
        source: &dyn CheckpointStore,
        name: &'static str,
        prefix: Option<u8>,
        other: &mut dyn FnMut(Vec<u8>, Vec<u8>),
    ) -> Result<(Self, bool), ProjectionError> {
        let mut map = Map::new();
        let trusted = source.load(name, &mut |k, v| {
            if prefix.is_some() && k.first() == prefix.as_ref() {
                other(k, v)
            } else {
                map.insert(k, v);
            }
        })?;
        if !trusted {
            map = Map::new();
        }
        let tree = Tree::default();
        tree.replace(map);
        Ok((Self { tree, name }, trusted))
    }

    pub(crate) fn checkpoint(&self) -> Result<u64, ProjectionError> {
        Ok(match self.tree.get(CHECKPOINT)? {
            Some(v) => u64_from(&v)?,
            None => 0,
        })
    }

    /// The events past the checkpoint, in order; refuses events past a gap.
    pub(crate) fn pending<'a, E: AsRef<RecordedEvent>>(
        &self,
        events: &'a [E],
    ) -> Result<Vec<&'a RecordedEvent>, ProjectionError> {
        let mut last = self.checkpoint()?;
        let mut out = Vec::new();
        for e in events.iter().map(AsRef::as_ref) {
            if e.position <= last {
                continue;
            }
            if e.position != last + 1 {
                return Err(ProjectionError::Gap {
                    checkpoint: last,
                    offered: e.position,
                });
            }
            out.push(e);
            last = e.position;
        }
        Ok(out)
    }

    /// Writes rows and the new checkpoint in one atomic batch.
    pub(crate) fn commit(
        &self,
        writes: Vec<Write>,
        checkpoint: u64,
    ) -> Result<(), ProjectionError> {
        let mut batch = Batch(writes);
        batch.insert(CHECKPOINT, checkpoint.to_be_bytes());
        self.tree.apply_batch(batch)
    }

    /// Applies the writes that `changes` gives for each event past the checkpoint, and moves the
    /// checkpoint, in one atomic batch.
    pub(crate) fn apply<E: AsRef<RecordedEvent>>(
        &self,
        events: &[E],
        mut changes: impl FnMut(&RecordedEvent, &mut Vec<Write>),
    ) -> Result<(), ProjectionError> {
        let pending = self.pending(events)?;
        let Some(last) = pending.last().map(|e| e.position) else {
            return Ok(());
        };
        let mut writes = Vec::new();
        for e in pending {
            changes(e, &mut writes);
        }
        self.commit(writes, last)
    }

    pub(crate) fn dump(&self) -> Result<Rows, ProjectionError> {
        Ok(self
            .tree
            .snapshot()
            .into_iter()
            .collect::<Vec<(Vec<u8>, Vec<u8>)>>())
    }

    pub(crate) fn clear(&self) -> Result<(), ProjectionError> {
        self.tree.clear()
    }
}

pub(crate) fn u64_from(bytes: &[u8]) -> Result<u64, ProjectionError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| ProjectionError::Corrupt(format!("expected 8 bytes, got {}", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lazy_range_gives_every_row_once_in_either_order_across_chunks() {
        let tree = Tree::default();
        let mut batch = Batch::default();
        for i in 0u32..300 {
            batch.insert(i.to_be_bytes().to_vec(), vec![i as u8]);
        }
        tree.apply_batch(batch).unwrap();
        let keys = |rows: LazyRows| -> Vec<u32> {
            rows.map(|r| u32::from_be_bytes(r.unwrap().0.try_into().unwrap()))
                .collect()
        };
        let (lo, hi) = (10u32.to_be_bytes().to_vec(), 137u32.to_be_bytes().to_vec());
        assert_eq!(
            keys(tree.range(lo.clone()..=hi.clone())),
            (10..=137).collect::<Vec<_>>()
        );
        assert_eq!(
            keys(tree.range_ordered(lo.clone()..=hi.clone(), true)),
            (10..=137).rev().collect::<Vec<_>>()
        );
        // Exactly one chunk, ending on the bound.
        let end = (10 + CHUNK as u32 - 1).to_be_bytes().to_vec();
        assert_eq!(keys(tree.range(lo.clone()..=end)).len(), CHUNK);
        assert!(keys(tree.range(hi..=lo)).is_empty());
    }
}
