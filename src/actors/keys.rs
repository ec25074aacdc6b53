//! `KeyActor`: the only writer of the `keys` stream. It decides key commands with
//! `domain::keys`, appends them, and once they are durable swaps the [`Keyring`] every handler
//! signs and verifies with. In a server it also retires, once a minute, superseded keys whose
//! tokens have all expired.

use super::client::{CommandError, CommandResult};
use crate::keys::kek::Kek;
use crate::keys::material::{self, KeyMaterial};
use crate::keys::{KeyError, Keyring, LEGACY_KEY_FILE};
use crate::store::{EventStore, NewEvent};
use actix::prelude::*;
use domain::event::{Event, KeyOrigin, KEYS_STREAM};
use domain::keys::{self, KeyCommand, KeyRing, KeyStatus, NewKey};
use domain::values::SigningAlgorithm;
use domain::Metadata;
use projections::ReadModels;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What to do with the keys.
#[derive(Debug, Clone)]
pub enum KeyRequest {
    /// At start: import the legacy key file of an older data directory, adopt the PEM-file
    /// key, and give every algorithm without a key its first one.
    Bootstrap,
    /// Generate a successor for each algorithm, published now, signing after `lead_secs`.
    Rotate {
        /// Which algorithms (empty: every algorithm).
        algorithms: Vec<SigningAlgorithm>,
        /// Publication lead time.
        lead_secs: i64,
    },
    /// Retire superseded keys whose tokens have all expired.
    RetireExpired,
}

/// A request on the keys.
#[derive(Debug, Clone, Message)]
#[rtype(result = "CommandResult")]
pub struct ExecuteKeyRequest {
    /// The request.
    pub request: KeyRequest,
    /// Request context for the events.
    pub metadata: Metadata,
}

/// Where the private halves of the keys come from.
pub struct KeySources {
    /// Encrypts and decrypts the private keys in the log.
    pub kek: Arc<Kek>,
    /// The key of `--private-key-path`, if one is configured.
    pub file_key: Option<Arc<KeyMaterial>>,
    /// Where a legacy `signing-key.pem` may lie.
    pub data_dir: PathBuf,
    /// How long a superseded key outlives its last token.
    pub retire_leeway_secs: i64,
    /// The server's clock.
    pub clock: crate::clock::Clock,
}

/// The actor.
pub struct KeyActor {
    store: Arc<dyn EventStore>,
    models: Arc<ReadModels>,
    keyring: Arc<Keyring>,
    sources: KeySources,
    /// Version of the `keys` stream; the ring itself is the keyring's snapshot.
    version: u64,
    retire_every: Option<Duration>,
}

/// Loads one published key: decrypted from the log, from the PEM file, or (for an earlier
/// PEM file's key) its public half only.
fn load(entry: &keys::KeyEntry, sources: &KeySources) -> Result<Arc<KeyMaterial>, KeyError> {
    if let Some(file) = sources.file_key.as_ref().filter(|f| f.kid == entry.kid) {
        return Ok(file.clone());
    }
    let material = match &entry.private_key {
        Some(sealed) => {
            let der = sources.kek.open(&entry.kid, sealed)?;
            material::from_pkcs8(entry.algorithm, &der)?
        }
        None => material::public_only(entry.algorithm, entry.public_jwk.clone())?,
    };
    if material.kid != entry.kid {
        return Err(KeyError::Invalid(format!(
            "signing key {} does not match its recorded kid",
            entry.kid
        )));
    }
    Ok(Arc::new(material))
}

impl KeyActor {
    /// Loads every published key of `ring` (the fold of the `keys` stream up to `version`),
    /// decrypting it, and installs them in `keyring`. Fails with an explanation when a key does
    /// not decrypt.
    fn open(
        store: Arc<dyn EventStore>,
        models: Arc<ReadModels>,
        keyring: Arc<Keyring>,
        sources: KeySources,
        (ring, version): (KeyRing, u64),
        retire_every: Option<Duration>,
    ) -> Result<Self, KeyError> {
        let mut loaded = HashMap::new();
        for entry in ring.published() {
            loaded.insert(entry.kid.clone(), load(entry, &sources)?);
        }
        keyring.install(ring, loaded);
        Ok(Self {
            store,
            models,
            keyring,
            sources,
            version,
            retire_every,
        })
    }

