//! `GET|POST /authorize` (RFC 6749 §4.1, §4.2; RFC 7636) and the consent page.
//!
//! Order matters for safety: the client and its redirect URI are checked first, and while
//! either is in doubt the user sees an error page here and is never redirected (§4.1.2.1).
//! Every later error goes back to the client, in the query for `code` and in the fragment for
//! `token`, with `state` and `iss` (RFC 9207).

use super::account::to_login;
use super::form::{read_body, Form, MAX_BODY};
use super::pages::{self, ConsentPage};
use super::session::{csrf_ok, current_user, page_with_csrf};
use super::token::{access_token_value, command_error, fresh_secret};
use super::{request_metadata, AppState};
use crate::actors::{CommandError, ExecuteTokenCommand};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use domain::event::Event;
use domain::grant::{
    check_request, AuthorizationRequest, ConsentDecision, ConsentView, IssueCode, IssueImplicit,
    NewAccessToken,
};
use domain::oauth::ErrorCode;
use domain::token::{TokenCommand, TokenError};
use domain::values::{is_pkce_string, join_scopes, GrantType, PkceMethod, Scope, UserId};
use domain::Cause;
use projections::{ClientView, UserView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// How long a pending request may wait on the consent page.
const PENDING_TTL_SECS: i64 = 600;

/// Where an authorization response goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ResponseType {
    /// `code`: parameters in the query.
    Code,
    /// `token`: parameters in the fragment.
    Token,
}

/// A request that passed every check but the user's.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Validated {
    client_id: domain::values::ClientId,
    /// As presented (`None`: the request named none).
    redirect_uri: Option<String>,
    /// Where the response goes.
    target: String,
    response_type: ResponseType,
    scopes: Option<Vec<Scope>>,
    state: Option<String>,
    pkce: Option<(String, PkceMethod)>,
}

/// A validated request of a signed-in user, sealed into the consent form.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    #[serde(flatten)]
    request: Validated,
    user_id: UserId,
    expires_at: i64,
}

/// An answer sent back to the client through its redirect URI.
struct ClientRedirect<'a> {
    target: &'a str,
    response_type: ResponseType,
    state: Option<&'a str>,
    issuer: &'a str,
}

impl ClientRedirect<'_> {
    fn send(&self, mut params: Vec<(&str, String)>, status: StatusCode) -> HttpResponse {
        if let Some(s) = self.state {
            params.push(("state", s.to_owned()));
        }
        params.push(("iss", self.issuer.to_owned()));
        let location = match url::Url::parse(self.target) {
            Ok(mut url) => {
                match self.response_type {
                    ResponseType::Code => {
                        let mut q = url.query_pairs_mut();
                        for (k, v) in &params {
                            q.append_pair(k, v);
                        }
                    }
                    ResponseType::Token => {
                        let mut f = form_urlencoded::Serializer::new(String::new());
                        for (k, v) in &params {
                            f.append_pair(k, v);
                        }
                        url.set_fragment(Some(&f.finish()));
                    }
                }
                url.to_string()
            }
            // Registered URIs are validated; this cannot be reached with one.
            Err(_) => {
                return pages::error_page(
                    StatusCode::BAD_REQUEST,
                    "Invalid redirect URI",
                    "The application's redirect URI cannot be used.",
                )
            }
        };
        pages::redirect(status, &location)
    }

    fn error(&self, code: ErrorCode, description: &str, status: StatusCode) -> HttpResponse {
        self.send(
            vec![
                ("error", code.as_str().to_owned()),
                (
                    "error_description",
                    domain::oauth::error_description(description),
                ),
            ],
            status,
        )
    }
}

/// The request's parameters with how often each appeared.
fn parameters(raw: &[u8]) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw) {
        map.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    map
}

/// One parameter: `Ok(None)` when absent or empty, `Err` when repeated (RFC 6749 §3.1).
fn single<'a>(
    params: &'a HashMap<String, Vec<String>>,
    name: &str,
) -> Result<Option<&'a str>, String> {
    match params.get(name).map(Vec::as_slice) {
        None => Ok(None),
        Some([v]) => Ok(Some(v.as_str()).filter(|v| !v.is_empty())),
        Some(_) => Err(format!("parameter {name} is repeated")),
    }
}

