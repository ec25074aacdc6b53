//! Validated value types: a value of one of these types has passed its `parse`.

use hmac::{Hmac, Mac};
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

impl AsRef<str> for Scope {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

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
                let loopback = loopback_literal(s).is_some() || url.host_str() == Some("localhost");
                if !loopback {
                    return Err(InvalidValue(format!(
                        "redirect URI {s:?} uses plain http on a host that is not a loopback \
                         address written as 127.0.0.1 (or another 127.x.y.z) or [::1]; use \
                         https, or the loopback address in its usual form"
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
    /// RFC 8628 §3.4.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
    /// RFC 8693 §2.1.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
    /// RFC 7522 §2.1.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:saml2-bearer")]
    Saml2Bearer,
}

impl GrantType {
    /// Every grant type, in the order metadata lists them.
    /// (Token index records store a grant as its place here: new ones go at the end.)
    pub const ALL: [GrantType; 9] = [
        GrantType::AuthorizationCode,
        GrantType::ClientCredentials,
        GrantType::RefreshToken,
        GrantType::Password,
        GrantType::Implicit,
        GrantType::JwtBearer,
        GrantType::DeviceCode,
        GrantType::TokenExchange,
        GrantType::Saml2Bearer,
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
            GrantType::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
            GrantType::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
            GrantType::Saml2Bearer => "urn:ietf:params:oauth:grant-type:saml2-bearer",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| InvalidValue(format!("unknown grant type {s:?}")))
    }

    /// Whether its tokens speak for a user of the directory (their subject is a user id).
    /// A `client_credentials` token speaks for the client; a `jwt-bearer` token for whatever
    /// the assertion's issuer named, which may look like a user id and is not one.
    pub fn speaks_for_a_user(self) -> bool {
        matches!(
            self,
            GrantType::AuthorizationCode
                | GrantType::Implicit
                | GrantType::Password
                | GrantType::RefreshToken
                | GrantType::DeviceCode
        )
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

/// A JWS algorithm authledger signs access tokens with (RFC 7518 §3, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA-2048 keys.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

impl SigningAlgorithm {
    /// Every algorithm, in the order metadata lists them.
    pub const ALL: [SigningAlgorithm; 3] = [
        SigningAlgorithm::ES256,
        SigningAlgorithm::RS256,
        SigningAlgorithm::EdDSA,
    ];

    /// The JOSE name (`alg`).
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::RS256 => "RS256",
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// Parses a JOSE name.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                InvalidValue(format!(
                    "signing algorithm {s:?} is not one of RS256, ES256, EdDSA"
                ))
            })
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a client authenticates at the token, introspection and revocation endpoints
/// (RFC 7591 §2 `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic with the client secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// The secret as a form parameter.
    ClientSecretPost,
    /// A JWT signed with one of the client's registered keys (RFC 7523 §2.2).
    PrivateKeyJwt,
    /// A public client: no authentication.
    None,
}

impl AuthMethod {
    /// Every method, in the order metadata lists them.
    pub const ALL: [AuthMethod; 4] = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::None,
    ];

    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }

    /// Parses a registered name.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                InvalidValue(format!(
                    "token endpoint auth method {s:?} is not one of client_secret_basic, \
                     client_secret_post, private_key_jwt, none"
                ))
            })
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server's key for hashing secrets at rest (RFC 2104 HMAC-SHA-256).
///
/// A bare SHA-256 of a token lets anyone holding a copy of the log confirm a captured value;
/// an HMAC under a key kept outside the log does not. The server derives it from the
/// key-encryption key, so every node sharing a KEK shares it too.
#[derive(Clone)]
pub struct HashKey(std::sync::Arc<Hmac<Sha256>>);

