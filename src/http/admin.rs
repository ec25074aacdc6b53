//! The admin JSON API under `/admin/api/`: clients, users, signing keys and audit queries, for a bearer token with
//! scope `admin`.

use super::error::OAuthError;
use super::introspect::active;
use super::{request_metadata, AppState};
use crate::service::{self, AuditParams, ChangeClient, CreateClient};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::oauth::ErrorCode;
use domain::Cause;

/// Largest admin API body.
const MAX_JSON_BODY: usize = 64 * 1024;

/// The scope an admin token must carry.
pub const ADMIN_SCOPE: &str = domain::client::ADMIN_SCOPE;

fn bearer_error(code: ErrorCode, description: &str) -> OAuthError {
    // Inside a quoted header parameter: no quote, backslash or line break may get through.
    let description = domain::oauth::error_description(description);
    let challenge = format!(
        r#"Bearer realm="authledger-admin", error="{}", error_description="{description}""#,
        code.as_str()
    );
    OAuthError::new(code, description).with_challenge(challenge)
}

/// Checks the bearer token (RFC 6750 §2.1) and answers who the admin is.
pub(crate) fn authorize(req: &HttpRequest, state: &AppState) -> Result<Cause, OAuthError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(
            OAuthError::new(ErrorCode::InvalidToken, "a bearer token is required")
                .with_challenge(r#"Bearer realm="authledger-admin""#.into()),
        );
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| {
            bearer_error(
                ErrorCode::InvalidRequest,
                "use Authorization: Bearer <token>",
            )
        })?;
    let Some(t) = active(state, token)? else {
        return Err(bearer_error(
            ErrorCode::InvalidToken,
            "the token is not active",
        ));
    };
    if !t.record.scopes.iter().any(|s| s.as_str() == ADMIN_SCOPE) {
        return Err(bearer_error(
            ErrorCode::InsufficientScope,
            "this needs a token with scope admin",
        ));
    }
    // The scope is not enough on its own: the token's client must be registered as an admin
    // (and still be: a client deleted since holds no rights).
    let admin_client = state
        .engine
        .models
        .clients
        .get(t.record.client_id.as_str())
        .is_some_and(|v| v.client.admin);
    if !admin_client {
        return Err(bearer_error(
            ErrorCode::InsufficientScope,
            "this needs a token of a client registered as an admin",
        ));
    }
    Ok(Cause::Admin(t.record.client_id.to_string()))
}

/// Parses a JSON body, after the bearer token was checked (RFC 6750 §3.1 answers an
/// unauthenticated request with 401 whatever its body).
async fn json_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, OAuthError> {
    let body = json_bytes(req, payload).await?;
    serde_json::from_slice(&body)
        .map_err(|e| OAuthError::invalid_request(format!("invalid JSON body: {e}")))
}

/// A user body (registration or profile), parsed without quoting it back: serde's messages
/// repeat a value of the wrong type, which may be a password or an address.
async fn user_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, OAuthError> {
    let body = json_bytes(req, payload).await?;
    serde_json::from_slice(&body).map_err(|e| {
        let at = format!("line {}, column {}", e.line(), e.column());
        OAuthError::invalid_request(match e.classify() {
            serde_json::error::Category::Data => format!(
                "invalid JSON body: an unknown field, a missing one or a value of the wrong \
                 type at {at} (see the admin API documentation for the fields)"
            ),
            _ => format!("invalid JSON body: malformed at {at}"),
        })
    })
}

/// The bytes of a JSON object body (`application/json` or `application/*+json`), at most
/// 64 KiB.
pub(crate) async fn json_bytes(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<web::BytesMut, OAuthError> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        });
    if !json {
        return Err(OAuthError::invalid_request(
            "the body must be application/json",
        ));
    }
    let body = super::form::read_body(req, payload, MAX_JSON_BODY).await?;
    // Every body is an object: serde would also take an array for a struct, field by field.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(OAuthError::invalid_request(
            "the body must be a JSON object",
        ));
    }
    Ok(body)
}

