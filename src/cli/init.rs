//! `authledger init`: the signing key and the admin client of a data directory.

use crate::engine::Engine;
use crate::http::admin::ADMIN_SCOPE;
use crate::keys::{SigningKey, KEY_FILE};
use crate::service::{self, CreateClient};
use crate::store::EventStore;
use anyhow::Context;
use clap::Args;
use domain::Metadata;
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
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

/// Loads the signing key and makes sure the admin client exists, creating both on a fresh data
/// directory (and printing the admin credential to stderr, the only time it is shown).
pub async fn ensure_initialized(engine: &Engine) -> anyhow::Result<SigningKey> {
    match initialize(engine).await? {
        (key, Some(cred)) => {
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
            Ok(key)
        }
        (key, None) => Ok(key),
    }
}

/// Creates what is missing; returns the new admin credential when one was created.
pub async fn initialize(engine: &Engine) -> anyhow::Result<(SigningKey, Option<AdminCredential>)> {
    let dir = &engine.data_dir;
    let key = if dir.join(KEY_FILE).exists() {
        SigningKey::load(dir)?
    } else if engine.store.head_position() > 0 {
        // A fresh key would silently turn every JWT issued so far inactive.
        anyhow::bail!(
            "{} is missing but {} already holds events: restore the key from your backup",
            dir.join(KEY_FILE).display(),
            dir.display()
        );
    } else {
        SigningKey::generate(dir)?
    };
    if dir.join(ADMIN_FILE).exists() {
        return Ok((key, None));
    }
    let out = if engine.models.clients.get(ADMIN_CLIENT_ID).is_some() {
        // The credential file was lost: a new secret replaces the old one.
        service::rotate_secret(engine, ADMIN_CLIENT_ID, Metadata::system())
            .await
            .map_err(|e| anyhow::anyhow!("rotating the admin secret: {e}"))?
    } else {
        service::create_client(
            engine,
            CreateClient {
                name: "authledger administration".into(),
                client_id: Some(ADMIN_CLIENT_ID.into()),
                scopes: vec![ADMIN_SCOPE.into()],
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
    Ok((key, Some(cred)))
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
        let engine = Engine::open(&data_dir, Duration::from_secs(5))
            .map_err(|e| super::backend::explain_open_error(e, &data_dir))?;
        let (key, cred) = initialize(&engine).await?;
        let Some(cred) = cred else {
            return Ok(());
        };
        if args.format == Some(super::Format::Json) {
            crate::say!(
                "{}",
                serde_json::json!({
                    "client_id": cred.client_id,
                    "client_secret": cred.client_secret,
                    "kid": key.kid(),
                })
            );
        } else {
            crate::say!("initialised {}", data_dir.display());
            crate::say!("signing key: ES256, kid {}", key.kid());
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
