//! `POST /introspect` (RFC 7662): answers from the token index, which already holds every
//! event of every request that was answered.

use super::client_auth::authenticate;
use super::error::OAuthError;
use super::form::read_form;
use super::token::unix_now;
use super::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::values::{join_scopes, SecretHash};
use projections::TokenView;
use uuid::Uuid;

/// Finds a presented token in the index: a JWT by its verified `jti`, an opaque token by the
/// hash of its value. `None` for anything unknown, forged or malformed.
pub fn resolve(state: &AppState, token: &str) -> Result<Option<TokenView>, OAuthError> {
    let found = if token.bytes().filter(|b| *b == b'.').count() == 2 {
        let Some(claims) = state.key.verify(token, &state.issuer) else {
            return Ok(None);
        };
        let Ok(jti) = Uuid::parse_str(&claims.jti) else {
            return Ok(None);
        };
        state.engine.models.tokens.by_jti(&jti)
    } else {
        state
            .engine
            .models
            .tokens
            .by_hash(SecretHash::of(token).as_str())
    };
    found.map_err(|e| OAuthError::server_error(&e))
}

/// A token that is active now: known, not revoked, not expired, and of a client that still
/// exists.
pub fn active(state: &AppState, token: &str) -> Result<Option<TokenView>, OAuthError> {
    Ok(resolve(state, token)?.filter(|t| {
        t.is_active(unix_now())
            && state
                .engine
                .models
                .clients
                .get(t.record.client_id.as_str())
                .is_some()
    }))
}

/// Handles an introspection request.
#[tracing::instrument(skip_all)]
pub async fn introspect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = read_form(&req, payload).await?;
    let caller = authenticate(&req, &form, &state.engine.models.clients)?;
    let token = form.require("token")?;
    let body = match active(&state, token)? {
        Some(t)
            if caller.view.client.can_introspect
                || caller.view.client.client_id == t.record.client_id =>
        {
            let r = &t.record;
            serde_json::json!({
                "active": true,
                "scope": join_scopes(&r.scopes),
                "client_id": r.client_id.as_str(),
                "sub": r.subject,
                "exp": r.expires_at,
                "iat": r.issued_at,
                "token_type": "Bearer",
                "iss": state.issuer,
                "aud": state.issuer,
                "jti": r.jti.to_string(),
            })
        }
        _ => serde_json::json!({ "active": false }),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}
