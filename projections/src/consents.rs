//! Consents: which clients each user has authorized, with which scopes and since when. It
//! serves the `/account` page and the "already approved" check of `/authorize`.

use crate::storage::{CheckpointStore, CheckpointedTree, ProjectionError, Write};
use domain::event::Event;
use domain::values::{ClientId, Scope, UserId};
use domain::RecordedEvent;
use serde::{Deserialize, Serialize};

/// One remembered consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// The client.
    pub client_id: ClientId,
    /// Every scope granted.
    pub scopes: Vec<Scope>,
    /// When the user last approved.
    #[serde(with = "time::serde::rfc3339")]
    pub granted_at: time::OffsetDateTime,
}

fn key(user: &UserId, client: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(18 + client.len());
    k.push(b'u');
    k.extend_from_slice(user.0.as_bytes());
    k.push(0);
    k.extend_from_slice(client.as_bytes());
    k
}

fn user_prefix(user: &UserId) -> Vec<u8> {
    let mut k = key(user, "");
    k.truncate(18);
    k
}

/// The pure part: the rows an event writes.
pub fn changes(event: &RecordedEvent, out: &mut Vec<Write>) {
    match &event.event {
        Event::AuthorizationGranted(e) => {
            let row = Consent {
                client_id: e.client_id.clone(),
                scopes: e.scopes.clone(),
                granted_at: event.recorded_at,
            };
            if let Ok(bytes) = serde_json::to_vec(&row) {
                out.push(Write::Put(key(&e.user_id, e.client_id.as_str()), bytes));
            }
        }
        Event::AuthorizationRevoked(e) => {
            out.push(Write::Delete(key(&e.user_id, e.client_id.as_str())))
        }
        _ => {}
    }
}

/// The consents and their storage (projection `consents`).
pub struct Consents {
    pub(crate) store: CheckpointedTree,
}

impl Consents {
    /// Opens the projection from its last checkpoint in `source`.
    pub fn open(source: &dyn CheckpointStore) -> Result<Self, ProjectionError> {
        Ok(Self {
            store: CheckpointedTree::open(source, "consents")?,
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

    /// The user's consent for one client.
    pub fn get(&self, user: &UserId, client: &str) -> Result<Option<Consent>, ProjectionError> {
        match self.store.tree.get(key(user, client))? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| ProjectionError::Corrupt(e.to_string())),
            None => Ok(None),
        }
    }

    /// Every consent of a user, ordered by client id.
    pub fn of_user(&self, user: &UserId) -> Result<Vec<Consent>, ProjectionError> {
        self.store
            .tree
            .scan_prefix(user_prefix(user))
            .map(|row| {
                let (_, v) = row?;
                serde_json::from_slice(&v).map_err(|e| ProjectionError::Corrupt(e.to_string()))
            })
            .collect()
    }

    /// Every row, in key order.
    pub fn dump(&self) -> Result<crate::storage::Rows, ProjectionError> {
        self.store.dump()
    }
}
