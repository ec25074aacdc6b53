//! Signing keys: kept as events in the `keys` stream (private halves encrypted under the KEK,
//! see [`kek`]) or read from a PEM file; held in memory by the [`Keyring`], which signs access
//! tokens, verifies them and serves the JWKS.

pub mod kek;
pub mod material;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use domain::keys::KeyRing;
use domain::values::SigningAlgorithm;
use jsonwebtoken::Validation;
use material::{jwt_algorithm, KeyMaterial};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The protected header of an access token (RFC 9068 section 2.1: `typ` is `at+jwt`).
#[derive(Serialize)]
struct JwsHeader<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// One JWS compact segment: the value as JSON, base64url without padding.
fn segment(value: &impl Serialize) -> Result<String, KeyError> {
    serde_json::to_vec(value)
        .map(|json| URL_SAFE_NO_PAD.encode(json))
        .map_err(|e| KeyError::Sign(e.to_string()))
}

/// Verified tokens remembered by [`Keyring::verify`]; about 300 bytes each.
const VERIFIED_CACHE_ENTRIES: usize = 10_000;

/// File of the single ES256 key kept by versions before keys were events; imported once.
pub const LEGACY_KEY_FILE: &str = "signing-key.pem";

/// A key failure.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The key is malformed or of an unsupported kind.
    #[error("invalid key: {0}")]
    Invalid(String),
    /// The key-encryption key is missing, wrong or malformed.
    #[error("{0}")]
    Kek(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The claims of an access token (RFC 9068 §2.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// Audience: this server, or the resources (RFC 8707) or audiences (RFC 8693) the token
    /// was asked for; one string, or an array of several.
    pub aud: serde_json::Value,
    /// The client it was issued to.
    pub client_id: String,
    /// Space-delimited scopes.
    pub scope: String,
    /// Issued at.
    pub iat: i64,
    /// Expires at.
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// Confirmation: the DPoP key the token is bound to (RFC 9449 §6.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The actor of a delegation (RFC 8693 §4.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<serde_json::Value>,
}

/// The `cnf` claim of a DPoP-bound token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The base64url SHA-256 JWK thumbprint (RFC 7638) of the key.
    pub jkt: String,
}

/// The `aud` of a token: `default` (this server) when it names no audience, the one audience
/// as a string, several as an array.
pub fn audience_claim(audience: &[String], default: &str) -> serde_json::Value {
    match audience {
        [] => default.into(),
        [one] => one.as_str().into(),
        many => many.into(),
    }
}

/// What the keyring holds at one moment.
pub struct Snapshot {
    /// The fold of the `keys` stream.
    pub ring: KeyRing,
    /// Every published key, loaded.
    pub loaded: HashMap<String, Arc<KeyMaterial>>,
    /// The JWKS document, serialised once.
    pub jwks: Arc<String>,
}

/// The server's signing keys in memory, swapped as a whole when the `keys` stream changes.
pub struct Keyring {
    current: RwLock<Arc<Snapshot>>,
    /// Tokens already verified: SHA-256 over the issuer and the whole token → its claims and
    /// kid. An ES256 verification costs more than the rest of an introspection; a resource
    /// server introspects the same token again and again.
    verified: quick_cache::sync::Cache<[u8; 32], (AccessTokenClaims, String)>,
    /// The algorithm of clients that name none.
    pub default_algorithm: SigningAlgorithm,
}

