//! The embedded log's medium: segment files of our own format (`docs/log-format.md`).
//!
//! `<data dir>/log/` holds:
//! - `<first position, 20 digits>.seg`: a 32-byte header, then records back to back. Each
//!   record is `length: u32 LE`, `crc: u32 LE` (CRC32C of the position's 8 bytes and the
//!   payload), `position: u64 LE`, then `length` bytes of payload (the event's JSON, which
//!   never ends in a zero byte). The active segment is preallocated to its full size, so its
//!   unwritten tail reads as zeros and a full disk shows when a segment is made, before
//!   anything is written; a sealed segment is cut to its data.
//! - `<first position>.idx`: the sparse index of a sealed segment (a position and its offset
//!   every [`INDEX_EVERY`] bytes of records), rebuilt by a scan when missing or damaged.
//! - `<name>.meta`: the log's small metadata (checkpoint, compacted runs, verified mark), each
//!   `magic, length, crc, bytes`, replaced by rename.
//!
//! Recovery reads the newest segment only (at most one segment, whatever the log's length);
//! the offset the last checkpoint saw durable tells a torn write after it from damage before
//! it. A last
//! record that was never completely written (a torn write: its bytes run past the segment or
//! into the zeroed tail) is cut off with a warning naming its position and size; a complete
//! record that fails its checksum anywhere is corruption, reported with the file and offset
//! and never dropped.

use super::log::{Medium, RawIter, Record, WriteFailure};
use super::{Corruption, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Directory of the log inside a data directory.
pub const LOG_DIR: &str = "log";
/// Magic of a segment header.
pub const SEGMENT_MAGIC: &[u8; 8] = b"ALOGSEG1";
/// Magic of a sparse index file.
const INDEX_MAGIC: &[u8; 8] = b"ALOGIDX1";
/// Magic of a metadata file.
const META_MAGIC: &[u8; 8] = b"ALOGMET1";
/// Bytes of a segment header.
pub const HEADER: u64 = 32;
/// Bytes of a record's frame before its payload.
pub const FRAME: u64 = 16;
/// A sparse index entry every this many bytes of records.
pub const INDEX_EVERY: u64 = 4096;
/// Default size of a segment.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// The metadata file that tells recovery where the last checkpoint left the active segment.
const TAIL_META: &str = "tail";

fn io(context: &str, e: std::io::Error) -> StoreError {
    StoreError::io(context, e)
}

fn is_no_space(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull
}

/// The CRC of a record: over its position and payload.
pub fn record_crc(position: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&position.to_le_bytes()), payload)
}

fn segment_name(base: u64) -> String {
    format!("{base:020}.seg")
}

struct Segment {
    base: u64,
    path: PathBuf,
    file: File,
    /// End of the durable records.
    len: AtomicU64,
    /// Position and offset of a record every [`INDEX_EVERY`] bytes, ascending.
    sparse: RwLock<Option<Vec<(u64, u64)>>>,
}

impl Segment {
    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn corruption(&self, offset: u64, position: Option<u64>, reason: String) -> StoreError {
        StoreError::Corrupted(Box::new(Corruption {
            position,
            file: self.path.display().to_string(),
            offset,
            reason,
        }))
    }

    /// Reads the frame at `offset`: `Ok(None)` at the end of the durable records.
    fn frame_at(&self, offset: u64, end: u64) -> Result<Option<(u64, Vec<u8>, u64)>, StoreError> {
        if offset + FRAME > end {
            return Ok(None);
        }
        let mut head = [0u8; FRAME as usize];
        self.file
            .read_exact_at(&mut head, offset)
            .map_err(|e| io(&format!("reading {}", self.name()), e))?;
        let (length, crc, position) = parse_frame(&head);
        self.check_length(offset, end, length)?;
        let mut payload = vec![0u8; length as usize];
        self.file
            .read_exact_at(&mut payload, offset + FRAME)
            .map_err(|e| io(&format!("reading {}", self.name()), e))?;
        self.check_crc(offset, position, crc, &payload)?;
        Ok(Some((position, payload, offset + FRAME + length)))
    }

    /// A frame's claimed length must fit before the end of the durable records.
    fn check_length(&self, offset: u64, end: u64, length: u64) -> Result<(), StoreError> {
        if length == 0 || offset + FRAME + length > end {
            return Err(self.corruption(
                offset,
                None,
                format!("a record claims {length} bytes, past the end of the segment's records"),
            ));
        }
        Ok(())
    }

