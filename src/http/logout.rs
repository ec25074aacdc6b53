//! Ending sessions: the account page's sign-out, OpenID Connect RP-Initiated Logout 1.0
//! (`/end_session`), and Back-Channel Logout 1.0 (a signed logout token POSTed to each relying
//! party that got id_tokens in the session).
//!
//! A session ends with `SessionEnded`, which names the clients owed a notice; each attempt at
//! delivering one is `BackchannelLogoutAttempted`, and a failed one is tried again on the
//! server's clock (2, 4, 8, 16 and 32 seconds later) until it is taken or the attempts are
//! spent. The notices owed are a read model, so a restart picks up where the last run stopped.

use super::error::OAuthError;
use super::pages;
use super::session::{clear_session_cookie, csrf_ok, current_session, page_with_csrf, Session};
use super::{request_metadata, AppState};
use crate::actors::ExecuteSessionCommand;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::event::{LogoutNotice, SessionEndReason};
use domain::session::SessionCommand;
use domain::Cause;
use serde::Serialize;
use std::time::Duration;

/// The back-channel logout event (Back-Channel Logout 1.0 §2.4).
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How long a relying party may take to answer a notice.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a logout token is valid.
const LOGOUT_TOKEN_TTL_SECS: i64 = 120;

/// Ends a session: records `SessionEnded`, owing a notice to every client that got an
/// id_token in it and registered a back-channel logout URI, and starts their delivery.
pub async fn end_session(
    req: &HttpRequest,
    state: &AppState,
    session: &Session,
) -> Result<(), OAuthError> {
    if session.sid.is_empty() {
        // A cookie from before sessions had ids: nothing was recorded to end.
        return Ok(());
    }
    let clients = state
        .engine
        .models
        .users
        .session_clients(&session.sid)
        .map_err(|e| OAuthError::server_error(&e))?;
    let notify = clients
        .into_iter()
        .filter_map(|id| {
            let view = state.engine.models.clients.get(id.as_str())?;
            let uri = view.client.oidc.backchannel_logout_uri.clone()?;
            Some(LogoutNotice {
                client_id: id,
                uri: uri.as_str().to_owned(),
            })
        })
        .collect();
    let metadata = request_metadata(req, Cause::User(session.user_id.to_string()));
    state
        .engine
        .users()
        .send(ExecuteSessionCommand {
            sid: session.sid.clone(),
            command: SessionCommand::End {
                reason: SessionEndReason::Logout,
                notify,
                now: state.engine.clock.unix_now(),
            },
            metadata,
        })
        .await
        .map_err(|e| OAuthError::server_error(&e))?
        .map_err(super::token::command_error)?;
    state.logout_notices.notify_one();
    Ok(())
}

/// The parameters of a logout request (RP-Initiated Logout 1.0 §2).
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
struct LogoutRequest {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

fn bad(message: &str) -> HttpResponse {
    pages::error_page(StatusCode::BAD_REQUEST, "Invalid logout request", message)
}

/// `GET|POST /end_session`: a relying party sends the user here to sign out. With an
/// `id_token_hint` of the signed-in user's session, the session ends at once; otherwise the
/// user confirms on a page first (§2: the OP asks when it cannot tell the request is the
/// user's). Afterwards the browser goes to the `post_logout_redirect_uri` registered by that
/// client, with `state`, or sees a signed-out page.
#[utoipa::path(
    method(get, post),
    path = "/end_session",
    tag = "pages",
    operation_id = "end_session",
    params(("id_token_hint" = Option<String>, Query, description = "An id_token the server issued"), ("post_logout_redirect_uri" = Option<String>, Query, description = "Registered by the client"), ("state" = Option<String>, Query, description = "Returned as given")),
    responses(
        (status = 200, description = "Asks the user to confirm, or says they are signed out", content_type = "text/html", body = String),
        (status = 302, description = "Signed out: to the client's post-logout redirect URI"),
        (status = 303, description = "Signed out: to the client's post-logout redirect URI"),
        (status = 400, description = "The request is invalid (unknown client, unregistered redirect, a bad id_token_hint)", content_type = "text/html", body = String),
        (status = 413, description = "The form is too large", content_type = "text/html", body = String),
        crate::http::openapi::PageLimit,
        (status = 503, description = "The store cannot take writes now", content_type = "text/html", body = String),
    )
)]
pub async fn end_session_endpoint(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    if req.method() == actix_web::http::Method::POST {
        // A relying party's auto-submitted form is a cross-site POST, which carries no
        // SameSite=Lax cookie: the session would look absent and nothing would end. The same
        // request as a GET navigation carries it.
        return match super::form::read_body(&req, payload, super::form::MAX_BODY).await {
            Ok(b) => pages::redirect(
                StatusCode::SEE_OTHER,
                &format!("/end_session?{}", String::from_utf8_lossy(&b)),
            ),
            Err(e) => pages::error_page(e.status, "Invalid logout request", &e.description),
        };
    }
    let raw = req.query_string().as_bytes().to_vec();
    let form = match super::form::Form::parse(&raw) {
        Ok(f) => f,
        Err(e) => return bad(&e.description),
    };
    let request = LogoutRequest {
        id_token_hint: form.get("id_token_hint").map(str::to_owned),
        client_id: form.get("client_id").map(str::to_owned),
        post_logout_redirect_uri: form.get("post_logout_redirect_uri").map(str::to_owned),
        state: form.get("state").map(str::to_owned),
    };
    let Checked {
        hint,
        client,
        redirect,
    } = match checked(&state, &request) {
        Ok(c) => c,
        Err(why) => return bad(why),
    };
    let now = state.engine.clock.unix_now();
    let session = current_session(&req, &state, now);
    // The hint names the session being ended: then the request is the user's own.
    let hinted = match (&hint, &session) {
        (Some(h), Some((s, _))) => h.sid.as_deref().is_some_and(|sid| sid == s.sid),
        _ => false,
    };
    if session.is_some() && !hinted {
        let sealed = state.session_key.seal("logout", &request);
        return page_with_csrf(&req, &state, StatusCode::OK, |csrf| {
            pages::confirm_logout(
                client.as_ref().map(|c| c.client.name.as_str()),
                &sealed,
                csrf,
            )
        });
    }
    if let Err(page) = end_if_signed_in(&req, &state, session.as_ref().map(|(s, _)| s)).await {
        return page;
    }
    signed_out(&state, redirect.as_deref(), request.state.as_deref())
}

