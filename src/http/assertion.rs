//! Reading JWT assertions (RFC 7523): the signature against the client's registered keys, then
//! the claims into the domain's [`Assertion`], whose rules `domain::assertion` applies.

use crate::jose::KeySet;
use domain::assertion::Assertion;
use serde::Deserialize;

/// The assertion type of `private_key_jwt` (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
}

/// The claims of an assertion, unverified: only to find out which client it names.
pub fn unverified_subject(token: &str) -> Option<String> {
    jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(token)
        .ok()?
        .sub
}

/// Verifies an assertion's signature with `jwks` and reads its claims; the error says why.
pub fn verify(token: &str, jwks: Option<&serde_json::Value>) -> Result<Assertion, String> {
    let jwks = jwks.ok_or("the client has registered no keys")?;
    let keys = KeySet::parse(jwks).map_err(|e| e.to_string())?;
    let (_, c): (_, Claims) = keys.verify(token, |_| {}).map_err(|e| e.to_string())?;
    let audience = match c.aud {
        Some(serde_json::Value::String(s)) => vec![s],
        Some(serde_json::Value::Array(a)) => a
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => return Err("the assertion has no aud".into()),
    };
    Ok(Assertion {
        issuer: c.iss.ok_or("the assertion has no iss")?,
        subject: c.sub.ok_or("the assertion has no sub")?,
        audience,
        jti: c.jti.ok_or("the assertion has no jti")?,
        expires_at: c.exp.ok_or("the assertion has no exp")?,
        not_before: c.nbf,
        issued_at: c.iat,
    })
}
