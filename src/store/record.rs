//! An event's stored form: the payload of one record of the log (`docs/log-format.md`, "The
//! event envelope").
//!
//! Two forms are read, told apart by the first byte:
//! - `{`: the JSON envelope (format 1), written by earlier builds and by the sled release, and
//!   still written nowhere else. Imported logs keep it: the chain hashes the stored bytes, so a
//!   record is never re-encoded.
//! - `0x02`: the binary envelope (format 2), written by this build. Fixed-width fields first
//!   (so the stream index and the chain walk read what they need at fixed offsets), then the
//!   stream and type names, then the metadata and the payload as JSON, which keep events
//!   self-describing and their schema versions and upcasters working. It is about 170 bytes an
//!   event smaller than the JSON envelope (field names, hex hashes, an RFC 3339 time and a
//!   text UUID are most of the difference).
//!
//! The binary envelope, integers little-endian:
//!
//! | Offset | Size | Field |
//! |---:|---:|---|
//! | 0 | 1 | `0x02` |
//! | 1 | 8 | position |
//! | 9 | 8 | version in the stream |
//! | 17 | 16 | id (UUIDv7, its 16 bytes) |
//! | 33 | 8 | recorded at: Unix seconds (i64) |
//! | 41 | 4 | recorded at: nanoseconds within the second (u32) |
//! | 45 | 2 | schema version of the payload |
//! | 47 | 32 | `prev_hash`, raw |
//! | 79 | 2 + S | stream name: u16 length, UTF-8 |
//! | | 2 + T | type name: u16 length, UTF-8 |
//! | | 4 + M | metadata: u32 length, JSON |
//! | | rest | the payload (`data`), JSON, to the end |
//!
//! The payload comes last and is JSON, so a stored event never ends in a zero byte, which the
//! segment files' torn-write detection relies on.

use domain::{Event, Metadata, RecordedEvent};
use std::borrow::Cow;
use uuid::Uuid;

/// The first byte of a binary envelope.
pub const BINARY: u8 = 0x02;

/// Bytes before the stream name: the fixed-width fields.
const FIXED: usize = 79;

/// A stored event that cannot be read, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BadRecord(pub String);

impl From<BadRecord> for super::StoreError {
    fn from(e: BadRecord) -> Self {
        super::StoreError::Corrupt(e.0)
    }
}

fn bad(what: impl std::fmt::Display) -> BadRecord {
    BadRecord(what.to_string())
}

/// Encodes an event in the binary envelope.
pub fn encode(event: &RecordedEvent) -> Result<Vec<u8>, BadRecord> {
    let stream = event.stream.as_bytes();
    let type_name = event.event.type_name().as_bytes();
    let stream_len = u16::try_from(stream.len()).map_err(|_| {
        bad(format!(
            "a stream name of {} bytes is too long",
            stream.len()
        ))
    })?;
    let mut prev = [0u8; 32];
    hex::decode_to_slice(&event.prev_hash, &mut prev).map_err(|e| {
        bad(format!(
            "prev_hash {:?} is not a SHA-256: {e}",
            event.prev_hash
        ))
    })?;
    let mut out = Vec::with_capacity(FIXED + 400);
    out.push(BINARY);
    out.extend_from_slice(&event.position.to_le_bytes());
    out.extend_from_slice(&event.version.to_le_bytes());
    out.extend_from_slice(event.id.as_bytes());
    out.extend_from_slice(&event.recorded_at.unix_timestamp().to_le_bytes());
    out.extend_from_slice(&event.recorded_at.nanosecond().to_le_bytes());
    out.extend_from_slice(&event.schema_version.to_le_bytes());
    out.extend_from_slice(&prev);
    out.extend_from_slice(&stream_len.to_le_bytes());
    out.extend_from_slice(stream);
    // Type names are identifiers of the code, a few dozen bytes.
    out.extend_from_slice(&(type_name.len() as u16).to_le_bytes());
    out.extend_from_slice(type_name);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut out, &event.metadata).map_err(bad)?;
    let metadata_len =
        u32::try_from(out.len() - at - 4).map_err(|_| bad("the metadata is larger than 4 GiB"))?;
    out[at..at + 4].copy_from_slice(&metadata_len.to_le_bytes());
    event.event.encode_payload(&mut out).map_err(bad)?;
    Ok(out)
}

