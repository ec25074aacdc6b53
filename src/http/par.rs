//! `POST /par`: pushed authorization requests (RFC 9126). The client authenticates and the
//! whole request is checked as `/authorize` would check it, before anyone signs in; what it
//! gets back is a `request_uri` to send the browser with. The request is recorded
//! (`AuthorizationRequestPushed`, with the keyed hash of the URI) and spent by the code or
//! token it leads to.

use super::authorize::{parameters, single, validate};
use super::client_auth::authenticate_or_public;
use super::error::OAuthError;
use super::form::read_form_and_body;
use super::token::{command_error, fresh_secret};
use super::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::par::{PushRequest, LIFETIME_SECS, REQUEST_URI_PREFIX};
use domain::token::TokenCommand;
use domain::values::SecretHash;
use domain::Cause;
use std::collections::HashMap;

/// Parameters that authenticate the client: checked here, never kept.
const CREDENTIALS: [&str; 3] = ["client_secret", "client_assertion", "client_assertion_type"];

/// Handles a pushed authorization request.
#[tracing::instrument(skip_all, fields(client_id))]
#[utoipa::path(
    post,
    path = "/par",
    tag = "oauth",
    operation_id = "par",
    request_body(content = crate::http::openapi::AuthorizationRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client" = [])),
    responses(
        (status = 201, description = "The request is kept: send its `request_uri` to /authorize", body = crate::http::openapi::PushedAuthorizationResponse),
        crate::http::openapi::ClientErrors,
    )
)]
pub async fn push(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (form, body) = read_form_and_body(&req, payload).await?;
    let client = authenticate_or_public(&req, &form, &state).await?;
    let client_id = client.view.client.client_id.clone();
    tracing::Span::current().record("client_id", client_id.as_str());
    state.limits.token(&client_id)?;
    let params = parameters(&body);
    let invalid = |d: &str| OAuthError::invalid_request(d.to_owned());
    if single(&params, "client_id")
        .map_err(|e| invalid(&e))?
        .is_some_and(|id| id != client_id.as_str())
    {
        return Err(invalid("client_id is not the client that authenticated"));
    }
    let presented = single(&params, "redirect_uri").map_err(|e| invalid(&e))?;
    let target = client
        .view
        .client
        .resolve_redirect_uri(presented)
        .map_err(|e| invalid(&e.to_string()))?;
    let openid = single(&params, "scope")
        .ok()
        .flatten()
        .is_some_and(|s| s.split(' ').any(|v| v == domain::grant::OPENID_SCOPE));
    if openid && presented.is_none() {
        return Err(invalid(
            "an OpenID Connect request must name its redirect_uri",
        ));
    }
    // A raw id_token would be kept in the log with the request; it is a credential (a token
    // exchange subject), and the log keeps none.
    if single(&params, "id_token_hint")
        .map_err(|e| invalid(&e))?
        .is_some()
    {
        return Err(invalid(
            "id_token_hint cannot be pushed (it would be stored); send it to /authorize with the request_uri",
        ));
    }
    let state_param = single(&params, "state").map_err(|e| invalid(&e))?;
    validate(
        &state,
        &params,
        &client.view,
        presented,
        &target,
        state_param,
    )
    .map_err(|(code, why)| OAuthError::new(code, why))?;
    let now = state.engine.clock.unix_now();
    let mut kept: Vec<(String, String)> = form_urlencoded::parse(&body)
        .filter(|(k, _)| !CREDENTIALS.contains(&k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    // RFC 9449 §10.1: a proof with the push binds the code to its key, as dpop_jkt would.
    if let Some(proof) = super::dpop::token_request_proof(&req, &state, now)? {
        match kept.iter().find(|(k, _)| k == "dpop_jkt") {
            Some((_, jkt)) if *jkt != proof.jkt => {
                return Err(OAuthError::new(
                    domain::oauth::ErrorCode::InvalidDpopProof,
                    "dpop_jkt is not the thumbprint of the DPoP proof's key",
                ))
            }
            Some(_) => {}
            None => kept.push(("dpop_jkt".into(), proof.jkt)),
        }
    }
    if !kept.iter().any(|(k, _)| k == "client_id") {
        kept.push(("client_id".into(), client_id.to_string()));
    }
    let (secret, _) = fresh_secret(&state.hash_key)?;
    let request_uri = format!("{REQUEST_URI_PREFIX}{secret}");
    let command = TokenCommand::PushAuthorizationRequest(PushRequest {
        request_uri_hash: state.hash_key.hash(&request_uri),
        parameters: kept,
        now,
    });
    let cause = Cause::Client(client_id.to_string());
    state
        .decide(&req, &client_id, cause, command)
        .await
        .map_err(command_error)?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "request_uri": request_uri,
            "expires_in": LIFETIME_SECS,
        })))
}

/// The parameters of the pushed request a `request_uri` names, and the URI's keyed hash;
/// why not, when it is unknown, another client's, used or expired. The query's own
/// parameters are dropped (§4), but for the sign-in mark `/authorize` adds on the way back.
pub(super) fn resolve(
    state: &AppState,
    query: &HashMap<String, Vec<String>>,
    uri: &str,
) -> Result<(HashMap<String, Vec<String>>, SecretHash), String> {
    let client_id =
        single(query, "client_id")?.ok_or("the request names no client_id (RFC 9126 4)")?;
    let hash = state.hash_key.hash(uri);
    let view = state
        .engine
        .models
        .tokens
        .pushed(hash.as_str())
        .map_err(|_| "the server cannot read pushed requests now; try again".to_owned())?
        .ok_or(domain::par::PushRejected::Unknown.to_string())?;
    let client = state
        .engine
        .models
        .clients
        .get(client_id)
        .ok_or(domain::par::PushRejected::Unknown.to_string())?;
    view.check(&client.client, state.engine.clock.unix_now())
        .map_err(|e| e.to_string())?;
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in view.pushed.parameters {
        params.entry(k).or_default().push(v);
    }
    for (k, vs) in query {
        if k.starts_with("authledger_") {
            params.insert(k.clone(), vs.clone());
        }
    }
    Ok((params, hash))
}
