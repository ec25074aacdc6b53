//! Import of a data directory written by the sled release: the only code that still reads
//! sled. The events are copied byte for byte, so every hash of the chain (and its head) stays
//! the same, and the chain is verified on the way: a broken one is not imported.
//!
//! The sled database's `log` tree held `e` + position (u64 BE) → the event's JSON, `x` +
//! position → a compacted run (JSON) and `\x00head` → the head marker (position u64 BE, then
//! the hash as text). Stream indexes, snapshots and projections are not copied: the new log
//! and projections rebuild them from the events.

use super::log::{Medium, Record, WriteFailure};
use super::segments::{SegmentFiles, DEFAULT_SEGMENT_BYTES};
use super::verify::{self, CompactedRun, HeadMarker, Verification};
use super::StoreError;
use std::collections::BTreeMap;
use std::path::Path;

/// Events written to the new log per group.
const GROUP: usize = 4096;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    /// Events copied.
    pub events: u64,
    /// Position of the last one.
    pub head_position: u64,
    /// Its hash: the same as the sled log's.
    pub head_hash: String,
    /// Compacted runs carried over.
    pub runs: u64,
}

fn sled_err(e: sled::Error) -> StoreError {
    match &e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => StoreError::Locked,
        _ if e.to_string().contains("acquire lock") => StoreError::Locked,
        _ => StoreError::io("reading the sled store", e),
    }
}

fn be_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("expected 8 bytes, got {}", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}

/// Copies the sled store in `sled_dir` into a new embedded log in `log_dir`, verifying the
/// chain as it goes; `progress` hears the events copied and the position of the last one (the
/// total for a progress bar). The new log is built beside its final
/// place and renamed into it only when complete, so an interrupted import leaves nothing that
/// a start would take for a log.
pub fn import(
    sled_dir: &Path,
    log_dir: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<Imported, StoreError> {
    tracing::info!(from = %sled_dir.display(), to = %log_dir.display(), "importing the sled store of an earlier release");
    let db = sled::Config::new()
        .path(sled_dir)
        .open()
        .map_err(sled_err)?;
    let log = db.open_tree("log").map_err(sled_err)?;
    let mut runs = BTreeMap::new();
    let run_start = [b'x'];
    for r in log.range(&run_start[..]..&[b'y'][..]) {
        let (_, v) = r.map_err(sled_err)?;
        let run: CompactedRun =
            serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        runs.insert(run.first, run);
    }
    let head = match log.get(b"\x00head").map_err(sled_err)? {
        Some(v) if v.len() > 8 => Some(HeadMarker {
            position: be_u64(&v[..8])?,
            hash: String::from_utf8_lossy(&v[8..]).into_owned(),
        }),
        _ => None,
    };
    let total = head.as_ref().map_or(0, |h| h.position);
    let staging = log_dir.with_extension("importing");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .map_err(|e| StoreError::io(format!("removing {}", staging.display()), e))?;
    }
    let (files, _) = SegmentFiles::open(&staging, DEFAULT_SEGMENT_BYTES)?;
    let mut group: Vec<Record> = Vec::with_capacity(GROUP);
    let mut failure: Option<StoreError> = None;
    let mut copied = 0u64;
    let write = |group: &mut Vec<Record>, failure: &mut Option<StoreError>| {
        if group.is_empty() || failure.is_some() {
            return;
        }
        if let Err(e) = files.write(group) {
            *failure = Some(match e {
                WriteFailure::Unavailable(m) | WriteFailure::Failed(m) => StoreError::failed(m),
            });
        }
        group.clear();
    };
    let events = log
        .range(&[b'e'][..]..&[b'f'][..])
        .map(|r| -> Result<(u64, Vec<u8>), StoreError> {
            let (k, v) = r.map_err(sled_err)?;
            Ok((be_u64(&k[1..])?, v.to_vec()))
        })
        .inspect(|r| {
            if let Ok((position, bytes)) = r {
                group.push(Record {
                    position: *position,
                    bytes: bytes.clone(),
                });
                copied += 1;
                if group.len() == GROUP {
                    write(&mut group, &mut failure);
                    progress(copied, total);
                }
            }
        });
    let outcome = verify::verify(events, &runs, head.as_ref(), None, |_| {})?;
    write(&mut group, &mut failure);
    progress(copied, total);
    if let Some(e) = failure {
        return Err(e);
    }
    let (head_position, head_hash) = match outcome {
        Verification::Verified {
            head_position,
            head_hash,
            ..
        } => (head_position, head_hash),
        Verification::Broken {
            position, reason, ..
        } => {
            drop(files);
            let _ = std::fs::remove_dir_all(&staging);
            return Err(StoreError::Corrupt(format!(
                "the sled store's chain breaks at event {position} ({reason}); it was not \
                 imported. Restore the data directory from a backup, then run `authledger \
                 migrate` again"
            )));
        }
    };
    let list: Vec<&CompactedRun> = runs.values().collect();
    files.save_meta(
        "runs",
        &serde_json::to_vec(&list).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    )?;
    drop(files);
    std::fs::rename(&staging, log_dir)
        .map_err(|e| StoreError::io("moving the imported log into place", e))?;
    tracing::info!(
        events = copied,
        head_position,
        head_hash,
        "imported the sled store; its directory is left in place, remove it once you are satisfied"
    );
    Ok(Imported {
        events: copied,
        head_position,
        head_hash,
        runs: runs.len() as u64,
    })
}
