//! Configuration: flags, then environment (`AUTHLEDGER_*`, handled by clap), then
//! `authledger.toml`, then defaults.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Default configuration file, looked up in the working directory.
pub const CONFIG_FILE: &str = "authledger.toml";

/// What `authledger.toml` may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Listen address.
    pub bind: Option<String>,
    /// Issuer URL.
    pub issuer: Option<String>,
    /// Seconds before an idle client actor stops.
    pub actor_idle_secs: Option<u64>,
    /// HTTP worker threads.
    pub workers: Option<usize>,
}

impl FileConfig {
    /// Reads `path`, or `./authledger.toml` when it exists; nothing otherwise.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let path = match path {
            Some(p) => p.to_owned(),
            None => {
                let p = PathBuf::from(CONFIG_FILE);
                if !p.exists() {
                    return Ok(Self::default());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// The settings of a running server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen address (port 0 picks a free port).
    pub bind: String,
    /// Issuer URL; `http://<bound address>` when absent.
    pub issuer: Option<String>,
    /// Idle time after which a client actor stops.
    pub actor_idle: std::time::Duration,
    /// HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
}