    /// A frame's checksum must match its position and payload.
    fn check_crc(
        &self,
        offset: u64,
        position: u64,
        crc: u32,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        if record_crc(position, payload) != crc {
            return Err(self.corruption(
                offset,
                Some(position),
                "the record's checksum does not match its bytes".into(),
            ));
        }
        Ok(())
    }

    /// The sparse index, loaded from its file or rebuilt by a scan.
    fn sparse(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        if let Some(s) = self.sparse.read().map_err(|_| poisoned())?.as_ref() {
            return Ok(s.clone());
        }
        let built = match read_index_file(&self.path.with_extension("idx")) {
            Some(s) => s,
            None => {
                let mut entries = Vec::new();
                let end = self.len.load(Ordering::SeqCst);
                let mut offset = HEADER;
                let mut next_entry = HEADER;
                while let Some((position, _, next)) = self.frame_at(offset, end)? {
                    if offset >= next_entry {
                        entries.push((position, offset));
                        next_entry = offset + INDEX_EVERY;
                    }
                    offset = next;
                }
                entries
            }
        };
        *self.sparse.write().map_err(|_| poisoned())? = Some(built.clone());
        Ok(built)
    }

    /// The offset to start reading at for `position`: the last indexed record at or before it.
    fn start_for(&self, position: u64) -> Result<u64, StoreError> {
        let sparse = self.sparse()?;
        let i = sparse.partition_point(|(p, _)| *p <= position);
        Ok(if i == 0 { HEADER } else { sparse[i - 1].1 })
    }
}

fn parse_frame(head: &[u8; FRAME as usize]) -> (u64, u32, u64) {
    let length = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let mut p = [0u8; 8];
    p.copy_from_slice(&head[8..16]);
    (length, crc, u64::from_le_bytes(p))
}

fn poisoned() -> StoreError {
    StoreError::failed("a lock of the segment files was poisoned")
}

/// The header of a segment starting at `base`, preallocated to `size` bytes.
pub fn header(base: u64, size: u64) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    h[12..20].copy_from_slice(&base.to_le_bytes());
    h[20..28].copy_from_slice(&size.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Writes the sparse index of the segment at `segment_path`. It is rebuilt by a scan when
/// missing, so a failure costs time only; a stale one is removed rather than left behind.
fn save_sparse(segment_path: &Path, entries: &[(u64, u64)]) {
    let mut body = Vec::with_capacity(entries.len() * 16);
    for (p, o) in entries {
        body.extend_from_slice(&p.to_le_bytes());
        body.extend_from_slice(&o.to_le_bytes());
    }
    let path = segment_path.with_extension("idx");
    if let Err(e) = write_atomically(&path, &wrap_meta(INDEX_MAGIC, &body)) {
        tracing::warn!(error = %e, file = %path.display(), "writing a segment's sparse index failed");
        let _ = std::fs::remove_file(&path);
    }
}

fn read_index_file(path: &Path) -> Option<Vec<(u64, u64)>> {
    let bytes = std::fs::read(path).ok()?;
    let body = unwrap_meta(&bytes, INDEX_MAGIC)?;
    Some(
        body.chunks_exact(16)
            .map(|c| {
                let mut p = [0u8; 8];
                let mut o = [0u8; 8];
                p.copy_from_slice(&c[..8]);
                o.copy_from_slice(&c[8..]);
                (u64::from_le_bytes(p), u64::from_le_bytes(o))
            })
            .collect(),
    )
}

fn wrap_meta(magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 20);
    out.extend_from_slice(magic);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn unwrap_meta<'a>(bytes: &'a [u8], magic: &[u8; 8]) -> Option<&'a [u8]> {
    if bytes.len() < 20 || &bytes[..8] != magic {
        return None;
    }
    let len = usize::try_from(u64::from_le_bytes(bytes[8..16].try_into().ok()?)).ok()?;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    let body = bytes.get(20..20 + len)?;
    (crc32c::crc32c(body) == crc).then_some(body)
}

/// The bytes of a metadata file holding `body`.
pub fn meta_file(body: &[u8]) -> Vec<u8> {
    wrap_meta(META_MAGIC, body)
}

