//! The compact part of the token index: one fixed 60-byte slot per access token, so that an
//! index of millions of live tokens stays small and introspection never leaves memory.
//!
//! A slot holds what differs from token to token (jti, the first 16 bytes of an opaque
//! token's SHA-256, the issuing position, issue and expiry times) and three small numbers
//! for what many tokens share: the *shape* (client, scopes, signing key, grant, format), the
//! subject and the refresh family, each interned once. Two hash tables of slot numbers find
//! a slot by jti and by hash; they are rebuilt at load, never saved.
//!
//! Slots live in [`Chunked`] vectors whose chunks are shared between copies, so a copy for a
//! background checkpoint costs one pointer per 1,024 tokens and never holds the writer up.
//! A removed token (compaction) leaves a tombstone (a nil jti) that the next checkpoint
//! drops. A token that does not fit a slot (times outside `u32`, a hash of another scheme, a
//! nil jti) stays a row of the index's tree, as every token was before.

use crate::storage::ProjectionError;
use crate::token_index::{encode_record, put_text, TokenRecord};
use domain::values::{ClientId, GrantType, Scope, TokenFormat};
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::Arc;
use uuid::Uuid;

/// Slots per chunk: a copy-on-write of a shared chunk copies at most this many.
const CHUNK: usize = 1024;
/// The bytes of a slot in memory and in a checkpoint.
pub(crate) const SLOT_BYTES: usize = 60;
/// The family number of a token without one.
const NO_FAMILY: u32 = u32::MAX;

/// Checkpoint rows of the table start with this byte, which no row of the tree starts with.
pub(crate) const TABLE_PREFIX: u8 = 0xF1;
/// `dump` shows a token of the table as a row of the tree would be keyed: `j` and the jti.
const DUMP_PREFIX: u8 = b'j';

/// A vector that grows at its end, in chunks shared between copies: a copy costs one pointer
/// per full chunk and a copy of the last, partly filled one; a change to a shared chunk copies
/// that chunk only. The last chunk is not shared, so appending costs no atomic operation.
#[derive(Clone)]
pub(crate) struct Chunked<T: Clone> {
    chunks: Vec<Arc<Vec<T>>>,
    tail: Vec<T>,
}

impl<T: Clone> Default for Chunked<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            tail: Vec::new(),
        }
    }
}

impl<T: Clone> Chunked<T> {
    /// Chunks of `CHUNK` values each, but the last, which may hold fewer.
    fn from_chunks(mut chunks: Vec<Vec<T>>) -> Self {
        let tail = match chunks.last() {
            Some(last) if last.len() < CHUNK => chunks.pop().unwrap_or_default(),
            _ => Vec::new(),
        };
        Self {
            chunks: chunks.into_iter().map(Arc::new).collect(),
            tail,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.chunks.len() * CHUNK + self.tail.len()
    }

    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        match self.chunks.get(i / CHUNK) {
            Some(chunk) => chunk.get(i % CHUNK),
            None if i / CHUNK == self.chunks.len() => self.tail.get(i % CHUNK),
            None => None,
        }
    }

    /// Appends `value`; answers its index.
    pub(crate) fn push(&mut self, value: T) -> usize {
        if self.tail.capacity() == 0 {
            self.tail.reserve_exact(CHUNK);
        }
        self.tail.push(value);
        let i = self.len() - 1;
        if self.tail.len() == CHUNK {
            let full = std::mem::take(&mut self.tail);
            self.chunks.push(Arc::new(full));
        }
        i
    }

    fn set(&mut self, i: usize, value: T) {
        let slot = match self.chunks.get_mut(i / CHUNK) {
            Some(chunk) => Arc::make_mut(chunk).get_mut(i % CHUNK),
            None => self.tail.get_mut(i % CHUNK),
        };
        if let Some(v) = slot {
            *v = value;
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .chain(self.tail.iter())
    }
}

/// Values many tokens share, each stored once and named by its index. Looked up by a hash
/// and an equality the caller gives, so a lookup that finds its value allocates nothing.
struct Interner<T: ?Sized> {
    values: Chunked<Arc<T>>,
    ids: HashTable<u32>,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Self {
            values: Chunked::default(),
            ids: HashTable::new(),
        }
    }
}