/// `GET|POST /authorize`.
pub async fn authorize(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let raw = if req.method() == Method::POST {
        match read_body(&req, payload, MAX_BODY).await {
            Ok(b) => b.to_vec(),
            Err(e) => return pages::error_page(e.status, "Invalid request", &e.description),
        }
    } else {
        req.query_string().as_bytes().to_vec()
    };
    let params = parameters(&raw);
    let bad = |msg: &str| pages::error_page(StatusCode::BAD_REQUEST, "Invalid request", msg);

    // 1. The client and its redirect URI: errors here are shown, never redirected.
    let client_id = match single(&params, "client_id") {
        Ok(Some(c)) => c,
        Ok(None) => return bad("The request names no client (client_id is missing)."),
        Err(e) => return bad(&e),
    };
    let Some(client) = state.engine.models.clients.get(client_id) else {
        // Named, not echoed: the page must not repeat what a link put in it.
        return bad("No application is registered with this client_id.");
    };
    let presented = match single(&params, "redirect_uri") {
        Ok(r) => r,
        Err(e) => return bad(&e),
    };
    let target = match client.client.resolve_redirect_uri(presented) {
        Ok(t) => t,
        Err(e) => {
            return bad(&format!(
                "{e}. The application must use a redirect URI registered for it."
            ))
        }
    };

    // 2. Everything else is answered through the redirect.
    let response_type = match single(&params, "response_type") {
        Ok(Some("token")) => ResponseType::Token,
        _ => ResponseType::Code,
    };
    let state_param = single(&params, "state").ok().flatten();
    let redirect = ClientRedirect {
        target: &target,
        response_type,
        state: state_param,
        issuer: &state.issuer,
    };
    let request = match validate(&params, &client, presented, &target, state_param) {
        Ok(r) => r,
        Err((code, description)) => return redirect.error(code, &description, StatusCode::FOUND),
    };
    let now = state.engine.clock.unix_now();
    let Some(user) = current_user(&req, &state, now) else {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                params
                    .iter()
                    .flat_map(|(k, vs)| vs.iter().map(move |v| (k, v))),
            )
            .finish();
        return to_login(&format!("/authorize?{query}"));
    };
    let pending = Pending {
        request,
        user_id: user.user_id,
        expires_at: now + PENDING_TTL_SECS,
    };
    // The decision knows when a remembered consent covers the request (and that a public
    // client's never does); when it does not, the user is asked.
    if let Some(res) = issue(
        &req,
        &state,
        &pending,
        ConsentDecision::Remembered,
        StatusCode::FOUND,
    )
    .await
    {
        return res;
    }
    let sealed = state.session_key.seal("authz", &pending);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("request", &sealed)
        .finish();
    pages::redirect(StatusCode::FOUND, &format!("/consent?{query}"))
}

type Refused = (ErrorCode, String);