/// `POST /admin/api/clients`.
#[utoipa::path(
    post,
    path = "/admin/api/clients",
    tag = "admin",
    operation_id = "admin_create_client",
    request_body(content = crate::service::CreateClient),
    security(("admin" = [])),
    responses(
        (status = 201, description = "The client, with its secret (shown this once)", body = crate::service::ClientOutput),
        crate::http::openapi::AdminErrors,
        (status = 409, response = crate::http::openapi::OAuthErrorBody),
        crate::http::openapi::TooLarge,
    )
)]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let who = authorize(&req, &state)?;
    let body: CreateClient = json_body(&req, payload).await?;
    let out = service::create_client(&state.engine, body, request_metadata(&req, who)).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(out))
}

/// `POST /admin/api/registration-tokens`: an initial access token for `POST /register`.
#[utoipa::path(
    post,
    path = "/admin/api/registration-tokens",
    tag = "admin",
    operation_id = "admin_issue_registration_token",
    request_body(content = crate::service::IssueInitialAccessToken),
    security(("admin" = [])),
    responses(
        (status = 201, description = "An initial access token for POST /register (shown this once)", body = crate::service::InitialAccessTokenOutput),
        crate::http::openapi::AdminErrors,
        crate::http::openapi::TooLarge,
    )
)]
pub async fn issue_registration_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let who = authorize(&req, &state)?;
    let body: service::IssueInitialAccessToken = json_body(&req, payload).await?;
    let out = service::issue_initial_access_token(&state.engine, body, request_metadata(&req, who))
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(out))
}

/// `GET /admin/api/clients`.
#[utoipa::path(
    get,
    path = "/admin/api/clients",
    tag = "admin",
    operation_id = "admin_list_clients",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Every client", body = Vec<crate::service::ClientOutput>),
        crate::http::openapi::AdminErrors,
    )
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    authorize(&req, &state)?;
    Ok(HttpResponse::Ok().json(service::list_clients(&state.engine)))
}

/// `GET /admin/api/clients/{id}`.
#[utoipa::path(
    get,
    path = "/admin/api/clients/{id}",
    tag = "admin",
    operation_id = "admin_show_client",
    params(
        ("id" = String, Path, description = "The client id"),
        ("as_of" = Option<String>, Query, description = "RFC 3339 time or Unix seconds: the client then, and its tokens active then"),
    ),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The client; with `as_of`, the client then and its tokens active then", body = crate::http::openapi::ClientAnswer),
        crate::http::openapi::AdminErrors,
        crate::http::openapi::NotFound,
    )
)]
pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    authorize(&req, &state)?;
    let as_of = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "as_of")
        .map(|(_, v)| v.into_owned());
    match as_of {
        None => Ok(HttpResponse::Ok().json(service::show_client(&state.engine, &id)?)),
        Some(t) => {
            // Building a view reads the log: not on the worker thread.
            let engine = state.engine.clone();
            let out = web::block(move || service::client_as_of(&engine, &id, &t, |_| {}))
                .await
                .map_err(|e| OAuthError::server_error(&e))??;
            Ok(HttpResponse::Ok().json(out))
        }
    }
}

/// `PATCH /admin/api/clients/{id}`.
#[utoipa::path(
    patch,
    path = "/admin/api/clients/{id}",
    tag = "admin",
    operation_id = "admin_update_client",
    params(("id" = String, Path, description = "The client id")),
    request_body(content = crate::service::ChangeClient),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The client as changed", body = crate::service::ClientOutput),
        crate::http::openapi::AdminErrors,
        crate::http::openapi::NotFound,
        (status = 409, description = "An admin client cannot update itself, or the change conflicts", body = crate::http::openapi::OAuthErrorBody),
        crate::http::openapi::TooLarge,
    )
)]
pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let who = authorize(&req, &state)?;
    let body: ChangeClient = json_body(&req, payload).await?;
    let out = service::update_client(&state.engine, &id, body, request_metadata(&req, who)).await?;
    Ok(HttpResponse::Ok().json(out))
}

