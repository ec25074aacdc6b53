//! The command line (clap): `serve`, `init`, `client`, `user`, `keys`, `audit`, `replay`.

pub mod audit;
pub mod backend;
pub mod client;
pub mod compact;
pub mod doctor;
pub mod import;
pub mod init;
pub mod keys;
pub mod migrate;
pub mod output;
pub mod progress;
pub mod registration;
pub mod replay;
pub mod serve;
pub mod user;

use crate::engine::StoreChoice;
use crate::store::postgres::PgSettings;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// An event-sourced OAuth 2.0 authorization server: every decision is an event in a durable,
/// replayable log.
#[derive(Debug, Parser)]
#[command(name = "authledger", version, about, long_about = None)]
pub struct Cli {
    /// Data directory (store, signing key, admin credential).
    #[arg(long, global = true, env = "AUTHLEDGER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the log is kept: `embedded` (the data directory's own log) or `postgres` (a log
    /// shared by several nodes; the data directory then holds this node's copy and
    /// projections). Every command takes it.
    #[arg(long, global = true, env = "AUTHLEDGER_STORE", value_parser = ["embedded", "postgres"])]
    pub store: Option<String>,
    /// The PostgreSQL database of the shared log, as a URL
    /// (`postgres://user:password@host:5432/db`) or libpq key=value pairs.
    #[arg(
        long,
        global = true,
        env = "AUTHLEDGER_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Configuration file (default: ./authledger.toml when present).
    #[arg(long, global = true, env = "AUTHLEDGER_CONFIG")]
    pub config: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// How a command prints data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table for people.
    Table,
    /// One JSON document.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (initialises a fresh data directory first).
    Serve(serve::ServeArgs),
    /// Initialise a data directory: signing key and admin client; prints the admin credential once.
    Init(init::InitArgs),
    /// Manage OAuth clients (works whether or not the server is running).
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Manage users (resource owners who sign in on the login page).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Query, verify and follow the audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Initial access tokens for dynamic client registration (POST /register).
    #[command(subcommand)]
    RegistrationToken(registration::RegistrationTokenCommand),
    /// Manage signing keys: list them, rotate them.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Delete and rebuild every projection from the log (the server must be stopped).
    Replay(replay::ReplayArgs),
    /// Import a data directory written by the sled release (the server also does this on its
    /// first start); the old store is verified on the way and left in place.
    Migrate(migrate::MigrateArgs),
    /// Remove history that stopped mattering (expired tokens, spent assertions) in bounded
    /// batches; the hash chain stays verifiable. Works while the server runs.
    Compact(compact::CompactArgs),
    /// Register the OAuth clients of another server (Ory Hydra, Keycloak, League/Symfony)
    /// from its export; --dry-run shows the plan and what could not be mapped.
    Import(import::ImportArgs),
    /// Check a data directory (or the shared log's database): its files' permissions, the
    /// key-encryption key, the signing keys, the log's hash chain and the free space; says
    /// what to fix, and exits 1 when a check fails.
    Doctor(doctor::DoctorArgs),
}

/// The store every command of this process opens (set once from the flags, the environment
/// or the configuration file, before any command runs).
static STORE: std::sync::OnceLock<StoreChoice> = std::sync::OnceLock::new();

/// The store the command line chose (the embedded log unless told otherwise).
pub fn store() -> StoreChoice {
    STORE.get().cloned().unwrap_or_default()
}

/// Turns `--store` and `--database-url` into a choice, or says what is missing.
pub fn store_choice(store: Option<&str>, url: Option<&str>) -> anyhow::Result<StoreChoice> {
    match (store.unwrap_or("embedded"), url) {
        ("embedded", None) => Ok(StoreChoice::Embedded),
        ("embedded", Some(_)) => Err(anyhow::anyhow!(
            "--database-url is given but the store is the embedded log; add --store postgres"
        )),
        ("postgres", Some(url)) => Ok(StoreChoice::Postgres(PgSettings::new(url))),
        ("postgres", None) => Err(anyhow::anyhow!(
            "--store postgres needs --database-url (or AUTHLEDGER_DATABASE_URL), e.g. \
             postgres://authledger@127.0.0.1:5432/authledger"
        )),
        (other, _) => Err(anyhow::anyhow!(
            "unknown store {other:?}; use embedded or postgres"
        )),
    }
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = match crate::config::FileConfig::load(cli.config.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let data_dir = cli
        .data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA_DIR));
    let store = match store_choice(
        cli.store.as_deref().or(file.store.as_deref()),
        cli.database_url.as_deref().or(file.database_url.as_deref()),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let _ = STORE.set(store.clone());
    let result = match cli.command {
        Command::Serve(args) => serve::run(args, data_dir, store, file),
        Command::Init(args) => init::run(args, data_dir),
        Command::Client(cmd) => client::run(cmd, data_dir),
        Command::User(cmd) => user::run(cmd, data_dir),
        Command::Audit(cmd) => audit::run(cmd, data_dir),
        Command::RegistrationToken(cmd) => registration::run(cmd, data_dir),
        Command::Replay(args) => replay::run(args, data_dir),
        Command::Compact(args) => compact::run(args, data_dir),
        Command::Migrate(args) => migrate::run(args, data_dir),
        Command::Keys(cmd) => keys::run(cmd, data_dir),
        Command::Import(args) => import::run(args, data_dir),
        Command::Doctor(args) => doctor::run(args, data_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
