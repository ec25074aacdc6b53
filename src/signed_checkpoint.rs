//! Signed checkpoints: a statement "the log held event N, whose stored bytes hash to H, at
//! time T", signed as a JWS with the server's active signing key. Published somewhere the data
//! directory's owner cannot rewrite, it lets anyone holding it and the JWKS catch a log whose
//! tail was cut off or whose history was rewritten (hash chain and all) since.

use crate::engine::Engine;
use crate::keys::Keyring;
use crate::store::log::chain_hash;
use crate::store::verify::Verification;
use crate::store::EventStore;
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};

/// The JWS header type of a checkpoint.
pub const TYP: &str = "authledger-checkpoint+jwt";

/// What a checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// The server that signed it.
    pub iss: String,
    /// When (Unix seconds).
    pub iat: i64,
    /// The log position stated.
    pub position: u64,
    /// SHA-256 (hex) of that event's stored bytes: the chain's head then.
    pub head_hash: String,
}

/// A checkpoint failure: the statement cannot be made, read or trusted, or the log disagrees.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// No key can sign now.
    #[error("no signing key is active; run `authledger keys rotate` or start the server once")]
    NoKey,
    /// The statement is not a checkpoint signed by a key of the JWKS.
    #[error("the checkpoint's signature does not verify: {0}")]
    Signature(String),
    /// The log does not hold what the statement says.
    #[error("the log does not match the checkpoint: {0}")]
    Mismatch(String),
    /// The log itself failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The outcome of checking a log against a checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// What the checkpoint states.
    pub statement: Statement,
    /// The key that signed it.
    pub kid: String,
    /// Events the chain walk verified.
    pub events: u64,
    /// The log's head now.
    pub head_position: u64,
}

/// Signs a checkpoint of the log's head with the key that signs tokens of the default
/// algorithm.
pub fn sign(
    engine: &Engine,
    keys: &Keyring,
    issuer: &str,
    now: i64,
) -> Result<String, CheckpointError> {
    let head = engine.store.head()?;
    let kid = keys
        .signing_kid(keys.default_algorithm, now)
        .ok_or(CheckpointError::NoKey)?;
    let statement = Statement {
        iss: issuer.to_owned(),
        iat: now,
        position: head.position,
        head_hash: head.hash,
    };
    keys.sign_typed(&kid, TYP, &statement)
        .map_err(|e| CheckpointError::Signature(e.to_string()))
}

/// Reads a checkpoint, checking its signature against `jwks` (a JWKS document).
pub fn read(jws: &str, jwks: &str) -> Result<(Statement, String), CheckpointError> {
    let bad = |e: &dyn std::fmt::Display| CheckpointError::Signature(e.to_string());
    let header = jsonwebtoken::decode_header(jws.trim()).map_err(|e| bad(&e))?;
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(TYP))
    {
        return Err(bad(&format!("its type is not {TYP}")));
    }
    let kid = header
        .kid
        .ok_or_else(|| bad(&"its header names no key (kid)"))?;
    let set: JwkSet = serde_json::from_str(jwks).map_err(|e| bad(&e))?;
    let jwk = set
        .find(&kid)
        .ok_or_else(|| bad(&format!("key {kid} is not in the JWKS")))?;
    // The algorithm is the key's, never the header's choice.
    let alg = jwk
        .common
        .key_algorithm
        .and_then(|a| a.to_string().parse::<jsonwebtoken::Algorithm>().ok())
        .ok_or_else(|| bad(&format!("key {kid} names no algorithm")))?;
    if alg != header.alg {
        return Err(bad(&"its algorithm is not its key's"));
    }
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| bad(&e))?;
    let mut v = jsonwebtoken::Validation::new(alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Statement>(jws.trim(), &key, &v).map_err(|e| bad(&e))?;
    Ok((data.claims, kid))
}

/// Checks the log against a checkpoint: the signature, the whole chain, and that the event at
/// the stated position is still there with the stated hash.
pub fn check(engine: &Engine, jws: &str, jwks: &str) -> Result<Checked, CheckpointError> {
    let (statement, kid) = read(jws, jwks)?;
    let events = match engine.store.verify(|_| {})? {
        Verification::Verified { events, .. } => events,
        Verification::Broken {
            position, reason, ..
        } => {
            return Err(CheckpointError::Mismatch(format!(
                "the hash chain breaks at position {position}: {reason}"
            )))
        }
    };
    let head_position = engine.store.head_position();
    if head_position < statement.position {
        return Err(CheckpointError::Mismatch(format!(
            "the log ends at position {head_position}, before position {} that the checkpoint \
             of {} states: events were removed from its end",
            statement.position, statement.iat
        )));
    }
    match engine.store.raw_event(statement.position)? {
        Some(bytes) if chain_hash(&bytes) == statement.head_hash => Ok(Checked {
            statement,
            kid,
            events,
            head_position,
        }),
        Some(_) => Err(CheckpointError::Mismatch(format!(
            "event {} no longer hashes to what the checkpoint states: the history up to it \
             was rewritten",
            statement.position
        ))),
        None => {
            let compacted = engine
                .store
                .compacted_runs()?
                .values()
                .any(|r| (r.first..=r.last).contains(&statement.position));
            Err(CheckpointError::Mismatch(if compacted {
                format!(
                    "event {} that the checkpoint states was removed by compaction since, so \
                     its hash can no longer be compared; take checkpoints after compacting, or \
                     keep the events they name",
                    statement.position
                )
            } else {
                format!(
                    "event {} that the checkpoint states is gone from the log",
                    statement.position
                )
            }))
        }
    }
}
