//! Reading and rewriting a stopped server's segment files the way someone with access to the
//! disk could: by hand, following `docs/log-format.md`, without the server's code paths.

use authledger::store::segments::{encode_frame, header, record_crc, FRAME, HEADER, LOG_DIR};
use std::path::{Path, PathBuf};

/// A record as found in a segment file.
#[derive(Debug, Clone)]
pub struct Found {
    pub position: u64,
    pub payload: Vec<u8>,
    pub file: PathBuf,
    /// Offset of the record's frame in its file.
    pub offset: u64,
}

pub fn segments(data_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir.join(LOG_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

/// Every record of every segment, parsed by hand (checksums checked).
pub fn records(data_dir: &Path) -> Vec<Found> {
    let mut out = Vec::new();
    for file in segments(data_dir) {
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(&bytes[..8], b"ALOGSEG1");
        let mut at = HEADER as usize;
        while at + FRAME as usize <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            if len == 0 {
                break;
            }
            let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
            let position = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
            let payload = bytes[at + 16..at + 16 + len].to_vec();
            assert_eq!(record_crc(position, &payload), crc, "record {position}");
            out.push(Found {
                position,
                payload,
                file: file.clone(),
                offset: at as u64,
            });
            at += 16 + len;
        }
    }
    out
}

/// Replaces the log with one segment holding `records` (valid frames and checksums), as a
/// forger who knows the format would: only the hash chain can tell.
pub fn rewrite(data_dir: &Path, records: &[(u64, Vec<u8>)]) {
    let dir = data_dir.join(LOG_DIR);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".seg") || name.ends_with(".idx") || name == "tail.meta" {
            std::fs::remove_file(p).unwrap();
        }
    }
    let base = records.first().map_or(1, |r| r.0);
    let mut bytes = Vec::new();
    for (position, payload) in records {
        encode_frame(&mut bytes, *position, payload);
    }
    let size = HEADER + bytes.len() as u64;
    let mut file = header(base, size).to_vec();
    file.extend_from_slice(&bytes);
    std::fs::write(dir.join(format!("{base:020}.seg")), file).unwrap();
}

/// Flips one bit of a file at `offset`, as a bad disk or a hand edit would.
pub fn flip(file: &Path, offset: u64) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[offset as usize] ^= 0x01;
    std::fs::write(file, bytes).unwrap();
}

pub fn as_pairs(found: &[Found]) -> Vec<(u64, Vec<u8>)> {
    found
        .iter()
        .map(|f| (f.position, f.payload.clone()))
        .collect()
}
