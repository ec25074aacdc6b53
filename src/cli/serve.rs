//! `authledger serve`.

use crate::actors::keys::KeySettings;
use crate::app::Application;
use crate::config::{FileConfig, GrantSettings, ServeConfig, DEFAULT_BIND};
use crate::engine::StoreChoice;
use clap::Args;
use domain::values::{GrantType, Scope, SigningAlgorithm};
use std::path::PathBuf;
use std::time::Duration;

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "AUTHLEDGER_BIND")]
    pub bind: Option<String>,
    /// Issuer URL, as clients reach the server (default http://<bind address>).
    #[arg(long, env = "AUTHLEDGER_ISSUER")]
    pub issuer: Option<String>,
    /// Seconds before an idle client actor stops.
    #[arg(long, env = "AUTHLEDGER_ACTOR_IDLE_SECS")]
    pub actor_idle_secs: Option<u64>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "AUTHLEDGER_WORKERS")]
    pub workers: Option<usize>,
    /// Authorization code lifetime in seconds (default 60).
    #[arg(long, env = "AUTHLEDGER_CODE_TTL_SECS")]
    pub code_ttl_secs: Option<u32>,
    /// Refresh token lifetime in seconds (default 30 days).
    #[arg(long, env = "AUTHLEDGER_REFRESH_TOKEN_TTL_SECS")]
    pub refresh_token_ttl_secs: Option<u32>,
    /// Absolute lifetime of a refresh family in seconds, however often it rotates
    /// (default 90 days).
    #[arg(long, env = "AUTHLEDGER_REFRESH_FAMILY_TTL_SECS")]
    pub refresh_family_ttl_secs: Option<u32>,
    /// Seconds after a rotation during which the previous refresh token may be retried while
    /// its successor was never used (default 0: any reuse revokes the family).
    #[arg(long, env = "AUTHLEDGER_REFRESH_GRACE_SECS")]
    pub refresh_grace_secs: Option<u32>,
    /// Browser session lifetime in seconds (default 8 hours).
    #[arg(long, env = "AUTHLEDGER_SESSION_TTL_SECS")]
    pub session_ttl_secs: Option<u32>,
    /// Accept token requests by GET with query parameters, as some old clients send them.
    /// Weaker: credentials end up in URLs and logs of proxies. Off by default.
    #[arg(long, env = "AUTHLEDGER_ALLOW_GET_TOKEN_REQUESTS")]
    pub allow_get_token_requests: bool,
    /// Require every client to push its authorization requests to /par first (RFC 9126);
    /// a client can also be made to by `client create --require-par`.
    #[arg(long, env = "AUTHLEDGER_REQUIRE_PUSHED_AUTHORIZATION_REQUESTS")]
    pub require_pushed_authorization_requests: bool,
    /// Require DPoP proofs to carry a nonce from this server (RFC 9449 §8): a proof without
    /// a current one is answered use_dpop_nonce with a fresh one in DPoP-Nonce.
    #[arg(long, env = "AUTHLEDGER_DPOP_NONCE")]
    pub dpop_nonce: bool,
    /// Device code lifetime in seconds (RFC 8628; default 600).
    #[arg(long, env = "AUTHLEDGER_DEVICE_CODE_TTL_SECS")]
    pub device_code_ttl_secs: Option<u32>,
    /// The device flow's polling interval in seconds (default 5); slow_down adds 5.
    #[arg(long, env = "AUTHLEDGER_DEVICE_POLL_INTERVAL_SECS")]
    pub device_poll_interval_secs: Option<u32>,
    /// Sign with the private key in this PEM file (PKCS#8, encrypted PKCS#8, PKCS#1 RSA or
    /// SEC1 EC) instead of a generated key for its algorithm; its public half is recorded in
    /// the log and stays in the JWKS after the file is replaced, until its tokens expire.
    #[arg(long, env = "AUTHLEDGER_PRIVATE_KEY_PATH")]
    pub private_key_path: Option<PathBuf>,
    /// Passphrase of an encrypted PKCS#8 private key file.
    #[arg(
        long,
        env = "AUTHLEDGER_PRIVATE_KEY_PASSPHRASE",
        hide_env_values = true
    )]
    pub private_key_passphrase: Option<String>,
    /// Algorithm of clients that name none: RS256, ES256 or EdDSA (default: the PEM file's,
    /// else ES256).
    #[arg(long, env = "AUTHLEDGER_SIGNING_ALG", value_parser = ["RS256", "ES256", "EdDSA"])]
    pub signing_alg: Option<String>,
    /// Seconds between checks that retire superseded signing keys (default 60).
    #[arg(long, env = "AUTHLEDGER_KEY_CHECK_SECS")]
    pub key_check_secs: Option<u64>,
    /// Seconds a superseded key stays published after its last token expired, for resource
    /// servers whose clocks run behind (default 60).
    #[arg(long, env = "AUTHLEDGER_KEY_RETIRE_LEEWAY_SECS")]
    pub key_retire_leeway_secs: Option<u64>,
    /// Protected scope the demo resource `/api/whoami` requires (default: none, any valid
    /// token).
    #[arg(long, env = "AUTHLEDGER_WHOAMI_SCOPE")]
    pub whoami_scope: Option<String>,
    /// Token requests per second per client, with bursts of twice as many (default 1000;
    /// 0 turns the limit off). Past it, /token answers 429 with Retry-After.
    #[arg(long, env = "AUTHLEDGER_RATE_LIMIT_TOKEN")]
    pub rate_limit_token: Option<u32>,
    /// Introspection requests per second per client, bursts of twice as many (default 5000;
    /// 0: off).
    #[arg(long, env = "AUTHLEDGER_RATE_LIMIT_INTROSPECT")]
    pub rate_limit_introspect: Option<u32>,
    /// Page requests (authorize, sign-in, consent, account, audit viewer) per minute per
    /// source address, bursts of half as many (default 600; 0: off).
    #[arg(long, env = "AUTHLEDGER_RATE_LIMIT_PAGES")]
    pub rate_limit_pages: Option<u32>,
    /// A proxy (address or CIDR range, repeatable) whose X-Forwarded-For and
    /// X-Forwarded-Proto are believed: rate limits, sign-in throttling and audit metadata
    /// then use the client address it forwarded for. Without it those headers are ignored.
    #[arg(
        long = "trusted-proxy",
        env = "AUTHLEDGER_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key. SIGHUP
    /// reads both files again without dropping connections.
    #[arg(long, env = "AUTHLEDGER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "AUTHLEDGER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow a plain http:// issuer whose host is not this machine, for a server behind a
    /// proxy that terminates TLS (tokens and passwords would otherwise cross the network in
    /// clear, so the start refuses it).
    #[arg(long, env = "AUTHLEDGER_INSECURE_HTTP")]
    pub insecure_http: bool,
    /// Let anyone register a client at POST /register (RFC 7591) without an initial access
    /// token (`authledger registration-token create`). Off by default.
    #[arg(long, env = "AUTHLEDGER_OPEN_REGISTRATION")]
    pub open_registration: bool,
    /// A grant type a self-registered client may ask for (repeatable; default
    /// authorization_code and refresh_token).
    #[arg(
        long = "registration-grant-type",
        env = "AUTHLEDGER_REGISTRATION_GRANT_TYPES",
        value_delimiter = ','
    )]
    pub registration_grant_types: Vec<String>,
    /// A scope a self-registered client may ask for (repeatable; default openid, profile,
    /// email and offline_access).
    #[arg(
        long = "registration-scope",
        env = "AUTHLEDGER_REGISTRATION_SCOPES",
        value_delimiter = ','
    )]
    pub registration_scopes: Vec<String>,
    /// Registrations per minute per source address at POST /register, bursts of half as many
    /// (default 20; 0: off).
    #[arg(long, env = "AUTHLEDGER_RATE_LIMIT_REGISTER")]
    pub rate_limit_register: Option<u32>,
    /// Log as JSON lines (one object per event, for a log collector).
    #[arg(long, env = "AUTHLEDGER_LOG_JSON")]
    pub log_json: bool,
    /// Record Prometheus metrics and serve them at GET /metrics (default true; `false`
    /// records nothing and answers 404 there).
    #[arg(long, env = "AUTHLEDGER_METRICS", action = clap::ArgAction::Set)]
    pub metrics: Option<bool>,
    /// Serve /metrics on this address (e.g. 127.0.0.1:9464) instead of the main listener,
    /// so that it need not be reachable where the OAuth endpoints are.
    #[arg(long, env = "AUTHLEDGER_METRICS_BIND")]
    pub metrics_bind: Option<String>,
    /// Serve even if the log's hash chain is broken (by default the start stops and says
    /// where). Use it to get at a damaged log's data, never as a standing setting.
    #[arg(long)]
    pub allow_unverified: bool,
    /// Tests only: lets an admin move the server's clock forward (`POST /admin/api/clock`).
    #[arg(long, hide = true)]
    pub test_clock: bool,
    /// How much of the hash chain the start walks before serving: `since-last` (from the
    /// last event a walk found intact, so the start costs what was written since, not the
    /// length of the log; the whole chain is then walked in the background and the outcome
    /// recorded as `ChainVerified` or `ChainBroken`) or `full` (every event before serving:
    /// any changed byte stops the start).
    /// (default since-last)
    #[arg(long, env = "AUTHLEDGER_VERIFY_ON_START", value_parser = ["full", "since-last"])]
    pub verify_on_start: Option<String>,
}

