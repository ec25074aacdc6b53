//! The signing-key aggregate (stream `keys`): which keys are published, which one signs for
//! each algorithm, and when a superseded key may leave the JWKS.
//!
//! A key's life: generated (published in the JWKS at once), active from a time at least the
//! publication lead time later (so that resource servers that cache the JWKS know it before
//! they see a token signed with it), superseded when a newer key of its algorithm becomes
//! active, and retired once every token it signed has expired.

use crate::client::MAX_ACCESS_TOKEN_TTL_SECS;
use crate::event::{
    EncryptedPrivateKey, Event, KeyOrigin, SigningKeyActivated, SigningKeyGenerated,
    SigningKeyRetired,
};
use crate::values::SigningAlgorithm;
use std::collections::BTreeMap;

/// Default seconds a superseded key outlives the last token it signed, for resource servers
/// whose clocks run behind and for requests in flight when it was superseded.
pub const RETIRE_LEEWAY_SECS: i64 = 60;

/// Seconds a key stays published after it stopped signing, whatever the leeway: a request
/// that chose it just before may still be recording its token, whose expiry the index does not
/// know yet.
pub const MIN_SUPERSEDED_SECS: i64 = 5;

/// One key, as its events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub algorithm: SigningAlgorithm,
    /// Public JWK.
    pub public_jwk: serde_json::Value,
    /// The encrypted private key (none for a PEM-file key).
    pub private_key: Option<EncryptedPrivateKey>,
    /// Where it came from.
    pub origin: KeyOrigin,
    /// Generated at.
    pub created_at: i64,
    /// Signs from then on, if activated.
    pub active_from: Option<i64>,
    /// Retired at.
    pub retired_at: Option<i64>,
    /// Position in the stream, breaking ties between equal activation times.
    pub order: usize,
}

/// Where a key stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Published, not signing yet.
    Pending,
    /// Signs new tokens of its algorithm.
    Active,
    /// A newer key signs; published until its tokens expire.
    Superseded,
    /// Out of the JWKS.
    Retired,
}

impl KeyStatus {
    /// Lower-case name, as the CLI prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Pending => "pending",
            KeyStatus::Active => "active",
            KeyStatus::Superseded => "superseded",
            KeyStatus::Retired => "retired",
        }
    }
}

/// The fold of the `keys` stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    /// Every key ever generated, in stream order.
    pub keys: Vec<KeyEntry>,
}

impl KeyRing {
    /// Folds the events of the `keys` stream.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut ring = Self::default();
        for e in events {
            ring.evolve(e);
        }
        ring
    }

    /// Folds one event.
    pub fn evolve(&mut self, event: &Event) {
        match event {
            Event::SigningKeyGenerated(e) => {
                let order = self.keys.len();
                self.keys.push(KeyEntry {
                    kid: e.kid.clone(),
                    algorithm: e.algorithm,
                    public_jwk: e.public_jwk.clone(),
                    private_key: e.private_key.clone(),
                    origin: e.origin,
                    created_at: e.created_at,
                    active_from: None,
                    retired_at: None,
                    order,
                });
            }
            Event::SigningKeyActivated(e) => {
                if let Some(k) = self.get_mut(&e.kid) {
                    k.active_from = Some(e.active_from);
                }
            }
            Event::SigningKeyRetired(e) => {
                if let Some(k) = self.get_mut(&e.kid) {
                    k.retired_at = Some(e.retired_at);
                }
            }
            _ => {}
        }
    }

    fn get_mut(&mut self, kid: &str) -> Option<&mut KeyEntry> {
        self.keys.iter_mut().find(|k| k.kid == kid)
    }

    /// A key by id.
    pub fn get(&self, kid: &str) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The key that signs tokens of `alg` at `now`: of the unretired keys active by then, the
    /// one that became active last.
    pub fn signing_key(&self, alg: SigningAlgorithm, now: i64) -> Option<&KeyEntry> {
        self.keys
            .iter()
            .filter(|k| k.algorithm == alg && k.retired_at.is_none())
            .filter(|k| k.active_from.is_some_and(|t| t <= now))
            .max_by_key(|k| (k.active_from, k.order))
    }

    /// When `key` stopped signing: the activation of the key that replaced it, if that has
    /// happened by `now`.
    pub fn superseded_at(&self, key: &KeyEntry, now: i64) -> Option<i64> {
        let mine = (key.active_from?, key.order);
        self.keys
            .iter()
            .filter(|k| k.algorithm == key.algorithm && k.kid != key.kid)
            .filter_map(|k| Some((k.active_from?, k.order)))
            .filter(|&(t, _)| t <= now)
            .filter(|&theirs| theirs > mine)
            .map(|(t, _)| t)
            .min()
    }

    /// Where a key stands at `now`.
    pub fn status(&self, key: &KeyEntry, now: i64) -> KeyStatus {
        if key.retired_at.is_some() {
            KeyStatus::Retired
        } else if key.active_from.is_none_or(|t| t > now) {
            KeyStatus::Pending
        } else if self.superseded_at(key, now).is_some() {
            KeyStatus::Superseded
        } else {
            KeyStatus::Active
        }
    }

    /// The keys in the JWKS: every key not retired, pending ones included.
    pub fn published(&self) -> impl Iterator<Item = &KeyEntry> {
        self.keys.iter().filter(|k| k.retired_at.is_none())
    }
}

