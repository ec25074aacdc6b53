//! `authledger serve`.

use crate::app::Application;
use crate::config::{FileConfig, ServeConfig, DEFAULT_BIND};
use clap::Args;
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
    /// Event store backend.
    #[arg(long, env = "AUTHLEDGER_STORE", default_value = "sled", value_parser = ["sled"])]
    pub store: String,
    /// Seconds before an idle client actor stops.
    #[arg(long, env = "AUTHLEDGER_ACTOR_IDLE_SECS")]
    pub actor_idle_secs: Option<u64>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "AUTHLEDGER_WORKERS")]
    pub workers: Option<usize>,
    /// Log as JSON lines.
    #[arg(long, env = "AUTHLEDGER_LOG_JSON")]
    pub log_json: bool,
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: ServeArgs, data_dir: PathBuf, file: FileConfig) -> anyhow::Result<()> {
    crate::telemetry::init(args.log_json, "info");
    let config = ServeConfig {
        data_dir,
        bind: args
            .bind
            .or(file.bind)
            .unwrap_or_else(|| DEFAULT_BIND.to_owned()),
        issuer: args.issuer.or(file.issuer),
        actor_idle: Duration::from_secs(
            args.actor_idle_secs.or(file.actor_idle_secs).unwrap_or(300),
        ),
        workers: args.workers.or(file.workers),
    };
    actix_rt::System::new().block_on(async move {
        let app = Application::build(config).await?;
        app.run_until_stopped().await
    })
}
