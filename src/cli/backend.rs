//! Where client and audit commands are carried out: through the admin API of a running server,
//! or directly on the store when none runs. Both give the same answers.

use super::init::{AdminCredential, SERVER_FILE};
use crate::engine::{Engine, EngineError};
use crate::service::{self, AuditOutput, AuditParams, ChangeClient, ClientOutput, CreateClient};
use crate::store::{EventStore, StoreError};
use anyhow::{anyhow, Context};
use domain::{Cause, Metadata};
use serde::de::DeserializeOwned;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// The address of a server running on this data directory, if one answers.
pub fn running_server(data_dir: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(data_dir.join(SERVER_FILE)).ok()?;
    let info: serde_json::Value = serde_json::from_str(&text).ok()?;
    let addr: SocketAddr = info.get("addr")?.as_str()?.parse().ok()?;
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    Some(addr)
}

/// Turns a failure to open the store into advice.
pub fn explain_open_error(e: EngineError, data_dir: &Path) -> anyhow::Error {
    match e {
        EngineError::Store(StoreError::Locked) => anyhow!(
            "{} is in use by another process; if a server runs there, stop it or let this \
             command go through its admin API (it does so when {} names a live server)",
            data_dir.display(),
            SERVER_FILE
        ),
        other => anyhow!("opening {}: {other}", data_dir.display()),
    }
}

/// The admin API of a running server.
pub struct Remote {
    base: String,
    token: String,
    agent: ureq::Agent,
    /// For calls whose work grows with the log (verify, compaction, building a view).
    slow: ureq::Agent,
}

