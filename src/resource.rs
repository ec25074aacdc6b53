//! Protecting an actix-web API with authledger access tokens (feature `resource-server`,
//! which pulls in no server internals).
//!
//! Register a [`ResourceServer`] as app data, then take an [`AccessToken`] (any valid token)
//! or a [`Scoped`] (a valid token with given scopes) in a handler:
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer, Responder};
//! use authledger::resource::{AccessToken, ResourceServer, Scoped, ScopeSet};
//!
//! struct Write;
//! impl ScopeSet for Write {
//!     const SCOPES: &'static [&'static str] = &["write"];
//! }
//!
//! async fn read(token: AccessToken) -> impl Responder {
//!     format!("hello {}", token.subject)
//! }
//!
//! async fn write(Scoped(token, ..): Scoped<Write>) -> impl Responder {
//!     format!("{} may write", token.subject)
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let rs = web::Data::new(ResourceServer::jwks("https://auth.example").build());
//! HttpServer::new(move || {
//!     App::new()
//!         .app_data(rs.clone())
//!         .route("/read", web::get().to(read))
//!         .route("/write", web::post().to(write))
//! })
//! .bind("127.0.0.1:9000")?
//! .run()
//! .await
//! # }
//! ```
//!
//! Two modes:
//! - **JWKS** ([`ResourceServer::jwks`]): JWTs are verified locally against the issuer's
//!   published keys, fetched once (from its RFC 8414 metadata) and cached; a token naming an
//!   unknown `kid` makes it refetch them (at most once per [`Builder::refetch_interval`]), so
//!   keys rotated on the server are picked up. No call per request, but a revoked JWT is
//!   accepted until it expires.
//! - **Introspection** ([`ResourceServer::introspection`]): every token is checked with the
//!   issuer's RFC 7662 endpoint, answers cached for [`Builder::cache_ttl`] (default 0: a
//!   revocation takes effect at once). Works for opaque tokens and JWTs alike.
//!
//! The token is read from `Authorization: Bearer` or the `access_token` query parameter (RFC
//! 6750 §2.1, §2.3). A token bound to a DPoP key (`cnf.jkt`, RFC 9449) is accepted only as
//! `Authorization: DPoP` with a proof by that key for this request (method, URL, `ath`, a
//! fresh `iat`); each proof's `jti` is remembered for its lifetime (in memory: a resource
//! server has no log) and a replay refused. Set [`Builder::public_url`] to the URL clients
//! address the API by: proofs name it, and without it bound tokens are refused. A form-body token (§2.2) needs the body, which an extractor must not
//! consume: call [`ResourceServer::authenticate`] with it. Failures answer per RFC 6750 §3:
//! 401 `invalid_token` with a `WWW-Authenticate` challenge, 403 `insufficient_scope` naming
//! the scope, 400 `invalid_request`. Issuers are reached with `awc`; for an `https` issuer
//! enable one of its TLS features (e.g. `awc = { version = "3", features =
//! ["rustls-0_23-webpki-roots"] }`) in your own `Cargo.toml`.

use crate::bearer::{self, BearerError};
use crate::jose::{JoseError, KeySet};
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A valid access token: whom it speaks for, its client and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// `sub`.
    pub subject: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
    /// Its id, when it has one.
    pub jti: Option<String>,
    /// The thumbprint of the DPoP key it is bound to (`cnf.jkt`), if it is bound.
    pub jkt: Option<String>,
}

impl AccessToken {
    /// Whether it carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Refuses with `insufficient_scope` unless it carries every scope of `required`.
    pub fn require(&self, required: &[&str]) -> Result<(), BearerError> {
        bearer::require_scopes(&self.scopes, required)
    }
}

/// Scopes a [`Scoped`] extractor requires.
pub trait ScopeSet {
    /// Every one of them is required.
    const SCOPES: &'static [&'static str];
}

/// A valid access token that carries every scope of `S`.
pub struct Scoped<S: ScopeSet>(pub AccessToken, pub PhantomData<S>);

enum Mode {
    Jwks,
    Introspection {
        client_id: String,
        client_secret: String,
    },
}

struct Endpoints {
    jwks_uri: String,
    introspection_endpoint: String,
}

/// An introspection answer, by SHA-256 of the token, and when it was fetched.
type CachedAnswer = (Instant, Result<AccessToken, String>);

