//! The client directory: client id → configuration, for authentication and the registry.
//!
//! Every row is also held in memory: each token, introspection and revocation request reads
//! it, and the whole directory of even 100,000 clients is a few tens of megabytes.

use crate::storage::{CheckpointStore, CheckpointedTree, ProjectionError, Write};
use domain::client::{evolve, Client, ClientState};
use domain::event::Event;
use domain::RecordedEvent;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A client as the directory shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientView {
    /// The configuration.
    #[serde(flatten)]
    pub client: Client,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: time::OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
    /// Version of its configuration stream.
    pub version: u64,
}

/// The pure part: the directory row after an event (`None`: no row).
pub fn apply_one(current: Option<ClientView>, event: &RecordedEvent) -> Option<ClientView> {
    match &event.event {
        e if !e.is_client_config() => current,
        Event::ClientDeleted(_) => None,
        Event::ClientRegistered(_) => {
            let mut state = ClientState::default();
            evolve(&mut state, &event.event);
            state.active().map(|client| ClientView {
                client: client.clone(),
                registered_at: event.recorded_at,
                updated_at: event.recorded_at,
                version: event.version,
            })
        }
        _ => {
            let view = current?;
            let mut state = ClientState::Active(view.client);
            evolve(&mut state, &event.event);
            let ClientState::Active(client) = state else {
                return None;
            };
            Some(ClientView {
                client,
                registered_at: view.registered_at,
                updated_at: event.recorded_at,
                version: event.version,
            })
        }
    }
}

/// The client directory and its storage (projection `clients`).
pub struct ClientDirectory {
    pub(crate) store: CheckpointedTree,
    cache: RwLock<HashMap<String, Arc<ClientView>>>,
}

impl ClientDirectory {
    /// Opens the directory from its last checkpoint in `source`.
    pub fn open(source: &dyn CheckpointStore) -> Result<Self, ProjectionError> {
        let store = CheckpointedTree::open(source, "clients")?;
        let mut cache = HashMap::new();
        for row in store.tree.scan_prefix(b"c") {
            let (_, v) = row?;
            let view: ClientView =
                serde_json::from_slice(&v).map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
            cache.insert(view.client.client_id.as_str().to_owned(), Arc::new(view));
        }
        Ok(Self {
            store,
            cache: RwLock::new(cache),
        })
    }

    /// Last applied global position.
    pub fn checkpoint(&self) -> Result<u64, ProjectionError> {
        self.store.checkpoint()
    }

    /// Applies events past the checkpoint.
    pub fn apply<E: AsRef<RecordedEvent>>(&self, events: &[E]) -> Result<(), ProjectionError> {
        let mut changed: HashMap<String, Option<ClientView>> = HashMap::new();
        {
            let cache = self.cache.read().map_err(|_| poisoned())?;
            self.store.apply(events, |e, writes| {
                if !e.event.is_client_config() {
                    return;
                }
                let Some(id) = e.event.client_id().map(|c| c.as_str().to_owned()) else {
                    return;
                };
                let current = match changed.get(&id) {
                    Some(v) => v.clone(),
                    None => cache.get(&id).map(|v| (**v).clone()),
                };
                let next = apply_one(current, e);
                let key = row_key(&id);
                match &next {
                    Some(v) => {
                        if let Ok(bytes) = serde_json::to_vec(v) {
                            writes.push(Write::Put(key, bytes));
                        }
                    }
                    None => writes.push(Write::Delete(key)),
                }
                changed.insert(id, next);
            })?;
        }
        if !changed.is_empty() {
            let mut cache = self.cache.write().map_err(|_| poisoned())?;
            for (id, view) in changed {
                match view {
                    Some(v) => cache.insert(id, Arc::new(v)),
                    None => cache.remove(&id),
                };
            }
        }
        Ok(())
    }

    /// Removes every row.
    pub fn clear(&self) -> Result<(), ProjectionError> {
        self.store.clear()?;
        self.cache.write().map_err(|_| poisoned())?.clear();
        Ok(())
    }

    /// One client, if registered and not deleted.
    pub fn get(&self, client_id: &str) -> Option<Arc<ClientView>> {
        self.cache.read().ok()?.get(client_id).cloned()
    }

    /// Every client, ordered by id.
    pub fn list(&self) -> Vec<Arc<ClientView>> {
        let mut all: Vec<_> = match self.cache.read() {
            Ok(c) => c.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        all.sort_by(|a, b| a.client.client_id.cmp(&b.client.client_id));
        all
    }

    /// Every stored row, in key order: used to compare two builds.
    pub fn dump(&self) -> Result<crate::storage::Rows, ProjectionError> {
        self.store.dump()
    }
}

fn row_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(b'c');
    k.extend_from_slice(id.as_bytes());
    k
}

fn poisoned() -> ProjectionError {
    ProjectionError::Corrupt("client directory lock poisoned".into())
}
