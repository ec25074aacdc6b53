//! The OpenAPI 3.1 contract, served at `GET /openapi.json` (ADR 0027).
//!
//! Each handler carries its own `#[utoipa::path]` (method, path, parameters, every status it
//! answers and in which content type); this module gathers them, and names the shapes of the
//! OAuth answers the handlers build as JSON. A unit test holds the contract to the route table
//! ([`super::routes`]): every route documented, nothing documented that is not a route.
//! `tests/api/openapi.rs` validates the served document and runs schemathesis against a live
//! server.

use actix_web::HttpResponse;
use std::sync::OnceLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToResponse, ToSchema};

/// An error answer (RFC 6749 §5.2): every JSON error of the server has this shape.
#[derive(ToSchema, ToResponse)]
#[response(
    description = "An error (RFC 6749 §5.2): `error` names it, `error_description` \
                          says what went wrong and what to do"
)]
pub struct OAuthErrorBody {
    /// The error code (`invalid_request`, `invalid_client`, `invalid_grant`, ...).
    pub error: String,
    /// What went wrong, in RFC 6749's character set.
    pub error_description: String,
}

/// A successful token answer (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(ToSchema)]
pub struct TokenResponse {
    /// The access token (a JWT or an opaque value, as the client is registered).
    pub access_token: String,
    /// `Bearer` or `DPoP`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The scopes granted, space-separated.
    pub scope: Option<String>,
    /// A refresh token, when the grant gives one.
    pub refresh_token: Option<String>,
    /// An OpenID Connect id_token, when `openid` was granted.
    pub id_token: Option<String>,
    /// What was issued, for token exchange (RFC 8693).
    pub issued_token_type: Option<String>,
}

/// The form a token request sends (RFC 6749 §4, RFC 8628, RFC 7523, RFC 7522, RFC 8693).
/// Client credentials go in `Authorization: Basic`, or as `client_id`/`client_secret`, or
/// as a `client_assertion`.
#[derive(ToSchema)]
pub struct TokenRequest {
    /// `authorization_code`, `refresh_token`, `client_credentials`, `password`,
    /// `urn:ietf:params:oauth:grant-type:device_code`, `...:jwt-bearer`, `...:saml2-bearer`
    /// or `...:token-exchange`.
    pub grant_type: String,
    /// The authorization code.
    pub code: Option<String>,
    /// The redirect URI of the authorization request.
    pub redirect_uri: Option<String>,
    /// The PKCE verifier (RFC 7636).
    pub code_verifier: Option<String>,
    /// The refresh token.
    pub refresh_token: Option<String>,
    /// Space-separated scopes asked for.
    pub scope: Option<String>,
    /// The device code (RFC 8628).
    pub device_code: Option<String>,
    /// The assertion of a JWT or SAML bearer grant.
    pub assertion: Option<String>,
    /// Resource indicators (RFC 8707).
    pub resource: Option<String>,
    /// The resource owner's name (password grant).
    pub username: Option<String>,
    /// The resource owner's password (password grant).
    pub password: Option<String>,
    /// The token exchanged (RFC 8693).
    pub subject_token: Option<String>,
    /// Its type.
    pub subject_token_type: Option<String>,
    /// The client's id (when not in `Authorization`).
    pub client_id: Option<String>,
    /// The client's secret (`client_secret_post`).
    pub client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    pub client_assertion_type: Option<String>,
    /// A signed JWT that authenticates the client (RFC 7523 §2.2).
    pub client_assertion: Option<String>,
}

/// A request that names a token (introspection, revocation: RFC 7662, RFC 7009).
#[derive(ToSchema)]
pub struct TokenQuery {
    /// The token.
    pub token: String,
    /// `access_token` or `refresh_token`: where to look first.
    pub token_type_hint: Option<String>,
    /// The client's id (when not in `Authorization`).
    pub client_id: Option<String>,
    /// The client's secret (`client_secret_post`).
    pub client_secret: Option<String>,
}

