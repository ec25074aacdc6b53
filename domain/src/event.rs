//! The event model: every event type of the log, and the envelope a recorded event carries.
//!
//! Type names are part of the audit contract (operators filter the trail by them), so a variant
//! is never renamed; a payload that changes gets a new schema version instead.

use crate::values::{
    AuthMethod, ClientId, GrantType, PasswordHash, PkceMethod, RedirectMatching, RedirectUri,
    Scope, SecretHash, SigningAlgorithm, TokenFormat, UserId, Username,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A client was registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRegistered {
    /// Its identifier.
    pub client_id: ClientId,
    /// A human-readable name.
    pub name: String,
    /// Public clients (RFC 6749 §2.1) have no secret.
    pub public: bool,
    /// Hash of the secret of a confidential client; never the secret itself.
    pub secret_hash: Option<SecretHash>,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<RedirectUri>,
    /// Grant types the client may use.
    pub grant_types: Vec<GrantType>,
    /// Scopes the client may obtain; also its default when a request names none.
    pub scopes: Vec<Scope>,
    /// Format of its access tokens.
    pub token_format: TokenFormat,
    /// Lifetime of its access tokens, in seconds.
    pub access_token_ttl_secs: u32,
    /// Whether it may introspect tokens of other clients.
    pub can_introspect: bool,
    /// How its redirect URIs are matched (absent in events before it existed: exact).
    #[serde(default)]
    pub redirect_uri_matching: RedirectMatching,
    /// Whether it may use the PKCE `plain` method (absent before it existed: no).
    #[serde(default)]
    pub allow_plain_pkce: bool,
    /// The algorithm its JWT access tokens are signed with; absent: the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_alg: Option<SigningAlgorithm>,
    /// How it authenticates; absent: `client_secret_basic` or `client_secret_post` for a
    /// confidential client, `none` for a public one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<AuthMethod>,
    /// Its public keys (a JWKS document), for `private_key_jwt` and JWT assertions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Issuers whose assertions it may present (RFC 7523 §3); empty: only its own id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_issuers: Vec<String>,
    /// Whether it was registered as an administrator, the only kind of client that may hold
    /// the `admin` scope. Absent in events before the flag existed: then the `admin` scope
    /// itself made an administrator, and such a registration keeps that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    /// What it registered for OpenID Connect (absent: the defaults).
    #[serde(default, skip_serializing_if = "OidcClientSettings::is_default")]
    pub oidc: OidcClientSettings,
    /// Settings of the OAuth extensions (resource indicators, PAR, DPoP, token exchange,
    /// SAML bearer), left out while they are the defaults.
    #[serde(default, skip_serializing_if = "ExtensionSettings::is_default")]
    pub extensions: ExtensionSettings,
    /// Present when the client registered itself (dynamic client registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicRegistration>,
    /// Present when `authledger import` brought the client from another server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<ImportOrigin>,
}

/// Where an imported client came from, and what of it did not come along.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOrigin {
    /// The server it was exported from: `hydra`, `keycloak` or `league`.
    pub source: String,
    /// Its id there.
    pub source_id: String,
    /// What became of its secret: `plaintext` (hashed on import), `bcrypt` (the source's
    /// hash, kept verifiable), `rotated` (none usable: a new one was issued), or `none` (a
    /// public client, or one that authenticates with its keys).
    pub secret: String,
    /// The source's settings that have no counterpart here, as `name: why`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmapped: Vec<String>,
}

/// What a client registered for OpenID Connect (Dynamic Client Registration 1.0 §2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcClientSettings {
    /// `id_token_signed_response_alg`; absent: RS256, the default of OpenID Connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_alg: Option<SigningAlgorithm>,
    /// Where a logout request may send the browser afterwards (RP-Initiated Logout 1.0 §3),
    /// matched exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    /// Where back-channel logout notices are POSTed (Back-Channel Logout 1.0 §2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<RedirectUri>,
    /// `public` (absent): every client sees the user's id as `sub`; `pairwise` (Core §8.1): a
    /// `sub` of its own per sector.
    #[serde(default, skip_serializing_if = "SubjectType::is_public")]
    pub subject_type: SubjectType,
    /// The sector of a pairwise client: a host name. Absent: the host of its redirect URIs,
    /// which must then all share one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sector_identifier: Option<String>,
}

/// How a client sees a user's `sub` (Core §8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectType {
    /// The same `sub` for every client: the user's id.
    #[default]
    Public,
    /// A `sub` per sector, which clients of different sectors cannot correlate.
    Pairwise,
}

impl SubjectType {
    /// Whether it is `public`.
    pub fn is_public(&self) -> bool {
        *self == SubjectType::Public
    }

    /// Parses `public` or `pairwise`.
    pub fn parse(s: &str) -> Result<Self, crate::values::InvalidValue> {
        match s {
            "public" => Ok(Self::Public),
            "pairwise" => Ok(Self::Pairwise),
            _ => Err(crate::values::InvalidValue(
                "subject_type must be public or pairwise".into(),
            )),
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Pairwise => "pairwise",
        }
    }
}

impl OidcClientSettings {
    /// Whether every setting is its default.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// What a client registered for the OAuth extensions beyond RFC 6749 and OpenID Connect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionSettings {
    /// RFC 8707: the resources (absolute URIs) it may ask tokens for; a token asked for one
    /// of them names it as `aud`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// RFC 9126 §6: its authorization requests must be pushed to `/par` first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_pushed_authorization_requests: bool,
    /// RFC 9449 §5.2: its access tokens must be bound to a DPoP key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
    /// RFC 8693: what it may exchange; absent: nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_exchange: Option<ExchangePolicy>,
    /// RFC 7522: the SAML identity provider whose assertions it may present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml_idp: Option<SamlIdp>,
}

impl ExtensionSettings {
    /// Whether every setting is its default.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Which tokens a client may exchange, and for what (RFC 8693 §2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangePolicy {
    /// The clients whose tokens it may present as `subject_token` (its own only when listed).
    pub subject_clients: Vec<ClientId>,
    /// The audiences (`audience` or `resource` values) it may ask for; at least one.
    pub audiences: Vec<String>,
    /// The most it may ask for; an exchanged token never holds more than its subject token.
    pub scopes: Vec<Scope>,
}

/// A SAML 2.0 identity provider a client trusts for the SAML bearer grant (RFC 7522 §3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamlIdp {
    /// The `<Issuer>` its assertions name.
    pub issuer: String,
    /// Its signing certificate, PEM.
    pub certificate_pem: String,
    /// The `<Audience>` its assertions must name (this server, as the IdP knows it).
    pub audience: String,
}

/// A client's extension settings were replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientExtensionSettingsChanged {
    /// The client.
    pub client_id: ClientId,
    /// Its settings from now on.
    pub extensions: ExtensionSettings,
}

