//! `authledger init`: the signing key and the admin client of a data directory.

use crate::actors::keys::{open_keys, resolve_kek, KeySettings};
use crate::actors::{ExecuteKeyRequest, KeyActor, KeyRequest};
use crate::engine::Engine;
use crate::http::admin::ADMIN_SCOPE;
use crate::keys::Keyring;
use crate::service::{self, CreateClient};
use actix::Actor as _;
use anyhow::Context;
use clap::Args;
use domain::Metadata;
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// File holding the admin credential (0600).
pub const ADMIN_FILE: &str = "admin.json";
/// File a running server writes with its pid and address.
pub const SERVER_FILE: &str = "server.json";
/// Client id of the admin client.
pub const ADMIN_CLIENT_ID: &str = "authledger-admin";

/// Options of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Print the credential as JSON.
    #[arg(long, value_enum)]
    pub format: Option<super::Format>,
}

/// The admin client's credential, as stored in `admin.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminCredential {
    /// The admin client's id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
}

impl AdminCredential {
    /// Reads the credential of a data directory.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(ADMIN_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}; run `authledger init` first", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// Opens the signing keys of a data directory and starts their actor; on a fresh directory
/// (or one from before keys were events) it records the first key of every algorithm.
/// `retire_every` starts the periodic retirement of superseded keys (servers only).
pub async fn start_keys(
    engine: &Engine,
    settings: &KeySettings,
    retire_every: Option<Duration>,
) -> anyhow::Result<(Arc<Keyring>, actix::Addr<KeyActor>)> {
    let kek = std::sync::Arc::new(resolve_kek(
        &engine.data_dir,
        &*engine.store,
        settings.encryption_key.as_deref(),
    )?);
    engine.use_hash_key(kek.hash_key());
    let (keyring, actor) = open_keys(
        &engine.data_dir,
        engine.writes.clone(),
        engine.models.clone(),
        kek,
        settings,
        retire_every,
        engine.clock.clone(),
    )?;
    let addr = actor.start();
    addr.send(ExecuteKeyRequest {
        request: KeyRequest::Bootstrap,
        metadata: Metadata::system(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("the key actor stopped: {e}"))?
    .map_err(|e| anyhow::anyhow!("setting up the signing keys: {e}"))?;
    Ok((keyring, addr))
}

/// Key settings from the environment alone, for commands other than `serve`.
pub fn key_settings_from_env() -> KeySettings {
    KeySettings {
        encryption_key: std::env::var(crate::keys::kek::KEK_ENV).ok(),
        private_key_path: std::env::var_os("AUTHLEDGER_PRIVATE_KEY_PATH").map(PathBuf::from),
        private_key_passphrase: std::env::var("AUTHLEDGER_PRIVATE_KEY_PASSPHRASE").ok(),
        default_algorithm: None,
        retire_leeway_secs: None,
    }
}

/// Makes sure the admin client exists, creating it on a fresh data directory (and printing
/// the admin credential to stderr, the only time it is shown).
pub async fn ensure_initialized(engine: &Engine) -> anyhow::Result<()> {
    match initialize(engine).await? {
        Some(cred) => {
            // Shown once on a terminal; never into a log file that stderr may be.
            if std::io::stderr().is_terminal() {
                eprintln!(
                    "initialised {}: admin client_id {} client_secret {} (also in {}, mode 0600)",
                    engine.data_dir.display(),
                    cred.client_id,
                    cred.client_secret,
                    engine.data_dir.join(ADMIN_FILE).display()
                );
            } else {
                tracing::info!(
                    client_id = %cred.client_id,
                    credential_file = %engine.data_dir.join(ADMIN_FILE).display(),
                    "initialised the data directory; the admin credential is in the credential file"
                );
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// Creates what is missing; returns the new admin credential when one was created.
pub async fn initialize(engine: &Engine) -> anyhow::Result<Option<AdminCredential>> {
    let dir = &engine.data_dir;
    if dir.join(ADMIN_FILE).exists() {
        return Ok(None);
    }
    let exists = engine.models.clients.get(ADMIN_CLIENT_ID).is_some();
    // On a shared log the admin client is another node's: rotating its secret would lock that
    // node's CLI out, so this node registers one of its own.
    let client_id = if exists && engine.shared.is_some() {
        let mut suffix = [0u8; 4];
        getrandom::getrandom(&mut suffix)
            .map_err(|e| anyhow::anyhow!("no randomness for the admin client's id: {e}"))?;
        format!("{ADMIN_CLIENT_ID}-{}", hex::encode(suffix))
    } else {
        ADMIN_CLIENT_ID.to_owned()
    };
    let out = if exists && client_id == ADMIN_CLIENT_ID {
        // The credential file was lost: a new secret replaces the old one.
        service::rotate_secret(engine, ADMIN_CLIENT_ID, Metadata::system())
            .await
            .map_err(|e| anyhow::anyhow!("rotating the admin secret: {e}"))?
    } else {
        service::create_client(
            engine,
            CreateClient {
                name: "authledger administration".into(),
                client_id: Some(client_id),
                scopes: vec![ADMIN_SCOPE.into()],
                admin: true,
                grant_types: vec!["client_credentials".into()],
                token_format: Some("opaque".into()),
                access_token_ttl: Some(600),
                can_introspect: true,
                ..CreateClient::default()
            },
            Metadata::system(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("registering the admin client: {e}"))?
    };
    let cred = AdminCredential {
        client_id: out.client_id,
        client_secret: out.client_secret.unwrap_or_default(),
    };
    crate::fsutil::write_private(
        &dir.join(ADMIN_FILE),
        serde_json::to_string_pretty(&cred)?.as_bytes(),
    )?;
    Ok(Some(cred))
}

/// Runs `init`.
pub fn run(args: InitArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    if data_dir.join(ADMIN_FILE).exists() {
        crate::say!("{} is already initialised", data_dir.display());
        return Ok(());
    }
    actix_rt::System::new().block_on(async move {
        let engine = Engine::open_with(&data_dir, Duration::from_secs(5), &super::store())
            .map_err(|e| super::backend::explain_open_error(e, &data_dir))?;
        let (keys, _) = start_keys(&engine, &key_settings_from_env(), None).await?;
        let Some(cred) = initialize(&engine).await? else {
            return Ok(());
        };
        let now = engine.clock.unix_now();
        let kids: serde_json::Map<String, serde_json::Value> =
            domain::values::SigningAlgorithm::ALL
                .iter()
                .filter_map(|a| Some((a.to_string(), keys.signing_kid(*a, now)?.into())))
                .collect();
        if args.format == Some(super::Format::Json) {
            crate::say!(
                "{}",
                serde_json::json!({
                    "client_id": cred.client_id,
                    "client_secret": cred.client_secret,
                    "signing_keys": kids,
                })
            );
        } else {
            crate::say!("initialised {}", data_dir.display());
            for (alg, kid) in &kids {
                crate::say!(
                    "signing key {alg}: kid {}",
                    kid.as_str().unwrap_or_default()
                );
            }
            crate::say!("admin client_id:     {}", cred.client_id);
            crate::say!("admin client_secret: {}", cred.client_secret);
            crate::say!(
                "(stored in {}, mode 0600; it is not shown again)",
                data_dir.join(ADMIN_FILE).display()
            );
        }
        Ok(())
    })
}
