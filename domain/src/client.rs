//! The client aggregate: a client's registration and configuration (stream `client-<id>`).

use crate::event::{
    ClientDeleted, ClientExtensionSettingsChanged, ClientGrantTypesChanged, ClientKeysChanged,
    ClientOidcSettingsChanged, ClientRedirectUriAdded, ClientRedirectUriRemoved, ClientRegistered,
    ClientRegistrationTokenRotated, ClientScopesChanged, ClientSecretRotated,
    ClientSettingsChanged, DynamicRegistration, Event, ExtensionSettings, OidcClientSettings,
};
use crate::values::{
    AuthMethod, ClientId, GrantType, RedirectMatching, RedirectUri, Scope, SecretHash,
    SigningAlgorithm, TokenFormat,
};
use serde::{Deserialize, Serialize};

/// Longest access-token lifetime a client may configure: one day.
pub const MAX_ACCESS_TOKEN_TTL_SECS: u32 = 86_400;

/// A registered client, as its events describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Its identifier.
    pub client_id: ClientId,
    /// Display name.
    pub name: String,
    /// Public clients have no secret.
    pub public: bool,
    /// Hash of the current secret.
    pub secret_hash: Option<SecretHash>,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<RedirectUri>,
    /// Allowed grant types.
    pub grant_types: Vec<GrantType>,
    /// Allowed (and default) scopes.
    pub scopes: Vec<Scope>,
    /// Access token format.
    pub token_format: TokenFormat,
    /// Access token lifetime in seconds.
    pub access_token_ttl_secs: u32,
    /// May introspect any client's tokens.
    pub can_introspect: bool,
    /// How presented redirect URIs are matched.
    #[serde(default)]
    pub redirect_uri_matching: RedirectMatching,
    /// May use the PKCE `plain` method.
    #[serde(default)]
    pub allow_plain_pkce: bool,
    /// Algorithm of its JWT access tokens; `None`: the server's default.
    #[serde(default)]
    pub signing_alg: Option<SigningAlgorithm>,
    /// Its registered authentication method; `None`: by secret, Basic or post (or none when
    /// public).
    #[serde(default)]
    pub auth_method: Option<AuthMethod>,
    /// Its public keys (a JWKS document).
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// Issuers whose assertions it may present; empty: only its own id.
    #[serde(default)]
    pub trusted_issuers: Vec<String>,
    /// Registered as an administrator (may hold [`ADMIN_SCOPE`]).
    #[serde(default)]
    pub admin: bool,
    /// OpenID Connect settings (left out of the serialized form while they are the defaults,
    /// so that the rows of clients from before them stay as they were).
    #[serde(default, skip_serializing_if = "OidcClientSettings::is_default")]
    pub oidc: OidcClientSettings,
    /// Settings of the OAuth extensions (left out while they are the defaults).
    #[serde(default, skip_serializing_if = "ExtensionSettings::is_default")]
    pub extensions: ExtensionSettings,
    /// Present for a client that registered itself (RFC 7591).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicRegistration>,
}

/// Most keys a client may register.
pub const MAX_CLIENT_KEYS: usize = 20;

/// Members of a JWK that belong to a private or symmetric key (RFC 7518 §6).
const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks that a document is a JWKS of public asymmetric keys only.
pub fn check_jwks(jwks: &serde_json::Value) -> Result<(), ClientError> {
    let bad = |why: &str| Err(ClientError::InvalidJwks(why.to_owned()));
    let Some(keys) = jwks.get("keys").and_then(|k| k.as_array()) else {
        return bad("a JWKS is an object with a \"keys\" array (RFC 7517 §5)");
    };
    if keys.is_empty() || keys.len() > MAX_CLIENT_KEYS {
        return bad(&format!("a JWKS needs 1 to {MAX_CLIENT_KEYS} keys"));
    }
    for key in keys {
        let Some(kty) = key.get("kty").and_then(|k| k.as_str()) else {
            return bad("every key needs a \"kty\"");
        };
        if !matches!(kty, "RSA" | "EC" | "OKP") {
            return bad(&format!(
                "key type {kty:?} is not an asymmetric key type (RSA, EC or OKP)"
            ));
        }
        if let Some(m) = PRIVATE_JWK_MEMBERS.iter().find(|m| key.get(**m).is_some()) {
            return bad(&format!(
                "a key carries the private member \"{m}\": register public keys only"
            ));
        }
    }
    Ok(())
}

impl Client {
    /// The authentication methods this client may use.
    pub fn auth_methods(&self) -> &'static [AuthMethod] {
        match (self.auth_method, self.public) {
            (Some(AuthMethod::ClientSecretBasic), _) => &[AuthMethod::ClientSecretBasic],
            (Some(AuthMethod::ClientSecretPost), _) => &[AuthMethod::ClientSecretPost],
            (Some(AuthMethod::PrivateKeyJwt), _) => &[AuthMethod::PrivateKeyJwt],
            (Some(AuthMethod::None), _) | (None, true) => &[AuthMethod::None],
            (None, false) => &[AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost],
        }
    }

    /// Whether `issuer` may sign assertions this client presents.
    pub fn trusts_issuer(&self, issuer: &str) -> bool {
        if self.trusted_issuers.is_empty() {
            issuer == self.client_id.as_str()
        } else {
            self.trusted_issuers.iter().any(|i| i == issuer)
        }
    }
}

/// Why a presented `redirect_uri` cannot be used (RFC 6749 §4.1.2.1: never redirect then).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    /// None was sent and the client has several (or none).
    #[error("redirect_uri is required: this client has several registered")]
    Missing,
    /// It matches no registered one.
    #[error("redirect_uri is not registered for this client")]
    NotRegistered,
}