/// An introspection answer (RFC 7662 §2.2): `active`, and the token's claims when it is.
#[derive(ToSchema)]
pub struct IntrospectionResponse {
    /// Whether the token is active now.
    pub active: bool,
    /// Scopes, space-separated.
    pub scope: Option<String>,
    /// The client it was issued to.
    pub client_id: Option<String>,
    /// Its subject.
    pub sub: Option<String>,
    /// `Bearer` or `DPoP`.
    pub token_type: Option<String>,
    /// Expiry (Unix seconds).
    pub exp: Option<i64>,
    /// Issued at (Unix seconds).
    pub iat: Option<i64>,
    /// Issuer.
    pub iss: Option<String>,
    /// Token id.
    pub jti: Option<String>,
    /// Audience: one resource (a string) or several (an array).
    pub aud: Option<serde_json::Value>,
}

/// A device authorization answer (RFC 8628 §3.2).
#[derive(ToSchema)]
pub struct DeviceAuthorizationResponse {
    /// The code the device polls with.
    pub device_code: String,
    /// The code the user types.
    pub user_code: String,
    /// Where the user types it.
    pub verification_uri: String,
    /// The same with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds both codes live.
    pub expires_in: u64,
    /// Seconds to wait between polls.
    pub interval: u64,
}

/// A client's form naming itself and the scopes it asks for (device authorization).
#[derive(ToSchema)]
pub struct DeviceAuthorizationRequest {
    /// The client's id (a public client names itself here).
    pub client_id: Option<String>,
    /// Space-separated scopes.
    pub scope: Option<String>,
    /// Resource indicators (RFC 8707).
    pub resource: Option<String>,
}

/// A pushed authorization request's answer (RFC 9126 §2.2).
#[derive(ToSchema)]
pub struct PushedAuthorizationResponse {
    /// The reference to send to `/authorize` as `request_uri`.
    pub request_uri: String,
    /// Seconds it stays usable.
    pub expires_in: u64,
}

/// The parameters of an authorization request (RFC 6749 §4.1.1, RFC 7636, OpenID Connect
/// Core §3.1.2.1), in the query (GET), a form (POST), or pushed first (`/par`).
#[derive(ToSchema)]
pub struct AuthorizationRequest {
    /// `code`.
    pub response_type: Option<String>,
    /// The client.
    pub client_id: Option<String>,
    /// Where the answer goes.
    pub redirect_uri: Option<String>,
    /// Space-separated scopes.
    pub scope: Option<String>,
    /// Returned as given.
    pub state: Option<String>,
    /// PKCE challenge.
    pub code_challenge: Option<String>,
    /// `S256` (or `plain`, where allowed).
    pub code_challenge_method: Option<String>,
    /// OpenID Connect nonce.
    pub nonce: Option<String>,
    /// `none`, `login`, `consent`.
    pub prompt: Option<String>,
    /// A pushed request's reference (RFC 9126).
    pub request_uri: Option<String>,
}

/// A sign-in, consent or page form posted by a browser: the page's fields and its CSRF token.
#[derive(ToSchema)]
pub struct PageForm {
    /// The CSRF token the page carried (the double of its cookie).
    pub csrf_token: Option<String>,
}

/// Who an access token speaks for (`/tokeninfo`, `/api/whoami`).
#[derive(ToSchema)]
pub struct TokenInfo {
    /// Its subject (pairwise for a pairwise client).
    pub sub: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Its scopes, space-separated.
    pub scope: String,
    /// The user's username, when it speaks for a user.
    pub username: Option<String>,
    /// Seconds left (`/tokeninfo`).
    pub expires_in: Option<i64>,
    /// Expiry, Unix seconds (`/api/whoami`).
    pub exp: Option<i64>,
}

/// A client's registration as dynamic client registration answers it (RFC 7591 §3.2.1,
/// RFC 7592 §3): its metadata, and the means to manage it.
#[derive(ToSchema)]
pub struct ClientInformation {
    /// The client's id.
    pub client_id: String,
    /// Its secret (only when registered or changed).
    pub client_secret: Option<String>,
    /// When the id was issued (Unix seconds).
    pub client_id_issued_at: Option<i64>,
    /// When the secret expires (0: never).
    pub client_secret_expires_at: Option<i64>,
    /// The token for `/register/{client_id}` (RFC 7592).
    pub registration_access_token: Option<String>,
    /// Where to manage the registration.
    pub registration_client_uri: Option<String>,
    /// Its display name.
    pub client_name: Option<String>,
    /// Its redirect URIs.
    pub redirect_uris: Option<Vec<String>>,
    /// Its grant types.
    pub grant_types: Option<Vec<String>>,
    /// Its response types.
    pub response_types: Option<Vec<String>>,
    /// Its scopes, space-separated.
    pub scope: Option<String>,
    /// How it authenticates at the token endpoint.
    pub token_endpoint_auth_method: Option<String>,
}

