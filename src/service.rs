//! Client administration and audit queries: what the admin API and the CLI share, so that both
//! give the same answers whether the server runs or not.

use crate::actors::{CommandError, ExecuteClientCommand};
use crate::engine::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use domain::client::{ClientCommand, ClientError, RegisterClient, UpdateClient};
use domain::user::ProfileChanges;
use domain::values::{
    AuthMethod, ClientId, GrantType, InvalidValue, RedirectMatching, RedirectUri, Scope,
    SigningAlgorithm, TokenFormat,
};
use domain::{Metadata, RecordedEvent};
use projections::{AuditQuery, ClientView};
use serde::{Deserialize, Serialize};

/// Default access token lifetime, in seconds.
pub const DEFAULT_TTL_SECS: u32 = 3600;

/// Shortest client secret accepted from an operator; SHA-256 protects only secrets of high
/// entropy, so generated ones (256 bits) are the norm.
pub const MIN_SECRET_LEN: usize = 32;

/// Why an administrative request failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input is malformed.
    #[error("{0}")]
    Invalid(String),
    /// No such client.
    #[error("client {0} not found")]
    NotFound(String),
    /// No such user.
    #[error("user not found")]
    UserNotFound,
    /// The request conflicts with the client's state.
    #[error("{0}")]
    Conflict(String),
    /// The server failed.
    #[error("{0}")]
    Internal(String),
    /// The store cannot take writes now; nothing was recorded.
    #[error("{0}")]
    Unavailable(String),
}

impl From<CommandError> for ServiceError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Client(ClientError::NotFound) => ServiceError::NotFound(String::new()),
            CommandError::Client(ClientError::Deleted(id)) => {
                ServiceError::NotFound(id.to_string())
            }
            CommandError::Client(
                e @ (ClientError::AlreadyExists(_)
                | ClientError::RedirectUriAlreadyRegistered(_)
                | ClientError::RedirectUriNotRegistered(_)),
            ) => ServiceError::Conflict(e.to_string()),
            CommandError::Client(e) => ServiceError::Invalid(e.to_string()),
            CommandError::Token(e) => ServiceError::Invalid(e.to_string()),
            CommandError::User(domain::user::UserError::NotFound) => ServiceError::UserNotFound,
            CommandError::User(e @ domain::user::UserError::InvalidProfile(_)) => {
                ServiceError::Invalid(e.to_string())
            }
            CommandError::User(e) => ServiceError::Conflict(e.to_string()),
            CommandError::Session(e) => ServiceError::Conflict(e.to_string()),
            CommandError::Registration(e) => ServiceError::Invalid(e.to_string()),
            CommandError::Keys(e) => ServiceError::Invalid(e),
            CommandError::Store(
                e @ (crate::store::StoreError::Corrupt(_) | crate::store::StoreError::Corrupted(_)),
            ) => ServiceError::Internal(e.to_string()),
            e @ (CommandError::Store(_)
            | CommandError::Unavailable(_)
            | CommandError::Recovering
            | CommandError::ReadModels(_)) => {
                ServiceError::Unavailable(crate::http::error::chain(&e))
            }
        }
    }
}

/// A client registration request (admin API body; built from CLI flags).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    /// Display name.
    pub name: String,
    /// Chosen id; generated when absent.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Chosen secret; generated when absent (confidential clients).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// A public client (no secret).
    #[serde(default)]
    pub public: bool,
    /// Redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Grant types; default `client_credentials` (confidential) or `authorization_code` (public).
    #[serde(default)]
    pub grant_types: Vec<String>,
    /// Scopes (each entry may hold several, space-separated).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `jwt` (default) or `opaque`.
    #[serde(default)]
    pub token_format: Option<String>,
    /// Access token lifetime in seconds (default 3600).
    #[serde(default)]
    pub access_token_ttl: Option<u32>,
    /// May introspect any client's tokens.
    #[serde(default)]
    pub can_introspect: bool,
    /// `exact` (default) or `extended` redirect URI matching.
    #[serde(default)]
    pub redirect_uri_matching: Option<String>,
    /// May use the PKCE `plain` method.
    #[serde(default)]
    pub allow_plain_pkce: bool,
    /// `RS256`, `ES256` or `EdDSA`; default: the server's.
    #[serde(default)]
    pub signing_alg: Option<String>,
    /// `client_secret_basic`, `client_secret_post`, `private_key_jwt` or `none`.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// Its public keys, a JWKS document.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// Issuers whose assertions it may present (default: only itself).
    #[serde(default)]
    pub trusted_issuers: Vec<String>,
    /// Registered as an administrator: the only kind of client that may hold the `admin`
    /// scope.
    #[serde(default)]
    pub admin: bool,
    /// The algorithm of its id_tokens (`RS256`, `ES256` or `EdDSA`); default RS256.
    #[serde(default)]
    pub id_token_signed_response_alg: Option<String>,
    /// Where a logout may send the browser afterwards (matched exactly).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Where back-channel logout notices are POSTed.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// `public` (default) or `pairwise`.
    #[serde(default)]
    pub subject_type: Option<String>,
    /// The sector of a pairwise client (a host name).
    #[serde(default)]
    pub sector_identifier: Option<String>,
    /// Resources (absolute URIs) it may ask tokens for (RFC 8707).
    #[serde(default)]
    pub resources: Vec<String>,
    /// Its authorization requests must be pushed to /par first (RFC 9126).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// Its access tokens must be DPoP-bound (RFC 9449).
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// What it may exchange (RFC 8693): subject_clients, audiences, scopes.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub token_exchange: Option<domain::event::ExchangePolicy>,
    /// The SAML IdP whose assertions it may present (RFC 7522): issuer, certificate_pem,
    /// audience.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub saml_idp: Option<domain::event::SamlIdp>,
    /// Set by dynamic client registration only, never from a request body.
    #[schema(ignore)]
    #[serde(skip)]
    pub dynamic: Option<domain::event::DynamicRegistration>,
    /// The server it was exported from (`authledger import`): recorded with the client.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub imported: Option<domain::event::ImportOrigin>,
    /// An imported bcrypt hash of its secret (`$2a$`, `$2b$` or `$2y$`), kept so that the
    /// secret it has keeps working; only with `imported`, and never with `client_secret`.
    #[serde(default)]
    pub client_secret_bcrypt: Option<String>,
}

