//! Dynamic client registration: `POST /register` (RFC 7591, with the metadata of OpenID
//! Connect Dynamic Client Registration 1.0) and the client configuration endpoint
//! `GET|PUT|DELETE /register/{client_id}` (RFC 7592).
//!
//! A registration needs an initial access token an admin issued (`authledger
//! registration-token create`), unless the server runs with `--open-registration`; either way
//! it is limited per source address. What a client may register for is the server's policy:
//! grant types and scopes from a list, redirect URIs that are `https` (or `http` on a loopback
//! address, and private-use schemes for native apps), never an admin or an introspector. The
//! registration is a `ClientRegistered` whose `dynamic` member says so; its registration
//! access token is kept as a keyed hash only.

use super::error::OAuthError;
use super::{request_metadata, AppState};
use crate::service::{self, ClientOutput, CreateClient, ServiceError};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use domain::client::{ClientCommand, ClientError, ClientState};
use domain::event::DynamicRegistration;
use domain::oauth::ErrorCode;
use domain::values::{AuthMethod, GrantType, RedirectUri, Scope, SigningAlgorithm};
use domain::Cause;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

/// What `POST /register` lets a client register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationPolicy {
    /// Registration without an initial access token.
    pub open: bool,
    /// Grant types a client may ask for.
    pub grant_types: Vec<GrantType>,
    /// Scopes a client may ask for.
    pub scopes: Vec<Scope>,
}

impl Default for RegistrationPolicy {
    fn default() -> Self {
        Self {
            open: false,
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: ["openid", "profile", "email", "offline_access"]
                .iter()
                .filter_map(|s| Scope::parse(s).ok())
                .collect(),
        }
    }
}

fn metadata_error(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

fn redirect_error(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRedirectUri, description)
}

/// 401 `invalid_token` with a Bearer challenge (RFC 6750 §3.1).
fn bad_token(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidToken, description)
}

/// The bearer token of the request, if it sent one in the header.
fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// One optional string member.
fn text<'a>(md: &'a Map<String, Value>, name: &'static str) -> Result<Option<&'a str>, OAuthError> {
    match md.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(metadata_error(&format!("{name} must be a string"))),
    }
}

/// One optional list of strings.
fn list<'a>(
    md: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<Vec<&'a str>>, OAuthError> {
    match md.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| metadata_error(&format!("{name} must be an array of strings")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(metadata_error(&format!(
            "{name} must be an array of strings"
        ))),
    }
}