/// `POST /admin/api/clients/{id}/rotate-secret`.
#[utoipa::path(
    post,
    path = "/admin/api/clients/{id}/rotate-secret",
    tag = "admin",
    operation_id = "admin_rotate_secret",
    params(("id" = String, Path, description = "The client id")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The client with its new secret (shown this once)", body = crate::service::ClientOutput),
        crate::http::openapi::AdminErrors,
        crate::http::openapi::NotFound,
        (status = 409, response = crate::http::openapi::OAuthErrorBody),
    )
)]
pub async fn rotate_secret(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    let who = authorize(&req, &state)?;
    let out = service::rotate_secret(&state.engine, &id, request_metadata(&req, who)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(out))
}

/// `DELETE /admin/api/clients/{id}`.
#[utoipa::path(
    delete,
    path = "/admin/api/clients/{id}",
    tag = "admin",
    operation_id = "admin_delete_client",
    params(("id" = String, Path, description = "The client id")),
    security(("admin" = [])),
    responses(
        (status = 409, description = "An admin client cannot delete itself", body = crate::http::openapi::OAuthErrorBody),
        (status = 204, description = "Deleted: its tokens stop working"),
        crate::http::openapi::AdminErrors,
        crate::http::openapi::NotFound,
    )
)]
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    let who = authorize(&req, &state)?;
    service::delete_client(&state.engine, &id, request_metadata(&req, who)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /admin/api/audit?client=&subject=&type=&request_id=&correlation_id=&since=&until=
/// &order=asc|desc&after=|before=&limit=`; `type` may repeat or hold a comma-separated list.
#[utoipa::path(
    get,
    path = "/admin/api/audit",
    tag = "admin",
    operation_id = "admin_audit",
    params(crate::service::AuditParams),
    security(("admin" = [])),
    responses(
        (status = 200, description = "One page of the audit trail", body = crate::service::AuditOutput),
        crate::http::openapi::AdminErrors,
    )
)]
pub async fn audit(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    authorize(&req, &state)?;
    let p = audit_params(req.query_string(), &[])?;
    let engine = state.engine.clone();
    let out = web::block(move || service::audit_query(&engine, &p))
        .await
        .map_err(|e| OAuthError::server_error(&e))??;
    Ok(HttpResponse::Ok().json(out))
}

/// Reads audit parameters from a query string; `extra` names further parameters the caller
/// reads itself.
pub fn audit_params(query: &str, extra: &[&str]) -> Result<AuditParams, OAuthError> {
    audit_params_from(form_urlencoded::parse(query.as_bytes()).into_owned(), extra)
}

/// Reads audit parameters from name/value pairs (a parsed query string or form).
pub fn audit_params_from(
    pairs: impl IntoIterator<Item = (String, String)>,
    extra: &[&str],
) -> Result<AuditParams, OAuthError> {
    let mut p = AuditParams::default();
    for (k, v) in pairs {
        let number = |v: &str| {
            v.parse()
                .map_err(|_| OAuthError::invalid_request(format!("{k} must be a number")))
        };
        match k.as_str() {
            "client" => p.client = Some(v),
            "subject" => p.subject = Some(v),
            "type" => p
                .types
                .extend(v.split(',').filter(|t| !t.is_empty()).map(str::to_owned)),
            "request_id" => p.request_id = Some(v),
            "correlation_id" => p.correlation_id = Some(v),
            "since" => p.since = Some(v),
            "until" => p.until = Some(v),
            "after" => p.after = Some(number(&v)?),
            "before" => p.before = Some(number(&v)?),
            "order" => p.order = Some(v),
            "limit" => p.limit = Some(number(&v)? as usize),
            "as_of" => p.as_of = Some(v),
            other if extra.contains(&other) => {}
            other => {
                return Err(OAuthError::invalid_request(format!(
                    "unknown query parameter {other}"
                )))
            }
        }
    }
    Ok(p)
}

