//! The user directory: username → user, for sign-in, sessions and the admin API.
//!
//! Held in memory as well as in its tree: every sign-in and every page with a session reads
//! it, and a million users fit in a few hundred megabytes at most.

use crate::storage::{CheckpointStore, CheckpointedTree, ProjectionError, Write};
use domain::event::Event;
use domain::user::{evolve, User, UserState};
use domain::values::{PasswordHash, UserId, Username};
use domain::RecordedEvent;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A user as the directory shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// Its id.
    pub user_id: UserId,
    /// Its username.
    pub username: Username,
    /// argon2id hash of the password.
    pub password_hash: PasswordHash,
    /// Bumped by each password change; sessions carry it.
    pub password_version: u32,
    /// When it registered.
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: time::OffsetDateTime,
}

fn row_key(id: &UserId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(b'u');
    k.extend_from_slice(id.0.as_bytes());
    k
}

/// The pure part: the directory row after an event (`None`: unchanged or no user).
pub fn apply_one(current: Option<&UserView>, event: &RecordedEvent) -> Option<UserView> {
    let mut state = match current {
        Some(v) => UserState::Active(User {
            user_id: v.user_id,
            username: v.username.clone(),
            password_hash: v.password_hash.clone(),
            password_version: v.password_version,
        }),
        None => UserState::Unregistered,
    };
    evolve(&mut state, &event.event);
    let UserState::Active(u) = state else {
        return None;
    };
    Some(UserView {
        user_id: u.user_id,
        username: u.username,
        password_hash: u.password_hash,
        password_version: u.password_version,
        registered_at: current.map_or(event.recorded_at, |c| c.registered_at),
    })
}

#[derive(Default)]
struct Cache {
    by_id: HashMap<UserId, Arc<UserView>>,
    by_name: HashMap<String, UserId>,
}

/// The user directory and its storage (projection `users`).
pub struct UserDirectory {
    pub(crate) store: CheckpointedTree,
    cache: RwLock<Cache>,
}

fn poisoned() -> ProjectionError {
    ProjectionError::Corrupt("user directory lock poisoned".into())
}

impl UserDirectory {
    /// Opens the directory from its last checkpoint in `source`.
    pub fn open(source: &dyn CheckpointStore) -> Result<Self, ProjectionError> {
        let store = CheckpointedTree::open(source, "users")?;
        let mut cache = Cache::default();
        for row in store.tree.scan_prefix(b"u") {
            let (_, v) = row?;
            let view: UserView =
                serde_json::from_slice(&v).map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
            cache
                .by_name
                .insert(view.username.as_str().to_owned(), view.user_id);
            cache.by_id.insert(view.user_id, Arc::new(view));
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
        let mut changed: HashMap<UserId, UserView> = HashMap::new();
        {
            let cache = self.cache.read().map_err(|_| poisoned())?;
            self.store.apply(events, |e, writes| {
                let id = match &e.event {
                    Event::UserRegistered(r) => r.user_id,
                    Event::UserPasswordChanged(c) => c.user_id,
                    _ => return,
                };
                let current = changed
                    .get(&id)
                    .cloned()
                    .or_else(|| cache.by_id.get(&id).map(|v| (**v).clone()));
                if let Some(next) = apply_one(current.as_ref(), e) {
                    if let Ok(bytes) = serde_json::to_vec(&next) {
                        writes.push(Write::Put(row_key(&id), bytes));
                    }
                    changed.insert(id, next);
                }
            })?;
        }
        if !changed.is_empty() {
            let mut cache = self.cache.write().map_err(|_| poisoned())?;
            for (id, view) in changed {
                cache.by_name.insert(view.username.as_str().to_owned(), id);
                cache.by_id.insert(id, Arc::new(view));
            }
        }
        Ok(())
    }

    /// Removes every row.
    pub fn clear(&self) -> Result<(), ProjectionError> {
        self.store.clear()?;
        let mut cache = self.cache.write().map_err(|_| poisoned())?;
        *cache = Cache::default();
        Ok(())
    }

    /// A user by id.
    pub fn get(&self, id: &UserId) -> Option<Arc<UserView>> {
        self.cache.read().ok()?.by_id.get(id).cloned()
    }

    /// A user by username.
    pub fn by_username(&self, username: &str) -> Option<Arc<UserView>> {
        let cache = self.cache.read().ok()?;
        let id = cache.by_name.get(username)?;
        cache.by_id.get(id).cloned()
    }

    /// Every user, ordered by username.
    pub fn list(&self) -> Vec<Arc<UserView>> {
        let mut all: Vec<_> = match self.cache.read() {
            Ok(c) => c.by_id.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        all.sort_by(|a, b| a.username.cmp(&b.username));
        all
    }

    /// Every row, in key order.
    pub fn dump(&self) -> Result<crate::storage::Rows, ProjectionError> {
        self.store.dump()
    }
}