/// The UserInfo answer (OpenID Connect Core §5.3.2): `sub`, and the claims the token's scopes
/// allow.
#[derive(ToSchema)]
pub struct UserInfo {
    /// The subject.
    pub sub: String,
    /// Full name (`profile`).
    pub name: Option<String>,
    /// Preferred username (`profile`).
    pub preferred_username: Option<String>,
    /// E-mail address (`email`).
    pub email: Option<String>,
    /// Whether the address was checked (`email`).
    pub email_verified: Option<bool>,
}

/// Authorization server metadata (RFC 8414 §2); the OpenID provider metadata (OpenID Connect
/// Discovery 1.0 §3) has these and more.
#[derive(ToSchema)]
pub struct ServerMetadata {
    /// The issuer identifier.
    pub issuer: String,
    /// `/authorize`.
    pub authorization_endpoint: String,
    /// `/token`.
    pub token_endpoint: String,
    /// `/jwks`.
    pub jwks_uri: String,
    /// `code`.
    pub response_types_supported: Vec<String>,
    /// The grants.
    pub grant_types_supported: Option<Vec<String>>,
    /// The client authentication methods.
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// `/introspect`.
    pub introspection_endpoint: Option<String>,
    /// `/revoke`.
    pub revocation_endpoint: Option<String>,
    /// `/register`.
    pub registration_endpoint: Option<String>,
    /// `/device_authorization`.
    pub device_authorization_endpoint: Option<String>,
    /// `/par`.
    pub pushed_authorization_request_endpoint: Option<String>,
    /// `S256` (and `plain` where allowed).
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// The scopes.
    pub scopes_supported: Option<Vec<String>>,
}

/// Where the test clock stands after a move.
#[derive(ToSchema)]
pub struct ClockNow {
    /// The server's time now, Unix milliseconds.
    pub now_ms: i64,
}

/// The console's client form (create and edit): the settings the admin API takes, as a
/// browser posts them; lists one per line, scopes space-separated, checkboxes `true`.
#[derive(ToSchema)]
pub struct ConsoleClientForm {
    /// The page's CSRF token.
    pub csrf_token: Option<String>,
    /// The id to register (create only; generated when empty).
    pub client_id: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// `true` for a public client (create only).
    pub public: Option<String>,
    /// Redirect URIs, one per line.
    pub redirect_uris: Option<String>,
    /// Grant types: `grant:authorization_code=true`, `grant:client_credentials=true`, ...
    #[schema(rename = "grant:authorization_code")]
    pub grant_authorization_code: Option<String>,
    /// See `grant:authorization_code`.
    #[schema(rename = "grant:client_credentials")]
    pub grant_client_credentials: Option<String>,
    /// See `grant:authorization_code`.
    #[schema(rename = "grant:refresh_token")]
    pub grant_refresh_token: Option<String>,
    /// Scopes, space-separated.
    pub scopes: Option<String>,
    /// `jwt` or `opaque`.
    pub token_format: Option<String>,
    /// Access token lifetime, seconds.
    pub access_token_ttl: Option<String>,
    /// How it authenticates.
    pub token_endpoint_auth_method: Option<String>,
    /// Its public keys, a JWKS as JSON.
    pub jwks: Option<String>,
    /// Issuers whose assertions it may present, one per line.
    pub trusted_issuers: Option<String>,
    /// Where a logout may send the browser, one per line.
    pub post_logout_redirect_uris: Option<String>,
    /// Resources it may ask tokens for, one per line.
    pub resources: Option<String>,
    /// `true`: may introspect any token.
    pub can_introspect: Option<String>,
    /// `true`: may use PKCE `plain`.
    pub allow_plain_pkce: Option<String>,
    /// `true`: its requests must be pushed (RFC 9126).
    pub require_par: Option<String>,
    /// `true`: its access tokens must be DPoP-bound (RFC 9449).
    pub dpop_bound: Option<String>,
}