impl Remote {
    /// Connects with the data directory's admin credential.
    pub fn connect(addr: SocketAddr, data_dir: &Path) -> anyhow::Result<Self> {
        let cred = AdminCredential::load(data_dir)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let base = format!("http://{addr}");
        let mut res = agent
            .post(&format!("{base}/token"))
            .send_form([
                ("grant_type", "client_credentials"),
                ("scope", "admin"),
                ("client_id", cred.client_id.as_str()),
                ("client_secret", cred.client_secret.as_str()),
            ])
            .with_context(|| format!("reaching the server at {base}"))?;
        let body: serde_json::Value = res.body_mut().read_json()?;
        let token = body
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| anyhow!("the server refused the admin credential: {body}"))?
            .to_owned();
        let slow: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(3600)))
            .build()
            .into();
        Ok(Self {
            base,
            token,
            agent,
            slow,
        })
    }

    fn answer<T: DeserializeOwned>(
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<T> {
        let mut res = res.context("calling the admin API")?;
        let status = res.status();
        let text = res.body_mut().read_to_string()?;
        if !status.is_success() {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let d = v
                .get("error_description")
                .and_then(|d| d.as_str())
                .unwrap_or(text.as_str());
            return Err(anyhow!("{d} (HTTP {})", status.as_u16()));
        }
        let text = if text.is_empty() {
            "null".to_owned()
        } else {
            text
        };
        Ok(serde_json::from_str(&text)?)
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// The issuer a checkpoint signed with the server stopped names (no issuer is configured then).
pub const OFFLINE_ISSUER: &str = "urn:authledger:offline";

/// Where a command runs.
pub enum Backend {
    /// A running server.
    Remote(Remote),
    /// The store itself.
    Local(Engine),
}

impl Backend {
    /// Opens the store; when a server holds it, goes through that server's admin API. (Only a
    /// locked store sends the admin credential anywhere: a stale `server.json` after a crash
    /// must not hand it to whatever listens on that port now.)
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        if !data_dir.join(super::init::ADMIN_FILE).exists() {
            return Err(anyhow!(
                "{} is not initialised; run `authledger init` or `authledger serve` first",
                data_dir.display()
            ));
        }
        match Engine::open_with(data_dir, Duration::from_secs(5), &super::store()) {
            Ok(engine) => Ok(Backend::Local(engine)),
            Err(EngineError::Store(StoreError::Locked)) => match running_server(data_dir) {
                Some(addr) => Ok(Backend::Remote(Remote::connect(addr, data_dir)?)),
                None => Err(explain_open_error(
                    EngineError::Store(StoreError::Locked),
                    data_dir,
                )),
            },
            Err(e) => Err(explain_open_error(e, data_dir)),
        }
    }

    fn cli_metadata() -> Metadata {
        let who = std::env::var("USER").unwrap_or_else(|_| "cli".into());
        Metadata {
            caused_by: Cause::Admin(format!("cli:{who}")),
            ..Metadata::system()
        }
    }

    /// Registers a client.
    pub async fn create_client(&self, req: CreateClient) -> anyhow::Result<ClientOutput> {
        self.create_client_correlated(req, None).await
    }

    /// Registers a client, as one of several tied together by `correlation` when given (an
    /// import).
    pub async fn create_client_correlated(
        &self,
        req: CreateClient,
        correlation: Option<&str>,
    ) -> anyhow::Result<ClientOutput> {
        match self {
            Backend::Remote(r) => {
                let mut post = r
                    .agent
                    .post(&format!("{}/admin/api/clients", r.base))
                    .header("Authorization", &r.auth());
                if let Some(c) = correlation {
                    post = post.header("X-Correlation-Id", c);
                }
                Remote::answer(post.send_json(&req))
            }
            Backend::Local(e) => {
                let metadata = Metadata {
                    correlation_id: correlation.map(str::to_owned),
                    ..Self::cli_metadata()
                };
                Ok(service::create_client(e, req, metadata).await?)
            }
        }
    }

    /// Issues an initial access token for dynamic client registration.
    pub async fn issue_initial_access_token(
        &self,
        req: service::IssueInitialAccessToken,
    ) -> anyhow::Result<service::InitialAccessTokenOutput> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.agent
                    .post(&format!("{}/admin/api/registration-tokens", r.base))
                    .header("Authorization", &r.auth())
                    .send_json(&req),
            ),
            Backend::Local(e) => {
                Ok(service::issue_initial_access_token(e, req, Self::cli_metadata()).await?)
            }
        }
    }

    /// Registers a user.
    pub async fn create_user(
        &self,
        req: service::CreateUser,
    ) -> anyhow::Result<service::UserOutput> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.agent
                    .post(&format!("{}/admin/api/users", r.base))
                    .header("Authorization", &r.auth())
                    .send_json(&req),
            ),
            Backend::Local(e) => Ok(service::create_user(e, req, Self::cli_metadata()).await?),
        }
    }

    /// Changes a user's profile claims.
    pub async fn update_user_profile(
        &self,
        username: &str,
        changes: domain::user::ProfileChanges,
    ) -> anyhow::Result<service::UserOutput> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.agent
                    .patch(&format!("{}/admin/api/users/{}", r.base, encode(username)))
                    .header("Authorization", &r.auth())
                    .send_json(&changes),
            ),
            Backend::Local(e) => {
                Ok(
                    service::update_user_profile(e, username, changes, Self::cli_metadata())
                        .await?,
                )
            }
        }
    }

    /// Locks or unlocks a user, ends its sessions, or sets its password.
    pub async fn user_access(
        &self,
        username: &str,
        access: service::UserAccess,
    ) -> anyhow::Result<service::UserOutput> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.agent
                    .post(&format!(
                        "{}/admin/api/users/{}/access",
                        r.base,
                        encode(username)
                    ))
                    .header("Authorization", &r.auth())
                    .send_json(&access),
            ),
            Backend::Local(e) => {
                Ok(service::user_access(e, username, access, Self::cli_metadata()).await?)
            }
        }
    }

    /// One user, by username or id.
    pub fn show_user(&self, username: &str) -> anyhow::Result<service::UserOutput> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.agent
                    .get(&format!("{}/admin/api/users/{}", r.base, encode(username)))
                    .header("Authorization", &r.auth())
                    .call(),
            ),
            Backend::Local(e) => Ok(service::show_user(e, username)?),
        }
    }

    /// Every signing key.
    pub fn list_keys(&self) -> anyhow::Result<Vec<service::KeyOutput>> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.agent
                    .get(&format!("{}/admin/api/keys", r.base))
                    .header("Authorization", &r.auth())
                    .call(),
            ),
            Backend::Local(e) => Ok(service::list_keys(e)?),
        }
    }

    /// Rotates signing keys: through the server's key actor, or a local one over the store
    /// (which needs the key-encryption key, from the environment or the data directory).
    pub async fn rotate_keys(
        &self,
        req: service::RotateKeys,
    ) -> anyhow::Result<Vec<service::KeyOutput>> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.agent
                    .post(&format!("{}/admin/api/keys/rotate", r.base))
                    .header("Authorization", &r.auth())
                    .send_json(&req),
            ),
            Backend::Local(e) => {
                let settings = super::init::key_settings_from_env();
                let (_, actor) = super::init::start_keys(e, &settings, None).await?;
                Ok(service::rotate_keys(e, &actor, req, Self::cli_metadata()).await?)
            }
        }
    }

    /// Every user.
    pub fn list_users(&self) -> anyhow::Result<Vec<service::UserOutput>> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.agent
                    .get(&format!("{}/admin/api/users", r.base))
                    .header("Authorization", &r.auth())
                    .call(),
            ),
            Backend::Local(e) => Ok(service::list_users(e)),
        }
    }

    /// Changes a client.
    pub async fn update_client(&self, id: &str, req: ChangeClient) -> anyhow::Result<ClientOutput> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.agent
                    .patch(&format!("{}/admin/api/clients/{}", r.base, encode(id)))
                    .header("Authorization", &r.auth())
                    .send_json(&req),
            ),
            Backend::Local(e) => {
                Ok(service::update_client(e, id, req, Self::cli_metadata()).await?)
            }
        }
    }

    /// Rotates a client's secret.
    pub async fn rotate_secret(&self, id: &str) -> anyhow::Result<ClientOutput> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.agent
                    .post(&format!(
                        "{}/admin/api/clients/{}/rotate-secret",
                        r.base,
                        encode(id)
                    ))
                    .header("Authorization", &r.auth())
                    .send_empty(),
            ),
            Backend::Local(e) => Ok(service::rotate_secret(e, id, Self::cli_metadata()).await?),
        }
    }

    /// Deletes a client.
    pub async fn delete_client(&self, id: &str) -> anyhow::Result<()> {
        match self {
            Backend::Remote(r) => Remote::answer::<serde_json::Value>(
                r.agent
                    .delete(&format!("{}/admin/api/clients/{}", r.base, encode(id)))
                    .header("Authorization", &r.auth())
                    .call(),
            )
            .map(|_| ()),
            Backend::Local(e) => Ok(service::delete_client(e, id, Self::cli_metadata()).await?),
        }
    }

    /// One client.
    pub fn show_client(&self, id: &str) -> anyhow::Result<ClientOutput> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.agent
                    .get(&format!("{}/admin/api/clients/{}", r.base, encode(id)))
                    .header("Authorization", &r.auth())
                    .call(),
            ),
            Backend::Local(e) => Ok(service::show_client(e, id)?),
        }
    }

    /// A client as it was at `as_of`, with the tokens active then.
    pub fn client_as_of(
        &self,
        id: &str,
        as_of: &str,
        quiet: bool,
    ) -> anyhow::Result<service::ClientAsOf> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.slow
                    .get(&format!(
                        "{}/admin/api/clients/{}?as_of={}",
                        r.base,
                        encode(id),
                        encode(as_of)
                    ))
                    .header("Authorization", &r.auth())
                    .call(),
            ),
            Backend::Local(e) => {
                let bar = super::progress::events(e.store.head_position(), quiet);
                bar.set_message("view");
                let out = service::client_as_of(e, id, as_of, |n| bar.set_position(n));
                bar.finish_and_clear();
                Ok(out?)
            }
        }
    }

    /// Every client.
    pub fn list_clients(&self) -> anyhow::Result<Vec<ClientOutput>> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.agent
                    .get(&format!("{}/admin/api/clients", r.base))
                    .header("Authorization", &r.auth())
                    .call(),
            ),
            Backend::Local(e) => Ok(service::list_clients(e)),
        }
    }

    /// Walks the log's hash chain, with a progress bar unless `quiet`.
    pub fn verify(&self, quiet: bool) -> anyhow::Result<crate::store::verify::Verification> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.slow
                    .get(&format!("{}/admin/api/audit/verify", r.base))
                    .header("Authorization", &r.auth())
                    .call(),
            ),
            Backend::Local(e) => {
                let bar = super::progress::events(e.store.head_position(), quiet);
                bar.set_message("verify");
                let outcome = e.store.verify(|n| bar.set_position(n))?;
                bar.finish_and_clear();
                Ok(outcome)
            }
        }
    }

    /// A signed checkpoint of the log's head (a JWS).
    pub async fn checkpoint(&self) -> anyhow::Result<String> {
        match self {
            Backend::Remote(r) => {
                let v: serde_json::Value = Remote::answer(
                    r.slow
                        .post(&format!("{}/admin/api/audit/checkpoint", r.base))
                        .header("Authorization", &r.auth())
                        .send_empty(),
                )?;
                v["checkpoint"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("the server answered no checkpoint"))
            }
            Backend::Local(e) => {
                let (keys, _) =
                    super::init::start_keys(e, &super::init::key_settings_from_env(), None).await?;
                let now = e.clock.unix_now();
                Ok(crate::signed_checkpoint::sign(
                    e,
                    &keys,
                    OFFLINE_ISSUER,
                    now,
                )?)
            }
        }
    }

    /// Checks the log against a checkpoint; `jwks` defaults to the server's own keys.
    pub async fn verify_checkpoint(
        &self,
        jws: &str,
        jwks: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.slow
                    .post(&format!("{}/admin/api/audit/checkpoint/verify", r.base))
                    .header("Authorization", &r.auth())
                    .send_json(serde_json::json!({ "checkpoint": jws, "jwks": jwks })),
            ),
            Backend::Local(e) => {
                let jwks = match jwks {
                    Some(j) => j.to_string(),
                    None => {
                        let (keys, _) =
                            super::init::start_keys(e, &super::init::key_settings_from_env(), None)
                                .await?;
                        keys.jwks().to_string()
                    }
                };
                Ok(crate::http::admin::checkpoint_report(
                    crate::signed_checkpoint::check(e, jws, &jwks),
                ))
            }
        }
    }

    /// Compacts history of `class` that stopped mattering more than `age` seconds ago.
    pub fn compact(
        &self,
        class: crate::retention::Class,
        age: i64,
        batch: usize,
        quiet: bool,
    ) -> anyhow::Result<crate::retention::CompactionReport> {
        match self {
            Backend::Remote(r) => Remote::answer(
                r.slow
                    .post(&format!("{}/admin/api/compact", r.base))
                    .header("Authorization", &r.auth())
                    .send_json(serde_json::json!({
                        "class": class.as_str(),
                        "older_than_secs": age,
                        "batch": batch,
                    })),
            ),
            Backend::Local(e) => {
                let cutoff = e.clock.unix_now().saturating_sub(age);
                let bar = super::progress::spinner(quiet);
                let metadata = Metadata {
                    caused_by: Cause::Admin("cli".into()),
                    ..Metadata::system()
                };
                let report = crate::retention::compact(e, class, cutoff, batch, &metadata, |n| {
                    bar.set_message(format!("{n} events compacted"))
                })?;
                bar.finish_and_clear();
                Ok(report)
            }
        }
    }

    /// One page of the audit trail.
    pub fn audit(&self, p: &AuditParams) -> anyhow::Result<AuditOutput> {
        match self {
            Backend::Remote(r) => {
                let mut q = form_urlencoded::Serializer::new(String::new());
                audit_pairs(&mut q, p);
                let agent = if p.as_of.is_some() { &r.slow } else { &r.agent };
                Remote::answer(
                    agent
                        .get(&format!("{}/admin/api/audit?{}", r.base, q.finish()))
                        .header("Authorization", &r.auth())
                        .call(),
                )
            }
            Backend::Local(e) => Ok(service::audit_query(e, p)?),
        }
    }
}

