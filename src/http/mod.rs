//! The HTTP surface (actix-web): OAuth endpoints, discovery and the admin API.

pub mod account;
pub mod admin;
pub mod assertion;
pub mod authorize;
pub mod client_auth;
pub mod console;
pub mod device;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod events;
pub mod exchange;
pub mod form;
pub mod introspect;
pub mod limits;
pub mod logout;
pub mod oidc;
pub mod openapi;
pub mod pages;
pub mod par;
pub mod register;
pub mod resource;
pub mod revoke;
pub mod session;
pub mod throttle;
pub mod token;
pub mod viewer;

use crate::engine::Engine;
use crate::keys::Keyring;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::{Cause, Metadata};
use error::OAuthError;
use std::sync::Arc;

/// What every handler shares.
pub struct AppState {
    /// Store, projections and actors.
    pub engine: Arc<Engine>,
    /// The signing keys.
    pub keys: Arc<Keyring>,
    /// The writer of the `keys` stream.
    pub key_actor: actix::Addr<crate::actors::KeyActor>,
    /// Scope the demo resource `/api/whoami` requires.
    pub whoami_scope: Option<String>,
    /// This server's issuer identifier (RFC 8414).
    pub issuer: String,
    /// Lifetimes and switches of the user grants.
    pub grants: crate::config::GrantSettings,
    /// The key of the hashes at rest (tokens, codes, client secrets).
    pub hash_key: domain::values::HashKey,
    /// Seals sessions and pending authorization requests.
    pub session_key: session::SessionKey,
    /// Rate limits, and which proxies are believed about the client's address.
    pub limits: limits::Limits,
    /// Sign-in failure counts.
    pub throttle: throttle::Throttle,
    /// Failure counts of the audit viewer's sign-in, apart from users' (whose names are
    /// whatever was typed, and must not feed an admin client's wait).
    pub admin_throttle: throttle::Throttle,
    /// Wrong device-flow user codes, per user and address (RFC 8628 §5.1).
    pub device_throttle: throttle::Throttle,
    /// What dynamic client registration allows.
    pub registration: register::RegistrationPolicy,
    /// Wakes the delivery of back-channel logout notices (a session just ended).
    pub logout_notices: Arc<tokio::sync::Notify>,
    /// Held while notices are delivered, so that no notice goes out twice at once.
    pub delivering: tokio::sync::Mutex<()>,
    /// Turns true when the server begins to stop: long-lived responses (the event stream)
    /// end then, so that the graceful stop does not wait for them.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Renders `/metrics`; `None` when metrics are off.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Whether the main listener serves `/metrics` (no separate metrics address).
    pub metrics_here: bool,
}

impl AppState {
    /// Has `client`'s actor decide a token command made for this request, caused by
    /// `caused_by`: the events it recorded, once durable and projected.
    pub async fn decide(
        &self,
        req: &HttpRequest,
        client: &domain::values::ClientId,
        caused_by: Cause,
        command: domain::token::TokenCommand,
    ) -> crate::actors::CommandResult {
        let metadata = request_metadata(req, caused_by);
        self.engine
            .registry
            .send(
                client,
                crate::actors::ExecuteTokenCommand { command, metadata },
            )
            .await
    }

    /// The key that signs a client's JWTs at `now`: its algorithm's, or the server default's.
    pub fn kid_for(&self, client: &domain::client::Client, now: i64) -> Option<String> {
        let alg = client.signing_alg.unwrap_or(self.keys.default_algorithm);
        self.keys.signing_kid(alg, now)
    }
}

/// The request id header, read from the client when it sends one, and echoed back.
pub const REQUEST_ID: &str = "x-request-id";

/// The request id assigned by the logging middleware.
#[derive(Clone)]
pub struct RequestId(pub String);

/// Metadata for the events a request causes.
pub fn request_metadata(req: &HttpRequest, caused_by: Cause) -> Metadata {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect::<String>())
    };
    Metadata {
        caused_by,
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
        correlation_id: header("x-correlation-id"),
        source_ip: source_ip(req).map(|a| a.to_string()),
        user_agent: header("user-agent"),
    }
}

use actix_web::HttpMessage;

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The client's address: the peer's, or, from a trusted proxy, the one it forwarded for.
pub fn source_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => state.limits.source(peer, header(req, "x-forwarded-for")),
        None => peer,
    }
}

