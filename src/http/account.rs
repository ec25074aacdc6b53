//! Signing in and out, and `/account`, where a user sees the applications they authorized and
//! withdraws them.

use super::error::OAuthError;
use super::form::{read_form, Form};
use super::pages::{self, AuthorizedApp, LoginPage};
use super::session::{
    clear_session_cookie, csrf_ok, current_session, current_user, page_with_csrf, start_session,
};
use super::{request_metadata, AppState};
use crate::actors::{ExecuteTokenCommand, ExecuteUserCommand, RecordUnknownLogin};
use crate::passwords;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use domain::event::{LoginFailure, SignInVia};
use domain::grant::RevokeAuthorization;
use domain::oauth::ErrorCode;
use domain::token::TokenCommand;
use domain::user::UserCommand;
use domain::values::ClientId;
use domain::Cause;
use projections::UserView;
use std::sync::Arc;

/// The outcome of checking a username and password.
pub enum SignIn {
    /// The password verified.
    Ok(Arc<UserView>),
    /// Unknown user or wrong password (indistinguishable to the caller).
    Wrong,
    /// Too many recent failures: retry after this many seconds.
    Throttled(i64),
}

pub(crate) fn source_address(req: &HttpRequest) -> String {
    super::source_ip(req)
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Checks a username and password under the throttle, and records a failure.
pub async fn sign_in(
    req: &HttpRequest,
    state: &AppState,
    username: &str,
    password: &str,
    via: SignInVia,
) -> Result<SignIn, OAuthError> {
    let address = source_address(req);
    if let Some(wait) =
        state
            .throttle
            .retry_after(Some(username), &address, state.engine.clock.unix_now_ms())
    {
        tracing::warn!(username, %address, wait, "sign-in throttled");
        return Ok(SignIn::Throttled(wait));
    }
    let user = state.engine.models.users.by_username(username);
    let pw = password.to_owned();
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let verified = web::block(move || match stored {
        Some(h) => passwords::verify(&pw, &h),
        None => {
            passwords::verify_nobody(&pw);
            false
        }
    })
    .await
    .map_err(|e| OAuthError::server_error(&e))?;
    if let (true, Some(user)) = (verified, &user) {
        if !user.disabled {
            state.throttle.succeeded(username, &address);
            return Ok(SignIn::Ok(user.clone()));
        }
    }
    // A locked account answers as a wrong password does, so a stolen password is not
    // confirmed by the lock; the trail says which it was.
    let reason = if verified {
        tracing::warn!(username, %address, "sign-in to a locked account refused");
        LoginFailure::AccountLocked
    } else {
        LoginFailure::WrongPassword
    };
    let lock = state
        .throttle
        .failed(Some(username), &address, state.engine.clock.unix_now_ms());
    let recorded = match &user {
        Some(u) => {
            let metadata = request_metadata(req, Cause::User(u.user_id.to_string()));
            state
                .engine
                .users()
                .send(ExecuteUserCommand {
                    user_id: u.user_id,
                    command: UserCommand::RecordLoginFailure {
                        reason,
                        via: via.clone(),
                        lock: lock.map(|l| (l.failures, l.until)),
                    },
                    metadata,
                })
                .await
        }
        None => {
            let metadata = request_metadata(req, Cause::System);
            state
                .engine
                .users()
                .send(RecordUnknownLogin {
                    typed: username.to_owned(),
                    via: via.clone(),
                    metadata,
                })
                .await
        }
    };
    // The answer stands either way; a failure to record is the operator's to see.
    if let Err(e) = recorded
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        tracing::error!(error = %e, "recording a failed sign-in failed");
    }
    Ok(SignIn::Wrong)
}

/// The password grant's check: `invalid_grant` for wrong credentials, 429 when throttled.
pub async fn check_password(
    req: &HttpRequest,
    state: &AppState,
    username: &str,
    password: &str,
    via: SignInVia,
) -> Result<Arc<UserView>, OAuthError> {
    match sign_in(req, state, username, password, via).await? {
        SignIn::Ok(user) => Ok(user),
        SignIn::Wrong => Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            "wrong username or password",
        )),

        SignIn::Throttled(wait) => Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            format!("too many failed sign-ins; retry in {wait} s"),
        )
        .with_status(StatusCode::TOO_MANY_REQUESTS)
        .with_retry_after(wait)),
    }
}

