//! `POST /token`: the token endpoint (RFC 6749 §3.2); this server issues by the
//! `client_credentials` grant (§4.4).

use super::client_auth::authenticate;
use super::error::OAuthError;
use super::form::read_form;
use super::{request_metadata, AppState};
use crate::actors::{CommandError, ExecuteTokenCommand};
use crate::keys::AccessTokenClaims;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use domain::event::Event;
use domain::oauth::ErrorCode;
use domain::token::{IssueClientCredentialsToken, TokenCommand};
use domain::values::{join_scopes, GrantType, Scope, SecretHash, TokenFormat};
use domain::Cause;
use uuid::Uuid;

/// Unix seconds now.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Maps an actor failure to its OAuth error.
pub fn command_error(e: CommandError) -> OAuthError {
    match e {
        CommandError::Token(t) => OAuthError::new(t.code(), t.to_string()),
        CommandError::Client(c) => OAuthError::invalid_request(c.to_string()),
        CommandError::User(u) => OAuthError::invalid_request(u.to_string()),
        CommandError::Unavailable(d) => OAuthError::new(ErrorCode::TemporarilyUnavailable, d),
        e @ CommandError::Store(_) => OAuthError::server_error(&e),
    }
}

/// Handles a token request.
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = read_form(&req, payload).await?;
    let client = authenticate(&req, &form, &state.engine.models.clients)?;
    let client_id = client.view.client.client_id.clone();
    tracing::Span::current().record("client_id", client_id.as_str());
    let grant = form.require("grant_type")?;
    match GrantType::parse(grant) {
        Ok(GrantType::ClientCredentials) => {}
        _ => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!("grant type {grant:?} is not supported here"),
            ))
        }
    }
    let requested_scopes = form
        .get("scope")
        .map(Scope::parse_list)
        .transpose()
        .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.0))?;
    let mut opaque = [0u8; 32];
    getrandom::getrandom(&mut opaque).map_err(|e| OAuthError::server_error(&e))?;
    let opaque = URL_SAFE_NO_PAD.encode(opaque);
    let command = TokenCommand::IssueClientCredentials(IssueClientCredentialsToken {
        requested_scopes,
        jti: Uuid::now_v7(),
        opaque_token_hash: SecretHash::of(&opaque),
        now: unix_now(),
    });
    let metadata = request_metadata(&req, Cause::Client(client_id.to_string()));
    let events = state
        .engine
        .registry
        .send(&client_id, ExecuteTokenCommand { command, metadata })
        .await
        .map_err(command_error)?;
    let Some(Event::AccessTokenIssued(issued)) = events.first().map(|e| &e.event) else {
        return Err(OAuthError::server_error(&"no token was recorded"));
    };
    let scope = join_scopes(&issued.scopes);
    // Signing happens here, outside the actor, once the event is durable.
    let access_token = match issued.format {
        TokenFormat::Opaque => opaque,
        TokenFormat::Jwt => state
            .key
            .sign(&AccessTokenClaims {
                iss: state.issuer.clone(),
                sub: issued.subject.clone(),
                aud: state.issuer.clone(),
                client_id: issued.client_id.to_string(),
                scope: scope.clone(),
                iat: issued.issued_at,
                exp: issued.expires_at,
                jti: issued.jti.to_string(),
            })
            .map_err(|e| OAuthError::server_error(&e))?,
    };
    let mut body = serde_json::json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_at - issued.issued_at,
    });
    if !scope.is_empty() {
        body["scope"] = scope.into();
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body))
}