impl Keyring {
    /// An empty keyring.
    pub fn new(default_algorithm: SigningAlgorithm) -> Self {
        Self {
            current: RwLock::new(Arc::new(Snapshot {
                ring: KeyRing::default(),
                loaded: HashMap::new(),
                jwks: Arc::new(r#"{"keys":[]}"#.into()),
            })),
            verified: quick_cache::sync::Cache::new(VERIFIED_CACHE_ENTRIES),
            default_algorithm,
        }
    }

    /// A keyring of fresh keys, one per algorithm, all active: for tests and benchmarks.
    pub fn generated(default_algorithm: SigningAlgorithm) -> Result<Self, KeyError> {
        use domain::event::{Event, KeyOrigin, SigningKeyActivated, SigningKeyGenerated};
        let ring = Self::new(default_algorithm);
        let mut events = Vec::new();
        let mut loaded = HashMap::new();
        for alg in SigningAlgorithm::ALL {
            let (m, _) = material::generate(alg)?;
            events.push(Event::SigningKeyGenerated(SigningKeyGenerated {
                kid: m.kid.clone(),
                algorithm: alg,
                public_jwk: m.jwk.clone(),
                private_key: None,
                origin: KeyOrigin::Generated,
                created_at: 0,
            }));
            events.push(Event::SigningKeyActivated(SigningKeyActivated {
                kid: m.kid.clone(),
                algorithm: alg,
                active_from: 0,
            }));
            loaded.insert(m.kid.clone(), Arc::new(m));
        }
        ring.install(KeyRing::from_events(&events), loaded);
        Ok(ring)
    }

    /// The current keys.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the keys: the ring and every published key, loaded.
    pub fn install(&self, ring: KeyRing, loaded: HashMap<String, Arc<KeyMaterial>>) {
        let keys: Vec<&serde_json::Value> = ring
            .published()
            .filter_map(|k| loaded.get(&k.kid).map(|m| &m.jwk))
            .collect();
        let jwks = serde_json::json!({ "keys": keys }).to_string();
        let next = Arc::new(Snapshot {
            ring,
            loaded,
            jwks: Arc::new(jwks),
        });
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
    }

    /// The id of the key that signs tokens of `alg` now.
    pub fn signing_kid(&self, alg: SigningAlgorithm, now: i64) -> Option<String> {
        self.snapshot()
            .ring
            .signing_key(alg, now)
            .map(|k| k.kid.clone())
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Arc<String> {
        self.snapshot().jwks.clone()
    }

    /// Signs an access token with the key `kid` (header `typ: at+jwt`, RFC 9068 §2.1).
    pub fn sign(&self, kid: &str, claims: &AccessTokenClaims) -> Result<String, KeyError> {
        self.sign_typed(kid, "at+jwt", claims)
    }

    /// Signs any claims as a compact JWS with the key `kid` and header type `typ`.
    pub fn sign_typed<C: Serialize>(
        &self,
        kid: &str,
        typ: &'static str,
        claims: &C,
    ) -> Result<String, KeyError> {
        let snap = self.snapshot();
        let key = snap
            .loaded
            .get(kid)
            .ok_or_else(|| KeyError::Sign(format!("signing key {kid} is not loaded")))?;
        let signer = key
            .signer
            .as_ref()
            .ok_or_else(|| KeyError::Sign(format!("the private half of {kid} is not here")))?;
        let header = JwsHeader {
            alg: key.algorithm.as_str(),
            typ,
            kid: &key.kid,
        };
        let mut jws = segment(&header)?;
        jws.push('.');
        jws.push_str(&segment(claims)?);
        let signature = signer.sign(jws.as_bytes())?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jws)
    }

    /// Verifies a token's signature, type and issuer against the published keys; expiry and
    /// revocation are the token index's business. The algorithm is the key's, never the
    /// header's choice: `none`, HMAC and any algorithm other than the named key's are refused.
    /// `None` for anything that is not a JWT we signed.
    pub fn verify(&self, token: &str, issuer: &str) -> Option<(AccessTokenClaims, String)> {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::new()
            .chain_update(issuer)
            .chain_update([0])
            .chain_update(token)
            .finalize()
            .into();
        let snap = self.snapshot();
        if let Some((claims, kid)) = self.verified.get(&digest) {
            // The same bytes verified before; a key taken out of the ring since takes that
            // verification with it.
            if snap.loaded.contains_key(&kid) {
                return Some((claims, kid));
            }
        }
        let verified = Self::verify_signature(&snap, token, issuer)?;
        self.verified.insert(digest, verified.clone());
        Some(verified)
    }

    fn verify_signature(
        snap: &Snapshot,
        token: &str,
        issuer: &str,
    ) -> Option<(AccessTokenClaims, String)> {
        Self::verify_typed(snap, token, issuer, "at+jwt", &[])
    }

    /// Verifies an id_token this server signed (header type `JWT`, our issuer, a published
    /// key, with `iss`, `sub` and `aud`); its expiry is not checked, as an `id_token_hint`'s
    /// need not be (OpenID Connect Core §3.1.2.1). `None` for anything else.
    pub fn verify_id_token<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
    ) -> Option<T> {
        Self::verify_typed(
            &self.snapshot(),
            token,
            issuer,
            "JWT",
            &["iss", "sub", "aud"],
        )
        .map(|(claims, _)| claims)
    }