/// A local path to return to after signing in; anything else (another origin, a protocol-
/// relative URL) becomes `/account`, so the login page cannot be an open redirect.
pub fn safe_return_to(candidate: Option<&str>) -> String {
    match candidate {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => "/account".into(),
    }
}

/// Redirects to the login page, coming back to `return_to` afterwards.
pub fn to_login(return_to: &str) -> HttpResponse {
    to_login_as(return_to, None)
}

/// Redirects to the login page with the username field filled in (OpenID Connect's
/// `login_hint`), coming back to `return_to` afterwards.
pub fn to_login_as(return_to: &str, login_hint: Option<&str>) -> HttpResponse {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("return_to", return_to);
    if let Some(hint) = login_hint {
        query.append_pair("login_hint", hint);
    }
    pages::redirect(StatusCode::FOUND, &format!("/login?{}", query.finish()))
}

fn see_other(location: &str) -> HttpResponse {
    pages::redirect(StatusCode::SEE_OTHER, location)
}

fn login_page(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    return_to: &str,
    username: &str,
    error: Option<&str>,
) -> HttpResponse {
    page_with_csrf(req, state, status, |csrf| {
        pages::login(&LoginPage {
            return_to,
            csrf,
            username,
            error,
        })
    })
}

/// `GET /login`.
#[utoipa::path(
    get,
    path = "/login",
    tag = "pages",
    operation_id = "login_page",
    params(("return_to" = Option<String>, Query, description = "Where to go once signed in (a path of this server)")),
    responses(
        (status = 200, description = "The sign-in page", content_type = "text/html", body = String),
        crate::http::openapi::PageLimit,
    )
)]
pub async fn login_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let query = Form::parse(req.query_string().as_bytes()).unwrap_or_default();
    let return_to = safe_return_to(query.get("return_to"));
    // A hint longer than any username is no username: not shown.
    let hint = query
        .get("login_hint")
        .filter(|h| h.chars().count() <= 64)
        .unwrap_or("");
    login_page(&req, &state, StatusCode::OK, &return_to, hint, None)
}

/// `POST /login`.
#[utoipa::path(
    post,
    path = "/login",
    tag = "pages",
    operation_id = "login",
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
    let return_to = safe_return_to(form.get("return_to"));
    let username = form.get("username").unwrap_or("");
    if !csrf_ok(&req, form.get("csrf_token")) {
        return login_page(
            &req,
            &state,
            StatusCode::FORBIDDEN,
            &return_to,
            username,
            Some("This form expired or was not sent by this site. Please sign in again."),
        );
    }
    let password = form.get("password").unwrap_or("");
    if username.is_empty() || password.is_empty() {
        return login_page(
            &req,
            &state,
            StatusCode::BAD_REQUEST,
            &return_to,
            username,
            Some("Enter your username and password."),
        );
    }
    match sign_in(&req, &state, username, password, SignInVia::LoginPage).await {
        Ok(SignIn::Ok(user)) => match start_session(&req, &state, &user).await {
            Ok(cookie) => {
                let mut res = see_other(&return_to);
                let _ = res.add_cookie(&cookie);
                res
            }
            Err(e) => pages::error_page(
                e.status,
                "Sign-in failed",
                "Your password was right, but the server could not record the sign-in now. Try again in a moment.",
            ),
        },
        Ok(SignIn::Wrong) => login_page(
            &req,
            &state,
            StatusCode::UNAUTHORIZED,
            &return_to,
            username,
            Some("Wrong username or password."),
        ),

        Ok(SignIn::Throttled(wait)) => {
            let mut res = login_page(
                &req,
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                &return_to,
                username,
                Some(&format!(
                    "Too many failed attempts. Try again in {wait} seconds."
                )),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
            res
        }
        Err(e) => pages::error_page(e.status, "Sign-in failed", &e.description),
    }
}