/// What an access token is for and bound to beyond its scopes; left out while empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenTerms {
    /// `aud`: the resources (RFC 8707) or audiences (RFC 8693) it is for; empty: this server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    /// `cnf.jkt` (RFC 9449 §6): the SHA-256 thumbprint of the DPoP key it is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// `act` (RFC 8693 §4.1): who acts for the subject, nested for a chain of delegations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<serde_json::Value>,
}

impl TokenTerms {
    /// Whether it says nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A client's OpenID Connect settings were replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientOidcSettingsChanged {
    /// The client.
    pub client_id: ClientId,
    /// Its settings from now on.
    pub oidc: OidcClientSettings,
}

/// A redirect URI was added to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRedirectUriAdded {
    /// The client.
    pub client_id: ClientId,
    /// The URI added.
    pub redirect_uri: RedirectUri,
}

/// A redirect URI was removed from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRedirectUriRemoved {
    /// The client.
    pub client_id: ClientId,
    /// The URI removed.
    pub redirect_uri: RedirectUri,
}

/// A client's scopes were replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientScopesChanged {
    /// The client.
    pub client_id: ClientId,
    /// The new scopes.
    pub scopes: Vec<Scope>,
}

/// A client's grant types were replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientGrantTypesChanged {
    /// The client.
    pub client_id: ClientId,
    /// The new grant types.
    pub grant_types: Vec<GrantType>,
}

/// A client's token settings changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSettingsChanged {
    /// The client.
    pub client_id: ClientId,
    /// Format of its access tokens from now on.
    pub token_format: TokenFormat,
    /// Lifetime of its access tokens from now on, in seconds.
    pub access_token_ttl_secs: u32,
    /// Whether it may introspect tokens of other clients.
    pub can_introspect: bool,
    /// How its redirect URIs are matched from now on.
    #[serde(default)]
    pub redirect_uri_matching: RedirectMatching,
    /// Whether it may use the PKCE `plain` method from now on.
    #[serde(default)]
    pub allow_plain_pkce: bool,
    /// The algorithm of its JWT access tokens from now on; absent: the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_alg: Option<SigningAlgorithm>,
    /// How it authenticates from now on; absent: by its secret (or none when public).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<AuthMethod>,
}

/// A client's public keys or trusted assertion issuers were replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientKeysChanged {
    /// The client.
    pub client_id: ClientId,
    /// Its public keys from now on (a JWKS document), or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Issuers whose assertions it may present from now on; empty: only its own id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_issuers: Vec<String>,
}

/// A confidential client got a new secret; the old one stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSecretRotated {
    /// The client.
    pub client_id: ClientId,
    /// Hash of the new secret.
    pub secret_hash: SecretHash,
}

/// A client was deleted; its tokens stop being active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientDeleted {
    /// The client.
    pub client_id: ClientId,
}

/// An access token was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenIssued {
    /// The token's id (the JWT `jti`; also kept for opaque tokens).
    pub jti: Uuid,
    /// SHA-256 of an opaque token; absent for JWTs, which are found by `jti`.
    pub token_hash: Option<SecretHash>,
    /// The client it was issued to.
    pub client_id: ClientId,
    /// Whom it speaks for: the client itself for `client_credentials`.
    pub subject: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// The grant that produced it.
    pub grant_type: GrantType,
    /// Its wire format.
    pub format: TokenFormat,
    /// Issued at, seconds since the Unix epoch.
    pub issued_at: i64,
    /// Expires at, seconds since the Unix epoch.
    pub expires_at: i64,
    /// The grant (refresh family) it descends from, for tokens issued on a user's behalf by
    /// a code, password or refresh grant; revoking the family makes it inactive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<Uuid>,
    /// The signing key a JWT is signed with (absent for opaque tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Audience, key binding and actor.
    #[serde(default, skip_serializing_if = "TokenTerms::is_empty")]
    pub terms: TokenTerms,
}

/// What a JWT assertion was presented for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssertionUse {
    /// Client authentication, `private_key_jwt` (RFC 7523 §2.2).
    ClientAuthentication,
    /// An authorization grant, `jwt-bearer` (RFC 7523 §2.1).
    AuthorizationGrant,
}

/// A signed JWT assertion was accepted; its `jti` cannot be used again before it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtAssertionAccepted {
    /// The client that presented it.
    pub client_id: ClientId,
    /// Its issuer (`iss`).
    pub issuer: String,
    /// Its subject (`sub`).
    pub subject: String,
    /// Its id (`jti`).
    pub jti: String,
    /// What it was presented for.
    pub used_for: AssertionUse,
    /// Its expiry (Unix seconds): the `jti` is remembered until then.
    pub expires_at: i64,
}

/// A DPoP proof was accepted (RFC 9449 §11.1): its `jti` cannot be used again with the same
/// key before it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpopProofAccepted {
    /// The client whose token request or token it came with.
    pub client_id: ClientId,
    /// The thumbprint of the proof's key.
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// Remembered until then (Unix seconds).
    pub expires_at: i64,
}

/// An authorization request was pushed (RFC 9126 §2): what it asks, kept until its
/// `request_uri` is used or expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequestPushed {
    /// The client that pushed it.
    pub client_id: ClientId,
    /// Keyed hash of its `request_uri`.
    pub request_uri_hash: SecretHash,
    /// Its parameters, in order (client credentials left out).
    pub parameters: Vec<(String, String)>,
    /// When (Unix seconds).
    pub pushed_at: i64,
    /// Until when its `request_uri` may be used (Unix seconds).
    pub expires_at: i64,
}

/// A pushed request led to a code or token; its `request_uri` is spent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedAuthorizationRequestUsed {
    /// The client.
    pub client_id: ClientId,
    /// Keyed hash of the `request_uri`.
    pub request_uri_hash: SecretHash,
}

/// A device asked for authorization (RFC 8628 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAuthorizationStarted {
    /// The client (the device's).
    pub client_id: ClientId,
    /// Keyed hash of the device code.
    pub device_code_hash: SecretHash,
    /// Keyed hash of the user code (canonical form).
    pub user_code_hash: SecretHash,
    /// Scopes asked for.
    pub scopes: Vec<Scope>,
    /// Resources asked for.
    #[serde(default, skip_serializing_if = "TokenTerms::is_empty")]
    pub terms: TokenTerms,
    /// When (Unix seconds).
    pub issued_at: i64,
    /// When both codes expire (Unix seconds).
    pub expires_at: i64,
    /// The polling interval given to the device, in seconds.
    pub interval_secs: u32,
}

/// The user approved a device's request at the verification page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAuthorizationApproved {
    /// The client.
    pub client_id: ClientId,
    /// Keyed hash of the device code.
    pub device_code_hash: SecretHash,
    /// The user who approved.
    pub user_id: UserId,
    /// The scopes approved.
    pub scopes: Vec<Scope>,
    /// The sign-in, when `openid` was approved: what the id_token says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcContext>,
}

/// The user denied a device's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAuthorizationDenied {
    /// The client.
    pub client_id: ClientId,
    /// Keyed hash of the device code.
    pub device_code_hash: SecretHash,
    /// The user who denied.
    pub user_id: UserId,
}