impl<T: ?Sized> Interner<T> {
    /// The number of the value that `eq` accepts and whose hash (`rehash` of it) is `hash`,
    /// adding `make()` if there is none.
    fn intern(
        &mut self,
        hash: u64,
        eq: impl Fn(&T) -> bool,
        rehash: impl Fn(&T) -> u64,
        make: impl FnOnce() -> Arc<T>,
    ) -> u32 {
        let Self { values, ids } = self;
        let entry = ids.entry(
            hash,
            |&i| values.get(i as usize).is_some_and(|v| eq(v)),
            |&i| values.get(i as usize).map_or(0, |v| rehash(v)),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(e) => *e.get(),
            hashbrown::hash_table::Entry::Vacant(e) => {
                let id = values.push(make()) as u32;
                e.insert(id);
                id
            }
        }
    }

    fn len(&self) -> usize {
        self.values.len()
    }
}

/// A token as an event states it, borrowed: what [`TokenTable::insert`] takes.
pub(crate) struct TokenRef<'a> {
    pub(crate) jti: &'a Uuid,
    pub(crate) hash: Option<[u8; 16]>,
    pub(crate) position: u64,
    pub(crate) issued_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) client_id: &'a ClientId,
    pub(crate) subject: &'a str,
    pub(crate) scopes: &'a [Scope],
    pub(crate) grant_type: GrantType,
    pub(crate) format: TokenFormat,
    pub(crate) kid: Option<&'a str>,
    pub(crate) family_id: Option<&'a Uuid>,
}

impl<'a> TokenRef<'a> {
    #[cfg(test)]
    fn of(r: &'a TokenRecord, hash: Option<[u8; 16]>) -> Self {
        Self {
            jti: &r.jti,
            hash,
            position: r.position,
            issued_at: r.issued_at,
            expires_at: r.expires_at,
            client_id: &r.client_id,
            subject: &r.subject,
            scopes: &r.scopes,
            grant_type: r.grant_type,
            format: r.format,
            kid: r.kid.as_deref(),
            family_id: r.family_id.as_ref(),
        }
    }
}

type Hasher = foldhash::fast::FixedState;

fn shape_hash(
    h: &Hasher,
    client_id: &ClientId,
    scopes: &[Scope],
    kid: Option<&str>,
    grant_type: GrantType,
    format: TokenFormat,
) -> u64 {
    h.hash_one((client_id, scopes, kid, grant_type, format))
}

impl Shape {
    fn hash_with(&self, h: &Hasher) -> u64 {
        shape_hash(
            h,
            &self.client_id,
            &self.scopes,
            self.kid.as_deref(),
            self.grant_type,
            self.format,
        )
    }
}

/// What many tokens share: who they were issued to, for what, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Shape {
    client_id: ClientId,
    scopes: Vec<Scope>,
    kid: Option<String>,
    grant_type: GrantType,
    format: TokenFormat,
}

impl Shape {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(grant_index(self.grant_type));
        out.push(format_byte(self.format));
        put_text(&mut out, self.client_id.as_str());
        let scopes: Vec<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
        put_text(&mut out, &scopes.join(" "));
        put_text(&mut out, self.kid.as_deref().unwrap_or(""));
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let grant_type = *GrantType::ALL.get(*bytes.first()? as usize)?;
        let format = match bytes.get(1)? {
            0 => TokenFormat::Jwt,
            1 => TokenFormat::Opaque,
            _ => return None,
        };
        let mut at = 2;
        let mut text = || -> Option<String> {
            let len = u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?) as usize;
            let s = std::str::from_utf8(bytes.get(at + 2..at + 2 + len)?).ok()?;
            at += 2 + len;
            Some(s.to_owned())
        };
        let client_id = ClientId::parse(&text()?).ok()?;
        let scopes = text()?;
        let scopes = if scopes.is_empty() {
            Vec::new()
        } else {
            Scope::parse_list(&scopes).ok()?
        };
        let kid = Some(text()?).filter(|k| !k.is_empty());
        Some(Self {
            client_id,
            scopes,
            kid,
            grant_type,
            format,
        })
    }
}

pub(crate) fn grant_index(g: GrantType) -> u8 {
    GrantType::ALL.iter().position(|x| *x == g).unwrap_or(0) as u8
}

pub(crate) fn format_byte(f: TokenFormat) -> u8 {
    match f {
        TokenFormat::Jwt => 0,
        TokenFormat::Opaque => 1,
    }
}

/// One token. `position` is a byte array so that the slot is 4-aligned: 60 bytes, not 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    jti: [u8; 16],
    /// The first 16 bytes of the SHA-256 of an opaque token's value; zero for none.
    hash: [u8; 16],
    position: [u8; 8],
    issued_at: u32,
    expires_at: u32,
    shape: u32,
    subject: u32,
    family: u32,
}

