//! The audit viewer: `/admin` pages for operators. They sign in with the admin credential
//! (`admin.json`'s client id and secret, or any client holding the `admin` scope), then browse
//! the trail newest first with the audit query's filters, expand any event to its full JSON,
//! and open a client's page with its configuration and history.
//!
//! The admin session is a sealed cookie of its own (one hour), checked against the client
//! directory on every page, so deleting the client or taking `admin` away ends it. Sign-in
//! failures are throttled like users' sign-ins, with counts of their own. The pages use no script: an event
//! expands with `<details>`.

use super::account::source_address;
use super::error::OAuthError;
use super::form::read_form;
use super::pages::{self, redirect};
use super::session::{csrf_ok, page_with_csrf};
use super::AppState;
use crate::service::{self, AuditOutput, AuditParams, ClientOutput};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

/// The admin session cookie.
pub const ADMIN_COOKIE: &str = "authledger_admin";
const SESSION_SECS: i64 = 3600;
const PAGE_SIZE: usize = 50;

#[derive(Serialize, Deserialize)]
struct AdminSession {
    client_id: String,
    expires_at: i64,
}

/// Whether a client may use the viewer: it exists, has a secret and holds `admin`.
fn is_admin_client(state: &AppState, client_id: &str) -> bool {
    state.engine.models.clients.get(client_id).is_some_and(|v| {
        v.client.secret_hash.is_some()
            && v.client.admin
            && v.client
                .scopes
                .iter()
                .any(|s| s.as_str() == domain::client::ADMIN_SCOPE)
    })
}

/// The signed-in admin client's id, while its session lasts and it still holds `admin`.
pub(crate) fn current_admin(req: &HttpRequest, state: &AppState) -> Option<String> {
    let cookie = req.cookie(ADMIN_COOKIE)?;
    let s: AdminSession = state.session_key.open("admin-session", cookie.value())?;
    (s.expires_at > state.engine.clock.unix_now() && is_admin_client(state, &s.client_id))
        .then_some(s.client_id)
}

fn admin_cookie(state: &AppState, value: String, max_age: i64) -> Cookie<'static> {
    let mut c = Cookie::build(ADMIN_COOKIE, value)
        .path("/admin")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.issuer.starts_with("https://"))
        .finish();
    c.set_max_age(actix_web::cookie::time::Duration::seconds(max_age));
    c
}

fn login_page(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    client_id: &str,
    error: Option<&str>,
) -> HttpResponse {
    page_with_csrf(req, state, status, |csrf| {
        pages::admin_login(csrf, client_id, error)
    })
}

/// `GET /admin/login`.
#[utoipa::path(
    get,
    path = "/admin/login",
    tag = "console",
    operation_id = "console_login_page",
    responses(
        (status = 200, description = "The admin sign-in page", content_type = "text/html", body = String),
        crate::http::openapi::PageLimit,
    )
)]
pub async fn login_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    login_page(&req, &state, StatusCode::OK, "", None)
}

/// `POST /admin/login`: the admin client's id and secret.
#[utoipa::path(
    post,
    path = "/admin/login",
    tag = "console",
    operation_id = "console_login",
    request_body(content = crate::http::openapi::PageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        crate::http::openapi::SignInForm,
    )
)]
pub async fn login(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let form = match read_form(&req, payload).await {
        Ok(f) => f,
        Err(e) => return pages::error_page(e.status, "Sign-in failed", &e.description),
    };
    let client_id = form.get("client_id").unwrap_or("");
    if !csrf_ok(&req, form.get("csrf_token")) {
        let msg = "This form expired or was not sent by this site. Please sign in again.";
        return login_page(&req, &state, StatusCode::FORBIDDEN, client_id, Some(msg));
    }
    let secret = form.get("client_secret").unwrap_or("");
    let address = source_address(&req);
    let who = format!("admin:{client_id}");
    if let Some(wait) =
        state
            .admin_throttle
            .retry_after(Some(&who), &address, state.engine.clock.unix_now_ms())
    {
        let msg = format!("Too many failed attempts. Try again in {wait} seconds.");
        let mut res = login_page(
            &req,
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            client_id,
            Some(&msg),
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
        return res;
    }
    let verified = state
        .engine
        .models
        .clients
        .get(client_id)
        .and_then(|v| v.client.secret_hash.clone())
        .is_some_and(|h| h.verify(&state.hash_key, secret))
        && is_admin_client(&state, client_id);
    if !verified {
        state
            .admin_throttle
            .failed(Some(&who), &address, state.engine.clock.unix_now_ms());
        tracing::warn!(client_id, %address, "admin viewer sign-in refused");
        let msg = "Wrong client id or secret, or the client does not hold the admin scope.";
        return login_page(&req, &state, StatusCode::UNAUTHORIZED, client_id, Some(msg));
    }
    state.admin_throttle.succeeded(&who, &address);
    let session = AdminSession {
        client_id: client_id.to_owned(),
        expires_at: state.engine.clock.unix_now() + SESSION_SECS,
    };
    let mut res = redirect(StatusCode::SEE_OTHER, "/admin");
    let sealed = state.session_key.seal("admin-session", &session);
    let _ = res.add_cookie(&admin_cookie(&state, sealed, SESSION_SECS));
    res
}

/// `POST /admin/logout`.
#[utoipa::path(
    post,
    path = "/admin/logout",
    tag = "console",
    operation_id = "console_logout",
    request_body(content = crate::http::openapi::PageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed out: to the sign-in page"),
        (status = 403, description = "The form did not carry the page's CSRF token", content_type = "text/html", body = String),
        crate::http::openapi::PageLimit,
    )
)]
pub async fn logout(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let form = read_form(&req, payload).await.ok();
    if !csrf_ok(&req, form.as_ref().and_then(|f| f.get("csrf_token"))) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "Sign-out failed",
            "This form expired or was not sent by this site.",
        );
    }
    let mut res = redirect(StatusCode::SEE_OTHER, "/admin/login");
    let _ = res.add_cookie(&admin_cookie(&state, String::new(), 0));
    res
}

