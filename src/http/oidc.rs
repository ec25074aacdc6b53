//! OpenID Connect (Core 1.0, Discovery 1.0): the provider metadata, id_tokens and
//! `/userinfo`.
//!
//! An id_token is decided like any token: the client's actor records `IdTokenIssued` (who,
//! for whom, auth_time, sid, nonce, the key), and the JWT is signed here from that event once
//! it is durable. Profile claims are read from the user directory when a token is signed or
//! `/userinfo` answers, so they are the user's claims of that moment (Core §5.3.2).

use super::error::OAuthError;
use super::AppState;
use crate::bearer::{self, BearerError};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use domain::event::IdTokenIssued;
use domain::grant::{is_openid, OPENID_SCOPE};
use domain::values::{Scope, SigningAlgorithm};
use projections::UserView;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Digest as _;

/// Claims the scope `profile` releases (Core §5.4).
pub const PROFILE_CLAIMS: [&str; 6] = [
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "locale",
    "updated_at",
];
/// Claims the scope `email` releases (Core §5.4).
pub const EMAIL_CLAIMS: [&str; 2] = ["email", "email_verified"];
/// Every claim this server can release about a user, `sub` first.
pub const CLAIMS_SUPPORTED: [&str; 15] = [
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "sid",
    "azp",
    "at_hash",
    "name",
    "email",
    "email_verified",
];
pub use domain::grant::ACR_PASSWORD;
/// Largest form body `/userinfo` reads.
const MAX_FORM: usize = 16 * 1024;
/// Realm of `/userinfo`'s challenges.
const REALM: &str = "userinfo";

/// One claim of a user, if the user has it.
fn user_claim(user: &UserView, name: &str) -> Option<Value> {
    let p = &user.profile;
    let text = |v: &Option<String>| v.clone().map(Value::from);
    match name {
        "name" => text(&p.name),
        "given_name" => text(&p.given_name),
        "family_name" => text(&p.family_name),
        "preferred_username" => Some(
            p.preferred_username
                .clone()
                .unwrap_or_else(|| user.username.to_string())
                .into(),
        ),
        "locale" => text(&p.locale),
        "updated_at" => Some(
            (if user.profile_updated_at > 0 {
                user.profile_updated_at
            } else {
                user.registered_at.unix_timestamp()
            })
            .into(),
        ),
        "email" => text(&p.email),
        "email_verified" => p.email.as_ref().map(|_| p.email_verified.into()),
        _ => None,
    }
}

/// The claims the user has among those released for `scopes` when `by_scope` (Core §5.4),
/// and those asked for by name (§5.5) that the granted scopes cover. `sub` is the caller's.
pub fn released_claims(
    user: &UserView,
    scopes: &[Scope],
    by_scope: bool,
    requested: &[String],
) -> Map<String, Value> {
    let has = |s: &str| scopes.iter().any(|g| g.as_str() == s);
    let mut names: Vec<&str> = Vec::new();
    if by_scope && has("profile") {
        names.extend(PROFILE_CLAIMS);
    }
    if by_scope && has("email") {
        names.extend(EMAIL_CLAIMS);
    }
    // A claim asked for by name is released only under the scope that covers it: the
    // `claims` parameter picks among what the user consented to, never beyond (consent is
    // given per scope).
    names.extend(requested.iter().map(String::as_str).filter(|n| {
        (PROFILE_CLAIMS.contains(n) && has("profile")) || (EMAIL_CLAIMS.contains(n) && has("email"))
    }));
    let mut out = Map::new();
    for n in names {
        if let Some(v) = user_claim(user, n) {
            out.insert(n.to_owned(), v);
        }
    }
    out
}

