//! `POST /revoke` (RFC 7009): a client revokes one of its own tokens. Unknown tokens, and
//! tokens of other clients, get the same 200 (docs/decisions/0003-revoking-foreign-tokens.md).

use super::client_auth::authenticate_or_public;
use super::error::OAuthError;
use super::form::read_form;
use super::introspect::{resolve, resolve_refresh};
use super::token::command_error;
use super::{request_metadata, AppState};
use crate::actors::ExecuteTokenCommand;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::event::RevocationReason;
use domain::token::{KnownToken, RevokeToken, TokenCommand};
use domain::Cause;

/// Handles a revocation request.
#[tracing::instrument(skip_all)]
#[utoipa::path(
    post,
    path = "/revoke",
    tag = "oauth",
    operation_id = "revoke",
    request_body(content = crate::http::openapi::TokenQuery, content_type = "application/x-www-form-urlencoded"),
    security(("client" = [])),
    responses(
        (status = 200, description = "Revoked, or there was nothing to revoke (RFC 7009 §2.2)"),
        crate::http::openapi::ClientErrors,
    )
)]
pub async fn revoke(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = read_form(&req, payload).await?;
    // A public client revokes its own tokens with its client_id alone (RFC 7009 §2.1).
    let caller = authenticate_or_public(&req, &form, &state).await?;
    let token = form.require("token")?;
    let hint = form.get("token_type_hint");
    let access = |state: &AppState| {
        resolve(state, token).map(|found| {
            found.map(|t| KnownToken {
                jti: t.record.jti,
                client_id: t.record.client_id.clone(),
                revoked: t.revoked_at_position.is_some() || t.family_revoked,
                refresh_family: None,
            })
        })
    };
    // A refresh token takes its whole grant with it (RFC 7009 §2.1).
    let refresh = |state: &AppState| {
        resolve_refresh(state, token).map(|found| {
            found.map(|r| KnownToken {
                jti: r.issued.id,
                client_id: r.issued.client_id.clone(),
                revoked: r.family_revoked,
                refresh_family: Some(r.issued.family_id),
            })
        })
    };
    // The hint only orders the lookups (RFC 7009 §2.1); both kinds are always tried.
    let known = if hint == Some("refresh_token") {
        match refresh(&state)? {
            Some(k) => Some(k),
            None => access(&state)?,
        }
    } else {
        match access(&state)? {
            Some(k) => Some(k),
            None => refresh(&state)?,
        }
    };
    // Only the owner's actor decides; another client's token is left alone, unseen.
    if known
        .as_ref()
        .is_some_and(|k| k.client_id == caller.view.client.client_id && !k.revoked)
    {
        let client_id = caller.view.client.client_id.clone();
        let command = TokenCommand::Revoke(RevokeToken {
            token: known,
            reason: RevocationReason::RevokedByClient,
        });
        let metadata = request_metadata(&req, Cause::Client(client_id.to_string()));
        state
            .engine
            .registry
            .send(&client_id, ExecuteTokenCommand { command, metadata })
            .await
            .map_err(command_error)?;
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}
