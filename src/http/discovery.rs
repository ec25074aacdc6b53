//! `GET /jwks`, `GET /.well-known/oauth-authorization-server` (RFC 8414) and `GET /healthz`.

use super::AppState;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use domain::values::{AuthMethod, GrantType, SigningAlgorithm};

/// Algorithms accepted on client assertions and jwt-bearer grants (RFC 7523).
pub const ASSERTION_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Methods of the endpoints that require client authentication.
const AUTHENTICATED: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];

/// The public signing keys.
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .content_type("application/jwk-set+json")
        .body(state.keys.jwks().as_str().to_owned())
}

/// Authorization server metadata (RFC 8414 §2).
pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let iss = &state.issuer;
    HttpResponse::Ok().json(serde_json::json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "jwks_uri": format!("{iss}/jwks"),
        "grant_types_supported": GrantType::ALL.map(GrantType::as_str),
        "response_types_supported": ["code", "token"],
        "response_modes_supported": ["query", "fragment"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_methods_supported": AuthMethod::ALL.map(AuthMethod::as_str),
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": AUTHENTICATED,
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "revocation_endpoint_auth_methods_supported": AuthMethod::ALL.map(AuthMethod::as_str),
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "access_token_signing_alg_values_supported": SigningAlgorithm::ALL.map(SigningAlgorithm::as_str),
        "tokeninfo_endpoint": format!("{iss}/tokeninfo"),
        "scopes_supported": [],
    }))
}

/// Health and the log's head position; 503 once the store stopped taking writes.
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    use crate::store::EventStore;
    let head = state.engine.store.head_position();
    match state.engine.store.write_failure() {
        None => HttpResponse::Ok().json(serde_json::json!({
            "status": "ok",
            "head_position": head,
        })),
        Some(cause) => HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "failing",
            "error": format!("the store takes no writes after a failed write ({cause}); restart the server"),
            "head_position": head,
        })),
    }
}
