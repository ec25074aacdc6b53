//! Verifying JWTs against a JWKS, safely: shared by the server (client assertions, RFC 7523)
//! and by the resource-server extractor (access tokens). No server internals.
//!
//! The algorithm is checked against the key, never taken from the token alone: `none`, HMAC
//! (which a careless verifier would key with the public key) and any algorithm that does not
//! fit the key's type and curve are refused before a signature is looked at.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::de::DeserializeOwned;

/// The asymmetric algorithms accepted.
pub const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a JWT did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// Not a JWT at all.
    #[error("malformed JWT: {0}")]
    Malformed(String),
    /// `none`, HMAC or another algorithm not accepted.
    #[error("algorithm {0} is not accepted (asymmetric signatures only)")]
    Algorithm(String),
    /// The header names a key the set does not hold.
    // The kid is the token's: kept for the caller, not repeated to the sender.
    #[error("no registered key has the kid the JWT header names")]
    UnknownKey(String),
    /// No key of the set verifies it, or its claims are invalid.
    #[error("{0}")]
    Invalid(String),
}

/// A usable key of a set.
struct Key {
    jwk: Jwk,
    decoding: DecodingKey,
}

/// The usable keys of a JWKS document.
pub struct KeySet {
    keys: Vec<Key>,
}

pub(crate) fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    if jwk
        .common
        .key_algorithm
        .is_some_and(|a| a.to_string() != format!("{alg:?}"))
    {
        return false;
    }
    match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        _ => false,
    }
}

impl KeySet {
    /// Reads a JWKS document; symmetric keys and keys of unknown types are left out.
    pub fn parse(jwks: &serde_json::Value) -> Result<Self, JoseError> {
        // RFC 7517 §5: an object with a `keys` array. serde would also read the struct from
        // an array of its fields.
        if !jwks.get("keys").is_some_and(serde_json::Value::is_array) {
            return Err(JoseError::Invalid(
                "not a JWKS document: an object with a keys array".into(),
            ));
        }
        let set: JwkSet = serde_json::from_value(jwks.clone())
            .map_err(|e| JoseError::Invalid(format!("not a JWKS document: {e}")))?;
        let keys = set
            .keys
            .into_iter()
            .filter(|k| {
                !matches!(
                    k.algorithm,
                    AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
                )
            })
            .filter_map(|jwk| {
                let decoding = DecodingKey::from_jwk(&jwk).ok()?;
                Some(Key { jwk, decoding })
            })
            .collect();
        Ok(Self { keys })
    }

