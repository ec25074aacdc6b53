//! `authledger user create|update|show|list`.

use super::backend::Backend;
use super::{output, Format};
use crate::service::{CreateUser, UserAccess};
use clap::{Args, Subcommand};
use domain::user::ProfileChanges;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

/// User commands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Register a user. The password is read from standard input, never from a flag (flags
    /// end up in shell history and process listings).
    Create(CreateArgs),
    /// Change a user's profile claims (never its password). An option given an empty value
    /// (`--locale ""`) clears that claim; claims not named stay as they are.
    Update(UpdateArgs),
    /// Show one user and its profile.
    Show(ShowArgs),
    /// List users.
    List(ListArgs),
    /// Lock a user's account: no sign-in, no password grant, and its sessions end.
    Lock(NameArgs),
    /// Unlock a user's account.
    Unlock(NameArgs),
    /// End every session the user has now: each browser signs in again.
    EndSessions(NameArgs),
    /// Set a user's password, read from the first line of standard input; its sessions end.
    SetPassword(NameArgs),
}

/// Profile claims (OpenID Connect Core §5.1), as `user create` and `user update` take them.
#[derive(Debug, Clone, Args)]
pub struct ProfileArgs {
    /// Full name (`name` claim; at most 256 characters).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Given name (`given_name`).
    #[arg(long, value_name = "NAME")]
    pub given_name: Option<String>,
    /// Family name (`family_name`).
    #[arg(long, value_name = "NAME")]
    pub family_name: Option<String>,
    /// The name the user prefers to be called (`preferred_username`).
    #[arg(long, value_name = "NAME")]
    pub preferred_username: Option<String>,
    /// E-mail address (`email`); a new address is unverified unless --email-verified is given.
    #[arg(long, value_name = "ADDRESS")]
    pub email: Option<String>,
    /// Mark the e-mail address as verified (`email_verified: true`).
    #[arg(long)]
    pub email_verified: bool,
    /// BCP 47 language tag, such as en or en-GB (`locale`).
    #[arg(long, value_name = "TAG")]
    pub locale: Option<String>,
}

impl ProfileArgs {
    /// The changes these options make; `verified` is `--email-verified` or
    /// `--no-email-verified`, when one was given.
    fn changes(self, verified: Option<bool>) -> ProfileChanges {
        ProfileChanges {
            name: self.name,
            given_name: self.given_name,
            family_name: self.family_name,
            preferred_username: self.preferred_username,
            email: self.email,
            email_verified: verified,
            locale: self.locale,
        }
    }
}

/// Options of `user update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The user's username (or id).
    pub username: String,
    /// Profile claims to set.
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Mark the e-mail address as not verified.
    #[arg(long, conflicts_with = "email_verified")]
    pub no_email_verified: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Options of `user show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The user's username (or id).
    pub username: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
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
    /// Profile claims (recorded as a UserProfileChanged event after the registration).
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Options of `user lock`, `unlock`, `end-sessions` and `set-password`.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The user's username (or id).
    pub username: String,
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
        UserCommand::Create(a) => {
            // A malformed claim is refused before the password is asked for.
            let verified = a.profile.email_verified.then_some(true);
            a.profile
                .clone()
                .changes(verified)
                .apply(&domain::event::UserProfile::default())?;
            Some(read_password()?)
        }
        UserCommand::SetPassword(_) => Some(read_password()?),
        UserCommand::Update(_)
        | UserCommand::Show(_)
        | UserCommand::List(_)
        | UserCommand::Lock(_)
        | UserCommand::Unlock(_)
        | UserCommand::EndSessions(_) => None,
    };
    actix_rt::System::new().block_on(async move {
        let backend = Backend::open(&data_dir)?;
        match cmd {
            UserCommand::Create(a) => {
                let verified = a.profile.email_verified.then_some(true);
                let p = a.profile.changes(verified);
                let out = backend
                    .create_user(CreateUser {
                        username: a.username,
                        password: password.unwrap_or_default(),
                        name: p.name,
                        given_name: p.given_name,
                        family_name: p.family_name,
                        preferred_username: p.preferred_username,
                        email: p.email,
                        email_verified: p.email_verified,
                        locale: p.locale,
                    })
                    .await?;
                output::user(a.format, &out)
            }
            UserCommand::Update(a) => {
                let verified = match (a.profile.email_verified, a.no_email_verified) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                };
                let changes = a.profile.changes(verified);
                if changes.is_empty() {
                    anyhow::bail!(
                        "nothing to change: give --name, --given-name, --family-name, \
                         --preferred-username, --email, --email-verified, --no-email-verified \
                         or --locale"
                    );
                }
                let out = backend.update_user_profile(&a.username, changes).await?;
                output::user(a.format, &out)
            }
            UserCommand::Show(a) => output::user(a.format, &backend.show_user(&a.username)?),
            UserCommand::List(a) => output::users(a.format, &backend.list_users()?),
            UserCommand::Lock(a) => {
                let out = backend
                    .user_access(
                        &a.username,
                        UserAccess {
                            locked: Some(true),
                            ..UserAccess::default()
                        },
                    )
                    .await?;
                output::user(a.format, &out)
            }
            UserCommand::Unlock(a) => {
                let out = backend
                    .user_access(
                        &a.username,
                        UserAccess {
                            locked: Some(false),
                            ..UserAccess::default()
                        },
                    )
                    .await?;
                output::user(a.format, &out)
            }
            UserCommand::EndSessions(a) => {
                let out = backend
                    .user_access(
                        &a.username,
                        UserAccess {
                            end_sessions: true,
                            ..UserAccess::default()
                        },
                    )
                    .await?;
                output::user(a.format, &out)
            }
            UserCommand::SetPassword(a) => {
                let out = backend
                    .user_access(
                        &a.username,
                        UserAccess {
                            password,
                            ..UserAccess::default()
                        },
                    )
                    .await?;
                output::user(a.format, &out)
            }
        }
    })
}