/// Changes to a client (admin API body; built from CLI flags).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeClient {
    /// Redirect URIs to add.
    #[serde(default)]
    pub add_redirect_uris: Vec<String>,
    /// Redirect URIs to remove.
    #[serde(default)]
    pub remove_redirect_uris: Vec<String>,
    /// New scopes, replacing the old.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// New grant types, replacing the old.
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// New token format.
    #[serde(default)]
    pub token_format: Option<String>,
    /// New access token lifetime in seconds.
    #[serde(default)]
    pub access_token_ttl: Option<u32>,
    /// New introspection right.
    #[serde(default)]
    pub can_introspect: Option<bool>,
    /// New redirect URI matching rule.
    #[serde(default)]
    pub redirect_uri_matching: Option<String>,
    /// New PKCE `plain` permission.
    #[serde(default)]
    pub allow_plain_pkce: Option<bool>,
    /// New signing algorithm.
    #[serde(default)]
    pub signing_alg: Option<String>,
    /// New authentication method.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// New public keys, replacing the old.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// New trusted issuers, replacing the old.
    #[serde(default)]
    pub trusted_issuers: Option<Vec<String>>,
    /// New id_token algorithm.
    #[serde(default)]
    pub id_token_signed_response_alg: Option<String>,
    /// New post-logout redirect URIs, replacing the old.
    #[serde(default)]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// New back-channel logout URI (empty: none).
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// New subject type.
    #[serde(default)]
    pub subject_type: Option<String>,
    /// New pairwise sector (empty: none).
    #[serde(default)]
    pub sector_identifier: Option<String>,
    /// New resources, replacing the old.
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    /// Whether its requests must be pushed.
    #[serde(default)]
    pub require_pushed_authorization_requests: Option<bool>,
    /// Whether its access tokens must be DPoP-bound.
    #[serde(default)]
    pub dpop_bound_access_tokens: Option<bool>,
    /// New token exchange policy (`null` is no change; remove it with the grant).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub token_exchange: Option<domain::event::ExchangePolicy>,
    /// New trusted SAML IdP.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub saml_idp: Option<domain::event::SamlIdp>,
}

/// A client as the CLI and the admin API print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClientOutput {
    /// Identifier.
    pub client_id: String,
    /// The secret: only in the answer to create and rotate-secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Display name.
    pub name: String,
    /// Public client.
    pub public: bool,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Grant types.
    pub grant_types: Vec<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Token format.
    pub token_format: String,
    /// Access token lifetime in seconds.
    pub access_token_ttl: u32,
    /// May introspect any token.
    pub can_introspect: bool,
    /// Registered as an administrator (may hold the `admin` scope); shown only when it is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    /// Redirect URI matching rule.
    pub redirect_uri_matching: String,
    /// May use PKCE `plain`.
    pub allow_plain_pkce: bool,
    /// Signing algorithm of its JWTs (`default`: the server's).
    #[serde(default)]
    pub signing_alg: String,
    /// How it authenticates.
    #[serde(default)]
    pub token_endpoint_auth_method: String,
    /// Its public keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Issuers whose assertions it may present.
    #[serde(default)]
    pub trusted_issuers: Vec<String>,
    /// The algorithm of its id_tokens.
    #[serde(default)]
    pub id_token_signed_response_alg: String,
    /// Where a logout may send the browser afterwards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_logout_redirect_uris: Vec<String>,
    /// Where back-channel logout notices go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    /// `public` or `pairwise`.
    #[serde(default)]
    pub subject_type: String,
    /// The pairwise sector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sector_identifier: Option<String>,
    /// Resources it may ask tokens for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Its authorization requests must be pushed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_pushed_authorization_requests: bool,
    /// Its access tokens must be DPoP-bound.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
    /// What it may exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub token_exchange: Option<domain::event::ExchangePolicy>,
    /// The SAML IdP it trusts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub saml_idp: Option<domain::event::SamlIdp>,
    /// Registration time (RFC 3339).
    pub registered_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl ClientOutput {
    /// Renders a directory row.
    pub fn from_view(v: &ClientView, secret: Option<String>) -> Self {
        let c = &v.client;
        Self {
            client_id: c.client_id.to_string(),
            client_secret: secret,
            name: c.name.clone(),
            public: c.public,
            redirect_uris: c
                .redirect_uris
                .iter()
                .map(|u| u.as_str().to_owned())
                .collect(),
            grant_types: c
                .grant_types
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect(),
            scopes: c.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            token_format: c.token_format.as_str().to_owned(),
            access_token_ttl: c.access_token_ttl_secs,
            can_introspect: c.can_introspect,
            admin: c.admin,
            redirect_uri_matching: c.redirect_uri_matching.as_str().to_owned(),
            allow_plain_pkce: c.allow_plain_pkce,
            signing_alg: c
                .signing_alg
                .map_or_else(|| "default".to_owned(), |a| a.to_string()),
            id_token_signed_response_alg: c
                .oidc
                .id_token_alg
                .unwrap_or(SigningAlgorithm::RS256)
                .to_string(),
            post_logout_redirect_uris: c
                .oidc
                .post_logout_redirect_uris
                .iter()
                .map(|u| u.as_str().to_owned())
                .collect(),
            backchannel_logout_uri: c
                .oidc
                .backchannel_logout_uri
                .as_ref()
                .map(|u| u.as_str().to_owned()),
            subject_type: c.oidc.subject_type.as_str().to_owned(),
            sector_identifier: c.oidc.sector_identifier.clone(),
            token_endpoint_auth_method: c
                .auth_methods()
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            jwks: c.jwks.clone(),
            trusted_issuers: if c.trusted_issuers.is_empty() {
                vec![c.client_id.to_string()]
            } else {
                c.trusted_issuers.clone()
            },
            resources: c.extensions.resources.clone(),
            require_pushed_authorization_requests: c
                .extensions
                .require_pushed_authorization_requests,
            dpop_bound_access_tokens: c.extensions.dpop_bound_access_tokens,
            token_exchange: c.extensions.token_exchange.clone(),
            saml_idp: c.extensions.saml_idp.clone(),
            registered_at: rfc3339(v.registered_at),
            updated_at: rfc3339(v.updated_at),
        }
    }
}