struct CachedKeys {
    keys: Arc<KeySet>,
    fetched: Instant,
}

struct Inner {
    issuer: String,
    audience: String,
    realm: String,
    mode: Mode,
    leeway: u64,
    max_age: Duration,
    refetch_interval: Duration,
    cache_ttl: Duration,
    endpoints: Mutex<Option<Arc<Endpoints>>>,
    keys: Mutex<Option<CachedKeys>>,
    last_attempt: Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
    introspected: Mutex<HashMap<[u8; 32], CachedAnswer>>,
    public_url: Option<String>,
    /// DPoP proofs seen: (key thumbprint, jti) and until when they are remembered.
    proofs: Mutex<HashMap<(String, String), i64>>,
}

/// Verifies access tokens of one issuer. Cheap to clone; share one per API.
#[derive(Clone)]
pub struct ResourceServer {
    inner: Arc<Inner>,
}

/// Settings of a [`ResourceServer`].
pub struct Builder {
    issuer: String,
    audience: Option<String>,
    realm: String,
    mode: Mode,
    leeway: u64,
    max_age: Duration,
    refetch_interval: Duration,
    cache_ttl: Duration,
    public_url: Option<String>,
}

impl Builder {
    /// The URL clients address this API by (scheme, host and port, e.g.
    /// `https://api.example.com`), against which DPoP proofs' `htu` is checked. Without it,
    /// DPoP-bound tokens are refused: the request's `Host` and forwarding headers are the
    /// sender's to choose.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// The `aud` a JWT must name (default: the issuer, which authledger puts there).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The realm of `WWW-Authenticate` challenges (default `api`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 30 s).
    pub fn leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    /// How long fetched keys are trusted before they are fetched again (default 300 s).
    pub fn keys_max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Shortest time between two attempts to fetch the keys, failed ones included (default
    /// 10 s), so that made-up key ids or a slow issuer cannot make the API hammer it. When a
    /// fetch fails, the keys fetched before keep serving.
    pub fn refetch_interval(mut self, every: Duration) -> Self {
        self.refetch_interval = every;
        self
    }

    /// How long an introspection answer is reused (default 0: never).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// The verifier.
    pub fn build(self) -> ResourceServer {
        let issuer = self.issuer.trim_end_matches('/').to_owned();
        ResourceServer {
            inner: Arc::new(Inner {
                audience: self.audience.unwrap_or_else(|| issuer.clone()),
                issuer,
                realm: self.realm,
                mode: self.mode,
                leeway: self.leeway,
                max_age: self.max_age,
                refetch_interval: self.refetch_interval,
                cache_ttl: self.cache_ttl,
                endpoints: Mutex::new(None),
                keys: Mutex::new(None),
                last_attempt: Mutex::new(None),
                fetching: tokio::sync::Mutex::new(()),
                introspected: Mutex::new(HashMap::new()),
                public_url: self.public_url,
                proofs: Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// Most introspection answers kept.
const MAX_CACHED: usize = 10_000;

/// Most DPoP proof ids remembered at once (each for about a minute).
const MAX_PROOFS: usize = 100_000;

thread_local! {
    // awc clients are per thread; one per worker keeps its connection pool.
    static CLIENT: awc::Client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
}

fn client() -> awc::Client {
    CLIENT.with(Clone::clone)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[allow(
    clippy::disallowed_methods,
    reason = "the extractor runs in the resource server's process, which has no authledger clock"
)]
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: Option<String>,
    introspection_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct JwtClaims {
    sub: String,
    client_id: Option<String>,
    #[serde(default)]
    scope: String,
    exp: i64,
    jti: Option<String>,
    #[serde(default)]
    cnf: Option<Cnf>,
}

#[derive(Deserialize)]
struct Cnf {
    jkt: Option<String>,
}

#[derive(Deserialize)]
struct Introspection {
    active: bool,
    sub: Option<String>,
    client_id: Option<String>,
    #[serde(default)]
    scope: String,
    exp: Option<i64>,
    jti: Option<String>,
    token_type: Option<String>,
    #[serde(default)]
    cnf: Option<Cnf>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
}

/// Whether an `aud` (one string or several) names `audience`.
fn names(aud: &serde_json::Value, audience: &str) -> bool {
    match aud {
        serde_json::Value::String(a) => a == audience,
        serde_json::Value::Array(all) => all.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

fn scopes(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl ResourceServer {
    /// Verifies JWTs locally against the issuer's JWKS.
    pub fn jwks(issuer: impl Into<String>) -> Builder {
        Self::builder(issuer.into(), Mode::Jwks)
    }

    /// Checks every token with the issuer's introspection endpoint, as this client (which
    /// needs `--can-introspect` to see other clients' tokens).
    pub fn introspection(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Builder {
        Self::builder(
            issuer.into(),
            Mode::Introspection {
                client_id: client_id.into(),
                client_secret: client_secret.into(),
            },
        )
    }

    fn builder(issuer: String, mode: Mode) -> Builder {
        Builder {
            issuer,
            audience: None,
            realm: "api".into(),
            mode,
            leeway: 30,
            max_age: Duration::from_secs(300),
            refetch_interval: Duration::from_secs(10),
            cache_ttl: Duration::ZERO,
            public_url: None,
        }
    }

    /// The realm of its challenges.
    pub fn realm(&self) -> &str {
        &self.inner.realm
    }

    /// Checks the token of a request (header, query, or the form body when given).
    pub async fn authenticate(
        &self,
        req: &HttpRequest,
        body: Option<&[u8]>,
    ) -> Result<AccessToken, BearerError> {
        let (token, scheme) = bearer::presented(req, body)?;
        let checked = self.check(&token).await?;
        match (&checked.jkt, scheme) {
            (None, bearer::Scheme::Bearer) => Ok(checked),
            (None, bearer::Scheme::Dpop) => Err(BearerError::InvalidToken(
                "this token is not DPoP-bound: present it as a Bearer token".into(),
            )),
            (Some(_), bearer::Scheme::Bearer) => Err(BearerError::InvalidToken(
                "this token is DPoP-bound: present it with Authorization: DPoP and a DPoP proof"
                    .into(),
            )),
            (Some(jkt), bearer::Scheme::Dpop) => {
                self.check_proof(req, &token, jkt)?;
                Ok(checked)
            }
        }
    }

    /// Checks the DPoP proof of a request presenting a token bound to `jkt`, and remembers
    /// its `jti`.
    fn check_proof(&self, req: &HttpRequest, token: &str, jkt: &str) -> Result<(), BearerError> {
        let invalid = |e: crate::dpop::DpopError| BearerError::InvalidDpopProof(e.to_string());
        let proof = crate::dpop::header_value(req.headers())
            .map_err(invalid)?
            .ok_or_else(|| BearerError::InvalidDpopProof("a DPoP proof is required".into()))?;
        // The request's own Host and Forwarded headers are the sender's to choose: a proof
        // made for another API could be replayed here with them. Only the configured URL
        // is trusted.
        let Some(base) = &self.inner.public_url else {
            return Err(BearerError::InvalidToken(
                "this API takes no DPoP-bound tokens: it has no public_url to check proofs against"
                    .into(),
            ));
        };
        let url = format!("{base}{}", req.path());
        let now = unix_now();
        let verified = crate::dpop::verify(
            proof,
            &crate::dpop::Expected {
                method: req.method().as_str(),
                url: &url,
                access_token: Some(token),
                now,
            },
        )
        .map_err(invalid)?;
        if verified.jkt != jkt {
            return Err(BearerError::InvalidDpopProof(
                "the DPoP proof is signed by another key than the one the token is bound to".into(),
            ));
        }
        let mut seen = lock(&self.inner.proofs);
        if seen.len() >= MAX_PROOFS {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= MAX_PROOFS {
                // Forgetting would let a replay through: refuse until proofs age out.
                return Err(BearerError::Unavailable(
                    "too many DPoP proofs in the last minute; try again".into(),
                ));
            }
        }
        let until = verified.remember_until();
        match seen.insert((verified.jkt, verified.jti), until) {
            Some(earlier) if earlier >= now => Err(BearerError::InvalidDpopProof(
                "the DPoP proof was used before (its jti is not new)".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Checks a token.
    pub async fn check(&self, token: &str) -> Result<AccessToken, BearerError> {
        match &self.inner.mode {
            Mode::Jwks => self.check_jwt(token).await,
            Mode::Introspection {
                client_id,
                client_secret,
            } => self.introspect(token, client_id, client_secret).await,
        }
    }

    async fn endpoints(&self) -> Result<Arc<Endpoints>, BearerError> {
        if let Some(e) = lock(&self.inner.endpoints).clone() {
            return Ok(e);
        }
        let issuer = &self.inner.issuer;
        let url = format!("{issuer}/.well-known/oauth-authorization-server");
        let unavailable = |e: String| BearerError::Unavailable(format!("reading {url}: {e}"));
        let mut res = client()
            .get(&url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !res.status().is_success() {
            return Err(unavailable(format!("HTTP {}", res.status())));
        }
        let meta: Metadata = res
            .json()
            .limit(64 * 1024)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        // RFC 8414 §3.3: the metadata must name the issuer it was fetched for.
        if meta.issuer.trim_end_matches('/') != issuer {
            return Err(unavailable(format!("it names issuer {:?}", meta.issuer)));
        }
        let e = Arc::new(Endpoints {
            jwks_uri: meta.jwks_uri.unwrap_or_else(|| format!("{issuer}/jwks")),
            introspection_endpoint: meta
                .introspection_endpoint
                .unwrap_or_else(|| format!("{issuer}/introspect")),
        });
        *lock(&self.inner.endpoints) = Some(e.clone());
        Ok(e)
    }

    /// The cached keys, fetched when absent or older than the max age, or (`refresh`) when
    /// a token named an unknown key. Fetches are attempted at most once per refetch interval,
    /// failed ones included, so made-up key ids or a slow issuer cannot pile requests up; when
    /// a fetch fails, the keys fetched before go on serving.
    async fn keys(&self, refresh: bool) -> Result<Arc<KeySet>, BearerError> {
        let cached = || {
            lock(&self.inner.keys)
                .as_ref()
                .map(|c| (c.keys.clone(), c.fetched))
        };
        if let Some((keys, fetched)) = cached() {
            if !refresh && fetched.elapsed() < self.inner.max_age {
                return Ok(keys);
            }
        }
        let tried_recently = || {
            lock(&self.inner.last_attempt)
                .is_some_and(|t| t.elapsed() < self.inner.refetch_interval)
        };
        let unavailable = || {
            BearerError::Unavailable("the issuer's keys could not be fetched yet; try again".into())
        };
        if tried_recently() {
            return cached().map(|(k, _)| k).ok_or_else(unavailable);
        }
        // One fetch at a time; whoever waited reuses what the first one fetched.
        let _guard = self.inner.fetching.lock().await;
        if tried_recently() {
            return cached().map(|(k, _)| k).ok_or_else(unavailable);
        }
        *lock(&self.inner.last_attempt) = Some(Instant::now());
        match self.fetch_keys().await {
            Ok(keys) => {
                *lock(&self.inner.keys) = Some(CachedKeys {
                    keys: keys.clone(),
                    fetched: Instant::now(),
                });
                Ok(keys)
            }
            Err(e) => cached().map(|(k, _)| k).ok_or(e),
        }
    }

    async fn fetch_keys(&self) -> Result<Arc<KeySet>, BearerError> {
        let endpoints = self.endpoints().await?;
        let url = &endpoints.jwks_uri;
        let unavailable = |e: String| BearerError::Unavailable(format!("reading {url}: {e}"));
        let mut res = client()
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !res.status().is_success() {
            return Err(unavailable(format!("HTTP {}", res.status())));
        }
        let doc: serde_json::Value = res
            .json()
            .limit(256 * 1024)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(Arc::new(
            KeySet::parse(&doc).map_err(|e| unavailable(e.to_string()))?,
        ))
    }

    async fn check_jwt(&self, token: &str) -> Result<AccessToken, BearerError> {
        let invalid = |e: JoseError| BearerError::InvalidToken(e.to_string());
        let mut keys = self.keys(false).await?;
        let verify = |keys: &KeySet| {
            keys.verify::<JwtClaims>(token, |v| {
                v.validate_exp = true;
                v.validate_nbf = true;
                v.leeway = self.inner.leeway;
                v.set_issuer(&[&self.inner.issuer]);
                v.set_audience(&[&self.inner.audience]);
                v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
            })
        };
        let verified = match verify(&keys) {
            Err(JoseError::UnknownKey(_)) => {
                keys = self.keys(true).await?;
                verify(&keys)
            }
            other => other,
        };
        let (header, claims) = verified.map_err(invalid)?;
        // RFC 9068 §4: an access token says so in its type, so an ID token or another JWT
        // signed by the same keys is not taken for one.
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(BearerError::InvalidToken(
                "not an access token (typ must be at+jwt)".into(),
            ));
        }
        Ok(AccessToken {
            subject: claims.sub,
            client_id: claims.client_id.unwrap_or_default(),
            scopes: scopes(&claims.scope),
            expires_at: claims.exp,
            jti: claims.jti,
            jkt: claims.cnf.and_then(|c| c.jkt),
        })
    }

    async fn introspect(
        &self,
        token: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Result<AccessToken, BearerError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let ttl = self.inner.cache_ttl;
        if !ttl.is_zero() {
            if let Some((at, answer)) = lock(&self.inner.introspected).get(&key) {
                if at.elapsed() < ttl {
                    return match answer {
                        Ok(t) if t.expires_at > unix_now() => Ok(t.clone()),
                        Ok(_) => Err(BearerError::InvalidToken("the token has expired".into())),
                        Err(e) => Err(BearerError::InvalidToken(e.clone())),
                    };
                }
            }
        }
        let endpoints = self.endpoints().await?;
        let url = &endpoints.introspection_endpoint;
        let unavailable = |e: String| BearerError::Unavailable(format!("calling {url}: {e}"));
        let mut res = client()
            .post(url)
            .basic_auth(client_id, client_secret)
            .send_form(&[("token", token)])
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !res.status().is_success() {
            return Err(unavailable(format!(
                "HTTP {} (are the resource server's client credentials right?)",
                res.status()
            )));
        }
        let answer: Introspection = res
            .json()
            .limit(64 * 1024)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let result = match answer {
            Introspection {
                active: true,
                sub: Some(sub),
                exp: Some(exp),
                token_type,
                client_id,
                scope,
                jti,
                cnf,
                aud,
            } if token_type.as_deref() != Some("refresh_token")
                && exp > unix_now()
                // A token for another resource (RFC 8707) is not for this API.
                && aud.as_ref().is_none_or(|a| names(a, &self.inner.audience)) =>
            {
                Ok(AccessToken {
                    subject: sub,
                    client_id: client_id.unwrap_or_default(),
                    scopes: scopes(&scope),
                    expires_at: exp,
                    jti,
                    jkt: cnf.and_then(|c| c.jkt),
                })
            }
            _ => Err("the token is expired, revoked or unknown".to_owned()),
        };
        if !ttl.is_zero() {
            let mut cache = lock(&self.inner.introspected);
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (at, _)| at.elapsed() < ttl);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(key, (Instant::now(), result.clone()));
        }
        result.map_err(BearerError::InvalidToken)
    }
}

fn server_of(req: &HttpRequest) -> Option<ResourceServer> {
    req.app_data::<web::Data<ResourceServer>>()
        .map(|d| d.get_ref().clone())
        .or_else(|| req.app_data::<ResourceServer>().cloned())
}

/// The error an extractor answers with, rendered in its server's realm.
#[derive(Debug)]
pub struct Refused {
    error: BearerError,
    realm: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl actix_web::ResponseError for Refused {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.error.status_code()
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        self.error.response(&self.realm)
    }
}

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, Refused>>>>;

fn extract(req: &HttpRequest, required: &'static [&'static str]) -> Extracted<AccessToken> {
    let req = req.clone();
    Box::pin(async move {
        let Some(rs) = server_of(&req) else {
            return Err(Refused {
                error: BearerError::Unavailable("no ResourceServer registered as app data".into()),
                realm: "api".into(),
            });
        };
        let refused = |error| Refused {
            error,
            realm: rs.realm().to_owned(),
        };
        let token = rs.authenticate(&req, None).await.map_err(refused)?;
        token.require(required).map_err(refused)?;
        Ok(token)
    })
}

impl FromRequest for AccessToken {
    type Error = Refused;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract(req, &[])
    }
}

impl<S: ScopeSet + 'static> FromRequest for Scoped<S> {
    type Error = Refused;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let fut = extract(req, S::SCOPES);
        Box::pin(async move { Ok(Scoped(fut.await?, PhantomData)) })
    }
}