/// Whether a redirect URI fits the kind of application (OpenID Connect Dynamic Client
/// Registration §2, `application_type`; RFC 8252 §7 for native apps).
fn redirect_allowed(uri: &RedirectUri, native: bool, implicit: bool) -> Result<(), OAuthError> {
    let url = url::Url::parse(uri.as_str())
        .map_err(|_| redirect_error("a redirect URI is not an absolute URI"))?;
    let loopback = matches!(
        url.host(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback()
    ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback && !implicit => Ok(()),
        "http" => Err(redirect_error(
            "redirect URIs must be https (http only on a loopback address such as 127.0.0.1, and never for the implicit grant)",
        )),
        // A private-use scheme (RFC 8252 §7.1): a native app's, in reverse domain form.
        s if native && s.contains('.') => Ok(()),
        _ => Err(redirect_error(
            "redirect URIs must be https, or http on a loopback address such as 127.0.0.1; a native app may also use a private-use scheme such as com.example.app",
        )),
    }
}

/// Turns RFC 7591 client metadata into a registration, under the server's policy.
fn from_metadata(
    policy: &RegistrationPolicy,
    md: &Map<String, Value>,
) -> Result<CreateClient, OAuthError> {
    if md.contains_key("software_statement") {
        return Err(OAuthError::new(
            ErrorCode::InvalidSoftwareStatement,
            "software statements are not accepted here",
        ));
    }
    for unsupported in [
        "jwks_uri",
        "sector_identifier_uri",
        "request_uris",
        "initiate_login_uri",
    ] {
        if md.get(unsupported).is_some_and(|v| !v.is_null()) {
            return Err(metadata_error(&format!(
                "{unsupported} is not supported by this server"
            )));
        }
    }
    let native = match text(md, "application_type")? {
        None | Some("web") => false,
        Some("native") => true,
        Some(_) => return Err(metadata_error("application_type must be web or native")),
    };
    let grant_types: Vec<GrantType> = match list(md, "grant_types")? {
        None => vec![GrantType::AuthorizationCode],
        Some(g) => g
            .iter()
            .map(|g| GrantType::parse(g).map_err(|_| metadata_error("a grant type is unknown")))
            .collect::<Result<_, _>>()?,
    };
    if let Some(g) = grant_types.iter().find(|g| !policy.grant_types.contains(g)) {
        return Err(metadata_error(&format!(
            "the grant type {} is not open to self-registered clients",
            g.as_str()
        )));
    }
    let implicit = grant_types.contains(&GrantType::Implicit);
    // Response types (RFC 7591 §2.1) must agree with the grant types.
    for rt in list(md, "response_types")?.unwrap_or_else(|| vec!["code"]) {
        let needs = match rt {
            "code" => GrantType::AuthorizationCode,
            "token" | "id_token" | "id_token token" | "token id_token" => GrantType::Implicit,
            _ => {
                return Err(metadata_error(
                    "a response type is unknown or not supported",
                ))
            }
        };
        if !grant_types.contains(&needs) {
            return Err(metadata_error(
                "response_types and grant_types disagree (code needs authorization_code; token and id_token need implicit)",
            ));
        }
    }
    let redirect_uris: Vec<RedirectUri> = list(md, "redirect_uris")?
        .unwrap_or_default()
        .iter()
        .map(|u| {
            RedirectUri::parse(u).map_err(|_| {
                redirect_error("a redirect URI is not an absolute URI without a fragment")
            })
        })
        .collect::<Result<_, _>>()?;
    for uri in &redirect_uris {
        redirect_allowed(uri, native, implicit)?;
    }
    if redirect_uris.is_empty() && (grant_types.contains(&GrantType::AuthorizationCode) || implicit)
    {
        return Err(redirect_error(
            "redirect_uris is required for the authorization_code and implicit grants",
        ));
    }
    let method = match text(md, "token_endpoint_auth_method")? {
        None => AuthMethod::ClientSecretBasic,
        Some(m) => AuthMethod::parse(m)
            .map_err(|_| metadata_error("token_endpoint_auth_method is not supported"))?,
    };
    let jwks = md.get("jwks").filter(|v| !v.is_null()).cloned();
    if method == AuthMethod::PrivateKeyJwt && jwks.is_none() {
        return Err(metadata_error("private_key_jwt needs jwks"));
    }
    let scopes: Vec<Scope> = match text(md, "scope")? {
        None => vec![Scope::parse("openid").map_err(|e| metadata_error(&e.0))?],
        Some(s) => Scope::parse_list(s)
            .map_err(|_| metadata_error("scope is not a list of scope tokens"))?,
    };
    if let Some(s) = scopes.iter().find(|s| !policy.scopes.contains(s)) {
        return Err(metadata_error(&format!(
            "the scope {} is not open to self-registered clients",
            s.as_str()
        )));
    }
    let name = text(md, "client_name")?.unwrap_or("self-registered client");
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(metadata_error(
            "client_name must be at most 200 characters without control characters",
        ));
    }
    if let Some(alg) = text(md, "id_token_signed_response_alg")? {
        SigningAlgorithm::parse(alg).map_err(|_| {
            metadata_error("id_token_signed_response_alg must be RS256, ES256 or EdDSA")
        })?;
    }
    let post_logout: Vec<String> = list(md, "post_logout_redirect_uris")?
        .unwrap_or_default()
        .iter()
        .map(|u| (*u).to_owned())
        .collect();
    for u in &post_logout {
        let uri = RedirectUri::parse(u).map_err(|_| {
            metadata_error("a post_logout_redirect_uri is not an absolute URI without a fragment")
        })?;
        redirect_allowed(&uri, native, false).map_err(|e| {
            metadata_error(&format!("post_logout_redirect_uris: {}", e.description))
        })?;
    }
    if let Some(u) = text(md, "backchannel_logout_uri")? {
        // The server itself POSTs there: a self-registered client may not point it at this
        // machine or at a private address (an operator may, with client update).
        let named_host = url::Url::parse(u).ok().filter(|url| {
            url.scheme() == "https"
                && matches!(url.host(), Some(url::Host::Domain(d))
                    if d != "localhost" && !d.ends_with(".localhost"))
        });
        if named_host.is_none() || RedirectUri::parse(u).is_err() {
            return Err(metadata_error(
                "backchannel_logout_uri must be an https URI with a host name (no IP address, no localhost) and no fragment",
            ));
        }
    }
    if let Some(t) = text(md, "subject_type")? {
        if !matches!(t, "public" | "pairwise") {
            return Err(metadata_error("subject_type must be public or pairwise"));
        }
    }
    Ok(CreateClient {
        name: name.to_owned(),
        client_id: None,
        client_secret: None,
        public: method == AuthMethod::None,
        redirect_uris: redirect_uris
            .iter()
            .map(|u| u.as_str().to_owned())
            .collect(),
        grant_types: grant_types.iter().map(|g| g.as_str().to_owned()).collect(),
        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        token_format: None,
        access_token_ttl: None,
        can_introspect: false,
        redirect_uri_matching: None,
        allow_plain_pkce: false,
        signing_alg: None,
        token_endpoint_auth_method: Some(method.as_str().to_owned()),
        jwks,
        trusted_issuers: Vec::new(),
        admin: false,
        id_token_signed_response_alg: text(md, "id_token_signed_response_alg")?.map(str::to_owned),
        post_logout_redirect_uris: post_logout,
        backchannel_logout_uri: text(md, "backchannel_logout_uri")?.map(str::to_owned),
        subject_type: text(md, "subject_type")?.map(str::to_owned),
        sector_identifier: None,
        dynamic: None,
        ..CreateClient::default()
    })
}

