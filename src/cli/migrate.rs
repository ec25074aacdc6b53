//! `authledger migrate`: import a data directory written by the sled release into the
//! embedded log, verifying its chain on the way. The server does the same on its first start;
//! this command does it on purpose, with a progress bar and a report.

use super::backend::running_server;
use crate::engine::SLED_STORE_DIR;
use crate::store::lock::DirLock;
use crate::store::segments::LOG_DIR;
use crate::store::sled_import;
use anyhow::anyhow;
use clap::Args;
use std::path::PathBuf;

/// Options of `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Print the report as JSON.
    #[arg(long, value_enum)]
    pub format: Option<super::Format>,
}

/// Runs `migrate`.
pub fn run(args: MigrateArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    if let Some(addr) = running_server(&data_dir) {
        return Err(anyhow!(
            "the server is running on {addr} with {}; it has already imported the old store. \
             Stop it first to import again",
            data_dir.display()
        ));
    }
    let json = args.format == Some(super::Format::Json);
    let sled_dir = data_dir.join(SLED_STORE_DIR);
    let log_dir = data_dir.join(LOG_DIR);
    if !sled_dir.join("db").exists() {
        return Err(anyhow!(
            "{} holds no store of an earlier release (no {}); nothing to migrate",
            data_dir.display(),
            sled_dir.display()
        ));
    }
    if log_dir.exists() {
        return Err(anyhow!(
            "{} already holds the new log ({}); the old store was imported before. Remove {} \
             once you no longer need it",
            data_dir.display(),
            log_dir.display(),
            sled_dir.display()
        ));
    }
    let _lock = DirLock::acquire(&data_dir)?;
    let bar = super::progress::events(0, json);
    bar.set_message("migrate");
    let started = std::time::Instant::now();
    let imported = sled_import::import(&sled_dir, &log_dir, |n, total| {
        bar.set_length(total);
        bar.set_position(n);
    })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if json {
        crate::say!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "events": imported.events,
                "head_position": imported.head_position,
                "head_hash": imported.head_hash,
                "compacted_runs": imported.runs,
                "seconds": secs,
                "old_store": sled_dir,
            }))?
        );
    } else {
        crate::say!(
            "imported {} events (chain verified, head {} at position {}) in {secs:.2} s; the \
             projections are rebuilt at the next start. The old store is left in {}: remove it \
             once you are satisfied",
            imported.events,
            imported.head_hash,
            imported.head_position,
            sled_dir.display()
        );
    }
    Ok(())
}
