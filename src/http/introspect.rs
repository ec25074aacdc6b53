//! `POST /introspect` (RFC 7662): answers from the token index, which already holds every
//! event of every request that was answered.

use super::client_auth::authenticate;
use super::error::OAuthError;
use super::form::read_form;
use super::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::grant::RefreshView;
use domain::values::{join_scopes, SecretHash, UserId};
use projections::TokenView;
use uuid::Uuid;

/// Whether a presented token has the three parts of a JWT (refresh tokens and opaque tokens,
/// base64url, have none).
fn is_jwt_shaped(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// Adds the `username` of the user a token speaks for, if it speaks for one.
pub fn add_username(state: &AppState, body: &mut serde_json::Value, user: Option<UserId>) {
    if let Some(u) = user.and_then(|id| state.engine.models.users.get(&id)) {
        body["username"] = u.username.to_string().into();
    }
}

/// Finds a presented token in the index: a JWT by its verified `jti`, an opaque token by the
/// hash of its value. `None` for anything unknown, forged or malformed.
pub fn resolve(state: &AppState, token: &str) -> Result<Option<TokenView>, OAuthError> {
    let found = if is_jwt_shaped(token) {
        let Some((claims, kid)) = state.keys.verify(token, &state.issuer) else {
            return Ok(None);
        };
        let Ok(jti) = Uuid::parse_str(&claims.jti) else {
            return Ok(None);
        };
        // The token must be the one recorded: signed by the key its event names (tokens of
        // versions before keys were events name none; their key is the imported one).
        state
            .engine
            .models
            .tokens
            .by_jti(&jti)
            .map(|t| t.filter(|t| t.record.kid.as_deref().is_none_or(|k| k == kid)))
    } else {
        let tokens = &state.engine.models.tokens;
        // Keyed first; a token issued before keyed hashes is known by its bare SHA-256.
        match tokens.by_hash(state.hash_key.hash(token).as_str()) {
            Ok(None) => tokens.by_hash(SecretHash::unkeyed(token).as_str()),
            found => found,
        }
    };
    found.map_err(|e| OAuthError::server_error(&e))
}

/// A token that is active now: known, not revoked, not expired, and of a client that still
/// exists.
pub fn active(state: &AppState, token: &str) -> Result<Option<TokenView>, OAuthError> {
    Ok(resolve(state, token)?.filter(|t| is_live(state, t)))
}

/// Whether a known token is active now (not revoked or expired), its client still exists and
/// its user's account is not locked.
fn is_live(state: &AppState, t: &TokenView) -> bool {
    t.is_active(state.engine.clock.unix_now())
        && client_exists(state, &t.record.client_id)
        && !t.record.user_id().is_some_and(|u| user_locked(state, &u))
}

fn client_exists(state: &AppState, id: &domain::values::ClientId) -> bool {
    state.engine.models.clients.get(id.as_str()).is_some()
}

/// Whether an administrator locked the account a token speaks for: while it is locked, none of
/// its tokens is active (the token endpoint refuses its grants as well); unlocked, those not
/// expired or revoked are again, as its refresh tokens are.
pub(crate) fn user_locked(state: &AppState, user: &domain::values::UserId) -> bool {
    state
        .engine
        .models
        .users
        .get(user)
        .is_some_and(|u| u.disabled)
}

/// Finds a presented refresh token in the index by the hash of its value.
pub fn resolve_refresh(state: &AppState, token: &str) -> Result<Option<RefreshView>, OAuthError> {
    let tokens = &state.engine.models.tokens;
    match tokens.refresh(state.hash_key.hash(token).as_str()) {
        Ok(None) => tokens.refresh(SecretHash::unkeyed(token).as_str()),
        found => found,
    }
    .map_err(|e| OAuthError::server_error(&e))
}

/// A refresh token that could be used now, of a client that still exists.
fn active_refresh(
    state: &AppState,
    token: &str,
) -> Result<Option<domain::event::RefreshTokenIssued>, OAuthError> {
    Ok(resolve_refresh(state, token)?
        .filter(|v| {
            v.is_active(state.engine.clock.unix_now())
                && client_exists(state, &v.issued.client_id)
                && !user_locked(state, &v.issued.user_id)
        })
        .map(|v| v.issued))
}

/// Handles an introspection request.
#[tracing::instrument(skip_all)]
#[utoipa::path(
    post,
    path = "/introspect",
    tag = "oauth",
    operation_id = "introspect",
    request_body(content = crate::http::openapi::TokenQuery, content_type = "application/x-www-form-urlencoded"),
    security(("client" = [])),
    responses(
        (status = 200, description = "Whether the token is active, and its claims if it is (RFC 7662)", body = crate::http::openapi::IntrospectionResponse),
        (status = 403, response = crate::http::openapi::OAuthErrorBody),
        crate::http::openapi::ClientErrors,
    )
)]
pub async fn introspect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let answer = answer(req, payload, state).await;
    crate::metrics::introspection(match &answer {
        Ok((_, true)) => "active",
        Ok((_, false)) => "inactive",
        Err(_) => "refused",
    });
    answer.map(|(res, _)| res)
}

