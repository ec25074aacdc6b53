//! The token index: jti (and hash of an opaque token) → client, subject, scopes, expiry, state.
//!
//! It also answers what the decisions on a user's behalf need to know of earlier events:
//! authorization codes (`c` + hash, redeemed: `C` + hash), refresh tokens (`R` + hash, used:
//! `u` + id), each family's newest refresh token (`g` + family) and revoked families (`F`),
//! withdrawn authorizations (`A` + client + user), and the claims an OpenID Connect grant
//! asked `/userinfo` for (`o` + family), and initial access tokens by hash (`I`).
//!
//! Access tokens, the bulk of it, are slots of a compact table of their own
//! ([`crate::token_table`], about 60 bytes a token); every other fact is a row of its own in
//! an ordered tree (a revocation is `r` + jti), so `apply` never reads before it writes.

use crate::storage::{CheckpointStore, CheckpointedTree, ProjectionError, RowSource, Write};
use crate::token_table::{self, TableCopy, TableLoader, TokenTable};
use domain::event::{
    AccessTokenIssued, AuthorizationCodeIssued, Event, RefreshTokenIssued, TokenTerms,
};
use domain::grant::{CodeView, RefreshView};
use domain::values::{ClientId, GrantType, Scope, TokenFormat};
use domain::RecordedEvent;
use serde::{Deserialize, Serialize};
use std::sync::RwLock;
use uuid::Uuid;

/// What the index keeps of an issued token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Token id.
    pub jti: Uuid,
    /// The client it was issued to.
    pub client_id: ClientId,
    /// Its subject.
    pub subject: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// The grant that produced it.
    pub grant_type: GrantType,
    /// Wire format.
    pub format: TokenFormat,
    /// Issued at (Unix seconds).
    pub issued_at: i64,
    /// Expires at (Unix seconds).
    pub expires_at: i64,
    /// The grant (refresh family) it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<Uuid>,
    /// Global position of its issuance.
    #[serde(default)]
    pub position: u64,
    /// The key a JWT is signed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Audience, DPoP key and actor (tokens with any of them stay rows of the tree).
    #[serde(default, skip_serializing_if = "TokenTerms::is_empty")]
    pub terms: TokenTerms,
}

/// A token and whether it was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// The token's facts.
    pub record: TokenRecord,
    /// Revoked (the position of the revocation event).
    pub revoked_at_position: Option<u64>,
    /// Its family was revoked (code replay, refresh reuse, refresh-token revocation).
    pub family_revoked: bool,
    /// The user withdrew the client's authorization after it was issued.
    pub authorization_revoked: bool,
}

impl TokenRecord {
    /// The user of the directory it speaks for: its subject, for tokens of user grants only
    /// (see `GrantType::speaks_for_a_user`).
    pub fn user_id(&self) -> Option<domain::values::UserId> {
        if !self.grant_type.speaks_for_a_user() {
            return None;
        }
        domain::values::UserId::parse(&self.subject).ok()
    }
}

impl TokenView {
    /// Active at `now`: not revoked and not expired. (The client's existence is checked by the
    /// caller against the client directory.)
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at_position.is_none()
            && !self.family_revoked
            && !self.authorization_revoked
            && now < self.record.expires_at
    }
}

/// A refresh token row: the event that issued it and where.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefreshRow {
    position: u64,
    issued: RefreshTokenIssued,
}

fn key16(prefix: u8, id: &Uuid) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(prefix);
    k.extend_from_slice(id.as_bytes());
    k
}

fn text_key(prefix: u8, text: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + text.len());
    k.push(prefix);
    k.extend_from_slice(text.as_bytes());
    k
}

fn authorization_key(client: &str, subject: &str) -> Vec<u8> {
    let mut k = text_key(b'A', client);
    k.push(0);
    k.extend_from_slice(subject.as_bytes());
    k
}

fn key_expiry_prefix(kid: &str) -> Vec<u8> {
    let mut k = text_key(b'k', kid);
    k.push(0);
    k
}

fn key_expiry_key(kid: &str, expires_at: i64) -> Vec<u8> {
    let mut k = key_expiry_prefix(kid);
    // Expiries are after 1970, so the sign bit is clear and big-endian bytes sort by time.
    k.extend_from_slice(&expires_at.max(0).to_be_bytes());
    k
}