    /// Checks that every EC key's coordinates are the full size of its curve (RFC 7518
    /// §6.2.1.2): a coordinate with its leading zero byte dropped, as some libraries write
    /// one key in 128, names another point, and every signature would then fail to verify.
    pub fn check_coordinates(jwks: &serde_json::Value) -> Result<(), JoseError> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let keys = jwks.get("keys").and_then(serde_json::Value::as_array);
        for key in keys.into_iter().flatten() {
            if key.get("kty").and_then(serde_json::Value::as_str) != Some("EC") {
                continue;
            }
            let crv = key
                .get("crv")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            let size = match crv {
                "P-256" => 32,
                "P-384" => 48,
                "P-521" => 66,
                _ => continue,
            };
            let kid = key
                .get("kid")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("(no kid)");
            for coordinate in ["x", "y"] {
                let Some(text) = key.get(coordinate).and_then(serde_json::Value::as_str) else {
                    continue;
                };
                let Ok(bytes) = URL_SAFE_NO_PAD.decode(text) else {
                    continue;
                };
                if bytes.len() != size {
                    return Err(JoseError::Invalid(format!(
                        "key {kid}: its {coordinate} is {} bytes, but a {crv} coordinate is \
                         {size}, zero-padded on the left (RFC 7518 section 6.2.1.2); export the \
                         key again with a library that pads it",
                        bytes.len()
                    )));
                }
            }
        }
        Ok(())
    }

    /// How many usable keys it has.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a JWT's signature with the key its header names (or, without a `kid`, any
    /// key that fits its algorithm), then its claims as `validation` says. `validation`
    /// receives a [`Validation`] for the token's algorithm with no claim checks switched on.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        validation: impl Fn(&mut Validation),
    ) -> Result<(Header, T), JoseError> {
        // The parser's message would quote the token's own header (an unknown `alg`, say):
        // the sender is told what is wrong, never shown its input again.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            JoseError::Malformed(
                "the header is not base64url-encoded JSON naming a known alg".into(),
            )
        })?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(JoseError::Algorithm(format!("{:?}", header.alg)));
        }
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => {
                let named: Vec<&Key> = self
                    .keys
                    .iter()
                    .filter(|k| k.jwk.common.key_id.as_deref() == Some(kid.as_str()))
                    .collect();
                if named.is_empty() {
                    return Err(JoseError::UnknownKey(kid.clone()));
                }
                named
            }
            None => self.keys.iter().collect(),
        };
        let mut last = JoseError::Invalid("no registered key fits the token's algorithm".into());
        for key in candidates.into_iter().filter(|k| fits(&k.jwk, header.alg)) {
            let mut v = Validation::new(header.alg);
            v.validate_exp = false;
            v.validate_nbf = false;
            v.validate_aud = false;
            v.required_spec_claims.clear();
            validation(&mut v);
            match jsonwebtoken::decode::<T>(token, &key.decoding, &v) {
                Ok(data) => return Ok((data.header, data.claims)),
                Err(e) => last = JoseError::Invalid(describe(&e)),
            }
        }
        Err(last)
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => "the signature does not verify".into(),
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the token lacks the {c} claim"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::Base64(_) => {
            "the claims are not base64url-encoded JSON of the expected types".into()
        }
        _ => "the token does not verify".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_ec_coordinate_short_of_its_curve_size_is_refused_by_name() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let full = |n: usize| URL_SAFE_NO_PAD.encode(vec![7u8; n]);
        let jwks = |x: String| {
            serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": x,
                                          "y": full(32)}]})
        };
        assert!(KeySet::check_coordinates(&jwks(full(32))).is_ok());
        let err = KeySet::check_coordinates(&jwks(full(31)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("key k1: its x is 31 bytes"), "{err}");
        assert!(err.contains("P-256 coordinate is 32"), "{err}");
    }

    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn es256() -> (jsonwebtoken::EncodingKey, serde_json::Value) {
        let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .unwrap();
        use aws_lc_rs::signature::KeyPair as _;
        let p = pair.public_key().as_ref().to_vec();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..]),
        });
        let der = pair.to_pkcs8v1().unwrap();
        (jsonwebtoken::EncodingKey::from_ec_der(der.as_ref()), jwk)
    }

    #[test]
    fn a_malformed_header_is_named_not_repeated_and_only_an_object_is_a_key_set() {
        let (_, jwk) = es256();
        let set = KeySet::parse(&serde_json::json!({ "keys": [jwk.clone()] })).unwrap();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ZQXJ<b>\"x","typ":"JWT"}"#);
        let token = format!("{header}.e30.c2ln");
        let err = set
            .verify::<serde_json::Value>(&token, |_| {})
            .unwrap_err()
            .to_string();
        assert!(!err.contains("ZQXJ"), "{err}");
        let refused = crate::bearer::BearerError::InvalidToken(format!("{err} \"ZQXJ\\\n"));
        assert!(refused
            .description()
            .bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)));
        assert!(KeySet::parse(&serde_json::json!([[jwk]])).is_err());
        assert!(KeySet::parse(&serde_json::json!({ "keys": {} })).is_err());
    }

    #[test]
    fn a_signed_token_verifies_and_forgeries_do_not() {
        let (key, jwk) = es256();
        let set = KeySet::parse(&serde_json::json!({ "keys": [jwk.clone()] })).unwrap();
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        let claims = serde_json::json!({"sub": "a"});
        let token = jsonwebtoken::encode(&h, &claims, &key).unwrap();
        let (_, got): (_, serde_json::Value) = set.verify(&token, |_| {}).unwrap();
        assert_eq!(got["sub"], "a");
        // HS256 keyed with the public key's JSON.
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some("k1".into());
        let forged = jsonwebtoken::encode(
            &hs,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(jwk.to_string().as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            set.verify::<serde_json::Value>(&forged, |_| {}),
            Err(JoseError::Algorithm(_))
        ));
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        assert!(set.verify::<serde_json::Value>(&none, |_| {}).is_err());
        h.kid = Some("k2".into());
        let unknown = jsonwebtoken::encode(&h, &claims, &key).unwrap();
        assert_eq!(
            set.verify::<serde_json::Value>(&unknown, |_| {})
                .unwrap_err(),
            JoseError::UnknownKey("k2".into())
        );
        let (other, _) = es256();
        h.kid = Some("k1".into());
        let wrong = jsonwebtoken::encode(&h, &claims, &other).unwrap();
        assert!(set.verify::<serde_json::Value>(&wrong, |_| {}).is_err());
    }
}