/// The `sub` a pairwise client sees for a user (Core §8.1): the HMAC, under the server's hash
/// key, of the client's sector and the user's id; `None` for a public client. The label keeps
/// these apart from the hashes of tokens (which hold no NUL).
pub fn pairwise_subject(
    state: &AppState,
    client: &domain::client::Client,
    user: domain::values::UserId,
) -> Option<String> {
    if client.oidc.subject_type != domain::event::SubjectType::Pairwise {
        return None;
    }
    let sector = domain::client::sector_of(client);
    let hash = state
        .hash_key
        .hash(&format!("pairwise-subject\0{sector}\0{user}"));
    Some(
        hash.as_str()
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// The `sub` a client sees for a user.
pub fn subject(
    state: &AppState,
    client: &domain::client::Client,
    user: domain::values::UserId,
) -> String {
    pairwise_subject(state, client, user).unwrap_or_else(|| user.to_string())
}

/// The `sub` a token of `client_id` shows outside (JWT access tokens, introspection,
/// `/tokeninfo`, `/api/whoami`): a pairwise client's users appear by their pairwise subject
/// there too, or the pairwise identifier would be undone by the first introspection. `None`
/// when the recorded subject stands (a public client, or a token of no user).
pub fn outside_subject(
    state: &AppState,
    client_id: &domain::values::ClientId,
    user: Option<domain::values::UserId>,
) -> Option<String> {
    let client = state.engine.models.clients.get(client_id.as_str())?;
    pairwise_subject(state, &client.client, user?)
}

/// The key that signs a client's id_tokens now: its registered algorithm, else RS256, which
/// every relying party supports (Core §3.1.3.7).
pub fn id_token_kid(state: &AppState, client: &domain::client::Client, now: i64) -> Option<String> {
    let alg = client.oidc.id_token_alg.unwrap_or(SigningAlgorithm::RS256);
    state.keys.signing_kid(alg, now)
}

/// `at_hash` (Core §3.1.3.6): the left half of the hash of the value, with the
/// hash of the signing algorithm (SHA-256 for RS256 and ES256, SHA-512 for Ed25519).
pub fn half_hash(alg: SigningAlgorithm, value: &str) -> String {
    let digest: Vec<u8> = match alg {
        SigningAlgorithm::EdDSA => sha2::Sha512::digest(value.as_bytes()).to_vec(),
        _ => sha2::Sha256::digest(value.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    azp: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    amr: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    #[serde(flatten)]
    user: Map<String, Value>,
}

/// What goes with an id_token besides its event.
#[derive(Default)]
pub struct IdTokenExtras<'a> {
    /// The access token issued with it (`at_hash`).
    pub access_token: Option<&'a str>,
    /// The scopes the grant holds: they bound the claims asked for by name.
    pub granted: &'a [Scope],
    /// Whether the scopes' claims go in the id_token itself: when no access token is issued,
    /// there is no `/userinfo` to ask (Core §5.4).
    pub scope_claims: bool,
}

/// Signs the id_token that `issued` records.
pub fn id_token_value(
    state: &AppState,
    issued: &IdTokenIssued,
    extras: IdTokenExtras<'_>,
) -> Result<String, OAuthError> {
    let kid = issued
        .kid
        .as_deref()
        .ok_or_else(|| OAuthError::server_error(&"no key signs this client's id_tokens"))?;
    let alg = state
        .keys
        .snapshot()
        .loaded
        .get(kid)
        .map(|k| k.algorithm)
        .ok_or_else(|| OAuthError::server_error(&"the id_token's signing key is not loaded"))?;
    let user_claims = match state.engine.models.users.get(&issued.user_id) {
        Some(user) => released_claims(
            &user,
            extras.granted,
            extras.scope_claims,
            &issued.claims.id_token,
        ),
        None => Map::new(),
    };
    let claims = IdTokenClaims {
        iss: &state.issuer,
        sub: &issued.subject,
        aud: issued.client_id.as_str(),
        azp: issued.client_id.as_str(),
        exp: issued.expires_at,
        iat: issued.issued_at,
        auth_time: issued.auth_time,
        jti: issued.jti.to_string(),
        nonce: issued.nonce.as_deref(),
        at_hash: extras.access_token.map(|t| half_hash(alg, t)),
        acr: issued.acr.as_deref(),
        amr: &issued.amr,
        sid: issued.sid.as_deref(),
        user: user_claims,
    };
    state
        .keys
        .sign_typed(kid, "JWT", &claims)
        .map_err(|e| OAuthError::server_error(&e))
}

/// The claims of an id_token this server signed, checked against our keys and issuer;
/// expiry is not checked (an `id_token_hint` may have expired, Core §3.1.2.1).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct HintClaims {
    /// The subject.
    pub sub: String,
    /// The audience: one client id, or several.
    pub aud: Value,
    /// The session, if it named one.
    #[serde(default)]
    pub sid: Option<String>,
}

impl HintClaims {
    /// Whether the token was issued to `client_id`.
    pub fn is_for(&self, client_id: &str) -> bool {
        match &self.aud {
            Value::String(a) => a == client_id,
            Value::Array(a) => a.iter().any(|v| v.as_str() == Some(client_id)),
            _ => false,
        }
    }
}

/// Verifies an id_token we issued (signature by a published key, our issuer); `None` for
/// anything else.
pub fn verify_id_token(state: &AppState, token: &str) -> Option<HintClaims> {
    state.keys.verify_id_token(token, &state.issuer)
}

/// `GET /.well-known/openid-configuration` (Discovery 1.0 §3): the RFC 8414 document plus
/// what OpenID Connect adds, derived from what the code supports.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "oauth",
    operation_id = "openid_configuration",
    responses(
        (status = 200, description = "OpenID provider metadata (OpenID Connect Discovery 1.0)", body = crate::http::openapi::ServerMetadata),
    )
)]
pub async fn openid_configuration(state: web::Data<AppState>) -> HttpResponse {
    let mut doc = super::discovery::metadata_document(&state);
    let iss = &state.issuer;
    let algs = SigningAlgorithm::ALL.map(SigningAlgorithm::as_str);
    let extra = serde_json::json!({
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": algs,
        "userinfo_signing_alg_values_supported": [],
        "claims_supported": CLAIMS_SUPPORTED
            .iter()
            .chain(PROFILE_CLAIMS.iter())
            .chain(EMAIL_CLAIMS.iter())
            .collect::<std::collections::BTreeSet<_>>(),
        "claims_parameter_supported": true,
        "claim_types_supported": ["normal"],
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
        "acr_values_supported": [ACR_PASSWORD],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "end_session_endpoint": format!("{iss}/end_session"),
        "registration_endpoint": format!("{iss}/register"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": false,
        "display_values_supported": ["page"],
        "ui_locales_supported": ["en"],
        "claims_locales_supported": ["en"],
    });
    if let (Value::Object(d), Value::Object(e)) = (&mut doc, extra) {
        d.extend(e);
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(doc)
}

/// `GET|POST /userinfo` (Core §5.3): the claims of the user a token speaks for, for the
/// token's scopes; the token comes every RFC 6750 way.
#[utoipa::path(
    method(get, post),
    path = "/userinfo",
    tag = "oauth",
    operation_id = "userinfo",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's claims the token's scopes allow (OpenID Connect Core §5.3)", body = crate::http::openapi::UserInfo),
        (status = 200, description = "A signed UserInfo response", body = String, content_type = "application/jwt"),
        crate::http::openapi::BearerErrors,
        crate::http::openapi::TooLarge,
    )
)]
pub async fn userinfo(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match userinfo_claims(&req, payload, &state).await {
        Ok(claims) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(claims),
        Err(e) => e.response(REALM),
    }
}

