//! Projection checkpoints on disk: `<dir>/<projection>.ckpt`, one file per projection, each a
//! complete copy of its rows and the log position they reflect.
//!
//! Format: a 28-byte header (`ALPROJ01`, the position u64 LE, the row count u64 LE, a CRC32C
//! of those 24 bytes), then blocks of at most 1 MiB, each `length: u32 LE, crc: u32 LE` and
//! `length` bytes of rows (`key length u32 LE, key, value length u32 LE, value`). A file is
//! written beside its final name and renamed into place once synced, so a crash during a
//! checkpoint leaves the previous one; a file that fails a check is reported with the offset
//! of the bad block and the projection is rebuilt from the log instead.

use super::segments::write_atomically;
use projections::{CheckpointStore, Map, ProjectionError};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"ALPROJ01";
const HEADER: usize = 28;
const BLOCK: usize = 1 << 20;

/// Checkpoints kept as files in one directory.
pub struct FileCheckpoints {
    dir: PathBuf,
}

impl FileCheckpoints {
    /// Checkpoints in `dir` (created on the first save).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The file of projection `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.ckpt"))
    }
}

/// The bytes of a checkpoint file for `rows`.
pub fn encode(rows: &Map) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&projections::checkpoint_of(rows).to_le_bytes());
    out.extend_from_slice(&(rows.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c(&out[..24]);
    out.extend_from_slice(&crc.to_le_bytes());
    let mut block = Vec::with_capacity(BLOCK + 1024);
    let flush = |out: &mut Vec<u8>, block: &mut Vec<u8>| {
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(block).to_le_bytes());
        out.extend_from_slice(block);
        block.clear();
    };
    for (k, v) in rows {
        block.extend_from_slice(&(k.len() as u32).to_le_bytes());
        block.extend_from_slice(k);
        block.extend_from_slice(&(v.len() as u32).to_le_bytes());
        block.extend_from_slice(v);
        if block.len() >= BLOCK {
            flush(&mut out, &mut block);
        }
    }
    if !block.is_empty() {
        flush(&mut out, &mut block);
    }
    out
}

/// Why a checkpoint file was not trusted: the offset of the bad part and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset in the file.
    pub offset: usize,
    /// What is wrong.
    pub reason: &'static str,
}

/// The rows of a checkpoint file, and the position they reflect.
pub fn decode(bytes: &[u8]) -> Result<(u64, Map), Damage> {
    let bad = |offset, reason| Damage { offset, reason };
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(bad(0, "not a projection checkpoint"));
    }
    let word = |at: usize| -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let crc = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    if crc32c::crc32c(&bytes[..24]) != crc {
        return Err(bad(0, "the header's checksum does not match"));
    }
    let (position, count) = (word(8), word(16));
    let mut rows = Map::new();
    let mut at = HEADER;
    while at < bytes.len() {
        let Some(head) = bytes.get(at..at + 8) else {
            return Err(bad(at, "a block header is cut short"));
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let Some(block) = bytes.get(at + 8..at + 8 + len) else {
            return Err(bad(at, "a block is cut short"));
        };
        if crc32c::crc32c(block) != crc {
            return Err(bad(at, "a block's checksum does not match"));
        }
        let mut i = 0;
        let take = |i: &mut usize| -> Option<Vec<u8>> {
            let n = u32::from_le_bytes(block.get(*i..*i + 4)?.try_into().ok()?) as usize;
            let v = block.get(*i + 4..*i + 4 + n)?.to_vec();
            *i += 4 + n;
            Some(v)
        };
        while i < block.len() {
            let (Some(k), Some(v)) = (take(&mut i), take(&mut i)) else {
                return Err(bad(at, "a row runs past its block"));
            };
            rows.insert(k, v);
        }
        at += 8 + len;
    }
    if rows.len() as u64 != count {
        return Err(bad(at, "the file holds fewer rows than its header says"));
    }
    Ok((position, rows))
}

impl CheckpointStore for FileCheckpoints {
    fn load(&self, name: &str) -> Result<Option<Map>, ProjectionError> {
        let path = self.path(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ProjectionError::Checkpoint {
                    name: name.to_owned(),
                    source,
                })
            }
        };
        match decode(&bytes) {
            Ok((_, rows)) => Ok(Some(rows)),
            Err(d) => {
                tracing::warn!(
                    file = %path.display(),
                    offset = d.offset,
                    reason = d.reason,
                    "a projection checkpoint is damaged; the projection is rebuilt from the log"
                );
                let _ = std::fs::rename(&path, path.with_extension("ckpt.damaged"));
                Ok(None)
            }
        }
    }

    fn save(&self, name: &str, rows: &Map) -> Result<(), ProjectionError> {
        let wrap = |source| ProjectionError::Checkpoint {
            name: name.to_owned(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(wrap)?;
        write_atomically(&self.path(name), &encode(rows)).map_err(wrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u32) -> Map {
        let mut m = Map::new();
        m.insert(b"\x00checkpoint".to_vec(), 42u64.to_be_bytes().to_vec());
        for i in 0..n {
            m.insert(
                format!("k{i:06}").into_bytes(),
                vec![b'v'; (i % 300) as usize],
            );
        }
        m
    }

    #[test]
    fn a_checkpoint_reads_back_as_written_with_its_position() {
        let m = rows(20_000);
        let (position, back) = decode(&encode(&m)).unwrap();
        assert_eq!(position, 42);
        assert_eq!(back, m);
    }

    #[test]
    fn a_changed_byte_or_a_cut_file_is_named_by_its_offset() {
        let bytes = encode(&rows(20_000));
        assert!(bytes.len() > BLOCK + HEADER);
        let mut changed = bytes.clone();
        let near_end = changed.len() - 100;
        changed[near_end] ^= 0x20;
        let d = decode(&changed).unwrap_err();
        assert!(d.offset > HEADER, "{d:?}");
        assert_eq!(d.reason, "a block's checksum does not match");
        let cut = &bytes[..bytes.len() - 10];
        assert_eq!(decode(cut).unwrap_err().reason, "a block is cut short");
        let mut header = bytes.clone();
        header[9] ^= 1;
        assert_eq!(decode(&header).unwrap_err().offset, 0);
    }
}
