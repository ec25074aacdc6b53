// A client's DPoP key for tests and benches: a fresh P-256 pair that signs proofs
// (RFC 9449 §4.2). Included with `#[path]` by the unit tests of `src/dpop.rs`, the black-box
// tests, the fuzz targets and `bench/dpop_cost.rs`, which are separate crates.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::Digest as _;

/// A client's DPoP key pair (P-256, ES256).
pub struct DpopKey {
    encoding: jsonwebtoken::EncodingKey,
    /// The public key as a JWK, as a proof's header carries it.
    pub jwk: serde_json::Value,
}

impl DpopKey {
    pub fn new() -> Self {
        use aws_lc_rs::signature::KeyPair as _;
        let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .unwrap();
        let p = pair.public_key().as_ref().to_vec();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..]),
        });
        let der = pair.to_pkcs8v1().unwrap();
        Self {
            encoding: jsonwebtoken::EncodingKey::from_ec_der(der.as_ref()),
            jwk,
        }
    }

    /// A JWS of `claims` with this key's JWK in a header of type `typ` (`dpop+jwt` for a
    /// proof; tests of refusals pass others).
    pub fn sign(&self, typ: &str, claims: &serde_json::Value) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.typ = Some(typ.into());
        h.jwk = Some(serde_json::from_value(self.jwk.clone()).unwrap());
        jsonwebtoken::encode(&h, claims, &self.encoding).unwrap()
    }

    /// The RFC 7638 thumbprint the server binds tokens to.
    pub fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["x"].as_str().unwrap(),
            self.jwk["y"].as_str().unwrap()
        );
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
    }
}

/// The `ath` claim of a proof that presents `token`: its SHA-256, base64url.
pub fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token.as_bytes()))
}