fn assertion_key(client: &str, issuer: &str, jti: &str) -> Vec<u8> {
    let mut k = text_key(b'a', client);
    k.push(0);
    k.extend_from_slice(issuer.as_bytes());
    k.push(0);
    k.extend_from_slice(jti.as_bytes());
    k
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    // These types serialise infallibly (no maps with non-string keys).
    serde_json::to_vec(v).unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ProjectionError> {
    serde_json::from_slice(bytes).map_err(|e| ProjectionError::Corrupt(e.to_string()))
}

fn jti_key(jti: &Uuid) -> Vec<u8> {
    key16(b'j', jti)
}

/// An opaque token's row key: `h` and the 32 bytes of an `hmac-sha256:` or `sha256:` hash
/// (half the size of its text, and the token index holds one per live opaque token); any
/// other scheme as text under `H`. The two schemes share the key space: a keyed and a bare
/// digest of different tokens are equal with probability 2^-256.
fn hash_key(hash: &str) -> Vec<u8> {
    let raw = token_table::digest_hex(hash).and_then(|hex| {
        (0..32)
            .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()
    });
    match raw {
        Some(bytes) => {
            let mut k = Vec::with_capacity(33);
            k.push(b'h');
            k.extend_from_slice(&bytes);
            k
        }
        None => text_key(b'H', hash),
    }
}

/// The binary form of a [`TokenRecord`], the bulk of the index: about a third of its JSON.
/// Layout (integers little-endian): version `1`; jti (16); position, issued_at, expires_at
/// (8 each); grant type and format (1 each, their place in `GrantType::ALL` and `Jwt` 0 /
/// `Opaque` 1); family (a 0/1 flag, then 16 bytes if 1); client id, subject, space-separated
/// scopes and kid (each a u16 length and UTF-8; an empty kid is none).
const RECORD_V1: u8 = 1;
/// Version 1 followed by the token's terms ([`TokenTerms`]) as JSON (a u16 length and the
/// text), for tokens that have any.
const RECORD_V2: u8 = 2;

/// The row that names the index's row format; it sorts before every row.
const ROW_FORMAT: &[u8] = b"\x00format";
/// Access tokens in the compact table; binary records and raw hash keys for the others.
const ROW_FORMAT_V3: &[u8] = b"3";

pub(crate) fn put_text(out: &mut Vec<u8>, text: &str) {
    let bytes = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

pub(crate) fn encode_record(r: &TokenRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + r.subject.len());
    out.push(if r.terms.is_empty() {
        RECORD_V1
    } else {
        RECORD_V2
    });
    out.extend_from_slice(r.jti.as_bytes());
    out.extend_from_slice(&r.position.to_le_bytes());
    out.extend_from_slice(&r.issued_at.to_le_bytes());
    out.extend_from_slice(&r.expires_at.to_le_bytes());
    let grant = GrantType::ALL
        .iter()
        .position(|g| *g == r.grant_type)
        .unwrap_or(0) as u8;
    out.push(grant);
    out.push(match r.format {
        TokenFormat::Jwt => 0,
        TokenFormat::Opaque => 1,
    });
    match &r.family_id {
        Some(f) => {
            out.push(1);
            out.extend_from_slice(f.as_bytes());
        }
        None => out.push(0),
    }
    put_text(&mut out, r.client_id.as_str());
    put_text(&mut out, &r.subject);
    let scopes: Vec<&str> = r.scopes.iter().map(|s| s.as_str()).collect();
    put_text(&mut out, &scopes.join(" "));
    put_text(&mut out, r.kid.as_deref().unwrap_or(""));
    if !r.terms.is_empty() {
        put_text(&mut out, &String::from_utf8_lossy(&json(&r.terms)));
    }
    out
}

fn decode_record(bytes: &[u8]) -> Result<TokenRecord, ProjectionError> {
    let bad = |what: &str| ProjectionError::Corrupt(format!("token record: {what}"));
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], ProjectionError> {
        let part = bytes.get(at..at + n).ok_or_else(|| bad("cut short"))?;
        at += n;
        Ok(part)
    };
    let version = take(1)?[0];
    if version != RECORD_V1 && version != RECORD_V2 {
        return Err(bad("unknown version"));
    }
    let uuid = |b: &[u8]| Uuid::from_slice(b).map_err(|e| bad(&e.to_string()));
    let int = |b: &[u8]| -> [u8; 8] { b.try_into().unwrap_or([0; 8]) };
    let jti = uuid(take(16)?)?;
    let position = u64::from_le_bytes(int(take(8)?));
    let issued_at = i64::from_le_bytes(int(take(8)?));
    let expires_at = i64::from_le_bytes(int(take(8)?));
    let grant_type = *GrantType::ALL
        .get(take(1)?[0] as usize)
        .ok_or_else(|| bad("grant type"))?;
    let format = match take(1)?[0] {
        0 => TokenFormat::Jwt,
        1 => TokenFormat::Opaque,
        _ => return Err(bad("format")),
    };
    let family_id = match take(1)?[0] {
        0 => None,
        _ => Some(uuid(take(16)?)?),
    };
    let mut text = || -> Result<String, ProjectionError> {
        let len = u16::from_le_bytes(take(2)?.try_into().unwrap_or([0; 2])) as usize;
        String::from_utf8(take(len)?.to_vec()).map_err(|_| bad("text"))
    };
    let client_id = ClientId::parse(&text()?).map_err(|e| bad(&e.to_string()))?;
    let subject = text()?;
    let scopes = text()?;
    let scopes = if scopes.is_empty() {
        Vec::new()
    } else {
        Scope::parse_list(&scopes).map_err(|e| bad(&e.to_string()))?
    };
    let kid = Some(text()?).filter(|k| !k.is_empty());
    let terms = if version == RECORD_V2 {
        parse(text()?.as_bytes())?
    } else {
        TokenTerms::default()
    };
    Ok(TokenRecord {
        jti,
        client_id,
        subject,
        scopes,
        grant_type,
        format,
        issued_at,
        expires_at,
        family_id,
        position,
        kid,
        terms,
    })
}

