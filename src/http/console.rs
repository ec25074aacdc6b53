//! The admin console's client registry and token inspector, beside the audit viewer
//! (`viewer.rs`, whose sign-in and session they share): list and search clients, create one
//! with its settings, edit it, rotate its secret (shown once), delete it after a confirmation;
//! paste a token or pick one from the trail to see whether it is active and why not, its
//! claims, the key that signed it and its family, and revoke it.
//!
//! Server-rendered, no script, every form CSRF-protected. Every change goes through the same
//! service functions and actor commands as the admin API, with the same metadata: caused by
//! the signed-in admin client, with the request's id, address and user agent.

use super::pages::{self, redirect};
use super::session::{csrf_ok, page_with_csrf};
use super::viewer::{current_admin, to_sign_in};
use super::{request_metadata, AppState};
use crate::service::{self, ChangeClient, ClientOutput, CreateClient};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::values::GrantType;
use domain::Cause;
use maud::{html, Markup};

fn lines(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn words(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// A posted form checked for its CSRF token.
async fn posted(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<super::form::Form, HttpResponse> {
    let form = super::form::read_form(req, payload)
        .await
        .map_err(|e| pages::error_page(e.status, "Invalid request", &e.description))?;
    if !csrf_ok(req, form.get("csrf_token")) {
        return Err(pages::error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form expired or was not sent by this site. Open the page again.",
        ));
    }
    Ok(form)
}

/// The signed-in admin and the form it posted (CSRF checked); else the answer to give.
async fn admin_form(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(String, super::form::Form), HttpResponse> {
    let who = current_admin(req, state).ok_or_else(to_sign_in)?;
    Ok((who, posted(req, payload).await?))
}

/// `GET /admin/clients`: every client, or those whose id or name holds `q`.
#[utoipa::path(
    get,
    path = "/admin/clients",
    tag = "console",
    operation_id = "console_clients",
    params(("q" = Option<String>, Query, description = "Search: id or name")),
    responses(
        (status = 200, description = "The clients, searchable", content_type = "text/html", body = String),
        crate::http::openapi::ConsolePage,
    )
)]
pub async fn clients(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if current_admin(&req, &state).is_none() {
        return to_sign_in();
    }
    let q = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.trim().to_lowercase())
        .unwrap_or_default();
    let all = service::list_clients(&state.engine);
    let shown: Vec<&ClientOutput> = all
        .iter()
        .filter(|c| {
            q.is_empty()
                || c.client_id.to_lowercase().contains(&q)
                || c.name.to_lowercase().contains(&q)
        })
        .collect();
    page_with_csrf(&req, &state, StatusCode::OK, |csrf| {
        pages::console(
            "Clients",
            csrf,
            html! {
                h1 { "Clients" }
                form.filters method="get" action="/admin/clients" {
                    div {
                        label for="q" { "Search" }
                        input type="text" id="q" name="q" value=(q) placeholder="id or name";
                    }
                    div { button type="submit" { "Search" } }
                }
                p { a.button href="/admin/clients/new" { "New client" } }
                p.muted { (shown.len()) " of " (all.len()) " clients." }
                table {
                    tr { th { "Id" } th { "Name" } th { "Kind" } th { "Grant types" } th { "Registered" } }
                    @for c in &shown {
                        tr {
                            td { a href={ "/admin/clients/" (c.client_id) } { code { (c.client_id) } } }
                            td { (c.name) }
                            td { @if c.public { "public" } @else { "confidential" } }
                            td { (c.grant_types.join(" ")) }
                            td { (c.registered_at) }
                        }
                    }
                }
            },
        )
    })
}

/// The fields of the create and edit forms, filled from `c` when editing.
fn client_fields(c: Option<&ClientOutput>) -> Markup {
    let text = |v: &[String]| v.join("\n");
    let has = |g: &str| c.is_some_and(|c| c.grant_types.iter().any(|x| x == g));
    html! {
        @if c.is_none() {
            label for="client_id" { "Client id" }
            input type="text" id="client_id" name="client_id" placeholder="generated when empty";
            label for="name" { "Name" }
            input type="text" id="name" name="name" required;
            label { input type="checkbox" name="public" value="true"; " Public client (no secret: a browser or native app)" }
        }
        label for="redirect_uris" { "Redirect URIs (one per line, matched exactly)" }
        textarea id="redirect_uris" name="redirect_uris" rows="3" { (c.map(|c| text(&c.redirect_uris)).unwrap_or_default()) }
        fieldset {
            legend { "Grant types" }
            @for g in GrantType::ALL {
                label { input type="checkbox" name={ "grant:" (g.as_str()) } value="true" checked[has(g.as_str())]; " " code { (g.as_str()) } }
            }
        }
        label for="scopes" { "Scopes (space-separated)" }
        input type="text" id="scopes" name="scopes" value=(c.map(|c| c.scopes.join(" ")).unwrap_or_default());
        label for="token_format" { "Access token format" }
        select id="token_format" name="token_format" {
            @for f in ["jwt", "opaque"] {
                option value=(f) selected[c.is_some_and(|c| c.token_format == f)] { (f) }
            }
        }
        label for="access_token_ttl" { "Access token lifetime (seconds)" }
        input type="number" id="access_token_ttl" name="access_token_ttl" min="1" max="86400" value=(c.map_or(3600, |c| c.access_token_ttl));
        label for="token_endpoint_auth_method" { "Client authentication" }
        select id="token_endpoint_auth_method" name="token_endpoint_auth_method" {
            option value="" { "default (Basic or post; none for public clients)" }
            @for m in ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"] {
                option value=(m) selected[c.is_some_and(|c| c.token_endpoint_auth_method == m)] { (m) }
            }
        }
        label for="jwks" { "Public keys (a JWKS document, for private_key_jwt and JWT assertions)" }
        textarea id="jwks" name="jwks" rows="3" { (c.and_then(|c| c.jwks.as_ref()).map(|j| j.to_string()).unwrap_or_default()) }
        label for="trusted_issuers" { "Trusted assertion issuers (one per line)" }
        textarea id="trusted_issuers" name="trusted_issuers" rows="2" { (c.map(|c| text(&c.trusted_issuers)).unwrap_or_default()) }
        label for="post_logout_redirect_uris" { "Post-logout redirect URIs (one per line)" }
        textarea id="post_logout_redirect_uris" name="post_logout_redirect_uris" rows="2" { (c.map(|c| text(&c.post_logout_redirect_uris)).unwrap_or_default()) }
        label for="resources" { "Resources it may ask tokens for (RFC 8707, one per line)" }
        textarea id="resources" name="resources" rows="2" { (c.map(|c| text(&c.resources)).unwrap_or_default()) }
        label { input type="checkbox" name="can_introspect" value="true" checked[c.is_some_and(|c| c.can_introspect)]; " May introspect any client's tokens" }
        label { input type="checkbox" name="allow_plain_pkce" value="true" checked[c.is_some_and(|c| c.allow_plain_pkce)]; " Allows the PKCE plain method" }
        label { input type="checkbox" name="require_par" value="true" checked[c.is_some_and(|c| c.require_pushed_authorization_requests)]; " Must push its authorization requests (PAR)" }
        label { input type="checkbox" name="dpop_bound" value="true" checked[c.is_some_and(|c| c.dpop_bound_access_tokens)]; " Gets DPoP-bound tokens only" }
    }
}