/// `POST /logout`.
#[utoipa::path(
    post,
    path = "/logout",
    tag = "pages",
    operation_id = "logout",
    request_body(content = crate::http::openapi::PageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed out: to the sign-in page"),
        (status = 403, description = "The form did not carry the page's CSRF token", content_type = "text/html", body = String),
        crate::http::openapi::PageLimit,
        (status = 503, description = "The store cannot take writes now", content_type = "text/html", body = String),
    )
)]
pub async fn logout(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let form = read_form(&req, payload).await.unwrap_or_default();
    if !csrf_ok(&req, form.get("csrf_token")) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "Sign-out failed",
            "This form expired; reload the page.",
        );
    }
    if let Some((session, _)) = current_session(&req, &state, state.engine.clock.unix_now()) {
        if let Err(e) = super::logout::end_session(&req, &state, &session).await {
            return pages::error_page(
                e.status,
                "Sign-out failed",
                "The server could not record the sign-out now. Try again in a moment.",
            );
        }
    }
    let mut res = see_other("/login");
    let _ = res.add_cookie(&clear_session_cookie(&state));
    res
}

/// `GET /account`.
#[utoipa::path(
    get,
    path = "/account",
    tag = "pages",
    operation_id = "account_page",
    responses(
        (status = 302, description = "Not signed in: to the sign-in page"),
        (status = 200, description = "The signed-in user's apps, each with a revoke button", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page"),
        crate::http::openapi::PageLimit,
    )
)]
pub async fn account(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(user) = current_user(&req, &state, state.engine.clock.unix_now()) else {
        return to_login("/account");
    };
    let consents = match state.engine.models.consents.of_user(&user.user_id) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reading consents failed");
            return pages::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Account",
                "The server failed; try again.",
            );
        }
    };
    let apps: Vec<AuthorizedApp> = consents
        .into_iter()
        .filter_map(|c| {
            let client = state.engine.models.clients.get(c.client_id.as_str())?;
            Some(AuthorizedApp {
                client_id: c.client_id.to_string(),
                name: client.client.name.clone(),
                scopes: c.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
                granted_at: c
                    .granted_at
                    .format(time::macros::format_description!(
                        "[year]-[month]-[day] [hour]:[minute] UTC"
                    ))
                    .unwrap_or_default(),
            })
        })
        .collect();
    let query = Form::parse(req.query_string().as_bytes()).unwrap_or_default();
    // The notice names the client as registered, never the text of the link: a crafted
    // `revoked=` must not put words of its own on this page.
    let notice = query
        .get("revoked")
        .and_then(|c| state.engine.models.clients.get(c))
        .map(|v| {
            format!(
                "Access of {} was revoked; its tokens no longer work.",
                v.client.name
            )
        });
    page_with_csrf(&req, &state, StatusCode::OK, |csrf| {
        pages::account(user.username.as_str(), &apps, csrf, notice.as_deref())
    })
}

/// `POST /account/revoke`: withdraws a client's authorization; every token of this user for
/// that client becomes inactive.
#[utoipa::path(
    post,
    path = "/account/revoke",
    tag = "pages",
    operation_id = "account_revoke",
    request_body(content = crate::http::openapi::PageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 302, description = "Not signed in: to the sign-in page"),
        (status = 303, description = "Revoked (or not signed in): back to the account page"),
        (status = 400, description = "The form could not be read", content_type = "text/html", body = String),
        (status = 403, description = "The form did not carry the page's CSRF token", content_type = "text/html", body = String),
        (status = 413, description = "The form is too large", content_type = "text/html", body = String),
        crate::http::openapi::PageLimit,
        (status = 503, description = "The store cannot take writes now", content_type = "text/html", body = String),
    )
)]
pub async fn revoke(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(user) = current_user(&req, &state, state.engine.clock.unix_now()) else {
        return to_login("/account");
    };
    let form = read_form(&req, payload).await.unwrap_or_default();
    if !csrf_ok(&req, form.get("csrf_token")) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "Revoke failed",
            "This form expired; reload the page.",
        );
    }
    let Some(client_id) = form.get("client_id").and_then(|c| ClientId::parse(c).ok()) else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "Revoke failed",
            "No such application.",
        );
    };
    let metadata = request_metadata(&req, Cause::User(user.user_id.to_string()));
    let command = TokenCommand::RevokeAuthorization(RevokeAuthorization {
        user_id: user.user_id,
    });
    match state
        .engine
        .registry
        .send(&client_id, ExecuteTokenCommand { command, metadata })
        .await
    {
        Ok(_) => {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("revoked", client_id.as_str())
                .finish();
            see_other(&format!("/account?{query}"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "revoking an authorization failed");
            pages::error_page(
                StatusCode::BAD_REQUEST,
                "Revoke failed",
                "That application no longer exists or could not be reached; try again.",
            )
        }
    }
}
