//! `GET|POST /authorize` (RFC 6749 §4.1, §4.2; RFC 7636) and the consent page.
//!
//! Order matters for safety: the client and its redirect URI are checked first, and while
//! either is in doubt the user sees an error page here and is never redirected (§4.1.2.1).
//! Every later error goes back to the client, in the query for `code` and in the fragment for
//! `token`, with `state` and `iss` (RFC 9207).

use super::account::{to_login, to_login_as};
use super::form::{read_body, Form, MAX_BODY};
use super::pages::{self, ConsentPage};
use super::session::{csrf_ok, current_session, current_user, page_with_csrf};
use super::token::{access_token_value, command_error, fresh_secret};
use super::{request_metadata, AppState};
use crate::actors::{CommandError, ExecuteTokenCommand};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use domain::event::{ClaimsRequest, Event, OidcContext, TokenTerms};
use domain::grant::{
    check_request, is_openid, AuthorizationRequest, ConsentDecision, ConsentView, IssueCode,
    IssueImplicit, NewAccessToken, NewIdToken,
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

/// The parameter that carries, sealed, the time a sign-in was asked for by `prompt=login` or
/// `max_age`: a session that began after it satisfies them on the way back from the login page.
const REAUTH_PARAM: &str = "authledger_reauth";

/// What an authorization response carries, and so where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ResponseType {
    /// `code`: parameters in the query.
    Code,
    /// `token`: parameters in the fragment.
    Token,
    /// `id_token` (OpenID Connect implicit flow): in the fragment.
    IdToken,
    /// `id_token token`, in either order: in the fragment.
    IdTokenToken,
}

impl ResponseType {
    /// Parses a `response_type`: space-separated values in any order (Core §3).
    fn parse(value: &str) -> Option<Self> {
        let mut parts: Vec<&str> = value.split(' ').collect();
        parts.sort_unstable();
        match parts.as_slice() {
            ["code"] => Some(Self::Code),
            ["token"] => Some(Self::Token),
            ["id_token"] => Some(Self::IdToken),
            ["id_token", "token"] => Some(Self::IdTokenToken),
            _ => None,
        }
    }

    fn in_fragment(self) -> bool {
        self != Self::Code
    }

    fn has_access_token(self) -> bool {
        matches!(self, Self::Token | Self::IdTokenToken)
    }

    fn has_id_token(self) -> bool {
        matches!(self, Self::IdToken | Self::IdTokenToken)
    }
}

/// `prompt` (Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Prompt {
    /// No page may be shown.
    none: bool,
    /// The user must sign in again.
    login: bool,
    /// The user must be asked, whatever was remembered.
    consent: bool,
}

/// The OpenID Connect part of a request (scope `openid`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OidcRequest {
    nonce: Option<String>,
    prompt: Prompt,
    max_age: Option<i64>,
    claims: ClaimsRequest,
    login_hint: Option<String>,
    /// The `sub` of a valid `id_token_hint`.
    hint_sub: Option<String>,
}

/// A request that passed every check but the user's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Validated {
    client_id: domain::values::ClientId,
    /// As presented (`None`: the request named none).
    redirect_uri: Option<String>,
    /// Where the response goes.
    target: String,
    response_type: ResponseType,
    scopes: Option<Vec<Scope>>,
    state: Option<String>,
    pkce: Option<(String, PkceMethod)>,
    /// Present for an OpenID Connect request.
    #[serde(default)]
    oidc: Option<OidcRequest>,
    /// The `resource`s asked for (RFC 8707) and the `dpop_jkt` (RFC 9449 §10).
    #[serde(default)]
    terms: TokenTerms,
    /// Keyed hash of the `request_uri` of the pushed request it came from (RFC 9126).
    #[serde(default)]
    pushed: Option<domain::values::SecretHash>,
}

