//! `GET /jwks`, `GET /.well-known/oauth-authorization-server` (RFC 8414) and `GET /healthz`.

use super::AppState;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use domain::values::{AuthMethod, GrantType, SigningAlgorithm};

/// The public signing keys.
#[utoipa::path(
    get,
    path = "/jwks",
    tag = "oauth",
    operation_id = "jwks",
    responses(
        (status = 200, description = "The public signing keys (RFC 7517)", body = crate::http::openapi::Jwks, content_type = "application/jwk-set+json"),
    )
)]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .content_type("application/jwk-set+json")
        .body(state.keys.jwks().as_str().to_owned())
}

/// `GET /authorize/jwks`: the JWKS again, for clients that look for it beside `/authorize`.
#[utoipa::path(
    get,
    path = "/authorize/jwks",
    tag = "oauth",
    operation_id = "authorize_jwks",
    responses(
        (status = 200, description = "The public signing keys (RFC 7517), where clients that derive the JWKS address from the authorization endpoint look", body = crate::http::openapi::Jwks, content_type = "application/jwk-set+json"),
    )
)]
pub async fn authorize_jwks(state: web::Data<AppState>) -> HttpResponse {
    jwks(state).await
}

/// Authorization server metadata (RFC 8414 §2).
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "oauth",
    operation_id = "oauth_metadata",
    responses(
        (status = 200, description = "Authorization server metadata (RFC 8414)", body = crate::http::openapi::ServerMetadata),
    )
)]
pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(metadata_document(&state))
}

/// The RFC 8414 document; the OpenID provider metadata extends it.
pub fn metadata_document(state: &AppState) -> serde_json::Value {
    let iss = &state.issuer;
    // Algorithms accepted on client assertions and jwt-bearer grants (RFC 7523).
    let assertion_algs: Vec<String> = crate::jose::ACCEPTED
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    // Endpoints that require client authentication take every method but `none`.
    let authenticated: Vec<&str> = AuthMethod::ALL
        .iter()
        .filter(|m| **m != AuthMethod::None)
        .map(|m| m.as_str())
        .collect();
    serde_json::json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        // RFC 8628 §4.
        "device_authorization_endpoint": format!("{iss}/device_authorization"),
        // RFC 9126 §5.
        "pushed_authorization_request_endpoint": format!("{iss}/par"),
        "require_pushed_authorization_requests": state.grants.require_pushed_authorization_requests,
        "introspection_endpoint": format!("{iss}/introspect"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "jwks_uri": format!("{iss}/jwks"),
        "grant_types_supported": GrantType::ALL.map(GrantType::as_str),
        // RFC 9449 §5.1.
        "dpop_signing_alg_values_supported": assertion_algs,
        "response_types_supported": ["code", "token", "id_token", "id_token token"],
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "registration_endpoint": format!("{iss}/register"),
        "response_modes_supported": ["query", "fragment"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_methods_supported": AuthMethod::ALL.map(AuthMethod::as_str),
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "introspection_endpoint_auth_methods_supported": authenticated,
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_methods_supported": AuthMethod::ALL.map(AuthMethod::as_str),
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "access_token_signing_alg_values_supported": SigningAlgorithm::ALL.map(SigningAlgorithm::as_str),
        "tokeninfo_endpoint": format!("{iss}/tokeninfo"),
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
    })
}

/// Liveness: the process answers. 200 whatever the store's state (`/readyz` says whether to
/// send it traffic), with that state for a person looking.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses(
        (status = 200, description = "The process answers (whatever the store's state)", body = crate::http::openapi::Health),
    )
)]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    use crate::store::EventStore;
    HttpResponse::Ok().json(serde_json::json!({
        "status": "alive",
        "head_position": state.engine.store.head_position(),
        "ready": readiness(&state).status().is_success(),
    }))
}

/// Readiness: 200 while the server can take requests; 503 while a node's copy of the shared
/// log is catching up or the database is unreachable, once the store stopped taking writes,
/// and while the server stops. A damaged log served with `--allow-unverified` is ready for
/// reads (200, `read_only`).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready for traffic", body = crate::http::openapi::Health),
        (status = 503, description = "Not ready: catching up, failing or stopping", body = crate::http::openapi::Health),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    readiness(&state)
}

/// `GET /metrics` on the main listener, unless a metrics address is configured.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        (status = 404, description = "Metrics are off, or served on their own address", body = crate::http::openapi::OAuthErrorBody),
    )
)]
pub async fn metrics_here(state: web::Data<AppState>) -> HttpResponse {
    if !state.metrics_here {
        return super::not_found_answer("/metrics");
    }
    metrics(state).await
}

/// `GET /metrics`: the Prometheus text format (version 0.0.4); 404 when metrics are off.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    use crate::store::EventStore;
    let Some(handle) = &state.metrics else {
        return super::not_found_answer("/metrics");
    };
    let engine = &state.engine;
    let head = engine.store.head_position();
    let applied = engine.audit.applied_position().min(head);
    let now_ms = engine.clock.unix_now_ms();
    let oldest_waiting_ms = if applied < head {
        engine.store.read_all(applied + 1, 1).ok().and_then(|e| {
            e.first()
                .map(|e| (e.recorded_at.unix_timestamp_nanos() / 1_000_000) as i64)
        })
    } else {
        None
    };
    let gauges = crate::metrics::Gauges {
        projection_lag_events: head - applied,
        projection_lag_seconds: oldest_waiting_ms
            .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0),
        live_actors: engine.registry.live(),
        live_tokens: live_tokens(engine, now_ms),
        head_position: head,
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(crate::metrics::render(handle, &gauges))
}

/// The live tokens of the compact table, counted at most every 10 s: the count walks the
/// table under its read lock (token writes wait), and `/metrics` may be scraped by anyone
/// who reaches it.
fn live_tokens(engine: &crate::engine::Engine, now_ms: i64) -> usize {
    static LAST: std::sync::Mutex<Option<(i64, usize)>> = std::sync::Mutex::new(None);
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match *last {
        Some((at, n)) if (0..10_000).contains(&(now_ms - at)) => n,
        _ => {
            let n = engine.models.tokens.unexpired_in_table(now_ms / 1000);
            *last = Some((now_ms, n));
            n
        }
    }
}

/// Whether the server can take requests, and why not.
fn readiness(state: &AppState) -> HttpResponse {
    use crate::store::EventStore;
    let head = state.engine.store.head_position();
    if *state.shutdown.borrow() {
        return HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "1"))
            .json(serde_json::json!({
                "status": "stopping",
                "reason": "the server is stopping",
                "head_position": head,
            }));
    }
    if let Some(reason) = state.engine.store.read_only() {
        // Alive and answering reads on purpose (`--allow-unverified` past damage).
        return HttpResponse::Ok().json(serde_json::json!({
            "status": "read_only",
            "reason": reason,
            "head_position": head,
        }));
    }
    if let Some(shared) = &state.engine.shared {
        // A node of a shared log is ready while it reaches the database and its copy keeps up.
        let health = shared.health();
        return match health.not_ready() {
            None => HttpResponse::Ok().json(serde_json::json!({
                "status": "ok",
                "head_position": head,
                "shared_log": health,
            })),
            Some(reason) => HttpResponse::ServiceUnavailable()
                .insert_header((actix_web::http::header::RETRY_AFTER, "1"))
                .json(serde_json::json!({
                    "status": "not_ready",
                    "reason": reason,
                    "head_position": head,
                    "shared_log": health,
                })),
        };
    }
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