/// `GET /admin/api/audit/verify`: walks the log's hash chain; 200 with `status` `verified` or
/// `broken` (a broken chain is an answer, not a failure of the request).
#[utoipa::path(
    get,
    path = "/admin/api/audit/verify",
    tag = "admin",
    operation_id = "admin_verify",
    security(("admin" = [])),
    responses(
        (status = 200, description = "The hash chain walked: `verified`, or `broken` and where", body = crate::store::verify::Verification),
        crate::http::openapi::AdminErrors,
    )
)]
pub async fn verify(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    authorize(&req, &state)?;
    let engine = state.engine.clone();
    let outcome = web::block(move || engine.store.verify(|_| {}))
        .await
        .map_err(|e| OAuthError::server_error(&e))?
        .map_err(|e| OAuthError::server_error(&e))?;
    Ok(HttpResponse::Ok().json(outcome))
}

/// `POST /admin/api/audit/checkpoint`: a signed statement of the log's head (see
/// [`crate::signed_checkpoint`]), as `{"checkpoint": "<JWS>"}`.
#[utoipa::path(
    post,
    path = "/admin/api/audit/checkpoint",
    tag = "admin",
    operation_id = "admin_checkpoint",
    security(("admin" = [])),
    responses(
        (status = 200, description = "A signed statement of the log's head", body = crate::http::openapi::Checkpoint),
        crate::http::openapi::AdminErrors,
    )
)]
pub async fn checkpoint(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    authorize(&req, &state)?;
    let now = state.engine.clock.unix_now();
    let jws = crate::signed_checkpoint::sign(&state.engine, &state.keys, &state.issuer, now)
        .map_err(|e| OAuthError::server_error(&e))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "checkpoint": jws })))
}

/// The body of `POST /admin/api/clock`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct ClockMove {
    /// Milliseconds to move the clock forward.
    #[serde(default)]
    pub advance_ms: u32,
    /// Milliseconds to set the underlying clock back (the server's time then stands still).
    #[serde(default)]
    pub set_back_ms: u32,
}

/// `POST /admin/api/clock`: moves the server's clock forward or sets it back, on a server started with the
/// hidden `serve --test-clock` only (404 otherwise, as if the route did not exist).
#[utoipa::path(
    post,
    path = "/admin/api/clock",
    tag = "admin",
    operation_id = "admin_clock",
    request_body(content = crate::http::admin::ClockMove),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The clock moved: the server's time now", body = crate::http::openapi::ClockNow),
        crate::http::openapi::AdminErrors,
        (status = 404, description = "Not a test-clock server: no such resource", body = crate::http::openapi::OAuthErrorBody),
        crate::http::openapi::TooLarge,
    )
)]
pub async fn advance_clock(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    authorize(&req, &state)?;
    let body: ClockMove = json_body(&req, payload).await?;
    if !(state.engine.clock.advance(body.advance_ms)
        && state.engine.clock.set_back(body.set_back_ms))
    {
        return Ok(HttpResponse::NotFound().json(serde_json::json!({
            "error": "not_found",
            "error_description": "no resource at /admin/api/clock",
        })));
    }
    // What the server does on its own as time passes is done before the answer, so that a
    // test sees its outcome at once rather than at the next tick of a real-time timer.
    state
        .key_actor
        .send(crate::actors::ExecuteKeyRequest {
            request: crate::actors::KeyRequest::RetireExpired,
            metadata: domain::Metadata::system(),
        })
        .await
        .map_err(|e| OAuthError::server_error(&e))?
        .map_err(|e| OAuthError::server_error(&e))?;
    super::logout::deliver_due(&state).await;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "now_ms": state.engine.clock.unix_now_ms() })))
}

/// The body of `POST /admin/api/audit/checkpoint/verify`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct CheckpointCheck {
    /// The JWS of a checkpoint.
    pub checkpoint: String,
    /// The JWKS to check its signature with (default: the server's own).
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
}