/// Checks everything but the user.
fn validate(
    params: &HashMap<String, Vec<String>>,
    client: &ClientView,
    presented: Option<&str>,
    target: &str,
    state: Option<&str>,
) -> Result<Validated, Refused> {
    let invalid = |d: String| (ErrorCode::InvalidRequest, d);
    if let Some((name, _)) = params.iter().find(|(_, v)| v.len() > 1) {
        return Err(invalid(format!("parameter {name} is repeated")));
    }
    let c = &client.client;
    let (response_type, grant) = match single(params, "response_type").map_err(invalid)? {
        None => return Err(invalid("response_type is missing".into())),
        Some("code") => (ResponseType::Code, GrantType::AuthorizationCode),
        Some("token") => (ResponseType::Token, GrantType::Implicit),
        Some(_) => {
            return Err((
                ErrorCode::UnsupportedResponseType,
                "this response_type is not supported; use code".into(),
            ))
        }
    };
    let scopes = single(params, "scope")
        .map_err(invalid)?
        .map(Scope::parse_list)
        .transpose()
        .map_err(|_| (ErrorCode::InvalidScope, "scope must be space-separated scope tokens of printable ASCII without quotes or backslashes (RFC 6749 §3.3)".into()))?;
    // The wire form of PKCE is checked here; what the client may use, by the domain.
    let pkce = match response_type {
        ResponseType::Token => None,
        ResponseType::Code => {
            let challenge = single(params, "code_challenge").map_err(invalid)?;
            let method = single(params, "code_challenge_method").map_err(invalid)?;
            match (challenge, method) {
                (None, Some(_)) => {
                    return Err(invalid(
                        "code_challenge_method without code_challenge".into(),
                    ))
                }
                (None, None) => None,
                (Some(ch), _) if !is_pkce_string(ch) => {
                    return Err(invalid(
                        "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~".into(),
                    ))
                }
                // RFC 7636 §4.3: the method defaults to plain.
                (Some(ch), m) => Some((
                    ch.to_owned(),
                    PkceMethod::parse(m.unwrap_or("plain")).map_err(|_| {
                        invalid("code_challenge_method must be S256 or plain".into())
                    })?,
                )),
            }
        }
    };
    check_request(c, grant, &scopes, pkce.as_ref().map(|(_, m)| *m))
        .map_err(|e| (e.code(), e.to_string()))?;
    Ok(Validated {
        client_id: c.client_id.clone(),
        redirect_uri: presented.map(str::to_owned),
        target: target.to_owned(),
        response_type,
        scopes,
        state: state.map(str::to_owned),
        pkce,
    })
}

/// Asks the client's actor for the code or token, and redirects with it. `None` when a
/// remembered consent no longer covers the request (the caller then asks the user).
async fn issue(
    req: &HttpRequest,
    state: &AppState,
    pending: &Pending,
    consent: ConsentDecision,
    status: StatusCode,
) -> Option<HttpResponse> {
    let redirect = ClientRedirect {
        target: &pending.request.target,
        response_type: pending.request.response_type,
        state: pending.request.state.as_deref(),
        issuer: &state.issuer,
    };
    let fail = |code: ErrorCode, d: &str| Some(redirect.error(code, d, status));
    let client_id = &pending.request.client_id;
    let now = state.engine.clock.unix_now();
    let request = AuthorizationRequest {
        user_id: pending.user_id,
        scopes: pending.request.scopes.clone(),
        redirect_uri: pending.request.redirect_uri.clone(),
        pkce: pending.request.pkce.clone(),
        consent: consent.clone(),
        existing_consent: ConsentView::default(),
        now,
    };
    let Ok((secret, hash)) = fresh_secret(&state.hash_key) else {
        return fail(ErrorCode::ServerError, "the server failed; try again");
    };
    let command = match pending.request.response_type {
        ResponseType::Code => TokenCommand::IssueCode(IssueCode {
            request,
            code_hash: hash,
            ttl_secs: state.grants.code_ttl_secs,
        }),
        ResponseType::Token => TokenCommand::IssueImplicit(IssueImplicit {
            request,
            token: NewAccessToken {
                jti: Uuid::now_v7(),
                opaque_token_hash: hash,
                kid: state
                    .engine
                    .models
                    .clients
                    .get(client_id.as_str())
                    .and_then(|v| state.kid_for(&v.client, now)),
            },
        }),
    };
    let metadata = request_metadata(req, Cause::User(pending.user_id.to_string()));
    let events = match state
        .engine
        .registry
        .send(client_id, ExecuteTokenCommand { command, metadata })
        .await
    {
        Ok(events) => events,
        Err(CommandError::Token(TokenError::ConsentRequired))
            if consent == ConsentDecision::Remembered =>
        {
            return None
        }
        Err(e) => {
            let e = command_error(e);
            return fail(e.code, &e.description);
        }
    };
    let params = match pending.request.response_type {
        ResponseType::Code => vec![("code", secret)],
        ResponseType::Token => {
            let Some(issued) = events.iter().find_map(|e| match &e.event {
                Event::AccessTokenIssued(i) => Some(i),
                _ => None,
            }) else {
                return fail(ErrorCode::ServerError, "no token was recorded");
            };
            let token = match access_token_value(state, issued, secret) {
                Ok(t) => t,
                Err(e) => return fail(e.code, &e.description),
            };
            vec![
                ("access_token", token),
                ("token_type", "Bearer".to_owned()),
                (
                    "expires_in",
                    (issued.expires_at - issued.issued_at).to_string(),
                ),
                ("scope", join_scopes(&issued.scopes)),
            ]
        }
    };
    Some(redirect.send(params, status))
}