/// A freshly made key, with its private half already encrypted (or in a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub algorithm: SigningAlgorithm,
    /// Public JWK.
    pub public_jwk: serde_json::Value,
    /// Encrypted private key; none for a PEM-file key.
    pub private_key: Option<EncryptedPrivateKey>,
    /// Origin.
    pub origin: KeyOrigin,
}

/// Commands on the key ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCommand {
    /// Add keys. Each becomes active `lead_secs` after `now`, or at once when its algorithm
    /// has no key that signs yet (nobody can hold a token of that algorithm to verify).
    Add {
        /// The keys.
        keys: Vec<NewKey>,
        /// Publication lead time.
        lead_secs: i64,
        /// Now.
        now: i64,
    },
    /// Make a PEM-file key the signer of its algorithm now (the operator swapped the file and
    /// restarted): recorded if unknown, activated if not already the signer.
    AdoptFileKey {
        /// The key.
        key: NewKey,
        /// Now.
        now: i64,
    },
    /// Retire every superseded key whose tokens have all expired.
    RetireExpired {
        /// The latest expiry of a token signed by each key, as the token index knows it.
        latest_expiry: BTreeMap<String, i64>,
        /// How long a key outlives its last token.
        leeway_secs: i64,
        /// Now.
        now: i64,
    },
}

/// Why a key command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A key with that id exists.
    #[error("signing key {0} already exists")]
    Duplicate(String),
    /// A retired key cannot come back.
    #[error(
        "signing key {0} was retired; a retired key never signs again, so configure a new key"
    )]
    Retired(String),
    /// Nothing to add.
    #[error("no key to add")]
    Empty,
}