    fn new_key(
        &self,
        alg: SigningAlgorithm,
        origin: KeyOrigin,
    ) -> Result<(NewKey, Arc<KeyMaterial>), KeyError> {
        let (m, der) = material::generate(alg)?;
        self.sealed(m, &der, origin)
    }

    fn sealed(
        &self,
        m: KeyMaterial,
        der: &[u8],
        origin: KeyOrigin,
    ) -> Result<(NewKey, Arc<KeyMaterial>), KeyError> {
        let private_key = Some(self.sources.kek.seal(&m.kid, der)?);
        Ok((
            NewKey {
                kid: m.kid.clone(),
                algorithm: m.algorithm,
                public_jwk: m.jwk.clone(),
                private_key,
                origin,
            },
            Arc::new(m),
        ))
    }

    /// The commands a request stands for, with the material of the keys they add.
    fn commands(
        &self,
        ring: &KeyRing,
        request: &KeyRequest,
        now: i64,
    ) -> Result<(Vec<KeyCommand>, Vec<Arc<KeyMaterial>>), KeyError> {
        let mut commands = Vec::new();
        let mut fresh = Vec::new();
        match request {
            KeyRequest::Bootstrap => {
                let mut keys = Vec::new();
                let legacy = self.sources.data_dir.join(LEGACY_KEY_FILE);
                if ring.keys.is_empty() && legacy.exists() {
                    let (m, der) = material::from_pem_file(&legacy, None)?;
                    let (k, m) = self.sealed(m, &der, KeyOrigin::Imported)?;
                    keys.push(k);
                    fresh.push(m);
                } else if ring.keys.is_empty() && self.store.head_position() > 0 {
                    // A log written before keys were events, without its key file: a fresh
                    // key would silently turn every JWT issued so far inactive.
                    return Err(KeyError::Invalid(format!(
                        "{} holds events from a version that kept its signing key in {}, and \
                         that file is missing: restore it from your backup, then start again",
                        self.sources.data_dir.display(),
                        legacy.display()
                    )));
                }
                if let Some(file) = &self.sources.file_key {
                    commands.push(KeyCommand::AdoptFileKey {
                        key: NewKey {
                            kid: file.kid.clone(),
                            algorithm: file.algorithm,
                            public_jwk: file.jwk.clone(),
                            private_key: None,
                            origin: KeyOrigin::PemFile,
                        },
                        now,
                    });
                    fresh.push(file.clone());
                }
                for alg in SigningAlgorithm::ALL {
                    // A key whose private half was in a PEM file no longer configured can
                    // verify but not sign: a generated key takes over at once. Only a server
                    // decides so; a CLI command may simply not have been given the file.
                    let orphaned = self.retire_every.is_some()
                        && ring.signing_key(alg, now).is_some_and(|k| {
                            k.private_key.is_none()
                                && self
                                    .sources
                                    .file_key
                                    .as_ref()
                                    .is_none_or(|f| f.kid != k.kid)
                        });
                    let covered = (!orphaned && ring.published().any(|k| k.algorithm == alg))
                        || keys.iter().any(|k: &NewKey| k.algorithm == alg)
                        || self
                            .sources
                            .file_key
                            .as_ref()
                            .is_some_and(|f| f.algorithm == alg);
                    if !covered {
                        let (k, m) = self.new_key(alg, KeyOrigin::Generated)?;
                        keys.push(k);
                        fresh.push(m);
                    }
                }
                if !keys.is_empty() {
                    commands.insert(
                        0,
                        KeyCommand::Add {
                            keys,
                            lead_secs: 0,
                            now,
                        },
                    );
                }
            }
            KeyRequest::Rotate {
                algorithms,
                lead_secs,
            } => {
                let algorithms = if algorithms.is_empty() {
                    SigningAlgorithm::ALL.to_vec()
                } else {
                    algorithms.clone()
                };
                let mut keys = Vec::new();
                for alg in algorithms {
                    let from_file = self
                        .sources
                        .file_key
                        .as_ref()
                        .is_some_and(|f| f.algorithm == alg)
                        || ring
                            .signing_key(alg, now)
                            .is_some_and(|k| k.origin == KeyOrigin::PemFile);
                    if from_file {
                        return Err(KeyError::Invalid(format!(
                            "{alg} signs with the key of --private-key-path: replace that file \
                             and restart to rotate it, or rotate the other algorithms with \
                             --algorithm"
                        )));
                    }
                    let (k, m) = self.new_key(alg, KeyOrigin::Generated)?;
                    keys.push(k);
                    fresh.push(m);
                }
                commands.push(KeyCommand::Add {
                    keys,
                    lead_secs: *lead_secs,
                    now,
                });
            }
            KeyRequest::RetireExpired => {
                let mut latest_expiry = BTreeMap::new();
                for k in ring.published() {
                    if ring.status(k, now) == KeyStatus::Superseded {
                        if let Some(exp) = self
                            .models
                            .tokens
                            .key_last_expiry(&k.kid)
                            .map_err(|e| KeyError::Invalid(e.to_string()))?
                        {
                            latest_expiry.insert(k.kid.clone(), exp);
                        }
                    }
                }
                commands.push(KeyCommand::RetireExpired {
                    latest_expiry,
                    leeway_secs: self.sources.retire_leeway_secs,
                    now,
                });
            }
        }
        Ok((commands, fresh))
    }
}

