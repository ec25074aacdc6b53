//! Checking DPoP proofs (RFC 9449 §4.3), shared by the server and the resource-server
//! extractor: the header (`typ`, an asymmetric `alg`, a public `jwk`), the signature by that
//! key, `htm` and `htu` against the request, `iat` within a window, `ath` against the access
//! token presented with it, and the server's nonce when one is required. Whether the `jti`
//! was seen before is the caller's business: the server records it as an event, the
//! extractor remembers it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// How old a proof's `iat` may be, in seconds.
pub const MAX_AGE_SECS: i64 = 60;
/// How far ahead of our clock a proof's `iat` may be, in seconds.
pub const LEEWAY_SECS: i64 = 5;
/// Longest proof read.
const MAX_PROOF_LEN: usize = 8 * 1024;
/// Longest `jti` accepted.
const MAX_JTI_LEN: usize = 128;

/// What the request a proof came with looks like.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// Its method.
    pub method: &'a str,
    /// Its URL as the client addressed it (query and fragment are ignored).
    pub url: &'a str,
    /// The access token presented with it, at a protected resource (then `ath` must match).
    pub access_token: Option<&'a str>,
    /// Now (Unix seconds).
    pub now: i64,
}

/// A proof that passed every check but its `jti`'s novelty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The base64url SHA-256 JWK thumbprint (RFC 7638) of its key.
    pub jkt: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `iat`.
    pub iat: i64,
    /// The nonce it carries, if any.
    pub nonce: Option<String>,
}

impl Verified {
    /// Until when its `jti` must be remembered: past then, its `iat` is too old anyway.
    pub fn remember_until(&self) -> i64 {
        self.iat + MAX_AGE_SECS + LEEWAY_SECS
    }
}

/// Why a proof was refused; the text is the `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// More than one `DPoP` header.
    #[error("send exactly one DPoP header")]
    Several,
    /// The proof is malformed, badly signed or does not fit the request.
    #[error("{0}")]
    Invalid(&'static str),
}

#[derive(Deserialize)]
struct Claims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// Whether `s` looks like a base64url SHA-256 thumbprint (43 characters).
pub fn is_thumbprint(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The base64url SHA-256 of an access token, as `ath` carries it.
pub fn token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// `htu` names the request's URL: same scheme, host, port and path; query and fragment
/// ignored (§4.3 point 9), compared after URL normalisation (case, default port).
pub fn same_target(htu: &str, url: &str) -> bool {
    let strip = |u: &str| {
        url::Url::parse(u).ok().map(|mut u| {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        })
    };
    matches!((strip(htu), strip(url)), (Some(a), Some(b)) if a == b)
}

/// Checks a proof against the request it came with.
pub fn verify(proof: &str, expected: &Expected<'_>) -> Result<Verified, DpopError> {
    let invalid = DpopError::Invalid;
    if proof.len() > MAX_PROOF_LEN {
        return Err(invalid("the DPoP proof is too long"));
    }
    let header = jsonwebtoken::decode_header(proof)
        .map_err(|_| invalid("the DPoP proof is not a JWT with a readable header"))?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err(invalid("the DPoP proof's typ must be dpop+jwt"));
    }
    if !crate::jose::ACCEPTED.contains(&header.alg) {
        return Err(invalid(
            "the DPoP proof must be signed with an asymmetric algorithm",
        ));
    }
    let jwk: Jwk = header
        .jwk
        .clone()
        .ok_or(invalid("the DPoP proof's header has no jwk"))?;
    if has_private_members(proof) {
        return Err(invalid("the DPoP proof's jwk must be a public key"));
    }
    if !crate::jose::fits(&jwk, header.alg) {
        return Err(invalid("the DPoP proof's alg does not fit its jwk"));
    }
    let key = DecodingKey::from_jwk(&jwk)
        .map_err(|_| invalid("the DPoP proof's jwk is not a usable key"))?;
    let mut v = Validation::new(header.alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(proof, &key, &v)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                invalid("the DPoP proof's signature does not verify with its jwk")
            }
            _ => invalid("the DPoP proof needs jti, htm, htu and iat claims of the right types"),
        })?
        .claims;
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(invalid("the DPoP proof's jti must be 1 to 128 characters"));
    }
    if claims.htm != expected.method {
        return Err(invalid("the DPoP proof's htm is not this request's method"));
    }
    if !same_target(&claims.htu, expected.url) {
        return Err(invalid("the DPoP proof's htu is not this request's URL"));
    }
    if claims.iat > expected.now + LEEWAY_SECS || claims.iat < expected.now - MAX_AGE_SECS {
        return Err(invalid(
            "the DPoP proof's iat is not within 60 seconds of the server's time",
        ));
    }
    if let Some(token) = expected.access_token {
        let want = token_hash(token);
        let matches = claims
            .ath
            .as_deref()
            .is_some_and(|a| bool::from(a.as_bytes().ct_eq(want.as_bytes())));
        if !matches {
            return Err(invalid(
                "the DPoP proof's ath is not the hash of the access token presented",
            ));
        }
    }
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| invalid("the DPoP proof's jwk has no thumbprint"))?;
    Ok(Verified {
        jkt,
        jti: claims.jti,
        iat: claims.iat,
        nonce: claims.nonce,
    })
}