/// The body of a metadata file, if intact.
pub fn meta_body(bytes: &[u8]) -> Option<&[u8]> {
    unwrap_meta(bytes, META_MAGIC)
}

/// Writes `bytes` to `path` through a temporary file, synced and renamed, and syncs the
/// directory: a crash leaves the old file or the new one, never half of one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

struct Active {
    segment: Arc<Segment>,
    /// Offset of the next sparse index entry.
    next_entry: u64,
    size: u64,
}

/// The segment files of one data directory.
pub struct SegmentFiles {
    dir: PathBuf,
    segment_bytes: u64,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    active: Mutex<Option<Active>>,
    last: Mutex<Option<(u64, Vec<u8>)>>,
    /// Set when opened past damage: the log serves what precedes it and takes no writes.
    read_only: Mutex<Option<String>>,
}

/// What opening found at the tail of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Damage in the newest segment that an open past damage stopped at.
    pub damaged: Option<String>,
}

impl SegmentFiles {
    /// Opens (or creates) the log in `dir`. New segments get `segment_bytes`.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Self, Recovery), StoreError> {
        Self::open_with(dir, segment_bytes, false)
    }

    /// Opens a log whose newest segment may be damaged: it ends before the first bad record
    /// (nothing is cut or changed on disk) and takes no writes. For `serve --allow-unverified`.
    pub fn open_past_damage(
        dir: &Path,
        segment_bytes: u64,
    ) -> Result<(Self, Recovery), StoreError> {
        Self::open_with(dir, segment_bytes, true)
    }

    fn open_with(
        dir: &Path,
        segment_bytes: u64,
        past_damage: bool,
    ) -> Result<(Self, Recovery), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the log directory", e))?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io("listing the log directory", e))? {
            let entry = entry.map_err(|e| io("listing the log directory", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".seg") {
                if let Ok(base) = stem.parse::<u64>() {
                    bases.push(base);
                }
            }
            // A rewrite that did not finish is never trusted: the segment it replaces stands.
            if name.ends_with(".seg.new") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        bases.sort_unstable();
        let files = Self {
            dir: dir.to_owned(),
            segment_bytes: segment_bytes.max(HEADER + FRAME + 1024),
            segments: RwLock::new(BTreeMap::new()),
            active: Mutex::new(None),
            last: Mutex::new(None),
            read_only: Mutex::new(None),
        };
        let tail = files.load_meta(TAIL_META)?.and_then(|b| {
            let base = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
            let offset = u64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
            Some((base, offset))
        });
        let mut recovery = Recovery::default();
        let count = bases.len();
        for (i, base) in bases.into_iter().enumerate() {
            let path = dir.join(segment_name(base));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io(&format!("opening {}", path.display()), e))?;
            let size = file
                .metadata()
                .map_err(|e| io(&format!("reading {}", path.display()), e))?
                .len();
            let segment = Arc::new(Segment {
                base,
                path: path.clone(),
                file,
                len: AtomicU64::new(size),
                sparse: RwLock::new(None),
            });
            check_header(&segment, size)?;
            if i + 1 < count && size == declared_size(&segment)? && size > HEADER {
                // Never sealed (preallocated to its full size): find its end as for the newest.
                let (end, _, _) = recover_tail(&segment, size, u64::MAX)?;
                segment.len.store(end, Ordering::SeqCst);
            }
            if i + 1 == count {
                let known = tail.filter(|(b, _)| *b == base).map_or(HEADER, |(_, o)| o);
                let (end, last, entries) = match recover_tail_or_prefix(&segment, size, known) {
                    Ok(t) => t,
                    Err(damage) => match *damage {
                        (StoreError::Corrupted(c), prefix) if past_damage => {
                            let reason = format!(
                                "the log is damaged at offset {} of {}; serving read-only up to \
                                 the event before it (--allow-unverified)",
                                c.offset, c.file
                            );
                            tracing::error!(error = %c, "opening the log past damage: it ends before the bad record and takes no writes");
                            *files.read_only.lock().map_err(|_| poisoned())? = Some(reason);
                            recovery.damaged = Some(c.to_string());
                            prefix
                        }
                        (e, _) => return Err(e),
                    },
                };
                segment.len.store(end, Ordering::SeqCst);
                *segment.sparse.write().map_err(|_| poisoned())? = Some(entries);
                if let Some(l) = last {
                    *files.last.lock().map_err(|_| poisoned())? = Some(l);
                }
                let next_entry = segment
                    .sparse()?
                    .last()
                    .map_or(HEADER, |(_, o)| o + INDEX_EVERY);
                *files.active.lock().map_err(|_| poisoned())? = Some(Active {
                    segment: segment.clone(),
                    next_entry,
                    size,
                });
            }
            files
                .segments
                .write()
                .map_err(|_| poisoned())?
                .insert(base, segment);
        }
        // The last record of the log may sit in an earlier segment if the newest is empty.
        if files.last.lock().map_err(|_| poisoned())?.is_none() {
            let segs: Vec<Arc<Segment>> = files
                .segments
                .read()
                .map_err(|_| poisoned())?
                .values()
                .rev()
                .cloned()
                .collect();
            for s in segs {
                let end = s.len.load(Ordering::SeqCst);
                let mut offset = s.start_for(u64::MAX)?;
                let mut last = None;
                while let Some((p, bytes, next)) = s.frame_at(offset, end)? {
                    last = Some((p, bytes));
                    offset = next;
                }
                if last.is_some() {
                    *files.last.lock().map_err(|_| poisoned())? = last;
                    break;
                }
            }
        }
        Ok((files, recovery))
    }

    /// The segment files, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments
            .read()
            .map(|s| s.values().map(|s| s.path.clone()).collect())
            .unwrap_or_default()
    }

    fn segment_for(&self, position: u64) -> Result<Option<Arc<Segment>>, StoreError> {
        Ok(self
            .segments
            .read()
            .map_err(|_| poisoned())?
            .range(..=position)
            .next_back()
            .map(|(_, s)| s.clone()))
    }

    /// Makes a new segment starting at `base`, preallocated; nothing is left behind on failure.
    fn create_segment(&self, base: u64, size: u64) -> Result<Arc<Segment>, WriteFailure> {
        let path = self.dir.join(segment_name(base));
        // Made complete under a temporary name, then renamed: a crash never leaves a segment
        // without its header.
        let fresh = path.with_extension("seg.new");
        let made = (|| -> std::io::Result<File> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&fresh)?;
            preallocate(&file, size)?;
            file.write_all_at(&header(base, size), 0)?;
            file.sync_all()?;
            std::fs::rename(&fresh, &path)?;
            File::open(&self.dir)?.sync_all()?;
            Ok(file)
        })();
        match made {
            Ok(file) => Ok(Arc::new(Segment {
                base,
                path,
                file,
                len: AtomicU64::new(HEADER),
                sparse: RwLock::new(Some(Vec::new())),
            })),
            Err(e) => {
                let _ = std::fs::remove_file(&fresh);
                let what = format!("making log segment {}: {e}", path.display());
                if is_no_space(&e) {
                    Err(WriteFailure::Unavailable(format!(
                        "{what}; free disk space and the server takes writes again"
                    )))
                } else {
                    Err(WriteFailure::Unavailable(what))
                }
            }
        }
    }

    /// Seals the active segment: its sparse index to a file, the file cut to its records.
    fn seal(&self, active: &Active) -> Result<(), StoreError> {
        let s = &active.segment;
        let end = s.len.load(Ordering::SeqCst);
        s.file
            .set_len(end)
            .map_err(|e| io(&format!("sealing {}", s.name()), e))?;
        s.file
            .sync_all()
            .map_err(|e| io(&format!("sealing {}", s.name()), e))?;
        save_sparse(&s.path, &s.sparse()?);
        Ok(())
    }

    /// Seals the active segment now, so the next write opens a new one (compaction rewrites
    /// sealed segments only).
    fn roll(&self) -> Result<(), StoreError> {
        let mut active = self.active.lock().map_err(|_| poisoned())?;
        if let Some(a) = active.as_ref() {
            if a.segment.len.load(Ordering::SeqCst) > HEADER {
                self.seal(a)?;
                *active = None;
            }
        }
        Ok(())
    }

    /// Rewrites a sealed segment without `gone`, through a new file renamed over it.
    fn rewrite(
        &self,
        segment: &Arc<Segment>,
        gone: &BTreeSet<u64>,
    ) -> Result<Arc<Segment>, StoreError> {
        let end = segment.len.load(Ordering::SeqCst);
        let tmp = segment.path.with_extension("seg.new");
        let mut out = Vec::with_capacity(end as usize);
        out.extend_from_slice(&header(segment.base, end));
        let mut sparse = Vec::new();
        let mut next_entry = HEADER;
        let mut offset = HEADER;
        while let Some((position, payload, next)) = segment.frame_at(offset, end)? {
            offset = next;
            if gone.contains(&position) {
                continue;
            }
            let at = out.len() as u64;
            if at >= next_entry {
                sparse.push((position, at));
                next_entry = at + INDEX_EVERY;
            }
            encode_frame(&mut out, position, &payload);
        }
        let new_len = out.len() as u64;
        let file = (|| -> std::io::Result<File> {
            let mut f = File::create(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &segment.path)?;
            File::open(&self.dir)?.sync_all()?;
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&segment.path)
        })()
        .map_err(|e| io(&format!("rewriting {}", segment.name()), e))?;
        save_sparse(&segment.path, &sparse);
        Ok(Arc::new(Segment {
            base: segment.base,
            path: segment.path.clone(),
            file,
            len: AtomicU64::new(new_len),
            sparse: RwLock::new(Some(sparse)),
        }))
    }

    /// Remembers where the active segment's durable records end, so recovery can tell a torn
    /// write after it from corruption before it.
    fn save_tail_now(&self) -> Result<(), StoreError> {
        let (base, end) = {
            let active = self.active.lock().map_err(|_| poisoned())?;
            match active.as_ref() {
                Some(a) => (a.segment.base, a.segment.len.load(Ordering::SeqCst)),
                None => return Ok(()),
            }
        };
        let mut b = base.to_le_bytes().to_vec();
        b.extend_from_slice(&end.to_le_bytes());
        self.save_meta(TAIL_META, &b)
    }
}