/// An approved device code was exchanged for tokens, which start a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCodeRedeemed {
    /// The client.
    pub client_id: ClientId,
    /// Keyed hash of the device code.
    pub device_code_hash: SecretHash,
    /// The user.
    pub user_id: UserId,
    /// The family of the tokens issued.
    pub family_id: Uuid,
}

/// A token presented for exchange, as the record names it: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangedToken {
    /// `access_token`, `refresh_token`, `id_token` or `jwt` (the RFC 8693 §3 type's last
    /// part).
    pub token_type: String,
    /// Its id: the `jti` of an access token or id_token, the id of a refresh token.
    pub id: String,
    /// The client it was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
    /// Whom it speaks for.
    pub subject: String,
}

/// A client exchanged a token for a new access token (RFC 8693).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenExchanged {
    /// The client that asked.
    pub client_id: ClientId,
    /// The new access token's id.
    pub jti: Uuid,
    /// The subject token.
    pub subject_token: ExchangedToken,
    /// The actor token, for a delegation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_token: Option<ExchangedToken>,
    /// The audiences asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    /// The scopes granted.
    pub scopes: Vec<Scope>,
}

/// A SAML 2.0 bearer assertion was accepted (RFC 7522): its `ID` cannot be used again before
/// it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamlAssertionAccepted {
    /// The client that presented it.
    pub client_id: ClientId,
    /// Its `Issuer`.
    pub issuer: String,
    /// Its `ID`.
    pub assertion_id: String,
    /// Its `Subject/NameID`.
    pub subject: String,
    /// Remembered until then (Unix seconds).
    pub expires_at: i64,
}

/// A run of consecutive log positions removed by compaction, as the hash chain needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactedRange {
    /// First removed position.
    pub first: u64,
    /// Last removed position.
    pub last: u64,
    /// The `prev_hash` the first removed event recorded.
    pub prev_hash: String,
    /// The hash of the last removed event's stored bytes.
    pub last_hash: String,
}

/// Events of a retention class older than a cutoff were removed from the log. The event is
/// itself in the chain, so the runs it lists cannot be forged after the fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryCompacted {
    /// The retention class, e.g. `access-tokens`.
    pub class: String,
    /// Events of the class that stopped mattering before this time (Unix seconds) went.
    pub cutoff: i64,
    /// How many events were removed.
    pub removed: u64,
    /// The runs of positions removed.
    pub runs: Vec<CompactedRange>,
}

/// A walk of the whole hash chain found every link intact (the server walks it in the
/// background after each start). Recorded so that the trail shows when the log was last
/// proven whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainVerified {
    /// Events read (compacted ones not counted).
    pub events: u64,
    /// The last position walked.
    pub head_position: u64,
    /// The hash of its stored bytes.
    pub head_hash: String,
    /// How long the walk took (ms).
    pub millis: u64,
}

/// A walk of the whole hash chain found a broken link: an event changed, removed or moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainBroken {
    /// Where the chain breaks.
    pub position: u64,
    /// Why, in words.
    pub reason: String,
    /// Events verified before the break.
    pub verified: u64,
}

/// Where a signing key's private half is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOrigin {
    /// Generated by authledger; encrypted in the event.
    Generated,
    /// Read from a PEM file named by `--private-key-path`; only its public half is recorded.
    PemFile,
    /// Imported from the data directory's `signing-key.pem` of an earlier version; encrypted
    /// in the event.
    Imported,
}

impl KeyOrigin {
    /// The name events and the CLI use.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOrigin::Generated => "generated",
            KeyOrigin::PemFile => "pem_file",
            KeyOrigin::Imported => "imported",
        }
    }
}

/// A private key sealed with AES-256-GCM under the key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedPrivateKey {
    /// Identifies the key-encryption key (the first 16 hex digits of its SHA-256), so that
    /// a wrong one is named as such rather than failing as a corrupt ciphertext.
    pub kek_id: String,
    /// The 96-bit nonce, base64url.
    pub nonce: String,
    /// The PKCS#8 DER key followed by the GCM tag, base64url; the kid is the associated data.
    pub ciphertext: String,
}

/// A signing key was created and is published in the JWKS from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyGenerated {
    /// Its key id (the RFC 7638 thumbprint of its public key).
    pub kid: String,
    /// The algorithm it signs with.
    pub algorithm: SigningAlgorithm,
    /// Its public key as a JWK.
    pub public_jwk: serde_json::Value,
    /// The private key, encrypted; absent when it lives in a PEM file outside the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<EncryptedPrivateKey>,
    /// Where it came from.
    pub origin: KeyOrigin,
    /// When (Unix seconds).
    pub created_at: i64,
}

/// A signing key signs every token of its algorithm issued from `active_from` on (until a
/// later key of the same algorithm becomes active).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyActivated {
    /// The key.
    pub kid: String,
    /// Its algorithm.
    pub algorithm: SigningAlgorithm,
    /// From when (Unix seconds); later than the generation by the publication lead time.
    pub active_from: i64,
}

/// A superseded signing key left the JWKS: every token it signed has expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRetired {
    /// The key.
    pub kid: String,
    /// Its algorithm.
    pub algorithm: SigningAlgorithm,
    /// When (Unix seconds).
    pub retired_at: i64,
}

/// Why a token was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// The client asked for it (RFC 7009).
    RevokedByClient,
    /// An administrator asked for it.
    RevokedByAdmin,
}

/// A token was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    /// The token's id.
    pub jti: Uuid,
    /// The client it belongs to.
    pub client_id: ClientId,
    /// Why.
    pub reason: RevocationReason,
    /// Set when a refresh token was revoked: its whole family (every access and refresh token
    /// of the same grant) is revoked with it (RFC 7009 §2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<Uuid>,
}

/// A user approved a client's access to scopes; remembered so that a confidential client's
/// next request for the same scopes needs no consent page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationGranted {
    /// The client.
    pub client_id: ClientId,
    /// The user.
    pub user_id: UserId,
    /// Every scope the user has now granted this client (earlier grants included).
    pub scopes: Vec<Scope>,
}

/// A user withdrew a client's authorization: the remembered consent is gone and every token
/// of that user for that client issued before this event is inactive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRevoked {
    /// The client.
    pub client_id: ClientId,
    /// The user.
    pub user_id: UserId,
}

/// An authorization code was issued (RFC 6749 §4.1.2); only its hash is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationCodeIssued {
    /// SHA-256 of the code.
    pub code_hash: SecretHash,
    /// The client it was issued to.
    pub client_id: ClientId,
    /// The user who authorized it.
    pub user_id: UserId,
    /// The redirect URI the response went to.
    pub redirect_uri: String,
    /// Whether the request named `redirect_uri` (then /token must repeat it, §4.1.3).
    pub redirect_uri_sent: bool,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// PKCE challenge (RFC 7636), if one was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    /// Its method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_method: Option<PkceMethod>,
    /// Issued at (Unix seconds).
    pub issued_at: i64,
    /// Expires at (Unix seconds).
    pub expires_at: i64,
    /// The sign-in behind an OpenID Connect request (scope `openid`): what its id_token says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcContext>,
    /// The resources asked for (RFC 8707) and the DPoP key the code is bound to (RFC 9449
    /// §10, `dpop_jkt`).
    #[serde(default, skip_serializing_if = "TokenTerms::is_empty")]
    pub terms: TokenTerms,
}

