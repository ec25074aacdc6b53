//! Configuration: flags, then environment (`AUTHLEDGER_*`, handled by clap), then
//! `authledger.toml`, then defaults.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Default configuration file, looked up in the working directory.
pub const CONFIG_FILE: &str = "authledger.toml";

/// What `authledger.toml` may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Event store: `embedded` or `postgres`.
    pub store: Option<String>,
    /// PostgreSQL URL of the shared log (with `store = "postgres"`).
    pub database_url: Option<String>,
    /// Listen address.
    pub bind: Option<String>,
    /// Issuer URL.
    pub issuer: Option<String>,
    /// Seconds before an idle client actor stops.
    pub actor_idle_secs: Option<u64>,
    /// HTTP worker threads.
    pub workers: Option<usize>,
    /// Authorization code lifetime in seconds.
    pub code_ttl_secs: Option<u32>,
    /// Refresh token lifetime in seconds.
    pub refresh_token_ttl_secs: Option<u32>,
    /// Absolute lifetime of a refresh family in seconds.
    pub refresh_family_ttl_secs: Option<u32>,
    /// Grace window for retrying with the previous refresh token, in seconds (0: strict).
    pub refresh_grace_secs: Option<u32>,
    /// Lifetime of a browser session in seconds.
    pub session_ttl_secs: Option<u32>,
    /// Accept token requests by GET (weaker; for old clients).
    pub allow_get_token_requests: Option<bool>,
    /// See `serve --require-pushed-authorization-requests`.
    pub require_pushed_authorization_requests: Option<bool>,
    /// See `serve --dpop-nonce`.
    pub dpop_nonce: Option<bool>,
    /// See `serve --device-code-ttl-secs`.
    pub device_code_ttl_secs: Option<u32>,
    /// See `serve --device-poll-interval-secs`.
    pub device_poll_interval_secs: Option<u32>,
    /// PEM file of the private signing key.
    pub private_key_path: Option<PathBuf>,
    /// Default signing algorithm: RS256, ES256 or EdDSA.
    pub signing_alg: Option<String>,
    /// Seconds between checks that retire superseded keys.
    pub key_check_secs: Option<u64>,
    /// Scope the demo resource `/api/whoami` requires.
    pub whoami_scope: Option<String>,
    /// Token requests per second per client (0: no limit).
    pub rate_limit_token: Option<u32>,
    /// Introspection requests per second per client (0: no limit).
    pub rate_limit_introspect: Option<u32>,
    /// Page requests per minute per source address (0: no limit).
    pub rate_limit_pages: Option<u32>,
    /// Proxies (addresses or CIDR ranges) whose X-Forwarded-For and X-Forwarded-Proto count.
    pub trusted_proxies: Option<Vec<String>>,
    /// PEM certificate chain to serve HTTPS with.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub tls_key: Option<PathBuf>,
    /// Serve a plain http:// issuer that is not this machine.
    pub insecure_http: Option<bool>,
    /// Let anyone register a client at `POST /register`, without an initial access token.
    pub open_registration: Option<bool>,
    /// Grant types a self-registered client may ask for.
    pub registration_grant_types: Option<Vec<String>>,
    /// Scopes a self-registered client may ask for.
    pub registration_scopes: Option<Vec<String>>,
    /// Registrations per minute per source address (0: no limit).
    pub rate_limit_register: Option<u32>,
    /// Log as JSON lines.
    pub log_json: Option<bool>,
    /// Record metrics and serve `GET /metrics` (default true).
    pub metrics: Option<bool>,
    /// Serve `/metrics` on this address instead of the main listener.
    pub metrics_bind: Option<String>,
    /// See `serve --key-retire-leeway-secs`.
    pub key_retire_leeway_secs: Option<u64>,
    /// See `serve --verify-on-start`: `full` or `since-last`.
    pub verify_on_start: Option<String>,
}

impl FileConfig {
    /// Reads `path`, or `./authledger.toml` when it exists; nothing otherwise.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let path = match path {
            Some(p) => p.to_owned(),
            None => {
                let p = PathBuf::from(CONFIG_FILE);
                if !p.exists() {
                    return Ok(Self::default());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// The settings of a running server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Where the log is kept.
    pub store: crate::engine::StoreChoice,
    /// Listen address (port 0 picks a free port).
    pub bind: String,
    /// Issuer URL; `http://<bound address>` when absent.
    pub issuer: Option<String>,
    /// Idle time after which a client actor stops.
    pub actor_idle: std::time::Duration,
    /// HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Lifetimes and switches of the user grants.
    pub grants: GrantSettings,
    /// Where the signing keys come from.
    pub keys: crate::actors::keys::KeySettings,
    /// How often superseded keys are checked for retirement.
    pub key_check: std::time::Duration,
    /// Scope the demo resource `/api/whoami` requires.
    pub whoami_scope: Option<String>,
    /// Serve even when the log's hash chain does not verify.
    pub allow_unverified: bool,
    /// Walk the whole chain at start (else only what follows the last verified event).
    pub verify_on_start_full: bool,
    /// Rate limits and trusted proxies.
    pub limits: crate::http::limits::LimitSettings,
    /// The server's clock (movable with `--test-clock`).
    pub clock: crate::clock::Clock,
    /// HTTPS of its own: the certificate chain and key.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Serve a plain `http://` issuer on a host other than this machine (behind a proxy that
    /// terminates TLS).
    pub insecure_http: bool,
    /// What `POST /register` lets a client register.
    pub registration: crate::http::register::RegistrationPolicy,
    /// Record metrics and serve them.
    pub metrics: bool,
    /// Serve `/metrics` on this address alone (not on `bind`).
    pub metrics_bind: Option<String>,
}

/// Lifetimes and switches of the grants made on a user's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantSettings {
    /// Authorization code lifetime (default 60 s).
    pub code_ttl_secs: u32,
    /// Refresh token lifetime (default 30 days).
    pub refresh_token_ttl_secs: u32,
    /// A refresh family's absolute lifetime (default 90 days).
    pub refresh_family_ttl_secs: u32,
    /// Grace window for a retried refresh (default 0: strict).
    pub refresh_grace_secs: u32,
    /// Browser session lifetime (default 8 hours).
    pub session_ttl_secs: u32,
    /// Accept token requests by GET (Claroline's clients send them; off by default).
    pub allow_get_token_requests: bool,
    /// Every client must push its authorization requests (RFC 9126 §5; off by default).
    pub require_pushed_authorization_requests: bool,
    /// DPoP proofs must carry a nonce of this server (RFC 9449 §8; off by default).
    pub dpop_nonce: bool,
    /// Device code lifetime (RFC 8628; default 10 minutes).
    pub device_code_ttl_secs: u32,
    /// The least polling interval of the device flow (default 5 s).
    pub device_poll_interval_secs: u32,
}

impl Default for GrantSettings {
    fn default() -> Self {
        Self {
            code_ttl_secs: 60,
            refresh_token_ttl_secs: 30 * 86_400,
            refresh_family_ttl_secs: 90 * 86_400,
            refresh_grace_secs: 0,
            session_ttl_secs: 8 * 3600,
            allow_get_token_requests: false,
            require_pushed_authorization_requests: false,
            dpop_nonce: false,
            device_code_ttl_secs: 600,
            device_poll_interval_secs: 5,
        }
    }
}
