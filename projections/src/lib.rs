//! authledger's read models. Each projection is a pure function of recorded events, kept in
//! memory with a checkpoint (the last global position it applied) and saved now and then to a
//! [`CheckpointStore`], so any of them can be dropped and rebuilt from the log with the same
//! result.
#![warn(missing_docs)]

pub mod audit_log;
pub mod client_directory;
pub mod consents;
mod storage;
pub mod token_index;
mod token_table;
pub mod users;

pub use audit_log::{AuditFilter, AuditLog, AuditPage, AuditQuery, EventLookup, Order};
pub use client_directory::{ClientDirectory, ClientView};
pub use consents::{Consent, Consents};
pub use storage::{
    checkpoint_of, CheckpointStore, Map, NoCheckpoints, ProjectionError, RowSink, RowSource, Rows,
    Write,
};
pub use token_index::{TokenIndex, TokenRecord, TokenView};
pub use users::{UserDirectory, UserView};

use domain::RecordedEvent;

/// Rows of one projection, in key order.
type RowIter = Box<dyn Iterator<Item = (Vec<u8>, Vec<u8>)>>;

/// Which read models a call covers. While a server runs, the audit postings follow the log on
/// a thread of their own ([`Part::Audit`]), off the path every append waits on; the others
/// ([`Part::AllButAudit`]) are applied before an append is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Every read model.
    All,
    /// Every read model but the audit postings.
    AllButAudit,
    /// The audit postings alone.
    Audit,
}

impl Part {
    fn covers(self, name: &str) -> bool {
        match self {
            Part::All => true,
            Part::AllButAudit => name != audit_log::NAME,
            Part::Audit => name == audit_log::NAME,
        }
    }
}

/// Every local read model, applied together in global order.
pub struct ReadModels {
    /// Token hash / jti → token facts.
    pub tokens: TokenIndex,
    /// Client id → client configuration.
    pub clients: ClientDirectory,
    /// Indexes of the audit trail.
    pub audit: AuditLog,
    /// User → authorized clients.
    pub consents: Consents,
    /// Username → user.
    pub users: UserDirectory,
}

impl ReadModels {
    /// Opens every projection from its last checkpoint in `source` (empty where it has none).
    /// The two largest (tokens and audit) load on threads of their own.
    pub fn open(source: &dyn CheckpointStore) -> Result<Self, ProjectionError> {
        std::thread::scope(|s| {
            let tokens = s.spawn(|| TokenIndex::open(source));
            let audit = s.spawn(|| AuditLog::open(source));
            let clients = ClientDirectory::open(source)?;
            let consents = Consents::open(source)?;
            let users = UserDirectory::open(source)?;
            let joined = |what: &str| {
                ProjectionError::Corrupt(format!("loading the {what} projection panicked"))
            };
            Ok(Self {
                tokens: tokens.join().map_err(|_| joined("tokens"))??,
                audit: audit.join().map_err(|_| joined("audit"))??,
                clients,
                consents,
                users,
            })
        })
    }

    /// Saves a copy of every projection to `target`. Each copy is taken in O(1) and written
    /// without holding the projection, so appends go on meanwhile; each carries its own
    /// checkpoint, so copies taken at slightly different positions are still each exact.
    /// Answers the lowest position saved.
    pub fn save_checkpoints(&self, target: &dyn CheckpointStore) -> Result<u64, ProjectionError> {
        let tokens = self.tokens.copy();
        let mut lowest = tokens.position();
        target.save(self.tokens.store.name, &tokens)?;
        drop(tokens);
        for (name, store) in self.tree_only() {
            let copy = store.tree.snapshot();
            lowest = lowest.min(checkpoint_of(&copy));
            target.save(name, &copy)?;
        }
        Ok(lowest)
    }

    /// The lowest checkpoint of the projections in `part`: catching them up starts after it.
    pub fn checkpoint_of(&self, part: Part) -> Result<u64, ProjectionError> {
        let mut lowest = u64::MAX;
        for (name, s) in self.stores() {
            if part.covers(name) {
                lowest = lowest.min(s.checkpoint()?);
            }
        }
        Ok(lowest)
    }