/// Decides a key command.
pub fn decide(ring: &KeyRing, command: &KeyCommand) -> Result<Vec<Event>, KeyError> {
    match command {
        KeyCommand::Add {
            keys,
            lead_secs,
            now,
        } => {
            if keys.is_empty() {
                return Err(KeyError::Empty);
            }
            let mut events = Vec::new();
            for key in keys {
                if ring.get(&key.kid).is_some()
                    || keys.iter().filter(|k| k.kid == key.kid).count() > 1
                {
                    return Err(KeyError::Duplicate(key.kid.clone()));
                }
                let first_of_alg = ring.signing_key(key.algorithm, *now).is_none()
                    && !ring.published().any(|k| k.algorithm == key.algorithm);
                let active_from = if first_of_alg {
                    *now
                } else {
                    now + lead_secs.max(&0)
                };
                events.push(generated(key, *now));
                events.push(Event::SigningKeyActivated(SigningKeyActivated {
                    kid: key.kid.clone(),
                    algorithm: key.algorithm,
                    active_from,
                }));
            }
            Ok(events)
        }
        KeyCommand::AdoptFileKey { key, now } => {
            let mut events = Vec::new();
            match ring.get(&key.kid) {
                Some(k) if k.retired_at.is_some() => {
                    return Err(KeyError::Retired(key.kid.clone()))
                }
                Some(_) => {}
                None => events.push(generated(key, *now)),
            }
            let signer = ring
                .signing_key(key.algorithm, *now)
                .map(|k| k.kid.as_str());
            if signer != Some(key.kid.as_str()) {
                events.push(Event::SigningKeyActivated(SigningKeyActivated {
                    kid: key.kid.clone(),
                    algorithm: key.algorithm,
                    active_from: *now,
                }));
            }
            Ok(events)
        }
        KeyCommand::RetireExpired {
            latest_expiry,
            leeway_secs,
            now,
        } => Ok(ring
            .keys
            .iter()
            .filter(|k| k.retired_at.is_none())
            .filter(|k| {
                let Some(superseded) = ring.superseded_at(k, *now) else {
                    return false;
                };
                let mut last_token = latest_expiry.get(&k.kid).copied().unwrap_or(superseded);
                if k.origin == KeyOrigin::Imported {
                    // Tokens signed before keys were events name no key, so the index cannot
                    // tell when they expire; none outlives the longest lifetime a client may have.
                    last_token =
                        last_token.max(k.created_at + i64::from(MAX_ACCESS_TOKEN_TTL_SECS));
                }
                superseded + MIN_SUPERSEDED_SECS <= *now
                    && last_token.max(superseded) + leeway_secs.max(&0) <= *now
            })
            .map(|k| {
                Event::SigningKeyRetired(SigningKeyRetired {
                    kid: k.kid.clone(),
                    algorithm: k.algorithm,
                    retired_at: *now,
                })
            })
            .collect()),
    }
}