impl Slot {
    fn is_tombstone(&self) -> bool {
        self.jti == [0; 16]
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.jti);
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.position);
        for n in [
            self.issued_at,
            self.expires_at,
            self.shape,
            self.subject,
            self.family,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }

    fn decode(b: &[u8; SLOT_BYTES]) -> Self {
        let mut jti = [0; 16];
        jti.copy_from_slice(&b[..16]);
        let mut hash = [0; 16];
        hash.copy_from_slice(&b[16..32]);
        let mut position = [0; 8];
        position.copy_from_slice(&b[32..40]);
        let n = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        Self {
            jti,
            hash,
            position,
            issued_at: n(40),
            expires_at: n(44),
            shape: n(48),
            subject: n(52),
            family: n(56),
        }
    }
}

/// The 64 hex digits of an `hmac-sha256:` or `sha256:` hash.
pub(crate) fn digest_hex(hash: &str) -> Option<&str> {
    hash.strip_prefix("hmac-sha256:")
        .or_else(|| hash.strip_prefix("sha256:"))
        .filter(|h| h.len() == 64)
}

/// The first 16 bytes of an `hmac-sha256:<hex>` or `sha256:<hex>` hash, if `hash` is one.
pub(crate) fn digest_prefix(hash: &str) -> Option<[u8; 16]> {
    let hex = digest_hex(hash)?.as_bytes();
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = nibble(hex[2 * i])? << 4 | nibble(hex[2 * i + 1])?;
    }
    // The rest must be hex too, or it is not a hash of this scheme.
    hex[32..].iter().all(u8::is_ascii_hexdigit).then_some(out)
}

/// Whether a token can be kept in a slot: `hash` is the prefix of its SHA-256, if it has one.
pub(crate) fn fits(jti: &Uuid, issued_at: i64, expires_at: i64, hash: Option<&[u8; 16]>) -> bool {
    !jti.is_nil()
        && u32::try_from(issued_at).is_ok()
        && u32::try_from(expires_at).is_ok()
        && hash.is_none_or(|h| *h != [0; 16])
}

/// Shards of a lookup: each grows on its own, so a doubling rehashes a 256th of the tokens
/// (about 30k at 8M) while the writer holds the table, not all of them at once (a stall of
/// 100 ms at a million tokens, each rehash a cache miss into the slots).
const SHARDS: usize = 256;

/// A hash table of slot numbers in [`SHARDS`] shards. The shard comes from bits 48..56 of the
/// hash, which hashbrown uses for neither the bucket (low bits) nor the tag (top 7 bits).
struct Lookup {
    shards: Vec<HashTable<u32>>,
}

impl Default for Lookup {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

fn shard(h: u64) -> usize {
    (h >> 48) as usize % SHARDS
}

impl Lookup {
    fn with_capacity(n: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| HashTable::with_capacity(n.div_ceil(SHARDS)))
                .collect(),
        }
    }

    fn reserve(&mut self, additional: usize, hasher: impl Fn(&u32) -> u64) {
        for t in &mut self.shards {
            t.reserve(additional.div_ceil(SHARDS), &hasher);
        }
    }

    fn find(&self, h: u64, eq: impl FnMut(&u32) -> bool) -> Option<&u32> {
        self.shards[shard(h)].find(h, eq)
    }

    fn entry(
        &mut self,
        h: u64,
        eq: impl FnMut(&u32) -> bool,
        hasher: impl Fn(&u32) -> u64,
    ) -> hashbrown::hash_table::Entry<'_, u32> {
        self.shards[shard(h)].entry(h, eq, hasher)
    }

    fn insert_unique(&mut self, h: u64, value: u32, hasher: impl Fn(&u32) -> u64) {
        self.shards[shard(h)].insert_unique(h, value, hasher);
    }

    /// Removes the entry `eq` accepts, if there is one.
    fn remove(&mut self, h: u64, eq: impl FnMut(&u32) -> bool) {
        if let Ok(entry) = self.shards[shard(h)].find_entry(h, eq) {
            entry.remove();
        }
    }
}

/// The slots, their interned values, and the two lookups.
#[derive(Default)]
pub(crate) struct TokenTable {
    slots: Chunked<Slot>,
    live: usize,
    by_jti: Lookup,
    by_hash: Lookup,
    shapes: Interner<Shape>,
    subjects: Interner<str>,
    families: Interner<Uuid>,
    /// 64-bit hashes of every revoked jti noted since the table was built: a token whose hash
    /// is absent is not revoked, which introspection learns without a look into the tree of
    /// rows (a cache miss at every level). Only ever added to: a stale hash costs that look,
    /// never a wrong answer. Derived from the `r` rows, never saved.
    revoked: HashTable<u64>,
    hasher: Hasher,
}