/// The metadata of a registered client, as RFC 7591 §3.2.1 answers it.
fn metadata_of(state: &AppState, out: &ClientOutput, native: Option<bool>) -> Value {
    let mut response_types = Vec::new();
    if out.grant_types.iter().any(|g| g == "authorization_code") {
        response_types.push("code");
    }
    if out.grant_types.iter().any(|g| g == "implicit") {
        response_types.extend(["id_token", "id_token token", "token"]);
    }
    let issued_at = time::OffsetDateTime::parse(
        &out.registered_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map(|t| t.unix_timestamp())
    .unwrap_or(0);
    let mut body = serde_json::json!({
        "client_id": out.client_id,
        "client_id_issued_at": issued_at,
        "client_name": out.name,
        "redirect_uris": out.redirect_uris,
        "grant_types": out.grant_types,
        "response_types": response_types,
        "scope": out.scopes.join(" "),
        "token_endpoint_auth_method": if out.public { "none".to_owned() } else { out.token_endpoint_auth_method.split(' ').next().unwrap_or("client_secret_basic").to_owned() },
        "id_token_signed_response_alg": out.id_token_signed_response_alg,
        "subject_type": out.subject_type,
        "post_logout_redirect_uris": out.post_logout_redirect_uris,
        "registration_client_uri": format!("{}/register/{}", state.issuer, out.client_id),
    });
    if let Some(native) = native {
        body["application_type"] = if native { "native" } else { "web" }.into();
    }
    if let Some(u) = &out.backchannel_logout_uri {
        body["backchannel_logout_uri"] = u.clone().into();
        body["backchannel_logout_session_required"] = true.into();
    }
    if let Some(j) = &out.jwks {
        body["jwks"] = j.clone();
    }
    if let Some(secret) = &out.client_secret {
        body["client_secret"] = secret.clone().into();
        // RFC 7591 §3.2.1: 0, the secret does not expire.
        body["client_secret_expires_at"] = 0.into();
    }
    body
}

fn service_error(e: ServiceError) -> OAuthError {
    match e {
        ServiceError::Invalid(d) => metadata_error(&d),
        other => other.into(),
    }
}

/// Reads the body as a JSON object.
async fn metadata_body(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Map<String, Value>, OAuthError> {
    let body = super::admin::json_bytes(req, payload).await?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(metadata_error(
            "the body must be a JSON object of client metadata",
        )),
    }
}

/// `POST /register` (RFC 7591 §3).
#[utoipa::path(
    post,
    path = "/register",
    tag = "oauth",
    operation_id = "register",
    request_body(content = Object, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The client registered, with its registration access token (RFC 7591 §3.2.1)", body = crate::http::openapi::ClientInformation),
        crate::http::openapi::BearerErrors,
        crate::http::openapi::TooLarge,
        (status = 429, description = "Too many registrations from this address", body = crate::http::openapi::OAuthErrorBody),
    )
)]
pub async fn register(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    state.limits.register(super::source_ip(&req))?;
    // Who may register: the holder of an initial access token, or anyone when it is open.
    let initial = match bearer(&req) {
        Some(token) => {
            let tokens = &state.engine.models.tokens;
            let id = tokens
                .initial_access_token(state.hash_key.hash(token).as_str())
                .map_err(|e| OAuthError::server_error(&e))?
                .ok_or_else(|| bad_token("the initial access token is not valid"))?;
            Some(id)
        }
        None if state.registration.open => None,
        None => {
            return Err(bad_token(
                "registration needs an initial access token (Authorization: Bearer); ask the server's operator for one",
            ))
        }
    };
    let md = metadata_body(&req, payload).await?;
    let native = matches!(text(&md, "application_type")?, Some("native"));
    let mut create = from_metadata(&state.registration, &md)?;
    let (token, token_hash) = super::token::fresh_secret(&state.hash_key)?;
    create.dynamic = Some(DynamicRegistration {
        registration_token_hash: token_hash,
        initial_access_token: initial,
    });
    let (command, secret) = service::registration(&state.engine, create).map_err(service_error)?;
    // Every rule of the client aggregate, before the initial access token is spent on it.
    domain::client::decide(
        &ClientState::Unregistered,
        &ClientCommand::Register(command.clone()),
    )
    .map_err(|e| match e {
        ClientError::RedirectUriRequired(_) => redirect_error(&e.to_string()),
        e => metadata_error(&e.to_string()),
    })?;
    let metadata = request_metadata(&req, Cause::System);
    if let Some(id) = initial {
        state
            .engine
            .users()
            .send(crate::actors::ExecuteRegistrationTokenCommand {
                id,
                command: domain::registration::RegistrationTokenCommand::Use {
                    client_id: command.client_id.clone(),
                    now: state.engine.clock.unix_now(),
                },
                metadata: metadata.clone(),
            })
            .await
            .map_err(|e| OAuthError::server_error(&e))?
            .map_err(|e| match e {
                crate::actors::CommandError::Registration(r) => bad_token(&r.to_string()),
                e => super::token::command_error(e),
            })?;
    }
    let out = service::send_registration(&state.engine, command, secret, metadata)
        .await
        .map_err(service_error)?;
    let mut body = metadata_of(&state, &out, Some(native));
    body["registration_access_token"] = token.into();
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body))
}

