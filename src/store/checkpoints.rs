//! Projection checkpoints on disk: `<dir>/<projection>.ckpt`, one file per projection, each a
//! complete copy of its rows and the log position they reflect.
//!
//! Format: a 28-byte header (`ALPROJ01`, the position u64 LE, the row count u64 LE, a CRC32C
//! of those 24 bytes), then blocks of at most 1 MiB, each `length: u32 LE, crc: u32 LE` and
//! `length` bytes of rows (`key length u32 LE, key, value length u32 LE, value`). Files are
//! written and read a block at a time, the header last. A file is
//! written beside its final name and renamed into place once synced, so a crash during a
//! checkpoint leaves the previous one; a file that fails a check is reported with the offset
//! of the bad block and the projection is rebuilt from the log instead.

use projections::{CheckpointStore, Map, ProjectionError, RowSource};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"ALPROJ01";
const HEADER: usize = 28;
const BLOCK: usize = 1 << 20;
/// Bytes of a checkpoint file written between two syncs.
const SYNC_EVERY: u64 = 8 << 20;

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

/// Writes a checkpoint file block by block, so a projection of any size is saved with one
/// block of memory; the header, which needs the row count, is written last.
struct Writer<W: Write + Seek> {
    out: W,
    block: Vec<u8>,
    rows: u64,
}

impl<W: Write + Seek> Writer<W> {
    fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(&[0u8; HEADER])?;
        Ok(Self {
            out,
            block: Vec::with_capacity(BLOCK + 1024),
            rows: 0,
        })
    }

    fn row(&mut self, k: &[u8], v: &[u8]) -> std::io::Result<()> {
        let len = |n: usize| {
            u32::try_from(n).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "a row of 4 GiB or more")
            })
        };
        self.block.extend_from_slice(&len(k.len())?.to_le_bytes());
        self.block.extend_from_slice(k);
        self.block.extend_from_slice(&len(v.len())?.to_le_bytes());
        self.block.extend_from_slice(v);
        self.rows += 1;
        if self.block.len() >= BLOCK {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> std::io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.out
            .write_all(&(self.block.len() as u32).to_le_bytes())?;
        self.out
            .write_all(&crc32c::crc32c(&self.block).to_le_bytes())?;
        self.out.write_all(&self.block)?;
        self.block.clear();
        Ok(())
    }

    /// Writes the last block and the header; answers the output, positioned at its end.
    fn finish(mut self, position: u64) -> std::io::Result<W> {
        self.flush_block()?;
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&position.to_le_bytes());
        header.extend_from_slice(&self.rows.to_le_bytes());
        let crc = crc32c::crc32c(&header);
        header.extend_from_slice(&crc.to_le_bytes());
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&header)?;
        self.out.seek(SeekFrom::End(0))?;
        Ok(self.out)
    }
}

/// A checkpoint file that is synced as it grows, a few MiB at a time. Left to the kernel,
/// hundreds of MiB of a checkpoint stay dirty until the final sync, and on ext4
/// (`data=ordered`) the log's next `fdatasync` commits the journal behind all of them: token
/// requests waited 230-430 ms during a 400 MB checkpoint. Synced in steps, the log waits at
/// most behind one step.
struct Paced {
    file: File,
    unsynced: u64,
}

impl Paced {
    fn new(file: File) -> Self {
        Self { file, unsynced: 0 }
    }

    fn into_inner(self) -> File {
        self.file
    }
}

