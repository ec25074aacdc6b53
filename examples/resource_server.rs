//! An API protected by authledger tokens, with the `authledger::resource` extractor.
//!
//! ```text
//! cargo run --example resource_server -- --issuer http://127.0.0.1:8080 [--bind 127.0.0.1:9000]
//!     [--public-url URL] [--mode jwks [--refetch-interval SECS]
//!      | --mode introspection --client-id ID --client-secret SECRET [--cache-ttl SECS]]
//! ```
//!
//! - `GET /hello`: any valid token; answers who it speaks for.
//! - `GET /notes`: needs scope `read`.
//! - `POST /notes`: needs scope `write`.
//!
//! It prints `listening on ADDR` once it accepts connections.

use actix_web::{web, App, HttpResponse, HttpServer};
use authledger::resource::{AccessToken, ResourceServer, ScopeSet, Scoped};
use std::time::Duration;

struct Read;
impl ScopeSet for Read {
    const SCOPES: &'static [&'static str] = &["read"];
}

struct Write;
impl ScopeSet for Write {
    const SCOPES: &'static [&'static str] = &["write"];
}

async fn hello(token: AccessToken) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "sub": token.subject,
        "client_id": token.client_id,
        "scope": token.scopes.join(" "),
    }))
}

async fn list_notes(Scoped(token, ..): Scoped<Read>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "notes": [], "reader": token.subject }))
}

async fn add_note(Scoped(token, ..): Scoped<Write>) -> HttpResponse {
    HttpResponse::Created().json(serde_json::json!({ "written_by": token.subject }))
}

struct Options {
    issuer: String,
    bind: String,
    mode: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    cache_ttl: u64,
    refetch_interval: Option<u64>,
    public_url: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        issuer: String::new(),
        bind: "127.0.0.1:9000".into(),
        mode: "jwks".into(),
        client_id: None,
        client_secret: None,
        cache_ttl: 0,
        refetch_interval: None,
        public_url: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--issuer" => o.issuer = value()?,
            "--bind" => o.bind = value()?,
            "--mode" => o.mode = value()?,
            "--client-id" => o.client_id = Some(value()?),
            "--public-url" => o.public_url = Some(value()?),
            "--client-secret" => o.client_secret = Some(value()?),
            "--refetch-interval" => {
                o.refetch_interval = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--refetch-interval: {e}"))?,
                )
            }
            "--cache-ttl" => {
                o.cache_ttl = value()?.parse().map_err(|e| format!("--cache-ttl: {e}"))?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.issuer.is_empty() {
        return Err("--issuer is required".into());
    }
    Ok(o)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\nusage: resource_server --issuer URL [--bind ADDR] [--mode jwks|introspection --client-id ID --client-secret SECRET --cache-ttl SECS]");
            std::process::exit(2);
        }
    };
    let mut rs = match o.mode.as_str() {
        "jwks" => ResourceServer::jwks(&o.issuer),
        "introspection" => {
            let (Some(id), Some(secret)) = (o.client_id, o.client_secret) else {
                eprintln!("error: introspection needs --client-id and --client-secret");
                std::process::exit(2);
            };
            ResourceServer::introspection(&o.issuer, id, secret)
                .cache_ttl(Duration::from_secs(o.cache_ttl))
        }
        other => {
            eprintln!("error: --mode is jwks or introspection, not {other}");
            std::process::exit(2);
        }
    }
    .realm("notes");
    if let Some(secs) = o.refetch_interval {
        rs = rs.refetch_interval(Duration::from_secs(secs));
    }
    // Bound first, so that the URL DPoP proofs must name is known: the one clients reach.
    let listener = std::net::TcpListener::bind(&o.bind)?;
    let public_url = o.public_url.clone().unwrap_or_else(|| {
        format!(
            "http://{}",
            listener
                .local_addr()
                .map_or_else(|_| o.bind.clone(), |a| a.to_string())
        )
    });
    let rs = rs.public_url(public_url).build();
    let rs = web::Data::new(rs);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(rs.clone())
            .route("/hello", web::get().to(hello))
            .route("/notes", web::get().to(list_notes))
            .route("/notes", web::post().to(add_note))
    })
    .workers(1)
    .listen(listener)?;
    for addr in server.addrs() {
        println!("listening on {addr}");
    }
    server.run().await
}
