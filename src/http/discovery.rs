//! `GET /jwks`, `GET /.well-known/oauth-authorization-server` (RFC 8414) and `GET /healthz`.

use super::AppState;
use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// The public signing keys.
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(state.key.jwks())
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
        "grant_types_supported": [
            "authorization_code",
            "client_credentials",
            "refresh_token",
            "password",
            "implicit",
        ],
        "response_types_supported": ["code", "token"],
        "response_modes_supported": ["query", "fragment"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": [],
        "access_token_signing_alg_values_supported": ["ES256"],
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