impl Write for Paced {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Paced {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

/// The bytes of a checkpoint file for `rows`.
pub fn encode(rows: &dyn RowSource) -> Vec<u8> {
    let write = || -> std::io::Result<Vec<u8>> {
        let mut w = Writer::new(std::io::Cursor::new(Vec::new()))?;
        rows.for_each_row(&mut |k, v| w.row(k, v))?;
        Ok(w.finish(rows.position())?.into_inner())
    };
    // Writing to memory fails only for a row of 4 GiB or more, which no projection has.
    write().unwrap_or_default()
}

/// Why a checkpoint file was not trusted: the offset of the bad part and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset in the file.
    pub offset: u64,
    /// What is wrong.
    pub reason: &'static str,
}

/// Why reading a checkpoint stopped.
enum ReadFailure {
    Io(std::io::Error),
    Damage(Damage),
}

impl From<std::io::Error> for ReadFailure {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Reads a checkpoint block by block, handing each row to `row`; answers the position the
/// rows reflect. Rows are handed out only from blocks whose checksum matched, but a damaged
/// block further on makes the whole copy untrusted: the caller drops what it was given.
fn read(input: &mut impl Read, row: &mut dyn FnMut(Vec<u8>, Vec<u8>)) -> Result<u64, ReadFailure> {
    let bad = |offset, reason| ReadFailure::Damage(Damage { offset, reason });
    let mut header = [0u8; HEADER];
    match read_full(input, &mut header)? {
        n if n < HEADER || &header[..8] != MAGIC => {
            return Err(bad(0, "not a projection checkpoint"))
        }
        _ => {}
    }
    let word = |at: usize| -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let crc = u32::from_le_bytes([header[24], header[25], header[26], header[27]]);
    if crc32c::crc32c(&header[..24]) != crc {
        return Err(bad(0, "the header's checksum does not match"));
    }
    let (position, count) = (word(8), word(16));
    let mut rows = 0u64;
    let mut at = HEADER as u64;
    let mut block = Vec::new();
    loop {
        let mut head = [0u8; 8];
        match read_full(input, &mut head)? {
            0 => break,
            8 => {}
            _ => return Err(bad(at, "a block header is cut short")),
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        block.resize(len, 0);
        if read_full(input, &mut block)? < len {
            return Err(bad(at, "a block is cut short"));
        }
        if crc32c::crc32c(&block) != crc {
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
            row(k, v);
            rows += 1;
        }
        at += 8 + len as u64;
    }
    if rows != count {
        return Err(bad(at, "the file holds fewer rows than its header says"));
    }
    Ok(position)
}

/// Reads until `buf` is full or the input ends; answers the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The rows of a checkpoint file, and the position they reflect.
pub fn decode(bytes: &[u8]) -> Result<(u64, Map), Damage> {
    let mut rows = Map::new();
    match read(&mut &bytes[..], &mut |k, v| {
        rows.insert(k, v);
    }) {
        Ok(position) => Ok((position, rows)),
        Err(ReadFailure::Damage(d)) => Err(d),
        // Reading from memory does not fail.
        Err(ReadFailure::Io(_)) => Err(Damage {
            offset: 0,
            reason: "unreadable",
        }),
    }
}

impl CheckpointStore for FileCheckpoints {
    fn load(
        &self,
        name: &str,
        row: &mut dyn FnMut(Vec<u8>, Vec<u8>),
    ) -> Result<bool, ProjectionError> {
        let path = self.path(name);
        let wrap = |source| ProjectionError::Checkpoint {
            name: name.to_owned(),
            source,
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(wrap(source)),
        };
        match read(&mut BufReader::with_capacity(BLOCK, file), row) {
            Ok(_) => Ok(true),
            Err(ReadFailure::Io(source)) => Err(wrap(source)),
            Err(ReadFailure::Damage(d)) => {
                tracing::warn!(
                    file = %path.display(),
                    offset = d.offset,
                    reason = d.reason,
                    "a projection checkpoint is damaged; the projection is rebuilt from the log"
                );
                let _ = std::fs::rename(&path, path.with_extension("ckpt.damaged"));
                Ok(false)
            }
        }
    }

    fn save(&self, name: &str, rows: &dyn RowSource) -> Result<(), ProjectionError> {
        let wrap = |source| ProjectionError::Checkpoint {
            name: name.to_owned(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(wrap)?;
        let path = self.path(name);
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let file = File::create(&tmp)?;
            let mut w = Writer::new(BufWriter::with_capacity(BLOCK, Paced::new(file)))?;
            rows.for_each_row(&mut |k, v| w.row(k, v))?;
            let file = w
                .finish(rows.position())?
                .into_inner()
                .map_err(|e| e.into_error())?
                .into_inner();
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(wrap)
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
        assert!(d.offset > HEADER as u64, "{d:?}");
        assert_eq!(d.reason, "a block's checksum does not match");
        let cut = &bytes[..bytes.len() - 10];
        assert_eq!(decode(cut).unwrap_err().reason, "a block is cut short");
        let mut header = bytes.clone();
        header[9] ^= 1;
        assert_eq!(decode(&header).unwrap_err().offset, 0);
    }

    #[test]
    fn a_file_saved_a_block_at_a_time_loads_back_row_by_row_and_a_damaged_one_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCheckpoints::new(&dir.path().join("projections"));
        // About 12 MB: past the first sync step.
        let m = rows(80_000);
        store.save("audit", &m).unwrap();
        let bytes = std::fs::read(store.path("audit")).unwrap();
        assert_eq!(bytes, encode(&m), "the file is the documented encoding");
        let mut back = Map::new();
        assert!(store
            .load("audit", &mut |k, v| {
                back.insert(k, v);
            })
            .unwrap());
        assert_eq!(back, m);
        assert!(
            !store.load("tokens", &mut |_, _| {}).unwrap(),
            "no file, no copy"
        );
        let mut changed = bytes.clone();
        let at = changed.len() / 2;
        changed[at] ^= 1;
        std::fs::write(store.path("audit"), &changed).unwrap();
        assert!(!store.load("audit", &mut |_, _| {}).unwrap());
        assert!(!store.path("audit").exists());
        assert!(store.path("audit").with_extension("ckpt.damaged").exists());
    }
}