/// The answer to an introspection request, and whether it says the token is active.
async fn answer(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<(HttpResponse, bool), OAuthError> {
    let form = read_form(&req, payload).await?;
    let caller = authenticate(&req, &form, &state).await?;
    state.limits.introspect(&caller.view.client.client_id)?;
    let token = form.require("token")?;
    let may_see = |owner: &domain::values::ClientId| {
        caller.view.client.can_introspect || caller.view.client.client_id == *owner
    };
    let inactive = || serde_json::json!({ "active": false });
    let body = match resolve(&state, token)? {
        Some(t) => {
            let r = &t.record;
            if !(is_live(&state, &t) && may_see(&r.client_id)) {
                inactive()
            } else {
                let mut b = serde_json::json!({
                    "active": true,
                    "scope": join_scopes(&r.scopes),
                    "client_id": r.client_id.as_str(),
                    "sub": r.subject,
                    "exp": r.expires_at,
                    "iat": r.issued_at,
                    "token_type": if r.terms.jkt.is_some() { "DPoP" } else { "Bearer" },
                    "iss": state.issuer,
                    "aud": crate::keys::audience_claim(&r.terms.audience, &state.issuer),
                    "jti": r.jti.to_string(),
                });
                // RFC 9449 §6.2: the key a bound token is bound to.
                if let Some(jkt) = &r.terms.jkt {
                    b["cnf"] = serde_json::json!({ "jkt": jkt });
                }
                if let Some(act) = &r.terms.act {
                    b["act"] = act.clone();
                }
                match super::oidc::outside_subject(&state, &r.client_id, r.user_id()) {
                    Some(pairwise) => b["sub"] = pairwise.into(),
                    None => add_username(&state, &mut b, r.user_id()),
                }
                b
            }
        }
        // A known access token is no refresh token, and a JWT that did not verify is neither.
        None if is_jwt_shaped(token) => inactive(),
        // A refresh token introspects too (RFC 7662 §2.1): active while it is its family's
        // newest, unused, unexpired and unrevoked.
        None => match active_refresh(&state, token)? {
            Some(r) if may_see(&r.client_id) => {
                let mut b = serde_json::json!({
                    "active": true,
                    "scope": join_scopes(&r.scopes),
                    "client_id": r.client_id.as_str(),
                    "sub": r.user_id.to_string(),
                    "exp": r.expires_at,
                    "iat": r.issued_at,
                    "token_type": "refresh_token",
                    "iss": state.issuer,
                });
                match super::oidc::outside_subject(&state, &r.client_id, Some(r.user_id)) {
                    Some(pairwise) => b["sub"] = pairwise.into(),
                    None => add_username(&state, &mut b, Some(r.user_id)),
                }
                b
            }
            _ => inactive(),
        },
    };
    let active = body["active"] == true;
    let res = HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body);
    Ok((res, active))
}