fn revoked_key(jti: &Uuid) -> Vec<u8> {
    key16(b'r', jti)
}

/// The pure part: the rows an event writes.
pub fn changes(event: &RecordedEvent, out: &mut Vec<Write>) {
    match &event.event {
        Event::AccessTokenIssued(e) => {
            let AccessTokenIssued {
                jti,
                token_hash,
                client_id,
                subject,
                scopes,
                grant_type,
                format,
                issued_at,
                expires_at,
                family_id,
                kid,
                terms,
            } = e;
            key_expiry_row(e, out);
            if slot_hash(e).is_some() {
                return revoked_family(event, out);
            }
            let record = TokenRecord {
                jti: *jti,
                client_id: client_id.clone(),
                subject: subject.clone(),
                scopes: scopes.clone(),
                grant_type: *grant_type,
                format: *format,
                issued_at: *issued_at,
                expires_at: *expires_at,
                family_id: *family_id,
                position: event.position,
                kid: kid.clone(),
                terms: terms.clone(),
            };
            out.push(Write::Put(jti_key(jti), encode_record(&record)));
            if let Some(h) = token_hash {
                out.push(Write::Put(hash_key(h.as_str()), jti.as_bytes().to_vec()));
            }
        }
        Event::TokenRevoked(e) => {
            out.push(Write::Put(
                revoked_key(&e.jti),
                event.position.to_be_bytes().to_vec(),
            ));
        }
        Event::AuthorizationCodeIssued(e) => {
            out.push(Write::Put(text_key(b'c', e.code_hash.as_str()), json(e)));
        }
        Event::DeviceAuthorizationStarted(e) => {
            out.push(Write::Put(
                text_key(b'd', e.device_code_hash.as_str()),
                json(e),
            ));
            out.push(Write::Put(
                text_key(b'w', e.user_code_hash.as_str()),
                e.device_code_hash.as_str().as_bytes().to_vec(),
            ));
        }
        Event::DeviceAuthorizationApproved(e) => {
            out.push(Write::Put(
                text_key(b'D', e.device_code_hash.as_str()),
                json(e),
            ));
        }
        // An approval is a JSON object; a denial, this empty row.
        Event::DeviceAuthorizationDenied(e) => {
            out.push(Write::Put(
                text_key(b'D', e.device_code_hash.as_str()),
                Vec::new(),
            ));
        }
        Event::DeviceCodeRedeemed(e) => {
            out.push(Write::Put(
                text_key(b'X', e.device_code_hash.as_str()),
                e.family_id.as_bytes().to_vec(),
            ));
        }
        Event::AuthorizationRequestPushed(e) => {
            out.push(Write::Put(
                text_key(b'q', e.request_uri_hash.as_str()),
                json(e),
            ));
        }
        Event::PushedAuthorizationRequestUsed(e) => {
            out.push(Write::Put(
                text_key(b'Q', e.request_uri_hash.as_str()),
                Vec::new(),
            ));
        }
        Event::AuthorizationCodeRedeemed(e) => out.push(Write::Put(
            text_key(b'C', e.code_hash.as_str()),
            e.family_id.as_bytes().to_vec(),
        )),
        Event::RefreshTokenIssued(e) => {
            let row = RefreshRow {
                position: event.position,
                issued: e.clone(),
            };
            out.push(Write::Put(
                text_key(b'R', e.token_hash.as_str()),
                json(&row),
            ));
            let mut head = e.generation.to_be_bytes().to_vec();
            head.extend_from_slice(e.id.as_bytes());
            out.push(Write::Put(key16(b'g', &e.family_id), head));
        }
        Event::RefreshTokenRotated(e) => {
            let at = e.rotated_at.to_be_bytes().to_vec();
            out.push(Write::Put(key16(b'u', &e.id), at.clone()));
            if let Some(s) = &e.superseded {
                out.push(Write::Put(key16(b'u', s), at));
            }
        }
        // A DPoP proof's jti shares the rows of assertion jtis, under its key's name.
        Event::DpopProofAccepted(e) => out.push(Write::Put(
            assertion_key(
                e.client_id.as_str(),
                &domain::dpop::issuer_key(&e.jkt),
                &e.jti,
            ),
            e.expires_at.to_be_bytes().to_vec(),
        )),
        Event::SamlAssertionAccepted(e) => out.push(Write::Put(
            assertion_key(
                e.client_id.as_str(),
                &domain::saml::issuer_key(&e.issuer),
                &e.assertion_id,
            ),
            e.expires_at.to_be_bytes().to_vec(),
        )),
        Event::JwtAssertionAccepted(e) => out.push(Write::Put(
            assertion_key(e.client_id.as_str(), &e.issuer, &e.jti),
            e.expires_at.to_be_bytes().to_vec(),
        )),
        Event::AuthorizationRevoked(e) => out.push(Write::Put(
            authorization_key(e.client_id.as_str(), &e.user_id.to_string()),
            event.position.to_be_bytes().to_vec(),
        )),
        Event::InitialAccessTokenIssued(e) => out.push(Write::Put(
            text_key(b'I', e.token_hash.as_str()),
            e.id.as_bytes().to_vec(),
        )),
        Event::IdTokenIssued(e) => {
            if let (Some(family), false) = (&e.family_id, e.claims.userinfo.is_empty()) {
                out.push(Write::Put(key16(b'o', family), json(&e.claims.userinfo)));
            }
        }
        _ => {}
    }
    revoked_family(event, out)
}