/// 256 random bits, base64url without padding (43 characters).
pub fn random_secret() -> Result<String, ServiceError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn parse_scopes(items: &[String]) -> Result<Vec<Scope>, ServiceError> {
    let mut out = Vec::new();
    for item in items {
        for s in Scope::parse_list(item).map_err(|e| ServiceError::Invalid(e.0))? {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// Parses every item with a value type's `parse`, as a refusal of the request.
fn parse_all<T>(
    items: &[String],
    parse: fn(&str) -> Result<T, InvalidValue>,
) -> Result<Vec<T>, ServiceError> {
    items
        .iter()
        .map(|s| parse(s).map_err(|e| ServiceError::Invalid(e.0)))
        .collect()
}

/// Parses an optional setting with a value type's `parse`.
fn parse_opt<T>(
    s: &Option<String>,
    parse: fn(&str) -> Result<T, InvalidValue>,
) -> Result<Option<T>, ServiceError> {
    s.as_deref()
        .map(|v| parse(v).map_err(|e| ServiceError::Invalid(e.0)))
        .transpose()
}

/// A client's JWKS: public keys only, each of a kind the server can verify with.
fn check_jwks(jwks: &Option<serde_json::Value>) -> Result<(), ServiceError> {
    let Some(doc) = jwks else { return Ok(()) };
    domain::client::check_jwks(doc).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    crate::jose::KeySet::check_coordinates(doc)
        .map_err(|e| ServiceError::Invalid(format!("invalid JWKS: {e}")))?;
    let given = doc["keys"].as_array().map_or(0, Vec::len);
    let usable = crate::jose::KeySet::parse(doc)
        .map_err(|e| ServiceError::Invalid(format!("invalid JWKS: {e}")))?
        .len();
    if usable != given {
        return Err(ServiceError::Invalid(format!(
            "invalid JWKS: {} of its {given} keys cannot verify signatures (RSA, P-256, P-384 \
             and Ed25519 keys are supported)",
            given - usable
        )));
    }
    Ok(())
}

fn parse_id(id: &str) -> Result<ClientId, ServiceError> {
    ClientId::parse(id).map_err(|e| ServiceError::Invalid(e.0))
}

fn view(engine: &Engine, id: &ClientId) -> Result<std::sync::Arc<ClientView>, ServiceError> {
    engine
        .models
        .clients
        .get(id.as_str())
        .ok_or_else(|| ServiceError::NotFound(id.to_string()))
}

/// Registers a client; the answer holds its secret, the only time it is shown.
pub async fn create_client(
    engine: &Engine,
    req: CreateClient,
    metadata: Metadata,
) -> Result<ClientOutput, ServiceError> {
    let (command, secret) = registration(engine, req)?;
    send_registration(engine, command, secret, metadata).await
}

/// Records a registration built by [`registration`]; answers the client as registered.
pub async fn send_registration(
    engine: &Engine,
    command: RegisterClient,
    secret: Option<String>,
    metadata: Metadata,
) -> Result<ClientOutput, ServiceError> {
    let client_id = command.client_id.clone();
    engine
        .registry
        .send(
            &client_id,
            ExecuteClientCommand {
                command: ClientCommand::Register(command),
                metadata,
            },
        )
        .await?;
    Ok(ClientOutput::from_view(&*view(engine, &client_id)?, secret))
}

/// An import's record of where a client came from: a known source, a short id, and at most
/// 200 notes of at most 500 characters.
fn check_origin(o: &domain::event::ImportOrigin) -> Result<(), ServiceError> {
    let valid = matches!(o.source.as_str(), "hydra" | "keycloak" | "league")
        && !o.source_id.is_empty()
        && o.source_id.len() <= 256
        && matches!(
            o.secret.as_str(),
            "plaintext" | "bcrypt" | "rotated" | "none"
        )
        && o.unmapped.len() <= 200
        && o.unmapped.iter().all(|u| u.len() <= 500);
    if valid {
        Ok(())
    } else {
        Err(ServiceError::Invalid(
            "imported must name a source (hydra, keycloak or league), its source_id (at most 256 \
             characters), secret (plaintext, bcrypt, rotated or none) and at most 200 unmapped \
             notes of at most 500 characters"
                .into(),
        ))
    }
}

/// The registration a request asks for, and the client's new secret (when it gets one).
pub fn registration(
    engine: &Engine,
    req: CreateClient,
) -> Result<(RegisterClient, Option<String>), ServiceError> {
    let client_id = match &req.client_id {
        Some(id) => parse_id(id)?,
        None => parse_id(&uuid::Uuid::now_v7().simple().to_string())?,
    };
    let method = parse_opt(&req.token_endpoint_auth_method, AuthMethod::parse)?;
    check_jwks(&req.jwks)?;
    let by_key = method == Some(AuthMethod::PrivateKeyJwt);
    if let Some(origin) = &req.imported {
        check_origin(origin)?;
    }
    let imported_hash = match (&req.client_secret_bcrypt, &req.imported) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ServiceError::Invalid(
                "client_secret_bcrypt is for imported clients only (with imported)".into(),
            ))
        }
        (Some(_), Some(_)) if req.admin => {
            return Err(ServiceError::Invalid(
                "an administrator client gets a secret of this server's, not an imported hash"
                    .into(),
            ))
        }
        (Some(_), Some(_)) if req.public || by_key || req.client_secret.is_some() => {
            return Err(ServiceError::Invalid(
                "client_secret_bcrypt goes with a confidential client that has no other secret"
                    .into(),
            ))
        }
        (Some(h), Some(_)) => Some(
            domain::values::SecretHash::imported_bcrypt(h)
                .map_err(|e| ServiceError::Invalid(e.0))?,
        ),
    };
    // An imported secret is already deployed: it is kept whatever its length, and the
    // import's report asks for a rotation when it is short.
    let min_len = if req.imported.is_some() {
        1
    } else {
        MIN_SECRET_LEN
    };
    let secret = match (req.public, req.client_secret) {
        (false, None) if imported_hash.is_some() => None,
        (false, Some(_)) if by_key => {
            return Err(ServiceError::Invalid(
                "a private_key_jwt client authenticates with its keys and has no secret; drop --secret".into(),
            ))
        }
        (false, None) if by_key => None,
        (true, Some(_)) => {
            return Err(ServiceError::Invalid(
                "a public client has no secret; drop --secret or --public".into(),
            ))
        }
        (true, None) => None,
        (false, Some(s)) if s.len() < min_len => {
            return Err(ServiceError::Invalid(format!(
                "a client secret must be at least {MIN_SECRET_LEN} characters; omit it to have one generated"
            )))
        }
        (false, Some(s)) => Some(s),
        (false, None) => Some(random_secret()?),
    };
    let grant_types = if req.grant_types.is_empty() {
        vec![if req.public {
            GrantType::AuthorizationCode
        } else {
            GrantType::ClientCredentials
        }]
    } else {
        parse_all(&req.grant_types, GrantType::parse)?
    };
    if let Some(idp) = &req.saml_idp {
        crate::saml::certificate_der(&idp.certificate_pem).map_err(|_| {
            ServiceError::Invalid(
                "saml_idp.certificate_pem must be one PEM CERTIFICATE (the IdP's signing certificate)"
                    .into(),
            )
        })?;
    }
    let key = hash_key(engine)?;
    let command = RegisterClient {
        client_id: client_id.clone(),
        name: req.name,
        public: req.public,
        secret_hash: imported_hash.or_else(|| secret.as_deref().map(|s| key.hash(s))),
        redirect_uris: parse_all(&req.redirect_uris, RedirectUri::parse)?,
        grant_types,
        scopes: parse_scopes(&req.scopes)?,
        token_format: parse_opt(&req.token_format, TokenFormat::parse)?.unwrap_or_default(),
        access_token_ttl_secs: req.access_token_ttl.unwrap_or(DEFAULT_TTL_SECS),
        can_introspect: req.can_introspect,
        redirect_uri_matching: parse_opt(&req.redirect_uri_matching, RedirectMatching::parse)?
            .unwrap_or_default(),
        allow_plain_pkce: req.allow_plain_pkce,
        signing_alg: parse_opt(&req.signing_alg, SigningAlgorithm::parse)?,
        auth_method: method,
        jwks: req.jwks,
        trusted_issuers: req.trusted_issuers,
        admin: req.admin,
        oidc: domain::event::OidcClientSettings {
            id_token_alg: parse_opt(&req.id_token_signed_response_alg, SigningAlgorithm::parse)?,
            post_logout_redirect_uris: parse_all(
                &req.post_logout_redirect_uris,
                RedirectUri::parse,
            )?,
            backchannel_logout_uri: parse_opt(&req.backchannel_logout_uri, RedirectUri::parse)?,
            subject_type: parse_opt(&req.subject_type, domain::event::SubjectType::parse)?
                .unwrap_or_default(),
            sector_identifier: req.sector_identifier.clone(),
        },
        dynamic: req.dynamic.clone(),
        imported: req.imported.clone(),
        extensions: domain::event::ExtensionSettings {
            resources: req.resources.clone(),
            require_pushed_authorization_requests: req.require_pushed_authorization_requests,
            dpop_bound_access_tokens: req.dpop_bound_access_tokens,
            token_exchange: req.token_exchange.clone(),
            saml_idp: req.saml_idp.clone(),
        },
    };
    Ok((command, secret))
}