/// Whether the header's jwk holds private-key members (RFC 9449 §4.2: it must not).
fn has_private_members(proof: &str) -> bool {
    let Some(segment) = proof.split('.').next() else {
        return true;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(segment) else {
        return true;
    };
    let Ok(header) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return true;
    };
    let Some(jwk) = header.get("jwk").and_then(|j| j.as_object()) else {
        return true;
    };
    ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
        .iter()
        .any(|m| jwk.contains_key(*m))
}

/// One `DPoP` header at most: its value, or `None` without one.
pub fn header_value(
    headers: &actix_web::http::header::HeaderMap,
) -> Result<Option<&str>, DpopError> {
    let mut values = headers.get_all("dpop");
    let first = values.next();
    if values.next().is_some() {
        return Err(DpopError::Several);
    }
    first
        .map(|v| {
            v.to_str()
                .map_err(|_| DpopError::Invalid("the DPoP header is not ASCII"))
        })
        .transpose()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[allow(
        dead_code,
        reason = "these tests sign proofs; thumbprints are for the API tests"
    )]
    mod dpop_key {
        include!("../tests/support/dpop_key.rs");
    }
    use dpop_key::DpopKey as Key;

    impl Key {
        pub fn proof(&self, claims: serde_json::Value, typ: &str) -> String {
            self.sign(typ, &claims)
        }
    }

    const NOW: i64 = 1_800_000_000;
    const URL: &str = "https://as.example/token";

    fn expected(token: Option<&str>) -> Expected<'_> {
        Expected {
            method: "POST",
            url: URL,
            access_token: token,
            now: NOW,
        }
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({"jti": "j1", "htm": "POST", "htu": URL, "iat": NOW})
    }

    #[test]
    fn a_good_proof_verifies_and_names_its_keys_thumbprint() {
        let key = Key::new();
        let v = verify(&key.proof(claims(), "dpop+jwt"), &expected(None)).unwrap();
        assert!(is_thumbprint(&v.jkt));
        assert_eq!(v.jti, "j1");
        assert_eq!(v.remember_until(), NOW + 65);
        // The query of the request is ignored, as is the case of the host.
        let mut c = claims();
        c["htu"] = "https://AS.example:443/token".into();
        let url = "https://as.example/token?x=1";
        assert!(verify(
            &key.proof(c, "dpop+jwt"),
            &Expected {
                url,
                ..expected(None)
            }
        )
        .is_ok());
    }

    #[test]
    fn every_mismatch_is_refused() {
        let key = Key::new();
        let refused = |c: serde_json::Value, typ: &str, token: Option<&str>| {
            verify(&key.proof(c, typ), &expected(token)).unwrap_err()
        };
        let with = |k: &str, v: serde_json::Value| {
            let mut c = claims();
            c[k] = v;
            c
        };
        refused(claims(), "JWT", None);
        refused(with("htm", "GET".into()), "dpop+jwt", None);
        refused(
            with("htu", "https://as.example/other".into()),
            "dpop+jwt",
            None,
        );
        refused(with("iat", (NOW - 61).into()), "dpop+jwt", None);
        refused(with("iat", (NOW + 6).into()), "dpop+jwt", None);
        refused(with("jti", "".into()), "dpop+jwt", None);
        // At a resource, ath must be the token's hash.
        refused(claims(), "dpop+jwt", Some("tok"));
        refused(
            with("ath", token_hash("other").into()),
            "dpop+jwt",
            Some("tok"),
        );
        let ok = with("ath", token_hash("tok").into());
        assert!(verify(&key.proof(ok, "dpop+jwt"), &expected(Some("tok"))).is_ok());
        // A proof signed by another key than its header's.
        let other = Key::new();
        let forged = {
            let p = key.proof(claims(), "dpop+jwt");
            let q = other.proof(claims(), "dpop+jwt");
            let (h, _) = p.split_once('.').unwrap();
            let (_, rest) = q.split_once('.').unwrap();
            format!("{h}.{rest}")
        };
        assert!(verify(&forged, &expected(None)).is_err());
    }
}