impl HashKey {
    /// A key from 32 bytes of key material.
    pub fn new(key: &[u8; 32]) -> Self {
        // HMAC pads a short key with zeros to the block size (RFC 2104 §2); padding it here
        // gives the same MAC through the constructor that cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(key);
        Self(std::sync::Arc::new(
            <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into()),
        ))
    }

    /// A fixed key for tests and fixtures.
    pub fn for_tests() -> Self {
        Self::new(&[7; 32])
    }

    /// The hash of a secret under this key (scheme `hmac-sha256`).
    pub fn hash(&self, secret: &str) -> SecretHash {
        // The keyed state is computed once; each hash clones it (two compressions saved).
        let mut mac = (*self.0).clone();
        mac.update(secret.as_bytes());
        SecretHash(format!(
            "{HMAC_SHA256}{}",
            hex(&mac.finalize().into_bytes())
        ))
    }

    /// The hashes a presented value may have been stored under: the keyed one, then the bare
    /// SHA-256 that events recorded before keyed hashes hold.
    pub fn candidates(&self, presented: &str) -> [SecretHash; 2] {
        [self.hash(presented), SecretHash::unkeyed(presented)]
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(..)")
    }
}

const SHA256: &str = "sha256:";
const HMAC_SHA256: &str = "hmac-sha256:";
const BCRYPT: &str = "bcrypt:";

/// How a [`SecretHash`] was computed; its text names it, so old events keep verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashScheme {
    /// `sha256:<hex>`: a bare SHA-256, as recorded before keyed hashes.
    Sha256,
    /// `hmac-sha256:<hex>`: an HMAC-SHA-256 under the server's [`HashKey`].
    HmacSha256,
    /// `bcrypt:$2y$10$...`: a client secret imported from a server that kept only its bcrypt
    /// hash (Hydra, League/Symfony), so that the client keeps working until it is rotated.
    /// Never made here, and never for a token or a code.
    Bcrypt,
}

/// A versioned hash of a high-entropy secret (client secret, opaque token, code).
///
/// Stored as `hmac-sha256:<hex>` (keyed, see [`HashKey`]) or, in events from before keyed
/// hashes, `sha256:<hex>`; the prefix says which, so old events still verify.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretHash(String);

impl SecretHash {
    /// The bare SHA-256 of a secret: the scheme of old events, for looking them up.
    pub fn unkeyed(secret: &str) -> Self {
        Self(format!(
            "{SHA256}{}",
            hex(&Sha256::digest(secret.as_bytes()))
        ))
    }

    /// Which function made this hash.
    pub fn scheme(&self) -> HashScheme {
        if self.0.starts_with(HMAC_SHA256) {
            HashScheme::HmacSha256
        } else if self.0.starts_with(BCRYPT) {
            HashScheme::Bcrypt
        } else {
            HashScheme::Sha256
        }
    }

    /// An imported bcrypt hash (`$2a$`, `$2b$` or `$2y$`, cost 4 to 31), kept as it is.
    pub fn imported_bcrypt(hash: &str) -> Result<Self, InvalidValue> {
        Self::try_from(format!("{BCRYPT}{hash}"))
    }

