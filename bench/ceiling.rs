//! The ceiling of introspection in `bench/compare.sh`: a minimal actix-web server whose
//! `POST /introspect` reads what authledger's reads (HTTP Basic credentials and the
//! `token` / `token_type_hint` form) and answers a JSON body of the same shape, with no store,
//! no lookup and no client check. authledger's introspection is measured as a share of it.
//!
//! `cargo run --release --example ceiling -- 127.0.0.1:PORT`
#![allow(clippy::expect_used, reason = "a benchmark tool: a failure ends it")]

use actix_web::{http::header, web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;

#[derive(serde::Deserialize)]
struct Form {
    token: String,
    #[allow(dead_code, reason = "parsed as authledger parses it")]
    token_type_hint: Option<String>,
}

#[derive(serde::Serialize)]
struct Answer<'a> {
    active: bool,
    client_id: &'a str,
    scope: &'static str,
    token_type: &'static str,
    exp: u64,
    iat: u64,
    token_length: usize,
}

async fn introspect(req: HttpRequest, form: web::Form<Form>) -> HttpResponse {
    let credentials = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some(credentials) = credentials else {
        return HttpResponse::Unauthorized().json(serde_json::json!({
            "error": "invalid_client", "error_description": "HTTP Basic credentials are required",
        }));
    };
    let client_id = credentials.split(':').next().unwrap_or_default();
    HttpResponse::Ok().json(Answer {
        active: true,
        client_id,
        scope: "read",
        token_type: "Bearer",
        exp: 1_900_000_000,
        iat: 1_899_996_400,
        token_length: form.token.len(),
    })
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18199".into());
    HttpServer::new(|| {
        App::new()
            .route("/introspect", web::post().to(introspect))
            .route("/healthz", web::get().to(HttpResponse::Ok))
    })
    .bind(&bind)
    .expect("bind")
    .run()
    .await
}