/// Whether the client used HTTPS: to our own TLS, or to a trusted proxy that says so.
fn came_over_https(req: &HttpRequest) -> bool {
    req.app_config().secure()
        || req.app_data::<web::Data<AppState>>().is_some_and(|s| {
            s.limits.forwarded_https(
                req.peer_addr().map(|a| a.ip()),
                header(req, "x-forwarded-proto"),
            )
        })
}

fn json_error(err: impl std::fmt::Display) -> actix_web::Error {
    OAuthError::invalid_request(format!("invalid JSON body: {err}")).into()
}

/// Every route the server answers: path (actix and OpenAPI spell parameters alike), method,
/// handler. This table is the one list: `configure` registers it, the 405 answers' `Allow`
/// comes from it, and a test checks that the OpenAPI contract (`openapi.rs`) documents each
/// entry and nothing else. Order matters where paths overlap (`/admin/clients/new` before
/// `/admin/clients/{id}`): the first registered path that matches wins.
pub fn routes() -> Vec<(&'static str, Method, actix_web::Route)> {
    use Method as M;
    vec![
        ("/token", M::POST, web::post().to(token::token)),
        ("/token", M::GET, web::get().to(token::token_by_get)),
        (
            "/device_authorization",
            M::POST,
            web::post().to(device::authorization),
        ),
        ("/device", M::GET, web::get().to(device::entry)),
        ("/device", M::POST, web::post().to(device::submit)),
        ("/device/decide", M::POST, web::post().to(device::decide)),
        ("/par", M::POST, web::post().to(par::push)),
        ("/authorize", M::GET, web::get().to(authorize::authorize)),
        ("/authorize", M::POST, web::post().to(authorize::authorize)),
        ("/consent", M::GET, web::get().to(authorize::consent_form)),
        ("/consent", M::POST, web::post().to(authorize::consent)),
        ("/login", M::GET, web::get().to(account::login_form)),
        ("/login", M::POST, web::post().to(account::login)),
        ("/logout", M::POST, web::post().to(account::logout)),
        ("/account", M::GET, web::get().to(account::account)),
        ("/account/revoke", M::POST, web::post().to(account::revoke)),
        (
            "/introspect",
            M::POST,
            web::post().to(introspect::introspect),
        ),
        ("/revoke", M::POST, web::post().to(revoke::revoke)),
        ("/tokeninfo", M::GET, web::get().to(resource::tokeninfo)),
        ("/api/whoami", M::GET, web::get().to(resource::whoami)),
        ("/api/whoami", M::POST, web::post().to(resource::whoami)),
        ("/jwks", M::GET, web::get().to(discovery::jwks)),
        (
            "/authorize/jwks",
            M::GET,
            web::get().to(discovery::authorize_jwks),
        ),
        (
            "/.well-known/oauth-authorization-server",
            M::GET,
            web::get().to(discovery::metadata),
        ),
        (
            "/.well-known/openid-configuration",
            M::GET,
            web::get().to(oidc::openid_configuration),
        ),
        (
            "/end_session",
            M::GET,
            web::get().to(logout::end_session_endpoint),
        ),
        (
            "/end_session",
            M::POST,
            web::post().to(logout::end_session_endpoint),
        ),
        (
            "/end_session/confirm",
            M::POST,
            web::post().to(logout::confirm),
        ),
        ("/register", M::POST, web::post().to(register::register)),
        (
            "/register/{client_id}",
            M::GET,
            web::get().to(register::read),
        ),
        (
            "/register/{client_id}",
            M::PUT,
            web::put().to(register::update),
        ),
        (
            "/register/{client_id}",
            M::DELETE,
            web::delete().to(register::delete),
        ),
        ("/userinfo", M::GET, web::get().to(oidc::userinfo)),
        ("/userinfo", M::POST, web::post().to(oidc::userinfo)),
        ("/healthz", M::GET, web::get().to(discovery::healthz)),
        ("/readyz", M::GET, web::get().to(discovery::readyz)),
        ("/metrics", M::GET, web::get().to(discovery::metrics_here)),
        ("/openapi.json", M::GET, web::get().to(openapi::document)),
        ("/admin", M::GET, web::get().to(viewer::events)),
        ("/admin/login", M::GET, web::get().to(viewer::login_form)),
        ("/admin/login", M::POST, web::post().to(viewer::login)),
        ("/admin/logout", M::POST, web::post().to(viewer::logout)),
        ("/admin/clients", M::GET, web::get().to(console::clients)),
        (
            "/admin/clients/new",
            M::GET,
            web::get().to(console::new_client),
        ),
        (
            "/admin/clients/new",
            M::POST,
            web::post().to(console::create_client),
        ),
        ("/admin/clients/{id}", M::GET, web::get().to(viewer::client)),
        (
            "/admin/clients/{id}/edit",
            M::GET,
            web::get().to(console::edit_client),
        ),
        (
            "/admin/clients/{id}/edit",
            M::POST,
            web::post().to(console::update_client),
        ),
        (
            "/admin/clients/{id}/rotate-secret",
            M::POST,
            web::post().to(console::rotate_secret),
        ),
        (
            "/admin/clients/{id}/delete",
            M::GET,
            web::get().to(console::confirm_delete),
        ),
        (
            "/admin/clients/{id}/delete",
            M::POST,
            web::post().to(console::delete_client),
        ),
        ("/admin/users", M::GET, web::get().to(console::users)),
        ("/admin/users/new", M::GET, web::get().to(console::new_user)),
        (
            "/admin/users/new",
            M::POST,
            web::post().to(console::create_user),
        ),
        ("/admin/users/{name}", M::GET, web::get().to(console::user)),
        (
            "/admin/users/{name}/{action}",
            M::POST,
            web::post().to(console::user_action),
        ),
        ("/admin/keys", M::GET, web::get().to(console::keys)),
        (
            "/admin/keys/rotate",
            M::POST,
            web::post().to(console::rotate_keys),
        ),
        ("/admin/tokens", M::GET, web::get().to(console::tokens)),
        ("/admin/tokens", M::POST, web::post().to(console::inspect)),
        (
            "/admin/tokens/{jti}",
            M::GET,
            web::get().to(console::inspect_by_id),
        ),
        (
            "/admin/tokens/{jti}/revoke",
            M::POST,
            web::post().to(console::revoke),
        ),
        ("/admin/api/clients", M::POST, web::post().to(admin::create)),
        ("/admin/api/clients", M::GET, web::get().to(admin::list)),
        (
            "/admin/api/registration-tokens",
            M::POST,
            web::post().to(admin::issue_registration_token),
        ),
        (
            "/admin/api/clients/{id}",
            M::GET,
            web::get().to(admin::show),
        ),
        (
            "/admin/api/clients/{id}",
            M::PATCH,
            web::patch().to(admin::update),
        ),
        (
            "/admin/api/clients/{id}",
            M::DELETE,
            web::delete().to(admin::delete),
        ),
        (
            "/admin/api/clients/{id}/rotate-secret",
            M::POST,
            web::post().to(admin::rotate_secret),
        ),
        (
            "/admin/api/users",
            M::POST,
            web::post().to(admin::create_user),
        ),
        ("/admin/api/users", M::GET, web::get().to(admin::list_users)),
        (
            "/admin/api/users/{username}",
            M::GET,
            web::get().to(admin::show_user),
        ),
        (
            "/admin/api/users/{username}",
            M::PATCH,
            web::patch().to(admin::update_user),
        ),
        (
            "/admin/api/users/{username}/access",
            M::POST,
            web::post().to(admin::user_access),
        ),
        ("/admin/api/audit", M::GET, web::get().to(admin::audit)),
        (
            "/admin/api/audit/verify",
            M::GET,
            web::get().to(admin::verify),
        ),
        (
            "/admin/api/audit/checkpoint",
            M::POST,
            web::post().to(admin::checkpoint),
        ),
        (
            "/admin/api/audit/checkpoint/verify",
            M::POST,
            web::post().to(admin::verify_checkpoint),
        ),
        (
            "/admin/api/events/stream",
            M::GET,
            web::get().to(events::stream),
        ),
        (
            "/admin/api/compact",
            M::POST,
            web::post().to(admin::compact),
        ),
        ("/admin/api/keys", M::GET, web::get().to(admin::list_keys)),
        (
            "/admin/api/keys/rotate",
            M::POST,
            web::post().to(admin::rotate_keys),
        ),
        (
            "/admin/api/clock",
            M::POST,
            web::post().to(admin::advance_clock),
        ),
    ]
}