fn generated(key: &NewKey, now: i64) -> Event {
    Event::SigningKeyGenerated(SigningKeyGenerated {
        kid: key.kid.clone(),
        algorithm: key.algorithm,
        public_jwk: key.public_jwk.clone(),
        private_key: key.private_key.clone(),
        origin: key.origin,
        created_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Scenario;

    const T: i64 = 1_800_000_000;

    fn key(kid: &str, alg: SigningAlgorithm) -> NewKey {
        NewKey {
            kid: kid.into(),
            algorithm: alg,
            public_jwk: serde_json::json!({ "kid": kid }),
            private_key: Some(EncryptedPrivateKey {
                kek_id: "kek".into(),
                nonce: "n".into(),
                ciphertext: "c".into(),
            }),
            origin: KeyOrigin::Generated,
        }
    }

    fn add(kids: &[(&str, SigningAlgorithm)], now: i64) -> KeyCommand {
        KeyCommand::Add {
            keys: kids.iter().map(|(k, a)| key(k, *a)).collect(),
            lead_secs: 600,
            now,
        }
    }

    fn scenario() -> Scenario<KeyRing, KeyCommand, KeyError> {
        Scenario::new(decide, |ring: &mut KeyRing, e: &Event| ring.evolve(e))
    }

    fn events(ring_events: &[Event]) -> KeyRing {
        KeyRing::from_events(ring_events)
    }

    fn initial() -> Vec<Event> {
        decide(
            &KeyRing::default(),
            &add(&[("a", SigningAlgorithm::ES256)], T),
        )
        .unwrap()
    }

    #[test]
    fn the_first_key_of_an_algorithm_signs_at_once() {
        let ring = events(&initial());
        assert_eq!(
            ring.signing_key(SigningAlgorithm::ES256, T).unwrap().kid,
            "a"
        );
        assert!(ring.signing_key(SigningAlgorithm::RS256, T).is_none());
    }

    #[test]
    fn a_rotated_key_is_published_first_and_signs_after_the_lead_time() {
        let mut given = initial();
        let rotated = decide(
            &events(&given),
            &add(&[("b", SigningAlgorithm::ES256)], T + 10),
        )
        .unwrap();
        assert!(matches!(&rotated[1], Event::SigningKeyActivated(a) if a.active_from == T + 610));
        given.extend(rotated);
        let ring = events(&given);
        assert_eq!(ring.published().count(), 2);
        assert_eq!(
            ring.signing_key(SigningAlgorithm::ES256, T + 609)
                .unwrap()
                .kid,
            "a"
        );
        assert_eq!(
            ring.signing_key(SigningAlgorithm::ES256, T + 610)
                .unwrap()
                .kid,
            "b"
        );
        let a = ring.get("a").unwrap();
        assert_eq!(ring.status(a, T + 609), KeyStatus::Active);
        assert_eq!(ring.status(a, T + 610), KeyStatus::Superseded);
        assert_eq!(
            ring.status(ring.get("b").unwrap(), T + 11),
            KeyStatus::Pending
        );
    }

    #[test]
    fn a_superseded_key_retires_only_after_its_last_token_expired() {
        let mut given = initial();
        given.extend(decide(&events(&given), &add(&[("b", SigningAlgorithm::ES256)], T)).unwrap());
        let expiry = BTreeMap::from([("a".to_owned(), T + 600 + 3600)]);
        let retire = |now| KeyCommand::RetireExpired {
            latest_expiry: expiry.clone(),
            leeway_secs: RETIRE_LEEWAY_SECS,
            now,
        };
        scenario()
            .given(given.clone())
            .when(retire(T + 700))
            .then(vec![]);
        scenario()
            .given(given.clone())
            .when(retire(T + 4200 + RETIRE_LEEWAY_SECS - 1))
            .then(vec![]);
        scenario()
            .given(given)
            .when(retire(T + 4200 + RETIRE_LEEWAY_SECS))
            .then(vec![Event::SigningKeyRetired(SigningKeyRetired {
                kid: "a".into(),
                algorithm: SigningAlgorithm::ES256,
                retired_at: T + 4200 + RETIRE_LEEWAY_SECS,
            })]);
    }

    #[test]
    fn an_active_key_never_retires_and_a_retired_one_never_returns() {
        scenario()
            .given(initial())
            .when(KeyCommand::RetireExpired {
                latest_expiry: BTreeMap::new(),
                leeway_secs: RETIRE_LEEWAY_SECS,
                now: T + 1_000_000,
            })
            .then(vec![]);
        let mut given = initial();
        given.push(Event::SigningKeyRetired(SigningKeyRetired {
            kid: "a".into(),
            algorithm: SigningAlgorithm::ES256,
            retired_at: T,
        }));
        scenario()
            .given(given)
            .when(KeyCommand::AdoptFileKey {
                key: key("a", SigningAlgorithm::ES256),
                now: T,
            })
            .then_err(KeyError::Retired("a".into()));
    }

    #[test]
    fn a_file_key_signs_at_once_and_adopting_it_again_changes_nothing() {
        let mut given = initial();
        let adopt = KeyCommand::AdoptFileKey {
            key: key("f", SigningAlgorithm::ES256),
            now: T + 5,
        };
        let adopted = decide(&events(&given), &adopt).unwrap();
        assert_eq!(adopted.len(), 2);
        given.extend(adopted);
        assert_eq!(
            events(&given)
                .signing_key(SigningAlgorithm::ES256, T + 5)
                .unwrap()
                .kid,
            "f"
        );
        scenario().given(given).when(adopt).then(vec![]);
    }

    #[test]
    fn an_imported_key_outlives_every_token_it_may_have_signed_unrecorded() {
        let mut imported = key("old", SigningAlgorithm::ES256);
        imported.origin = KeyOrigin::Imported;
        let mut given = decide(
            &KeyRing::default(),
            &KeyCommand::Add {
                keys: vec![imported],
                lead_secs: 0,
                now: T,
            },
        )
        .unwrap();
        given.extend(decide(&events(&given), &add(&[("b", SigningAlgorithm::ES256)], T)).unwrap());
        let retire = |now| KeyCommand::RetireExpired {
            latest_expiry: BTreeMap::new(),
            leeway_secs: 0,
            now,
        };
        let day = i64::from(MAX_ACCESS_TOKEN_TTL_SECS);
        scenario()
            .given(given.clone())
            .when(retire(T + day - 1))
            .then(vec![]);
        assert_eq!(decide(&events(&given), &retire(T + day)).unwrap().len(), 1);
    }

    #[test]
    fn duplicate_kids_are_refused() {
        scenario()
            .given(initial())
            .when(add(&[("a", SigningAlgorithm::ES256)], T))
            .then_err(KeyError::Duplicate("a".into()));
    }
}
