//! Client authentication at the token, introspection and revocation endpoints:
//! `client_secret_basic` (RFC 6749 §2.3.1, with form-encoded id and secret) and
//! `client_secret_post`. Using both in one request is `invalid_request`.

use super::error::OAuthError;
use super::form::Form;
use actix_web::http::header;
use actix_web::HttpRequest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use projections::{ClientDirectory, ClientView};
use std::sync::Arc;

/// How the client authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic.
    Basic,
    /// Form parameters.
    Post,
    /// None: a public client identified by `client_id` alone.
    None,
}

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
pub fn authenticate_or_public(
    req: &HttpRequest,
    form: &Form,
    clients: &ClientDirectory,
) -> Result<AuthenticatedClient, OAuthError> {
    let has_credentials =
        req.headers().contains_key(header::AUTHORIZATION) || form.get("client_secret").is_some();
    if !has_credentials {
        if let Some(view) = form.get("client_id").and_then(|id| clients.get(id)) {
            if view.client.public {
                return Ok(AuthenticatedClient {
                    view,
                    method: AuthMethod::None,
                });
            }
        }
    }
    authenticate(req, form, clients)
}

/// Authenticates the calling client against the directory. Every failure is
/// `invalid_client` (401), whether the id is unknown or the secret wrong.
pub fn authenticate(
    req: &HttpRequest,
    form: &Form,
    clients: &ClientDirectory,
) -> Result<AuthenticatedClient, OAuthError> {
    let basic = basic_credentials(req)?;
    let post_secret = form.get("client_secret");
    let (id, secret, method) = match (basic, post_secret) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not both Basic and client_secret",
            ))
        }
        (Some((id, secret)), None) => {
            if form.get("client_id").is_some_and(|fid| fid != id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the authenticated client",
                ));
            }
            (id, secret, AuthMethod::Basic)
        }
        (None, Some(secret)) => {
            let id = form
                .get("client_id")
                .ok_or_else(|| OAuthError::invalid_request("client_secret without client_id"))?;
            (id.to_owned(), secret.to_owned(), AuthMethod::Post)
        }
        (None, None) => {
            return Err(OAuthError::invalid_client(
                "client authentication required (client_secret_basic or client_secret_post)",
            ))
        }
    };
    let failed = || OAuthError::invalid_client("client authentication failed");
    let Some(view) = clients.get(&id) else {
        // Hash anyway, so that an unknown id costs what a wrong secret costs.
        let _ = domain::values::SecretHash::of(&secret);
        return Err(failed());
    };
    let ok = view
        .client
        .secret_hash
        .as_ref()
        .is_some_and(|h| h.verify(&secret));
    if !ok {
        return Err(failed());
    }
    Ok(AuthenticatedClient { view, method })
}