/// Registers every route of [`routes`]: one resource per path, whose other methods get 405
/// with the `Allow` the table gives.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PathConfig::default().error_handler(|e, _| json_error(e)));
    // Grouped by path, in the table's order.
    let mut paths: Vec<(&'static str, Vec<Method>, Vec<actix_web::Route>)> = Vec::new();
    for (path, method, route) in routes() {
        match paths.iter_mut().find(|(p, ..)| *p == path) {
            Some((_, methods, routes)) => {
                methods.push(method);
                routes.push(route);
            }
            None => paths.push((path, vec![method], vec![route])),
        }
    }
    for (path, methods, routes) in paths {
        let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
        let allow = allow.join(", ");
        let resource = routes
            .into_iter()
            .fold(web::resource(path), |r, route| r.route(route));
        cfg.service(resource.default_service(web::to(move || {
            let answer = method_not_allowed(&allow);
            async move { answer }
        })));
    }
    cfg.default_service(web::to(not_found));
}

/// 405 with `Allow`, as JSON like every other API error.
pub(crate) fn method_not_allowed(allow: &str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((actix_web::http::header::ALLOW, allow))
        .json(serde_json::json!({
            "error": "invalid_request",
            "error_description": format!("this endpoint takes {allow} only"),
        }))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    not_found_answer(req.path())
}