/// The size a segment's header says it was preallocated to.
fn declared_size(s: &Segment) -> Result<u64, StoreError> {
    let mut h = [0u8; 8];
    s.file
        .read_exact_at(&mut h, 20)
        .map_err(|e| io(&format!("reading {}", s.name()), e))?;
    Ok(u64::from_le_bytes(h))
}

fn check_header(s: &Segment, size: u64) -> Result<(), StoreError> {
    let mut h = [0u8; HEADER as usize];
    if size < HEADER {
        return Err(s.corruption(0, None, "the segment is shorter than its header".into()));
    }
    s.file
        .read_exact_at(&mut h, 0)
        .map_err(|e| io(&format!("reading {}", s.name()), e))?;
    let crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if &h[..8] != SEGMENT_MAGIC || crc32c::crc32c(&h[..28]) != crc {
        return Err(s.corruption(0, None, "the segment header is damaged".into()));
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != 1 {
        return Err(s.corruption(
            0,
            None,
            format!("the segment is of format version {version}, which this release does not read; use a newer release"),
        ));
    }
    let base = u64::from_le_bytes(h[12..20].try_into().unwrap_or([0; 8]));
    if base != s.base {
        return Err(s.corruption(
            0,
            None,
            format!(
                "the segment header says it starts at {base}, its name says {}",
                s.base
            ),
        ));
    }
    Ok(())
}

/// What recovery found: the end of the records, the last one, and the sparse index entries.
type Tail = (u64, Option<(u64, Vec<u8>)>, Vec<(u64, u64)>);

/// Finds the end of the records of the newest segment, reading it whole (it is at most one
/// segment long, whatever the log's length). `known` is where the last checkpoint saw the
/// durable records end: a bad record before it is corruption, whatever it looks like.
fn recover_tail(s: &Segment, size: u64, known: u64) -> Result<Tail, StoreError> {
    recover_tail_or_prefix(s, size, known).map_err(|damage| damage.0)
}

/// Damage found by recovery, with the records before it.
type Damage = Box<(StoreError, Tail)>;

/// [`recover_tail`], answering on damage the error and the records before it.
fn recover_tail_or_prefix(s: &Segment, size: u64, known: u64) -> Result<Tail, Damage> {
    let io_err = |e: StoreError| Box::new((e, (HEADER, None, Vec::new())));
    let mut bytes = Vec::with_capacity(size as usize);
    (&s.file)
        .seek(SeekFrom::Start(0))
        .and_then(|_| (&s.file).read_to_end(&mut bytes))
        .map_err(|e| io_err(io(&format!("reading {}", s.name()), e)))?;
    let mut offset = HEADER as usize;
    let mut last = None;
    let mut entries = Vec::new();
    let mut next_entry = HEADER as usize;
    while let Some(head) = bytes.get(offset..offset + FRAME as usize) {
        let head: &[u8; FRAME as usize] = head.try_into().unwrap_or(&[0; FRAME as usize]);
        let (length, crc, position) = parse_frame(head);
        if length == 0 && crc == 0 && position == 0 {
            // The zeroed tail, unless something was written beyond it.
            if let Some(stray) = bytes[offset..].iter().rposition(|b| *b != 0) {
                let cut = stray as u64 + 1;
                if (offset as u64) < known {
                    return Err(Box::new((
                        s.corruption(
                            offset as u64,
                            None,
                            "a record's frame was zeroed inside the durable records".into(),
                        ),
                        (offset as u64, last, entries),
                    )));
                }
                return torn(s, offset, cut, last, entries).map_err(io_err);
            }
            break;
        }
        let end = offset + FRAME as usize + length as usize;
        // Complete: every byte it claims is there and its JSON's last byte is not a zero.
        let complete = length > 0 && end <= bytes.len() && bytes[end - 1] != 0;
        let zeros_after = bytes
            .get(end..)
            .is_none_or(|rest| rest.iter().all(|b| *b == 0));
        match bytes.get(offset + FRAME as usize..end) {
            Some(payload) if record_crc(position, payload) == crc => {
                if offset >= next_entry {
                    entries.push((position, offset as u64));
                    next_entry = offset + INDEX_EVERY as usize;
                }
                last = Some((position, payload.to_vec()));
                offset = end;
            }
            _ if !complete && zeros_after && (offset as u64) >= known => {
                let written = bytes[offset..]
                    .iter()
                    .rposition(|b| *b != 0)
                    .map_or(0, |r| r as u64 + 1);
                return torn(s, offset, written, last, entries).map_err(io_err);
            }
            _ => {
                return Err(Box::new((
                    s.corruption(
                        offset as u64,
                        Some(position),
                        "the record's checksum does not match its bytes".into(),
                    ),
                    (offset as u64, last, entries),
                )))
            }
        }
    }
    Ok((offset as u64, last, entries))
}

fn torn(
    s: &Segment,
    offset: usize,
    bytes: u64,
    last: Option<(u64, Vec<u8>)>,
    entries: Vec<(u64, u64)>,
) -> Result<Tail, StoreError> {
    let zeros = vec![0u8; bytes as usize];
    s.file
        .write_all_at(&zeros, offset as u64)
        .and_then(|_| s.file.sync_data())
        .map_err(|e| io(&format!("cutting the torn record off {}", s.name()), e))?;
    let after = last.as_ref().map_or(0, |(p, _)| *p);
    tracing::warn!(
        segment = %s.name(),
        offset,
        bytes,
        after_position = after,
        "the last record of the log was never completely written (a crash during a write); it was cut off"
    );
    Ok((offset as u64, last, entries))
}

/// Appends the record of `payload` at `position` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, position: u64, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&record_crc(position, payload).to_le_bytes());
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reserves the blocks of a new segment, so that a full disk shows here and not in the middle
/// of a group.
fn preallocate(file: &File, size: u64) -> std::io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::NOSPC => Err(std::io::Error::from_raw_os_error(28)),
        Err(_) => {
            // A file system without fallocate: write the zeros out.
            let chunk = vec![0u8; 1 << 20];
            let mut written = 0u64;
            while written < size {
                let n = (size - written).min(chunk.len() as u64) as usize;
                file.write_all_at(&chunk[..n], written)?;
                written += n as u64;
            }
            Ok(())
        }
    }
}