impl TokenTable {
    /// Notes that `jti` was revoked (see `revoked`).
    pub(crate) fn note_revoked(&mut self, jti: &Uuid) {
        let h = self.hasher.hash_one(jti.as_bytes());
        if self.revoked.find(h, |&x| x == h).is_none() {
            self.revoked.insert_unique(h, h, |&x| x);
        }
    }

    /// Whether `jti` may have been revoked: `false` means it was not.
    pub(crate) fn may_be_revoked(&self, jti: &Uuid) -> bool {
        let h = self.hasher.hash_one(jti.as_bytes());
        self.revoked.find(h, |&x| x == h).is_some()
    }

    /// Makes room for `additional` more tokens in the lookups, so that a rebuild does not
    /// grow them step by step (each step rehashes every token, a cache miss apiece).
    pub(crate) fn reserve(&mut self, additional: usize) {
        let Self {
            slots,
            by_jti,
            by_hash,
            hasher,
            ..
        } = self;
        by_jti.reserve(additional, |&j| {
            slots.get(j as usize).map_or(0, |s| hasher.hash_one(s.jti))
        });
        by_hash.reserve(additional, |&j| {
            slots.get(j as usize).map_or(0, |s| hasher.hash_one(s.hash))
        });
    }

    /// Tokens held (tombstones not counted).
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Tokens held that expire after `now` and were not revoked one by one (a revoked
    /// family's tokens count until they expire): one pass over the slots.
    pub(crate) fn unexpired(&self, now: i64) -> usize {
        self.slots
            .iter()
            .filter(|s| !s.is_tombstone() && i64::from(s.expires_at) > now)
            .filter(|s| !self.may_be_revoked(&Uuid::from_bytes(s.jti)))
            .count()
    }

    fn slot(&self, i: u32) -> Option<&Slot> {
        self.slots.get(i as usize)
    }

    fn find_jti(&self, jti: &[u8; 16]) -> Option<u32> {
        let h = self.hasher.hash_one(jti);
        self.by_jti
            .find(h, |&i| self.slot(i).is_some_and(|s| s.jti == *jti))
            .copied()
    }

    fn find_hash(&self, hash: &[u8; 16]) -> Option<u32> {
        let h = self.hasher.hash_one(hash);
        self.by_hash
            .find(h, |&i| self.slot(i).is_some_and(|s| s.hash == *hash))
            .copied()
    }

    /// Adds a token (one that [`fits`]), or replaces the one with its jti.
    pub(crate) fn insert(&mut self, t: &TokenRef<'_>) {
        let h = self.hasher.clone();
        let shape = self.shapes.intern(
            shape_hash(&h, t.client_id, t.scopes, t.kid, t.grant_type, t.format),
            |s| {
                s.client_id == *t.client_id
                    && s.scopes == t.scopes
                    && s.kid.as_deref() == t.kid
                    && s.grant_type == t.grant_type
                    && s.format == t.format
            },
            |s| s.hash_with(&h),
            || {
                Arc::new(Shape {
                    client_id: t.client_id.clone(),
                    scopes: t.scopes.to_vec(),
                    kid: t.kid.map(str::to_owned),
                    grant_type: t.grant_type,
                    format: t.format,
                })
            },
        );
        let subject = self.subjects.intern(
            h.hash_one(t.subject),
            |s| s == t.subject,
            |s| h.hash_one(s),
            || Arc::from(t.subject),
        );
        let family = match t.family_id {
            Some(f) => self.families.intern(
                h.hash_one(f.as_bytes()),
                |x| x == f,
                |x| h.hash_one(x.as_bytes()),
                || Arc::new(*f),
            ),
            None => NO_FAMILY,
        };
        let slot = Slot {
            jti: *t.jti.as_bytes(),
            hash: t.hash.unwrap_or([0; 16]),
            position: t.position.to_le_bytes(),
            issued_at: t.issued_at as u32,
            expires_at: t.expires_at as u32,
            shape,
            subject,
            family,
        };
        // One probe of the jti table finds a token applied before and, in the common case,
        // the place for the new one: each probe of a table of millions is a cache miss.
        let i = self.slots.len() as u32;
        let Self {
            slots,
            by_jti,
            hasher,
            ..
        } = self;
        let entry = by_jti.entry(
            hasher.hash_one(slot.jti),
            |&j| slots.get(j as usize).is_some_and(|s| s.jti == slot.jti),
            |&j| slots.get(j as usize).map_or(0, |s| hasher.hash_one(s.jti)),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(e) => {
                // The same token applied again (a rebuild over a checkpoint): replace it.
                let old = *e.get();
                self.remove_slot(old);
                self.put(slot);
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(i);
                self.slots.push(slot);
                self.index_hash(i, &slot);
                self.live += 1;
            }
        }
    }

    /// Adds a slot's hash to the hash lookup, if it has one.
    fn index_hash(&mut self, i: u32, slot: &Slot) {
        let Self {
            slots,
            by_hash,
            hasher,
            ..
        } = self;
        if slot.hash != [0; 16] {
            by_hash.insert_unique(hasher.hash_one(slot.hash), i, |&j| {
                slots.get(j as usize).map_or(0, |s| hasher.hash_one(s.hash))
            });
        }
    }

    /// Places a slot and indexes it.
    fn put(&mut self, slot: Slot) {
        let i = self.slots.push(slot) as u32;
        let Self {
            slots,
            by_jti,
            hasher,
            ..
        } = self;
        by_jti.insert_unique(hasher.hash_one(slot.jti), i, |&j| {
            slots.get(j as usize).map_or(0, |s| hasher.hash_one(s.jti))
        });
        self.index_hash(i, &slot);
        self.live += 1;
    }

    /// Forgets a token (compaction): its slot becomes a tombstone.
    pub(crate) fn remove(&mut self, jti: &Uuid) {
        if let Some(i) = self.find_jti(jti.as_bytes()) {
            self.remove_slot(i);
        }
    }

    fn remove_slot(&mut self, i: u32) {
        let Some(slot) = self.slot(i).copied() else {
            return;
        };
        let h = self.hasher.hash_one(slot.jti);
        self.by_jti.remove(h, |&j| j == i);
        if slot.hash != [0; 16] {
            let h = self.hasher.hash_one(slot.hash);
            self.by_hash.remove(h, |&j| j == i);
        }
        self.slots.set(
            i as usize,
            Slot {
                jti: [0; 16],
                ..slot
            },
        );
        self.live -= 1;
    }

    pub(crate) fn by_jti(&self, jti: &Uuid) -> Option<TokenRecord> {
        let i = self.find_jti(jti.as_bytes())?;
        self.record(self.slot(i)?)
    }

    pub(crate) fn by_hash(&self, hash: &[u8; 16]) -> Option<TokenRecord> {
        let i = self.find_hash(hash)?;
        self.record(self.slot(i)?)
    }

    fn record(&self, s: &Slot) -> Option<TokenRecord> {
        resolve(
            s,
            &self.shapes.values,
            &self.subjects.values,
            &self.families.values,
        )
    }

    /// A consistent copy, O(number of chunks).
    pub(crate) fn copy(&self) -> TableCopy {
        TableCopy {
            slots: self.slots.clone(),
            shapes: self.shapes.values.clone(),
            subjects: self.subjects.values.clone(),
            families: self.families.values.clone(),
        }
    }
}

/// A copy of the table's slots and interned values, for a checkpoint or a comparison.
#[derive(Clone, Default)]
pub(crate) struct TableCopy {
    slots: Chunked<Slot>,
    shapes: Chunked<Arc<Shape>>,
    subjects: Chunked<Arc<str>>,
    families: Chunked<Arc<Uuid>>,
}

fn table_key(kind: u8, n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [TABLE_PREFIX, kind, b[0], b[1], b[2], b[3]]
}

/// The record a slot stands for, its numbers looked up in the interned values.
fn resolve(
    s: &Slot,
    shapes: &Chunked<Arc<Shape>>,
    subjects: &Chunked<Arc<str>>,
    families: &Chunked<Arc<Uuid>>,
) -> Option<TokenRecord> {
    let shape = shapes.get(s.shape as usize)?;
    let subject = subjects.get(s.subject as usize)?;
    let family_id = match s.family {
        NO_FAMILY => None,
        f => Some(**families.get(f as usize)?),
    };
    Some(TokenRecord {
        jti: Uuid::from_bytes(s.jti),
        client_id: shape.client_id.clone(),
        subject: subject.to_string(),
        scopes: shape.scopes.clone(),
        grant_type: shape.grant_type,
        format: shape.format,
        issued_at: i64::from(s.issued_at),
        expires_at: i64::from(s.expires_at),
        family_id,
        position: u64::from_le_bytes(s.position),
        kid: shape.kid.clone(),
        terms: Default::default(),
    })
}

impl TableCopy {
    fn record(&self, s: &Slot) -> Option<TokenRecord> {
        resolve(s, &self.shapes, &self.subjects, &self.families)
    }