/// Opens the sealed request of the consent page and checks it belongs to the signed-in user.
fn pending_for(
    state: &AppState,
    sealed: Option<&str>,
    user: &UserView,
) -> Result<(Pending, Arc<ClientView>), Box<HttpResponse>> {
    let expired = || {
        Box::new(pages::error_page(
            StatusCode::BAD_REQUEST,
            "Request expired",
            "This authorization request expired or was altered. Go back to the application and start again.",
        ))
    };
    let pending: Pending = sealed
        .and_then(|s| state.session_key.open("authz", s))
        .ok_or_else(expired)?;
    if pending.expires_at <= state.engine.clock.unix_now() || pending.user_id != user.user_id {
        return Err(expired());
    }
    let client = state
        .engine
        .models
        .clients
        .get(pending.request.client_id.as_str())
        .ok_or_else(expired)?;
    Ok((pending, client))
}

/// `GET /consent`.
pub async fn consent_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let query = Form::parse(req.query_string().as_bytes()).unwrap_or_default();
    let Some(user) = current_user(&req, &state, state.engine.clock.unix_now()) else {
        let back = form_urlencoded::Serializer::new(String::new())
            .append_pair("request", query.get("request").unwrap_or(""))
            .finish();
        return to_login(&format!("/consent?{back}"));
    };
    let (pending, client) = match pending_for(&state, query.get("request"), &user) {
        Ok(p) => p,
        Err(res) => return *res,
    };
    let scopes: Vec<String> = pending
        .request
        .scopes
        .as_ref()
        .unwrap_or(&client.client.scopes)
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    let host = url::Url::parse(&pending.request.target)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| pending.request.target.clone());
    page_with_csrf(&req, &state, StatusCode::OK, |csrf| {
        pages::consent(&ConsentPage {
            username: user.username.as_str(),
            client_name: &client.client.name,
            client_id: client.client.client_id.as_str(),
            redirect_host: &host,
            scopes: &scopes,
            request: query.get("request").unwrap_or(""),
            csrf,
        })
    })
}

/// `POST /consent`: Approve issues the code (or token); Deny answers `access_denied`.
pub async fn consent(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let form = match super::form::read_form(&req, payload).await {
        Ok(f) => f,
        Err(e) => return pages::error_page(e.status, "Invalid request", &e.description),
    };
    let Some(user) = current_user(&req, &state, state.engine.clock.unix_now()) else {
        return to_login("/account");
    };
    if !csrf_ok(&req, form.get("csrf_token")) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form expired or was not sent by this site. Go back to the application and start again.",
        );
    }
    let (pending, _) = match pending_for(&state, form.get("request"), &user) {
        Ok(p) => p,
        Err(res) => return *res,
    };
    match form.get("decision") {
        Some("approve") => issue(
            &req,
            &state,
            &pending,
            ConsentDecision::Approved,
            StatusCode::SEE_OTHER,
        )
        .await
        .unwrap_or_else(|| {
            pages::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Authorization failed",
                "Try again.",
            )
        }),
        _ => ClientRedirect {
            target: &pending.request.target,
            response_type: pending.request.response_type,
            state: pending.request.state.as_deref(),
            issuer: &state.issuer,
        }
        .error(
            ErrorCode::AccessDenied,
            "the user denied the request",
            StatusCode::SEE_OTHER,
        ),
    }
}
