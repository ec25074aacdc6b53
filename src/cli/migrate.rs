//! `authledger migrate`: import a data directory written by the sled release into the
//! embedded log, verifying its chain on the way (the server does the same on its first start;
//! this command does it on purpose, with a progress bar and a report); or move a log between
//! a data directory and PostgreSQL (`--from` and `--to`).

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
    /// Move a log from here: a data directory (its server stopped), or a PostgreSQL URL
    /// (`postgres://...`). Without `--from` and `--to`, imports the sled store of `--data-dir`.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// ...to here: a PostgreSQL URL whose database holds no log yet, or a data directory that
    /// does not exist or is empty. The chain is verified on the way; the source is left as it
    /// was.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
}

fn is_database(place: &str) -> bool {
    place.starts_with("postgres://") || place.starts_with("postgresql://")
}

/// Runs `migrate`.
pub fn run(args: MigrateArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    if let (Some(from), Some(to)) = (&args.from, &args.to) {
        let json = args.format == Some(super::Format::Json);
        return match (is_database(from), is_database(to)) {
            (false, true) => to_postgres(std::path::Path::new(from), to, json),
            (true, false) => from_postgres(from, std::path::Path::new(to), json),
            _ => Err(anyhow!(
                "--from and --to take one data directory and one postgres:// URL"
            )),
        };
    }
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

/// A data directory's log into an empty shared log.
fn to_postgres(dir: &std::path::Path, url: &str, json: bool) -> anyhow::Result<()> {
    use crate::store::{segments, EventStore, Log};
    if let Some(addr) = running_server(dir) {
        return Err(anyhow!(
            "a server runs on {addr} with {}; stop it first, so the log holds still",
            dir.display()
        ));
    }
    let log_dir = dir.join(segments::LOG_DIR);
    if !log_dir.exists() {
        return Err(anyhow!(
            "{} holds no log ({} is missing)",
            dir.display(),
            log_dir.display()
        ));
    }
    let log = Log::of_data_dir(dir)?;
    let head = log.head_position();
    let bar = super::progress::events(head, json);
    bar.set_message("verify");
    let verified = log.verify(|n| bar.set_position(n))?;
    if let crate::store::verify::Verification::Broken {
        position, reason, ..
    } = verified
    {
        bar.finish_and_clear();
        return Err(anyhow!(
            "the log's chain breaks at position {position}: {reason}; nothing was copied"
        ));
    }
    bar.set_position(0);
    bar.set_message("copy");
    let started = std::time::Instant::now();
    let imported =
        crate::store::postgres::import(&crate::store::postgres::PgSettings::new(url), &log, |n| {
            bar.set_position(n)
        })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let text = format!(
        "copied {} events into PostgreSQL in {secs:.2} s (chain verified, head {} at position \
         {}); start nodes with --store postgres on empty data directories, and the same \
         AUTHLEDGER_ENCRYPTION_KEY as this directory's (its encryption.key, hex)",
        imported.events, imported.head_hash, imported.head_position
    );
    report(
        json,
        imported.events,
        imported.head_position,
        &imported.head_hash,
        secs,
        &text,
    )
}

/// The shared log into a new data directory, which then holds an embedded log of its own.
fn from_postgres(url: &str, dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    use crate::engine::{Engine, StoreChoice};
    use crate::store::EventStore;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(anyhow!(
            "{} is not empty; give an empty or new directory to copy the log into",
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir)?;
    let started = std::time::Instant::now();
    let choice = StoreChoice::Postgres(crate::store::postgres::PgSettings::new(url));
    let engine = Engine::open_with(dir, std::time::Duration::from_secs(5), &choice)
        .map_err(|e| anyhow!("copying the shared log: {e}"))?;
    if let Some(pg) = &engine.shared {
        pg.close();
    }
    let verified = engine.store.verify(|_| {})?;
    let (events, head_hash) = match verified {
        crate::store::verify::Verification::Verified {
            events, head_hash, ..
        } => (events, head_hash),
        crate::store::verify::Verification::Broken {
            position, reason, ..
        } => {
            return Err(anyhow!(
                "the copy's chain breaks at position {position}: {reason}; {} is not usable",
                dir.display()
            ))
        }
    };
    crate::store::postgres::detach(&engine.store)?;
    let head = engine.store.head_position();
    engine.close();
    let secs = started.elapsed().as_secs_f64();
    let text = format!(
        "copied {events} events from PostgreSQL into {} in {secs:.2} s (chain verified, head \
         {head_hash} at position {head}); serve it with the embedded store and the same \
         AUTHLEDGER_ENCRYPTION_KEY as the nodes",
        dir.display()
    );
    report(json, events, head, &head_hash, secs, &text)
}

/// Prints what a move between stores did: JSON, or `text` for people.
fn report(
    json: bool,
    events: u64,
    head_position: u64,
    head_hash: &str,
    secs: f64,
    text: &str,
) -> anyhow::Result<()> {
    if json {
        crate::say!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "events": events,
                "head_position": head_position,
                "head_hash": head_hash,
                "seconds": secs,
            }))?
        );
    } else {
        crate::say!("{text}");
    }
    Ok(())
}