/// One row per key and expiry second: the newest tells when the key's last token expires,
/// without reading before writing.
fn key_expiry_row(e: &AccessTokenIssued, out: &mut Vec<Write>) {
    if let Some(kid) = &e.kid {
        out.push(Write::Put(key_expiry_key(kid, e.expires_at), Vec::new()));
    }
}

fn revoked_family(event: &RecordedEvent, out: &mut Vec<Write>) {
    if let Some(family) = event.event.revoked_family() {
        out.push(Write::Put(
            key16(b'F', &family),
            event.position.to_be_bytes().to_vec(),
        ));
    }
}

/// Whether a token fits a slot of the compact table (see [`token_table::fits`]), and if so
/// the prefix of its hash, if it is opaque.
fn slot_hash(e: &AccessTokenIssued) -> Option<Option<[u8; 16]>> {
    if !e.terms.is_empty() {
        return None;
    }
    let hash = match &e.token_hash {
        Some(h) => Some(token_table::digest_prefix(h.as_str())?),
        None => None,
    };
    token_table::fits(&e.jti, e.issued_at, e.expires_at, hash.as_ref()).then_some(hash)
}

/// The token index and its storage (projection `tokens`): the tree of rows and the table of
/// access tokens. A writer takes the table's lock before the tree's, and so does a copy for a
/// checkpoint, so a copy of the two always reflects the same position.
pub struct TokenIndex {
    pub(crate) store: CheckpointedTree,
    table: RwLock<TokenTable>,
}