/// The console's user forms: a new user, a profile, a password, a lock, an app to revoke.
#[derive(ToSchema)]
pub struct ConsoleUserForm {
    /// The page's CSRF token.
    pub csrf_token: Option<String>,
    /// Username (a new user).
    pub username: Option<String>,
    /// Password (a new user, or `password`).
    pub password: Option<String>,
    /// `true` to lock, anything else to unlock (`lock`).
    pub lock: Option<String>,
    /// The client whose grants to revoke (`revoke`).
    pub client_id: Option<String>,
    /// Full name.
    pub name: Option<String>,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Preferred username.
    pub preferred_username: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// `true` when the address was checked.
    pub email_verified: Option<String>,
    /// BCP 47 language tag.
    pub locale: Option<String>,
}

/// The console's key rotation form.
#[derive(ToSchema)]
pub struct ConsoleKeysForm {
    /// The page's CSRF token.
    pub csrf_token: Option<String>,
    /// `true` to rotate the RS256 key (none checked: every algorithm).
    #[schema(rename = "alg:RS256")]
    pub alg_rs256: Option<String>,
    /// `true` to rotate the ES256 key.
    #[schema(rename = "alg:ES256")]
    pub alg_es256: Option<String>,
    /// `true` to rotate the EdDSA key.
    #[schema(rename = "alg:EdDSA")]
    pub alg_eddsa: Option<String>,
    /// Seconds between publication and first signature.
    pub lead_time: Option<String>,
}

/// The token inspector's paste form.
#[derive(ToSchema)]
pub struct ConsoleTokenForm {
    /// The page's CSRF token.
    pub csrf_token: Option<String>,
    /// The token to inspect.
    pub token: Option<String>,
}

