//! The device authorization grant (RFC 8628): `POST /device_authorization` for the device,
//! the verification pages at `/device` for the user, and the token endpoint's polling (in
//! `token.rs`). Both codes are kept as keyed hashes; the user code is short, so wrong guesses
//! are throttled per user and per address, like passwords.

use super::account::{source_address, to_login};
use super::client_auth::authenticate_or_public;
use super::error::OAuthError;
use super::form::{read_form, Form};
use super::pages::{self, DeviceConsentPage};
use super::session::{csrf_ok, current_session, page_with_csrf};
use super::token::{command_error, fresh_secret};
use super::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use domain::device::{
    normalize_user_code, DecideDevice, DeviceView, StartDevice, USER_CODE_ALPHABET, USER_CODE_LEN,
};
use domain::event::OidcContext;
use domain::grant::{is_openid, ConsentView};
use domain::token::TokenCommand;
use domain::values::{Scope, SecretHash};
use domain::Cause;
use serde::{Deserialize, Serialize};

/// How long a consent form for a device may wait, in seconds.
const PENDING_TTL_SECS: i64 = 600;

/// A fresh user code: eight characters of the RFC 8628 §6.1 alphabet, shown as `XXXX-XXXX`.
fn user_code() -> Result<String, OAuthError> {
    let mut bytes = [0u8; USER_CODE_LEN];
    getrandom::getrandom(&mut bytes).map_err(|e| OAuthError::server_error(&e))?;
    // 256 is not a multiple of 20: values past the largest multiple are drawn again, so
    // every character is equally likely.
    let mut code = String::with_capacity(USER_CODE_LEN + 1);
    for mut b in bytes {
        while b >= 240 {
            let mut one = [0u8; 1];
            getrandom::getrandom(&mut one).map_err(|e| OAuthError::server_error(&e))?;
            b = one[0];
        }
        if code.len() == USER_CODE_LEN / 2 {
            code.push('-');
        }
        code.push(USER_CODE_ALPHABET[usize::from(b) % USER_CODE_ALPHABET.len()] as char);
    }
    Ok(code)
}

/// `POST /device_authorization` (§3.1, §3.2).
#[tracing::instrument(skip_all, fields(client_id))]
#[utoipa::path(
    post,
    path = "/device_authorization",
    tag = "oauth",
    operation_id = "device_authorization",
    request_body(content = crate::http::openapi::DeviceAuthorizationRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client" = [])),
    responses(
        (status = 200, description = "A device code and a user code (RFC 8628 §3.2)", body = crate::http::openapi::DeviceAuthorizationResponse),
        crate::http::openapi::ClientErrors,
    )
)]
pub async fn authorization(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = read_form(&req, payload).await?;
    let client = authenticate_or_public(&req, &form, &state).await?;
    let client_id = client.view.client.client_id.clone();
    tracing::Span::current().record("client_id", client_id.as_str());
    state.limits.token(&client_id)?;
    let scopes = form
        .get("scope")
        .map(Scope::parse_list)
        .transpose()
        .map_err(|_| {
            OAuthError::new(
                domain::oauth::ErrorCode::InvalidScope,
                "scope must be space-separated scope tokens (RFC 6749 3.3)",
            )
        })?;
    let (device_code, device_code_hash) = fresh_secret(&state.hash_key)?;
    let code = user_code()?;
    let canonical = normalize_user_code(&code)
        .ok_or_else(|| OAuthError::server_error(&"a user code out of its alphabet"))?;
    let now = state.engine.clock.unix_now();
    let g = &state.grants;
    let command = TokenCommand::StartDevice(StartDevice {
        device_code_hash,
        user_code_hash: state.hash_key.hash(&canonical),
        scopes,
        resources: form.resources()?,
        ttl_secs: g.device_code_ttl_secs,
        interval_secs: g.device_poll_interval_secs,
        now,
    });
    let cause = Cause::Client(client_id.to_string());
    state
        .decide(&req, &client_id, cause, command)
        .await
        .map_err(command_error)?;
    let verification_uri = format!("{}/device", state.issuer);
    let complete = format!(
        "{verification_uri}?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("user_code", &code)
            .finish()
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "device_code": device_code,
            "user_code": code,
            "verification_uri": verification_uri,
            "verification_uri_complete": complete,
            "expires_in": g.device_code_ttl_secs,
            "interval": g.device_poll_interval_secs,
        })))
}

/// A device request a signed-in user is answering, sealed into the consent form.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    client_id: domain::values::ClientId,
    device_code_hash: SecretHash,
    user_id: domain::values::UserId,
    expires_at: i64,
}

/// `GET /device`: the code entry form (prefilled from `verification_uri_complete`).
#[utoipa::path(
    get,
    path = "/device",
    tag = "pages",
    operation_id = "device_page",
    params(("user_code" = Option<String>, Query, description = "Fills in the code (verification_uri_complete)")),
    responses(
        (status = 200, description = "Where a user types the code shown on their device", content_type = "text/html", body = String),
        (status = 302, description = "Not signed in: to the sign-in page"),
        crate::http::openapi::PageLimit,
    )
)]
pub async fn entry(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let query = Form::parse(req.query_string().as_bytes()).unwrap_or_default();
    let typed = query.get("user_code").unwrap_or("");
    if current_session(&req, &state, state.engine.clock.unix_now()).is_none() {
        let back = form_urlencoded::Serializer::new(String::new())
            .append_pair("user_code", typed)
            .finish();
        return to_login(&format!("/device?{back}"));
    }
    page_with_csrf(&req, &state, StatusCode::OK, |csrf| {
        pages::device_entry(csrf, typed, None)
    })
}

fn refused(title: &str, message: &str) -> HttpResponse {
    pages::error_page(StatusCode::FORBIDDEN, title, message)
}