impl Client {
    /// The redirect URI a request resolves to: the presented one if it matches a registered
    /// one, or the only registered one when none was presented.
    pub fn resolve_redirect_uri(&self, presented: Option<&str>) -> Result<String, RedirectError> {
        match presented {
            Some(p) => self
                .redirect_uris
                .iter()
                .any(|r| r.matches(p, self.redirect_uri_matching))
                .then(|| p.to_owned())
                .ok_or(RedirectError::NotRegistered),
            None => match self.redirect_uris.as_slice() {
                [only] => Ok(only.as_str().to_owned()),
                _ => Err(RedirectError::Missing),
            },
        }
    }
}

/// The fold of a client stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "one state per client actor, held in place and never copied in bulk"
)]
pub enum ClientState {
    /// No event yet.
    #[default]
    Unregistered,
    /// Registered and not deleted.
    Active(Client),
    /// Deleted; the id stays taken so that its history is never confused with a new client's.
    Deleted(ClientId),
}

impl ClientState {
    /// The client, if registered and not deleted.
    pub fn active(&self) -> Option<&Client> {
        match self {
            ClientState::Active(c) => Some(c),
            _ => None,
        }
    }
}

/// What a registration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterClient {
    /// Identifier chosen for it.
    pub client_id: ClientId,
    /// Display name.
    pub name: String,
    /// Public client (no secret).
    pub public: bool,
    /// Hash of the secret, for a confidential client.
    pub secret_hash: Option<SecretHash>,
    /// Redirect URIs.
    pub redirect_uris: Vec<RedirectUri>,
    /// Grant types.
    pub grant_types: Vec<GrantType>,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Token format.
    pub token_format: TokenFormat,
    /// Access token lifetime in seconds.
    pub access_token_ttl_secs: u32,
    /// May introspect any token.
    pub can_introspect: bool,
    /// Redirect URI matching rule.
    pub redirect_uri_matching: RedirectMatching,
    /// May use PKCE `plain`.
    pub allow_plain_pkce: bool,
    /// Signing algorithm of its JWTs (`None`: the server's).
    pub signing_alg: Option<SigningAlgorithm>,
    /// Authentication method (`None`: by secret, or none when public).
    pub auth_method: Option<AuthMethod>,
    /// Public keys.
    pub jwks: Option<serde_json::Value>,
    /// Trusted assertion issuers.
    pub trusted_issuers: Vec<String>,
    /// Registered as an administrator: the only kind of client that may hold [`ADMIN_SCOPE`].
    pub admin: bool,
    /// OpenID Connect settings.
    pub oidc: OidcClientSettings,
    /// Extension settings.
    pub extensions: ExtensionSettings,
    /// Set when the client registers itself (RFC 7591).
    pub dynamic: Option<DynamicRegistration>,
    /// Set when `authledger import` brings it from another server.
    pub imported: Option<crate::event::ImportOrigin>,
}

/// Changes to a client, decided together and recorded atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateClient {
    /// Redirect URIs to add.
    pub add_redirect_uris: Vec<RedirectUri>,
    /// Redirect URIs to remove.
    pub remove_redirect_uris: Vec<RedirectUri>,
    /// New scopes, replacing the old ones.
    pub scopes: Option<Vec<Scope>>,
    /// New grant types, replacing the old ones.
    pub grant_types: Option<Vec<GrantType>>,
    /// New token format.
    pub token_format: Option<TokenFormat>,
    /// New access token lifetime.
    pub access_token_ttl_secs: Option<u32>,
    /// New introspection right.
    pub can_introspect: Option<bool>,
    /// New redirect URI matching rule.
    pub redirect_uri_matching: Option<RedirectMatching>,
    /// New PKCE `plain` permission.
    pub allow_plain_pkce: Option<bool>,
    /// New signing algorithm.
    pub signing_alg: Option<SigningAlgorithm>,
    /// New authentication method.
    pub auth_method: Option<AuthMethod>,
    /// New public keys, replacing the old.
    pub jwks: Option<serde_json::Value>,
    /// New trusted issuers, replacing the old.
    pub trusted_issuers: Option<Vec<String>>,
    /// New OpenID Connect settings, replacing the old.
    pub oidc: Option<OidcClientSettings>,
    /// New extension settings, replacing the old.
    pub extensions: Option<ExtensionSettings>,
}

/// Commands on the client aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// Register a new client.
    Register(RegisterClient),
    /// Change an existing client.
    Update(UpdateClient),
    /// Replace the secret of a confidential client (the new hash arrives in the command).
    RotateSecret(SecretHash),
    /// Replace the registration access token of a self-registered client (its new hash).
    RotateRegistrationToken(SecretHash),
    /// Delete the client.
    Delete,
}

/// The scope of the admin API. Only a client registered as an admin may hold it: a scope
/// anyone may give a client must not be what makes it an administrator.
pub const ADMIN_SCOPE: &str = "admin";

fn holds_admin_scope(scopes: &[Scope]) -> bool {
    scopes.iter().any(|s| s.as_str() == ADMIN_SCOPE)
}