    /// Applies events to the projections in `part` ([`Part::All`] as [`ReadModels::apply`]);
    /// each skips what it already applied.
    pub fn apply_part<E: AsRef<RecordedEvent>>(
        &self,
        part: Part,
        events: &[E],
    ) -> Result<(), ProjectionError> {
        match part {
            Part::All => self.apply(events),
            Part::AllButAudit => self.apply_all_but_audit(events),
            Part::Audit => self.audit.apply(events),
        }
    }

    /// The lowest checkpoint of all projections: catching up starts after it.
    pub fn checkpoint(&self) -> Result<u64, ProjectionError> {
        self.checkpoint_of(Part::All)
    }

    /// The highest checkpoint of all projections: a log shorter than this is not the one they
    /// were built from.
    pub fn checkpoint_max(&self) -> Result<u64, ProjectionError> {
        let mut max = 0;
        for (_, s) in self.stores() {
            max = max.max(s.checkpoint()?);
        }
        Ok(max)
    }

    /// Applies events in global order; each projection skips what it already applied.
    pub fn apply<E: AsRef<RecordedEvent>>(&self, events: &[E]) -> Result<(), ProjectionError> {
        self.apply_all_but_audit(events)?;
        self.audit.apply(events)
    }

    /// [`ReadModels::apply`] on two threads: the audit postings on one, the other projections
    /// on the other. For catching up in large batches, where most of the time goes into
    /// building postings; the commit hook's small groups would pay more for the thread than
    /// it saves.
    pub fn apply_split<E: AsRef<RecordedEvent> + Sync>(
        &self,
        events: &[E],
    ) -> Result<(), ProjectionError> {
        std::thread::scope(|s| {
            let audit = s.spawn(|| self.audit.apply(events));
            let rest = self.apply_all_but_audit(events);
            let audit = audit.join().unwrap_or_else(|_| {
                Err(ProjectionError::Corrupt(
                    "the audit projection's thread panicked".into(),
                ))
            });
            rest.and(audit)
        })
    }

    /// The projections are independent trees with checkpoints of their own, so the order in
    /// which they apply a batch does not matter.
    fn apply_all_but_audit<E: AsRef<RecordedEvent>>(
        &self,
        events: &[E],
    ) -> Result<(), ProjectionError> {
        self.tokens.apply(events)?;
        self.clients.apply(events)?;
        self.consents.apply(events)?;
        self.users.apply(events)
    }

    /// Deletes every projection's rows and checkpoint, ready for a rebuild.
    pub fn clear(&self) -> Result<(), ProjectionError> {
        self.tokens.clear()?;
        self.clients.clear()?;
        self.audit.clear()?;
        self.consents.clear()?;
        self.users.clear()?;
        Ok(())
    }

    /// Moves every projection that has applied everything up to `applied` past a gap in the
    /// log that ends at `to` (events compaction removed): catching up from the log then goes
    /// on after it. A projection behind `applied` is left alone, so a real gap still shows.
    pub fn skip_gap(&self, applied: u64, to: u64) -> Result<(), ProjectionError> {
        self.skip_gap_of(Part::All, applied, to)
    }

    /// [`ReadModels::skip_gap`] for the projections in `part` only.
    pub fn skip_gap_of(&self, part: Part, applied: u64, to: u64) -> Result<(), ProjectionError> {
        for (name, store) in self.stores() {
            if part.covers(name) && store.checkpoint()? == applied {
                store.commit(Vec::new(), to)?;
            }
        }
        Ok(())
    }

