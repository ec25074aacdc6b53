//! The user directory: username → user, for sign-in, sessions and the admin API.
//!
//! Held in memory as well as in its tree: every sign-in and every page with a session reads
//! it, and a million users fit in a few hundred megabytes at most.

use crate::storage::{CheckpointStore, CheckpointedTree, ProjectionError, Write};
use domain::event::Event;
use domain::user::{evolve, User, UserState};
use domain::values::{ClientId, PasswordHash, UserId, Username};
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
    /// Profile claims (absent in rows written before profiles existed, and while none is
    /// set: none).
    #[serde(default, skip_serializing_if = "is_default")]
    pub profile: domain::event::UserProfile,
    /// When the profile last changed (Unix seconds; 0: never).
    #[serde(default, skip_serializing_if = "is_default")]
    pub profile_updated_at: i64,
    /// Locked by an administrator.
    #[serde(default, skip_serializing_if = "is_default")]
    pub disabled: bool,
    /// How often an administrator ended its sessions (sessions carry it).
    #[serde(default, skip_serializing_if = "is_default")]
    pub sessions_epoch: u32,
}

/// A browser session as the directory keeps it (row `S` + sid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    /// The user.
    pub user_id: UserId,
    /// When the user signed in.
    pub auth_time: i64,
    /// When the cookie expires.
    pub expires_at: i64,
}

/// A back-channel logout notice still owed (row `P` + sid + NUL + client, and `Q` beside it
/// with the attempts and the next due time once an attempt failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedNotice {
    /// The session that ended.
    pub sid: String,
    /// Its user.
    pub user_id: UserId,
    /// The client.
    pub client_id: ClientId,
    /// Where to POST it.
    pub uri: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (Unix seconds).
    pub due_at: i64,
}

fn session_key(prefix: u8, sid: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + sid.len());
    k.push(prefix);
    k.extend_from_slice(sid.as_bytes());
    k
}

fn session_client_key(prefix: u8, sid: &str, client: &str) -> Vec<u8> {
    let mut k = session_key(prefix, sid);
    k.push(0);
    k.extend_from_slice(client.as_bytes());
    k
}

/// The pure part for sessions: the rows a session event writes (`S` started, `E` ended, `T`
/// a client got an id_token in it, `P` and `Q` a notice owed). Answers whether the event was
/// one; every row is written without reading another.
fn session_changes(e: &RecordedEvent, writes: &mut Vec<Write>) -> bool {
    fn json<T: Serialize>(v: &T) -> Vec<u8> {
        serde_json::to_vec(v).unwrap_or_default()
    }
    match &e.event {
        Event::SessionStarted(s) => writes.push(Write::Put(
            session_key(b'S', &s.sid),
            json(&SessionRow {
                user_id: s.user_id,
                auth_time: s.auth_time,
                expires_at: s.expires_at,
            }),
        )),
        Event::SessionEnded(s) => {
            writes.push(Write::Put(
                session_key(b'E', &s.sid),
                s.ended_at.to_be_bytes().to_vec(),
            ));
            for n in &s.notify {
                writes.push(Write::Put(
                    session_client_key(b'P', &s.sid, n.client_id.as_str()),
                    json(&OwedNotice {
                        sid: s.sid.clone(),
                        user_id: s.user_id,
                        client_id: n.client_id.clone(),
                        uri: n.uri.clone(),
                        attempts: 0,
                        due_at: s.ended_at,
                    }),
                ));
            }
        }
        Event::IdTokenIssued(t) => match &t.sid {
            Some(sid) => writes.push(Write::Put(
                session_client_key(b'T', sid, t.client_id.as_str()),
                Vec::new(),
            )),
            None => return false,
        },
        Event::BackchannelLogoutAttempted(a) => {
            let retry = session_client_key(b'Q', &a.sid, a.client_id.as_str());
            match a.retry_at {
                // The owed row keeps the URI; the retry row beside it says when next.
                Some(due_at) if !a.delivered => {
                    let mut v = a.attempt.to_be_bytes().to_vec();
                    v.extend_from_slice(&due_at.to_be_bytes());
                    writes.push(Write::Put(retry, v));
                }
                _ => {
                    writes.push(Write::Delete(session_client_key(
                        b'P',
                        &a.sid,
                        a.client_id.as_str(),
                    )));
                    writes.push(Write::Delete(retry));
                }
            }
        }
        _ => return false,
    }
    true
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
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
            profile: v.profile.clone(),
            profile_updated_at: v.profile_updated_at,
            disabled: v.disabled,
            sessions_epoch: v.sessions_epoch,
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
        profile: u.profile,
        profile_updated_at: u.profile_updated_at,
        disabled: u.disabled,
        sessions_epoch: u.sessions_epoch,
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
                if session_changes(e, writes) {
                    return;
                }
                let id = match &e.event {
                    Event::UserRegistered(r) => r.user_id,
                    Event::UserPasswordChanged(c) => c.user_id,
                    Event::UserProfileChanged(c) => c.user_id,
                    Event::UserDisabled(c) => c.user_id,
                    Event::UserEnabled(c) => c.user_id,
                    Event::UserSessionsEnded(c) => c.user_id,
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

    /// A session by id, if it was started and has not ended.
    pub fn live_session(&self, sid: &str) -> Result<Option<SessionRow>, ProjectionError> {
        if self.store.tree.contains_key(session_key(b'E', sid))? {
            return Ok(None);
        }
        match self.store.tree.get(session_key(b'S', sid))? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| ProjectionError::Corrupt(e.to_string())),
            None => Ok(None),
        }
    }

    /// Whether the session ended.
    pub fn session_ended(&self, sid: &str) -> Result<bool, ProjectionError> {
        self.store.tree.contains_key(session_key(b'E', sid))
    }

    /// The clients that got id_tokens in a session.
    pub fn session_clients(&self, sid: &str) -> Result<Vec<ClientId>, ProjectionError> {
        let prefix = {
            let mut p = session_key(b'T', sid);
            p.push(0);
            p
        };
        let mut out = Vec::new();
        for row in self.store.tree.scan_prefix(&prefix) {
            let (k, _) = row?;
            let name = std::str::from_utf8(&k[prefix.len()..])
                .map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
            if let Ok(c) = ClientId::parse(name) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Every back-channel logout notice still owed, with its attempts and due time.
    pub fn owed_notices(&self) -> Result<Vec<OwedNotice>, ProjectionError> {
        let mut out = Vec::new();
        for row in self.store.tree.scan_prefix([b'P']) {
            let (k, v) = row?;
            let mut n: OwedNotice =
                serde_json::from_slice(&v).map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
            let mut retry = k.clone();
            retry[0] = b'Q';
            if let Some(r) = self.store.tree.get(&retry)? {
                if r.len() == 12 {
                    n.attempts = u32::from_be_bytes([r[0], r[1], r[2], r[3]]);
                    n.due_at = crate::storage::u64_from(&r[4..])? as i64;
                }
            }
            out.push(n);
        }
        Ok(out)
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