/// Why a client command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The `admin` scope was asked for a client not registered as an admin.
    #[error(
        "only a client registered as an admin (client create --admin) may hold the admin scope"
    )]
    AdminScopeNeedsAdmin,
    /// The id is taken (also by a deleted client).
    #[error("client {0} already exists")]
    AlreadyExists(ClientId),
    /// No such client.
    #[error("client not found")]
    NotFound,
    /// The client was deleted.
    #[error("client {0} was deleted")]
    Deleted(ClientId),
    /// A public client was given a secret, or a confidential one none.
    #[error("{0}")]
    SecretMismatch(&'static str),
    /// The redirect URI is already registered.
    #[error("redirect URI {0} is already registered")]
    RedirectUriAlreadyRegistered(String),
    /// The redirect URI is not registered.
    #[error("redirect URI {0} is not registered")]
    RedirectUriNotRegistered(String),
    /// A grant type that needs redirect URIs has none.
    #[error("grant type {0} needs at least one redirect URI")]
    RedirectUriRequired(GrantType),
    /// Public clients cannot use this grant type.
    #[error("public clients cannot use the {0} grant (RFC 6749 §4.4)")]
    GrantNotForPublicClients(GrantType),
    /// At least one grant type is needed.
    #[error("a client needs at least one grant type")]
    NoGrantType,
    /// The OpenID Connect settings break a rule.
    #[error("{0}")]
    InvalidOidcSettings(&'static str),
    /// Only a client that registered itself has a registration access token.
    #[error("this client did not register itself and has no registration access token")]
    NotDynamic,
    /// The name is empty or too long.
    #[error("client name must be 1 to 200 characters")]
    InvalidName,
    /// The lifetime is out of range.
    #[error("access token lifetime must be between 1 and {MAX_ACCESS_TOKEN_TTL_SECS} seconds")]
    InvalidTtl,
    /// The JWKS document is not a set of public keys.
    #[error("invalid JWKS: {0}")]
    InvalidJwks(String),
    /// A trusted issuer is empty or too long.
    #[error("a trusted issuer must be 1 to 512 characters")]
    InvalidIssuer,
    /// The authentication method does not fit the client.
    #[error("{0}")]
    AuthMethodMismatch(&'static str),
    /// The extension settings break a rule.
    #[error("{0}")]
    InvalidExtensionSettings(String),
}

/// Decides a client command against the current state.
pub fn decide(state: &ClientState, command: &ClientCommand) -> Result<Vec<Event>, ClientError> {
    match command {
        ClientCommand::Register(cmd) => register(state, cmd),
        ClientCommand::Update(cmd) => update(live(state)?, cmd),
        ClientCommand::RotateSecret(hash) => {
            let client = live(state)?;
            if client.public {
                return Err(ClientError::SecretMismatch(
                    "public clients have no secret to rotate",
                ));
            }
            Ok(vec![Event::ClientSecretRotated(ClientSecretRotated {
                client_id: client.client_id.clone(),
                secret_hash: hash.clone(),
            })])
        }
        ClientCommand::RotateRegistrationToken(hash) => {
            let client = live(state)?;
            if client.dynamic.is_none() {
                return Err(ClientError::NotDynamic);
            }
            Ok(vec![Event::ClientRegistrationTokenRotated(
                ClientRegistrationTokenRotated {
                    client_id: client.client_id.clone(),
                    registration_token_hash: hash.clone(),
                },
            )])
        }
        ClientCommand::Delete => {
            let client = live(state)?;
            Ok(vec![Event::ClientDeleted(ClientDeleted {
                client_id: client.client_id.clone(),
            })])
        }
    }
}

fn live(state: &ClientState) -> Result<&Client, ClientError> {
    match state {
        ClientState::Active(c) => Ok(c),
        ClientState::Unregistered => Err(ClientError::NotFound),
        ClientState::Deleted(id) => Err(ClientError::Deleted(id.clone())),
    }
}

fn check_grants(
    public: bool,
    grants: &[GrantType],
    redirect_uris: &[RedirectUri],
) -> Result<(), ClientError> {
    if grants.is_empty() {
        return Err(ClientError::NoGrantType);
    }
    for &g in grants {
        if public
            && matches!(
                g,
                GrantType::ClientCredentials | GrantType::TokenExchange | GrantType::Saml2Bearer
            )
        {
            return Err(ClientError::GrantNotForPublicClients(g));
        }
        if matches!(g, GrantType::AuthorizationCode | GrantType::Implicit)
            && redirect_uris.is_empty()
        {
            return Err(ClientError::RedirectUriRequired(g));
        }
    }
    Ok(())
}

fn check_ttl(ttl: u32) -> Result<(), ClientError> {
    if ttl == 0 || ttl > MAX_ACCESS_TOKEN_TTL_SECS {
        return Err(ClientError::InvalidTtl);
    }
    Ok(())
}

/// Whether `host` is a DNS host name (a pairwise sector).
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The host of every redirect URI, if they share one and are all `https` or `http`: the
/// authority of a private-use scheme (`com.app://bank.example/cb`) proves nothing about that
/// host, and must not put the client in its sector.
fn redirect_host(uris: &[RedirectUri]) -> Option<String> {
    let mut hosts = uris.iter().map(|u| {
        url::Url::parse(u.as_str())
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .and_then(|u| u.host_str().map(str::to_owned))
    });
    let first = hosts.next()??;
    hosts
        .all(|h| h.as_deref() == Some(first.as_str()))
        .then_some(first)
}

/// The pairwise sector of a client: its sector identifier, or the one host of its redirect
/// URIs (Core §8.1), or, failing both, the client alone (a client registered before the rule
/// held still gets a `sub` no other client shares, never the user's id).
pub fn sector_of(client: &Client) -> String {
    client
        .oidc
        .sector_identifier
        .clone()
        .or_else(|| redirect_host(&client.redirect_uris))
        .unwrap_or_else(|| format!("client:{}", client.client_id))
}

/// The rules of OpenID Connect settings, given the client's redirect URIs.
fn check_oidc(oidc: &OidcClientSettings, redirect_uris: &[RedirectUri]) -> Result<(), ClientError> {
    if let Some(uri) = &oidc.backchannel_logout_uri {
        let url = url::Url::parse(uri.as_str()).ok();
        let loopback = url.as_ref().is_some_and(|u| match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            _ => false,
        });
        let scheme = url.as_ref().map_or("", |u| u.scheme());
        if !(scheme == "https" || (scheme == "http" && loopback)) {
            return Err(ClientError::InvalidOidcSettings(
                "backchannel_logout_uri must be an https URI (or http on a loopback address)",
            ));
        }
    }
    if let Some(sector) = &oidc.sector_identifier {
        if !is_host_name(sector) {
            return Err(ClientError::InvalidOidcSettings(
                "sector_identifier must be a host name, such as app.example.com",
            ));
        }
    }
    if oidc.subject_type == crate::event::SubjectType::Pairwise
        && oidc.sector_identifier.is_none()
        && redirect_host(redirect_uris).is_none()
    {
        return Err(ClientError::InvalidOidcSettings(
            "a pairwise client whose redirect URIs are on several hosts needs a sector_identifier              (OpenID Connect Core 8.1)",
        ));
    }
    Ok(())
}

fn register(state: &ClientState, cmd: &RegisterClient) -> Result<Vec<Event>, ClientError> {
    match state {
        ClientState::Unregistered => {}
        ClientState::Active(c) => return Err(ClientError::AlreadyExists(c.client_id.clone())),
        ClientState::Deleted(id) => return Err(ClientError::AlreadyExists(id.clone())),
    }
    let name = cmd.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ClientError::InvalidName);
    }
    let by_key = cmd.auth_method == Some(AuthMethod::PrivateKeyJwt);
    match (cmd.public, &cmd.secret_hash) {
        (true, Some(_)) => {
            return Err(ClientError::SecretMismatch(
                "a public client must not have a secret",
            ))
        }
        (false, None) if !by_key => {
            return Err(ClientError::SecretMismatch(
                "a confidential client needs a secret (or private_key_jwt and its keys)",
            ))
        }
        _ => {}
    }
    check_grants(cmd.public, &cmd.grant_types, &cmd.redirect_uris)?;
    if holds_admin_scope(&cmd.scopes) && !cmd.admin {
        return Err(ClientError::AdminScopeNeedsAdmin);
    }
    check_ttl(cmd.access_token_ttl_secs)?;
    check_oidc(&cmd.oidc, &cmd.redirect_uris)?;
    check_extensions(&cmd.extensions, &cmd.grant_types)?;
    check_keys(
        cmd.public,
        cmd.auth_method,
        &cmd.grant_types,
        cmd.jwks.as_ref(),
        &cmd.trusted_issuers,
    )?;
    Ok(vec![Event::ClientRegistered(ClientRegistered {
        client_id: cmd.client_id.clone(),
        name: name.to_owned(),
        public: cmd.public,
        secret_hash: cmd.secret_hash.clone(),
        redirect_uris: dedup(&cmd.redirect_uris),
        grant_types: dedup(&cmd.grant_types),
        scopes: dedup(&cmd.scopes),
        token_format: cmd.token_format,
        access_token_ttl_secs: cmd.access_token_ttl_secs,
        can_introspect: cmd.can_introspect,
        redirect_uri_matching: cmd.redirect_uri_matching,
        allow_plain_pkce: cmd.allow_plain_pkce,
        signing_alg: cmd.signing_alg,
        auth_method: cmd.auth_method,
        jwks: cmd.jwks.clone(),
        trusted_issuers: dedup(&cmd.trusted_issuers),
        admin: Some(cmd.admin),
        oidc: cmd.oidc.clone(),
        extensions: cmd.extensions.clone(),
        dynamic: cmd.dynamic.clone(),
        imported: cmd.imported.clone(),
    })])
}