impl Actor for KeyActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(every) = self.retire_every {
            ctx.run_interval(every, |_, ctx| {
                ctx.notify(ExecuteKeyRequest {
                    request: KeyRequest::RetireExpired,
                    metadata: Metadata::system(),
                });
            });
        }
    }
}

fn key_error(e: impl std::fmt::Display) -> CommandError {
    CommandError::Keys(e.to_string())
}

impl Handler<ExecuteKeyRequest> for KeyActor {
    type Result = AtomicResponse<Self, CommandResult>;

    fn handle(&mut self, msg: ExecuteKeyRequest, _ctx: &mut Self::Context) -> Self::Result {
        let now = self.sources.clock.unix_now();
        let current = self.keyring.snapshot();
        let decided =
            self.commands(&current.ring, &msg.request, now)
                .and_then(|(commands, fresh)| {
                    let mut ring = current.ring.clone();
                    let mut events = Vec::new();
                    for c in &commands {
                        let decided =
                            keys::decide(&ring, c).map_err(|e| KeyError::Invalid(e.to_string()))?;
                        for e in &decided {
                            ring.evolve(e);
                        }
                        events.extend(decided);
                    }
                    Ok((events, fresh))
                });
        let (events, fresh) = match decided {
            Ok(d) => d,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(key_error(e))))),
        };
        if events.is_empty() {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(Vec::new()))));
        }
        let retiring = matches!(msg.request, KeyRequest::RetireExpired);
        let new = NewEvent::all(events, &msg.metadata);
        let pending = self.store.append(KEYS_STREAM, self.version, new);
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(pending).map(
            move |result, act, _| {
                let recorded = result.map_err(CommandError::Store)?;
                // The actor is the only writer, so the snapshot is still the one decided on.
                let current = act.keyring.snapshot();
                let mut ring = current.ring.clone();
                for e in &recorded {
                    ring.evolve(&e.event);
                    act.version = e.version;
                }
                let mut loaded = current.loaded.clone();
                for m in fresh {
                    loaded.insert(m.kid.clone(), m);
                }
                loaded.retain(|kid, _| ring.get(kid).is_some_and(|k| k.retired_at.is_none()));
                act.keyring.install(ring, loaded);
                if retiring {
                    for e in &recorded {
                        if let Event::SigningKeyRetired(r) = &e.event {
                            tracing::info!(kid = %r.kid, algorithm = %r.algorithm, "signing key retired");
                        }
                    }
                }
                Ok(recorded)
            },
        )))
    }
}