/// The filters of the events page, as the form sends them (empty fields are absent).
fn filters(req: &HttpRequest) -> Vec<(String, String)> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k.into_owned(), v.trim().to_owned()))
        .collect()
}

async fn newest_first(
    state: &web::Data<AppState>,
    mut p: AuditParams,
) -> Result<AuditOutput, OAuthError> {
    p.order = Some("desc".into());
    p.limit = Some(PAGE_SIZE);
    let engine = state.engine.clone();
    Ok(web::block(move || service::audit_query(&engine, &p))
        .await
        .map_err(|e| OAuthError::server_error(&e))??)
}

/// The answer to a request without an admin session: the sign-in page.
pub(crate) fn to_sign_in() -> HttpResponse {
    redirect(StatusCode::SEE_OTHER, "/admin/login")
}

/// `GET /admin`: the trail, newest first, filtered, 50 to a page.
#[utoipa::path(
    get,
    path = "/admin",
    tag = "console",
    operation_id = "console_events",
    params(crate::service::AuditParams),
    responses(
        (status = 200, description = "The audit trail, newest first, with filters", content_type = "text/html", body = String),
        crate::http::openapi::ConsolePage,
        (status = 400, description = "A filter could not be read", content_type = "text/html", body = String),
    )
)]
pub async fn events(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if current_admin(&req, &state).is_none() {
        return to_sign_in();
    }
    let given = filters(&req);
    let outcome = match super::admin::audit_params_from(given.iter().cloned(), &[]) {
        Ok(p) => newest_first(&state, p).await,
        Err(e) => Err(e),
    };
    page_with_csrf(&req, &state, StatusCode::OK, |csrf| {
        pages::admin_events(
            csrf,
            &given,
            outcome.as_ref().map_err(|e| e.description.as_str()),
        )
    })
}

/// `GET /admin/clients/{id}`: a client's configuration and its history, newest first.
#[utoipa::path(
    get,
    path = "/admin/clients/{id}",
    tag = "console",
    operation_id = "console_client",
    params(("id" = String, Path, description = "The client")),
    responses(
        (status = 200, description = "The client, its settings and its history", content_type = "text/html", body = String),
        crate::http::openapi::ConsolePage,
        (status = 404, description = "No such client", content_type = "text/html", body = String),
    )
)]
pub async fn client(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    if current_admin(&req, &state).is_none() {
        return to_sign_in();
    }
    let before = filters(&req)
        .into_iter()
        .find(|(k, _)| k == "before")
        .and_then(|(_, v)| v.parse().ok());
    let current: Option<ClientOutput> = service::show_client(&state.engine, &id).ok();
    let history = newest_first(
        &state,
        AuditParams {
            client: Some(id.to_string()),
            before,
            ..AuditParams::default()
        },
    )
    .await;
    page_with_csrf(&req, &state, StatusCode::OK, |csrf| {
        pages::admin_client(
            csrf,
            &id,
            current.as_ref(),
            history.as_ref().map_err(|e| e.description.as_str()),
        )
    })
}