/// A form of the device pages posted by a signed-in browser, with its CSRF token: the form,
/// the session, its user and now; else the page to answer.
async fn signed_in_form(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<
    (
        Form,
        super::session::Session,
        std::sync::Arc<projections::UserView>,
        i64,
    ),
    HttpResponse,
> {
    let form = read_form(req, payload)
        .await
        .map_err(|e| pages::error_page(e.status, "Invalid request", &e.description))?;
    let now = state.engine.clock.unix_now();
    let Some((session, user)) = current_session(req, state, now) else {
        return Err(to_login("/device"));
    };
    if !csrf_ok(req, form.get("csrf_token")) {
        return Err(refused(
            "Request refused",
            "This form expired or was not sent by this site. Open the page again.",
        ));
    }
    Ok((form, session, user, now))
}

/// `POST /device`: looks the code up and asks the user to approve or deny.
#[utoipa::path(
    post,
    path = "/device",
    tag = "pages",
    operation_id = "device_submit",
    request_body(content = crate::http::openapi::PageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        crate::http::openapi::DeviceForm,
    )
)]
pub async fn submit(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (form, _, user, now) = match signed_in_form(&req, payload, &state).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let typed = form.get("user_code").unwrap_or("");
    let who = format!("device:{}", user.user_id);
    let address = source_address(&req);
    let now_ms = state.engine.clock.unix_now_ms();
    if let Some(wait) = state
        .device_throttle
        .retry_after(Some(&who), &address, now_ms)
    {
        return page_with_csrf(&req, &state, StatusCode::TOO_MANY_REQUESTS, |csrf| {
            pages::device_entry(
                csrf,
                typed,
                Some(&format!(
                    "Too many wrong codes. Wait {wait} seconds, then try again."
                )),
            )
        });
    }
    let found = normalize_user_code(typed)
        .map(|c| state.hash_key.hash(&c))
        .and_then(|h| {
            state
                .engine
                .models
                .tokens
                .device_by_user_code(h.as_str())
                .ok()
                .flatten()
        })
        .filter(|d| d.decision.is_none() && now < d.started.expires_at);
    let Some(device) = found else {
        let _ = state.device_throttle.failed(Some(&who), &address, now_ms);
        return page_with_csrf(&req, &state, StatusCode::BAD_REQUEST, |csrf| {
            pages::device_entry(
                csrf,
                typed,
                Some("That code is not valid or has expired. Check the code on your device."),
            )
        });
    };
    state.device_throttle.succeeded(&who, &address);
    let Some(client) = state
        .engine
        .models
        .clients
        .get(device.started.client_id.as_str())
    else {
        return refused("Unknown application", "The application no longer exists.");
    };
    let pending = Pending {
        client_id: device.started.client_id.clone(),
        device_code_hash: device.started.device_code_hash.clone(),
        user_id: user.user_id,
        expires_at: now + PENDING_TTL_SECS,
    };
    let sealed = state.session_key.seal("device", &pending);
    let scopes: Vec<String> = device
        .started
        .scopes
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    let shown = normalize_user_code(typed).unwrap_or_default();
    let shown = format!("{}-{}", &shown[..4], &shown[4..]);
    page_with_csrf(&req, &state, StatusCode::OK, |csrf| {
        pages::device_consent(&DeviceConsentPage {
            username: user.username.as_str(),
            client_name: &client.client.name,
            client_id: client.client.client_id.as_str(),
            user_code: &shown,
            scopes: &scopes,
            request: &sealed,
            csrf,
        })
    })
}

/// `POST /device/decide`: records the user's answer.
#[utoipa::path(
    post,
    path = "/device/decide",
    tag = "pages",
    operation_id = "device_decide",
    request_body(content = crate::http::openapi::PageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        crate::http::openapi::DeviceForm,
    )
)]
pub async fn decide(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (form, session, user, now) = match signed_in_form(&req, payload, &state).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let pending: Option<Pending> = form
        .get("request")
        .and_then(|r| state.session_key.open("device", r))
        .filter(|p: &Pending| p.user_id == user.user_id && now < p.expires_at);
    let Some(pending) = pending else {
        return refused(
            "Request expired",
            "This page expired or belongs to another sign-in. Enter the code again.",
        );
    };
    let approve = form.get("decision") == Some("approve");
    let Some(client) = state.engine.models.clients.get(pending.client_id.as_str()) else {
        return refused("Unknown application", "The application no longer exists.");
    };
    let started = state
        .engine
        .models
        .tokens
        .device(pending.device_code_hash.as_str())
        .ok()
        .flatten();
    let openid = started
        .as_ref()
        .is_some_and(|d| is_openid(&d.started.scopes));
    let command = TokenCommand::DecideDevice(DecideDevice {
        device: started.map(|d| DeviceView {
            decision: None,
            redeemed: false,
            ..d
        }),
        user_id: user.user_id,
        approve,
        existing_consent: ConsentView::default(),
        oidc: openid.then(|| OidcContext {
            auth_time: session.auth_time,
            subject: super::oidc::pairwise_subject(&state, &client.client, user.user_id),
            sid: Some(session.sid.clone()).filter(|sid| !sid.is_empty()),
            amr: vec!["pwd".into()],
            acr: Some(super::oidc::ACR_PASSWORD.into()),
            ..OidcContext::default()
        }),
        now,
    });
    let cause = Cause::User(user.user_id.to_string());
    match state.decide(&req, &pending.client_id, cause, command).await {
        Ok(_) => pages::page(StatusCode::OK, pages::device_done(approve)),
        Err(e) => {
            let e = command_error(e);
            pages::error_page(e.status, "Request not recorded", &e.description)
        }
    }
}
