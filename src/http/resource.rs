//! The server's own token-holder endpoints: `GET /tokeninfo` (Axway's token info service) and
//! `/api/whoami`, a protected demo resource that takes the token every RFC 6750 way.
//!
//! Neither logs a token: the request log records the path without its query string.

use super::introspect::active;
use super::AppState;
use crate::bearer::{self, BearerError};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::values::{join_scopes, UserId};
use projections::TokenView;

/// Realm of the demo resource.
const REALM: &str = "authledger";

/// Largest form body `/api/whoami` reads.
const MAX_FORM: usize = 16 * 1024;

fn username(state: &AppState, t: &TokenView) -> Option<String> {
    if !t.record.grant_type.speaks_for_a_user() {
        return None;
    }
    UserId::parse(&t.record.subject)
        .ok()
        .and_then(|id| state.engine.models.users.get(&id))
        .map(|u| u.username.to_string())
}

/// `GET /tokeninfo?access_token=…`: `scope`, `client_id`, `sub` and `expires_in` of an active
/// token; `400 {"error":"invalid_token"}` for anything else.
pub async fn tokeninfo(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let invalid = |d: &str| {
        HttpResponse::BadRequest()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({ "error": "invalid_token", "error_description": d }))
    };
    let token = match bearer::token(&req, None) {
        Ok(t) => t,
        Err(BearerError::Missing) => return invalid("access_token is required"),
        Err(e) => return invalid(&e.to_string()),
    };
    match active(&state, &token) {
        Ok(Some(t)) => {
            let r = &t.record;
            let mut body = serde_json::json!({
                "scope": join_scopes(&r.scopes),
                "client_id": r.client_id.as_str(),
                "sub": r.subject,
                "expires_in": (r.expires_at - super::token::unix_now()).max(0),
            });
            if let Some(name) = username(&state, &t) {
                body["username"] = name.into();
            }
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(body)
        }
        Ok(None) => invalid("the token is not active"),
        Err(e) => HttpResponse::from_error(e),
    }
}

/// `GET|POST /api/whoami`: who the token speaks for, to which client, with which scopes.
pub async fn whoami(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match answer(&req, payload, &state).await {
        Ok(t) => {
            let r = &t.record;
            let mut body = serde_json::json!({
                "sub": r.subject,
                "client_id": r.client_id.as_str(),
                "scope": join_scopes(&r.scopes),
                "exp": r.expires_at,
            });
            if let Some(name) = username(&state, &t) {
                body["username"] = name.into();
            }
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(body)
        }
        Err(e) => e.response(REALM),
    }
}

async fn answer(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<TokenView, BearerError> {
    let body = if bearer::body_may_carry_token(req) {
        let bytes = super::form::read_body(req, payload, MAX_FORM)
            .await
            .map_err(|e| BearerError::InvalidRequest(e.to_string()))?;
        Some(bytes)
    } else {
        None
    };
    let token = bearer::token(req, body.as_deref())?;
    let t = active(state, &token)
        .map_err(|e| BearerError::Unavailable(e.to_string()))?
        .ok_or_else(|| {
            BearerError::InvalidToken("the token is expired, revoked or unknown".into())
        })?;
    if let Some(scope) = &state.whoami_scope {
        let granted: Vec<String> = t
            .record
            .scopes
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        bearer::require_scopes(&granted, &[scope.as_str()])?;
    }
    Ok(t)
}