/// A code was exchanged for tokens, which start a new grant (refresh family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationCodeRedeemed {
    /// SHA-256 of the code.
    pub code_hash: SecretHash,
    /// The client.
    pub client_id: ClientId,
    /// The user.
    pub user_id: UserId,
    /// The family of the tokens issued for it.
    pub family_id: Uuid,
}

/// A code was presented again after its redemption: the grant it started is revoked
/// (RFC 6749 §4.1.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationCodeReplayed {
    /// SHA-256 of the code.
    pub code_hash: SecretHash,
    /// The client.
    pub client_id: ClientId,
    /// The user.
    pub user_id: UserId,
    /// The family revoked because of it.
    pub family_id: Uuid,
}

/// A refresh token was issued; only its hash is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenIssued {
    /// Its id (what revocation and rotation name).
    pub id: Uuid,
    /// SHA-256 of the token.
    pub token_hash: SecretHash,
    /// The client.
    pub client_id: ClientId,
    /// The user it speaks for.
    pub user_id: UserId,
    /// Scopes of the grant.
    pub scopes: Vec<Scope>,
    /// The grant it belongs to.
    pub family_id: Uuid,
    /// 1 for the grant's first refresh token, one more for each rotation.
    pub generation: u32,
    /// Issued at (Unix seconds).
    pub issued_at: i64,
    /// Expires at (Unix seconds).
    pub expires_at: i64,
    /// The whole family expires then, however often it rotates.
    pub family_expires_at: i64,
    /// The sign-in the grant began with, when it is an OpenID Connect grant: a refreshed
    /// id_token keeps its auth_time and sid (never the nonce, which belonged to one request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcContext>,
    /// The resources of the grant (RFC 8707 §2.2), and the DPoP key a public client's
    /// refresh tokens are bound to (RFC 9449 §5).
    #[serde(default, skip_serializing_if = "TokenTerms::is_empty")]
    pub terms: TokenTerms,
}

/// A refresh token was used and retired (rotation); with `superseded`, a retry within the grace
/// window also retired the never-used successor of an earlier rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenRotated {
    /// The refresh token used.
    pub id: Uuid,
    /// The client.
    pub client_id: ClientId,
    /// Its family.
    pub family_id: Uuid,
    /// The unused successor retired by a grace-window retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded: Option<Uuid>,
    /// When (Unix seconds).
    pub rotated_at: i64,
}

/// A retired refresh token was presented: its whole family is revoked (RFC 9700 §4.14.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenReuseDetected {
    /// The refresh token presented.
    pub id: Uuid,
    /// The client.
    pub client_id: ClientId,
    /// The user.
    pub user_id: UserId,
    /// The family revoked.
    pub family_id: Uuid,
}

/// A resource owner was registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    /// Its id.
    pub user_id: UserId,
    /// Its unique username.
    pub username: Username,
    /// argon2id hash of the password (never the password).
    pub password_hash: PasswordHash,
}

/// A user's password changed; sessions started before it end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPasswordChanged {
    /// The user.
    pub user_id: UserId,
    /// argon2id hash of the new password.
    pub password_hash: PasswordHash,
}

/// An administrator locked a user's account: no sign-in, password grant or session until it
/// is unlocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDisabled {
    /// The user.
    pub user_id: UserId,
}

/// An administrator unlocked a user's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEnabled {
    /// The user.
    pub user_id: UserId,
}

/// An administrator ended every session the user had: each browser signs in again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSessionsEnded {
    /// The user.
    pub user_id: UserId,
}

/// Why a sign-in failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailure {
    /// No user has that name.
    UnknownUser,
    /// The password did not verify.
    WrongPassword,
    /// Refused unchecked: too many recent failures.
    Throttled,
    /// The right password to an account an administrator locked (answered as a wrong one).
    AccountLocked,
}

/// A sign-in (login page or password grant) failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLoginFailed {
    /// The user, when the name is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The name as typed (at most 64 characters kept).
    pub username: String,
    /// Why.
    pub reason: LoginFailure,
    /// Where: the login page, or a client's password grant.
    pub via: SignInVia,
}

/// Where a sign-in was attempted.
///
/// Schema version 1 of `UserLoginFailed` held a bare string here, `login` for the page or the
/// client id of a password grant, so a client registered as `login` could not be told from
/// the page; version 2 says which. See [`Event::decode`] for the upcaster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignInVia {
    /// The login page.
    LoginPage,
    /// A password grant (RFC 6749 §4.3) at `/token`.
    PasswordGrant {
        /// The client that sent it.
        client_id: ClientId,
    },
}

/// Sign-ins for a user are throttled after repeated failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLocked {
    /// The user.
    pub user_id: UserId,
    /// Failures counted in the window.
    pub failures: u32,
    /// No attempt is checked before this time (Unix seconds).
    pub until: i64,
}

/// The sign-in behind an OpenID Connect authentication request (Core 1.0 §2, §3.1.2.1):
/// what the id_tokens of its grant say about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcContext {
    /// When the user signed in (Unix seconds): the id_token's `auth_time`.
    pub auth_time: i64,
    /// The `sub` the client sees when it is not the user's id: a pairwise identifier (Core
    /// §8.1), computed by the server under its hash key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The browser session's id: the id_token's `sid` (front- and back-channel logout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The request's `nonce`, echoed in the first id_token only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Authentication methods (RFC 8176): `pwd` for a password.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The authentication context class reached, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Claims asked for one by one with the `claims` parameter (Core §5.5).
    #[serde(default, skip_serializing_if = "ClaimsRequest::is_empty")]
    pub claims: ClaimsRequest,
}

/// The names of the claims a `claims` request parameter asked for, per place (Core §5.5).
/// Values and `essential` are not kept: this server returns every claim it has that was asked
/// for, and a claim it lacks is left out, which §5.5.1 allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsRequest {
    /// Claims for the id_token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token: Vec<String>,
    /// Claims for `/userinfo`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub userinfo: Vec<String>,
}

impl ClaimsRequest {
    /// Whether it asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.id_token.is_empty() && self.userinfo.is_empty()
    }
}