/// Decodes a stored event of either form, bringing its payload up to today's schema.
pub fn decode(bytes: &[u8]) -> Result<RecordedEvent, BadRecord> {
    match bytes.first() {
        Some(&BINARY) => {
            let b = Binary::parse(bytes)?;
            let metadata: Metadata = serde_json::from_slice(b.metadata)
                .map_err(|e| bad(format!("event {}: metadata: {e}", b.position)))?;
            let data = std::str::from_utf8(b.data)
                .map_err(|e| bad(format!("event {}: payload: {e}", b.position)))?;
            let event = Event::decode(b.type_name, b.schema_version, data)
                .map_err(|e| bad(format!("event {}: {e}", b.position)))?;
            Ok(RecordedEvent {
                position: b.position,
                stream: b.stream.to_owned(),
                version: b.version,
                id: b.id,
                recorded_at: b.recorded_at()?,
                // Decoding brought the payload up to today's version.
                schema_version: Event::current_version(b.type_name),
                event,
                metadata,
                prev_hash: hex::encode(b.prev_hash),
            })
        }
        _ => serde_json::from_slice(bytes).map_err(bad),
    }
}

/// The envelope fields the stream index needs; the payload is not decoded.
#[derive(Debug, serde::Deserialize)]
pub struct Placement<'a> {
    /// Global position.
    pub position: u64,
    /// The stream.
    #[serde(borrow)]
    pub stream: Cow<'a, str>,
    /// Version within the stream.
    pub version: u64,
}

/// Where a stored event belongs, without decoding its payload.
pub fn placement(bytes: &[u8]) -> Result<Placement<'_>, BadRecord> {
    match bytes.first() {
        Some(&BINARY) => {
            let b = Binary::parse(bytes)?;
            Ok(Placement {
                position: b.position,
                stream: Cow::Borrowed(b.stream),
                version: b.version,
            })
        }
        _ => serde_json::from_slice(bytes).map_err(bad),
    }
}

/// The two fields of a stored event the chain needs.
#[derive(Debug, serde::Deserialize)]
pub struct Link<'a> {
    /// The position the event says it has.
    pub position: u64,
    /// Its link to the event before it, as hex.
    #[serde(borrow)]
    pub prev_hash: Cow<'a, str>,
}

const POSITION_PREFIX: &[u8] = b"{\"position\":";
const PREV_HASH_FIELD: &[u8] = b",\"prev_hash\":\"";

/// The link of a stored event, read at fixed offsets. A JSON envelope is written with
/// `position` first and `prev_hash` last, so both are read at the ends of the bytes without
/// parsing the JSON between (the walk of a long log spends most of its time here otherwise);
/// one in another field order is parsed in full.
pub fn link(bytes: &[u8]) -> Result<Link<'_>, BadRecord> {
    if bytes.first() == Some(&BINARY) {
        fixed_part(bytes)?;
        return Ok(Link {
            position: u64_at(bytes, 1),
            prev_hash: Cow::Owned(hex::encode(&bytes[47..79])),
        });
    }
    let fast = || -> Option<Link<'_>> {
        let rest = bytes.strip_prefix(POSITION_PREFIX)?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 20 || rest.get(digits) != Some(&b',') {
            return None;
        }
        let position = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        let body = bytes.strip_suffix(b"\"}")?;
        let hash = body.get(body.len().checked_sub(64)?..)?;
        let field =
            body.get(body.len().checked_sub(64 + PREV_HASH_FIELD.len())?..body.len() - 64)?;
        if field != PREV_HASH_FIELD || !hash.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        Some(Link {
            position,
            prev_hash: Cow::Borrowed(std::str::from_utf8(hash).ok()?),
        })
    };
    match fast() {
        Some(l) => Ok(l),
        None => serde_json::from_slice(bytes).map_err(bad),
    }
}