/// The grant types ticked on a client form (one checkbox each: form parameters are never
/// repeated here).
fn checked_grants(form: &super::form::Form) -> Vec<String> {
    GrantType::ALL
        .iter()
        .filter(|g| form.get(&format!("grant:{}", g.as_str())) == Some("true"))
        .map(|g| g.as_str().to_owned())
        .collect()
}

fn json_field(form: &super::form::Form, name: &str) -> Result<Option<serde_json::Value>, String> {
    match form.get(name).map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => serde_json::from_str(t)
            .map(Some)
            .map_err(|e| format!("{name} is not JSON: {e}")),
    }
}

/// `GET /admin/clients/new`.
#[utoipa::path(
    get,
    path = "/admin/clients/new",
    tag = "console",
    operation_id = "console_new_client",
    responses(
        (status = 200, description = "The form to register a client", content_type = "text/html", body = String),
        crate::http::openapi::ConsolePage,
    )
)]
pub async fn new_client(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if current_admin(&req, &state).is_none() {
        return to_sign_in();
    }
    client_form(&req, &state, StatusCode::OK, None, None)
}

fn client_form(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    editing: Option<&ClientOutput>,
    error: Option<&str>,
) -> HttpResponse {
    let (title, action) = match editing {
        Some(c) => (
            "Edit client",
            format!("/admin/clients/{}/edit", c.client_id),
        ),
        None => ("New client", "/admin/clients/new".to_owned()),
    };
    page_with_csrf(req, state, status, |csrf| {
        pages::console(
            title,
            csrf,
            html! {
                h1 { (title) @if let Some(c) = editing { " " code { (c.client_id) } } }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action=(action) {
                    input type="hidden" name="csrf_token" value=(csrf);
                    (client_fields(editing))
                    div.actions { button type="submit" { "Save" } }
                }
            },
        )
    })
}

/// `POST /admin/clients/new`: registers the client; its secret is shown once.
#[utoipa::path(
    post,
    path = "/admin/clients/new",
    tag = "console",
    operation_id = "console_create_client",
    request_body(content = crate::http::openapi::ConsoleClientForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        crate::http::openapi::ConsoleForm,
    )
)]
pub async fn create_client(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (who, form) = match admin_form(&req, payload, &state).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let jwks = match json_field(&form, "jwks") {
        Ok(j) => j,
        Err(e) => return client_form(&req, &state, StatusCode::BAD_REQUEST, None, Some(&e)),
    };
    let yes = |name: &str| form.get(name) == Some("true");
    let create = CreateClient {
        client_id: form
            .get("client_id")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        name: form.get("name").unwrap_or_default().trim().to_owned(),
        public: yes("public"),
        redirect_uris: lines(form.get("redirect_uris")),
        grant_types: checked_grants(&form),
        scopes: words(form.get("scopes")),
        token_format: form.get("token_format").map(str::to_owned),
        access_token_ttl: form.get("access_token_ttl").and_then(|t| t.parse().ok()),
        token_endpoint_auth_method: form
            .get("token_endpoint_auth_method")
            .filter(|m| !m.is_empty())
            .map(str::to_owned),
        jwks,
        trusted_issuers: lines(form.get("trusted_issuers")),
        post_logout_redirect_uris: lines(form.get("post_logout_redirect_uris")),
        resources: lines(form.get("resources")),
        can_introspect: yes("can_introspect"),
        allow_plain_pkce: yes("allow_plain_pkce"),
        require_pushed_authorization_requests: yes("require_par"),
        dpop_bound_access_tokens: yes("dpop_bound"),
        ..CreateClient::default()
    };
    let metadata = request_metadata(&req, Cause::Admin(who));
    match service::create_client(&state.engine, create, metadata).await {
        Ok(out) => secret_page(&req, &state, &out, "Client created"),
        Err(e) => client_form(
            &req,
            &state,
            StatusCode::BAD_REQUEST,
            None,
            Some(&e.to_string()),
        ),
    }
}

/// The page that shows a new secret, once.
fn secret_page(req: &HttpRequest, state: &AppState, c: &ClientOutput, title: &str) -> HttpResponse {
    page_with_csrf(req, state, StatusCode::OK, |csrf| {
        pages::console(
            title,
            csrf,
            html! {
                h1 { (title) }
                p { "Client " a href={ "/admin/clients/" (c.client_id) } { code { (c.client_id) } } " (" (c.name) ")." }
                @if let Some(s) = &c.client_secret {
                    p.notice role="status" { "Its secret, shown this once (only a keyed hash is kept): " }
                    pre.secret data-secret="client_secret" { (s) }
                } @else {
                    p.muted { "It has no secret (a public client, or one that authenticates with its keys)." }
                }
            },
        )
    })
}

/// `GET /admin/clients/{id}/edit`.
#[utoipa::path(
    get,
    path = "/admin/clients/{id}/edit",
    tag = "console",
    operation_id = "console_edit_client",
    params(("id" = String, Path, description = "The client")),
    responses(
        (status = 200, description = "The form to change the client", content_type = "text/html", body = String),
        crate::http::openapi::ConsolePage,
        (status = 404, description = "No such client", content_type = "text/html", body = String),
    )
)]
pub async fn edit_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    if current_admin(&req, &state).is_none() {
        return to_sign_in();
    }
    match service::show_client(&state.engine, &id) {
        Ok(c) => client_form(&req, &state, StatusCode::OK, Some(&c), None),
        Err(e) => pages::error_page(StatusCode::NOT_FOUND, "No such client", &e.to_string()),
    }
}