/// A client's OpenID Connect settings with the changes of `req`, if it changes any.
fn changed_oidc(
    engine: &Engine,
    client_id: &ClientId,
    req: &ChangeClient,
) -> Result<Option<domain::event::OidcClientSettings>, ServiceError> {
    if req.id_token_signed_response_alg.is_none()
        && req.post_logout_redirect_uris.is_none()
        && req.backchannel_logout_uri.is_none()
        && req.subject_type.is_none()
        && req.sector_identifier.is_none()
    {
        return Ok(None);
    }
    let mut oidc = view(engine, client_id)?.client.oidc.clone();
    if let Some(alg) = parse_opt(&req.id_token_signed_response_alg, SigningAlgorithm::parse)? {
        oidc.id_token_alg = Some(alg);
    }
    if let Some(uris) = &req.post_logout_redirect_uris {
        oidc.post_logout_redirect_uris = parse_all(uris, RedirectUri::parse)?;
    }
    if let Some(uri) = &req.backchannel_logout_uri {
        oidc.backchannel_logout_uri = match uri.as_str() {
            "" => None,
            u => Some(RedirectUri::parse(u).map_err(|e| ServiceError::Invalid(e.0))?),
        };
    }
    if let Some(t) = parse_opt(&req.subject_type, domain::event::SubjectType::parse)? {
        oidc.subject_type = t;
    }
    if let Some(sector) = &req.sector_identifier {
        oidc.sector_identifier = Some(sector.clone()).filter(|s| !s.is_empty());
    }
    Ok(Some(oidc))
}

/// Changes a client.
pub async fn update_client(
    engine: &Engine,
    id: &str,
    req: ChangeClient,
    metadata: Metadata,
) -> Result<ClientOutput, ServiceError> {
    let client_id = parse_id(id)?;
    refuse_self(&metadata, &client_id, "update")?;
    check_jwks(&req.jwks)?;
    let oidc = changed_oidc(engine, &client_id, &req)?;
    let mut extensions = view(engine, &client_id)?.client.extensions.clone();
    if let Some(r) = &req.resources {
        extensions.resources = r.clone();
    }
    if let Some(b) = req.require_pushed_authorization_requests {
        extensions.require_pushed_authorization_requests = b;
    }
    if let Some(b) = req.dpop_bound_access_tokens {
        extensions.dpop_bound_access_tokens = b;
    }
    if let Some(p) = &req.token_exchange {
        extensions.token_exchange = Some(p.clone());
    }
    if let Some(idp) = &req.saml_idp {
        crate::saml::certificate_der(&idp.certificate_pem).map_err(|_| {
            ServiceError::Invalid(
                "saml_idp.certificate_pem must be one PEM CERTIFICATE (the IdP's signing certificate)"
                    .into(),
            )
        })?;
        extensions.saml_idp = Some(idp.clone());
    }
    let extensions = Some(extensions);
    let command = ClientCommand::Update(UpdateClient {
        add_redirect_uris: parse_all(&req.add_redirect_uris, RedirectUri::parse)?,
        remove_redirect_uris: parse_all(&req.remove_redirect_uris, RedirectUri::parse)?,
        scopes: req.scopes.as_deref().map(parse_scopes).transpose()?,
        grant_types: req
            .grant_types
            .as_deref()
            .map(|g| parse_all(g, GrantType::parse))
            .transpose()?,
        token_format: parse_opt(&req.token_format, TokenFormat::parse)?,
        access_token_ttl_secs: req.access_token_ttl,
        can_introspect: req.can_introspect,
        redirect_uri_matching: parse_opt(&req.redirect_uri_matching, RedirectMatching::parse)?,
        allow_plain_pkce: req.allow_plain_pkce,
        signing_alg: parse_opt(&req.signing_alg, SigningAlgorithm::parse)?,
        auth_method: parse_opt(&req.token_endpoint_auth_method, AuthMethod::parse)?,
        jwks: req.jwks,
        trusted_issuers: req.trusted_issuers,
        oidc,
        extensions,
    });
    send(engine, &client_id, command, metadata).await?;
    Ok(ClientOutput::from_view(&*view(engine, &client_id)?, None))
}