/// A validated request of a signed-in user, sealed into the consent form.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    #[serde(flatten)]
    request: Validated,
    user_id: UserId,
    expires_at: i64,
    /// The sign-in behind an OpenID Connect request.
    #[serde(default)]
    signed_in: Option<OidcContext>,
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
                if self.response_type.in_fragment() {
                    let mut f = form_urlencoded::Serializer::new(String::new());
                    for (k, v) in &params {
                        f.append_pair(k, v);
                    }
                    url.set_fragment(Some(&f.finish()));
                } else {
                    let mut q = url.query_pairs_mut();
                    for (k, v) in &params {
                        q.append_pair(k, v);
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
pub(super) fn parameters(raw: &[u8]) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw) {
        map.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    map
}

/// One parameter: `Ok(None)` when absent or empty, `Err` when repeated (RFC 6749 §3.1).
pub(super) fn single<'a>(
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
#[utoipa::path(
    method(get, post),
    path = "/authorize",
    tag = "pages",
    operation_id = "authorize",
    params(("client_id" = Option<String>, Query, description = "The client"), ("response_type" = Option<String>, Query, description = "code"), ("redirect_uri" = Option<String>, Query, description = "Where the answer goes"), ("scope" = Option<String>, Query, description = "Space-separated scopes"), ("state" = Option<String>, Query, description = "Returned as given"), ("code_challenge" = Option<String>, Query, description = "PKCE"), ("code_challenge_method" = Option<String>, Query, description = "S256"), ("request_uri" = Option<String>, Query, description = "A pushed request (RFC 9126)")),
    responses(
        (status = 302, description = "To the client with a code or an error (RFC 6749 §4.1.2), or to sign-in"),
        (status = 303, description = "To the sign-in or consent page"),
        (status = 200, description = "The consent page", content_type = "text/html", body = String),
        (status = 400, description = "The request cannot be sent back to the client (unknown client or redirect URI): the error is shown here", content_type = "text/html", body = String),
        (status = 413, description = "The request is too large", content_type = "text/html", body = String),
        crate::http::openapi::PageLimit,
        (status = 503, description = "The store cannot take writes now", content_type = "text/html", body = String),
    )
)]
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
    let query = parameters(&raw);
    let bad = |msg: &str| pages::error_page(StatusCode::BAD_REQUEST, "Invalid request", msg);
    // RFC 9126 §4: a pushed request's parameters replace the query's.
    let (params, pushed) = match single(&query, "request_uri") {
        Err(e) => return bad(&e),
        Ok(None) => (query.clone(), None),
        // Only this server's pushed requests; any other request_uri (a request object by
        // reference) is refused through the redirect, once the client is known.
        Ok(Some(uri)) if !uri.starts_with(domain::par::REQUEST_URI_PREFIX) => (query.clone(), None),
        Ok(Some(uri)) => match super::par::resolve(&state, &query, uri) {
            Ok((params, hash)) => (params, Some(hash)),
            Err(why) => return bad(&format!("invalid_request_uri: {why}.")),
        },
    };

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
    let openid_asked = single(&params, "scope")
        .ok()
        .flatten()
        .is_some_and(|s| s.split(' ').any(|v| v == domain::grant::OPENID_SCOPE));
    if openid_asked && presented.is_none() {
        // OpenID Connect Core §3.1.2.1: redirect_uri is required.
        return bad("An OpenID Connect request must name its redirect_uri.");
    }
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
        Ok(Some(t)) => ResponseType::parse(t).unwrap_or(ResponseType::Code),
        _ => ResponseType::Code,
    };
    let state_param = single(&params, "state").ok().flatten();
    let redirect = ClientRedirect {
        target: &target,
        response_type,
        state: state_param,
        issuer: &state.issuer,
    };
    if pushed.is_none()
        && (state.grants.require_pushed_authorization_requests
            || client
                .client
                .extensions
                .require_pushed_authorization_requests)
    {
        return redirect.error(
            ErrorCode::InvalidRequest,
            &domain::token::RequestRejected::PushRequired.to_string(),
            StatusCode::FOUND,
        );
    }
    let mut request = match validate(&state, &params, &client, presented, &target, state_param) {
        Ok(r) => r,
        Err((code, description)) => return redirect.error(code, &description, StatusCode::FOUND),
    };
    request.pushed = pushed;
    let now = state.engine.clock.unix_now();
    // The request again, for the way back from the login page.
    let again = |extra: Option<(&str, &str)>| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, vs) in &query {
            if k != REAUTH_PARAM {
                for v in vs {
                    q.append_pair(k, v);
                }
            }
        }
        if let Some((k, v)) = extra {
            q.append_pair(k, v);
        }
        format!("/authorize?{}", q.finish())
    };
    let session = current_session(&req, &state, now);
    let signed_in = match &request.oidc {
        None => None,
        Some(o) => {
            // A sign-in after the time sealed here was the fresh one prompt=login or max_age
            // sent the user to make.
            let fresh_after: Option<i64> = single(&query, REAUTH_PARAM)
                .ok()
                .flatten()
                .and_then(|m| state.session_key.open::<(String, i64)>("reauth", m))
                .filter(|(c, t)| {
                    c == client.client.client_id.as_str() && now - t <= PENDING_TTL_SECS
                })
                .map(|(_, t)| t);
            let must_sign_in = match &session {
                None => true,
                Some((s, user)) => {
                    let fresh = fresh_after.is_some_and(|t| s.auth_time >= t);
                    // An id_token_hint naming another user than the signed-in one asks for
                    // that user (Core §3.1.2.1): sign in again. Whoever signs in then is the
                    // answer, and the relying party compares the sub.
                    let other_user = o.hint_sub.as_ref().is_some_and(|sub| {
                        *sub != super::oidc::subject(&state, &client.client, user.user_id)
                    });
                    !fresh
                        && (o.prompt.login
                            || o.max_age.is_some_and(|m| now - s.auth_time > m)
                            || other_user)
                }
            };
            if must_sign_in {
                if o.prompt.none {
                    return redirect.error(
                        ErrorCode::LoginRequired,
                        "prompt=none, and the user is not signed in as asked",
                        StatusCode::FOUND,
                    );
                }
                let mark = state
                    .session_key
                    .seal("reauth", &(client.client.client_id.as_str(), now));
                return to_login_as(&again(Some((REAUTH_PARAM, &mark))), o.login_hint.as_deref());
            }
            session.as_ref().map(|(s, user)| OidcContext {
                auth_time: s.auth_time,
                subject: super::oidc::pairwise_subject(&state, &client.client, user.user_id),
                sid: Some(s.sid.clone()).filter(|sid| !sid.is_empty()),
                nonce: o.nonce.clone(),
                amr: vec!["pwd".into()],
                acr: Some(super::oidc::ACR_PASSWORD.into()),
                claims: o.claims.clone(),
            })
        }
    };
    let Some((_, user)) = session else {
        return to_login(&again(None));
    };
    let prompt = request.oidc.as_ref().map(|o| o.prompt).unwrap_or_default();
    let pending = Pending {
        request,
        user_id: user.user_id,
        expires_at: now + PENDING_TTL_SECS,
        signed_in,
    };
    // The decision knows when a remembered consent covers the request (and that a public
    // client's never does); when it does not, the user is asked.
    if !prompt.consent {
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
    }
    if prompt.none {
        return redirect.error(
            ErrorCode::ConsentRequired,
            "prompt=none, and the user has not approved this request",
            StatusCode::FOUND,
        );
    }
    let sealed = state.session_key.seal("authz", &pending);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("request", &sealed)
        .finish();
    pages::redirect(StatusCode::FOUND, &format!("/consent?{query}"))
}