/// Longest resource URI, audience or SAML issuer a client may register.
const MAX_TARGET_LEN: usize = 512;

/// Whether `uri` may be a resource indicator (RFC 8707 §2): an absolute URI without a
/// fragment, of printable ASCII.
pub fn is_resource_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && uri.len() <= MAX_TARGET_LEN
        && !uri.contains('#')
        && uri.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// The rules of the extension settings: well-formed resources and audiences, and a token
/// exchange policy or SAML IdP only beside the grant that uses it.
fn check_extensions(ext: &ExtensionSettings, grants: &[GrantType]) -> Result<(), ClientError> {
    let bad = |why: String| Err(ClientError::InvalidExtensionSettings(why));
    if let Some(r) = ext.resources.iter().find(|r| !is_resource_uri(r)) {
        return bad(format!(
            "resource {r} is not an absolute URI without a fragment (RFC 8707 2)"
        ));
    }
    match (
        &ext.token_exchange,
        grants.contains(&GrantType::TokenExchange),
    ) {
        (Some(p), _) => {
            if p.audiences.is_empty() || p.subject_clients.is_empty() {
                return bad(
                    "a token exchange policy names at least one subject client and one audience"
                        .into(),
                );
            }
            if p.audiences
                .iter()
                .any(|a| a.is_empty() || a.len() > MAX_TARGET_LEN)
            {
                return bad(format!(
                    "an audience must be 1 to {MAX_TARGET_LEN} characters"
                ));
            }
        }
        (None, true) => return bad("the token-exchange grant needs a token exchange policy".into()),
        (None, false) => {}
    }
    match (&ext.saml_idp, grants.contains(&GrantType::Saml2Bearer)) {
        (Some(idp), _) => {
            if idp.issuer.is_empty() || idp.issuer.len() > MAX_TARGET_LEN {
                return bad(format!(
                    "a SAML issuer must be 1 to {MAX_TARGET_LEN} characters"
                ));
            }
            if idp.audience.is_empty() || idp.audience.len() > MAX_TARGET_LEN {
                return bad(format!(
                    "a SAML audience must be 1 to {MAX_TARGET_LEN} characters"
                ));
            }
            if !idp.certificate_pem.contains("-----BEGIN CERTIFICATE-----") {
                return bad("the SAML IdP certificate must be a PEM certificate".into());
            }
        }
        (None, true) => return bad("the saml2-bearer grant needs a trusted SAML IdP".into()),
        (None, false) => {}
    }
    Ok(())
}

