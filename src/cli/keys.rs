//! `authledger keys list|rotate`.

use super::backend::Backend;
use super::{output, Format};
use crate::service::{RotateKeys, DEFAULT_KEY_LEAD_SECS};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Signing-key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List every signing key: pending (published, not signing yet), active, superseded
    /// (published until its last token expires) or retired.
    List(ListArgs),
    /// Generate a new key per algorithm: published in the JWKS now, signing after the lead
    /// time; the old key stays published until every token it signed has expired.
    Rotate(RotateArgs),
}

/// Options of `keys list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Options of `keys rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Algorithm to rotate (repeatable; default: all of RS256, ES256, EdDSA).
    #[arg(long = "algorithm", value_parser = ["RS256", "ES256", "EdDSA"])]
    pub algorithms: Vec<String>,
    /// Seconds between publishing the new key and its first signature. Give resource
    /// servers time to refetch the JWKS: at least their cache lifetime (ours says 300 s).
    #[arg(long, default_value_t = DEFAULT_KEY_LEAD_SECS)]
    pub lead_time: u64,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Runs a keys command.
pub fn run(cmd: KeysCommand, data_dir: PathBuf) -> anyhow::Result<()> {
    actix_rt::System::new().block_on(async move {
        let backend = Backend::open(&data_dir)?;
        match cmd {
            KeysCommand::List(a) => output::keys(a.format, &backend.list_keys()?),
            KeysCommand::Rotate(a) => {
                let keys = backend
                    .rotate_keys(RotateKeys {
                        algorithms: a.algorithms,
                        lead_secs: Some(a.lead_time),
                    })
                    .await?;
                output::keys(a.format, &keys)
            }
        }
    })
}
