//! The in-memory medium: the log's records in a vector. Nothing survives the process; it serves
//! unit tests and scratch work, and runs the same store contract suite as the embedded log.

use super::log::{Medium, RawIter, Record, WriteFailure};
use super::StoreError;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, RwLock};

/// Records and metadata kept in memory.
#[derive(Default)]
pub struct MemoryMedium {
    records: RwLock<Vec<(u64, Vec<u8>)>>,
    meta: Mutex<HashMap<String, Vec<u8>>>,
    /// The next write fails as a full disk would (tests of the failure path).
    fail_next: std::sync::atomic::AtomicBool,
}

impl MemoryMedium {
    /// An empty medium.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next write fail with nothing written, as a disk with no room would.
    pub fn fail_next_write(&self) {
        self.fail_next
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn read_records(&self) -> std::sync::RwLockReadGuard<'_, Vec<(u64, Vec<u8>)>> {
        self.records
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn index_of(records: &[(u64, Vec<u8>)], position: u64) -> usize {
        records.partition_point(|(p, _)| *p < position)
    }
}

impl Medium for MemoryMedium {
    fn write(&self, records: &[Record]) -> Result<(), WriteFailure> {
        if self
            .fail_next
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(WriteFailure::Unavailable(
                "no space left on the (simulated) device".into(),
            ));
        }
        let mut all = self
            .records
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.extend(records.iter().map(|r| (r.position, r.bytes.clone())));
        Ok(())
    }

    fn read(&self, position: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let records = self.read_records();
        let i = Self::index_of(&records, position);
        Ok(records
            .get(i)
            .filter(|(p, _)| *p == position)
            .map(|(_, b)| b.clone()))
    }

    fn scan(&self, from: u64, to: u64) -> RawIter<'_> {
        let records = self.read_records();
        let i = Self::index_of(&records, from);
        let out: Vec<_> = records[i..]
            .iter()
            .take_while(|(p, _)| *p <= to)
            .map(|(p, b)| Ok((*p, b.clone())))
            .collect();
        Box::new(out.into_iter())
    }

    fn last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self.read_records().last().cloned())
    }

    fn remove(&self, positions: &BTreeSet<u64>) -> Result<(), StoreError> {
        self.records
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(p, _)| !positions.contains(p));
        Ok(())
    }

    fn save_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), bytes.to_vec());
        Ok(())
    }

    fn load_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned())
    }

    fn describe(&self, position: u64) -> String {
        format!("in-memory record {position}")
    }
}