/// The rules tying a client's authentication method, grants and keys together.
fn check_keys(
    public: bool,
    method: Option<AuthMethod>,
    grants: &[GrantType],
    jwks: Option<&serde_json::Value>,
    issuers: &[String],
) -> Result<(), ClientError> {
    match (public, method) {
        (true, Some(m)) if m != AuthMethod::None => {
            return Err(ClientError::AuthMethodMismatch(
                "a public client authenticates with none",
            ))
        }
        (false, Some(AuthMethod::None)) => {
            return Err(ClientError::AuthMethodMismatch(
                "a confidential client must authenticate; `none` is for public clients",
            ))
        }
        _ => {}
    }
    if let Some(jwks) = jwks {
        check_jwks(jwks)?;
    }
    let needs_keys =
        method == Some(AuthMethod::PrivateKeyJwt) || grants.contains(&GrantType::JwtBearer);
    if needs_keys && jwks.is_none() {
        return Err(ClientError::InvalidJwks(
            "private_key_jwt and the jwt-bearer grant need the client's public keys (--jwks)"
                .into(),
        ));
    }
    if issuers.iter().any(|i| i.is_empty() || i.len() > 512) {
        return Err(ClientError::InvalidIssuer);
    }
    Ok(())
}

fn dedup<T: Clone + PartialEq>(items: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    out
}

fn update(client: &Client, cmd: &UpdateClient) -> Result<Vec<Event>, ClientError> {
    let id = &client.client_id;
    let mut events = Vec::new();
    let mut uris = client.redirect_uris.clone();
    for uri in &cmd.remove_redirect_uris {
        let Some(i) = uris.iter().position(|u| u == uri) else {
            return Err(ClientError::RedirectUriNotRegistered(uri.as_str().into()));
        };
        uris.remove(i);
        events.push(Event::ClientRedirectUriRemoved(ClientRedirectUriRemoved {
            client_id: id.clone(),
            redirect_uri: uri.clone(),
        }));
    }
    for uri in &cmd.add_redirect_uris {
        if uris.contains(uri) {
            return Err(ClientError::RedirectUriAlreadyRegistered(
                uri.as_str().into(),
            ));
        }
        uris.push(uri.clone());
        events.push(Event::ClientRedirectUriAdded(ClientRedirectUriAdded {
            client_id: id.clone(),
            redirect_uri: uri.clone(),
        }));
    }
    let grants = cmd
        .grant_types
        .as_ref()
        .map(|g| dedup(g))
        .unwrap_or_else(|| client.grant_types.clone());
    check_grants(client.public, &grants, &uris)?;
    if let Some(scopes) = &cmd.scopes {
        let scopes = dedup(scopes);
        if holds_admin_scope(&scopes) && !client.admin {
            return Err(ClientError::AdminScopeNeedsAdmin);
        }
        if scopes != client.scopes {
            events.push(Event::ClientScopesChanged(ClientScopesChanged {
                client_id: id.clone(),
                scopes,
            }));
        }
    }
    if grants != client.grant_types {
        events.push(Event::ClientGrantTypesChanged(ClientGrantTypesChanged {
            client_id: id.clone(),
            grant_types: grants.clone(),
        }));
    }
    let token_format = cmd.token_format.unwrap_or(client.token_format);
    let ttl = cmd
        .access_token_ttl_secs
        .unwrap_or(client.access_token_ttl_secs);
    check_ttl(ttl)?;
    let can_introspect = cmd.can_introspect.unwrap_or(client.can_introspect);
    let matching = cmd
        .redirect_uri_matching
        .unwrap_or(client.redirect_uri_matching);
    let plain = cmd.allow_plain_pkce.unwrap_or(client.allow_plain_pkce);
    let alg = cmd.signing_alg.or(client.signing_alg);
    let method = cmd.auth_method.or(client.auth_method);
    let jwks = cmd.jwks.clone().or_else(|| client.jwks.clone());
    let issuers = cmd
        .trusted_issuers
        .as_ref()
        .map(|i| dedup(i))
        .unwrap_or_else(|| client.trusted_issuers.clone());
    check_keys(client.public, method, &grants, jwks.as_ref(), &issuers)?;
    let can_authenticate =
        method == Some(AuthMethod::PrivateKeyJwt) || client.secret_hash.is_some() || client.public;
    if !can_authenticate {
        return Err(ClientError::SecretMismatch(
            "this client has no secret: it can only authenticate with private_key_jwt",
        ));
    }
    if (jwks.as_ref(), &issuers) != (client.jwks.as_ref(), &client.trusted_issuers) {
        events.push(Event::ClientKeysChanged(ClientKeysChanged {
            client_id: id.clone(),
            jwks,
            trusted_issuers: issuers,
        }));
    }
    if (
        token_format,
        ttl,
        can_introspect,
        matching,
        plain,
        alg,
        method,
    ) != (
        client.token_format,
        client.access_token_ttl_secs,
        client.can_introspect,
        client.redirect_uri_matching,
        client.allow_plain_pkce,
        client.signing_alg,
        client.auth_method,
    ) {
        events.push(Event::ClientSettingsChanged(ClientSettingsChanged {
            client_id: id.clone(),
            token_format,
            access_token_ttl_secs: ttl,
            can_introspect,
            redirect_uri_matching: matching,
            allow_plain_pkce: plain,
            signing_alg: alg,
            auth_method: method,
        }));
    }
    // The settings hold against the redirect URIs the client will have, whichever of the two
    // changes: a redirect URI on a second host must not quietly end a pairwise sector.
    let mut uris = client.redirect_uris.clone();
    uris.retain(|u| !cmd.remove_redirect_uris.contains(u));
    uris.extend(cmd.add_redirect_uris.iter().cloned());
    check_oidc(cmd.oidc.as_ref().unwrap_or(&client.oidc), &uris)?;
    check_extensions(
        cmd.extensions.as_ref().unwrap_or(&client.extensions),
        cmd.grant_types.as_ref().unwrap_or(&client.grant_types),
    )?;
    if let Some(oidc) = cmd.oidc.as_ref().filter(|o| **o != client.oidc) {
        events.push(Event::ClientOidcSettingsChanged(
            ClientOidcSettingsChanged {
                client_id: id.clone(),
                oidc: oidc.clone(),
            },
        ));
    }
    if let Some(extensions) = cmd.extensions.as_ref().filter(|x| **x != client.extensions) {
        events.push(Event::ClientExtensionSettingsChanged(
            ClientExtensionSettingsChanged {
                client_id: id.clone(),
                extensions: extensions.clone(),
            },
        ));
    }
    Ok(events)
}