/// Gives a confidential client a new secret; the old one stops working at once.
pub async fn rotate_secret(
    engine: &Engine,
    id: &str,
    metadata: Metadata,
) -> Result<ClientOutput, ServiceError> {
    let client_id = parse_id(id)?;
    let secret = random_secret()?;
    let command = ClientCommand::RotateSecret(hash_key(engine)?.hash(&secret));
    send(engine, &client_id, command, metadata).await?;
    Ok(ClientOutput::from_view(
        &*view(engine, &client_id)?,
        Some(secret),
    ))
}

/// Deletes a client; its tokens stop being active.
pub async fn delete_client(
    engine: &Engine,
    id: &str,
    metadata: Metadata,
) -> Result<(), ServiceError> {
    let client_id = parse_id(id)?;
    refuse_self(&metadata, &client_id, "delete")?;
    send(engine, &client_id, ClientCommand::Delete, metadata).await?;
    Ok(())
}

/// An admin client changing or deleting its own registration could take its own rights away
/// (its admin scope, its grant, its way to authenticate) and lock out whoever holds only its
/// credentials; another admin client, or the CLI, can. Rotating its own secret stays allowed.
fn refuse_self(metadata: &Metadata, client_id: &ClientId, what: &str) -> Result<(), ServiceError> {
    match &metadata.caused_by {
        domain::Cause::Admin(admin) if *admin == client_id.as_str() => {
            Err(ServiceError::Conflict(format!(
                "an admin client cannot {what} itself; {what} it with another admin client or \
                 with `authledger client {what}`"
            )))
        }
        _ => Ok(()),
    }
}

async fn send(
    engine: &Engine,
    client_id: &ClientId,
    command: ClientCommand,
    metadata: Metadata,
) -> Result<(), ServiceError> {
    engine
        .registry
        .send(client_id, ExecuteClientCommand { command, metadata })
        .await
        .map_err(|e| match ServiceError::from(e) {
            ServiceError::NotFound(_) => ServiceError::NotFound(client_id.to_string()),
            other => other,
        })?;
    Ok(())
}

/// One client.
pub fn show_client(engine: &Engine, id: &str) -> Result<ClientOutput, ServiceError> {
    let client_id = parse_id(id)?;
    Ok(ClientOutput::from_view(&*view(engine, &client_id)?, None))
}

/// A token that was active at a past moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenAsOf {
    /// Token id.
    pub jti: String,
    /// Its subject.
    pub sub: String,
    /// Granted scopes.
    pub scope: String,
    /// The grant that issued it.
    pub grant_type: String,
    /// Issued at (RFC 3339).
    pub issued_at: String,
    /// Expires at (RFC 3339).
    pub expires_at: String,
}

/// A client as it was at a past moment, and its tokens active then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClientAsOf {
    /// The moment (RFC 3339).
    pub as_of: String,
    /// The last log position the answer includes.
    pub position: u64,
    /// The client's configuration then; `None` if it was not registered, or deleted.
    pub client: Option<ClientOutput>,
    /// Access tokens active then (not expired, revoked or withdrawn), oldest first.
    pub active_tokens: Vec<TokenAsOf>,
}

/// The key of the hashes at rest; without it (no KEK to be found) nothing can be recorded.
fn hash_key(engine: &Engine) -> Result<&domain::values::HashKey, ServiceError> {
    engine
        .hash_key()
        .map_err(|e| ServiceError::Internal(format!("the key of the hashes at rest: {e}")))
}

fn engine_error(e: crate::engine::EngineError) -> ServiceError {
    match e {
        crate::engine::EngineError::Invalid(m) => ServiceError::Invalid(m),
        other => ServiceError::Internal(other.to_string()),
    }
}

/// Answers what a client was at `as_of` from the view of that moment (built on first use).
pub fn client_as_of(
    engine: &Engine,
    id: &str,
    as_of: &str,
    progress: impl FnMut(u64),
) -> Result<ClientAsOf, ServiceError> {
    let client_id = parse_id(id)?;
    let at = parse_time(as_of)?;
    let view = crate::timetravel::open_or_build(engine, at, progress).map_err(engine_error)?;
    let internal = |e: projections::ProjectionError| ServiceError::Internal(e.to_string());
    let client = view
        .models
        .clients
        .get(client_id.as_str())
        .map(|v| ClientOutput::from_view(&v, None));
    let now = at.unix_timestamp();
    let mut active_tokens = Vec::new();
    let mut cursor = None;
    loop {
        let page = view
            .models
            .audit
            .query(
                &AuditQuery {
                    filter: projections::AuditFilter {
                        client: Some(client_id.to_string()),
                        types: vec!["AccessTokenIssued".into()],
                        ..Default::default()
                    },
                    upto: Some(view.info.position),
                    cursor,
                    limit: 1000,
                    ..Default::default()
                },
                &*engine.store,
            )
            .map_err(internal)?;
        for e in &page.events {
            let domain::Event::AccessTokenIssued(t) = &e.event else {
                continue;
            };
            let Some(token) = view.models.tokens.by_jti(&t.jti).map_err(internal)? else {
                continue;
            };
            if token.is_active(now) {
                let r = &token.record;
                let at = |secs: i64| {
                    time::OffsetDateTime::from_unix_timestamp(secs)
                        .map(rfc3339)
                        .unwrap_or_default()
                };
                active_tokens.push(TokenAsOf {
                    jti: r.jti.to_string(),
                    sub: r.subject.clone(),
                    scope: domain::values::join_scopes(&r.scopes),
                    grant_type: r.grant_type.as_str().to_owned(),
                    issued_at: at(r.issued_at),
                    expires_at: at(r.expires_at),
                });
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(ClientAsOf {
        as_of: rfc3339(at),
        position: view.info.position,
        client,
        active_tokens,
    })
}

/// Every client, by id.
pub fn list_clients(engine: &Engine) -> Vec<ClientOutput> {
    engine
        .models
        .clients
        .list()
        .iter()
        .map(|v| ClientOutput::from_view(v, None))
        .collect()
}

/// Audit query parameters as the CLI and the admin API take them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Client id.
    pub client: Option<String>,
    /// Subject.
    pub subject: Option<String>,
    /// Event types (any of).
    #[serde(default)]
    pub types: Vec<String>,
    /// Request id (the `X-Request-Id` of the request that caused the events).
    pub request_id: Option<String>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// RFC 3339 time or Unix seconds.
    pub since: Option<String>,
    /// RFC 3339 time or Unix seconds.
    pub until: Option<String>,
    /// Cursor of an oldest-first page: only events after this position.
    pub after: Option<u64>,
    /// Cursor of a newest-first page: only events before this position.
    pub before: Option<u64>,
    /// `asc` (oldest first, the default) or `desc` (newest first).
    pub order: Option<String>,
    /// Page size (default 100, at most 10,000).
    pub limit: Option<usize>,
    /// Answer from the view of this moment (RFC 3339 or Unix seconds), as the log was then.
    pub as_of: Option<String>,
}

impl AuditParams {
    /// The filter part, as the live stream takes it too.
    pub fn filter(&self) -> Result<projections::AuditFilter, ServiceError> {
        for t in &self.types {
            if !domain::Event::TYPE_NAMES.contains(&t.as_str()) {
                return Err(ServiceError::Invalid(format!(
                    "unknown event type {t:?}; known types: {}",
                    domain::Event::TYPE_NAMES.join(", ")
                )));
            }
        }
        Ok(projections::AuditFilter {
            client: self.client.clone(),
            subject: self.subject.clone(),
            types: self.types.clone(),
            request_id: self.request_id.clone(),
            correlation_id: self.correlation_id.clone(),
        })
    }

    /// The whole query, with `upto` as the last position it may show.
    pub fn query(&self, upto: Option<u64>) -> Result<AuditQuery, ServiceError> {
        let order = match self.order.as_deref() {
            None | Some("asc") => projections::Order::Ascending,
            Some("desc") => projections::Order::Descending,
            Some(other) => {
                return Err(ServiceError::Invalid(format!(
                    "order {other:?} is neither asc nor desc"
                )))
            }
        };
        let cursor = match (order, self.after, self.before) {
            (projections::Order::Ascending, c, None) => c,
            (projections::Order::Descending, None, c) => c,
            _ => {
                return Err(ServiceError::Invalid(
                    "use after= with order asc and before= with order desc".into(),
                ))
            }
        };
        Ok(AuditQuery {
            filter: self.filter()?,
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
            upto,
            cursor,
            order,
            limit: self.limit.unwrap_or(100).clamp(1, 10_000),
        })
    }
}

/// One page of the audit trail.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditOutput {
    /// Events in global order.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<RecordedEvent>,
    /// Pass as `after` (oldest first) or `before` (newest first) for the next page.
    pub next_cursor: Option<u64>,
    /// The last position the query could see: a follower resumes after it.
    #[serde(default)]
    pub head_position: u64,
}

/// Parses an RFC 3339 time or Unix seconds.
pub fn parse_time(s: &str) -> Result<time::OffsetDateTime, ServiceError> {
    if let Ok(secs) = s.parse::<i64>() {
        return time::OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|e| ServiceError::Invalid(format!("time {s:?}: {e}")));
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|e| {
        ServiceError::Invalid(format!(
            "time {s:?} is neither RFC 3339 (2026-11-23T12:00:00Z) nor Unix seconds: {e}"
        ))
    })
}