    /// The 32 bytes of the digest.
    pub fn digest(&self) -> [u8; 32] {
        let hex = self.0.rsplit(':').next().unwrap_or_default().as_bytes();
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            // Parsing checked that the text is 64 hex digits.
            *b = (nibble(hex[2 * i]) << 4) | nibble(hex[2 * i + 1]);
        }
        out
    }

    /// Compares a presented secret with this hash in constant time, by this hash's scheme.
    /// A bcrypt hash costs what its cost factor says (tens of milliseconds at 10): callers on
    /// an async thread check [`HashScheme::Bcrypt`] and run it on a blocking one.
    pub fn verify(&self, key: &HashKey, presented: &str) -> bool {
        let candidate = match self.scheme() {
            HashScheme::HmacSha256 => key.hash(presented),
            HashScheme::Sha256 => Self::unkeyed(presented),
            HashScheme::Bcrypt => return self.verify_bcrypt(presented),
        };
        candidate.0.as_bytes().ct_eq(self.0.as_bytes()).into()
    }

    /// bcrypt compares only the first 72 bytes, so Symfony's password hasher (League's
    /// bundle) hashes a longer secret as base64(SHA-512(secret)) first: for a `$2y$` hash both
    /// forms are tried.
    fn verify_bcrypt(&self, presented: &str) -> bool {
        use base64::Engine as _;
        let hash = &self.0[BCRYPT.len()..];
        if bcrypt::verify(presented, hash).unwrap_or(false) {
            return true;
        }
        // Only PHP writes `$2y$`, and only Symfony's hasher pre-hashes.
        hash.starts_with("$2y$") && presented.len() > 72 && {
            let pre = base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha512::digest(presented.as_bytes()));
            bcrypt::verify(pre, hash).unwrap_or(false)
        }
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The cheapest bcrypt cost accepted (bcrypt's own minimum).
const MIN_BCRYPT_COST: u8 = 4;
/// The dearest bcrypt cost accepted: 12 (Hydra's and PHP's default is 10). Each step doubles
/// the work of every check of that client, and a check happens before the client is known to
/// be who it says; dearer hashes are not kept (the import issues a new secret).
pub const MAX_BCRYPT_COST: u8 = 12;

/// `$2a$`, `$2b$` or `$2y$`, a two-digit cost from 04 to [`MAX_BCRYPT_COST`], `$`, then 22
/// characters of salt and 31 of hash in bcrypt's base64 alphabet.
fn is_bcrypt(h: &str) -> bool {
    let b = h.as_bytes();
    b.len() == 60
        && matches!(&b[..4], b"$2a$" | b"$2b$" | b"$2y$")
        && b[4..6].iter().all(u8::is_ascii_digit)
        && (MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(&((b[4] - b'0') * 10 + (b[5] - b'0')))
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'/'))
}

fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

impl TryFrom<String> for SecretHash {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if let Some(hash) = s.strip_prefix(BCRYPT) {
            return if is_bcrypt(hash) {
                Ok(Self(s))
            } else {
                Err(InvalidValue(
                    "a bcrypt hash must look like $2y$10$ followed by 53 characters of bcrypt's base64".into(),
                ))
            };
        }
        let digest = s
            .strip_prefix(HMAC_SHA256)
            .or_else(|| s.strip_prefix(SHA256));
        match digest {
            Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(Self(s)),
            _ => Err(InvalidValue(
                "secret hash must be hmac-sha256:<64 hex digits> or sha256:<64 hex digits>".into(),
            )),
        }
    }
}

impl From<SecretHash> for String {
    fn from(h: SecretHash) -> String {
        h.0
    }
}

/// A resource owner's identifier (a UUIDv7 drawn when the user registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub uuid::Uuid);

