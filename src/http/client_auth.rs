//! Client authentication at the token, introspection and revocation endpoints:
//! `client_secret_basic` (RFC 6749 §2.3.1, with form-encoded id and secret),
//! `client_secret_post` and `private_key_jwt` (RFC 7523 §2.2). Using two in one request is
//! `invalid_request`.

use super::assertion::CLIENT_ASSERTION_TYPE;
use super::error::OAuthError;
use super::form::Form;
use super::AppState;
use crate::actors::ExecuteTokenCommand;
use actix_web::http::header;
use actix_web::HttpRequest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use domain::assertion::AcceptAssertion;
use domain::event::AssertionUse;
use domain::token::TokenCommand;
use domain::values::AuthMethod;
use domain::Cause;
use projections::ClientView;
use std::sync::Arc;

/// An authenticated client.
pub struct AuthenticatedClient {
    /// Its directory row.
    pub view: Arc<ClientView>,
    /// How it authenticated.
    pub method: AuthMethod,
}

fn decode_component(s: &str) -> Result<String, OAuthError> {
    // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
    let decoded: String = form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    Ok(decoded)
}

fn basic_credentials(req: &HttpRequest) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(OAuthError::invalid_client("malformed Authorization header"));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "unsupported authentication scheme; use Basic or client_secret_post",
        ));
    }
    let raw = STANDARD
        .decode(rest.trim())
        .map_err(|_| OAuthError::invalid_client("malformed Basic credentials"))?;
    let raw = String::from_utf8(raw)
        .map_err(|_| OAuthError::invalid_client("malformed Basic credentials"))?;
    let Some((id, secret)) = raw.split_once(':') else {
        return Err(OAuthError::invalid_client("malformed Basic credentials"));
    };
    Ok(Some((decode_component(id)?, decode_component(secret)?)))
}

/// Authenticates a confidential client, or identifies a public one by its `client_id` when
/// the request carries no credentials (RFC 6749 §3.2.1, §4.1.3).
pub async fn authenticate_or_public(
    req: &HttpRequest,
    form: &Form,
    state: &AppState,
) -> Result<AuthenticatedClient, OAuthError> {
    let has_credentials = req.headers().contains_key(header::AUTHORIZATION)
        || form.get("client_secret").is_some()
        || form.get("client_assertion").is_some()
        || form.get("client_assertion_type").is_some();
    if !has_credentials {
        if let Some(view) = form
            .get("client_id")
            .and_then(|id| state.engine.models.clients.get(id))
        {
            if view.client.auth_methods() == [AuthMethod::None] {
                return Ok(AuthenticatedClient {
                    view,
                    method: AuthMethod::None,
                });
            }
        }
    }
    authenticate(req, form, state).await
}

/// Authenticates the calling client against the directory: by secret (Basic or post) or by a
/// signed assertion (`private_key_jwt`). Every failure is `invalid_client` (401), whether the
/// id is unknown or the credential wrong; a client must use the method it registered.
pub async fn authenticate(
    req: &HttpRequest,
    form: &Form,
    state: &AppState,
) -> Result<AuthenticatedClient, OAuthError> {
    let clients = &state.engine.models.clients;
    let basic = basic_credentials(req)?;
    let post_secret = form.get("client_secret");
    let assertion = form.get("client_assertion");
    let assertion_type = form.get("client_assertion_type");
    let methods = usize::from(basic.is_some())
        + usize::from(post_secret.is_some())
        + usize::from(assertion.is_some() || assertion_type.is_some());
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "use one client authentication method: Basic, client_secret or client_assertion",
        ));
    }
    if assertion.is_some() || assertion_type.is_some() {
        return by_assertion(req, form, state, assertion, assertion_type).await;
    }
    let (id, secret, method) = match (basic, post_secret) {
        (Some((id, secret)), None) => {
            if form.get("client_id").is_some_and(|fid| fid != id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the authenticated client",
                ));
            }
            (id, secret, AuthMethod::ClientSecretBasic)
        }
        (None, Some(secret)) => {
            let id = form
                .get("client_id")
                .ok_or_else(|| OAuthError::invalid_request("client_secret without client_id"))?;
            (
                id.to_owned(),
                secret.to_owned(),
                AuthMethod::ClientSecretPost,
            )
        }
        _ => {
            return Err(OAuthError::invalid_client(
                "client authentication required (client_secret_basic, client_secret_post or \
                 private_key_jwt)",
            ))
        }
    };
    let failed = || OAuthError::invalid_client("client authentication failed");
    let Some(view) = clients.get(&id) else {
        // Hash anyway, so that an unknown id costs what a wrong secret costs.
        let _ = state.hash_key.hash(&secret);
        return Err(failed());
    };
    let ok = match view.client.secret_hash.clone() {
        // An imported bcrypt hash takes tens of milliseconds: off the async worker, and at
        // most half the cores at once, since anyone who knows the client's id can ask.
        Some(h) if h.scheme() == domain::values::HashScheme::Bcrypt => {
            let Some(_permit) = BcryptPermit::take() else {
                return Err(OAuthError::new(
                    domain::oauth::ErrorCode::TemporarilyUnavailable,
                    "too many checks of imported client secrets at once; retry in a second",
                )
                .with_status(actix_web::http::StatusCode::SERVICE_UNAVAILABLE)
                .with_retry_after(1));
            };
            let (key, secret) = (state.hash_key.clone(), secret.to_owned());
            actix_web::web::block(move || h.verify(&key, &secret))
                .await
                .unwrap_or(false)
        }
        Some(h) => h.verify(&state.hash_key, &secret),
        None => false,
    };
    if !ok {
        return Err(failed());
    }
    if !view.client.auth_methods().contains(&method) {
        return Err(OAuthError::invalid_client(format!(
            "this client is registered to authenticate with {}",
            view.client.auth_methods()[0]
        )));
    }
    Ok(AuthenticatedClient { view, method })
}