impl Medium for SegmentFiles {
    fn write(&self, records: &[Record]) -> Result<(), WriteFailure> {
        let failed = |e: StoreError| WriteFailure::Failed(e.to_string());
        if let Some(reason) = self
            .read_only
            .lock()
            .map_err(|_| failed(poisoned()))?
            .clone()
        {
            return Err(WriteFailure::Unavailable(reason));
        }
        let mut frames = Vec::new();
        // Offsets of each record within `frames`.
        let mut starts = Vec::with_capacity(records.len());
        for r in records {
            if r.bytes.last().is_none_or(|b| *b == 0) {
                return Err(WriteFailure::Unavailable(
                    "an event's stored form is empty or ends in a zero byte".into(),
                ));
            }
            starts.push(frames.len() as u64);
            encode_frame(&mut frames, r.position, &r.bytes);
        }
        let mut active = self.active.lock().map_err(|_| failed(poisoned()))?;
        let room = active.as_ref().map_or(0, |a| {
            a.size.saturating_sub(a.segment.len.load(Ordering::SeqCst))
        });
        if (frames.len() as u64) > room {
            // A new segment, made (and its space reserved) before anything of the group is
            // written: a full disk refuses the whole group and leaves the log as it was.
            let size = self.segment_bytes.max(HEADER + frames.len() as u64);
            let Some(first) = records.first() else {
                return Ok(());
            };
            // The full segment is sealed (cut to its records) before the next is made, so that
            // only the newest segment ever has a preallocated tail.
            if let Some(old) = active.as_mut() {
                if old.size > old.segment.len.load(Ordering::SeqCst) {
                    self.seal(old)
                        .map_err(|e| WriteFailure::Unavailable(e.to_string()))?;
                    old.size = old.segment.len.load(Ordering::SeqCst);
                }
            }
            let segment = self.create_segment(first.position, size)?;
            self.segments
                .write()
                .map_err(|_| failed(poisoned()))?
                .insert(segment.base, segment.clone());
            *active = Some(Active {
                segment,
                next_entry: HEADER,
                size,
            });
        }
        let Some(a) = active.as_mut() else {
            return Err(WriteFailure::Unavailable("no active segment".into()));
        };
        let at = a.segment.len.load(Ordering::SeqCst);
        a.segment
            .file
            .write_all_at(&frames, at)
            .and_then(|_| a.segment.file.sync_data())
            .map_err(|e| WriteFailure::Failed(format!("writing {}: {e}", a.segment.name())))?;
        {
            let mut sparse = a.segment.sparse.write().map_err(|_| failed(poisoned()))?;
            let sparse = sparse.get_or_insert_with(Vec::new);
            for (r, start) in records.iter().zip(&starts) {
                let offset = at + start;
                if offset >= a.next_entry {
                    sparse.push((r.position, offset));
                    a.next_entry = offset + INDEX_EVERY;
                }
            }
        }
        a.segment
            .len
            .store(at + frames.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    fn read(&self, position: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(s) = self.segment_for(position)? else {
            return Ok(None);
        };
        let end = s.len.load(Ordering::SeqCst);
        let mut offset = s.start_for(position)?;
        while let Some((p, bytes, next)) = s.frame_at(offset, end)? {
            if p == position {
                return Ok(Some(bytes));
            }
            if p > position {
                return Ok(None);
            }
            offset = next;
        }
        Ok(None)
    }

    fn scan(&self, from: u64, to: u64) -> RawIter<'_> {
        let segments: Vec<Arc<Segment>> = match self.segments.read() {
            Ok(s) => {
                let first = s.range(..=from).next_back().map_or(0, |(b, _)| *b);
                s.range(first..=to).map(|(_, s)| s.clone()).collect()
            }
            Err(_) => return Box::new(std::iter::once(Err(poisoned()))),
        };
        Box::new(SegmentScan {
            segments: segments.into_iter(),
            current: None,
            from,
            to,
            done: false,
        })
    }

    fn last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self.last.lock().map_err(|_| poisoned())?.clone())
    }

    fn remove(&self, positions: &BTreeSet<u64>) -> Result<(), StoreError> {
        let Some(max) = positions.last().copied() else {
            return Ok(());
        };
        // Compaction never reaches the head, but it may reach into the active segment: seal it.
        let active_base = self
            .active
            .lock()
            .map_err(|_| poisoned())?
            .as_ref()
            .map(|a| a.segment.base);
        if active_base.is_some_and(|b| b <= max) {
            self.roll()?;
        }
        let affected: Vec<Arc<Segment>> = {
            let segs = self.segments.read().map_err(|_| poisoned())?;
            let mut out: Vec<Arc<Segment>> = Vec::new();
            for p in positions {
                if let Some((_, s)) = segs.range(..=*p).next_back() {
                    if out.last().is_none_or(|l| l.base != s.base) {
                        out.push(s.clone());
                    }
                }
            }
            out
        };
        for s in affected {
            let rewritten = self.rewrite(&s, positions)?;
            self.segments
                .write()
                .map_err(|_| poisoned())?
                .insert(rewritten.base, rewritten);
        }
        Ok(())
    }

    fn save_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomically(
            &self.dir.join(format!("{name}.meta")),
            &wrap_meta(META_MAGIC, bytes),
        )
        .map_err(|e| io(&format!("saving the log's {name}"), e))
    }

    fn load_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.dir.join(format!("{name}.meta"));
        match std::fs::read(&path) {
            Ok(bytes) => match unwrap_meta(&bytes, META_MAGIC) {
                Some(body) => Ok(Some(body.to_vec())),
                None => {
                    tracing::warn!(file = %path.display(), "a metadata file of the log is damaged; it is ignored and rebuilt");
                    Ok(None)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&format!("reading {}", path.display()), e)),
        }
    }

    fn save_tail(&self) -> Result<(), StoreError> {
        self.save_tail_now()
    }

    fn describe(&self, position: u64) -> String {
        match self.segment_for(position) {
            Ok(Some(s)) => format!("in segment {}", s.path.display()),
            _ => "in no segment".into(),
        }
    }
}