/// An OpenID Connect id_token was issued (Core §2). The token itself is signed after this
/// event is durable and never stored; this records who it names, for whom and under which key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenIssued {
    /// Its `jti`.
    pub jti: Uuid,
    /// The audience (`aud`, `azp`).
    pub client_id: ClientId,
    /// The user it names.
    pub user_id: UserId,
    /// The `sub` it carries (the user id, or a pairwise identifier for the client).
    pub subject: String,
    /// When the user signed in (`auth_time`).
    pub auth_time: i64,
    /// The session (`sid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The request's `nonce` (the first id_token of a grant only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Authentication methods (`amr`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// Authentication context class (`acr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Claims the request asked for one by one: those for the id_token go in it, those for
    /// `/userinfo` are answered there for the grant's tokens.
    #[serde(default, skip_serializing_if = "ClaimsRequest::is_empty")]
    pub claims: ClaimsRequest,
    /// The grant that produced it.
    pub grant_type: GrantType,
    /// The grant (refresh family) it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<Uuid>,
    /// The key that signs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Issued at (`iat`, Unix seconds).
    pub issued_at: i64,
    /// Expires at (`exp`, Unix seconds).
    pub expires_at: i64,
}

/// A user's profile claims (OpenID Connect Core §5.1) were set. Each field is the value from
/// now on; absent means none. Never a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfileChanged {
    /// The user.
    pub user_id: UserId,
    /// The profile from now on.
    pub profile: UserProfile,
    /// When (`updated_at`, Unix seconds).
    pub updated_at: i64,
}

/// The standard claims a user has besides `sub` (Core §5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    /// Full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// The name the user prefers (the username when none is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the operator checked that the address is the user's.
    #[serde(default)]
    pub email_verified: bool,
    /// BCP 47 language tag, such as `en-GB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

/// A user signed in on the login page: a browser session began (its id is the id_tokens'
/// `sid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStarted {
    /// The session's id.
    pub sid: String,
    /// The user.
    pub user_id: UserId,
    /// When (Unix seconds): the `auth_time` of the id_tokens issued in it.
    pub auth_time: i64,
    /// When its cookie expires (Unix seconds).
    pub expires_at: i64,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    /// The user signed out: the account page, or a relying party's logout request (OpenID
    /// Connect RP-Initiated Logout 1.0).
    Logout,
}

/// A relying party owed a back-channel logout notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutNotice {
    /// The client.
    pub client_id: ClientId,
    /// Its `backchannel_logout_uri` when the session ended.
    pub uri: String,
}

/// A browser session ended: its cookie is refused from now on, and each client given gets a
/// back-channel logout notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnded {
    /// The session's id.
    pub sid: String,
    /// The user.
    pub user_id: UserId,
    /// Why.
    pub reason: SessionEndReason,
    /// The clients that got id_tokens in the session and registered a back-channel logout URI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<LogoutNotice>,
    /// When (Unix seconds).
    pub ended_at: i64,
}

/// An attempt at delivering a back-channel logout notice (Back-Channel Logout 1.0 §2.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackchannelLogoutAttempted {
    /// The session that ended.
    pub sid: String,
    /// Its user.
    pub user_id: UserId,
    /// The client notified.
    pub client_id: ClientId,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The HTTP status the client answered; absent when it could not be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Whether the client took it (200 or 204).
    pub delivered: bool,
    /// When the next attempt is due (Unix seconds); absent once delivered or given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<i64>,
    /// When this attempt was made (Unix seconds).
    pub at: i64,
}

/// An admin issued an initial access token for dynamic client registration (RFC 7591 §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialAccessTokenIssued {
    /// Its id.
    pub id: Uuid,
    /// Keyed hash of its value; never the value.
    pub token_hash: SecretHash,
    /// Registrations it may make.
    pub max_uses: u32,
    /// Issued at (Unix seconds).
    pub issued_at: i64,
    /// Expires at (Unix seconds).
    pub expires_at: i64,
}

/// An initial access token was used for a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialAccessTokenUsed {
    /// The token.
    pub id: Uuid,
    /// The client it registers.
    pub client_id: ClientId,
    /// 1 for its first use.
    pub use_number: u32,
}

/// How a client registered itself through dynamic client registration (RFC 7591, 7592).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicRegistration {
    /// Keyed hash of its registration access token (RFC 7592 §1); never the token.
    pub registration_token_hash: SecretHash,
    /// The initial access token it presented; absent under open registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_access_token: Option<Uuid>,
}

/// A self-registered client got a new registration access token (RFC 7592 §3: each read or
/// update of its registration answers with one); the one before stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRegistrationTokenRotated {
    /// The client.
    pub client_id: ClientId,
    /// Keyed hash of the new token; never the token.
    pub registration_token_hash: SecretHash,
}