/// `POST /admin/clients/{id}/edit`: the changes between the form and the client as it is.
#[utoipa::path(
    post,
    path = "/admin/clients/{id}/edit",
    tag = "console",
    operation_id = "console_update_client",
    params(("id" = String, Path, description = "The client")),
    request_body(content = crate::http::openapi::ConsoleClientForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        crate::http::openapi::ConsoleForm,
    )
)]
pub async fn update_client(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let (who, form) = match admin_form(&req, payload, &state).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let current = match service::show_client(&state.engine, &id) {
        Ok(c) => c,
        Err(e) => {
            return pages::error_page(StatusCode::NOT_FOUND, "No such client", &e.to_string())
        }
    };
    let jwks = match json_field(&form, "jwks") {
        Ok(j) => j,
        Err(e) => {
            return client_form(
                &req,
                &state,
                StatusCode::BAD_REQUEST,
                Some(&current),
                Some(&e),
            )
        }
    };
    let uris = lines(form.get("redirect_uris"));
    let yes = |name: &str| form.get(name) == Some("true");
    let method = form
        .get("token_endpoint_auth_method")
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    let change = ChangeClient {
        add_redirect_uris: uris
            .iter()
            .filter(|u| !current.redirect_uris.contains(u))
            .cloned()
            .collect(),
        remove_redirect_uris: current
            .redirect_uris
            .iter()
            .filter(|u| !uris.contains(u))
            .cloned()
            .collect(),
        scopes: Some(words(form.get("scopes"))).filter(|s| *s != current.scopes),
        grant_types: Some(checked_grants(&form)).filter(|g| {
            let mut now = current.grant_types.clone();
            now.sort();
            let mut asked = g.clone();
            asked.sort();
            asked != now
        }),
        token_format: form
            .get("token_format")
            .filter(|f| *f != current.token_format)
            .map(str::to_owned),
        access_token_ttl: form
            .get("access_token_ttl")
            .and_then(|t| t.parse().ok())
            .filter(|t| *t != current.access_token_ttl),
        can_introspect: Some(yes("can_introspect")).filter(|v| *v != current.can_introspect),
        allow_plain_pkce: Some(yes("allow_plain_pkce")).filter(|v| *v != current.allow_plain_pkce),
        token_endpoint_auth_method: method.filter(|m| *m != current.token_endpoint_auth_method),
        jwks: jwks.filter(|j| Some(j) != current.jwks.as_ref()),
        trusted_issuers: Some(lines(form.get("trusted_issuers")))
            .filter(|t| *t != current.trusted_issuers),
        post_logout_redirect_uris: Some(lines(form.get("post_logout_redirect_uris")))
            .filter(|p| *p != current.post_logout_redirect_uris),
        resources: Some(lines(form.get("resources"))).filter(|r| *r != current.resources),
        require_pushed_authorization_requests: Some(yes("require_par"))
            .filter(|v| *v != current.require_pushed_authorization_requests),
        dpop_bound_access_tokens: Some(yes("dpop_bound"))
            .filter(|v| *v != current.dpop_bound_access_tokens),
        ..ChangeClient::default()
    };
    let metadata = request_metadata(&req, Cause::Admin(who));
    match service::update_client(&state.engine, &id, change, metadata).await {
        Ok(_) => redirect(
            StatusCode::SEE_OTHER,
            &format!("/admin/clients/{}", current.client_id),
        ),
        Err(e) => client_form(
            &req,
            &state,
            StatusCode::BAD_REQUEST,
            Some(&current),
            Some(&e.to_string()),
        ),
    }
}

/// `POST /admin/clients/{id}/rotate-secret`: a new secret, shown once.
#[utoipa::path(
    post,
    path = "/admin/clients/{id}/rotate-secret",
    tag = "console",
    operation_id = "console_rotate_secret",
    params(("id" = String, Path, description = "The client")),
    request_body(content = crate::http::openapi::PageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        crate::http::openapi::ConsoleForm,
    )
)]
pub async fn rotate_secret(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let (who, _) = match admin_form(&req, payload, &state).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let metadata = request_metadata(&req, Cause::Admin(who));
    match service::rotate_secret(&state.engine, &id, metadata).await {
        Ok(out) => secret_page(&req, &state, &out, "Secret rotated"),
        Err(e) => pages::error_page(
            StatusCode::BAD_REQUEST,
            "The secret was not rotated",
            &e.to_string(),
        ),
    }
}

/// `GET /admin/clients/{id}/delete`: asks first.
#[utoipa::path(
    get,
    path = "/admin/clients/{id}/delete",
    tag = "console",
    operation_id = "console_confirm_delete",
    params(("id" = String, Path, description = "The client")),
    responses(
        (status = 200, description = "Asks to confirm the deletion", content_type = "text/html", body = String),
        crate::http::openapi::ConsolePage,
        (status = 404, description = "No such client", content_type = "text/html", body = String),
    )
)]
pub async fn confirm_delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    if current_admin(&req, &state).is_none() {
        return to_sign_in();
    }
    let Ok(c) = service::show_client(&state.engine, &id) else {
        return pages::error_page(
            StatusCode::NOT_FOUND,
            "No such client",
            "It was never registered, or it is deleted.",
        );
    };
    page_with_csrf(&req, &state, StatusCode::OK, |csrf| {
        pages::console(
            "Delete client",
            csrf,
            html! {
                h1 { "Delete " code { (c.client_id) } "?" }
                p { (c.name) " will no longer get tokens, and its tokens stop working now. Its id stays taken, and its history stays in the trail." }
                form method="post" action={ "/admin/clients/" (c.client_id) "/delete" } {
                    input type="hidden" name="csrf_token" value=(csrf);
                    div.actions {
                        button.danger type="submit" { "Delete" }
                        a href={ "/admin/clients/" (c.client_id) } { "Cancel" }
                    }
                }
            },
        )
    })
}

/// `POST /admin/clients/{id}/delete`.
#[utoipa::path(
    post,
    path = "/admin/clients/{id}/delete",
    tag = "console",
    operation_id = "console_delete_client",
    params(("id" = String, Path, description = "The client")),
    request_body(content = crate::http::openapi::PageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        crate::http::openapi::ConsoleForm,
    )
)]
pub async fn delete_client(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let (who, _) = match admin_form(&req, payload, &state).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let metadata = request_metadata(&req, Cause::Admin(who));
    match service::delete_client(&state.engine, &id, metadata).await {
        Ok(()) => redirect(StatusCode::SEE_OTHER, "/admin/clients"),
        Err(e) => pages::error_page(
            StatusCode::BAD_REQUEST,
            "The client was not deleted",
            &e.to_string(),
        ),
    }
}

