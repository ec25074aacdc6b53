//! The signing key: generated at `init`, kept 0600 in the data directory, published as JWKS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// File name of the private key in the data directory.
pub const KEY_FILE: &str = "signing-key.pem";

/// A key failure.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("signing key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file does not hold a P-256 PKCS#8 key.
    #[error("signing key file does not hold a P-256 PKCS#8 private key: {0}")]
    Invalid(String),
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
    /// Audience.
    pub aud: String,
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
}

/// The server's ES256 signing key.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: serde_json::Value,
}

impl SigningKey {
    /// Generates a new key and writes it to `dir/signing-key.pem` with mode 0600.
    pub fn generate(dir: &Path) -> Result<Self, KeyError> {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let path = dir.join(KEY_FILE);
        crate::fsutil::write_private(&path, pem.as_bytes()).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(pem.as_str())
    }

    /// Loads the key of a data directory.
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join(KEY_FILE);
        let pem = std::fs::read_to_string(&path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&pem)
    }

    fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let point = key.verifying_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(KeyError::Invalid(
                "public key has no affine coordinates".into(),
            ));
        };
        let x = URL_SAFE_NO_PAD.encode(x);
        let y = URL_SAFE_NO_PAD.encode(y);
        // RFC 7638 thumbprint: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let der = key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let decoding = DecodingKey::from_ec_components(&x, &y)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": kid, "use": "sig", "alg": "ES256",
        });
        Ok(Self {
            kid,
            encoding,
            decoding,
            jwk,
        })
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS document that publishes the public key.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk] })
    }

    /// Signs an access token with header `typ: at+jwt` (RFC 9068 §2.1).
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// Verifies a token's signature, type and issuer; expiry and revocation are the token
    /// index's business. `None` for anything that is not a JWT we signed.
    pub fn verify(&self, token: &str, issuer: &str) -> Option<AccessTokenClaims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::ES256
            || header.kid.as_deref() != Some(self.kid.as_str())
            || !header
                .typ
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("at+jwt"))
        {
            return None;
        }
        let mut v = Validation::new(Algorithm::ES256);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        v.set_issuer(&[issuer]);
        jsonwebtoken::decode::<AccessTokenClaims>(token, &self.decoding, &v)
            .ok()
            .map(|d| d.claims)
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
            client_id: "svc".into(),
            scope: "read".into(),
            iat: 1,
            exp: 2,
            jti: "0190".into(),
        }
    }

    #[test]
    fn a_generated_key_survives_reloading_and_verifies_its_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(dir.path()).unwrap();
        let token = key.sign(&claims()).unwrap();
        let again = SigningKey::load(dir.path()).unwrap();
        assert_eq!(key.kid(), again.kid());
        let got = again.verify(&token, "http://127.0.0.1:1").unwrap();
        assert_eq!(got.sub, "svc");
        assert!(again.verify(&token, "http://other").is_none());
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(again.verify(&tampered, "http://127.0.0.1:1").is_none());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn another_key_signature_is_refused() {
        let a = SigningKey::generate(tempfile::tempdir().unwrap().path()).unwrap();
        let b = SigningKey::generate(tempfile::tempdir().unwrap().path()).unwrap();
        let token = a.sign(&claims()).unwrap();
        assert!(b.verify(&token, "http://127.0.0.1:1").is_none());
    }
}