/// Every event type of the log, tagged by its stable type name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
#[allow(
    clippy::large_enum_variant,
    reason = "events are built once and moved, never copied in bulk"
)]
pub enum Event {
    /// See [`ClientRegistered`].
    ClientRegistered(ClientRegistered),
    /// See [`ClientRedirectUriAdded`].
    ClientRedirectUriAdded(ClientRedirectUriAdded),
    /// See [`ClientRedirectUriRemoved`].
    ClientRedirectUriRemoved(ClientRedirectUriRemoved),
    /// See [`ClientScopesChanged`].
    ClientScopesChanged(ClientScopesChanged),
    /// See [`ClientGrantTypesChanged`].
    ClientGrantTypesChanged(ClientGrantTypesChanged),
    /// See [`ClientSettingsChanged`].
    ClientSettingsChanged(ClientSettingsChanged),
    /// See [`ClientSecretRotated`].
    ClientSecretRotated(ClientSecretRotated),
    /// See [`ClientDeleted`].
    ClientDeleted(ClientDeleted),
    /// See [`AccessTokenIssued`].
    AccessTokenIssued(AccessTokenIssued),
    /// See [`TokenRevoked`].
    TokenRevoked(TokenRevoked),
    /// See [`AuthorizationGranted`].
    AuthorizationGranted(AuthorizationGranted),
    /// See [`AuthorizationRevoked`].
    AuthorizationRevoked(AuthorizationRevoked),
    /// See [`AuthorizationCodeIssued`].
    AuthorizationCodeIssued(AuthorizationCodeIssued),
    /// See [`AuthorizationCodeRedeemed`].
    AuthorizationCodeRedeemed(AuthorizationCodeRedeemed),
    /// See [`AuthorizationCodeReplayed`].
    AuthorizationCodeReplayed(AuthorizationCodeReplayed),
    /// See [`RefreshTokenIssued`].
    RefreshTokenIssued(RefreshTokenIssued),
    /// See [`RefreshTokenRotated`].
    RefreshTokenRotated(RefreshTokenRotated),
    /// See [`RefreshTokenReuseDetected`].
    RefreshTokenReuseDetected(RefreshTokenReuseDetected),
    /// See [`UserRegistered`].
    UserRegistered(UserRegistered),
    /// See [`UserPasswordChanged`].
    UserPasswordChanged(UserPasswordChanged),
    /// See [`UserLoginFailed`].
    UserLoginFailed(UserLoginFailed),
    /// See [`UserLocked`].
    UserLocked(UserLocked),
    /// See [`ClientKeysChanged`].
    ClientKeysChanged(ClientKeysChanged),
    /// See [`JwtAssertionAccepted`].
    JwtAssertionAccepted(JwtAssertionAccepted),
    /// See [`SigningKeyGenerated`].
    SigningKeyGenerated(SigningKeyGenerated),
    /// See [`SigningKeyActivated`].
    SigningKeyActivated(SigningKeyActivated),
    /// See [`SigningKeyRetired`].
    SigningKeyRetired(SigningKeyRetired),
    /// See [`HistoryCompacted`].
    HistoryCompacted(HistoryCompacted),
    /// See [`ChainVerified`].
    ChainVerified(ChainVerified),
    /// See [`ChainBroken`].
    ChainBroken(ChainBroken),
    /// See [`IdTokenIssued`].
    IdTokenIssued(IdTokenIssued),
    /// See [`UserProfileChanged`].
    UserProfileChanged(UserProfileChanged),
    /// See [`ClientOidcSettingsChanged`].
    ClientOidcSettingsChanged(ClientOidcSettingsChanged),
    /// See [`ClientExtensionSettingsChanged`].
    ClientExtensionSettingsChanged(ClientExtensionSettingsChanged),
    /// See [`DpopProofAccepted`].
    DpopProofAccepted(DpopProofAccepted),
    /// See [`AuthorizationRequestPushed`].
    AuthorizationRequestPushed(AuthorizationRequestPushed),
    /// See [`PushedAuthorizationRequestUsed`].
    PushedAuthorizationRequestUsed(PushedAuthorizationRequestUsed),
    /// See [`DeviceAuthorizationStarted`].
    DeviceAuthorizationStarted(DeviceAuthorizationStarted),
    /// See [`DeviceAuthorizationApproved`].
    DeviceAuthorizationApproved(DeviceAuthorizationApproved),
    /// See [`DeviceAuthorizationDenied`].
    DeviceAuthorizationDenied(DeviceAuthorizationDenied),
    /// See [`DeviceCodeRedeemed`].
    DeviceCodeRedeemed(DeviceCodeRedeemed),
    /// See [`TokenExchanged`].
    TokenExchanged(TokenExchanged),
    /// See [`SamlAssertionAccepted`].
    SamlAssertionAccepted(SamlAssertionAccepted),
    /// See [`SessionStarted`].
    SessionStarted(SessionStarted),
    /// See [`SessionEnded`].
    SessionEnded(SessionEnded),
    /// See [`BackchannelLogoutAttempted`].
    BackchannelLogoutAttempted(BackchannelLogoutAttempted),
    /// See [`InitialAccessTokenIssued`].
    InitialAccessTokenIssued(InitialAccessTokenIssued),
    /// See [`InitialAccessTokenUsed`].
    InitialAccessTokenUsed(InitialAccessTokenUsed),
    /// See [`ClientRegistrationTokenRotated`].
    ClientRegistrationTokenRotated(ClientRegistrationTokenRotated),
    /// See [`UserDisabled`].
    UserDisabled(UserDisabled),
    /// See [`UserEnabled`].
    UserEnabled(UserEnabled),
    /// See [`UserSessionsEnded`].
    UserSessionsEnded(UserSessionsEnded),
}

/// Expands `$m!(Variant, ...)` over every event type: one list for the type names, the
/// dispatch of [`Event::decode`] and [`Event::type_name`].
macro_rules! for_each_event {
    ($m:ident) => {
        $m!(
            ClientRegistered,
            ClientRedirectUriAdded,
            ClientRedirectUriRemoved,
            ClientScopesChanged,
            ClientGrantTypesChanged,
            ClientSettingsChanged,
            ClientSecretRotated,
            ClientDeleted,
            AccessTokenIssued,
            TokenRevoked,
            AuthorizationGranted,
            AuthorizationRevoked,
            AuthorizationCodeIssued,
            AuthorizationCodeRedeemed,
            AuthorizationCodeReplayed,
            RefreshTokenIssued,
            RefreshTokenRotated,
            RefreshTokenReuseDetected,
            UserRegistered,
            UserPasswordChanged,
            UserLoginFailed,
            UserLocked,
            ClientKeysChanged,
            JwtAssertionAccepted,
            SigningKeyGenerated,
            SigningKeyActivated,
            SigningKeyRetired,
            HistoryCompacted,
            ChainVerified,
            ChainBroken,
            IdTokenIssued,
            UserProfileChanged,
            ClientOidcSettingsChanged,
            SessionStarted,
            SessionEnded,
            BackchannelLogoutAttempted,
            InitialAccessTokenIssued,
            InitialAccessTokenUsed,
            ClientRegistrationTokenRotated,
            ClientExtensionSettingsChanged,
            DpopProofAccepted,
            AuthorizationRequestPushed,
            PushedAuthorizationRequestUsed,
            DeviceAuthorizationStarted,
            DeviceAuthorizationApproved,
            DeviceAuthorizationDenied,
            DeviceCodeRedeemed,
            TokenExchanged,
            SamlAssertionAccepted,
            UserDisabled,
            UserEnabled,
            UserSessionsEnded
        );
    };
}

macro_rules! type_names {
    ($($v:ident),*) => {
        /// Every type name, as stored and as `audit query --type` takes it.
        pub const TYPE_NAMES: &'static [&'static str] = &[$(stringify!($v)),*];

        /// The stable type name.
        pub fn type_name(&self) -> &'static str {
            match self {
                $(Event::$v(_) => stringify!($v),)*
            }
        }

        /// Writes the payload alone (the `data` of the JSON envelope), as JSON.
        pub fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
            match self {
                $(Event::$v(p) => serde_json::to_writer(out, p),)*
            }
        }

        fn decode_payload(type_name: &str, data: &str) -> Result<Self, DecodeError> {
            fn payload<T: serde::de::DeserializeOwned>(data: &str) -> Result<T, DecodeError> {
                serde_json::from_str(data).map_err(|e| DecodeError(e.to_string()))
            }
            Ok(match type_name {
                $(stringify!($v) => Event::$v(payload(data)?),)*
                other => {
                    return Err(DecodeError(format!(
                        "unknown event type {other} (written by a newer authledger?)"
                    )))
                }
            })
        }
    };
}

impl Event {
    for_each_event!(type_names);
}

impl Event {
    /// The schema version of this type's payload as written today.
    pub fn schema_version(&self) -> u16 {
        Self::current_version(self.type_name())
    }

    /// The schema version a type is written at today; a type starts at 1 and gains a version
    /// (and an upcaster in [`Event::decode`]) each time its payload changes.
    pub fn current_version(type_name: &str) -> u16 {
        match type_name {
            "UserLoginFailed" => 2,
            _ => 1,
        }
    }