    /// The table as checkpoint rows, in key order: families (`f`), shapes (`p`), slots in
    /// chunks of 1,024 (`s`, tombstones left out) and subjects (`u`), each key
    /// [`TABLE_PREFIX`], the kind and a u32 big-endian number.
    pub(crate) fn for_each_checkpoint_row(
        &self,
        row: &mut crate::storage::RowSink<'_>,
    ) -> std::io::Result<()> {
        for (i, f) in self.families.iter().enumerate() {
            row(&table_key(b'f', i as u32), f.as_bytes())?;
        }
        for (i, s) in self.shapes.iter().enumerate() {
            row(&table_key(b'p', i as u32), &s.encode())?;
        }
        let mut chunk = Vec::with_capacity(CHUNK * SLOT_BYTES);
        let mut n = 0u32;
        for slot in self.slots.iter().filter(|s| !s.is_tombstone()) {
            slot.encode(&mut chunk);
            if chunk.len() == CHUNK * SLOT_BYTES {
                row(&table_key(b's', n), &chunk)?;
                chunk.clear();
                n += 1;
            }
        }
        if !chunk.is_empty() {
            row(&table_key(b's', n), &chunk)?;
        }
        for (i, s) in self.subjects.iter().enumerate() {
            row(&table_key(b'u', i as u32), s.as_bytes())?;
        }
        Ok(())
    }