/// A consistent copy of the token index, for a checkpoint or a comparison.
pub(crate) struct TokensCopy {
    pub(crate) tree: crate::storage::Map,
    table: TableCopy,
}

impl TokensCopy {
    /// Every row in key order, as [`TokenIndex::dump`] shows them.
    /// The table's tokens show as `j` rows, like the tree's, merged in among them.
    pub(crate) fn into_dump_rows(self) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
        let mut tree = self.tree.into_iter().peekable();
        let mut table = self.table.into_dump_rows().peekable();
        std::iter::from_fn(move || match (tree.peek(), table.peek()) {
            (Some((a, _)), Some((b, _))) if b < a => table.next(),
            (Some(_), _) => tree.next(),
            (None, _) => table.next(),
        })
    }
}

impl RowSource for TokensCopy {
    fn position(&self) -> u64 {
        crate::storage::checkpoint_of(&self.tree)
    }
    fn for_each_row(&self, row: &mut crate::storage::RowSink<'_>) -> std::io::Result<()> {
        self.tree.for_each_row(row)?;
        self.table.for_each_checkpoint_row(row)
    }
}

impl TokenIndex {
    /// Opens the index from its last checkpoint in `source`. A checkpoint of another row
    /// format (an earlier build's) or whose table does not load is dropped, and the index
    /// rebuilt from the log.
    pub fn open(source: &dyn CheckpointStore) -> Result<Self, ProjectionError> {
        let mut loader = TableLoader::default();
        let (store, trusted) = CheckpointedTree::open_split(
            source,
            "tokens",
            Some(token_table::TABLE_PREFIX),
            &mut |k, v| loader.row(k, v),
        )?;
        let current = trusted && store.tree.get(ROW_FORMAT)?.as_deref() == Some(ROW_FORMAT_V3);
        let (table, rebuild) = match loader.finish() {
            Ok(table) if current => (table, false),
            _ => (TokenTable::default(), true),
        };
        let index = Self {
            store,
            table: RwLock::new(table),
        };
        if rebuild {
            index.clear()?;
        } else {
            let mut table = index.table_mut();
            index.store.tree.for_each_key_with_prefix(b"r", |k| {
                if let Ok(jti) = Uuid::from_slice(&k[1..]) {
                    table.note_revoked(&jti);
                }
            });
        }
        Ok(index)
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, TokenTable> {
        crate::storage::read_lock(&self.table)
    }

    fn table_mut(&self) -> std::sync::RwLockWriteGuard<'_, TokenTable> {
        crate::storage::write_lock(&self.table)
    }

    /// Makes room for about `events` more access tokens: a rebuild calls it once, rather
    /// than let the lookups grow one doubling at a time.
    pub fn reserve(&self, events: usize) {
        self.table_mut().reserve(events);
    }

    /// Access tokens held in the compact table.
    pub fn table_len(&self) -> usize {
        self.table().len()
    }

    /// Access tokens in the compact table that expire after `now` and were not revoked one
    /// by one (tokens with terms, kept as rows, are not counted).
    pub fn unexpired_in_table(&self, now: i64) -> usize {
        self.table().unexpired(now)
    }

    /// A consistent copy of the tree and the table.
    pub(crate) fn copy(&self) -> TokensCopy {
        let table = self.table();
        TokensCopy {
            tree: self.store.tree.snapshot(),
            table: table.copy(),
        }
    }

    /// Last applied global position.
    pub fn checkpoint(&self) -> Result<u64, ProjectionError> {
        self.store.checkpoint()
    }

    /// Applies events past the checkpoint.
    pub fn apply<E: AsRef<RecordedEvent>>(&self, events: &[E]) -> Result<(), ProjectionError> {
        let mut table = self.table_mut();
        let pending = self.store.pending(events)?;
        let Some(last) = pending.last().map(|e| e.position) else {
            return Ok(());
        };
        let mut writes = Vec::new();
        for e in pending {
            if let Event::TokenRevoked(r) = &e.event {
                table.note_revoked(&r.jti);
            }
            // The common case without building a record: the token goes to the table.
            if let Event::AccessTokenIssued(t) = &e.event {
                if let Some(hash) = slot_hash(t) {
                    table.insert(&token_table::TokenRef {
                        jti: &t.jti,
                        hash,
                        position: e.position,
                        issued_at: t.issued_at,
                        expires_at: t.expires_at,
                        client_id: &t.client_id,
                        subject: &t.subject,
                        scopes: &t.scopes,
                        grant_type: t.grant_type,
                        format: t.format,
                        kid: t.kid.as_deref(),
                        family_id: t.family_id.as_ref(),
                    });
                    key_expiry_row(t, &mut writes);
                    revoked_family(e, &mut writes);
                    continue;
                }
            }
            changes(e, &mut writes);
        }
        self.store.commit(writes, last)
    }