/// What the inspector found out about a token.
#[derive(Default)]
struct Inspection {
    kind: &'static str,
    jti: Option<uuid::Uuid>,
    facts: Vec<(&'static str, String)>,
    active: bool,
    why_not: Vec<String>,
    header: Option<serde_json::Value>,
    claims: Option<serde_json::Value>,
    signature: Option<String>,
    family: Option<uuid::Uuid>,
    /// A refresh token's hash, sealed for the revoke form (the token itself never goes back
    /// into a page).
    sealed_refresh: Option<String>,
}

fn when(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(crate::service::rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// An access token's record, as the index holds it.
fn access_facts(state: &AppState, t: &projections::TokenView, i: &mut Inspection) {
    let now = state.engine.clock.unix_now();
    let r = &t.record;
    i.kind = "access token";
    i.jti = Some(r.jti);
    i.family = r.family_id;
    i.facts = vec![
        ("jti", r.jti.to_string()),
        ("client", r.client_id.to_string()),
        ("subject", r.subject.clone()),
        ("scope", domain::values::join_scopes(&r.scopes)),
        ("grant type", r.grant_type.as_str().to_owned()),
        ("format", r.format.as_str().to_owned()),
        ("issued", when(r.issued_at)),
        ("expires", when(r.expires_at)),
        (
            "signing key",
            r.kid.clone().unwrap_or_else(|| "none (opaque)".into()),
        ),
    ];
    if let Some(f) = r.family_id {
        i.facts.push(("grant (refresh family)", f.to_string()));
    }
    if !r.terms.audience.is_empty() {
        i.facts.push(("audience", r.terms.audience.join(" ")));
    }
    if let Some(jkt) = &r.terms.jkt {
        i.facts.push(("bound to DPoP key", jkt.clone()));
    }
    let client_exists = state
        .engine
        .models
        .clients
        .get(r.client_id.as_str())
        .is_some();
    if let Some(p) = t.revoked_at_position {
        i.why_not.push(format!("revoked (event {p})"));
    }
    if t.family_revoked {
        i.why_not.push(
            "its grant was revoked (refresh reuse, code replay or a revoked refresh token)".into(),
        );
    }
    if t.authorization_revoked {
        i.why_not
            .push("the user withdrew the client's authorization".into());
    }
    if now >= r.expires_at {
        i.why_not.push(format!("expired at {}", when(r.expires_at)));
    }
    if !client_exists {
        i.why_not.push("its client is deleted".into());
    }
    if r.user_id()
        .is_some_and(|u| super::introspect::user_locked(state, &u))
    {
        i.why_not.push("its user's account is locked".into());
    }
    i.active = i.why_not.is_empty();
}

/// A refresh token's view: its family and whether it is the family's live head.
fn refresh_facts(state: &AppState, r: &domain::grant::RefreshView, i: &mut Inspection) {
    let now = state.engine.clock.unix_now();
    let t = &r.issued;
    i.kind = "refresh token";
    i.jti = Some(t.id);
    i.family = Some(t.family_id);
    i.facts = vec![
        ("id", t.id.to_string()),
        ("client", t.client_id.to_string()),
        ("user", t.user_id.to_string()),
        ("scope", domain::values::join_scopes(&t.scopes)),
        ("grant (refresh family)", t.family_id.to_string()),
        ("generation", t.generation.to_string()),
        (
            "family head",
            format!("generation {} ({})", r.head.0, r.head.1),
        ),
        ("issued", when(t.issued_at)),
        ("expires", when(t.expires_at)),
    ];
    if r.family_revoked {
        i.why_not.push("its family was revoked".into());
    }
    if let Some(u) = r.used_at {
        i.why_not.push(format!(
            "used (rotated) at {}: presenting it again revokes its family",
            when(u)
        ));
    }
    if r.authorization_revoked {
        i.why_not
            .push("the user withdrew the client's authorization".into());
    }
    if now >= t.expires_at {
        i.why_not.push(format!("expired at {}", when(t.expires_at)));
    }
    if super::introspect::user_locked(state, &t.user_id) {
        i.why_not.push("its user's account is locked".into());
    }
    i.active = i.why_not.is_empty();
}

/// A JWT's header and claims, decoded for reading (not trusted: the signature line says
/// whether a key of ours verifies it).
fn decode_jwt(state: &AppState, token: &str, i: &mut Inspection) {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let part = |p: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    };
    i.header = part(h);
    i.claims = part(c);
    i.signature = Some(match state.keys.verify(token, &state.issuer) {
        Some((_, kid)) => format!("verified with this server's key {kid}"),
        None => "not verified: no published key of this server signed it for this issuer".into(),
    });
}

fn inspect_token(state: &AppState, token: &str) -> Inspection {
    let mut i = Inspection {
        kind: "unknown",
        ..Inspection::default()
    };
    decode_jwt(state, token, &mut i);
    if let Ok(Some(t)) = super::introspect::resolve(state, token) {
        access_facts(state, &t, &mut i);
    } else if let Ok(Some(r)) = super::introspect::resolve_refresh(state, token) {
        refresh_facts(state, &r, &mut i);
        let tokens = &state.engine.models.tokens;
        let keyed = state.hash_key.hash(token);
        let hash = match tokens.refresh(keyed.as_str()) {
            Ok(Some(_)) => keyed,
            _ => domain::values::SecretHash::unkeyed(token),
        };
        i.sealed_refresh = Some(
            state
                .session_key
                .seal("admin-refresh", &hash.as_str().to_owned()),
        );
    } else {
        i.why_not
            .push("not a token this server issued (or its record was compacted away)".into());
    }
    i
}

fn inspection_page(
    req: &HttpRequest,
    state: &AppState,
    i: &Inspection,
    notice: Option<&str>,
) -> HttpResponse {
    page_with_csrf(req, state, StatusCode::OK, |csrf| {
        pages::console(
            "Token",
            csrf,
            html! {
                h1 { "Token inspector" }
                @if let Some(n) = notice { p.notice role="status" { (n) } }
                (paste_form(csrf))
                h2 { (i.kind) ": " @if i.active { span.active { "active" } } @else { span.inactive { "not active" } } }
                @if !i.why_not.is_empty() {
                    ul.why { @for w in &i.why_not { li { (w) } } }
                }
                @if !i.facts.is_empty() {
                    table { @for (k, v) in &i.facts { tr { th { (k) } td { code { (v) } } } } }
                }
                @if let Some(s) = &i.signature { p { "Signature: " (s) } }
                @if let Some(h) = &i.header { h3 { "JWT header" } pre { (serde_json::to_string_pretty(h).unwrap_or_default()) } }
                @if let Some(c) = &i.claims { h3 { "JWT claims" } pre { (serde_json::to_string_pretty(c).unwrap_or_default()) } }
                @if let (Some(jti), true) = (i.jti, i.active) {
                    form method="post" action={ "/admin/tokens/" (jti) "/revoke" } {
                        input type="hidden" name="csrf_token" value=(csrf);
                        @if let Some(r) = &i.sealed_refresh { input type="hidden" name="refresh" value=(r); }
                        div.actions { button.danger type="submit" {
                            @if i.kind == "refresh token" { "Revoke its whole grant" } @else { "Revoke" }
                        } }
                    }
                }
                @if let Some(jti) = i.jti {
                    p.muted { a href={ "/admin?type=AccessTokenIssued,TokenRevoked,RefreshTokenIssued&client=" (i.facts.iter().find(|(k, _)| *k == "client").map(|(_, v)| v.as_str()).unwrap_or_default()) } { "Its client's token events" } " · id " code { (jti) } }
                }
            },
        )
    })
}

fn paste_form(csrf: &str) -> Markup {
    html! {
        form method="post" action="/admin/tokens" {
            input type="hidden" name="csrf_token" value=(csrf);
            label for="token" { "Paste an access or refresh token (it is not stored or logged)" }
            textarea id="token" name="token" rows="3" autocomplete="off" spellcheck="false" {}
            div.actions { button type="submit" { "Inspect" } }
        }
    }
}

/// `GET /admin/tokens`: the paste form.
#[utoipa::path(
    get,
    path = "/admin/tokens",
    tag = "console",
    operation_id = "console_tokens",
    responses(
        (status = 200, description = "The token inspector: paste a token, or pick one from the trail", content_type = "text/html", body = String),
        crate::http::openapi::ConsolePage,
    )
)]
pub async fn tokens(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if current_admin(&req, &state).is_none() {
        return to_sign_in();
    }
    page_with_csrf(&req, &state, StatusCode::OK, |csrf| {
        pages::console(
            "Token",
            csrf,
            html! {
                h1 { "Token inspector" }
                (paste_form(csrf))
                p.muted { "Or open an " code { "AccessTokenIssued" } " event in the trail and follow its inspect link." }
            },
        )
    })
}