    /// Each token as a row `j` + jti → its binary record and hash prefix, in jti order: the same for any two tables that hold the same tokens, however they were built.
    pub(crate) fn into_dump_rows(self) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
        let mut order: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| {
                self.slots
                    .get(i as usize)
                    .is_some_and(|s| !s.is_tombstone())
            })
            .collect();
        order.sort_unstable_by_key(|&i| self.slots.get(i as usize).map(|s| s.jti));
        order.into_iter().filter_map(move |i| {
            let s = self.slots.get(i as usize)?;
            let mut k = Vec::with_capacity(17);
            k.push(DUMP_PREFIX);
            k.extend_from_slice(&s.jti);
            let mut v = match self.record(s) {
                Some(r) => encode_record(&r),
                None => b"(a slot names a value the table does not hold)".to_vec(),
            };
            if s.hash != [0; 16] {
                v.extend_from_slice(&s.hash);
            }
            Some((k, v))
        })
    }
}

/// Builds a table from checkpoint rows, checking that every number a slot holds names a
/// value that was loaded.
#[derive(Default)]
pub(crate) struct TableLoader {
    table: TokenTable,
    /// Slots in chunks as they are read, moved into the table whole at the end.
    slots: Vec<Vec<Slot>>,
    damage: Option<String>,
}

impl TableLoader {
    /// Takes one checkpoint row (its key starts with [`TABLE_PREFIX`]).
    pub(crate) fn row(&mut self, key: Vec<u8>, value: Vec<u8>) {
        if self.damage.is_some() {
            return;
        }
        if let Err(e) = self.take(&key, value) {
            self.damage = Some(e);
        }
    }

    fn take(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), String> {
        let (kind, n) = match key {
            [TABLE_PREFIX, kind, a, b, c, d] => (*kind, u32::from_be_bytes([*a, *b, *c, *d])),
            _ => return Err("a token table row has a malformed key".into()),
        };
        let in_order = |len: usize| {
            if n as usize == len {
                Ok(())
            } else {
                Err(format!(
                    "token table row {} {n} is out of order",
                    kind as char
                ))
            }
        };
        let t = &mut self.table;
        let h = t.hasher.clone();
        // Interning must not merge two saved values: their numbers are their places.
        let merged = || format!("token table row {} {n} repeats a value", kind as char);
        match kind {
            b'f' => {
                in_order(t.families.len())?;
                let f = Uuid::from_slice(&value).map_err(|e| e.to_string())?;
                let id = t.families.intern(
                    h.hash_one(f.as_bytes()),
                    |x| *x == f,
                    |x| h.hash_one(x.as_bytes()),
                    || Arc::new(f),
                );
                if id != n {
                    return Err(merged());
                }
            }
            b'p' => {
                in_order(t.shapes.len())?;
                let shape = Shape::decode(&value).ok_or("a token shape does not decode")?;
                let id = t.shapes.intern(
                    shape.hash_with(&h),
                    |s| *s == shape,
                    |s| s.hash_with(&h),
                    || Arc::new(shape.clone()),
                );
                if id != n {
                    return Err(merged());
                }
            }
            b'u' => {
                in_order(t.subjects.len())?;
                let s = String::from_utf8(value).map_err(|e| e.to_string())?;
                let id = t.subjects.intern(
                    h.hash_one(s.as_str()),
                    |x| *x == *s,
                    |x| h.hash_one(x),
                    || Arc::from(s.as_str()),
                );
                if id != n {
                    return Err(merged());
                }
            }
            b's' => {
                if !value.len().is_multiple_of(SLOT_BYTES) {
                    return Err("a chunk of token slots is cut short".into());
                }
                for b in value.chunks_exact(SLOT_BYTES) {
                    let b: &[u8; SLOT_BYTES] = b.try_into().map_err(|_| "slot")?;
                    match self.slots.last_mut() {
                        Some(chunk) if chunk.len() < CHUNK => chunk.push(Slot::decode(b)),
                        _ => {
                            let mut chunk = Vec::with_capacity(CHUNK);
                            chunk.push(Slot::decode(b));
                            self.slots.push(chunk);
                        }
                    }
                }
            }
            _ => return Err(format!("unknown token table row {}", kind as char)),
        }
        Ok(())
    }

