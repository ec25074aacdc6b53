//! Validated value types: a value of one of these types has passed its `parse`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// Why a value was refused by its `parse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// A client identifier: 1 to 128 characters of the RFC 3986 unreserved set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(String);

impl ClientId {
    /// Accepts an identifier made of `A-Z a-z 0-9 - . _ ~`, at most 128 characters long.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
        if s.is_empty() || s.len() > 128 || !s.chars().all(ok_char) {
            return Err(InvalidValue(format!(
                "client id {s:?} must be 1 to 128 characters of A-Z a-z 0-9 - . _ ~"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClientId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ClientId> for String {
    fn from(c: ClientId) -> String {
        c.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One scope token (RFC 6749 §3.3: `1*( %x21 / %x23-5B / %x5D-7E )`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(String);

impl Scope {
    /// Accepts one scope token as RFC 6749 §3.3 defines it.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let ok = |b: u8| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b);
        if s.is_empty() || s.len() > 256 || !s.bytes().all(ok) {
            return Err(InvalidValue(format!(
                "scope {s:?} is not a valid scope token (RFC 6749 §3.3)"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// Parses a space-delimited scope list; repeated tokens are kept once, in first order.
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, InvalidValue> {
        let mut out: Vec<Scope> = Vec::new();
        for token in s.split(' ') {
            if token.is_empty() {
                continue;
            }
            let scope = Scope::parse(token)?;
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        Ok(out)
    }

    /// The scope token as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Scope {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Joins scopes into the space-delimited form of RFC 6749 §3.3.
pub fn join_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(Scope::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A redirect URI a client may register: absolute, without a fragment, `https`, `http` only on
/// a loopback host (RFC 8252 §7.3), or a private-use scheme of a native app (RFC 8252 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectUri(String);

impl RedirectUri {
    /// Validates a redirect URI for registration.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let url = url::Url::parse(s)
            .map_err(|e| InvalidValue(format!("redirect URI {s:?} is not an absolute URI: {e}")))?;
        if url.fragment().is_some() || s.contains('#') {
            return Err(InvalidValue(format!(
                "redirect URI {s:?} must not contain a fragment (RFC 6749 §3.1.2)"
            )));
        }
        match url.scheme() {
            "https" => {}
            "http" => {
                let loopback = matches!(
                    url.host(),
                    Some(url::Host::Ipv4(ip)) if ip.is_loopback()
                ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                    || url.host_str() == Some("localhost");
                if !loopback {
                    return Err(InvalidValue(format!(
                        "redirect URI {s:?} uses plain http on a non-loopback host; use https"
                    )));
                }
            }
            "javascript" | "data" | "file" | "vbscript" => {
                return Err(InvalidValue(format!(
                    "redirect URI {s:?} uses a scheme that cannot be a redirect target"
                )))
            }
            _ => {}
        }
        Ok(Self(s.to_owned()))
    }

    /// The URI as registered.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RedirectUri {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<RedirectUri> for String {
    fn from(r: RedirectUri) -> String {
        r.0
    }
}

/// An OAuth 2.0 grant type a client may be allowed to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum GrantType {
    /// RFC 6749 §4.4.
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    /// RFC 6749 §4.1.
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    /// RFC 6749 §6.
    #[serde(rename = "refresh_token")]
    RefreshToken,
    /// RFC 6749 §4.3.
    #[serde(rename = "password")]
    Password,
    /// RFC 6749 §4.2.
    #[serde(rename = "implicit")]
    Implicit,
    /// RFC 7523 §2.1.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:jwt-bearer")]
    JwtBearer,
}

impl GrantType {
    /// Every grant type, in the order metadata lists them.
    pub const ALL: [GrantType; 6] = [
        GrantType::AuthorizationCode,
        GrantType::ClientCredentials,
        GrantType::RefreshToken,
        GrantType::Password,
        GrantType::Implicit,
        GrantType::JwtBearer,
    ];

    /// The wire name (`grant_type` value).
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::Password => "password",
            GrantType::Implicit => "implicit",
            GrantType::JwtBearer => "urn:ietf:params:oauth:grant-type:jwt-bearer",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| InvalidValue(format!("unknown grant type {s:?}")))
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a client's access tokens look on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenFormat {
    /// A signed JWT per RFC 9068.
    #[default]
    Jwt,
    /// 256 random bits, base64url; only its SHA-256 is kept.
    Opaque,
}

impl TokenFormat {
    /// The name used in the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFormat::Jwt => "jwt",
            TokenFormat::Opaque => "opaque",
        }
    }

    /// Parses `jwt` or `opaque`.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "jwt" => Ok(TokenFormat::Jwt),
            "opaque" => Ok(TokenFormat::Opaque),
            _ => Err(InvalidValue(format!(
                "token format {s:?} is neither jwt nor opaque"
            ))),
        }
    }
}

/// A versioned hash of a high-entropy secret (client secret, opaque token, code).
///
/// Stored as `sha256:<hex>`; the prefix lets a later version change the function while old
/// events still verify.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretHash(String);

impl SecretHash {
    /// Hashes a secret with SHA-256.
    pub fn of(secret: &str) -> Self {
        Self(format!(
            "sha256:{}",
            hex(&Sha256::digest(secret.as_bytes()))
        ))
    }

    /// Compares a presented secret with this hash in constant time.
    pub fn verify(&self, presented: &str) -> bool {
        let candidate = Self::of(presented);
        candidate.0.as_bytes().ct_eq(self.0.as_bytes()).into()
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SecretHash {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.strip_prefix("sha256:") {
            Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(Self(s)),
            _ => Err(InvalidValue(
                "secret hash must be sha256:<64 hex digits>".into(),
            )),
        }
    }
}

impl From<SecretHash> for String {
    fn from(h: SecretHash) -> String {
        h.0
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_drop_repeats_and_reject_bad_characters() {
        let scopes = Scope::parse_list("read  write read").unwrap();
        assert_eq!(join_scopes(&scopes), "read write");
        assert!(Scope::parse_list("read \"quoted\"").is_err());
        assert!(Scope::parse("a\\b").is_err());
    }

    #[test]
    fn redirect_uris_refuse_fragments_and_plain_http_off_loopback() {
        assert!(RedirectUri::parse("https://app.example/cb").is_ok());
        assert!(RedirectUri::parse("http://127.0.0.1:9000/cb").is_ok());
        assert!(RedirectUri::parse("http://[::1]/cb").is_ok());
        assert!(RedirectUri::parse("com.example.app:/cb").is_ok());
        assert!(RedirectUri::parse("https://app.example/cb#x").is_err());
        assert!(RedirectUri::parse("http://app.example/cb").is_err());
        assert!(RedirectUri::parse("/relative").is_err());
        assert!(RedirectUri::parse("javascript:alert(1)").is_err());
    }

    #[test]
    fn client_ids_allow_only_unreserved_characters() {
        assert!(ClientId::parse("svc-billing_1.a~b").is_ok());
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse("a b").is_err());
        assert!(ClientId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn secret_hashes_verify_only_the_same_secret() {
        let h = SecretHash::of("s3cret-value");
        assert!(h.verify("s3cret-value"));
        assert!(!h.verify("s3cret-valuE"));
        assert!(SecretHash::try_from(h.as_str().to_owned()).is_ok());
        assert!(SecretHash::try_from("md5:abc".to_owned()).is_err());
    }

    #[test]
    fn grant_types_round_trip_their_wire_names() {
        for g in GrantType::ALL {
            assert_eq!(GrantType::parse(g.as_str()).unwrap(), g);
        }
        assert!(GrantType::parse("magic").is_err());
    }
}