/// `POST /admin/tokens`: inspects a pasted token.
#[utoipa::path(
    post,
    path = "/admin/tokens",
    tag = "console",
    operation_id = "console_inspect",
    request_body(content = crate::http::openapi::ConsoleTokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        crate::http::openapi::ConsoleForm,
    )
)]
pub async fn inspect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (_, form) = match admin_form(&req, payload, &state).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let token = form.get("token").unwrap_or_default().trim();
    let i = inspect_token(&state, token);
    inspection_page(&req, &state, &i, None)
}

/// `GET /admin/tokens/{jti}`: an access token picked from the trail.
#[utoipa::path(
    get,
    path = "/admin/tokens/{jti}",
    tag = "console",
    operation_id = "console_token",
    params(("jti" = String, Path, description = "The token id")),
    responses(
        (status = 200, description = "The token: active or why not, its claims, its family", content_type = "text/html", body = String),
        crate::http::openapi::ConsolePage,
        (status = 404, description = "No such token", content_type = "text/html", body = String),
    )
)]
pub async fn inspect_by_id(
    req: HttpRequest,
    state: web::Data<AppState>,
    jti: web::Path<String>,
) -> HttpResponse {
    if current_admin(&req, &state).is_none() {
        return to_sign_in();
    }
    let i = by_id(&state, &jti);
    inspection_page(&req, &state, &i, None)
}

fn by_id(state: &AppState, jti: &str) -> Inspection {
    let mut i = Inspection {
        kind: "unknown",
        ..Inspection::default()
    };
    match uuid::Uuid::parse_str(jti)
        .ok()
        .map(|j| state.engine.models.tokens.by_jti(&j))
    {
        Some(Ok(Some(t))) => access_facts(state, &t, &mut i),
        _ => i
            .why_not
            .push("no access token with this id in the index (unknown, or compacted away)".into()),
    }
    i
}

/// `POST /admin/tokens/{jti}/revoke`: revoked by the admin, as `TokenRevoked` with the
/// reason `revoked_by_admin`; with `family`, a refresh token's whole grant.
#[utoipa::path(
    post,
    path = "/admin/tokens/{jti}/revoke",
    tag = "console",
    operation_id = "console_revoke",
    params(("jti" = String, Path, description = "The token id")),
    request_body(content = crate::http::openapi::PageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        crate::http::openapi::ConsoleForm,
    )
)]
pub async fn revoke(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    jti: web::Path<String>,
) -> HttpResponse {
    let (who, form) = match admin_form(&req, payload, &state).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let Ok(id) = uuid::Uuid::parse_str(&jti) else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "Not revoked",
            "That is not a token id.",
        );
    };
    // A refresh token: its hash, sealed by the inspection page; its whole family goes.
    let refresh = form
        .get("refresh")
        .and_then(|r| state.session_key.open::<String>("admin-refresh", r))
        .and_then(|hash| state.engine.models.tokens.refresh(&hash).ok().flatten());
    if refresh.as_ref().is_some_and(|r| r.issued.id != id) {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "Not revoked",
            "The form names another token than its page; inspect the token again.",
        );
    }
    let (client_id, family) = match &refresh {
        Some(r) => (Some(r.issued.client_id.clone()), Some(r.issued.family_id)),
        None => (
            state
                .engine
                .models
                .tokens
                .by_jti(&id)
                .ok()
                .flatten()
                .map(|t| t.record.client_id),
            None,
        ),
    };
    let Some(client_id) = client_id else {
        return pages::error_page(
            StatusCode::NOT_FOUND,
            "Not revoked",
            "No such token in the index.",
        );
    };
    let command = domain::token::TokenCommand::Revoke(domain::token::RevokeToken {
        token: Some(domain::token::KnownToken {
            jti: id,
            client_id: client_id.clone(),
            revoked: false,
            refresh_family: family,
        }),
        reason: domain::event::RevocationReason::RevokedByAdmin,
    });
    match state
        .decide(&req, &client_id, Cause::Admin(who), command)
        .await
    {
        Ok(_) => {
            let i = if family.is_some() {
                Inspection {
                    kind: "refresh token",
                    jti: Some(id),
                    family,
                    why_not: vec!["its family was revoked".into()],
                    ..Inspection::default()
                }
            } else {
                by_id(&state, &jti)
            };
            inspection_page(
                &req,
                &state,
                &i,
                Some("Revoked. The trail has the TokenRevoked event."),
            )
        }
        Err(e) => pages::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not revoked",
            &super::token::command_error(e).description,
        ),
    }
}