type Refused = (ErrorCode, String);

/// Checks everything but the user.
pub(super) fn validate(
    app: &AppState,
    params: &HashMap<String, Vec<String>>,
    client: &ClientView,
    presented: Option<&str>,
    target: &str,
    state: Option<&str>,
) -> Result<Validated, Refused> {
    let invalid = |d: String| (ErrorCode::InvalidRequest, d);
    if let Some((name, _)) = params
        .iter()
        .find(|(k, v)| v.len() > 1 && k.as_str() != "resource")
    {
        return Err(invalid(format!("parameter {name} is repeated")));
    }
    let c = &client.client;
    // Request objects (RFC 9101, Core §6) and the registration parameter are not supported:
    // refused rather than ignored, since what they hold would be ignored too.
    // This server's own request_uri was resolved before; one left here is a request object
    // by reference, or one pushed inside a pushed request (RFC 9126 §2.1).
    for (name, code) in [
        ("request", ErrorCode::RequestNotSupported),
        ("request_uri", ErrorCode::RequestUriNotSupported),
        ("registration", ErrorCode::RegistrationNotSupported),
    ] {
        if let Some(value) = single(params, name).map_err(invalid)? {
            return Err(if value.starts_with(domain::par::REQUEST_URI_PREFIX) {
                (
                    ErrorCode::InvalidRequestUri,
                    "a request_uri cannot be pushed or nested (RFC 9126 2.1)".to_owned(),
                )
            } else {
                (code, format!("the {name} parameter is not supported"))
            });
        }
    }
    let response_type = match single(params, "response_type").map_err(invalid)? {
        None => return Err(invalid("response_type is missing".into())),
        Some(t) => ResponseType::parse(t).ok_or_else(|| {
            (
                ErrorCode::UnsupportedResponseType,
                "this response_type is not supported; use code, token, id_token or id_token token"
                    .to_owned(),
            )
        })?,
    };
    let grant = match response_type {
        ResponseType::Code => GrantType::AuthorizationCode,
        _ => GrantType::Implicit,
    };
    let scopes = single(params, "scope")
        .map_err(invalid)?
        .map(Scope::parse_list)
        .transpose()
        .map_err(|_| (ErrorCode::InvalidScope, "scope must be space-separated scope tokens of printable ASCII without quotes or backslashes (RFC 6749 §3.3)".into()))?;
    let oidc = if is_openid(scopes.as_deref().unwrap_or(&c.scopes)) {
        Some(oidc_request(app, params, c)?)
    } else if response_type.has_id_token() {
        return Err(invalid(
            "response_type id_token needs the scope openid".into(),
        ));
    } else {
        None
    };
    if response_type.has_id_token() && oidc.as_ref().is_some_and(|o| o.nonce.is_none()) {
        return Err(invalid(
            "nonce is required when an id_token is returned from the authorization endpoint".into(),
        ));
    }
    // The wire form of PKCE is checked here; what the client may use, by the domain.
    let pkce = match response_type {
        ResponseType::Token | ResponseType::IdToken | ResponseType::IdTokenToken => None,
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
    let resources: Vec<String> = params
        .get("resource")
        .map(|r| r.iter().filter(|v| !v.is_empty()).cloned().collect())
        .unwrap_or_default();
    if resources
        .iter()
        .any(|r| !domain::client::is_resource_uri(r))
    {
        return Err((
            ErrorCode::InvalidTarget,
            "resource must be an absolute URI without a fragment (RFC 8707 2)".into(),
        ));
    }
    domain::grant::check_resources(c, &resources).map_err(|e| (e.code(), e.to_string()))?;
    let dpop_jkt = single(params, "dpop_jkt").map_err(invalid)?;
    if dpop_jkt.is_some_and(|j| !crate::dpop::is_thumbprint(j)) {
        return Err(invalid(
            "dpop_jkt must be a base64url SHA-256 JWK thumbprint (RFC 9449 10)".into(),
        ));
    }
    Ok(Validated {
        client_id: c.client_id.clone(),
        redirect_uri: presented.map(str::to_owned),
        target: target.to_owned(),
        response_type,
        scopes,
        state: state.map(str::to_owned),
        pkce,
        oidc,
        pushed: None,
        terms: TokenTerms {
            audience: resources,
            jkt: dpop_jkt.map(str::to_owned),
            act: None,
        },
    })
}

/// Longest `nonce` kept: it is recorded in the log and echoed in the id_token.
const MAX_NONCE: usize = 512;

/// The OpenID Connect parameters of a request (Core §3.1.2.1).
fn oidc_request(
    app: &AppState,
    params: &HashMap<String, Vec<String>>,
    client: &domain::client::Client,
) -> Result<OidcRequest, Refused> {
    let invalid = |d: &str| (ErrorCode::InvalidRequest, d.to_owned());
    let get = |name: &str| single(params, name).map_err(|e| (ErrorCode::InvalidRequest, e));
    let nonce = get("nonce")?
        .map(|n| {
            if n.len() > MAX_NONCE || n.chars().any(char::is_control) {
                Err(invalid(
                    "nonce must be at most 512 characters, without control characters",
                ))
            } else {
                Ok(n.to_owned())
            }
        })
        .transpose()?;
    let mut prompt = Prompt::default();
    if let Some(p) = get("prompt")? {
        for v in p.split(' ') {
            match v {
                "none" => prompt.none = true,
                "login" => prompt.login = true,
                "consent" => prompt.consent = true,
                // One account per browser: choosing is signing in again.
                "select_account" => prompt.login = true,
                _ => {
                    return Err(invalid(
                        "prompt takes none, login, consent or select_account",
                    ))
                }
            }
        }
        if prompt.none && (prompt.login || prompt.consent) {
            return Err(invalid("prompt=none cannot be combined with other values"));
        }
    }
    let max_age = get("max_age")?
        .map(|m| {
            m.parse::<u32>()
                .map(i64::from)
                .map_err(|_| invalid("max_age must be a number of seconds"))
        })
        .transpose()?;
    let claims = match get("claims")? {
        None => ClaimsRequest::default(),
        Some(text) => parse_claims(text)?,
    };
    let hint_sub = match get("id_token_hint")? {
        None => None,
        Some(hint) => {
            let claims = super::oidc::verify_id_token(app, hint)
                .filter(|h| h.is_for(client.client_id.as_str()))
                .ok_or_else(|| {
                    invalid("id_token_hint is not an id_token this server issued to this client")
                })?;
            Some(claims.sub)
        }
    };
    Ok(OidcRequest {
        nonce,
        prompt,
        max_age,
        claims,
        login_hint: get("login_hint")?.map(str::to_owned),
        hint_sub,
    })
}

/// The `claims` parameter (Core §5.5): the names asked for in its `userinfo` and `id_token`
/// members.
fn parse_claims(text: &str) -> Result<ClaimsRequest, Refused> {
    let bad = || {
        (
            ErrorCode::InvalidRequest,
            "claims must be a JSON object with userinfo and id_token objects (OpenID Connect Core 5.5)"
                .to_owned(),
        )
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| bad())?;
    let object = value.as_object().ok_or_else(bad)?;
    let names = |member: &str| -> Result<Vec<String>, Refused> {
        match object.get(member) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::Object(m)) => Ok(m
                .keys()
                .filter(|k| k.len() <= 64)
                .take(64)
                .cloned()
                .collect()),
            Some(_) => Err(bad()),
        }
    };
    Ok(ClaimsRequest {
        id_token: names("id_token")?,
        userinfo: names("userinfo")?,
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
        oidc: pending.signed_in.clone(),
        now,
        terms: pending.request.terms.clone(),
        pushed: pending
            .request
            .pushed
            .clone()
            .map(|request_uri_hash| domain::par::PushedUse {
                request_uri_hash,
                view: None,
            }),
    };
    let Ok((secret, hash)) = fresh_secret(&state.hash_key) else {
        return fail(ErrorCode::ServerError, "the server failed; try again");
    };
    let Some(client) = state.engine.models.clients.get(client_id.as_str()) else {
        return fail(ErrorCode::InvalidRequest, "the client no longer exists");
    };
    let response_type = pending.request.response_type;
    let command = match response_type {
        ResponseType::Code => TokenCommand::IssueCode(IssueCode {
            request,
            code_hash: hash,
            ttl_secs: state.grants.code_ttl_secs,
        }),
        _ => TokenCommand::IssueImplicit(IssueImplicit {
            request,
            token: response_type.has_access_token().then(|| NewAccessToken {
                jti: Uuid::now_v7(),
                opaque_token_hash: hash,
                kid: state.kid_for(&client.client, now),
                dpop: None,
                resources: Vec::new(),
            }),
            id_token: response_type.has_id_token().then(|| NewIdToken {
                jti: Uuid::now_v7(),
                kid: super::oidc::id_token_kid(state, &client.client, now),
            }),
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
    if response_type == ResponseType::Code {
        return Some(redirect.send(vec![("code", secret)], status));
    }
    let mut params = Vec::new();
    let mut access_token = None;
    if let Some(issued) = events.iter().find_map(|e| match &e.event {
        Event::AccessTokenIssued(i) => Some(i),
        _ => None,
    }) {
        let token = match access_token_value(state, issued, secret) {
            Ok(t) => t,
            Err(e) => return fail(e.code, &e.description),
        };
        access_token = Some(token.clone());
        params.extend([
            ("access_token", token),
            ("token_type", "Bearer".to_owned()),
            (
                "expires_in",
                (issued.expires_at - issued.issued_at).to_string(),
            ),
            ("scope", join_scopes(&issued.scopes)),
        ]);
    }
    if let Some(issued) = events.iter().find_map(|e| match &e.event {
        Event::IdTokenIssued(i) => Some(i),
        _ => None,
    }) {
        // Without an access token there is no /userinfo to ask: the scopes' claims go in the
        // id_token (Core §5.4).
        let scopes = pending
            .request
            .scopes
            .clone()
            .unwrap_or_else(|| client.client.scopes.clone());
        let extras = super::oidc::IdTokenExtras {
            access_token: access_token.as_deref(),
            granted: &scopes,
            scope_claims: access_token.is_none(),
        };
        match super::oidc::id_token_value(state, issued, extras) {
            Ok(t) => params.push(("id_token", t)),
            Err(e) => return fail(e.code, &e.description),
        }
    }
    if params.is_empty() {
        return fail(ErrorCode::ServerError, "no token was recorded");
    }
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
#[utoipa::path(
    get,
    path = "/consent",
    tag = "pages",
    operation_id = "consent_page",
    responses(
        (status = 200, description = "The consent page", content_type = "text/html", body = String),
        (status = 302, description = "To the client, or to sign-in"),
        (status = 303, description = "To sign-in"),
        (status = 400, description = "No pending request", content_type = "text/html", body = String),
        crate::http::openapi::PageLimit,
    )
)]
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
#[utoipa::path(
    post,
    path = "/consent",
    tag = "pages",
    operation_id = "consent",
    request_body(content = crate::http::openapi::PageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 302, description = "To the client with a code or access_denied"),
        (status = 303, description = "To sign-in"),
        (status = 400, description = "No pending request, or the form could not be read", content_type = "text/html", body = String),
        (status = 403, description = "The form did not carry the page's CSRF token", content_type = "text/html", body = String),
        (status = 413, description = "The form is too large", content_type = "text/html", body = String),
        crate::http::openapi::PageLimit,
        (status = 503, description = "The store cannot take writes now", content_type = "text/html", body = String),
    )
)]
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
    // The sign-in the request carries must be this browser's current one: a form from before
    // a logout must not issue an id_token for the session that ended.
    if let Some(signed_in) = &pending.signed_in {
        let current = current_session(&req, &state, state.engine.clock.unix_now());
        if current.is_none_or(|(s, _)| Some(s.sid.as_str()) != signed_in.sid.as_deref()) {
            return pages::error_page(
                StatusCode::BAD_REQUEST,
                "Request expired",
                "You signed out or in again since this request began. Go back to the application and start again.",
            );
        }
    }
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