    fn stores(&self) -> [(&'static str, &storage::CheckpointedTree); 5] {
        let [clients, audit, consents, users] = self.tree_only();
        [
            (self.tokens.store.name, &self.tokens.store),
            clients,
            audit,
            consents,
            users,
        ]
    }

    /// The projections whose rows are all in their tree (the token index has its table too).
    fn tree_only(&self) -> [(&'static str, &storage::CheckpointedTree); 4] {
        [
            &self.clients.store,
            &self.audit.store,
            &self.consents.store,
            &self.users.store,
        ]
        .map(|s| (s.name, s))
    }

    /// Each projection's name and every row of a consistent copy, in key order.
    fn trees(&self) -> Vec<(&'static str, RowIter)> {
        let tokens = self.tokens.copy();
        let mut out: Vec<(&'static str, RowIter)> =
            vec![(self.tokens.store.name, Box::new(tokens.into_dump_rows()))];
        for (name, s) in self.tree_only() {
            out.push((name, Box::new(s.tree.snapshot().into_iter())));
        }
        out
    }

    /// Compares every row of every projection with `other` (a fresh build from the same log),
    /// streaming both trees in key order; keeps the first `keep` differences.
    pub fn compare(&self, other: &ReadModels, keep: usize) -> Result<Comparison, ProjectionError> {
        let mut out = Comparison::default();
        for ((name, live), (_, rebuilt)) in self.trees().into_iter().zip(other.trees()) {
            let (mut a, mut b) = (live.into_iter(), rebuilt.into_iter());
            let (mut next_a, mut next_b) = (a.next(), b.next());
            loop {
                let (key, live_value, rebuilt_value) = match (&next_a, &next_b) {
                    (None, None) => break,
                    (Some((ka, va)), Some((kb, vb))) if ka == kb => {
                        let row = (ka.clone(), Some(va.clone()), Some(vb.clone()));
                        next_a = a.next();
                        next_b = b.next();
                        row
                    }
                    (Some((ka, va)), Some((kb, _))) if ka < kb => {
                        let row = (ka.clone(), Some(va.clone()), None);
                        next_a = a.next();
                        row
                    }
                    (Some((ka, va)), None) => {
                        let row = (ka.clone(), Some(va.clone()), None);
                        next_a = a.next();
                        row
                    }
                    (_, Some((kb, vb))) => {
                        let row = (kb.clone(), None, Some(vb.clone()));
                        next_b = b.next();
                        row
                    }
                };
                out.rows += 1;
                if live_value == rebuilt_value {
                    continue;
                }
                out.differing += 1;
                if out.differences.len() < keep {
                    out.differences.push(Difference {
                        projection: name,
                        key: printable(&key),
                        live: live_value.as_deref().map(printable),
                        rebuilt: rebuilt_value.as_deref().map(printable),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// The outcome of [`ReadModels::compare`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Comparison {
    /// Rows looked at (a key present on one side only counts once).
    pub rows: u64,
    /// Rows that differ.
    pub differing: u64,
    /// The first differences.
    pub differences: Vec<Difference>,
}

/// One row where the live projection and a fresh build differ.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    /// The projection (`tokens`, `clients`, `audit`, `consents`, `users`).
    pub projection: &'static str,
    /// The row's key, bytes outside printable ASCII escaped.
    pub key: String,
    /// The live row's value, if it has the row.
    pub live: Option<String>,
    /// The rebuilt row's value, if it has the row.
    pub rebuilt: Option<String>,
}

/// Bytes as text for a report: printable ASCII as is, the rest as `\xNN`, at most 300 bytes.
fn printable(bytes: &[u8]) -> String {
    let mut s = String::new();
    for b in bytes.iter().take(300) {
        if (0x20..0x7f).contains(b) {
            s.push(char::from(*b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    if bytes.len() > 300 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::event::{
        AccessTokenIssued, AuthorizationCodeIssued, AuthorizationCodeRedeemed,
        AuthorizationGranted, AuthorizationRevoked, ClientDeleted, ClientRegistered,
        ClientScopesChanged, Event, RefreshTokenIssued, RefreshTokenReuseDetected,
        RefreshTokenRotated, RevocationReason, TokenRevoked, UserRegistered,
    };
    use domain::values::HashKey;
    use domain::values::{ClientId, GrantType, PasswordHash, Scope, TokenFormat, UserId, Username};
    use domain::Metadata;
    use uuid::Uuid;

    fn id(s: &str) -> ClientId {
        ClientId::parse(s).unwrap()
    }

    fn recorded(position: u64, event: Event) -> RecordedEvent {
        RecordedEvent {
            position,
            stream: format!("x-{}", event.type_name()),
            version: position,
            id: Uuid::from_u128(position as u128),
            recorded_at: time::OffsetDateTime::from_unix_timestamp(1_700_000_000 + position as i64)
                .unwrap(),
            schema_version: 1,
            event,
            metadata: Metadata::system(),
            prev_hash: domain::event::GENESIS_HASH.into(),
        }
    }

    fn history() -> Vec<RecordedEvent> {
        let reg = |c: &str| {
            Event::ClientRegistered(ClientRegistered {
                client_id: id(c),
                name: c.into(),
                public: false,
                secret_hash: Some(HashKey::for_tests().hash("s")),
                redirect_uris: vec![],
                grant_types: vec![GrantType::ClientCredentials],
                scopes: Scope::parse_list("read").unwrap(),
                token_format: TokenFormat::Opaque,
                access_token_ttl_secs: 60,
                can_introspect: false,
                redirect_uri_matching: Default::default(),
                allow_plain_pkce: false,
                signing_alg: None,
                auth_method: None,
                jwks: None,
                trusted_issuers: vec![],
                admin: Some(false),
                oidc: Default::default(),
                dynamic: None,
                imported: None,
                extensions: Default::default(),
            })
        };
        let issued = |c: &str, n: u128| {
            Event::AccessTokenIssued(AccessTokenIssued {
                jti: Uuid::from_u128(n),
                token_hash: Some(HashKey::for_tests().hash(&format!("t{n}"))),
                client_id: id(c),
                subject: c.into(),
                scopes: Scope::parse_list("read").unwrap(),
                grant_type: GrantType::ClientCredentials,
                format: TokenFormat::Opaque,
                issued_at: 1,
                expires_at: 100,
                family_id: None,
                kid: None,
                terms: Default::default(),
            })
        };
        let user = UserId(Uuid::from_u128(77));
        let family = Uuid::from_u128(88);
        let refresh = |n: u128, generation| {
            Event::RefreshTokenIssued(RefreshTokenIssued {
                id: Uuid::from_u128(n),
                token_hash: HashKey::for_tests().hash(&format!("r{n}")),
                client_id: id("a"),
                user_id: user,
                scopes: Scope::parse_list("read").unwrap(),
                family_id: family,
                generation,
                issued_at: 1,
                expires_at: 100,
                family_expires_at: 1000,
                oidc: Default::default(),
                terms: Default::default(),
            })
        };
        let user_token = |n: u128| {
            Event::AccessTokenIssued(AccessTokenIssued {
                jti: Uuid::from_u128(n),
                token_hash: Some(HashKey::for_tests().hash(&format!("t{n}"))),
                client_id: id("a"),
                subject: user.to_string(),
                scopes: Scope::parse_list("read").unwrap(),
                grant_type: GrantType::AuthorizationCode,
                format: TokenFormat::Opaque,
                issued_at: 1,
                expires_at: 100,
                family_id: Some(family),
                kid: Some("k1".into()),
                terms: Default::default(),
            })
        };
        [
            reg("a"),
            reg("b"),
            issued("a", 1),
            issued("b", 2),
            Event::ClientScopesChanged(ClientScopesChanged {
                client_id: id("a"),
                scopes: Scope::parse_list("read write").unwrap(),
            }),
            Event::TokenRevoked(TokenRevoked {
                jti: Uuid::from_u128(1),
                client_id: id("a"),
                reason: RevocationReason::RevokedByClient,
                family_id: None,
            }),
            Event::ClientDeleted(ClientDeleted { client_id: id("b") }),
            // 8..
            Event::UserRegistered(UserRegistered {
                user_id: user,
                username: Username::parse("alice").unwrap(),
                password_hash: PasswordHash::parse("$argon2id$v=19$x").unwrap(),
            }),
            Event::AuthorizationGranted(AuthorizationGranted {
                client_id: id("a"),
                user_id: user,
                scopes: Scope::parse_list("read").unwrap(),
            }),
            Event::AuthorizationCodeIssued(AuthorizationCodeIssued {
                code_hash: HashKey::for_tests().hash("code"),
                client_id: id("a"),
                user_id: user,
                redirect_uri: "https://a.example/cb".into(),
                redirect_uri_sent: true,
                scopes: Scope::parse_list("read").unwrap(),
                code_challenge: None,
                code_challenge_method: None,
                issued_at: 1,
                expires_at: 61,
                oidc: Default::default(),
                terms: Default::default(),
            }),
            Event::AuthorizationCodeRedeemed(AuthorizationCodeRedeemed {
                code_hash: HashKey::for_tests().hash("code"),
                client_id: id("a"),
                user_id: user,
                family_id: family,
            }),
            user_token(3),
            refresh(4, 1),
            // 14..
            Event::RefreshTokenRotated(RefreshTokenRotated {
                id: Uuid::from_u128(4),
                client_id: id("a"),
                family_id: family,
                superseded: None,
                rotated_at: 5,
            }),
            refresh(5, 2),
            user_token(6),
            Event::RefreshTokenReuseDetected(RefreshTokenReuseDetected {
                id: Uuid::from_u128(4),
                client_id: id("a"),
                user_id: user,
                family_id: family,
            }),
            Event::AuthorizationRevoked(AuthorizationRevoked {
                client_id: id("a"),
                user_id: user,
            }),
            // 19
            Event::JwtAssertionAccepted(domain::event::JwtAssertionAccepted {
                client_id: id("a"),
                issuer: "idp".into(),
                subject: "alice".into(),
                jti: "j-1".into(),
                used_for: domain::event::AssertionUse::AuthorizationGrant,
                expires_at: 200,
            }),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, e)| recorded(i as u64 + 1, e))
        .collect()
    }

    fn open() -> ReadModels {
        ReadModels::open(&NoCheckpoints).unwrap()
    }

    #[test]
    fn the_read_models_reflect_the_history() {
        let m = open();
        m.apply(&history()).unwrap();
        let t1 = m
            .tokens
            .by_hash(HashKey::for_tests().hash("t1").as_str())
            .unwrap()
            .unwrap();
        assert_eq!(t1.revoked_at_position, Some(6));
        assert!(!t1.is_active(50));
        let t2 = m.tokens.by_jti(&Uuid::from_u128(2)).unwrap().unwrap();
        assert!(t2.is_active(50) && !t2.is_active(100));
        assert_eq!(m.clients.get("a").unwrap().client.scopes.len(), 2);
        assert!(
            m.clients.get("b").is_none(),
            "deleted clients leave the directory"
        );
        assert_eq!(m.checkpoint().unwrap(), 19);
        assert_eq!(m.tokens.key_last_expiry("k1").unwrap(), Some(100));
        assert_eq!(m.tokens.key_last_expiry("k2").unwrap(), None);
        assert!(m.tokens.assertion_seen("a", "idp", "j-1", 200).unwrap());
        assert!(!m.tokens.assertion_seen("a", "idp", "j-1", 300).unwrap());
        assert!(!m.tokens.assertion_seen("b", "idp", "j-1", 200).unwrap());
    }

    #[test]
    fn user_grants_are_reflected_for_the_decisions_that_need_them() {
        let m = open();
        let history = history();
        m.apply(&history[..16]).unwrap();
        let user = UserId(Uuid::from_u128(77));
        assert_eq!(m.users.by_username("alice").map(|u| u.user_id), Some(user));
        let code = m
            .tokens
            .code(HashKey::for_tests().hash("code").as_str())
            .unwrap()
            .unwrap();
        assert_eq!(code.redeemed_family, Some(Uuid::from_u128(88)));
        let old = m
            .tokens
            .refresh(HashKey::for_tests().hash("r4").as_str())
            .unwrap()
            .unwrap();
        assert_eq!((old.used_at, old.head.0), (Some(5), 2));
        assert!(!old.family_revoked);
        assert!(m.consents.get(&user, "a").unwrap().is_some());
        assert!(m
            .tokens
            .by_jti(&Uuid::from_u128(6))
            .unwrap()
            .unwrap()
            .is_active(50));
        // Reuse revokes the family: every token of the grant goes inactive.
        m.apply(&history[16..17]).unwrap();
        assert!(!m
            .tokens
            .by_jti(&Uuid::from_u128(6))
            .unwrap()
            .unwrap()
            .is_active(50));
        assert!(
            m.tokens
                .refresh(HashKey::for_tests().hash("r5").as_str())
                .unwrap()
                .unwrap()
                .family_revoked
        );
        m.apply(&history[17..]).unwrap();
        assert!(m.consents.of_user(&user).unwrap().is_empty());
    }

    #[test]
    fn applying_one_by_one_equals_a_full_rebuild_and_reapplying_changes_nothing() {
        let one = open();
        let all = open();
        for e in history() {
            one.apply(std::slice::from_ref(&e)).unwrap();
        }
        all.apply(&history()).unwrap();
        all.apply(&history()).unwrap();
        assert_eq!(one.tokens.dump().unwrap(), all.tokens.dump().unwrap());
        assert_eq!(one.clients.dump().unwrap(), all.clients.dump().unwrap());
        assert_eq!(one.audit.dump().unwrap(), all.audit.dump().unwrap());
        assert_eq!(one.consents.dump().unwrap(), all.consents.dump().unwrap());
        assert_eq!(one.users.dump().unwrap(), all.users.dump().unwrap());
        all.clear().unwrap();
        assert_eq!(all.checkpoint().unwrap(), 0);
        assert!(all.clients.list().is_empty());
    }

    /// Checkpoints kept in memory, row by row as a file would hold them.
    #[derive(Default)]
    struct MemoryCheckpoints(std::sync::Mutex<std::collections::HashMap<String, Rows>>);

    impl CheckpointStore for MemoryCheckpoints {
        fn load(
            &self,
            name: &str,
            row: &mut dyn FnMut(Vec<u8>, Vec<u8>),
        ) -> Result<bool, ProjectionError> {
            let saved = self.0.lock().unwrap().get(name).cloned();
            Ok(saved
                .map(|rows| rows.into_iter().for_each(|(k, v)| row(k, v)))
                .is_some())
        }
        fn save(&self, name: &str, rows: &dyn RowSource) -> Result<(), ProjectionError> {
            let mut all = Vec::new();
            rows.for_each_row(&mut |k, v| {
                all.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
            self.0.lock().unwrap().insert(name.to_owned(), all);
            Ok(())
        }
    }

    #[test]
    fn projections_reopened_from_their_checkpoints_equal_the_ones_saved() {
        let mut history = history();
        // A token whose times do not fit the compact table stays a row of the tree.
        let mut odd = history
            .iter()
            .find(|e| matches!(e.event, Event::AccessTokenIssued(_)))
            .cloned()
            .unwrap();
        if let Event::AccessTokenIssued(e) = &mut odd.event {
            e.jti = Uuid::from_u128(4242);
            e.token_hash = Some(HashKey::for_tests().hash("odd"));
            e.issued_at = -5;
        }
        odd.position = history.len() as u64 + 1;
        history.push(odd);
        let m = open();
        m.apply(&history[..10]).unwrap();
        let saved = MemoryCheckpoints::default();
        m.save_checkpoints(&saved).unwrap();
        let back = ReadModels::open(&saved).unwrap();
        assert_eq!(back.compare(&m, 10).unwrap().differing, 0);
        // Both go on from the checkpoint and stay equal.
        m.apply(&history).unwrap();
        back.apply(&history).unwrap();
        let report = back.compare(&m, 10).unwrap();
        assert_eq!((report.differing, &report.differences), (0, &vec![]));
        assert!(report.rows > 30, "{report:?}");
        assert!(m.tokens.table_len() >= 2);
        for models in [&m, &back] {
            let odd = models
                .tokens
                .by_hash(HashKey::for_tests().hash("odd").as_str())
                .unwrap();
            assert_eq!(odd.map(|v| v.record.issued_at), Some(-5));
            let t1 = models
                .tokens
                .by_hash(HashKey::for_tests().hash("t1").as_str())
                .unwrap();
            assert_eq!(t1.and_then(|v| v.revoked_at_position), Some(6));
        }
        // A checkpoint of an earlier row format is dropped: the index starts empty.
        let tokens = saved.0.lock().unwrap().get("tokens").cloned().unwrap();
        let older: Rows = tokens
            .into_iter()
            .map(|(k, v)| {
                if k == b"\x00format" {
                    (k, b"2".to_vec())
                } else {
                    (k, v)
                }
            })
            .collect();
        saved.0.lock().unwrap().insert("tokens".into(), older);
        let reopened = ReadModels::open(&saved).unwrap();
        assert_eq!(
            (
                reopened.tokens.checkpoint().unwrap(),
                reopened.tokens.table_len()
            ),
            (0, 0)
        );
    }

    struct Log(Vec<RecordedEvent>);

    impl EventLookup for Log {
        fn event_at(&self, p: u64) -> Result<Option<RecordedEvent>, ProjectionError> {
            Ok(self.0.iter().find(|e| e.position == p).cloned())
        }
        fn events_from(&self, p: u64, limit: usize) -> Result<Vec<RecordedEvent>, ProjectionError> {
            Ok(self
                .0
                .iter()
                .filter(|e| e.position >= p)
                .take(limit)
                .cloned()
                .collect())
        }
    }

    #[test]
    fn audit_queries_use_the_indexes_and_page_with_a_cursor() {
        let m = open();
        m.apply(&history()).unwrap();
        let log = Log(history());
        let q = |q: AuditQuery| -> Vec<u64> {
            m.audit
                .query(&q, &log)
                .unwrap()
                .events
                .iter()
                .map(|e| e.position)
                .collect()
        };
        let base = AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        };
        assert_eq!(
            q(AuditQuery {
                filter: AuditFilter {
                    client: Some("a".into()),
                    ..AuditFilter::default()
                },
                ..base.clone()
            }),
            [1, 3, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
        );
        assert_eq!(
            q(AuditQuery {
                filter: AuditFilter {
                    subject: Some(Uuid::from_u128(77).to_string()),
                    ..AuditFilter::default()
                },
                ..base.clone()
            }),
            [8, 9, 10, 11, 12, 13, 15, 16, 17, 18]
        );
        assert_eq!(
            q(AuditQuery {
                filter: AuditFilter {
                    subject: Some("b".into()),
                    ..AuditFilter::default()
                },
                ..base.clone()
            }),
            [4]
        );
        assert_eq!(
            q(AuditQuery {
                filter: AuditFilter {
                    types: vec!["TokenRevoked".into(), "ClientRegistered".into()],
                    ..AuditFilter::default()
                },
                ..base.clone()
            }),
            [1, 2, 6]
        );
        let t = |s: i64| time::OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).unwrap();
        assert_eq!(
            q(AuditQuery {
                since: Some(t(3)),
                until: Some(t(5)),
                ..base.clone()
            }),
            [3, 4, 5]
        );
        let page = m
            .audit
            .query(
                &AuditQuery {
                    filter: AuditFilter {
                        client: Some("a".into()),
                        ..AuditFilter::default()
                    },
                    limit: 2,
                    ..base.clone()
                },
                &log,
            )
            .unwrap();
        assert_eq!(page.next_cursor, Some(3));
        assert_eq!(
            q(AuditQuery {
                filter: AuditFilter {
                    client: Some("a".into()),
                    ..AuditFilter::default()
                },
                cursor: page.next_cursor,
                ..base.clone()
            }),
            [5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
        );
        // Bounds are exact below the index's millisecond grain.
        let nanos = time::Duration::nanoseconds(1);
        let window = AuditQuery {
            since: Some(t(3) + nanos),
            until: Some(t(5) - nanos),
            ..base.clone()
        };
        assert_eq!(q(window), [4]);
        // A clear interrupted after the checkpoint went: re-applying adds no position twice.
        m.audit.forget_checkpoint().unwrap();
        m.audit.apply(&history()).unwrap();
        let registered = AuditQuery {
            filter: AuditFilter {
                types: vec!["ClientRegistered".into()],
                ..AuditFilter::default()
            },
            ..base.clone()
        };
        assert_eq!(q(registered.clone()), [1, 2]);
        // Newest first, paged backwards with the same kind of cursor, through the index...
        let newest = AuditQuery {
            filter: AuditFilter {
                client: Some("a".into()),
                ..AuditFilter::default()
            },
            order: Order::Descending,
            limit: 4,
            ..base.clone()
        };
        assert_eq!(q(newest.clone()), [19, 18, 17, 16]);
        assert_eq!(
            q(AuditQuery {
                cursor: Some(16),
                ..newest
            }),
            [15, 14, 13, 12]
        );
        // ...through merged type indexes, and by scanning without one.
        assert_eq!(
            q(AuditQuery {
                order: Order::Descending,
                filter: AuditFilter {
                    types: vec!["TokenRevoked".into(), "ClientRegistered".into()],
                    ..AuditFilter::default()
                },
                ..base.clone()
            }),
            [6, 2, 1]
        );
        assert_eq!(
            q(AuditQuery {
                order: Order::Descending,
                limit: 3,
                cursor: Some(5),
                ..base.clone()
            }),
            [4, 3, 2]
        );
        // The log as it was at position 5.
        assert_eq!(
            q(AuditQuery {
                upto: Some(5),
                ..registered
            }),
            [1, 2]
        );
        assert_eq!(
            q(AuditQuery {
                upto: Some(5),
                ..base
            }),
            [1, 2, 3, 4, 5]
        );
    }
}