impl UserId {
    /// Parses the hyphenated form.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        uuid::Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| InvalidValue(format!("user id {s:?} is not a UUID")))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A username: 1 to 64 characters of `A-Z a-z 0-9 . _ @ + -`, compared exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    /// Validates a username.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-');
        if s.is_empty() || s.len() > 64 || !s.chars().all(ok) {
            return Err(InvalidValue(
                "username must be 1 to 64 characters of A-Z a-z 0-9 . _ @ + -".into(),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The username as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Username> for String {
    fn from(u: Username) -> String {
        u.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An argon2id password hash in PHC string form (`$argon2id$v=19$m=...`): salted and
/// memory-hard, never the password. Its `Debug` does not print it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Accepts an argon2id PHC string.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if !s.starts_with("$argon2id$") || s.len() > 512 {
            return Err(InvalidValue(
                "password hash must be an argon2id PHC string".into(),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(argon2id, redacted)")
    }
}

impl TryFrom<String> for PasswordHash {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PasswordHash> for String {
    fn from(h: PasswordHash) -> String {
        h.0
    }
}

/// How a presented `redirect_uri` is compared with the registered ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectMatching {
    /// Exact string comparison, except that a loopback `http` URI matches on any port
    /// (RFC 8252 §7.3).
    #[default]
    Exact,
    /// Phorge's rule: same scheme, host, port and path; every registered query parameter
    /// present; extra query parameters allowed unless named like a response parameter.
    Extended,
}

impl RedirectMatching {
    /// The name used in the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectMatching::Exact => "exact",
            RedirectMatching::Extended => "extended",
        }
    }

    /// Parses `exact` or `extended`.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "exact" => Ok(Self::Exact),
            "extended" => Ok(Self::Extended),
            _ => Err(InvalidValue(format!(
                "redirect URI matching {s:?} is neither exact nor extended"
            ))),
        }
    }
}

/// Query parameters an authorization response writes; a presented redirect URI that already
/// carries one could plant a value in the client's callback, so extended matching refuses it.
pub const RESPONSE_PARAMETERS: [&str; 9] = [
    "code",
    "state",
    "error",
    "error_description",
    "iss",
    "access_token",
    "token_type",
    "expires_in",
    "scope",
];

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// An `http` URI on a loopback IP literal written in its usual form (`127.0.0.1`, any
/// `127.x.y.z` in dotted decimal without leading zeros, or `[::1]`), cut into the part before
/// the port and the part after it: `("http://127.0.0.1", "/cb?x")`. `None` for anything else,
/// the octal, hexadecimal, decimal and zero-padded notations a URL parser reads as the same
/// address included: matching is on the registered string (RFC 9700 §4.1.3), and only the
/// port of a loopback literal may differ (RFC 8252 §7.3).
fn loopback_literal(s: &str) -> Option<(&str, &str)> {
    let after = s.strip_prefix("http://")?;
    let host_end = if after.starts_with('[') {
        after.find(']')? + 1
    } else {
        after.find([':', '/', '?', '#']).unwrap_or(after.len())
    };
    let host = &after[..host_end];
    let canonical = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback() && format!("[{ip}]") == host),
        None => host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback() && ip.to_string() == host),
    };
    if !canonical {
        return None;
    }
    let rest = &after[host_end..];
    let rest = match rest.strip_prefix(':') {
        Some(port) => {
            let digits = port.find(['/', '?', '#']).unwrap_or(port.len());
            port[..digits].parse::<u16>().ok()?;
            if !port[..digits].bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            &port[digits..]
        }
        None => rest,
    };
    Some((&s[.."http://".len() + host_end], rest))
}

impl RedirectUri {
    /// Whether `presented` may be used as this registered redirect URI.
    pub fn matches(&self, presented: &str, mode: RedirectMatching) -> bool {
        if presented == self.0 {
            return true;
        }
        let (Ok(reg), Ok(pre)) = (url::Url::parse(&self.0), url::Url::parse(presented)) else {
            return false;
        };
        if pre.fragment().is_some() || presented.contains('#') {
            return false;
        }
        let loopback_any_port = reg.scheme() == "http" && is_loopback(&reg);
        let same_origin = reg.scheme() == pre.scheme()
            && reg.host() == pre.host()
            && (loopback_any_port || reg.port_or_known_default() == pre.port_or_known_default())
            && reg.username() == pre.username()
            && reg.password() == pre.password()
            && reg.path() == pre.path();
        if !same_origin {
            return false;
        }
        match mode {
            // The registered string; only the port of a loopback IP literal may differ, and
            // both must be written in the literal's usual form.
            RedirectMatching::Exact => {
                matches!(
                    (loopback_literal(&self.0), loopback_literal(presented)),
                    (Some(r), Some(p)) if r == p
                )
            }
            RedirectMatching::Extended => {
                // The scheme, host and path as written, not as a URL parser reads them: a
                // dot segment or another notation of the host must not pass.
                let written = |s: &str| -> Option<(String, String)> {
                    let end = s.find(['?', '#']).unwrap_or(s.len());
                    let (origin, path) = match loopback_literal(s) {
                        Some((origin, rest)) => (
                            origin.to_owned(),
                            rest[..rest.find(['?', '#']).unwrap_or(rest.len())].to_owned(),
                        ),
                        None => {
                            let start = s.find("://")? + 3;
                            let path_at = s[start..end].find('/').map_or(end, |i| start + i);
                            (s[..path_at].to_owned(), s[path_at..end].to_owned())
                        }
                    };
                    Some((origin, path))
                };
                if written(&self.0).is_none() || written(&self.0) != written(presented) {
                    return false;
                }
                let registered: Vec<(String, String)> = reg.query_pairs().into_owned().collect();
                let presented: Vec<(String, String)> = pre.query_pairs().into_owned().collect();
                registered.iter().all(|p| presented.contains(p))
                    && presented.iter().all(|p| {
                        registered.contains(p) || !RESPONSE_PARAMETERS.contains(&p.0.as_str())
                    })
            }
        }
    }
}