    /// Removes every row.
    pub fn clear(&self) -> Result<(), ProjectionError> {
        let mut table = self.table_mut();
        *table = TokenTable::default();
        self.store.clear()?;
        let mut batch = crate::storage::Batch::default();
        batch.insert(ROW_FORMAT, ROW_FORMAT_V3);
        self.store.tree.apply_batch(batch)
    }

    /// Looks a token up by id.
    pub fn by_jti(&self, jti: &Uuid) -> Result<Option<TokenView>, ProjectionError> {
        let (in_table, may_be_revoked) = {
            let table = self.table();
            (table.by_jti(jti), table.may_be_revoked(jti))
        };
        let record = match in_table {
            Some(r) => r,
            None => match self.store.tree.get(jti_key(jti))? {
                Some(bytes) => decode_record(&bytes)?,
                None => return Ok(None),
            },
        };
        self.view(record, may_be_revoked).map(Some)
    }

    /// A record with what later events say of it; `may_be_revoked` false spares the look for
    /// its revocation row.
    fn view(
        &self,
        record: TokenRecord,
        may_be_revoked: bool,
    ) -> Result<TokenView, ProjectionError> {
        let revoked = match may_be_revoked {
            true => self.store.tree.get(revoked_key(&record.jti))?,
            false => None,
        };
        let revoked_at_position = match revoked {
            Some(v) => Some(crate::storage::u64_from(&v)?),
            None => None,
        };
        let family_revoked = match &record.family_id {
            Some(f) => self.family_revoked(f)?,
            None => false,
        };
        let authorization_revoked = record.grant_type != GrantType::ClientCredentials
            && self.authorization_revoked_after(
                record.client_id.as_str(),
                &record.subject,
                record.position,
            )?;
        Ok(TokenView {
            record,
            revoked_at_position,
            family_revoked,
            authorization_revoked,
        })
    }

    fn family_revoked(&self, family: &Uuid) -> Result<bool, ProjectionError> {
        self.store.tree.contains_key(key16(b'F', family))
    }

    /// Whether the user withdrew the client's authorization after `position`.
    fn authorization_revoked_after(
        &self,
        client: &str,
        subject: &str,
        position: u64,
    ) -> Result<bool, ProjectionError> {
        Ok(
            match self.store.tree.get(authorization_key(client, subject))? {
                Some(v) => crate::storage::u64_from(&v)? > position,
                None => false,
            },
        )
    }

    /// The id of the initial access token (dynamic client registration) with this hash.
    pub fn initial_access_token(&self, hash: &str) -> Result<Option<Uuid>, ProjectionError> {
        match self.store.tree.get(text_key(b'I', hash))? {
            Some(v) => Uuid::from_slice(&v)
                .map(Some)
                .map_err(|e| ProjectionError::Corrupt(e.to_string())),
            None => Ok(None),
        }
    }

    /// The claims an OpenID Connect grant asked `/userinfo` for one by one (the `claims`
    /// parameter's `userinfo` member), for the tokens of `family`.
    pub fn userinfo_claims(&self, family: &Uuid) -> Result<Vec<String>, ProjectionError> {
        match self.store.tree.get(key16(b'o', family))? {
            Some(v) => parse(&v),
            None => Ok(Vec::new()),
        }
    }

    /// When the last token signed by `kid` expires, if it signed any.
    pub fn key_last_expiry(&self, kid: &str) -> Result<Option<i64>, ProjectionError> {
        let prefix = key_expiry_prefix(kid);
        let Some(row) = self.store.tree.scan_prefix(&prefix).next_back() else {
            return Ok(None);
        };
        let (k, _) = row?;
        let tail = k
            .get(prefix.len()..)
            .and_then(|t| <[u8; 8]>::try_from(t).ok())
            .ok_or_else(|| ProjectionError::Corrupt("key expiry row".into()))?;
        Ok(Some(i64::from_be_bytes(tail)))
    }