/// What a logout request names, checked: the verified hint, the client (named by the hint's
/// audience or by `client_id`, which must agree), and the `post_logout_redirect_uri`, an exact
/// match of one the client registered. Anything else is refused with the reason to show; a
/// redirect is never made to an address the client did not register.
fn checked(state: &AppState, request: &LogoutRequest) -> Result<Checked, &'static str> {
    let hint = match &request.id_token_hint {
        None => None,
        Some(h) => Some(
            super::oidc::verify_id_token(state, h)
                .ok_or("The id_token_hint is not an id_token this server issued.")?,
        ),
    };
    let client_id = match (&hint, &request.client_id) {
        (Some(h), Some(c)) if !h.is_for(c) => {
            return Err("The id_token_hint was not issued to the client_id given.")
        }
        (_, Some(c)) => Some(c.clone()),
        (Some(h), None) => h.aud.as_str().map(str::to_owned),
        (None, None) => None,
    };
    let client = client_id
        .as_deref()
        .and_then(|c| state.engine.models.clients.get(c));
    if client_id.is_some() && client.is_none() {
        return Err("No application is registered with this client_id.");
    }
    let redirect = match (&request.post_logout_redirect_uri, &client) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(
                "A post_logout_redirect_uri needs the client: send id_token_hint or client_id.",
            )
        }
        (Some(uri), Some(c)) => {
            if !c
                .client
                .oidc
                .post_logout_redirect_uris
                .iter()
                .any(|r| r.as_str() == uri)
            {
                return Err("The post_logout_redirect_uri is not one the application registered for after logout.");
            }
            Some(uri.clone())
        }
    };
    Ok(Checked {
        hint,
        client,
        redirect,
    })
}

/// The parts of a logout request that passed [`checked`].
struct Checked {
    hint: Option<super::oidc::HintClaims>,
    client: Option<std::sync::Arc<projections::ClientView>>,
    redirect: Option<String>,
}

/// Ends the request's session, if it has one; the error page when that cannot be recorded.
async fn end_if_signed_in(
    req: &HttpRequest,
    state: &AppState,
    session: Option<&Session>,
) -> Result<(), HttpResponse> {
    let Some(s) = session else {
        return Ok(());
    };
    end_session(req, state, s).await.map_err(|e| {
        pages::error_page(
            e.status,
            "Sign-out failed",
            "The server could not record the sign-out now. Try again in a moment.",
        )
    })
}

/// The answer once signed out: to the client's registered post-logout URI with the request's
/// `state`, or a page of our own; the session cookie is cleared either way.
fn signed_out(
    state: &AppState,
    redirect: Option<&str>,
    request_state: Option<&str>,
) -> HttpResponse {
    let mut res = match redirect {
        Some(uri) => {
            let location = match (url::Url::parse(uri), request_state) {
                (Ok(mut u), Some(st)) => {
                    u.query_pairs_mut().append_pair("state", st);
                    u.to_string()
                }
                _ => uri.to_owned(),
            };
            pages::redirect(StatusCode::SEE_OTHER, &location)
        }
        None => pages::page(StatusCode::OK, pages::signed_out()),
    };
    let _ = res.add_cookie(&clear_session_cookie(state));
    res
}

