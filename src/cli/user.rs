//! `authledger user create|list`.

use super::backend::Backend;
use super::{output, Format};
use crate::service::CreateUser;
use clap::{Args, Subcommand};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

/// User commands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Register a user. The password is read from standard input, never from a flag (flags
    /// end up in shell history and process listings).
    Create(CreateArgs),
    /// List users.
    List(ListArgs),
}

/// Options of `user create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Unique username (A-Z a-z 0-9 . _ @ + -, at most 64).
    #[arg(long)]
    pub username: String,
    /// Read the password from the first line of standard input (required).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Options of `user list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password: ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        anyhow::bail!("no password on standard input; pipe it in, e.g. `printf %s \"$PW\" | authledger user create --username U --password-stdin`");
    }
    Ok(password)
}

/// Runs a user command.
pub fn run(cmd: UserCommand, data_dir: PathBuf) -> anyhow::Result<()> {
    let password = match &cmd {
        UserCommand::Create(_) => Some(read_password()?),
        UserCommand::List(_) => None,
    };
    actix_rt::System::new().block_on(async move {
        let backend = Backend::open(&data_dir)?;
        match cmd {
            UserCommand::Create(a) => {
                let out = backend
                    .create_user(CreateUser {
                        username: a.username,
                        password: password.unwrap_or_default(),
                    })
                    .await?;
                output::user(a.format, &out)
            }
            UserCommand::List(a) => output::users(a.format, &backend.list_users()?),
        }
    })
}