/// A trusted proxy: an address (a /32 or /128) or a CIDR range.
fn parse_proxy(text: &str) -> anyhow::Result<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            anyhow::anyhow!(
                "--trusted-proxy {text:?} is neither an IP address nor a CIDR range \
                 (e.g. 10.0.0.0/8 or 192.0.2.7)"
            )
        })
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(
    args: ServeArgs,
    data_dir: PathBuf,
    store: StoreChoice,
    file: FileConfig,
) -> anyhow::Result<()> {
    crate::telemetry::init(args.log_json || file.log_json.unwrap_or(false), "info");
    let config = ServeConfig {
        data_dir,
        store,
        bind: args
            .bind
            .or(file.bind)
            .unwrap_or_else(|| DEFAULT_BIND.to_owned()),
        issuer: args.issuer.or(file.issuer),
        actor_idle: Duration::from_secs(
            args.actor_idle_secs.or(file.actor_idle_secs).unwrap_or(300),
        ),
        workers: args.workers.or(file.workers),
        grants: {
            let d = GrantSettings::default();
            GrantSettings {
                code_ttl_secs: args
                    .code_ttl_secs
                    .or(file.code_ttl_secs)
                    .unwrap_or(d.code_ttl_secs),
                refresh_token_ttl_secs: args
                    .refresh_token_ttl_secs
                    .or(file.refresh_token_ttl_secs)
                    .unwrap_or(d.refresh_token_ttl_secs),
                refresh_family_ttl_secs: args
                    .refresh_family_ttl_secs
                    .or(file.refresh_family_ttl_secs)
                    .unwrap_or(d.refresh_family_ttl_secs),
                refresh_grace_secs: args
                    .refresh_grace_secs
                    .or(file.refresh_grace_secs)
                    .unwrap_or(d.refresh_grace_secs),
                session_ttl_secs: args
                    .session_ttl_secs
                    .or(file.session_ttl_secs)
                    .unwrap_or(d.session_ttl_secs),
                allow_get_token_requests: args.allow_get_token_requests
                    || file.allow_get_token_requests.unwrap_or(false),
                require_pushed_authorization_requests: args.require_pushed_authorization_requests
                    || file.require_pushed_authorization_requests.unwrap_or(false),
                dpop_nonce: args.dpop_nonce || file.dpop_nonce.unwrap_or(false),
                device_code_ttl_secs: args
                    .device_code_ttl_secs
                    .or(file.device_code_ttl_secs)
                    .unwrap_or(d.device_code_ttl_secs),
                device_poll_interval_secs: args
                    .device_poll_interval_secs
                    .or(file.device_poll_interval_secs)
                    .unwrap_or(d.device_poll_interval_secs),
            }
        },
        keys: KeySettings {
            encryption_key: std::env::var(crate::keys::kek::KEK_ENV).ok(),
            private_key_path: args.private_key_path.or(file.private_key_path),
            private_key_passphrase: args.private_key_passphrase,
            default_algorithm: args
                .signing_alg
                .or(file.signing_alg)
                .map(|a| SigningAlgorithm::parse(&a))
                .transpose()?,
            retire_leeway_secs: args.key_retire_leeway_secs.or(file.key_retire_leeway_secs),
        },
        key_check: Duration::from_secs(
            args.key_check_secs
                .or(file.key_check_secs)
                .unwrap_or(60)
                .max(1),
        ),
        whoami_scope: args.whoami_scope.or(file.whoami_scope),
        allow_unverified: args.allow_unverified,
        verify_on_start_full: match args.verify_on_start.or(file.verify_on_start).as_deref() {
            None | Some("since-last") => false,
            Some("full") => true,
            Some(other) => anyhow::bail!(
                "verify_on_start is {other:?} in the configuration file; use full or since-last"
            ),
        },
        limits: {
            let d = crate::http::limits::LimitSettings::default();
            let proxies = if args.trusted_proxies.is_empty() {
                file.trusted_proxies.unwrap_or_default()
            } else {
                args.trusted_proxies
            };
            crate::http::limits::LimitSettings {
                token_per_sec: args
                    .rate_limit_token
                    .or(file.rate_limit_token)
                    .unwrap_or(d.token_per_sec),
                introspect_per_sec: args
                    .rate_limit_introspect
                    .or(file.rate_limit_introspect)
                    .unwrap_or(d.introspect_per_sec),
                pages_per_min: args
                    .rate_limit_pages
                    .or(file.rate_limit_pages)
                    .unwrap_or(d.pages_per_min),
                register_per_min: args
                    .rate_limit_register
                    .or(file.rate_limit_register)
                    .unwrap_or(d.register_per_min),
                trusted_proxies: proxies
                    .iter()
                    .map(|p| parse_proxy(p))
                    .collect::<anyhow::Result<_>>()?,
            }
        },
        tls: match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert, key }),
            (None, None) => None,
            _ => anyhow::bail!(
                "HTTPS needs both a certificate and its key: give tls_cert and tls_key together"
            ),
        },
        insecure_http: args.insecure_http || file.insecure_http.unwrap_or(false),
        registration: {
            use crate::http::register::RegistrationPolicy;
            let d = RegistrationPolicy::default();
            let grants = if args.registration_grant_types.is_empty() {
                file.registration_grant_types.unwrap_or_default()
            } else {
                args.registration_grant_types
            };
            let scopes = if args.registration_scopes.is_empty() {
                file.registration_scopes.unwrap_or_default()
            } else {
                args.registration_scopes
            };
            RegistrationPolicy {
                open: args.open_registration || file.open_registration.unwrap_or(false),
                grant_types: if grants.is_empty() {
                    d.grant_types
                } else {
                    grants
                        .iter()
                        .map(|g| GrantType::parse(g).map_err(|e| anyhow::anyhow!(e.0)))
                        .collect::<anyhow::Result<_>>()?
                },
                scopes: if scopes.is_empty() {
                    d.scopes
                } else {
                    scopes
                        .iter()
                        .map(|s| Scope::parse(s).map_err(|e| anyhow::anyhow!(e.0)))
                        .collect::<anyhow::Result<_>>()?
                },
            }
        },
        metrics: args.metrics.or(file.metrics).unwrap_or(true),
        metrics_bind: args.metrics_bind.or(file.metrics_bind),
        clock: if args.test_clock {
            tracing::warn!(
                "serving with a clock that admins can move (--test-clock): for tests only"
            );
            crate::clock::Clock::movable()
        } else {
            crate::clock::Clock::system()
        },
    };
    actix_rt::System::new().block_on(async move {
        let app = Application::build(config).await?;
        app.run_until_stopped().await
    })
}