    /// The table, once every row was given.
    pub(crate) fn finish(self) -> Result<TokenTable, ProjectionError> {
        if let Some(d) = self.damage {
            return Err(ProjectionError::Corrupt(d));
        }
        let mut t = self.table;
        let (shapes, subjects, families) = (
            t.shapes.values.len() as u32,
            t.subjects.values.len() as u32,
            t.families.values.len() as u32,
        );
        let len: usize = self.slots.iter().map(Vec::len).sum();
        let bad = || {
            ProjectionError::Corrupt(
                "a token slot names a value the checkpoint does not hold".into(),
            )
        };
        t.slots = Chunked::from_chunks(self.slots);
        // The two lookups are built on two threads: each insert is a cache miss in a table
        // of millions, and that is most of a start's time. Capacity is reserved up front, so
        // a shard rehashes only if it gets more than its share.
        let (slots, hasher) = (&t.slots, &t.hasher);
        let (by_jti, by_hash) = std::thread::scope(|s| {
            let by_hash = s.spawn(|| {
                let mut table = Lookup::with_capacity(len);
                for (i, slot) in slots.iter().enumerate() {
                    if slot.hash != [0; 16] {
                        table.insert_unique(hasher.hash_one(slot.hash), i as u32, |&j| {
                            slots.get(j as usize).map_or(0, |s| hasher.hash_one(s.hash))
                        });
                    }
                }
                table
            });
            let mut by_jti = Lookup::with_capacity(len);
            for (i, slot) in slots.iter().enumerate() {
                if slot.is_tombstone()
                    || slot.shape >= shapes
                    || slot.subject >= subjects
                    || (slot.family != NO_FAMILY && slot.family >= families)
                {
                    return Err(bad());
                }
                match by_jti.entry(
                    hasher.hash_one(slot.jti),
                    |&j: &u32| slots.get(j as usize).is_some_and(|s| s.jti == slot.jti),
                    |&j| slots.get(j as usize).map_or(0, |s| hasher.hash_one(s.jti)),
                ) {
                    hashbrown::hash_table::Entry::Occupied(_) => return Err(bad()),
                    hashbrown::hash_table::Entry::Vacant(v) => {
                        v.insert(i as u32);
                    }
                }
            }
            let by_hash = by_hash.join().map_err(|_| {
                ProjectionError::Corrupt("building the token hash lookup panicked".into())
            })?;
            Ok((by_jti, by_hash))
        })?;
        t.by_jti = by_jti;
        t.by_hash = by_hash;
        t.live = len;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u128, client: &str, family: Option<u128>) -> TokenRecord {
        TokenRecord {
            jti: Uuid::from_u128(n),
            client_id: ClientId::parse(client).unwrap(),
            subject: format!("user-{}", n % 3),
            scopes: Scope::parse_list("read write").unwrap(),
            grant_type: GrantType::AuthorizationCode,
            format: TokenFormat::Opaque,
            issued_at: 1_800_000_000,
            expires_at: 1_800_003_600,
            family_id: family.map(Uuid::from_u128),
            position: 1000 + n as u64,
            kid: None,
            terms: Default::default(),
        }
    }

    fn hash(n: u128) -> [u8; 16] {
        (n + 0x1000).to_le_bytes()
    }