/// A JSON Web Key Set (RFC 7517 §5).
#[derive(ToSchema)]
pub struct Jwks {
    /// The public keys.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}

/// The state a liveness or readiness check reports.
#[derive(ToSchema)]
pub struct Health {
    /// `alive`, `ready`, `read_only`, `not_ready`, `failing` or `stopping`.
    pub status: String,
}

/// A signed checkpoint of the log's head.
#[derive(ToSchema)]
pub struct Checkpoint {
    /// The JWS.
    pub checkpoint: String,
}

/// The answer of a checkpoint check: `verified` with what was checked, or `mismatch` and why.
#[derive(ToSchema)]
pub struct CheckpointReport {
    /// `verified` or `mismatch`.
    pub status: String,
    /// Why it does not match.
    pub reason: Option<String>,
}

/// A user's profile claims (OpenID Connect Core §5.1); absent ones are left out.
#[derive(ToSchema)]
pub struct Profile {
    /// Full name.
    pub name: Option<String>,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Preferred username.
    pub preferred_username: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Whether the address was checked.
    pub email_verified: Option<bool>,
    /// BCP 47 language tag.
    pub locale: Option<String>,
}

/// A profile change: the claims named are set (an empty string clears one); no other field.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Read by the contract only; the server reads domain::user::ProfileChanges.
pub struct ProfileChanges {
    /// Full name.
    name: Option<String>,
    /// Given name.
    given_name: Option<String>,
    /// Family name.
    family_name: Option<String>,
    /// Preferred username.
    preferred_username: Option<String>,
    /// E-mail address.
    email: Option<String>,
    /// Whether the address was checked.
    email_verified: Option<bool>,
    /// BCP 47 language tag.
    locale: Option<String>,
}

/// A client now, or (with `as_of`) as it was then with its tokens active then.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)] // Read by the contract only.
pub enum ClientAnswer {
    /// The client as it is.
    Now(crate::service::ClientOutput),
    /// The client at a past moment.
    AsOf(crate::service::ClientAsOf),
}

/// The errors of every admin API operation (each an RFC 6749 §5.2 body).
#[derive(IntoResponses)]
#[allow(dead_code)] // Read by the contract only.
pub enum AdminErrors {
    /// A malformed request: a wrong content type, malformed JSON, an unknown field, a bad id,
    /// a value out of range, or a scheme other than `Bearer`.
    #[response(status = 400)]
    BadRequest(OAuthErrorBody),
    /// No bearer token, or one not active.
    #[response(status = 401)]
    Unauthenticated(OAuthErrorBody),
    /// A token without scope `admin`, or of a client not registered as an admin.
    #[response(status = 403)]
    Forbidden(OAuthErrorBody),
    /// The store cannot take writes now (a full disk, an unreachable database): try again.
    #[response(status = 503)]
    Unavailable(OAuthErrorBody),
}

/// No such client or user.
#[derive(IntoResponses)]
#[allow(dead_code)] // Read by the contract only.
pub enum NotFound {
    /// Nothing by that id.
    #[response(status = 404)]
    NotFound(OAuthErrorBody),
}

/// A body over the limit (64 KiB for JSON).
#[derive(IntoResponses)]
#[allow(dead_code)] // Read by the contract only.
pub enum TooLarge {
    /// The body is too large.
    #[response(status = 413)]
    TooLarge(OAuthErrorBody),
}

/// The errors of an endpoint a client authenticates to (token, introspection, revocation,
/// device authorization, PAR).
#[derive(IntoResponses)]
#[allow(dead_code)] // Read by the contract only.
pub enum ClientErrors {
    /// A malformed or refused request (`invalid_request`, `invalid_grant`, `unsupported_grant_type`, ...).
    #[response(status = 400)]
    BadRequest(OAuthErrorBody),
    /// The client did not authenticate (`invalid_client`, with a `Basic` challenge).
    #[response(status = 401)]
    Unauthenticated(OAuthErrorBody),
    /// The body is too large.
    #[response(status = 413)]
    TooLarge(OAuthErrorBody),
    /// Too many requests: wait `Retry-After` seconds.
    #[response(status = 429)]
    TooMany(OAuthErrorBody),
    /// The store cannot take writes now: try again.
    #[response(status = 503)]
    Unavailable(OAuthErrorBody),
}

/// The errors of an endpoint a bearer token opens (`/tokeninfo`, `/api/whoami`, `/userinfo`,
/// `/register/{client_id}`).
#[derive(IntoResponses)]
#[allow(dead_code)] // Read by the contract only.
pub enum BearerErrors {
    /// A malformed request, or no token where the endpoint takes it.
    #[response(status = 400)]
    BadRequest(OAuthErrorBody),
    /// No token, or one not active (`invalid_token`, with a `Bearer` challenge).
    #[response(status = 401)]
    Unauthenticated(OAuthErrorBody),
    /// A token without the scope or rights the endpoint needs (`insufficient_scope`).
    #[response(status = 403)]
    Forbidden(OAuthErrorBody),
    /// The store cannot take writes now: try again.
    #[response(status = 503)]
    Unavailable(OAuthErrorBody),
}

/// What the device flow's forms answer (`POST /device`, `POST /device/decide`).
#[derive(IntoResponses)]
#[allow(dead_code)] // Read by the contract only.
pub enum DeviceForm {
    /// The next step: the request to approve, the code again with what was wrong, or the
    /// outcome.
    #[response(status = 200, content_type = "text/html")]
    Page(String),
    /// Not signed in: to the sign-in page.
    #[response(status = 302)]
    SignIn,
    /// Not signed in: to the sign-in page.
    #[response(status = 303)]
    SignInAfterPost,
    /// The form could not be read.
    #[response(status = 400, content_type = "text/html")]
    BadRequest(String),
    /// The form did not carry the page's CSRF token.
    #[response(status = 403, content_type = "text/html")]
    Forbidden(String),
    /// The form is too large.
    #[response(status = 413, content_type = "text/html")]
    TooLarge(String),
    /// Too many pages asked for from this address: wait `Retry-After` seconds.
    #[response(status = 429, content_type = "text/plain")]
    TooMany(String),
    /// The store cannot take writes now.
    #[response(status = 503, content_type = "text/html")]
    Unavailable(String),
}

/// What a sign-in form answers (`POST /login`, `POST /admin/login`).
#[derive(IntoResponses)]
#[allow(dead_code)] // Read by the contract only.
pub enum SignInForm {
    /// Signed in: on to where the sign-in was asked for.
    #[response(status = 303)]
    SignedIn,
    /// The form could not be read.
    #[response(status = 400, content_type = "text/html")]
    BadRequest(String),
    /// Wrong credentials (the form again, saying so).
    #[response(status = 401, content_type = "text/html")]
    Wrong(String),
    /// The form did not carry the page's CSRF token (or, for the console, the client is not
    /// an admin).
    #[response(status = 403, content_type = "text/html")]
    Forbidden(String),
    /// The form is too large.
    #[response(status = 413, content_type = "text/html")]
    TooLarge(String),
    /// Too many failed sign-ins: wait.
    #[response(status = 429, content_type = "text/html")]
    TooMany(String),
    /// The store cannot take writes now.
    #[response(status = 503, content_type = "text/html")]
    Unavailable(String),
}

/// The page limit's refusal, for every page.
#[derive(IntoResponses)]
#[allow(dead_code)] // Read by the contract only.
pub enum PageLimit {
    /// Too many pages asked for from this address: wait `Retry-After` seconds.
    #[response(status = 429, content_type = "text/plain")]
    TooMany(String),
}

/// What a console page answers besides itself.
#[derive(IntoResponses)]
#[allow(dead_code)] // Read by the contract only.
pub enum ConsolePage {
    /// Not signed in: to the sign-in page.
    #[response(status = 303)]
    SignIn,
    /// Too many pages asked for from this address: wait `Retry-After` seconds.
    #[response(status = 429, content_type = "text/plain")]
    TooMany(String),
}

/// What a console form answers.
#[derive(IntoResponses)]
#[allow(dead_code)] // Read by the contract only.
pub enum ConsoleForm {
    /// Done (or not signed in): to the page that shows the outcome.
    #[response(status = 303)]
    Done,
    /// The next page, or the form again with what to fix.
    #[response(status = 200, content_type = "text/html")]
    Page(String),
    /// The form could not be read, or the change was refused.
    #[response(status = 400, content_type = "text/html")]
    BadRequest(String),
    /// The form did not carry the page's CSRF token.
    #[response(status = 403, content_type = "text/html")]
    Forbidden(String),
    /// No such client, user or token.
    #[response(status = 404, content_type = "text/html")]
    NotFound(String),
    /// The change conflicts with the current state.
    #[response(status = 409, content_type = "text/html")]
    Conflict(String),
    /// The form is too large.
    #[response(status = 413, content_type = "text/html")]
    TooLarge(String),
    /// Too many pages asked for from this address: wait `Retry-After` seconds.
    #[response(status = 429, content_type = "text/plain")]
    TooMany(String),
    /// The store cannot take writes now.
    #[response(status = 503, content_type = "text/html")]
    Unavailable(String),
}

/// The contract: every operation of the server.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "authledger",
        description = "An event-sourced OAuth 2.0 and OpenID Connect authorization server: \
                       the OAuth and OpenID Connect endpoints, the pages a browser sees, \
                       operations, and the admin API (a bearer token with scope `admin` of a \
                       client registered as an admin). Every JSON error is RFC 6749 §5.2's \
                       `{error, error_description}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::token::token,
        super::token::token_by_get,
        super::device::authorization,
        super::device::entry,
        super::device::submit,
        super::device::decide,
        super::par::push,
        super::authorize::authorize,
        super::authorize::consent_form,
        super::authorize::consent,
        super::account::login_form,
        super::account::login,
        super::account::logout,
        super::account::account,
        super::account::revoke,
        super::introspect::introspect,
        super::revoke::revoke,
        super::resource::tokeninfo,
        super::resource::whoami,
        super::discovery::jwks,
        super::discovery::authorize_jwks,
        super::discovery::metadata,
        super::oidc::openid_configuration,
        super::logout::end_session_endpoint,
        super::logout::confirm,
        super::register::register,
        super::register::read,
        super::register::update,
        super::register::delete,
        super::oidc::userinfo,
        super::discovery::healthz,
        super::discovery::readyz,
        super::discovery::metrics_here,
        document,
        super::viewer::events,
        super::viewer::login_form,
        super::viewer::login,
        super::viewer::logout,
        super::console::clients,
        super::console::new_client,
        super::console::create_client,
        super::viewer::client,
        super::console::edit_client,
        super::console::update_client,
        super::console::rotate_secret,
        super::console::confirm_delete,
        super::console::delete_client,
        super::console::users,
        super::console::new_user,
        super::console::create_user,
        super::console::user,
        super::console::user_action,
        super::console::keys,
        super::console::rotate_keys,
        super::console::tokens,
        super::console::inspect,
        super::console::inspect_by_id,
        super::console::revoke,
        super::admin::create,
        super::admin::list,
        super::admin::issue_registration_token,
        super::admin::show,
        super::admin::update,
        super::admin::delete,
        super::admin::rotate_secret,
        super::admin::create_user,
        super::admin::list_users,
        super::admin::show_user,
        super::admin::update_user,
        super::admin::user_access,
        super::admin::audit,
        super::admin::verify,
        super::admin::checkpoint,
        super::admin::verify_checkpoint,
        super::events::stream,
        super::admin::compact,
        super::admin::list_keys,
        super::admin::rotate_keys,
        super::admin::advance_clock,
    ),
    components(responses(OAuthErrorBody)),
    modifiers(&Security),
    tags(
        (name = "oauth", description = "OAuth 2.0 and OpenID Connect endpoints"),
        (name = "pages", description = "What a browser sees: sign-in, consent, device, account"),
        (name = "operations", description = "Health, readiness, metrics and this contract"),
        (name = "console", description = "The admin console's pages"),
        (name = "admin", description = "The admin JSON API"),
    )
)]
pub struct ApiDoc;