    /// Whether an assertion `jti` of `issuer` was accepted for `client` and is still
    /// remembered at `now` (until its expiry, plus the clock leeway).
    pub fn assertion_seen(
        &self,
        client: &str,
        issuer: &str,
        jti: &str,
        now: i64,
    ) -> Result<bool, ProjectionError> {
        Ok(
            match self.store.tree.get(assertion_key(client, issuer, jti))? {
                Some(v) => domain::assertion::remembered(crate::storage::u64_from(&v)? as i64, now),
                None => false,
            },
        )
    }

    /// A device authorization by the hash of its device code (RFC 8628).
    pub fn device(
        &self,
        device_code_hash: &str,
    ) -> Result<Option<domain::device::DeviceView>, ProjectionError> {
        let Some(bytes) = self.store.tree.get(text_key(b'd', device_code_hash))? else {
            return Ok(None);
        };
        let decision = match self.store.tree.get(text_key(b'D', device_code_hash))? {
            None => None,
            Some(row) if row.is_empty() => Some(domain::device::DeviceDecision::Denied),
            Some(row) => Some(domain::device::DeviceDecision::Approved(Box::new(parse(
                &row,
            )?))),
        };
        Ok(Some(domain::device::DeviceView {
            started: parse(&bytes)?,
            decision,
            redeemed: self
                .store
                .tree
                .get(text_key(b'X', device_code_hash))?
                .is_some(),
            user_locked: false,
        }))
    }

    /// A device authorization by the hash of its user code.
    pub fn device_by_user_code(
        &self,
        user_code_hash: &str,
    ) -> Result<Option<domain::device::DeviceView>, ProjectionError> {
        match self.store.tree.get(text_key(b'w', user_code_hash))? {
            Some(device) => self.device(
                std::str::from_utf8(&device)
                    .map_err(|_| ProjectionError::Corrupt("device row".into()))?,
            ),
            None => Ok(None),
        }
    }

    /// A pushed authorization request by the hash of its `request_uri` (RFC 9126).
    pub fn pushed(
        &self,
        request_uri_hash: &str,
    ) -> Result<Option<domain::par::PushedView>, ProjectionError> {
        let Some(bytes) = self.store.tree.get(text_key(b'q', request_uri_hash))? else {
            return Ok(None);
        };
        Ok(Some(domain::par::PushedView {
            pushed: parse(&bytes)?,
            used: self
                .store
                .tree
                .get(text_key(b'Q', request_uri_hash))?
                .is_some(),
        }))
    }

    /// An authorization code by the hash of its value.
    pub fn code(&self, code_hash: &str) -> Result<Option<CodeView>, ProjectionError> {
        let Some(bytes) = self.store.tree.get(text_key(b'c', code_hash))? else {
            return Ok(None);
        };
        let issued: AuthorizationCodeIssued = parse(&bytes)?;
        let redeemed_family = match self.store.tree.get(text_key(b'C', code_hash))? {
            Some(v) => {
                Some(Uuid::from_slice(&v).map_err(|e| ProjectionError::Corrupt(e.to_string()))?)
            }
            None => None,
        };
        Ok(Some(CodeView {
            issued,
            redeemed_family,
            // The user directory knows sessions; `ReadModels` fills this in.
            session_ended: false,
            user_locked: false,
        }))
    }

    /// A refresh token by the hash of its value, with its family's state.
    pub fn refresh(&self, token_hash: &str) -> Result<Option<RefreshView>, ProjectionError> {
        let Some(bytes) = self.store.tree.get(text_key(b'R', token_hash))? else {
            return Ok(None);
        };
        let row: RefreshRow = parse(&bytes)?;
        let issued = row.issued;
        let used_at = match self.store.tree.get(key16(b'u', &issued.id))? {
            Some(v) => Some(crate::storage::u64_from(&v)? as i64),
            None => None,
        };
        let head = match self.store.tree.get(key16(b'g', &issued.family_id))? {
            Some(v) if v.len() == 20 => {
                let mut g = [0u8; 4];
                g.copy_from_slice(&v[..4]);
                let id = Uuid::from_slice(&v[4..])
                    .map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
                (u32::from_be_bytes(g), id)
            }
            _ => (issued.generation, issued.id),
        };
        Ok(Some(RefreshView {
            family_revoked: self.family_revoked(&issued.family_id)?,
            authorization_revoked: self.authorization_revoked_after(
                issued.client_id.as_str(),
                &issued.user_id.to_string(),
                row.position,
            )?,
            used_at,
            head,
            issued,
            // The user directory knows sessions; `ReadModels` fills this in.
            session_ended: false,
            user_locked: false,
        }))
    }