/// How long a query of the trail waits for the audit indexes to reach what was acknowledged
/// before it (they are milliseconds behind, except while a large batch is applied).
const AUDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Answers an audit query from the audit indexes.
pub fn audit_query(engine: &Engine, p: &AuditParams) -> Result<AuditOutput, ServiceError> {
    let internal = |e: projections::ProjectionError| ServiceError::Internal(e.to_string());
    let view = match &p.as_of {
        Some(t) => Some(
            crate::timetravel::open_or_build(engine, parse_time(t)?, |_| {})
                .map_err(engine_error)?,
        ),
        None => None,
    };
    if view.is_none() {
        // Everything acknowledged before this query is in the answer.
        engine
            .audit
            .wait_for_writes(AUDIT_WAIT)
            .map_err(ServiceError::Unavailable)?;
    }
    let (audit, head) = match &view {
        Some(v) => (&v.models.audit, v.info.position),
        // The audit thread may apply a group before the log calls it durable (the commit
        // hook runs first), and the log shows no event past its durable head: a head past it
        // would hide that event from this page and from a follower resuming after the page.
        None => (
            &engine.models.audit,
            engine
                .models
                .audit
                .checkpoint()
                .map_err(internal)?
                .min(crate::store::EventStore::head_position(&*engine.store)),
        ),
    };
    let q = p.query(Some(head))?;
    let page = audit.query(&q, &*engine.store).map_err(internal)?;
    Ok(AuditOutput {
        events: page.events.into_iter().map(redact).collect(),
        next_cursor: page.next_cursor,
        head_position: head,
    })
}

/// The trail shows who did what, not credentials: a password hash, though salted and slow to
/// attack, is replaced (the stored event keeps it; `replay` needs it).
pub fn redact(mut e: RecordedEvent) -> RecordedEvent {
    use domain::event::Event;
    let hidden = || domain::values::PasswordHash::parse(REDACTED_HASH).ok();
    match &mut e.event {
        Event::UserRegistered(u) => {
            if let Some(h) = hidden() {
                u.password_hash = h;
            }
        }
        Event::UserPasswordChanged(u) => {
            if let Some(h) = hidden() {
                u.password_hash = h;
            }
        }
        // An imported bcrypt hash is unkeyed: a copy could be attacked offline.
        Event::ClientRegistered(c)
            if c.secret_hash
                .as_ref()
                .is_some_and(|h| h.scheme() == domain::values::HashScheme::Bcrypt) =>
        {
            c.secret_hash = domain::values::SecretHash::imported_bcrypt(REDACTED_BCRYPT).ok();
        }
        _ => {}
    }
    e
}

/// What the audit trail shows in place of an imported bcrypt hash (a valid form, cost 4,
/// that no secret is likely to match).
pub const REDACTED_BCRYPT: &str = "$2b$04$redactedredactedredactedredactedredactedredactedredac";

/// What the audit trail shows in place of a password hash.
pub const REDACTED_HASH: &str = "$argon2id$redacted";

/// A user registration (admin API body; built from CLI input): a username, a password and,
/// optionally, profile claims (an empty one is the same as none).
#[derive(Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Unique username.
    pub username: String,
    /// The password; hashed with argon2id at once and never stored or logged.
    pub password: String,
    /// Full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Preferred username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the address was checked (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// BCP 47 language tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

impl CreateUser {
    /// The profile claims it sets.
    pub fn profile(&self) -> ProfileChanges {
        ProfileChanges {
            name: self.name.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            preferred_username: self.preferred_username.clone(),
            email: self.email.clone(),
            email_verified: self.email_verified,
            locale: self.locale.clone(),
        }
    }
}