/// `private_key_jwt` (RFC 7523 §2.2, §3): the assertion names the client as `iss` and `sub`,
/// is signed by one of its registered keys, and is accepted once.
async fn by_assertion(
    req: &HttpRequest,
    form: &Form,
    state: &AppState,
    assertion: Option<&str>,
    assertion_type: Option<&str>,
) -> Result<AuthenticatedClient, OAuthError> {
    if assertion_type != Some(CLIENT_ASSERTION_TYPE) {
        return Err(OAuthError::invalid_client(format!(
            "client_assertion_type must be {CLIENT_ASSERTION_TYPE}"
        )));
    }
    let assertion =
        assertion.ok_or_else(|| OAuthError::invalid_client("client_assertion is missing"))?;
    let failed = |why: &str| OAuthError::invalid_client(format!("client assertion refused: {why}"));
    let id = super::assertion::unverified_subject(assertion)
        .ok_or_else(|| failed("not a JWT with a sub claim"))?;
    if form.get("client_id").is_some_and(|fid| fid != id) {
        return Err(OAuthError::invalid_request(
            "client_id in the body differs from the assertion's subject",
        ));
    }
    // Before the signature verifies, an unknown id and a client of another method get the
    // same answer: an unsigned JWT must not tell who exists and how they authenticate.
    let view = state
        .engine
        .models
        .clients
        .get(&id)
        .filter(|v| v.client.auth_methods().contains(&AuthMethod::PrivateKeyJwt))
        .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
    let claims = super::assertion::verify(assertion, view.client.jwks.as_ref())
        .map_err(|why| failed(&why))?;
    let issuer = &state.issuer;
    let command = TokenCommand::AuthenticateByAssertion(AcceptAssertion {
        assertion: claims,
        used_for: AssertionUse::ClientAuthentication,
        audiences: vec![
            issuer.clone(),
            format!("{issuer}/token"),
            format!("{issuer}{}", req.path()),
        ],
        seen: false,
        now: state.engine.clock.unix_now(),
    });
    let metadata = super::request_metadata(req, Cause::Client(id.clone()));
    state
        .engine
        .registry
        .send(
            &view.client.client_id,
            ExecuteTokenCommand { command, metadata },
        )
        .await
        .map_err(super::token::command_error)?;
    Ok(AuthenticatedClient {
        view,
        method: AuthMethod::PrivateKeyJwt,
    })
}

/// A slot for one bcrypt check of an imported client secret (ADR 0026), freed on drop.
struct BcryptPermit;

/// bcrypt checks running now.
static BCRYPT_RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl BcryptPermit {
    /// A slot, when fewer than half the cores (at least one) are checking already.
    fn take() -> Option<Self> {
        use std::sync::atomic::Ordering;
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let most = (cores / 2).max(1);
        BCRYPT_RUNNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < most).then_some(n + 1)
            })
            .ok()
            .map(|_| Self)
    }
}

impl Drop for BcryptPermit {
    fn drop(&mut self) {
        BCRYPT_RUNNING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}