/// Folds one event of the client stream into the state; token events do not touch it.
pub fn evolve(state: &mut ClientState, event: &Event) {
    if let Event::ClientRegistered(e) = event {
        *state = ClientState::Active(Client {
            client_id: e.client_id.clone(),
            name: e.name.clone(),
            public: e.public,
            secret_hash: e.secret_hash.clone(),
            redirect_uris: e.redirect_uris.clone(),
            grant_types: e.grant_types.clone(),
            scopes: e.scopes.clone(),
            token_format: e.token_format,
            access_token_ttl_secs: e.access_token_ttl_secs,
            can_introspect: e.can_introspect,
            redirect_uri_matching: e.redirect_uri_matching,
            allow_plain_pkce: e.allow_plain_pkce,
            signing_alg: e.signing_alg,
            auth_method: e.auth_method,
            jwks: e.jwks.clone(),
            trusted_issuers: e.trusted_issuers.clone(),
            // Before the flag was recorded, the admin scope alone made an admin; those
            // registrations keep the rights they were given.
            admin: e.admin.unwrap_or_else(|| holds_admin_scope(&e.scopes)),
            oidc: e.oidc.clone(),
            extensions: e.extensions.clone(),
            dynamic: e.dynamic.clone(),
        });
        return;
    }
    if let Event::ClientDeleted(e) = event {
        *state = ClientState::Deleted(e.client_id.clone());
        return;
    }
    let ClientState::Active(c) = state else {
        return;
    };
    match event {
        Event::ClientRedirectUriAdded(e) => c.redirect_uris.push(e.redirect_uri.clone()),
        Event::ClientRedirectUriRemoved(e) => c.redirect_uris.retain(|u| u != &e.redirect_uri),
        Event::ClientScopesChanged(e) => c.scopes = e.scopes.clone(),
        Event::ClientGrantTypesChanged(e) => c.grant_types = e.grant_types.clone(),
        Event::ClientSettingsChanged(e) => {
            c.token_format = e.token_format;
            c.access_token_ttl_secs = e.access_token_ttl_secs;
            c.can_introspect = e.can_introspect;
            c.redirect_uri_matching = e.redirect_uri_matching;
            c.allow_plain_pkce = e.allow_plain_pkce;
            c.signing_alg = e.signing_alg;
            c.auth_method = e.auth_method;
        }
        Event::ClientKeysChanged(e) => {
            c.jwks = e.jwks.clone();
            c.trusted_issuers = e.trusted_issuers.clone();
        }
        Event::ClientSecretRotated(e) => c.secret_hash = Some(e.secret_hash.clone()),
        Event::ClientOidcSettingsChanged(e) => c.oidc = e.oidc.clone(),
        Event::ClientExtensionSettingsChanged(e) => c.extensions = e.extensions.clone(),
        Event::ClientRegistrationTokenRotated(e) => {
            if let Some(d) = c.dynamic.as_mut() {
                d.registration_token_hash = e.registration_token_hash.clone();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::Scenario;
    use crate::values::HashKey;

    pub(crate) fn id() -> ClientId {
        ClientId::parse("svc-billing").unwrap()
    }

    fn uri(s: &str) -> RedirectUri {
        RedirectUri::parse(s).unwrap()
    }

    fn scopes(s: &str) -> Vec<Scope> {
        Scope::parse_list(s).unwrap()
    }

    pub(crate) fn registration() -> RegisterClient {
        RegisterClient {
            client_id: id(),
            name: "Billing".into(),
            public: false,
            secret_hash: Some(HashKey::for_tests().hash("first-secret")),
            redirect_uris: vec![uri("https://billing.example/cb")],
            grant_types: vec![GrantType::ClientCredentials],
            scopes: scopes("read write"),
            token_format: TokenFormat::Jwt,
            access_token_ttl_secs: 3600,
            can_introspect: false,
            redirect_uri_matching: RedirectMatching::Exact,
            allow_plain_pkce: false,
            signing_alg: None,
            auth_method: None,
            jwks: None,
            trusted_issuers: vec![],
            admin: false,
            oidc: Default::default(),
            dynamic: None,
            imported: None,
            extensions: Default::default(),
        }
    }

    pub(crate) fn registered() -> Event {
        decide(
            &ClientState::Unregistered,
            &ClientCommand::Register(registration()),
        )
        .unwrap()
        .remove(0)
    }

    fn client_scenario() -> Scenario<ClientState, ClientCommand, ClientError> {
        Scenario::new(decide, evolve)
    }

    #[test]
    fn registering_a_new_client_records_its_whole_configuration() {
        client_scenario()
            .given(vec![])
            .when(ClientCommand::Register(registration()))
            .then(vec![Event::ClientRegistered(ClientRegistered {
                client_id: id(),
                name: "Billing".into(),
                public: false,
                secret_hash: Some(HashKey::for_tests().hash("first-secret")),
                redirect_uris: vec![uri("https://billing.example/cb")],
                grant_types: vec![GrantType::ClientCredentials],
                scopes: scopes("read write"),
                token_format: TokenFormat::Jwt,
                access_token_ttl_secs: 3600,
                can_introspect: false,
                redirect_uri_matching: RedirectMatching::Exact,
                allow_plain_pkce: false,
                signing_alg: None,
                auth_method: None,
                jwks: None,
                trusted_issuers: vec![],
                admin: Some(false),
                oidc: Default::default(),
                dynamic: None,
                imported: None,
                extensions: Default::default(),
            })]);
    }

    #[test]
    fn the_admin_scope_needs_a_client_registered_as_admin() {
        let mut asked = registration();
        asked.scopes = scopes("read admin");
        client_scenario()
            .given(vec![])
            .when(ClientCommand::Register(asked.clone()))
            .then_err(ClientError::AdminScopeNeedsAdmin);
        asked.admin = true;
        let events = decide(&ClientState::Unregistered, &ClientCommand::Register(asked)).unwrap();
        assert!(matches!(&events[0], Event::ClientRegistered(r) if r.admin == Some(true)));
        // Nor can an ordinary client be given the scope later.
        client_scenario()
            .given(vec![registered()])
            .when(ClientCommand::Update(UpdateClient {
                scopes: Some(scopes("read admin")),
                ..UpdateClient::default()
            }))
            .then_err(ClientError::AdminScopeNeedsAdmin);
    }

    #[test]
    fn a_registration_recorded_before_the_flag_keeps_the_admin_rights_its_scope_gave() {
        let mut old = match registered() {
            Event::ClientRegistered(r) => r,
            _ => unreachable!("a registration"),
        };
        old.admin = None;
        old.scopes = scopes("admin");
        let mut state = ClientState::Unregistered;
        evolve(&mut state, &Event::ClientRegistered(old.clone()));
        assert!(matches!(&state, ClientState::Active(c) if c.admin));
        old.scopes = scopes("read");
        evolve(&mut state, &Event::ClientRegistered(old));
        assert!(matches!(&state, ClientState::Active(c) if !c.admin));
    }

    #[test]
    fn registering_an_existing_client_is_refused() {
        client_scenario()
            .given(vec![registered()])
            .when(ClientCommand::Register(registration()))
            .then_err(ClientError::AlreadyExists(id()));
    }

    #[test]
    fn registering_the_id_of_a_deleted_client_is_refused() {
        client_scenario()
            .given(vec![
                registered(),
                Event::ClientDeleted(ClientDeleted { client_id: id() }),
            ])
            .when(ClientCommand::Register(registration()))
            .then_err(ClientError::AlreadyExists(id()));
    }

    #[test]
    fn registering_a_public_client_with_a_secret_is_refused() {
        let mut cmd = registration();
        cmd.public = true;
        cmd.grant_types = vec![GrantType::AuthorizationCode];
        client_scenario()
            .given(vec![])
            .when(ClientCommand::Register(cmd))
            .then_err(ClientError::SecretMismatch(
                "a public client must not have a secret",
            ));
    }

    #[test]
    fn registering_a_confidential_client_without_a_secret_is_refused() {
        let mut cmd = registration();
        cmd.secret_hash = None;
        client_scenario()
            .given(vec![])
            .when(ClientCommand::Register(cmd))
            .then_err(ClientError::SecretMismatch(
                "a confidential client needs a secret (or private_key_jwt and its keys)",
            ));
    }

    #[test]
    fn registering_a_public_client_for_client_credentials_is_refused() {
        let mut cmd = registration();
        cmd.public = true;
        cmd.secret_hash = None;
        client_scenario()
            .given(vec![])
            .when(ClientCommand::Register(cmd))
            .then_err(ClientError::GrantNotForPublicClients(
                GrantType::ClientCredentials,
            ));
    }

    #[test]
    fn registering_without_grant_types_is_refused() {
        let mut cmd = registration();
        cmd.grant_types.clear();
        client_scenario()
            .given(vec![])
            .when(ClientCommand::Register(cmd))
            .then_err(ClientError::NoGrantType);
    }

    #[test]
    fn registering_the_code_grant_without_redirect_uris_is_refused() {
        let mut cmd = registration();
        cmd.redirect_uris.clear();
        cmd.grant_types = vec![GrantType::AuthorizationCode];
        client_scenario()
            .given(vec![])
            .when(ClientCommand::Register(cmd))
            .then_err(ClientError::RedirectUriRequired(
                GrantType::AuthorizationCode,
            ));
    }

    #[test]
    fn registering_with_an_empty_name_or_zero_lifetime_is_refused() {
        let mut cmd = registration();
        cmd.name = "  ".into();
        client_scenario()
            .given(vec![])
            .when(ClientCommand::Register(cmd))
            .then_err(ClientError::InvalidName);
        let mut cmd = registration();
        cmd.access_token_ttl_secs = 0;
        client_scenario()
            .given(vec![])
            .when(ClientCommand::Register(cmd))
            .then_err(ClientError::InvalidTtl);
    }

    #[test]
    fn adding_and_removing_redirect_uris_records_each_change() {
        client_scenario()
            .given(vec![registered()])
            .when(ClientCommand::Update(UpdateClient {
                add_redirect_uris: vec![uri("http://127.0.0.1/cb")],
                remove_redirect_uris: vec![uri("https://billing.example/cb")],
                ..UpdateClient::default()
            }))
            .then(vec![
                Event::ClientRedirectUriRemoved(ClientRedirectUriRemoved {
                    client_id: id(),
                    redirect_uri: uri("https://billing.example/cb"),
                }),
                Event::ClientRedirectUriAdded(ClientRedirectUriAdded {
                    client_id: id(),
                    redirect_uri: uri("http://127.0.0.1/cb"),
                }),
            ]);
    }

    #[test]
    fn adding_a_registered_redirect_uri_is_refused() {
        client_scenario()
            .given(vec![registered()])
            .when(ClientCommand::Update(UpdateClient {
                add_redirect_uris: vec![uri("https://billing.example/cb")],
                ..UpdateClient::default()
            }))
            .then_err(ClientError::RedirectUriAlreadyRegistered(
                "https://billing.example/cb".into(),
            ));
    }

    #[test]
    fn removing_an_unknown_redirect_uri_is_refused() {
        client_scenario()
            .given(vec![registered()])
            .when(ClientCommand::Update(UpdateClient {
                remove_redirect_uris: vec![uri("https://other.example/cb")],
                ..UpdateClient::default()
            }))
            .then_err(ClientError::RedirectUriNotRegistered(
                "https://other.example/cb".into(),
            ));
    }

    #[test]
    fn changing_scopes_grants_and_settings_records_only_what_changed() {
        client_scenario()
            .given(vec![registered()])
            .when(ClientCommand::Update(UpdateClient {
                scopes: Some(scopes("read")),
                grant_types: Some(vec![GrantType::ClientCredentials]),
                token_format: Some(TokenFormat::Opaque),
                ..UpdateClient::default()
            }))
            .then(vec![
                Event::ClientScopesChanged(ClientScopesChanged {
                    client_id: id(),
                    scopes: scopes("read"),
                }),
                Event::ClientSettingsChanged(ClientSettingsChanged {
                    client_id: id(),
                    token_format: TokenFormat::Opaque,
                    access_token_ttl_secs: 3600,
                    can_introspect: false,
                    redirect_uri_matching: RedirectMatching::Exact,
                    allow_plain_pkce: false,
                    signing_alg: None,
                    auth_method: None,
                }),
            ]);
    }

    #[test]
    fn changing_grant_types_records_the_new_set() {
        client_scenario()
            .given(vec![registered()])
            .when(ClientCommand::Update(UpdateClient {
                grant_types: Some(vec![
                    GrantType::ClientCredentials,
                    GrantType::AuthorizationCode,
                ]),
                ..UpdateClient::default()
            }))
            .then(vec![Event::ClientGrantTypesChanged(
                ClientGrantTypesChanged {
                    client_id: id(),
                    grant_types: vec![GrantType::ClientCredentials, GrantType::AuthorizationCode],
                },
            )]);
    }

    #[test]
    fn removing_the_last_redirect_uri_of_a_code_client_is_refused() {
        client_scenario()
            .given(vec![
                registered(),
                Event::ClientGrantTypesChanged(ClientGrantTypesChanged {
                    client_id: id(),
                    grant_types: vec![GrantType::AuthorizationCode],
                }),
            ])
            .when(ClientCommand::Update(UpdateClient {
                remove_redirect_uris: vec![uri("https://billing.example/cb")],
                ..UpdateClient::default()
            }))
            .then_err(ClientError::RedirectUriRequired(
                GrantType::AuthorizationCode,
            ));
    }

    #[test]
    fn updating_an_unknown_client_is_refused() {
        client_scenario()
            .given(vec![])
            .when(ClientCommand::Update(UpdateClient::default()))
            .then_err(ClientError::NotFound);
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        client_scenario()
            .given(vec![registered()])
            .when(ClientCommand::Update(UpdateClient {
                scopes: Some(scopes("read write")),
                ..UpdateClient::default()
            }))
            .then(vec![]);
    }

    #[test]
    fn rotating_a_secret_records_only_its_hash() {
        client_scenario()
            .given(vec![registered()])
            .when(ClientCommand::RotateSecret(
                HashKey::for_tests().hash("second"),
            ))
            .then(vec![Event::ClientSecretRotated(ClientSecretRotated {
                client_id: id(),
                secret_hash: HashKey::for_tests().hash("second"),
            })]);
    }

    #[test]
    fn only_a_self_registered_client_has_a_registration_token_to_rotate() {
        let rotate = || ClientCommand::RotateRegistrationToken(HashKey::for_tests().hash("rat2"));
        client_scenario()
            .given(vec![registered()])
            .when(rotate())
            .then_err(ClientError::NotDynamic);
        let mut cmd = registration();
        cmd.dynamic = Some(DynamicRegistration {
            registration_token_hash: HashKey::for_tests().hash("rat1"),
            initial_access_token: None,
        });
        let given = decide(&ClientState::Unregistered, &ClientCommand::Register(cmd)).unwrap();
        client_scenario().given(given).when(rotate()).then(vec![
            Event::ClientRegistrationTokenRotated(ClientRegistrationTokenRotated {
                client_id: id(),
                registration_token_hash: HashKey::for_tests().hash("rat2"),
            }),
        ]);
    }

    #[test]
    fn rotating_the_secret_of_a_public_client_is_refused() {
        let mut cmd = registration();
        cmd.public = true;
        cmd.secret_hash = None;
        cmd.grant_types = vec![GrantType::AuthorizationCode];
        let given = decide(&ClientState::Unregistered, &ClientCommand::Register(cmd)).unwrap();
        client_scenario()
            .given(given)
            .when(ClientCommand::RotateSecret(HashKey::for_tests().hash("x")))
            .then_err(ClientError::SecretMismatch(
                "public clients have no secret to rotate",
            ));
    }

    #[test]
    fn deleting_a_client_records_it_and_a_second_delete_is_refused() {
        client_scenario()
            .given(vec![registered()])
            .when(ClientCommand::Delete)
            .then(vec![Event::ClientDeleted(ClientDeleted {
                client_id: id(),
            })]);
        client_scenario()
            .given(vec![
                registered(),
                Event::ClientDeleted(ClientDeleted { client_id: id() }),
            ])
            .when(ClientCommand::Delete)
            .then_err(ClientError::Deleted(id()));
    }

    #[test]
    fn the_state_is_the_fold_of_its_events() {
        let mut state = ClientState::default();
        for e in [
            registered(),
            Event::ClientRedirectUriAdded(ClientRedirectUriAdded {
                client_id: id(),
                redirect_uri: uri("http://127.0.0.1/x"),
            }),
            Event::ClientSecretRotated(ClientSecretRotated {
                client_id: id(),
                secret_hash: HashKey::for_tests().hash("new"),
            }),
        ] {
            evolve(&mut state, &e);
        }
        let client = state.active().unwrap();
        assert_eq!(client.redirect_uris.len(), 2);
        assert!(client
            .secret_hash
            .as_ref()
            .unwrap()
            .verify(&HashKey::for_tests(), "new"));
    }
}