/// `GET /admin/keys`: every signing key, what it signs and when it leaves the JWKS.
#[utoipa::path(
    get,
    path = "/admin/keys",
    tag = "console",
    operation_id = "console_keys",
    responses(
        (status = 200, description = "The signing keys: what each signs, when it retires", content_type = "text/html", body = String),
        crate::http::openapi::ConsolePage,
    )
)]
pub async fn keys(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if current_admin(&req, &state).is_none() {
        return to_sign_in();
    }
    keys_page(&req, &state, None)
}

fn keys_page(req: &HttpRequest, state: &AppState, notice: Option<&str>) -> HttpResponse {
    let keys = service::list_keys(&state.engine);
    let clients = service::list_clients(&state.engine);
    let default_alg = state.keys.default_algorithm.as_str();
    // The clients whose tokens each algorithm signs (theirs, or the server's default).
    let signs = |alg: &str| {
        let access = clients
            .iter()
            .filter(|c| c.signing_alg == alg || (c.signing_alg == "default" && alg == default_alg))
            .count();
        let id_tokens = clients
            .iter()
            .filter(|c| c.id_token_signed_response_alg == alg)
            .count();
        format!("access tokens of {access} clients, id_tokens of {id_tokens}")
    };
    page_with_csrf(req, state, StatusCode::OK, |csrf| {
        pages::console(
            "Signing keys",
            csrf,
            html! {
                h1 { "Signing keys" }
                @if let Some(n) = notice { p.notice role="status" { (n) } }
                p.muted { "Clients that name no algorithm are signed with " code { (default_alg) } ". A superseded key stays in the JWKS until the last token it signed expires, then retires." }
                @match &keys {
                    Ok(keys) => {
                        table {
                            tr { th { "Key id" } th { "Algorithm" } th { "Status" } th { "Signs" } th { "Signing from" } th { "Superseded" } th { "Retires (last token expires)" } th { "Retired" } }
                            @for k in keys {
                                tr data-status=(k.status) {
                                    td { code { (k.kid) } }
                                    td { (k.algorithm) }
                                    td { (k.status) }
                                    td { @if k.status == "active" { (signs(&k.algorithm)) } @else if k.status == "pending" { "nothing yet" } @else { "nothing new" } }
                                    td { (k.active_from.clone().unwrap_or_default()) }
                                    td { (k.superseded_at.clone().unwrap_or_default()) }
                                    td { (k.last_token_expires_at.clone().unwrap_or_default()) }
                                    td { (k.retired_at.clone().unwrap_or_default()) }
                                }
                            }
                        }
                    }
                    Err(e) => { p.error role="alert" { (e.to_string()) } }
                }
                h2 { "Rotate" }
                form method="post" action="/admin/keys/rotate" {
                    input type="hidden" name="csrf_token" value=(csrf);
                    fieldset {
                        legend { "Algorithms (none ticked: all)" }
                        @for a in ["RS256", "ES256", "EdDSA"] {
                            label { input type="checkbox" name={ "alg:" (a) } value="true"; " " (a) }
                        }
                    }
                    label for="lead_time" { "Seconds between publishing the new key and its first signature (resource servers refetch the JWKS meanwhile)" }
                    input type="number" id="lead_time" name="lead_time" min="0" value=(crate::service::DEFAULT_KEY_LEAD_SECS);
                    div.actions { button type="submit" { "Rotate" } }
                }
            },
        )
    })
}

/// `POST /admin/keys/rotate`: new keys, published now and signing after the lead time.
#[utoipa::path(
    post,
    path = "/admin/keys/rotate",
    tag = "console",
    operation_id = "console_rotate_keys",
    request_body(content = crate::http::openapi::ConsoleKeysForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        crate::http::openapi::ConsoleForm,
    )
)]
pub async fn rotate_keys(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (who, form) = match admin_form(&req, payload, &state).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let algorithms = ["RS256", "ES256", "EdDSA"]
        .iter()
        .filter(|a| form.get(&format!("alg:{a}")) == Some("true"))
        .map(|a| (*a).to_owned())
        .collect();
    let rotate = service::RotateKeys {
        algorithms,
        lead_secs: form.get("lead_time").and_then(|t| t.parse().ok()),
    };
    let metadata = request_metadata(&req, Cause::Admin(who));
    match service::rotate_keys(&state.engine, &state.key_actor, rotate, metadata).await {
        Ok(new) => {
            let kids: Vec<&str> = new.iter().map(|k| k.kid.as_str()).collect();
            keys_page(
                &req,
                &state,
                Some(&format!("New keys published: {}.", kids.join(", "))),
            )
        }
        Err(e) => pages::error_page(
            StatusCode::BAD_REQUEST,
            "The keys were not rotated",
            &e.to_string(),
        ),
    }
}

