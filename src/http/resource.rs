//! The server's own token-holder endpoints: `GET /tokeninfo` (Axway's token info service) and
//! `/api/whoami`, a protected demo resource that takes the token every RFC 6750 way.
//!
//! Neither logs a token: the request log records the path without its query string.

use super::introspect::{active, add_username};
use super::AppState;
use crate::bearer::{self, BearerError};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::values::join_scopes;
use projections::TokenView;

/// Realm of the demo resource.
const REALM: &str = "authledger";

/// Largest form body `/api/whoami` reads.
const MAX_FORM: usize = 16 * 1024;

/// What both endpoints say of an active token: subject, client, scopes (and the username of
/// a user's token), no-store.
fn describe(state: &AppState, t: &TokenView, mut body: serde_json::Value) -> HttpResponse {
    let r = &t.record;
    body["sub"] = r.subject.clone().into();
    body["client_id"] = r.client_id.as_str().into();
    body["scope"] = join_scopes(&r.scopes).into();
    match super::oidc::outside_subject(state, &r.client_id, r.user_id()) {
        Some(pairwise) => body["sub"] = pairwise.into(),
        None => add_username(state, &mut body, r.user_id()),
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// `GET /tokeninfo?access_token=…`: `scope`, `client_id`, `sub` and `expires_in` of an active
/// token; `400 {"error":"invalid_token"}` for anything else.
#[utoipa::path(
    get,
    path = "/tokeninfo",
    tag = "oauth",
    operation_id = "tokeninfo",
    params(("access_token" = Option<String>, Query, description = "The token (or send it as a bearer token)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's subject, client and scopes", body = crate::http::openapi::TokenInfo),
        crate::http::openapi::BearerErrors,
    )
)]
pub async fn tokeninfo(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let invalid = |d: &str| {
        HttpResponse::BadRequest()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({
                "error": "invalid_token",
                "error_description": domain::oauth::error_description(d),
            }))
    };
    let token = match bearer::token(&req, None) {
        Ok(t) => t,
        Err(BearerError::Missing) => return invalid("access_token is required"),
        Err(e) => return invalid(&e.to_string()),
    };
    match active(&state, &token) {
        // A bound token is used with a proof of its key (RFC 9449 §7), which a GET with the
        // token in its query cannot carry.
        Ok(Some(t)) if t.record.terms.jkt.is_some() => {
            invalid("this token is DPoP-bound; describe it with /introspect")
        }
        Ok(Some(t)) => {
            let left = (t.record.expires_at - state.engine.clock.unix_now()).max(0);
            describe(&state, &t, serde_json::json!({ "expires_in": left }))
        }
        Ok(None) => invalid("the token is not active"),
        Err(e) => HttpResponse::from_error(e),
    }
}

/// `GET|POST /api/whoami`: who the token speaks for, to which client, with which scopes.
#[utoipa::path(
    method(get, post),
    path = "/api/whoami",
    tag = "oauth",
    operation_id = "whoami",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's subject, client and scopes", body = crate::http::openapi::TokenInfo),
        crate::http::openapi::BearerErrors,
    )
)]
pub async fn whoami(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match answer(&req, payload, &state).await {
        Ok(t) => describe(
            &state,
            &t,
            serde_json::json!({ "exp": t.record.expires_at }),
        ),
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
    let (token, scheme) = bearer::presented(req, body.as_deref())?;
    let t = active(state, &token)
        .map_err(|e| BearerError::Unavailable(e.to_string()))?
        .ok_or_else(|| {
            BearerError::InvalidToken("the token is expired, revoked or unknown".into())
        })?;
    super::dpop::check_presentation(req, state, &token, scheme, &t.record).await?;
    if let Some(scope) = &state.whoami_scope {
        bearer::require_scopes(&t.record.scopes, &[scope.as_str()])?;
    }
    Ok(t)
}
