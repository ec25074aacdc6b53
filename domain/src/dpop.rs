//! DPoP proofs (RFC 9449) as the decisions see them: a proof whose signature, method, URL,
//! age and access-token hash the server checked arrives here with its key's thumbprint and
//! its `jti`; what remains is whether that `jti` was seen before, and the record that bars it
//! from now on. The record outlives restarts (it is an event, like an assertion's `jti`):
//! an in-memory cache would let a captured proof be replayed right after a restart.

use crate::event::{DpopProofAccepted, Event};
use crate::values::ClientId;

/// How old a proof's `iat` may be, in seconds; its `jti` is remembered that long after
/// `iat`, plus [`LEEWAY_SECS`].
pub const MAX_AGE_SECS: i64 = 60;

/// How far ahead of the server's clock a proof's `iat` may be, in seconds.
pub const LEEWAY_SECS: i64 = 5;

/// Longest `jti` kept.
pub const MAX_JTI_LEN: usize = 128;

/// A verified proof presented with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    /// The base64url SHA-256 JWK thumbprint (RFC 7638) of its key.
    pub jkt: String,
    /// Its `jti`.
    pub jti: String,
    /// Until when its `jti` must be remembered: `iat` + [`MAX_AGE_SECS`] + [`LEEWAY_SECS`].
    pub expires_at: i64,
    /// Whether its `jti` was accepted before under the same key and is still remembered;
    /// filled by the actor from the token index and its own events in flight.
    pub seen: bool,
}

/// Why a proof's use was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofRejected {
    /// The `jti` was accepted before.
    #[error("the DPoP proof was used before (its jti is not new)")]
    Replayed,
}

impl DpopProofAccepted {
    /// Whether this record still bars `jti` under key `jkt` for `client` at `now`.
    pub fn bars(&self, client: &ClientId, jkt: &str, jti: &str, now: i64) -> bool {
        self.client_id == *client && self.jkt == jkt && self.jti == jti && self.expires_at >= now
    }
}

/// The assertion-issuer name under which the token index keeps a key's proof `jti`s: they
/// share the rows (and the retention class) of assertion `jti`s.
pub fn issuer_key(jkt: &str) -> String {
    format!("dpop:{jkt}")
}

/// Accepts a proof once: refused if its `jti` was seen, else the record that bars it.
pub fn accept(client: &ClientId, proof: &DpopProof) -> Result<Event, ProofRejected> {
    if proof.seen {
        return Err(ProofRejected::Replayed);
    }
    Ok(Event::DpopProofAccepted(DpopProofAccepted {
        client_id: client.clone(),
        jkt: proof.jkt.clone(),
        jti: proof.jti.clone(),
        expires_at: proof.expires_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::id;

    fn proof(seen: bool) -> DpopProof {
        DpopProof {
            jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into(),
            jti: "e1j3V_bKic8-LAEB".into(),
            expires_at: 1_700_000_065,
            seen,
        }
    }

    #[test]
    fn a_new_proof_is_recorded_and_then_bars_its_jti_until_it_expires() {
        let Event::DpopProofAccepted(record) = accept(&id(), &proof(false)).unwrap() else {
            panic!("not a DpopProofAccepted");
        };
        let p = proof(false);
        assert!(record.bars(&id(), &p.jkt, &p.jti, 1_700_000_065));
        assert!(!record.bars(&id(), &p.jkt, &p.jti, 1_700_000_066));
        assert!(!record.bars(&id(), "another-key", &p.jti, 1_700_000_000));
        assert!(!record.bars(&id(), &p.jkt, "another-jti", 1_700_000_000));
    }

    #[test]
    fn a_seen_proof_is_refused() {
        assert_eq!(accept(&id(), &proof(true)), Err(ProofRejected::Replayed));
    }
}