/// `GET /admin/users`: every user, or those whose username, name or e-mail holds `q`.
#[utoipa::path(
    get,
    path = "/admin/users",
    tag = "console",
    operation_id = "console_users",
    params(("q" = Option<String>, Query, description = "Search: username, name or e-mail")),
    responses(
        (status = 200, description = "The users, searchable", content_type = "text/html", body = String),
        crate::http::openapi::ConsolePage,
    )
)]
pub async fn users(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if current_admin(&req, &state).is_none() {
        return to_sign_in();
    }
    let q = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.trim().to_lowercase())
        .unwrap_or_default();
    let all = service::list_users(&state.engine);
    let holds = |v: &Option<String>| v.as_deref().is_some_and(|v| v.to_lowercase().contains(&q));
    let shown: Vec<&service::UserOutput> = all
        .iter()
        .filter(|u| {
            q.is_empty()
                || u.username.to_lowercase().contains(&q)
                || holds(&u.profile.name)
                || holds(&u.profile.email)
        })
        .collect();
    page_with_csrf(&req, &state, StatusCode::OK, |csrf| {
        pages::console(
            "Users",
            csrf,
            html! {
                h1 { "Users" }
                form.filters method="get" action="/admin/users" {
                    div {
                        label for="q" { "Search" }
                        input type="text" id="q" name="q" value=(q) placeholder="username, name or e-mail";
                    }
                    div { button type="submit" { "Search" } }
                }
                p { a.button href="/admin/users/new" { "New user" } }
                p.muted { (shown.len()) " of " (all.len()) " users." }
                table {
                    tr { th { "Username" } th { "Name" } th { "E-mail" } th { "State" } th { "Registered" } }
                    @for u in &shown {
                        tr {
                            td { a href={ "/admin/users/" (u.username) } { (u.username) } }
                            td { (u.profile.name.clone().unwrap_or_default()) }
                            td { (u.profile.email.clone().unwrap_or_default()) }
                            td { @if u.locked { span.inactive { "locked" } } @else { "active" } }
                            td { (u.registered_at) }
                        }
                    }
                }
            },
        )
    })
}

/// The profile fields of the user forms.
fn profile_fields(p: Option<&domain::event::UserProfile>) -> Markup {
    let v = |f: fn(&domain::event::UserProfile) -> &Option<String>| {
        p.and_then(|p| f(p).clone()).unwrap_or_default()
    };
    html! {
        label for="name" { "Full name" }
        input type="text" id="name" name="name" value=(v(|p| &p.name));
        label for="given_name" { "Given name" }
        input type="text" id="given_name" name="given_name" value=(v(|p| &p.given_name));
        label for="family_name" { "Family name" }
        input type="text" id="family_name" name="family_name" value=(v(|p| &p.family_name));
        label for="preferred_username" { "Preferred username" }
        input type="text" id="preferred_username" name="preferred_username" value=(v(|p| &p.preferred_username));
        label for="email" { "E-mail" }
        input type="text" id="email" name="email" value=(v(|p| &p.email));
        label { input type="checkbox" name="email_verified" value="true" checked[p.is_some_and(|p| p.email_verified)]; " E-mail address verified" }
        label for="locale" { "Locale (BCP 47, e.g. en-GB)" }
        input type="text" id="locale" name="locale" value=(v(|p| &p.locale));
    }
}

/// The profile a form asks for: each field as given (empty clears it).
fn profile_changes(form: &super::form::Form) -> domain::user::ProfileChanges {
    let text = |name: &str| Some(form.get(name).unwrap_or_default().trim().to_owned());
    domain::user::ProfileChanges {
        name: text("name"),
        given_name: text("given_name"),
        family_name: text("family_name"),
        preferred_username: text("preferred_username"),
        email: text("email"),
        email_verified: Some(form.get("email_verified") == Some("true")),
        locale: text("locale"),
    }
}

/// `GET /admin/users/new`.
#[utoipa::path(
    get,
    path = "/admin/users/new",
    tag = "console",
    operation_id = "console_new_user",
    responses(
        (status = 200, description = "The form to create a user", content_type = "text/html", body = String),
        crate::http::openapi::ConsolePage,
    )
)]
pub async fn new_user(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if current_admin(&req, &state).is_none() {
        return to_sign_in();
    }
    new_user_form(&req, &state, StatusCode::OK, None)
}

fn new_user_form(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    error: Option<&str>,
) -> HttpResponse {
    page_with_csrf(req, state, status, |csrf| {
        pages::console(
            "New user",
            csrf,
            html! {
                h1 { "New user" }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/admin/users/new" {
                    input type="hidden" name="csrf_token" value=(csrf);
                    label for="username" { "Username" }
                    input type="text" id="username" name="username" required autocomplete="off";
                    label for="password" { "Password" }
                    input type="password" id="password" name="password" required autocomplete="new-password";
                    (profile_fields(None))
                    div.actions { button type="submit" { "Create" } }
                }
            },
        )
    })
}

/// `POST /admin/users/new`.
#[utoipa::path(
    post,
    path = "/admin/users/new",
    tag = "console",
    operation_id = "console_create_user",
    request_body(content = crate::http::openapi::ConsoleUserForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        crate::http::openapi::ConsoleForm,
    )
)]
pub async fn create_user(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (who, form) = match admin_form(&req, payload, &state).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let p = profile_changes(&form);
    let nonempty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let create = service::CreateUser {
        username: form.get("username").unwrap_or_default().trim().to_owned(),
        password: form.get("password").unwrap_or_default().to_owned(),
        name: nonempty(p.name),
        given_name: nonempty(p.given_name),
        family_name: nonempty(p.family_name),
        preferred_username: nonempty(p.preferred_username),
        email: nonempty(p.email),
        email_verified: p.email_verified.filter(|v| *v),
        locale: nonempty(p.locale),
    };
    let metadata = request_metadata(&req, Cause::Admin(who));
    match service::create_user(&state.engine, create, metadata).await {
        Ok(u) => redirect(
            StatusCode::SEE_OTHER,
            &format!("/admin/users/{}", u.username),
        ),
        Err(e) => new_user_form(&req, &state, StatusCode::BAD_REQUEST, Some(&e.to_string())),
    }
}

/// `GET /admin/users/{name}`: profile, password, lock, sessions and authorized apps.
#[utoipa::path(
    get,
    path = "/admin/users/{name}",
    tag = "console",
    operation_id = "console_user",
    params(("name" = String, Path, description = "The username or user id")),
    responses(
        (status = 200, description = "The user: profile, access, authorized apps", content_type = "text/html", body = String),
        crate::http::openapi::ConsolePage,
        (status = 404, description = "No such user", content_type = "text/html", body = String),
    )
)]
pub async fn user(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> HttpResponse {
    if current_admin(&req, &state).is_none() {
        return to_sign_in();
    }
    let notice = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "done")
        .and_then(|(_, v)| match v.as_ref() {
            "profile" => Some("Profile saved."),
            "password" => Some("Password changed; the user's sessions ended."),
            "locked" => Some("Account locked: no sign-in, no password grant, no session."),
            "unlocked" => Some("Account unlocked."),
            "sessions" => Some("Every session of the user ended."),
            "revoked" => Some(
                "Authorization withdrawn; the application's tokens for this user no longer work.",
            ),
            _ => None,
        });
    user_page(&req, &state, &name, StatusCode::OK, notice, None)
}