/// `POST /end_session/confirm`: the confirmation page's answer; the request it confirms comes
/// back sealed, so nothing in it can have changed.
#[utoipa::path(
    post,
    path = "/end_session/confirm",
    tag = "pages",
    operation_id = "end_session_confirm",
    request_body(content = crate::http::openapi::PageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Signed out", content_type = "text/html", body = String),
        (status = 302, description = "Signed out: to the client's post-logout redirect URI"),
        (status = 303, description = "Signed out: to the client's post-logout redirect URI"),
        (status = 400, description = "The form could not be read", content_type = "text/html", body = String),
        (status = 403, description = "The form did not carry the page's CSRF token", content_type = "text/html", body = String),
        (status = 413, description = "The form is too large", content_type = "text/html", body = String),
        crate::http::openapi::PageLimit,
        (status = 503, description = "The store cannot take writes now", content_type = "text/html", body = String),
    )
)]
pub async fn confirm(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let form = match super::form::read_form(&req, payload).await {
        Ok(f) => f,
        Err(e) => return pages::error_page(e.status, "Invalid logout request", &e.description),
    };
    if !csrf_ok(&req, form.get("csrf_token")) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form expired or was not sent by this site. Sign out again from the application.",
        );
    }
    let Some(request) = form
        .get("request")
        .and_then(|s| state.session_key.open::<LogoutRequest>("logout", s))
    else {
        return bad("This sign-out request expired or was altered.");
    };
    let now = state.engine.clock.unix_now();
    if form.get("decision") != Some("logout") {
        return pages::page(StatusCode::OK, pages::still_signed_in());
    }
    let session = current_session(&req, &state, now);
    if let Err(page) = end_if_signed_in(&req, &state, session.as_ref().map(|(s, _)| s)).await {
        return page;
    }
    // Sealed when it was checked; the client's registered list is read again.
    let redirect = match checked(&state, &request) {
        Ok(c) => c.redirect,
        Err(why) => return bad(why),
    };
    signed_out(&state, redirect.as_deref(), request.state.as_deref())
}

#[derive(Serialize)]
struct LogoutTokenClaims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    sid: &'a str,
    events: serde_json::Value,
}

/// Delivers every notice that is due now, one attempt each, and records the outcomes.
pub async fn deliver_due(state: &AppState) {
    let _one_at_a_time = state.delivering.lock().await;
    let now = state.engine.clock.unix_now();
    let owed = match state.engine.models.users.owed_notices() {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "reading the owed logout notices failed");
            return;
        }
    };
    for notice in owed.into_iter().filter(|n| n.due_at <= now) {
        let status = deliver(state, &notice).await;
        let outcome = state
            .engine
            .users()
            .send(ExecuteSessionCommand {
                sid: notice.sid.clone(),
                command: SessionCommand::RecordDelivery {
                    client_id: notice.client_id.clone(),
                    status,
                    now: state.engine.clock.unix_now(),
                },
                metadata: domain::Metadata::system(),
            })
            .await;
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %super::error::chain(&e), client_id = %notice.client_id, "recording a logout notice attempt failed")
            }
            Err(e) => tracing::warn!(error = %e, "the user actor is unavailable"),
        }
    }
}

/// One attempt: the HTTP status the client answered, or `None` when it could not be reached
/// (or no token could be signed for it).
async fn deliver(state: &AppState, notice: &projections::users::OwedNotice) -> Option<u16> {
    let client = state.engine.models.clients.get(notice.client_id.as_str())?;
    let now = state.engine.clock.unix_now();
    let kid = super::oidc::id_token_kid(state, &client.client, now)?;
    let claims = LogoutTokenClaims {
        iss: &state.issuer,
        sub: super::oidc::subject(state, &client.client, notice.user_id),
        aud: notice.client_id.as_str(),
        iat: now,
        exp: now + LOGOUT_TOKEN_TTL_SECS,
        jti: uuid::Uuid::now_v7().to_string(),
        sid: &notice.sid,
        events: serde_json::json!({ LOGOUT_EVENT: {} }),
    };
    let token = match state.keys.sign_typed(&kid, "logout+jwt", &claims) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "signing a logout token failed");
            return None;
        }
    };
    let client = awc::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .disable_redirects()
        .finish();
    match client
        .post(&notice.uri)
        .insert_header(("Cache-Control", "no-store"))
        .send_form(&[("logout_token", token.as_str())])
        .await
    {
        Ok(res) => Some(res.status().as_u16()),
        Err(e) => {
            tracing::info!(error = %e, client_id = %notice.client_id, "a back-channel logout notice did not reach the client");
            None
        }
    }
}

/// Runs for the life of the server: delivers notices when a session ends, and the retries as
/// they fall due on the server's clock (checked every second).
pub async fn run_deliveries(state: web::Data<AppState>) {
    let mut shutdown = state.shutdown.clone();
    loop {
        deliver_due(&state).await;
        tokio::select! {
            _ = state.logout_notices.notified() => {}
            _ = actix_web::rt::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