/// Writes audit parameters as query parameters.
fn audit_pairs(q: &mut form_urlencoded::Serializer<'_, String>, p: &AuditParams) {
    let pairs = [
        ("client", p.client.clone()),
        ("subject", p.subject.clone()),
        ("request_id", p.request_id.clone()),
        ("correlation_id", p.correlation_id.clone()),
        ("since", p.since.clone()),
        ("until", p.until.clone()),
        ("after", p.after.map(|a| a.to_string())),
        ("before", p.before.map(|a| a.to_string())),
        ("order", p.order.clone()),
        ("limit", p.limit.map(|l| l.to_string())),
        ("as_of", p.as_of.clone()),
    ];
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, &v);
        }
    }
    for t in &p.types {
        q.append_pair("type", t);
    }
}

impl Remote {
    /// Follows the server's event stream from `from` on, handing each event to `each`, until
    /// the server closes it (it stops or restarts); the error then names the position to
    /// resume from with `--from`.
    pub fn follow(
        &self,
        filter: &AuditParams,
        from: u64,
        mut each: impl FnMut(domain::RecordedEvent) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        use std::io::BufRead;
        // The stream is long-lived: no overall timeout, only one for connecting.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut q = form_urlencoded::Serializer::new(String::new());
        audit_pairs(&mut q, filter);
        let query = q.finish();
        let mut next = from;
        let mut res = agent
            .get(&format!(
                "{}/admin/api/events/stream?from={next}&{query}",
                self.base
            ))
            .header("Authorization", &self.auth())
            .header("Accept", "text/event-stream")
            .call()
            .context("connecting to the event stream")?;
        if !res.status().is_success() {
            let text = res.body_mut().read_to_string().unwrap_or_default();
            return Err(anyhow!(
                "the event stream was refused (HTTP {}): {text}",
                res.status().as_u16()
            ));
        }
        let reader = std::io::BufReader::new(res.body_mut().as_reader());
        let mut data = String::new();
        for line in reader.lines() {
            let line = line.context("reading the event stream")?;
            if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            } else if line.is_empty() && !data.is_empty() {
                let e: domain::RecordedEvent = serde_json::from_str(&data)
                    .context("the event stream sent an event this version cannot read")?;
                next = e.position + 1;
                each(e)?;
                data.clear();
            }
        }
        Err(anyhow!(
            "the server closed the event stream; resume with --from {next}"
        ))
    }
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