    /// Looks an opaque token up by the hash of its value (`hmac-sha256:<hex>` or `sha256:<hex>`).
    pub fn by_hash(&self, hash: &str) -> Result<Option<TokenView>, ProjectionError> {
        if let Some(prefix) = token_table::digest_prefix(hash) {
            let found = {
                let table = self.table();
                table.by_hash(&prefix).map(|r| {
                    let may_be_revoked = table.may_be_revoked(&r.jti);
                    (r, may_be_revoked)
                })
            };
            if let Some((record, may_be_revoked)) = found {
                return self.view(record, may_be_revoked).map(Some);
            }
        }
        let Some(jti) = self.store.tree.get(hash_key(hash))? else {
            return Ok(None);
        };
        let jti = Uuid::from_slice(&jti).map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
        self.by_jti(&jti)
    }

    /// Deletes the rows `events` wrote, after compaction removed them from the log: every
    /// row here is the fact of one event, so forgetting the event is deleting its rows. (A
    /// key's expiry row is shared by its tokens of the same second; compaction removes all of
    /// those, so the row goes with the last of them.) Family rows are never forgotten:
    /// compaction keeps the events that revoke families.
    pub fn forget(&self, events: &[&RecordedEvent]) -> Result<(), ProjectionError> {
        let mut table = self.table_mut();
        let mut writes = Vec::new();
        for e in events {
            if let Event::AccessTokenIssued(t) = &e.event {
                if slot_hash(t).is_some() {
                    table.remove(&t.jti);
                }
            }
            changes(e, &mut writes);
        }
        let mut batch = crate::storage::Batch::default();
        for w in writes {
            if let Write::Put(k, _) = w {
                if k.first() != Some(&b'F') {
                    batch.remove(k);
                }
            }
        }
        self.store.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Every row, in key order: used to compare two builds of the index.
    pub fn dump(&self) -> Result<crate::storage::Rows, ProjectionError> {
        Ok(self.copy().into_dump_rows().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_record_reads_back_from_its_binary_form_for_every_grant_and_format() {
        for (i, grant_type) in GrantType::ALL.into_iter().enumerate() {
            let record = TokenRecord {
                jti: Uuid::from_u128(i as u128 + 1),
                client_id: ClientId::parse("billing").unwrap(),
                subject: "0190e5a4-0000-7000-8000-000000000001".into(),
                scopes: if i % 2 == 0 {
                    Scope::parse_list("read write").unwrap()
                } else {
                    Vec::new()
                },
                grant_type,
                format: if i % 2 == 0 {
                    TokenFormat::Opaque
                } else {
                    TokenFormat::Jwt
                },
                issued_at: 1_796_000_000,
                expires_at: 1_796_003_600,
                family_id: (i % 3 == 0).then(|| Uuid::from_u128(99)),
                position: 12_345 + i as u64,
                kid: (i % 2 == 1).then(|| "k-2026".to_owned()),
                // Every third token has terms: a version-2 record.
                terms: if i % 3 == 1 {
                    TokenTerms {
                        audience: vec!["https://api.example.com/".into()],
                        jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
                        act: Some(serde_json::json!({ "sub": "gateway" })),
                    }
                } else {
                    TokenTerms::default()
                },
            };
            let bytes = encode_record(&record);
            let versioned = if record.terms.is_empty() {
                RECORD_V1
            } else {
                RECORD_V2
            };
            assert_eq!(bytes[0], versioned);
            assert!(bytes.len() < serde_json::to_vec(&record).unwrap().len() / 2 + 140);
            assert_eq!(decode_record(&bytes).unwrap(), record);
            assert!(decode_record(&bytes[..bytes.len() - 1]).is_err());
        }
    }

    #[test]
    fn a_sha256_hash_key_is_its_raw_bytes_and_other_schemes_stay_text() {
        let hash = format!("sha256:{}", "0f".repeat(32));
        let k = hash_key(&hash);
        assert_eq!((k.len(), k[0], k[1]), (33, b'h', 0x0f));
        assert_eq!(hash_key("hmac:abc"), b"Hhmac:abc".to_vec());
    }
}