/// The security schemes the operations name, and unique operation ids.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                utoipa::openapi::security::HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token with scope `admin` of a client registered as an admin",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "client",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // One handler serving two methods (`method(get, post)`) gives both its name; an
        // operation id must be unique, so each gets its method as a suffix.
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("patch", &mut item.patch),
                ("delete", &mut item.delete),
            ];
            let mut ops: Vec<_> = ops
                .into_iter()
                .filter_map(|(m, op)| op.as_mut().map(|op| (m, op)))
                .collect();
            let shared = ops.len() > 1
                && ops
                    .windows(2)
                    .all(|w| w[0].1.operation_id == w[1].1.operation_id);
            if shared {
                for (method, op) in &mut ops {
                    if let Some(id) = &mut op.operation_id {
                        id.push('_');
                        id.push_str(method);
                    }
                }
            }
        }
    }
}

/// The contract as served: built once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#))
    })
}

/// `GET /openapi.json`: this server's OpenAPI 3.1 contract.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_route_is_in_the_contract_and_nothing_else() {
        let doc = ApiDoc::openapi();
        let documented: BTreeSet<(String, String)> = doc
            .paths
            .paths
            .iter()
            .flat_map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("HEAD", item.head.is_some()),
                    ("OPTIONS", item.options.is_some()),
                    ("TRACE", item.trace.is_some()),
                ];
                methods
                    .into_iter()
                    .filter(|(_, present)| *present)
                    .map(move |(m, _)| (path.clone(), m.to_owned()))
            })
            .collect();
        let routed: BTreeSet<(String, String)> = super::super::routes()
            .into_iter()
            .map(|(path, method, _)| (path.to_owned(), method.to_string()))
            .collect();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the OpenAPI contract (add #[utoipa::path] to the handler and \
             list it in ApiDoc): {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "the contract documents operations no route serves: {unrouted:?}"
        );
    }

    #[test]
    fn every_operation_documents_its_answers_and_an_operation_id() {
        let doc = ApiDoc::openapi();
        let mut ids = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for op in [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
            {
                assert!(
                    !op.responses.responses.is_empty(),
                    "{path}: no responses documented"
                );
                let id = op.operation_id.clone().unwrap_or_default();
                assert!(ids.insert(id.clone()), "{path}: operation id {id} twice");
            }
        }
    }

    #[test]
    fn the_document_says_openapi_3_1() {
        let doc: serde_json::Value = serde_json::from_str(json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert!(doc["components"]["securitySchemes"]["admin"].is_object());
    }
}