impl std::fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A user as the CLI and the admin API print it: its profile claims (OpenID Connect Core
/// §5.1; absent ones left out) and never its password or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserOutput {
    /// Id.
    pub user_id: String,
    /// Username.
    pub username: String,
    /// Profile claims.
    #[serde(flatten)]
    #[schema(value_type = crate::http::openapi::Profile)]
    pub profile: domain::event::UserProfile,
    /// Registration time (RFC 3339).
    pub registered_at: String,
    /// When the profile last changed (RFC 3339); the registration time if it never did.
    pub updated_at: String,
    /// Locked by an administrator.
    #[serde(default)]
    pub locked: bool,
}

impl UserOutput {
    /// Renders a directory row.
    pub fn from_view(v: &projections::UserView) -> Self {
        let registered_at = rfc3339(v.registered_at);
        Self {
            user_id: v.user_id.to_string(),
            username: v.username.to_string(),
            profile: v.profile.clone(),
            updated_at: if v.profile_updated_at > 0 {
                rfc3339_secs(v.profile_updated_at)
            } else {
                registered_at.clone()
            },
            registered_at,
            locked: v.disabled,
        }
    }
}

/// A user named by its username or its id.
fn find_user(
    engine: &Engine,
    username_or_id: &str,
) -> Result<std::sync::Arc<projections::UserView>, ServiceError> {
    let users = &engine.models.users;
    users
        .by_username(username_or_id)
        .or_else(|| {
            domain::values::UserId::parse(username_or_id)
                .ok()
                .and_then(|id| users.get(&id))
        })
        .ok_or(ServiceError::UserNotFound)
}

fn user_output(engine: &Engine, id: &domain::values::UserId) -> Result<UserOutput, ServiceError> {
    let view = engine
        .models
        .users
        .get(id)
        .ok_or_else(|| ServiceError::Internal("the user is not in the directory".into()))?;
    Ok(UserOutput::from_view(&view))
}

async fn change_profile(
    engine: &Engine,
    user_id: domain::values::UserId,
    changes: ProfileChanges,
    metadata: Metadata,
) -> Result<(), ServiceError> {
    engine
        .users()
        .send(crate::actors::ChangeUserProfile {
            user_id,
            changes,
            now: engine.clock.unix_now(),
            metadata,
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
    Ok(())
}

/// Registers a user.
pub async fn create_user(
    engine: &Engine,
    req: CreateUser,
    metadata: Metadata,
) -> Result<UserOutput, ServiceError> {
    let username =
        domain::values::Username::parse(&req.username).map_err(|e| ServiceError::Invalid(e.0))?;
    // Checked before anything is recorded: a refused profile registers no user.
    let profile = req.profile();
    profile
        .apply(&domain::event::UserProfile::default())
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let hash = hash_password(req.password).await?;
    let user_id = domain::values::UserId(uuid::Uuid::now_v7());
    engine
        .users()
        .send(crate::actors::ExecuteUserCommand {
            user_id,
            command: domain::user::UserCommand::Register {
                user_id,
                username,
                password_hash: hash,
                username_taken: false,
            },
            metadata: metadata.clone(),
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
    // Two events, UserRegistered then UserProfileChanged: the profile is changed as any
    // later change is, and a password never travels with it.
    if !profile.is_empty() {
        change_profile(engine, user_id, profile, metadata).await?;
    }
    user_output(engine, &user_id)
}

/// Changes a user's profile claims: each one given replaces the current one, an empty string
/// clears it, the others stay. Recording nothing when nothing changes.
pub async fn update_user_profile(
    engine: &Engine,
    username_or_id: &str,
    changes: ProfileChanges,
    metadata: Metadata,
) -> Result<UserOutput, ServiceError> {
    let user_id = find_user(engine, username_or_id)?.user_id;
    change_profile(engine, user_id, changes, metadata).await?;
    user_output(engine, &user_id)
}

/// Sends a user command as an administrator would.
async fn user_command(
    engine: &Engine,
    user_id: domain::values::UserId,
    command: domain::user::UserCommand,
    metadata: Metadata,
) -> Result<(), ServiceError> {
    engine
        .users()
        .send(crate::actors::ExecuteUserCommand {
            user_id,
            command,
            metadata,
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
    Ok(())
}

/// A password hashed with argon2id, off the async threads (it takes tens of milliseconds).
async fn hash_password(password: String) -> Result<domain::values::PasswordHash, ServiceError> {
    actix_web::web::block(move || crate::passwords::hash(&password))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
        .map_err(|e| ServiceError::Invalid(e.to_string()))
}

/// What an administrator does to a user's access (admin API body, CLI, console): lock or
/// unlock the account, end its sessions, set a new password; at least one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserAccess {
    /// `true` locks the account (no sign-in, no password grant, its sessions and grants
    /// end), `false` unlocks it.
    #[serde(default)]
    pub locked: Option<bool>,
    /// Ends every session the user has now.
    #[serde(default)]
    pub end_sessions: bool,
    /// A new password (argon2id-hashed here; the user's sessions end).
    #[serde(default)]
    pub password: Option<String>,
}

/// Applies `access` to a user, in this order: the password, the lock, the sessions; each step
/// is its own event (a failing step leaves the earlier ones recorded). Answers the user then.
pub async fn user_access(
    engine: &Engine,
    username_or_id: &str,
    access: UserAccess,
    metadata: Metadata,
) -> Result<UserOutput, ServiceError> {
    use domain::user::UserCommand;
    if access.locked.is_none() && !access.end_sessions && access.password.is_none() {
        return Err(ServiceError::Invalid(
            "give locked, end_sessions or password".into(),
        ));
    }
    let user_id = find_user(engine, username_or_id)?.user_id;
    if let Some(password) = access.password {
        let hash = hash_password(password).await?;
        user_command(
            engine,
            user_id,
            UserCommand::ChangePassword(hash),
            metadata.clone(),
        )
        .await?;
    }
    if let Some(locked) = access.locked {
        user_command(
            engine,
            user_id,
            UserCommand::SetDisabled(locked),
            metadata.clone(),
        )
        .await?;
    }
    if access.end_sessions {
        user_command(engine, user_id, UserCommand::EndSessions, metadata).await?;
    }
    user_output(engine, &user_id)
}

/// One user, by username or id.
pub fn show_user(engine: &Engine, username_or_id: &str) -> Result<UserOutput, ServiceError> {
    Ok(UserOutput::from_view(&*find_user(engine, username_or_id)?))
}

/// Every user, by username.
pub fn list_users(engine: &Engine) -> Vec<UserOutput> {
    engine
        .models
        .users
        .list()
        .iter()
        .map(|v| UserOutput::from_view(v))
        .collect()
}

/// A signing key as the CLI and the admin API print it (public facts only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyOutput {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub algorithm: String,
    /// `pending`, `active`, `superseded` or `retired`.
    pub status: String,
    /// `generated`, `pem_file` or `imported`.
    pub origin: String,
    /// Generated at (RFC 3339).
    pub created_at: String,
    /// Signs from (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_from: Option<String>,
    /// Stopped signing at (RFC 3339), when a successor took over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_at: Option<String>,
    /// When the last token it signed expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_token_expires_at: Option<String>,
    /// Left the JWKS at (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
}

/// A time as the CLI and the admin API print it.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn rfc3339_secs(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(rfc3339)
        .unwrap_or_default()
}

/// Every signing key of the log, newest last.
pub fn list_keys(engine: &Engine) -> Result<Vec<KeyOutput>, ServiceError> {
    use crate::store::EventStore;
    let events = engine
        .store
        .read_stream(domain::event::KEYS_STREAM, 1)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let ring = domain::keys::KeyRing::from_events(events.iter().map(|e| &e.event));
    let now = engine.clock.unix_now();
    ring.keys
        .iter()
        .map(|k| {
            Ok(KeyOutput {
                kid: k.kid.clone(),
                algorithm: k.algorithm.to_string(),
                status: ring.status(k, now).as_str().to_owned(),
                origin: k.origin.as_str().to_owned(),
                created_at: rfc3339_secs(k.created_at),
                active_from: k.active_from.map(rfc3339_secs),
                superseded_at: ring.superseded_at(k, now).map(rfc3339_secs),
                last_token_expires_at: engine
                    .models
                    .tokens
                    .key_last_expiry(&k.kid)
                    .map_err(|e| ServiceError::Internal(e.to_string()))?
                    .map(rfc3339_secs),
                retired_at: k.retired_at.map(rfc3339_secs),
            })
        })
        .collect()
}

/// What `keys rotate` asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeys {
    /// Algorithms to rotate (empty: all).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Seconds between publication and first signature.
    #[serde(default)]
    pub lead_secs: Option<u64>,
}

/// Default publication lead time: twice the JWKS cache lifetime (`max-age=300`), so a resource
/// server that fetched the JWKS just before the rotation refetches it before the new key signs.
pub const DEFAULT_KEY_LEAD_SECS: u64 = 600;

/// Generates a successor for each algorithm asked for; answers every key.
pub async fn rotate_keys(
    engine: &Engine,
    keys: &actix::Addr<crate::actors::KeyActor>,
    req: RotateKeys,
    metadata: Metadata,
) -> Result<Vec<KeyOutput>, ServiceError> {
    let algorithms = parse_all(&req.algorithms, SigningAlgorithm::parse)?;
    let lead = req.lead_secs.unwrap_or(DEFAULT_KEY_LEAD_SECS);
    if lead > 30 * 86_400 {
        return Err(ServiceError::Invalid(
            "the lead time is at most 30 days".into(),
        ));
    }
    keys.send(crate::actors::ExecuteKeyRequest {
        request: crate::actors::KeyRequest::Rotate {
            algorithms,
            lead_secs: lead as i64,
        },
        metadata,
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("the key actor stopped: {e}")))??;
    list_keys(engine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventStore;
    use domain::event::{ChainVerified, Event, INTEGRITY_STREAM};
    use std::time::Duration;

    #[test]
    fn an_audit_page_never_reaches_past_the_logs_durable_head() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), Duration::from_secs(5)).unwrap();
        let version = engine.store.stream_version(INTEGRITY_STREAM).unwrap();
        let walked = crate::store::NewEvent {
            event: Event::ChainVerified(ChainVerified {
                events: 1,
                head_position: 1,
                head_hash: "0".repeat(64),
                millis: 1,
            }),
            metadata: domain::Metadata::system(),
        };
        let appended = engine
            .store
            .append(INTEGRITY_STREAM, version, vec![walked])
            .wait()
            .unwrap();
        engine
            .audit
            .wait_for_writes(Duration::from_secs(10))
            .unwrap();
        let head = engine.store.head_position();
        // What the audit thread does when it is handed a group before the log calls it
        // durable: its postings hold an event the log does not show yet.
        let mut ahead = (**appended.last().unwrap()).clone();
        ahead.position = head + 1;
        ahead.version += 1;
        engine.models.audit.apply(&[ahead]).unwrap();
        assert_eq!(engine.models.audit.checkpoint().unwrap(), head + 1);
        let page = audit_query(&engine, &AuditParams::default()).unwrap();
        // A follower resumes after head_position: the event at head + 1 must come to it then.
        assert_eq!(page.head_position, head);
        assert!(page.events.iter().all(|e| e.position <= head));
    }
}

