//! `authledger registration-token`: initial access tokens for dynamic client registration
//! (RFC 7591 §3), which let an application register itself at `POST /register`.

use super::backend::Backend;
use super::Format;
use crate::service::IssueInitialAccessToken;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Initial access tokens.
#[derive(Debug, Subcommand)]
pub enum RegistrationTokenCommand {
    /// Issue an initial access token; its value is printed here only (the log keeps its
    /// keyed hash).
    Create(CreateArgs),
}

/// Options of `registration-token create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Seconds until it expires.
    #[arg(long, default_value_t = 86_400)]
    pub expires_in: u32,
    /// How many registrations it may make.
    #[arg(long, default_value_t = 1)]
    pub uses: u32,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Runs a registration-token command.
pub fn run(cmd: RegistrationTokenCommand, data_dir: PathBuf) -> anyhow::Result<()> {
    actix_rt::System::new().block_on(async move {
        let backend = Backend::open(&data_dir)?;
        match cmd {
            RegistrationTokenCommand::Create(a) => {
                let out = backend
                    .issue_initial_access_token(IssueInitialAccessToken {
                        expires_in: Some(a.expires_in),
                        max_uses: Some(a.uses),
                    })
                    .await?;
                match a.format {
                    Format::Json => crate::say!("{}", serde_json::to_string_pretty(&out)?),
                    Format::Jsonl => crate::say!("{}", serde_json::to_string(&out)?),
                    Format::Table | Format::Csv => {
                        crate::say!(
                            "{}",
                            super::output::table(
                                &["id", "initial_access_token", "max_uses", "expires_at"],
                                vec![vec![
                                    out.id.clone(),
                                    out.initial_access_token.clone(),
                                    out.max_uses.to_string(),
                                    out.expires_at.clone(),
                                ]],
                            )
                        );
                        eprintln!(
                            "Give the token to the application: it registers with it as \
                             Authorization: Bearer at POST /register. It is not shown again."
                        );
                    }
                }
                Ok(())
            }
        }
    })
}