    /// The client the event concerns, if any (user events concern none).
    pub fn client_id(&self) -> Option<&ClientId> {
        Some(match self {
            Event::ClientRegistered(e) => &e.client_id,
            Event::ClientRedirectUriAdded(e) => &e.client_id,
            Event::ClientRedirectUriRemoved(e) => &e.client_id,
            Event::ClientScopesChanged(e) => &e.client_id,
            Event::ClientGrantTypesChanged(e) => &e.client_id,
            Event::ClientSettingsChanged(e) => &e.client_id,
            Event::ClientSecretRotated(e) => &e.client_id,
            Event::ClientDeleted(e) => &e.client_id,
            Event::AccessTokenIssued(e) => &e.client_id,
            Event::TokenRevoked(e) => &e.client_id,
            Event::AuthorizationGranted(e) => &e.client_id,
            Event::AuthorizationRevoked(e) => &e.client_id,
            Event::AuthorizationCodeIssued(e) => &e.client_id,
            Event::AuthorizationCodeRedeemed(e) => &e.client_id,
            Event::AuthorizationCodeReplayed(e) => &e.client_id,
            Event::RefreshTokenIssued(e) => &e.client_id,
            Event::RefreshTokenRotated(e) => &e.client_id,
            Event::RefreshTokenReuseDetected(e) => &e.client_id,
            Event::ClientKeysChanged(e) => &e.client_id,
            Event::JwtAssertionAccepted(e) => &e.client_id,
            Event::IdTokenIssued(e) => &e.client_id,
            Event::ClientOidcSettingsChanged(e) => &e.client_id,
            Event::ClientExtensionSettingsChanged(e) => &e.client_id,
            Event::DpopProofAccepted(e) => &e.client_id,
            Event::AuthorizationRequestPushed(e) => &e.client_id,
            Event::PushedAuthorizationRequestUsed(e) => &e.client_id,
            Event::DeviceAuthorizationStarted(e) => &e.client_id,
            Event::DeviceAuthorizationApproved(e) => &e.client_id,
            Event::DeviceAuthorizationDenied(e) => &e.client_id,
            Event::DeviceCodeRedeemed(e) => &e.client_id,
            Event::TokenExchanged(e) => &e.client_id,
            Event::SamlAssertionAccepted(e) => &e.client_id,
            Event::BackchannelLogoutAttempted(e) => &e.client_id,
            Event::InitialAccessTokenUsed(e) => &e.client_id,
            Event::ClientRegistrationTokenRotated(e) => &e.client_id,
            Event::UserRegistered(_)
            | Event::InitialAccessTokenIssued(_)
            | Event::SessionStarted(_)
            | Event::SessionEnded(_)
            | Event::UserProfileChanged(_)
            | Event::UserPasswordChanged(_)
            | Event::UserLoginFailed(_)
            | Event::UserLocked(_)
            | Event::UserDisabled(_)
            | Event::UserEnabled(_)
            | Event::UserSessionsEnded(_)
            | Event::SigningKeyGenerated(_)
            | Event::SigningKeyActivated(_)
            | Event::SigningKeyRetired(_)
            | Event::HistoryCompacted(_)
            | Event::ChainVerified(_)
            | Event::ChainBroken(_) => return None,
        })
    }

    /// The resource owner or subject the event concerns, where there is one: a user id, or
    /// the client id of a `client_credentials` token.
    /// Borrowed where the event holds it as text (every token event, the bulk of a replay).
    pub fn subject(&self) -> Option<std::borrow::Cow<'_, str>> {
        let user = match self {
            Event::AccessTokenIssued(e) => return Some(e.subject.as_str().into()),
            Event::JwtAssertionAccepted(e) => return Some(e.subject.as_str().into()),
            Event::AuthorizationGranted(e) => e.user_id,
            Event::AuthorizationRevoked(e) => e.user_id,
            Event::AuthorizationCodeIssued(e) => e.user_id,
            Event::AuthorizationCodeRedeemed(e) => e.user_id,
            Event::AuthorizationCodeReplayed(e) => e.user_id,
            Event::RefreshTokenIssued(e) => e.user_id,
            Event::RefreshTokenReuseDetected(e) => e.user_id,
            Event::UserRegistered(e) => e.user_id,
            Event::UserPasswordChanged(e) => e.user_id,
            Event::UserLoginFailed(e) => e.user_id?,
            Event::UserLocked(e) => e.user_id,
            Event::UserDisabled(e) => e.user_id,
            Event::UserEnabled(e) => e.user_id,
            Event::UserSessionsEnded(e) => e.user_id,
            Event::UserProfileChanged(e) => e.user_id,
            Event::IdTokenIssued(e) => e.user_id,
            Event::SessionStarted(e) => e.user_id,
            Event::SessionEnded(e) => e.user_id,
            Event::BackchannelLogoutAttempted(e) => e.user_id,
            Event::DeviceAuthorizationApproved(e) => e.user_id,
            Event::DeviceAuthorizationDenied(e) => e.user_id,
            Event::DeviceCodeRedeemed(e) => e.user_id,
            Event::SamlAssertionAccepted(e) => return Some(e.subject.as_str().into()),
            _ => return None,
        };
        Some(user.to_string().into())
    }

    /// Whether the event belongs to a client's configuration stream (what the client
    /// aggregate and the client directory fold).
    pub fn is_client_config(&self) -> bool {
        matches!(
            self,
            Event::ClientRegistered(_)
                | Event::ClientRedirectUriAdded(_)
                | Event::ClientRedirectUriRemoved(_)
                | Event::ClientScopesChanged(_)
                | Event::ClientGrantTypesChanged(_)
                | Event::ClientSettingsChanged(_)
                | Event::ClientSecretRotated(_)
                | Event::ClientDeleted(_)
                | Event::ClientKeysChanged(_)
                | Event::ClientOidcSettingsChanged(_)
                | Event::ClientExtensionSettingsChanged(_)
                | Event::ClientRegistrationTokenRotated(_)
        )
    }

    /// The refresh family this event revokes, if it revokes one.
    pub fn revoked_family(&self) -> Option<Uuid> {
        match self {
            Event::AuthorizationCodeReplayed(e) => Some(e.family_id),
            Event::RefreshTokenReuseDetected(e) => Some(e.family_id),
            Event::TokenRevoked(e) => e.family_id,
            _ => None,
        }
    }
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Cause {
    /// An OAuth client, by its id.
    Client(String),
    /// A resource owner, by user id.
    User(String),
    /// An administrator, by the admin client or operator name.
    Admin(String),
    /// The server itself (initialisation, maintenance).
    System,
}

/// Request context recorded with every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Who caused it.
    pub caused_by: Cause,
    /// The id of the request that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Ties events of one larger operation together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Source address of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// User agent of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl Metadata {
    /// Metadata for an event the server causes on its own.
    pub fn system() -> Self {
        Self {
            caused_by: Cause::System,
            request_id: None,
            correlation_id: None,
            source_ip: None,
            user_agent: None,
        }
    }
}