/// A new initial access token for dynamic client registration: its value is shown here only.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InitialAccessTokenOutput {
    /// Its id (in the events that issue and use it).
    pub id: String,
    /// The token, to send as `Authorization: Bearer` to `POST /register`.
    pub initial_access_token: String,
    /// Registrations it may make.
    pub max_uses: u32,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

/// How an admin asks for an initial access token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueInitialAccessToken {
    /// Lifetime in seconds (default one day).
    #[serde(default)]
    pub expires_in: Option<u32>,
    /// Registrations it may make (default 1).
    #[serde(default)]
    pub max_uses: Option<u32>,
}

/// Issues an initial access token (RFC 7591 §3): recorded as its keyed hash only.
pub async fn issue_initial_access_token(
    engine: &Engine,
    req: IssueInitialAccessToken,
    metadata: Metadata,
) -> Result<InitialAccessTokenOutput, ServiceError> {
    use domain::registration::RegistrationTokenCommand;
    let token = random_secret()?;
    let id = uuid::Uuid::now_v7();
    let now = engine.clock.unix_now();
    let ttl = req.expires_in.unwrap_or(86_400);
    let max_uses = req.max_uses.unwrap_or(1);
    engine
        .users()
        .send(crate::actors::ExecuteRegistrationTokenCommand {
            id,
            command: RegistrationTokenCommand::Issue {
                id,
                token_hash: hash_key(engine)?.hash(&token),
                ttl_secs: ttl,
                max_uses,
                now,
            },
            metadata,
        })
        .await
        .map_err(|e| ServiceError::Unavailable(e.to_string()))??;
    let expires_at = time::OffsetDateTime::from_unix_timestamp(now + i64::from(ttl))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    Ok(InitialAccessTokenOutput {
        id: id.to_string(),
        initial_access_token: token,
        max_uses,
        expires_at,
    })
}