/// Checks that a binary envelope holds its fixed-width fields.
fn fixed_part(b: &[u8]) -> Result<(), BadRecord> {
    if b.len() < FIXED {
        return Err(bad(format!(
            "a binary envelope of {} bytes is shorter than its {FIXED} fixed bytes",
            b.len()
        )));
    }
    Ok(())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// A binary envelope's fields, borrowed from its bytes.
struct Binary<'a> {
    position: u64,
    version: u64,
    id: Uuid,
    seconds: i64,
    nanos: u32,
    schema_version: u16,
    prev_hash: &'a [u8],
    stream: &'a str,
    type_name: &'a str,
    metadata: &'a [u8],
    data: &'a [u8],
}

impl<'a> Binary<'a> {
    fn parse(b: &'a [u8]) -> Result<Self, BadRecord> {
        fixed_part(b)?;
        let position = u64_at(b, 1);
        let truncated = |what: &str| bad(format!("event {position}: the {what} runs past its end"));
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[17..33]);
        let mut nanos = [0u8; 4];
        nanos.copy_from_slice(&b[41..45]);
        let mut at = FIXED;
        let mut take = |len: usize, what: &str| -> Result<&'a [u8], BadRecord> {
            let part = b.get(at..at + len).ok_or_else(|| truncated(what))?;
            at += len;
            Ok(part)
        };
        let len16 = |p: &[u8]| u16::from_le_bytes([p[0], p[1]]) as usize;
        let text = |p: &'a [u8], what: &str| {
            std::str::from_utf8(p).map_err(|e| bad(format!("event {position}: {what}: {e}")))
        };
        let n = len16(take(2, "stream name")?);
        let stream = text(take(n, "stream name")?, "stream name")?;
        let n = len16(take(2, "type name")?);
        let type_name = text(take(n, "type name")?, "type name")?;
        let m = take(4, "metadata")?;
        let n = u32::from_le_bytes([m[0], m[1], m[2], m[3]]) as usize;
        let metadata = take(n, "metadata")?;
        let data = &b[at..];
        Ok(Binary {
            position,
            version: u64_at(b, 9),
            id: Uuid::from_bytes(id),
            seconds: i64::from_le_bytes(b[33..41].try_into().map_err(bad)?),
            nanos: u32::from_le_bytes(nanos),
            schema_version: u16::from_le_bytes([b[45], b[46]]),
            prev_hash: &b[47..79],
            stream,
            type_name,
            metadata,
            data,
        })
    }

    fn recorded_at(&self) -> Result<time::OffsetDateTime, BadRecord> {
        time::OffsetDateTime::from_unix_timestamp(self.seconds)
            .and_then(|t| t.replace_nanosecond(self.nanos))
            .map_err(|e| bad(format!("event {}: recorded at: {e}", self.position)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::event::GENESIS_HASH;

    /// Every golden event (one of each type and schema version, as the JSON envelope).
    fn golden() -> Vec<(String, Vec<u8>)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/events");
        let mut out = Vec::new();
        for ty in std::fs::read_dir(root).unwrap() {
            for file in std::fs::read_dir(ty.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
        assert!(out.len() >= 30, "the golden events are missing");
        out
    }

    #[test]
    fn every_golden_event_reads_the_same_from_either_envelope() {
        for (name, json) in golden() {
            let from_json = decode(json.trim_ascii()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let binary = encode(&from_json).unwrap();
            assert_eq!(binary[0], BINARY);
            assert_ne!(binary.last(), Some(&0), "{name}");
            let compact = serde_json::to_vec(&from_json).unwrap();
            assert!(binary.len() < compact.len(), "{name}");
            let back = decode(&binary).unwrap();
            assert_eq!(back, from_json, "{name}");
            let p = placement(&binary).unwrap();
            assert_eq!(
                (p.position, p.stream.as_ref(), p.version),
                (back.position, back.stream.as_str(), back.version)
            );
            let l = link(&binary).unwrap();
            assert_eq!(
                (l.position, l.prev_hash.as_ref()),
                (back.position, back.prev_hash.as_str())
            );
            // The same event written again is the same bytes: the chain can be recomputed.
            assert_eq!(encode(&back).unwrap(), binary, "{name}");
        }
    }

    #[test]
    fn an_old_schema_version_is_upcast_from_the_binary_envelope_too() {
        let (_, json) = golden()
            .into_iter()
            .find(|(n, _)| n.contains("UserLoginFailed") && n.ends_with("v1.json"))
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let current = decode(&json).unwrap();
        // Written as v1 in binary: the same fields, the payload as stored then.
        let mut binary = encode(&current).unwrap();
        let data = serde_json::to_vec(&value["data"]).unwrap();
        let start = binary.len() - {
            let mut payload = Vec::new();
            current.event.encode_payload(&mut payload).unwrap();
            payload.len()
        };
        binary.truncate(start);
        binary.extend_from_slice(&data);
        binary[45..47].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(decode(&binary).unwrap(), current);
    }

    #[test]
    fn a_damaged_binary_envelope_is_an_error_that_names_the_part() {
        let (_, json) = golden().into_iter().next().unwrap();
        let binary = encode(&decode(json.trim_ascii()).unwrap()).unwrap();
        for cut in [1, 40, FIXED, FIXED + 3] {
            assert!(decode(&binary[..cut]).is_err(), "cut at {cut}");
        }
        let mut long_stream = binary.clone();
        long_stream[FIXED..FIXED + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        let e = decode(&long_stream).unwrap_err();
        assert!(e.0.contains("stream name runs past its end"), "{e}");
        let mut bad_type = binary.clone();
        let type_at = FIXED + 2 + u16::from_le_bytes([binary[FIXED], binary[FIXED + 1]]) as usize;
        bad_type[type_at + 2] = b'#';
        assert!(decode(&bad_type)
            .unwrap_err()
            .0
            .contains("unknown event type"));
    }

    #[test]
    fn the_genesis_link_is_kept_raw_and_read_back_as_hex() {
        let (_, json) = golden().into_iter().next().unwrap();
        let mut event = decode(json.trim_ascii()).unwrap();
        event.prev_hash = GENESIS_HASH.to_owned();
        let binary = encode(&event).unwrap();
        assert_eq!(&binary[47..79], &[0u8; 32]);
        assert_eq!(link(&binary).unwrap().prev_hash, GENESIS_HASH);
        event.prev_hash = "not a hash".into();
        assert!(encode(&event).is_err());
    }

    #[test]
    fn the_link_of_a_json_envelope_is_read_at_its_ends_or_parsed_in_full() {
        let hash = "ab".repeat(32);
        let stored = format!(r#"{{"position":42,"stream":"s","prev_hash":"{hash}"}}"#);
        let l = link(stored.as_bytes()).unwrap();
        assert_eq!((l.position, l.prev_hash.as_ref()), (42, hash.as_str()));
        assert!(matches!(l.prev_hash, Cow::Borrowed(_)));
        // Another field order is parsed in full, with the same answer.
        let other = format!(r#"{{"prev_hash":"{hash}","position":42}}"#);
        let l = link(other.as_bytes()).unwrap();
        assert_eq!((l.position, l.prev_hash.as_ref()), (42, hash.as_str()));
        assert!(link(b"{\"position\":x}").is_err());
    }
}
