//! The token index: jti (and hash of an opaque token) → client, subject, scopes, expiry, state.
//!
//! Revocations are rows of their own (`r` + jti), so `apply` never reads before it writes.

use crate::storage::{CheckpointedTree, ProjectionError, Write};
use domain::event::{AccessTokenIssued, Event};
use domain::values::{ClientId, GrantType, Scope, TokenFormat};
use domain::RecordedEvent;
use serde::{Deserialize, Serialize};
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
}

/// A token and whether it was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// The token's facts.
    pub record: TokenRecord,
    /// Revoked (the position of the revocation event).
    pub revoked_at_position: Option<u64>,
}

impl TokenView {
    /// Active at `now`: not revoked and not expired. (The client's existence is checked by the
    /// caller against the client directory.)
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at_position.is_none() && now < self.record.expires_at
    }
}

fn jti_key(jti: &Uuid) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(b'j');
    k.extend_from_slice(jti.as_bytes());
    k
}

fn hash_key(hash: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + hash.len());
    k.push(b'h');
    k.extend_from_slice(hash.as_bytes());
    k
}

fn revoked_key(jti: &Uuid) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(b'r');
    k.extend_from_slice(jti.as_bytes());
    k
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
            } = e;
            let record = TokenRecord {
                jti: *jti,
                client_id: client_id.clone(),
                subject: subject.clone(),
                scopes: scopes.clone(),
                grant_type: *grant_type,
                format: *format,
                issued_at: *issued_at,
                expires_at: *expires_at,
            };
            if let Ok(bytes) = serde_json::to_vec(&record) {
                out.push(Write::Put(jti_key(jti), bytes));
            }
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
        _ => {}
    }
}

/// The token index and its storage (tree `proj.tokens`).
pub struct TokenIndex {
    store: CheckpointedTree,
}

impl TokenIndex {
    /// Opens the index in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, ProjectionError> {
        Ok(Self {
            store: CheckpointedTree::open(db, "proj.tokens")?,
        })
    }

    /// Last applied global position.
    pub fn checkpoint(&self) -> Result<u64, ProjectionError> {
        self.store.checkpoint()
    }

    /// Applies events past the checkpoint.
    pub fn apply<E: AsRef<RecordedEvent>>(&self, events: &[E]) -> Result<(), ProjectionError> {
        self.store.apply(events, changes)
    }

    /// Removes every row.
    pub fn clear(&self) -> Result<(), ProjectionError> {
        self.store.clear()
    }

    /// Looks a token up by id.
    pub fn by_jti(&self, jti: &Uuid) -> Result<Option<TokenView>, ProjectionError> {
        let Some(bytes) = self.store.tree.get(jti_key(jti))? else {
            return Ok(None);
        };
        let record: TokenRecord =
            serde_json::from_slice(&bytes).map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
        let revoked_at_position = match self.store.tree.get(revoked_key(jti))? {
            Some(v) => Some(crate::storage::u64_from(&v)?),
            None => None,
        };
        Ok(Some(TokenView {
            record,
            revoked_at_position,
        }))
    }

    /// Looks an opaque token up by the hash of its value (`sha256:<hex>`).
    pub fn by_hash(&self, hash: &str) -> Result<Option<TokenView>, ProjectionError> {
        let Some(jti) = self.store.tree.get(hash_key(hash))? else {
            return Ok(None);
        };
        let jti = Uuid::from_slice(&jti).map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
        self.by_jti(&jti)
    }

    /// Every row, in key order: used to compare two builds of the index.
    pub fn dump(&self) -> Result<crate::storage::Rows, ProjectionError> {
        self.store.dump()
    }
}