    /// A JWS of header type `typ` signed by a published key with the key's own algorithm and
    /// naming `issuer`; expiry is the caller's business.
    fn verify_typed<T: serde::de::DeserializeOwned>(
        snap: &Snapshot,
        token: &str,
        issuer: &str,
        typ: &str,
        required: &[&str],
    ) -> Option<(T, String)> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid.as_deref()?;
        let key = snap.loaded.get(kid)?;
        let alg = jwt_algorithm(key.algorithm);
        if header.alg != alg
            || !header
                .typ
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(typ))
        {
            return None;
        }
        let mut v = Validation::new(alg);
        v.validate_exp = false;
        v.validate_aud = false;
        v.set_required_spec_claims(required);
        v.set_issuer(&[issuer]);
        jsonwebtoken::decode::<T>(token, &key.decoding, &v)
            .ok()
            .map(|d| (d.claims, key.kid.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "http://127.0.0.1:1".into(),
            sub: "svc".into(),
            aud: "http://127.0.0.1:1".into(),
            cnf: None,
            act: None,
            client_id: "svc".into(),
            scope: "read".into(),
            iat: 1,
            exp: 2,
            jti: "0190".into(),
        }
    }

    fn keyring() -> Keyring {
        Keyring::generated(SigningAlgorithm::ES256).unwrap()
    }

    #[test]
    fn every_algorithm_signs_and_verifies_and_other_issuers_or_edits_fail() {
        let ring = keyring();
        for alg in SigningAlgorithm::ALL {
            let kid = ring.signing_kid(alg, 1).unwrap();
            let token = ring.sign(&kid, &claims()).unwrap();
            let (got, by) = ring.verify(&token, "http://127.0.0.1:1").unwrap();
            assert_eq!((got.sub.as_str(), by.as_str()), ("svc", kid.as_str()));
            assert!(ring.verify(&token, "http://other").is_none());
            let mut tampered = token.clone();
            tampered.pop();
            tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
            assert!(
                ring.verify(&tampered, "http://127.0.0.1:1").is_none(),
                "{alg}"
            );
        }
        let jwks: serde_json::Value = serde_json::from_str(&ring.jwks()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_remembered_verification_ends_with_its_key_and_never_crosses_issuers() {
        let ring = keyring();
        let kid = ring.signing_kid(SigningAlgorithm::ES256, 1).unwrap();
        let token = ring.sign(&kid, &claims()).unwrap();
        for _ in 0..2 {
            assert!(ring.verify(&token, "http://127.0.0.1:1").is_some());
            assert!(ring.verify(&token, "http://other").is_none());
        }
        let snap = ring.snapshot();
        let mut others = snap.loaded.clone();
        others.remove(&kid);
        ring.install(snap.ring.clone(), others);
        assert!(ring.verify(&token, "http://127.0.0.1:1").is_none());
    }

    #[test]
    fn none_and_hmac_keyed_with_the_public_key_are_refused() {
        let ring = keyring();
        for alg in SigningAlgorithm::ALL {
            let kid = ring.signing_kid(alg, 1).unwrap();
            let jwk = ring.snapshot().loaded[&kid].jwk.to_string();
            // HS256 keyed with the published public key, the classic confusion attack.
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.typ = Some("at+jwt".into());
            header.kid = Some(kid.clone());
            let forged = jsonwebtoken::encode(
                &header,
                &claims(),
                &jsonwebtoken::EncodingKey::from_secret(jwk.as_bytes()),
            )
            .unwrap();
            assert!(ring.verify(&forged, "http://127.0.0.1:1").is_none());
            let none_header =
                URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#));
            let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
            let unsigned = format!("{none_header}.{body}.");
            assert!(ring.verify(&unsigned, "http://127.0.0.1:1").is_none());
        }
    }
}