/// 404 `not_found` for `path`.
pub(crate) fn not_found_answer(path: &str) -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({
        "error": "not_found",
        // The path is the caller's: named, not echoed (RFC 6749 §5.2's character set).
        "error_description": domain::oauth::error_description(&format!("no resource at {path}")),
    }))
}

/// The headers every answer carries unless it set its own: no MIME sniffing, no referrer
/// (codes and tokens travel in URLs), and no framing anywhere (a consent page in a frame is a
/// clickjacking target; the pages set a fuller policy of their own).
fn security_headers(headers: &mut actix_web::http::header::HeaderMap) {
    use actix_web::http::header;
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
}

/// Whether `path` is a page a browser asks for (limited per source address).
fn is_page(path: &str) -> bool {
    matches!(
        path,
        "/authorize"
            | "/consent"
            | "/login"
            | "/logout"
            | "/account"
            | "/admin"
            | "/admin/login"
            | "/admin/logout"
            | "/device"
            | "/device/decide"
    ) || path.starts_with("/admin/clients")
        || path.starts_with("/admin/tokens")
        || path.starts_with("/admin/keys")
        || path.starts_with("/admin/users")
}

/// Answers 429 with `Retry-After` to a source address past its page limit.
pub fn limit_pages<S, B>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> futures_util::future::LocalBoxFuture<
    'static,
    Result<ServiceResponse<actix_web::body::EitherBody<B>>, actix_web::Error>,
>
where
    S: Service<
        actix_web::dev::ServiceRequest,
        Response = ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    S::Future: 'static,
    B: 'static,
{
    if is_page(req.path()) {
        let wait = req.app_data::<web::Data<AppState>>().and_then(|state| {
            let source = source_ip(req.request())?;
            state.limits.page(source).err()
        });
        if let Some(wait) = wait {
            let res = HttpResponse::TooManyRequests()
                .insert_header((actix_web::http::header::RETRY_AFTER, wait))
                .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
                .content_type("text/plain; charset=utf-8")
                .body(format!(
                    "Too many requests from your address. Try again in {wait} seconds.\n"
                ));
            return Box::pin(async move { Ok(req.into_response(res).map_into_right_body()) });
        }
    }
    let fut = srv.call(req);
    Box::pin(async move { fut.await.map(ServiceResponse::map_into_left_body) })
}

/// Logs each request (method, path without its query, status, time) under a request id.
pub fn log_requests<S, B>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<
        actix_web::dev::ServiceRequest,
        Response = ServiceResponse<B>,
        Error = actix_web::Error,
    >,
{
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let https = came_over_https(req.request());
    let method = req.method().clone();
    let path = req.path().to_owned();
    let started = std::time::Instant::now();
    let fut = srv.call(req);
    async move {
        let mut res = fut.await?;
        let status = res.status().as_u16();
        let took = started.elapsed();
        tracing::info!(
            request_id = %id, %method, %path, status,
            micros = took.as_micros() as u64,
            "request"
        );
        if crate::metrics::enabled() {
            // Labelled by the route's pattern, never the path: ids in paths would make a
            // series each.
            let req = res.request();
            crate::metrics::request(&method, &path, || req.match_pattern(), status, took);
        }
        if let Ok(v) = HeaderValue::from_str(&id) {
            res.headers_mut()
                .insert(HeaderName::from_static(REQUEST_ID), v);
        }
        security_headers(res.headers_mut());
        if https {
            // RFC 6797: browsers then refuse plain HTTP to this host for a year.
            res.headers_mut().insert(
                actix_web::http::header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000"),
            );
        }
        Ok(res)
    }
}