fn user_page(
    req: &HttpRequest,
    state: &AppState,
    name: &str,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> HttpResponse {
    let u = match service::show_user(&state.engine, name) {
        Ok(u) => u,
        Err(e) => return pages::error_page(StatusCode::NOT_FOUND, "No such user", &e.to_string()),
    };
    let apps = uuid::Uuid::parse_str(&u.user_id)
        .ok()
        .and_then(|id| {
            state
                .engine
                .models
                .consents
                .of_user(&domain::values::UserId(id))
                .ok()
        })
        .unwrap_or_default();
    let base = format!("/admin/users/{}", u.username);
    page_with_csrf(req, state, status, |csrf| {
        pages::console(
            "User",
            csrf,
            html! {
                h1 { "User " (u.username) " " @if u.locked { span.inactive { "(locked)" } } }
                @if let Some(n) = notice { p.notice role="status" { (n) } }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                p.muted { "Id " code { (u.user_id) } ", registered " (u.registered_at) ". "
                    a href={ "/admin?subject=" (u.user_id) } { "Its history in the trail" } }
                h2 { "Profile" }
                form method="post" action={ (base) "/profile" } {
                    input type="hidden" name="csrf_token" value=(csrf);
                    (profile_fields(Some(&u.profile)))
                    div.actions { button type="submit" { "Save profile" } }
                }
                h2 { "Password" }
                form method="post" action={ (base) "/password" } {
                    input type="hidden" name="csrf_token" value=(csrf);
                    label for="password" { "New password (the user's sessions end)" }
                    input type="password" id="password" name="password" required autocomplete="new-password";
                    div.actions { button type="submit" { "Reset password" } }
                }
                h2 { "Access" }
                div.actions {
                    form.inline method="post" action={ (base) "/lock" } {
                        input type="hidden" name="csrf_token" value=(csrf);
                        @if u.locked {
                            input type="hidden" name="lock" value="false";
                            button type="submit" { "Unlock" }
                        } @else {
                            input type="hidden" name="lock" value="true";
                            button.danger type="submit" { "Lock" }
                        }
                    }
                    form.inline method="post" action={ (base) "/end-sessions" } {
                        input type="hidden" name="csrf_token" value=(csrf);
                        button.secondary type="submit" { "End sessions" }
                    }
                }
                h2 { "Authorized apps" }
                @if apps.is_empty() { p.muted { "None." } }
                table {
                    @for a in &apps {
                        tr {
                            td { a href={ "/admin/clients/" (a.client_id.as_str()) } { code { (a.client_id.as_str()) } } }
                            td { (domain::values::join_scopes(&a.scopes)) }
                            td {
                                form.inline method="post" action={ (base) "/revoke" } {
                                    input type="hidden" name="csrf_token" value=(csrf);
                                    input type="hidden" name="client_id" value=(a.client_id.as_str());
                                    button.danger type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            },
        )
    })
}

/// One of the user page's forms, by `action`: `profile`, `password`, `lock`, `end-sessions`
/// or `revoke`.
#[utoipa::path(
    post,
    path = "/admin/users/{name}/{action}",
    tag = "console",
    operation_id = "console_user_action",
    params(("name" = String, Path, description = "The username or user id"), ("action" = String, Path, description = "`profile`, `password`, `lock`, `unlock`, `end-sessions` or `revoke`")),
    request_body(content = crate::http::openapi::ConsoleUserForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        crate::http::openapi::ConsoleForm,
    )
)]
pub async fn user_action(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let Some(who) = current_admin(&req, &state) else {
        return to_sign_in();
    };
    let (name, action) = path.into_inner();
    let form = match posted(&req, payload).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let metadata = request_metadata(&req, Cause::Admin(who.clone()));
    let engine = &state.engine;
    let done = match action.as_str() {
        "profile" => service::update_user_profile(engine, &name, profile_changes(&form), metadata)
            .await
            .map(|_| "profile"),
        "password" => {
            let access = service::UserAccess {
                password: Some(form.get("password").unwrap_or_default().to_owned()),
                ..service::UserAccess::default()
            };
            service::user_access(engine, &name, access, metadata)
                .await
                .map(|_| "password")
        }
        "lock" => {
            let lock = form.get("lock") == Some("true");
            let access = service::UserAccess {
                locked: Some(lock),
                ..service::UserAccess::default()
            };
            service::user_access(engine, &name, access, metadata)
                .await
                .map(|_| if lock { "locked" } else { "unlocked" })
        }
        "end-sessions" => {
            let access = service::UserAccess {
                end_sessions: true,
                ..service::UserAccess::default()
            };
            service::user_access(engine, &name, access, metadata)
                .await
                .map(|_| "sessions")
        }
        "revoke" => {
            let user = service::show_user(engine, &name);
            let client = form
                .get("client_id")
                .and_then(|c| domain::values::ClientId::parse(c).ok());
            match (user, client) {
                (Ok(u), Some(client)) => {
                    let Ok(user_id) = uuid::Uuid::parse_str(&u.user_id) else {
                        return pages::error_page(StatusCode::NOT_FOUND, "No such user", "");
                    };
                    let command = domain::token::TokenCommand::RevokeAuthorization(
                        domain::grant::RevokeAuthorization {
                            user_id: domain::values::UserId(user_id),
                        },
                    );
                    match state
                        .decide(&req, &client, Cause::Admin(who), command)
                        .await
                    {
                        Ok(_) => Ok("revoked"),
                        Err(e) => Err(service::ServiceError::Invalid(
                            super::token::command_error(e).description,
                        )),
                    }
                }
                (Err(e), _) => Err(e),
                (_, None) => Err(service::ServiceError::Invalid("no such application".into())),
            }
        }
        _ => return pages::error_page(StatusCode::NOT_FOUND, "Not found", "No such action."),
    };
    match done {
        Ok(what) => redirect(
            StatusCode::SEE_OTHER,
            &format!("/admin/users/{}?done={what}", urlencode(&name)),
        ),
        Err(e) => user_page(
            &req,
            &state,
            &name,
            StatusCode::BAD_REQUEST,
            None,
            Some(&e.to_string()),
        ),
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