/// Reads a segment sequentially with `pread` from an offset of its own. (A clone of a `File`
/// shares one file offset with the original and every other clone, so a seek and a read on a
/// clone race with every other scan of the segment: two concurrent scans read each other's
/// bytes and report damage that is not there.)
struct PositionalReader {
    segment: Arc<Segment>,
    offset: u64,
}

impl Read for PositionalReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.segment.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Reads the records of consecutive segments in order, in large sequential reads.
struct SegmentScan {
    segments: std::vec::IntoIter<Arc<Segment>>,
    current: Option<(Arc<Segment>, std::io::BufReader<PositionalReader>, u64, u64)>,
    from: u64,
    to: u64,
    done: bool,
}

impl SegmentScan {
    fn open_next(&mut self) -> Result<bool, StoreError> {
        let Some(s) = self.segments.next() else {
            return Ok(false);
        };
        let offset = s.start_for(self.from)?;
        let end = s.len.load(Ordering::SeqCst);
        let reader = PositionalReader {
            segment: s.clone(),
            offset,
        };
        self.current = Some((
            s,
            std::io::BufReader::with_capacity(1 << 20, reader),
            offset,
            end,
        ));
        Ok(true)
    }

    fn step(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let Some((s, reader, offset, end)) = self.current.as_mut() else {
                return Ok(None);
            };
            if *offset + FRAME > *end {
                self.current = None;
                continue;
            }
            let mut head = [0u8; FRAME as usize];
            reader
                .read_exact(&mut head)
                .map_err(|e| io(&format!("reading {}", s.name()), e))?;
            let (length, crc, position) = parse_frame(&head);
            s.check_length(*offset, *end, length)?;
            let mut payload = vec![0u8; length as usize];
            reader
                .read_exact(&mut payload)
                .map_err(|e| io(&format!("reading {}", s.name()), e))?;
            s.check_crc(*offset, position, crc, &payload)?;
            *offset += FRAME + length;
            if position < self.from {
                continue;
            }
            if position > self.to {
                return Ok(None);
            }
            return Ok(Some((position, payload)));
        }
    }
}

impl Iterator for SegmentScan {
    type Item = Result<(u64, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_interleaved_scans_of_one_segment_each_read_every_record_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = SegmentFiles::open(dir.path(), DEFAULT_SEGMENT_BYTES).unwrap();
        // Three read buffers' worth of records, so that each scan goes back to the file while
        // the other is half-way.
        let records: Vec<Record> = (1..=3000u64)
            .map(|p| Record {
                position: p,
                bytes: format!("{{\"n\":{p},\"pad\":\"{}\"}}", "x".repeat(1000)).into_bytes(),
            })
            .collect();
        files.write(&records).unwrap();
        let (mut a, mut b) = (files.scan(1, 3000), files.scan(1, 3000));
        for p in 1..=3000u64 {
            assert_eq!(
                a.next().unwrap().unwrap(),
                (p, records[p as usize - 1].bytes.clone())
            );
            assert_eq!(b.next().unwrap().unwrap().0, p);
        }
        assert!(a.next().is_none() && b.next().is_none());
    }
}