/// Hash that precedes the first event of the log.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl Event {
    /// Decodes a payload stored under `type_name` at `schema_version` into today's type. A
    /// payload of an older version goes through the upcasters, one version at a time, as
    /// JSON; the stored bytes are never rewritten (the hash chain covers them).
    pub fn decode(type_name: &str, schema_version: u16, data: &str) -> Result<Self, DecodeError> {
        let current = Self::current_version(type_name);
        if schema_version == current {
            return Self::decode_payload(type_name, data);
        }
        if schema_version == 0 || schema_version > current {
            return Err(DecodeError(format!(
                "{type_name} has no schema version {schema_version} (written by a newer authledger?)"
            )));
        }
        let mut value: serde_json::Value =
            serde_json::from_str(data).map_err(|e| DecodeError(e.to_string()))?;
        for from in schema_version..current {
            value = upcast(type_name, from, value)?;
        }
        Self::decode_payload(type_name, &value.to_string())
    }
}

/// Turns a payload of `type_name` at version `from` into version `from + 1`.
fn upcast(
    type_name: &str,
    from: u16,
    mut value: serde_json::Value,
) -> Result<serde_json::Value, DecodeError> {
    match (type_name, from) {
        // v1 → v2: `via` was `"login"` or a password grant's client id.
        ("UserLoginFailed", 1) => {
            let via = match value.get("via").and_then(|v| v.as_str()) {
                Some("login") => serde_json::json!({ "kind": "login_page" }),
                Some(client) => {
                    serde_json::json!({ "kind": "password_grant", "client_id": client })
                }
                None => return Err(DecodeError("UserLoginFailed v1 without via".into())),
            };
            value["via"] = via;
            Ok(value)
        }
        _ => Err(DecodeError(format!(
            "no upcaster for {type_name} from schema version {from}"
        ))),
    }
}

/// A stored event that does not decode into today's types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// The stored form of a recorded event, read field by field so that the payload is decoded by
/// its type name and schema version (see [`Event::decode`]).
#[derive(Deserialize)]
struct StoredEvent {
    position: u64,
    stream: String,
    version: u64,
    id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    recorded_at: time::OffsetDateTime,
    schema_version: u16,
    #[serde(rename = "type")]
    type_name: String,
    data: Box<serde_json::value::RawValue>,
    metadata: Metadata,
    prev_hash: String,
}

impl TryFrom<StoredEvent> for RecordedEvent {
    type Error = DecodeError;

    fn try_from(s: StoredEvent) -> Result<Self, Self::Error> {
        Ok(RecordedEvent {
            event: Event::decode(&s.type_name, s.schema_version, s.data.get())?,
            position: s.position,
            stream: s.stream,
            version: s.version,
            id: s.id,
            recorded_at: s.recorded_at,
            // Decoding brought the payload up to today's version.
            schema_version: Event::current_version(&s.type_name),
            metadata: s.metadata,
            prev_hash: s.prev_hash,
        })
    }
}

/// An event as the log recorded it: envelope, payload and metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredEvent")]
pub struct RecordedEvent {
    /// Position in the total order of the whole log, from 1.
    pub position: u64,
    /// The stream it belongs to, e.g. `client-<id>`.
    pub stream: String,
    /// Version within its stream, from 1.
    pub version: u64,
    /// Unique id (UUIDv7).
    pub id: Uuid,
    /// When the store recorded it.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: time::OffsetDateTime,
    /// Version of the payload's schema.
    pub schema_version: u16,
    /// Type name and payload.
    #[serde(flatten)]
    pub event: Event,
    /// Request context.
    pub metadata: Metadata,
    /// SHA-256 (hex) of the stored bytes of the previous event, or [`GENESIS_HASH`].
    pub prev_hash: String,
}

impl AsRef<RecordedEvent> for RecordedEvent {
    fn as_ref(&self) -> &RecordedEvent {
        self
    }
}

/// The stream holding a client's registration and configuration.
pub fn client_stream(client_id: &ClientId) -> String {
    format!("client-{client_id}")
}

/// The stream holding the token events of one client, apart from its configuration: tokens,
/// consents, codes and refresh tokens.
pub fn token_stream(client_id: &ClientId) -> String {
    format!("tokens-{client_id}")
}

/// The stream of one browser session.
pub fn session_stream(sid: &str) -> String {
    format!("session-{sid}")
}

/// The stream of a user.
pub fn user_stream(user_id: &UserId) -> String {
    format!("user-{user_id}")
}

/// The stream of the server's signing keys.
pub const KEYS_STREAM: &str = "keys";

/// The stream of compactions (retention).
pub const RETENTION_STREAM: &str = "retention";

/// The stream of the walks of the hash chain.
pub const INTEGRITY_STREAM: &str = "integrity";

/// The stream of failed sign-ins for names that belong to no user.
pub const UNKNOWN_LOGINS_STREAM: &str = "logins-unknown";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_types_and_schema_versions_are_refused_with_a_reason() {
        let err = Event::decode("ClientDeleted", 2, r#"{"client_id":"a"}"#).unwrap_err();
        assert!(err.0.contains("no schema version 2"), "{err}");
        let err = Event::decode("ClientExploded", 1, "{}").unwrap_err();
        assert!(err.0.contains("unknown event type ClientExploded"), "{err}");
        let err = Event::decode("ClientDeleted", 1, r#"{"client_id":"not valid"}"#).unwrap_err();
        assert!(err.0.contains("client id"), "{err}");
    }

    #[test]
    fn a_recorded_event_round_trips_through_its_stored_form() {
        let event = RecordedEvent {
            position: 7,
            stream: "client-a".into(),
            version: 1,
            id: Uuid::from_u128(1),
            recorded_at: time::OffsetDateTime::UNIX_EPOCH,
            schema_version: 1,
            event: Event::ClientDeleted(ClientDeleted {
                client_id: ClientId::parse("a").unwrap(),
            }),
            metadata: Metadata::system(),
            prev_hash: GENESIS_HASH.into(),
        };
        let stored = serde_json::to_string(&event).unwrap();
        assert!(stored.contains(r#""type":"ClientDeleted","data":{"client_id":"a"}"#));
        assert_eq!(
            serde_json::from_str::<RecordedEvent>(&stored).unwrap(),
            event
        );
    }
}

#[cfg(test)]
mod upcast_tests {
    use super::*;

    #[test]
    fn user_login_failed_v1_names_the_page_or_a_password_grants_client() {
        let page = Event::decode(
            "UserLoginFailed",
            1,
            r#"{"username":"bob","reason":"unknown_user","via":"login"}"#,
        )
        .unwrap();
        let grant = Event::decode(
            "UserLoginFailed",
            1,
            r#"{"username":"bob","reason":"unknown_user","via":"mobile-app"}"#,
        )
        .unwrap();
        let via = |e: &Event| match e {
            Event::UserLoginFailed(f) => f.via.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(via(&page), SignInVia::LoginPage);
        assert_eq!(
            via(&grant),
            SignInVia::PasswordGrant {
                client_id: ClientId::parse("mobile-app").unwrap()
            }
        );
        assert_eq!(grant.schema_version(), 2);
        // Neither a version from the future nor version 0 is guessed at.
        assert!(Event::decode("UserLoginFailed", 3, "{}").is_err());
        assert!(Event::decode("ClientDeleted", 0, "{}").is_err());
    }
}
