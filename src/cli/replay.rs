//! `authledger replay`: delete every projection and rebuild it from the log.

use super::backend::{explain_open_error, running_server};
use crate::engine::{catch_up, Engine};
use crate::store::EventStore;
use anyhow::anyhow;
use clap::Args;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Print the summary as JSON.
    #[arg(long, value_enum)]
    pub format: Option<super::Format>,
}

/// Runs `replay`.
pub fn run(args: ReplayArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    if let Some(addr) = running_server(&data_dir) {
        return Err(anyhow!(
            "the server is running on {addr} with {}; stop it first (replay rebuilds the \
             projections it is serving from)",
            data_dir.display()
        ));
    }
    let json = args.format == Some(super::Format::Json);
    actix_rt::System::new().block_on(async move {
        let engine = Engine::open_stale(&data_dir, Duration::from_secs(5))
            .map_err(|e| explain_open_error(e, &data_dir))?;
        let total = engine.store.head_position();
        let bar = super::progress::events(total, json);
        bar.set_message("replay");
        let started = Instant::now();
        engine.models.clear()?;
        let applied = catch_up(&engine.store, &engine.models, |n| bar.set_position(n))?;
        engine.store.db().flush()?;
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { applied as f64 / secs } else { 0.0 };
        if json {
            crate::say!(
                "{}",
                serde_json::json!({"events": applied, "seconds": secs, "events_per_second": rate.round()})
            );
        } else {
            crate::say!(
                "replayed {applied} events into every projection in {secs:.2} s ({rate:.0} events/s)"
            );
        }
        Ok(())
    })
}