/// The client a registration access token is for: 401 for any other token (RFC 7592 §3: a
/// token of another client, of a deleted one, or none).
fn registered(
    req: &HttpRequest,
    state: &AppState,
    client_id: &str,
) -> Result<std::sync::Arc<projections::ClientView>, OAuthError> {
    let refused = || bad_token("the registration access token is not valid for this client");
    let token = bearer(req).ok_or_else(refused)?;
    let view = state
        .engine
        .models
        .clients
        .get(client_id)
        .ok_or_else(refused)?;
    let dynamic = view.client.dynamic.as_ref().ok_or_else(refused)?;
    let presented = state.hash_key.hash(token);
    let same: bool = presented
        .as_str()
        .as_bytes()
        .ct_eq(dynamic.registration_token_hash.as_str().as_bytes())
        .into();
    if same {
        Ok(view)
    } else {
        Err(refused())
    }
}

/// `GET /register/{client_id}` (RFC 7592 §2.1).
#[utoipa::path(
    get,
    path = "/register/{client_id}",
    tag = "oauth",
    operation_id = "register_read",
    params(("client_id" = String, Path, description = "The registered client")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The client's metadata (RFC 7592 §2.1)", body = crate::http::openapi::ClientInformation),
        crate::http::openapi::BearerErrors,
    )
)]
pub async fn read(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let view = registered(&req, &state, &path)?;
    let metadata = request_metadata(&req, Cause::Client(view.client.client_id.to_string()));
    let token = rotate_token(&state, &view.client.client_id, metadata).await?;
    let out = ClientOutput::from_view(&view, None);
    let mut body = metadata_of(&state, &out, None);
    body["registration_access_token"] = token.into();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// A new registration access token for the client (RFC 7592 §3 answers one with every read
/// and update; only its keyed hash is kept, so the old one cannot be shown again): recorded
/// before it is answered, and the one presented stops working.
async fn rotate_token(
    state: &AppState,
    client_id: &domain::values::ClientId,
    metadata: domain::Metadata,
) -> Result<String, OAuthError> {
    let (token, hash) = super::token::fresh_secret(&state.hash_key)?;
    state
        .engine
        .registry
        .send(
            client_id,
            crate::actors::ExecuteClientCommand {
                command: ClientCommand::RotateRegistrationToken(hash),
                metadata,
            },
        )
        .await
        .map_err(super::token::command_error)?;
    Ok(token)
}

/// `PUT /register/{client_id}` (RFC 7592 §2.2): the metadata replace the client's.
#[utoipa::path(
    put,
    path = "/register/{client_id}",
    tag = "oauth",
    operation_id = "register_update",
    params(("client_id" = String, Path, description = "The registered client")),
    request_body(content = Object, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The client's metadata as changed (RFC 7592 §2.2)", body = crate::http::openapi::ClientInformation),
        crate::http::openapi::BearerErrors,
        crate::http::openapi::TooLarge,
    )
)]
pub async fn update(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let view = registered(&req, &state, &path)?;
    let md = metadata_body(&req, payload).await?;
    if text(&md, "client_id")? != Some(view.client.client_id.as_str()) {
        return Err(OAuthError::invalid_request(
            "the body's client_id must be the client's (RFC 7592 2.2)",
        ));
    }
    let wanted = from_metadata(&state.registration, &md)?;
    if wanted.public != view.client.public {
        return Err(metadata_error(
            "a client cannot change between public (none) and confidential",
        ));
    }
    let current: Vec<String> = view
        .client
        .redirect_uris
        .iter()
        .map(|u| u.as_str().to_owned())
        .collect();
    let change = service::ChangeClient {
        add_redirect_uris: wanted
            .redirect_uris
            .iter()
            .filter(|u| !current.contains(u))
            .cloned()
            .collect(),
        remove_redirect_uris: current
            .iter()
            .filter(|u| !wanted.redirect_uris.contains(u))
            .cloned()
            .collect(),
        scopes: Some(wanted.scopes),
        grant_types: Some(wanted.grant_types),
        token_endpoint_auth_method: wanted.token_endpoint_auth_method,
        jwks: wanted.jwks,
        id_token_signed_response_alg: wanted.id_token_signed_response_alg,
        post_logout_redirect_uris: Some(wanted.post_logout_redirect_uris),
        backchannel_logout_uri: Some(wanted.backchannel_logout_uri.unwrap_or_default()),
        subject_type: Some(wanted.subject_type.unwrap_or_else(|| "public".into())),
        ..Default::default()
    };
    let metadata = request_metadata(&req, Cause::Client(view.client.client_id.to_string()));
    let out = service::update_client(&state.engine, &path, change, metadata.clone())
        .await
        .map_err(service_error)?;
    let token = rotate_token(&state, &view.client.client_id, metadata).await?;
    let mut body = metadata_of(&state, &out, None);
    body["registration_access_token"] = token.into();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// `DELETE /register/{client_id}` (RFC 7592 §2.3): 204, and the client's tokens stop.
#[utoipa::path(
    delete,
    path = "/register/{client_id}",
    tag = "oauth",
    operation_id = "register_delete",
    params(("client_id" = String, Path, description = "The registered client")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted (RFC 7592 §2.3)"),
        crate::http::openapi::BearerErrors,
    )
)]
pub async fn delete(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let view = registered(&req, &state, &path)?;
    let metadata = request_metadata(&req, Cause::Client(view.client.client_id.to_string()));
    service::delete_client(&state.engine, &path, metadata)
        .await
        .map_err(service_error)?;
    Ok(HttpResponse::build(StatusCode::NO_CONTENT)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}