/// How the server's keys are set up.
#[derive(Clone, Default)]
pub struct KeySettings {
    /// `AUTHLEDGER_ENCRYPTION_KEY`, if set.
    pub encryption_key: Option<String>,
    /// `--private-key-path`.
    pub private_key_path: Option<PathBuf>,
    /// `--private-key-passphrase`.
    pub private_key_passphrase: Option<String>,
    /// The algorithm of clients that name none; `None`: the PEM file's, else ES256.
    pub default_algorithm: Option<SigningAlgorithm>,
    /// How long a superseded key outlives its last token (default 60 s).
    pub retire_leeway_secs: Option<u64>,
}

impl std::fmt::Debug for KeySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("KeySettings")
            .field("encryption_key", &redacted(&self.encryption_key))
            .field("private_key_path", &self.private_key_path)
            .field(
                "private_key_passphrase",
                &redacted(&self.private_key_passphrase),
            )
            .field("default_algorithm", &self.default_algorithm)
            .field("retire_leeway_secs", &self.retire_leeway_secs)
            .finish()
    }
}

/// The KEK of a data directory: the configured one, else the file, else a fresh file when the
/// log holds no sealed key (a fresh directory, or one from before keys were encrypted).
pub fn resolve_kek(
    data_dir: &Path,
    store: &dyn EventStore,
    encryption_key: Option<&str>,
) -> anyhow::Result<Kek> {
    if let Some(k) = Kek::load(data_dir, encryption_key)? {
        return Ok(k);
    }
    let events = store
        .read_stream(KEYS_STREAM, 1)
        .map_err(|e| KeyError::Invalid(format!("reading the keys stream: {e}")))?;
    let ring = KeyRing::from_events(events.iter().map(|e| &e.event));
    if ring.keys.iter().any(|k| k.private_key.is_some()) {
        anyhow::bail!(
            "the signing keys in the log are encrypted, but there is no key-encryption key: \
             set {} to the key used before, or restore {} from your backup",
            crate::keys::kek::KEK_ENV,
            data_dir.join(crate::keys::kek::KEK_FILE).display()
        )
    }
    Ok(Kek::create(data_dir)?)
}

/// Loads the PEM-file key, then opens the key actor over the log's keys, sealed under `kek`
/// (from [`resolve_kek`]).
pub fn open_keys(
    data_dir: &Path,
    store: Arc<dyn EventStore>,
    models: Arc<ReadModels>,
    kek: Arc<Kek>,
    settings: &KeySettings,
    retire_every: Option<Duration>,
    clock: crate::clock::Clock,
) -> anyhow::Result<(Arc<Keyring>, KeyActor)> {
    let events = store
        .read_stream(KEYS_STREAM, 1)
        .map_err(|e| KeyError::Invalid(format!("reading the keys stream: {e}")))?;
    let ring = KeyRing::from_events(events.iter().map(|e| &e.event));
    let version = events.last().map_or(0, |e| e.version);
    let file_key = match &settings.private_key_path {
        Some(path) => Some(Arc::new(
            material::from_pem_file(path, settings.private_key_passphrase.as_deref())?.0,
        )),
        None => None,
    };
    let default = settings
        .default_algorithm
        .or(file_key.as_ref().map(|f| f.algorithm))
        .unwrap_or(SigningAlgorithm::ES256);
    let keyring = Arc::new(Keyring::new(default));
    let actor = KeyActor::open(
        store,
        models,
        keyring.clone(),
        KeySources {
            kek,
            clock,
            file_key,
            data_dir: data_dir.to_owned(),
            retire_leeway_secs: settings
                .retire_leeway_secs
                .map_or(keys::RETIRE_LEEWAY_SECS, |s| s as i64),
        },
        (ring, version),
        retire_every,
    )?;
    Ok((keyring, actor))
}