    #[test]
    fn a_slot_is_sixty_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), SLOT_BYTES);
    }

    #[test]
    fn a_chunked_vector_keeps_its_copies_apart_across_chunk_boundaries() {
        let mut v = Chunked::default();
        for i in 0..CHUNK * 2 + 5 {
            assert_eq!(v.push(i), i);
        }
        let copy = v.clone();
        v.set(3, 0);
        v.set(CHUNK * 2 + 1, 0);
        v.push(7);
        assert_eq!(
            (copy.get(3), copy.get(CHUNK * 2 + 1)),
            (Some(&3), Some(&(CHUNK * 2 + 1)))
        );
        assert_eq!((v.get(3), v.get(CHUNK * 2 + 1)), (Some(&0), Some(&0)));
        assert_eq!(
            (copy.len(), v.len(), v.get(v.len())),
            (CHUNK * 2 + 5, CHUNK * 2 + 6, None)
        );
        assert_eq!(copy.iter().count(), copy.len());
        let rebuilt = Chunked::from_chunks(vec![(0..CHUNK).collect(), vec![CHUNK]]);
        assert_eq!(
            (rebuilt.len(), rebuilt.get(CHUNK)),
            (CHUNK + 1, Some(&CHUNK))
        );
    }

    #[test]
    fn tokens_are_found_by_jti_and_hash_and_gone_once_removed() {
        let mut t = TokenTable::default();
        for n in 1..=5000 {
            let r = record(n, if n % 2 == 0 { "a" } else { "b" }, Some(n % 7));
            t.insert(&TokenRef::of(&r, Some(hash(n))));
        }
        assert_eq!(t.len(), 5000);
        assert_eq!(t.shapes.len(), 2);
        assert_eq!(t.subjects.len(), 3);
        assert_eq!(
            t.by_jti(&Uuid::from_u128(77)),
            Some(record(77, "b", Some(0)))
        );
        assert_eq!(t.by_hash(&hash(78)), Some(record(78, "a", Some(1))));
        t.remove(&Uuid::from_u128(77));
        assert_eq!(
            (t.by_jti(&Uuid::from_u128(77)), t.by_hash(&hash(77))),
            (None, None)
        );
        assert_eq!(t.len(), 4999);
        // Inserting a jti again replaces it.
        let mut changed = record(78, "a", None);
        changed.expires_at += 1;
        t.insert(&TokenRef::of(&changed, None));
        assert_eq!(t.by_jti(&Uuid::from_u128(78)), Some(changed));
        assert_eq!(t.by_hash(&hash(78)), None);
        assert_eq!(t.len(), 4999);
    }

    #[test]
    fn a_copy_does_not_see_later_changes_and_its_rows_load_into_the_same_table() {
        let mut t = TokenTable::default();
        for n in 1..=2500 {
            t.insert(&TokenRef::of(
                &record(n, "a", (n % 5 == 0).then_some(n)),
                Some(hash(n)),
            ));
        }
        t.remove(&Uuid::from_u128(10));
        let copy = t.copy();
        t.insert(&TokenRef::of(&record(9999, "late", None), None));
        t.remove(&Uuid::from_u128(11));
        let mut loader = TableLoader::default();
        copy.for_each_checkpoint_row(&mut |k, v| {
            loader.row(k.to_vec(), v.to_vec());
            Ok(())
        })
        .unwrap();
        let back = loader.finish().unwrap();
        assert_eq!(back.len(), 2499);
        assert_eq!(back.by_jti(&Uuid::from_u128(9999)), None);
        assert_eq!(back.by_hash(&hash(11)), Some(record(11, "a", None)));
        assert_eq!(
            back.copy().into_dump_rows().collect::<Vec<_>>(),
            copy.into_dump_rows().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_slot_naming_a_missing_value_makes_the_load_fail() {
        let mut t = TokenTable::default();
        t.insert(&TokenRef::of(&record(1, "a", None), None));
        let mut loader = TableLoader::default();
        t.copy()
            .for_each_checkpoint_row(&mut |k, v| {
                if k[1] != b'p' {
                    loader.row(k.to_vec(), v.to_vec());
                }
                Ok(())
            })
            .unwrap();
        assert!(loader.finish().is_err());
    }

    #[test]
    fn only_sha256_hashes_and_u32_times_fit_a_slot() {
        let h = format!("sha256:{}", "0f".repeat(32));
        assert_eq!(digest_prefix(&h), Some([0x0f; 16]));
        assert_eq!(digest_prefix("hmac:abc"), None);
        assert_eq!(
            digest_prefix(&format!("sha256:{}zz", "0f".repeat(31))),
            None
        );
        let jti = Uuid::from_u128(1);
        assert!(fits(&jti, 0, 1_800_000_000, Some(&[1; 16])));
        assert!(!fits(&jti, 0, 1_800_000_000, Some(&[0; 16])));
        assert!(!fits(&jti, 0, -1, None));
        assert!(!fits(&jti, 0, 1 << 33, None));
        assert!(!fits(&Uuid::nil(), 0, 1, None));
    }
}