async fn userinfo_claims(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Map<String, Value>, BearerError> {
    let body = if bearer::body_may_carry_token(req) {
        Some(
            super::form::read_body(req, payload, MAX_FORM)
                .await
                .map_err(|e| BearerError::InvalidRequest(e.to_string()))?,
        )
    } else {
        None
    };
    let (token, scheme) = bearer::presented(req, body.as_deref())?;
    let t = super::introspect::active(state, &token)
        .map_err(|e| BearerError::Unavailable(e.to_string()))?
        .ok_or_else(|| {
            BearerError::InvalidToken("the token is expired, revoked or unknown".into())
        })?;
    super::dpop::check_presentation(req, state, &token, scheme, &t.record).await?;
    let r = &t.record;
    if !is_openid(&r.scopes) {
        return Err(BearerError::InsufficientScope(OPENID_SCOPE.into()));
    }
    let (Some(user_id), Some(client)) = (
        r.user_id(),
        state.engine.models.clients.get(r.client_id.as_str()),
    ) else {
        return Err(BearerError::InvalidToken(
            "the token speaks for no user".into(),
        ));
    };
    let user = state
        .engine
        .models
        .users
        .get(&user_id)
        .ok_or_else(|| BearerError::InvalidToken("the token's user no longer exists".into()))?;
    let requested = match &r.family_id {
        Some(f) => state
            .engine
            .models
            .tokens
            .userinfo_claims(f)
            .map_err(|e| BearerError::Unavailable(e.to_string()))?,
        None => Vec::new(),
    };
    let mut claims = Map::new();
    claims.insert("sub".into(), subject(state, &client.client, user_id).into());
    claims.extend(released_claims(&user, &r.scopes, true, &requested));
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_is_the_left_half_of_the_algorithms_hash() {
        // Core §A.3's example: at_hash of this access token under RS256.
        assert_eq!(
            half_hash(
                SigningAlgorithm::RS256,
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(half_hash(SigningAlgorithm::EdDSA, "x").len(), 43);
    }
}