/// `POST /admin/api/audit/checkpoint/verify`: checks the log against a checkpoint published
/// earlier; 200 with `status` `verified` and what was checked, or `mismatch` and why.
#[utoipa::path(
    post,
    path = "/admin/api/audit/checkpoint/verify",
    tag = "admin",
    operation_id = "admin_verify_checkpoint",
    request_body(content = crate::http::admin::CheckpointCheck),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The log checked against the checkpoint: `verified` or `mismatch`", body = crate::http::openapi::CheckpointReport),
        crate::http::openapi::AdminErrors,
        crate::http::openapi::TooLarge,
    )
)]
pub async fn verify_checkpoint(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    authorize(&req, &state)?;
    let body: CheckpointCheck = json_body(&req, payload).await?;
    let jwks = match body.jwks {
        Some(j) => j.to_string(),
        None => state.keys.jwks().to_string(),
    };
    let engine = state.engine.clone();
    let outcome =
        web::block(move || crate::signed_checkpoint::check(&engine, &body.checkpoint, &jwks))
            .await
            .map_err(|e| OAuthError::server_error(&e))?;
    Ok(HttpResponse::Ok().json(checkpoint_report(outcome)))
}

/// The JSON report of a checkpoint check, the same through the API and the CLI.
pub fn checkpoint_report(
    outcome: Result<crate::signed_checkpoint::Checked, crate::signed_checkpoint::CheckpointError>,
) -> serde_json::Value {
    match outcome {
        Ok(c) => serde_json::json!({
            "status": "verified",
            "position": c.statement.position,
            "head_hash": c.statement.head_hash,
            "signed_at": c.statement.iat,
            "issuer": c.statement.iss,
            "kid": c.kid,
            "events": c.events,
            "head_position": c.head_position,
        }),
        Err(e) => serde_json::json!({ "status": "mismatch", "reason": e.to_string() }),
    }
}

/// The body of `POST /admin/api/compact`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct CompactRequest {
    /// `access-tokens` or `assertions`.
    pub class: String,
    /// Keep what stopped mattering less than this many seconds ago.
    pub older_than_secs: i64,
    /// Events per batch (default 1,000).
    pub batch: Option<usize>,
}

/// `POST /admin/api/compact`: compacts a retention class in bounded batches, off the worker
/// threads, while the server goes on serving; answers the report when done.
#[utoipa::path(
    post,
    path = "/admin/api/compact",
    tag = "admin",
    operation_id = "admin_compact",
    request_body(content = crate::http::admin::CompactRequest),
    security(("admin" = [])),
    responses(
        (status = 200, description = "What was compacted", body = crate::retention::CompactionReport),
        crate::http::openapi::AdminErrors,
        crate::http::openapi::TooLarge,
    )
)]
pub async fn compact(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let who = authorize(&req, &state)?;
    let body: CompactRequest = json_body(&req, payload).await?;
    let class = crate::retention::Class::parse(&body.class).map_err(OAuthError::invalid_request)?;
    if body.older_than_secs < 0 {
        return Err(OAuthError::invalid_request(
            "older_than_secs must not be negative",
        ));
    }
    let cutoff = state
        .engine
        .clock
        .unix_now()
        .saturating_sub(body.older_than_secs);
    let metadata = request_metadata(&req, who);
    let engine = state.engine.clone();
    let report = web::block(move || {
        crate::retention::compact(
            &engine,
            class,
            cutoff,
            body.batch.unwrap_or(1000),
            &metadata,
            |_| {},
        )
    })
    .await
    .map_err(|e| OAuthError::server_error(&e))?
    .map_err(|e| OAuthError::server_error(&e))?;
    Ok(HttpResponse::Ok().json(report))
}

/// `POST /admin/api/users`.
#[utoipa::path(
    post,
    path = "/admin/api/users",
    tag = "admin",
    operation_id = "admin_create_user",
    request_body(content = crate::service::CreateUser),
    security(("admin" = [])),
    responses(
        (status = 201, description = "The user", body = crate::service::UserOutput),
        crate::http::openapi::AdminErrors,
        (status = 409, response = crate::http::openapi::OAuthErrorBody),
        crate::http::openapi::TooLarge,
    )
)]
pub async fn create_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let who = authorize(&req, &state)?;
    let body: service::CreateUser = user_body(&req, payload).await?;
    let out = service::create_user(&state.engine, body, request_metadata(&req, who)).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(out))
}