/// A PKCE code challenge method (RFC 7636 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PkceMethod {
    /// `BASE64URL(SHA256(verifier))`.
    S256,
    /// The verifier itself; refused unless a client is configured for it.
    #[serde(rename = "plain")]
    Plain,
}

impl PkceMethod {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PkceMethod::S256 => "S256",
            PkceMethod::Plain => "plain",
        }
    }

    /// Parses `S256` or `plain`.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "S256" => Ok(Self::S256),
            "plain" => Ok(Self::Plain),
            _ => Err(InvalidValue(format!(
                "code_challenge_method {s:?} is neither S256 nor plain"
            ))),
        }
    }
}

/// Whether a string is 43 to 128 characters of `[A-Z a-z 0-9 - . _ ~]` (RFC 7636 §4.1, §4.2).
pub fn is_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Checks a `code_verifier` against the challenge recorded with a code, in constant time.
pub fn pkce_verifies(challenge: &str, method: PkceMethod, verifier: &str) -> bool {
    use base64::Engine as _;
    if !is_pkce_string(verifier) {
        return false;
    }
    let derived = match method {
        PkceMethod::S256 => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes())),
        PkceMethod::Plain => verifier.to_owned(),
    };
    derived.as_bytes().ct_eq(challenge.as_bytes()).into()
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
    fn imported_bcrypt_hashes_verify_their_secret_and_refuse_others() {
        let key = HashKey::new(&[7; 32]);
        // $2b$ (Python's bcrypt), $2y$ (PHP's password_hash) and $2a$ are one function.
        let b = SecretHash::imported_bcrypt(
            "$2b$04$LqGXTnV/3Y5SIETX0Ff1UurpCdhDr4OXIuohxnVuqCzueBp.aZTHq",
        )
        .unwrap();
        assert_eq!(b.scheme(), HashScheme::Bcrypt);
        assert!(b.verify(&key, "short-secret"));
        assert!(!b.verify(&key, "short-secreT"));
        assert!(!b.verify(&key, ""));
        // The stored form round-trips through the event's string.
        let again = SecretHash::try_from(String::from(b.clone())).unwrap();
        assert_eq!(again, b);
        // Symfony's hasher pre-hashes secrets over 72 bytes: base64(SHA-512(secret)).
        let long = "ab".repeat(40);
        let y = SecretHash::imported_bcrypt(
            "$2y$04$XZVVqUxTk1I25nfHp1In4eZma.wFvvE9l20pUZNDqy1U9G/tV7B7G",
        )
        .unwrap();
        assert!(y.verify(&key, &long));
        assert!(!y.verify(&key, &"ab".repeat(39)));
        // Anything else is refused: other prefixes, costs, lengths and alphabets.
        for bad in [
            "$2x$04$LqGXTnV/3Y5SIETX0Ff1UurpCdhDr4OXIuohxnVuqCzueBp.aZTHq",
            "$2b$03$LqGXTnV/3Y5SIETX0Ff1UurpCdhDr4OXIuohxnVuqCzueBp.aZTHq",
            "$2b$13$LqGXTnV/3Y5SIETX0Ff1UurpCdhDr4OXIuohxnVuqCzueBp.aZTHq",
            "$2b$+4$LqGXTnV/3Y5SIETX0Ff1UurpCdhDr4OXIuohxnVuqCzueBp.aZTHq",
            "$2b$04$LqGXTnV/3Y5SIETX0Ff1UurpCdhDr4OXIuohxnVuqCzueBp.aZTH",
            "$2b$04$LqGXTnV/3Y5SIETX0Ff1UurpCdhDr4OXIuohxnVuqCzueBp.aZTH=",
            "$pbkdf2-sha256$i=25000,l=32$oiEm8SRgF0nU8ePl+repDQ$aRmUx7lYzq0",
            // Not ASCII where the cost goes: refused, never a panic on a char boundary.
            "$2b$1éLqGXTnV/3Y5SIETX0Ff1UurpCdhDr4OXIuohxnVuqCzueBp.aZTHq",
        ] {
            assert!(SecretHash::imported_bcrypt(bad).is_err(), "{bad}");
        }
    }

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
        let key = HashKey::for_tests();
        let h = key.hash("s3cret-value");
        assert!(h.verify(&key, "s3cret-value"));
        assert!(!h.verify(&key, "s3cret-valuE"));
        assert!(!h.verify(&HashKey::new(&[8; 32]), "s3cret-value"));
        assert!(SecretHash::try_from(h.as_str().to_owned()).is_ok());
        assert!(SecretHash::try_from("md5:abc".to_owned()).is_err());
    }

    #[test]
    fn a_keyed_hash_is_rfc_4231_hmac_sha256_and_old_bare_hashes_still_verify() {
        // RFC 4231 test case 2 has a 4-byte key; HMAC pads it with zeros as we pad ours.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let h = HashKey::new(&key).hash("what do ya want for nothing?");
        assert_eq!(
            h.as_str(),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(h.scheme(), HashScheme::HmacSha256);
        assert_eq!(h.digest()[..2], [0x5b, 0xdc]);
        let old = SecretHash::try_from(
            "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b".to_owned(),
        )
        .unwrap();
        assert_eq!(old.scheme(), HashScheme::Sha256);
        assert!(old.verify(&HashKey::for_tests(), "secret"));
        assert_eq!(HashKey::for_tests().candidates("secret")[1], old);
    }

    #[test]
    fn grant_types_round_trip_their_wire_names() {
        for g in GrantType::ALL {
            assert_eq!(GrantType::parse(g.as_str()).unwrap(), g);
        }
        assert!(GrantType::parse("magic").is_err());
    }

    #[test]
    fn exact_matching_allows_only_a_loopback_port_to_differ() {
        let reg = RedirectUri::parse("https://app.example/cb").unwrap();
        let m = RedirectMatching::Exact;
        assert!(reg.matches("https://app.example/cb", m));
        assert!(!reg.matches("https://app.example/cb/", m));
        assert!(!reg.matches("https://app.example/cc", m));
        assert!(!reg.matches("https://app.example:8443/cb", m));
        assert!(!reg.matches("https://app.example/cb?x=1", m));
        let lo = RedirectUri::parse("http://127.0.0.1/cb").unwrap();
        assert!(lo.matches("http://127.0.0.1:53122/cb", m));
        assert!(!lo.matches("http://127.0.0.1:53122/cb?x=1", m));
        assert!(!lo.matches("http://127.0.0.2:53122/cb", m));
        let v6 = RedirectUri::parse("http://[::1]:8000/cb").unwrap();
        assert!(v6.matches("http://[::1]:9000/cb", m));
        assert!(v6.matches("http://[::1]/cb", m));
        assert!(!v6.matches("http://[0:0:0:0:0:0:0:1]:9000/cb", m));
    }

    #[test]
    fn loopback_addresses_in_other_notations_are_refused_and_the_registered_form_takes_any_port() {
        let lo = RedirectUri::parse("http://127.0.0.1/cb").unwrap();
        let m = RedirectMatching::Exact;
        for other in [
            "http://127.000.000.001:1/cb",
            "http://0177.0.0.1:1/cb",
            "http://0x7f.0.0.1:1/cb",
            "http://0x7f000001:1/cb",
            "http://2130706433:1/cb",
            "http://127.1:1/cb",
            "http://127.0.0.1.:1/cb",
            "http://127.0.0.1:+80/cb",
            "http://127.0.0.1:080x/cb",
            "http://user@127.0.0.1:1/cb",
            "http://localhost:1/cb",
            "HTTP://127.0.0.1:1/cb",
            "http://127.0.0.1:1/CB",
            "http://127.0.0.1:1/cb/../cb",
            "http://127.0.0.1:1/%63b",
        ] {
            assert!(!lo.matches(other, m), "{other}");
            assert!(!lo.matches(other, RedirectMatching::Extended), "{other}");
        }
        for port in ["1", "80", "53122", "65535"] {
            assert!(
                lo.matches(&format!("http://127.0.0.1:{port}/cb"), m),
                "{port}"
            );
        }
        assert!(!lo.matches("http://127.0.0.1:65536/cb", m));
        // Registration takes only the usual form too.
        for odd in [
            "http://127.000.000.001/cb",
            "http://0x7f.0.0.1/cb",
            "http://2130706433/cb",
            "http://[0:0:0:0:0:0:0:1]/cb",
        ] {
            assert!(RedirectUri::parse(odd).is_err(), "{odd}");
        }
        assert!(RedirectUri::parse("http://127.0.0.1:8080/cb").is_ok());
        assert!(RedirectUri::parse("http://localhost/cb").is_ok());
        // A localhost registration matches only as written (no port is free there).
        let host = RedirectUri::parse("http://localhost/cb").unwrap();
        assert!(host.matches("http://localhost/cb", m));
        assert!(!host.matches("http://localhost:8080/cb", m));
    }

    #[test]
    fn extended_matching_allows_extra_parameters_but_never_response_ones() {
        let reg = RedirectUri::parse("https://app.example/cb?tenant=a").unwrap();
        let m = RedirectMatching::Extended;
        assert!(reg.matches("https://app.example/cb?tenant=a&next=%2Fhome", m));
        assert!(!reg.matches("https://app.example/cb?next=1", m));
        assert!(!reg.matches("https://app.example/cb?tenant=a&code=planted", m));
        assert!(!reg.matches("https://app.example/cb?tenant=a&state=x", m));
        assert!(!reg.matches("https://app.example/cb?tenant=a#frag", m));
        assert!(!reg.matches("https://evil.example/cb?tenant=a", m));
        assert!(!reg.matches("https://app.example/cb/x?tenant=a", m));
    }

    #[test]
    fn pkce_verifies_s256_and_plain_and_refuses_short_verifiers() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_verifies(challenge, PkceMethod::S256, verifier));
        assert!(!pkce_verifies(challenge, PkceMethod::Plain, verifier));
        assert!(pkce_verifies(verifier, PkceMethod::Plain, verifier));
        assert!(!pkce_verifies("short", PkceMethod::Plain, "short"));
    }

    #[test]
    fn usernames_and_password_hashes_are_validated() {
        assert!(Username::parse("alice.smith@example.com").is_ok());
        assert!(Username::parse("a b").is_err());
        assert!(Username::parse("<script>").is_err());
        assert!(PasswordHash::parse("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA").is_ok());
        assert!(PasswordHash::parse("plaintext").is_err());
        let h = PasswordHash::parse("$argon2id$v=19$x").unwrap();
        assert!(!format!("{h:?}").contains("argon2id$v"));
    }
}
