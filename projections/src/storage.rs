//! What the projections share: the write type of pure `apply`s and checkpointed trees.

use domain::RecordedEvent;

/// A storage failure of a projection.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// sled failed.
    #[error("projection storage: {0}")]
    Storage(#[from] sled::Error),
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

/// The checkpoint key: `0x00` sorts before every row prefix.
const CHECKPOINT: &[u8] = b"\x00checkpoint";

/// A sled tree holding one projection's rows and its checkpoint, changed atomically.
pub(crate) struct CheckpointedTree {
    pub(crate) tree: sled::Tree,
}

impl CheckpointedTree {
    pub(crate) fn open(db: &sled::Db, name: &str) -> Result<Self, ProjectionError> {
        Ok(Self {
            tree: db.open_tree(name)?,
        })
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
        let mut batch = sled::Batch::default();
        for w in writes {
            match w {
                Write::Put(k, v) => batch.insert(k, v),
                Write::Delete(k) => batch.remove(k),
            }
        }
        batch.insert(CHECKPOINT, &checkpoint.to_be_bytes());
        self.tree.apply_batch(batch)?;
        Ok(())
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
        self.tree
            .iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Into::into))
            .collect()
    }

    pub(crate) fn clear(&self) -> Result<(), ProjectionError> {
        self.tree.clear()?;
        Ok(())
    }
}

pub(crate) fn u64_from(bytes: &[u8]) -> Result<u64, ProjectionError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| ProjectionError::Corrupt(format!("expected 8 bytes, got {}", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}