/// `GET /admin/api/users`.
#[utoipa::path(
    get,
    path = "/admin/api/users",
    tag = "admin",
    operation_id = "admin_list_users",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Every user", body = Vec<crate::service::UserOutput>),
        crate::http::openapi::AdminErrors,
    )
)]
pub async fn list_users(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    authorize(&req, &state)?;
    Ok(HttpResponse::Ok().json(service::list_users(&state.engine)))
}

/// `GET /admin/api/users/{username}` (a user id works too).
#[utoipa::path(
    get,
    path = "/admin/api/users/{username}",
    tag = "admin",
    operation_id = "admin_show_user",
    params(("username" = String, Path, description = "The username or user id")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The user", body = crate::service::UserOutput),
        crate::http::openapi::AdminErrors,
        crate::http::openapi::NotFound,
    )
)]
pub async fn show_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    username: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    authorize(&req, &state)?;
    Ok(HttpResponse::Ok().json(service::show_user(&state.engine, &username)?))
}

/// `PATCH /admin/api/users/{username}`: sets the profile claims the body names (an empty
/// string clears one); answers the user.
#[utoipa::path(
    patch,
    path = "/admin/api/users/{username}",
    tag = "admin",
    operation_id = "admin_update_user",
    params(("username" = String, Path, description = "The username or user id")),
    request_body(content = crate::http::openapi::ProfileChanges),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The user as changed", body = crate::service::UserOutput),
        crate::http::openapi::AdminErrors,
        crate::http::openapi::NotFound,
        crate::http::openapi::TooLarge,
    )
)]
pub async fn update_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    username: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let who = authorize(&req, &state)?;
    let body: domain::user::ProfileChanges = user_body(&req, payload).await?;
    let out =
        service::update_user_profile(&state.engine, &username, body, request_metadata(&req, who))
            .await?;
    Ok(HttpResponse::Ok().json(out))
}

/// `POST /admin/api/users/{username}/access`: lock or unlock the account, end its sessions,
/// set a new password ([`service::UserAccess`]); the user as it is then.
#[utoipa::path(
    post,
    path = "/admin/api/users/{username}/access",
    tag = "admin",
    operation_id = "admin_user_access",
    params(("username" = String, Path, description = "The username or user id")),
    request_body(content = crate::service::UserAccess),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The user as it is now", body = crate::service::UserOutput),
        crate::http::openapi::AdminErrors,
        crate::http::openapi::NotFound,
        crate::http::openapi::TooLarge,
    )
)]
pub async fn user_access(
    req: HttpRequest,
    state: web::Data<AppState>,
    username: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let who = authorize(&req, &state)?;
    let body: service::UserAccess = user_body(&req, payload).await?;
    let out =
        service::user_access(&state.engine, &username, body, request_metadata(&req, who)).await?;
    Ok(HttpResponse::Ok().json(out))
}

/// `GET /admin/api/keys`: every signing key and where it stands.
#[utoipa::path(
    get,
    path = "/admin/api/keys",
    tag = "admin",
    operation_id = "admin_list_keys",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Every signing key and where it stands", body = Vec<crate::service::KeyOutput>),
        crate::http::openapi::AdminErrors,
    )
)]
pub async fn list_keys(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    authorize(&req, &state)?;
    let keys = service::list_keys(&state.engine)?;
    Ok(HttpResponse::Ok().json(keys))
}

/// `POST /admin/api/keys/rotate`: a successor per algorithm, published now, signing after the
/// lead time.
#[utoipa::path(
    post,
    path = "/admin/api/keys/rotate",
    tag = "admin",
    operation_id = "admin_rotate_keys",
    request_body(content = crate::service::RotateKeys),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Every signing key, with the successors", body = Vec<crate::service::KeyOutput>),
        crate::http::openapi::AdminErrors,
        crate::http::openapi::TooLarge,
    )
)]
pub async fn rotate_keys(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let cause = authorize(&req, &state)?;
    let body: service::RotateKeys = json_body(&req, payload).await?;
    let keys = service::rotate_keys(
        &state.engine,
        &state.key_actor,
        body,
        request_metadata(&req, cause),
    )
    .await?;
    Ok(HttpResponse::Ok().json(keys))
}
