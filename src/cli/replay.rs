//! `authledger replay`: rebuild every projection from the log; or build the view of a past
//! moment (`--as-of`); or rebuild into a fresh place and compare with the live projections
//! (`--verify`).

use super::backend::{explain_open_error, running_server};
use super::output::table;
use crate::engine::{catch_up, rebuild_into, Engine};
use crate::store::EventStore;
use anyhow::anyhow;
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Build the read models as they were at this moment (RFC 3339 or Unix seconds) into a
    /// separate read-only view under <data dir>/views/, leaving the live ones alone;
    /// `client show --as-of` and `audit query --as-of` answer from it.
    #[arg(long, conflicts_with = "verify")]
    pub as_of: Option<String>,
    /// Rebuild every projection into a fresh place and compare it row by row with the live
    /// one; report every difference (exit status 1 if there is any). Changes nothing.
    #[arg(long)]
    pub verify: bool,
    /// Print the summary as JSON.
    #[arg(long, value_enum)]
    pub format: Option<super::Format>,
}

/// Runs `replay`.
pub fn run(args: ReplayArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    if let Some(addr) = running_server(&data_dir) {
        return Err(anyhow!(
            "the server is running on {addr} with {}; stop it first (replay reads the whole \
             log, which the server holds; `client show --as-of` and `audit query --as-of` work \
             through a running server)",
            data_dir.display()
        ));
    }
    let json = args.format == Some(super::Format::Json);
    actix_rt::System::new().block_on(async move {
        if args.verify {
            return verify(&data_dir, json);
        }
        if let Some(t) = &args.as_of {
            return as_of(&data_dir, t, json);
        }
        let engine = Engine::open_stale_with(&data_dir, Duration::from_secs(5), &super::store())
            .map_err(|e| explain_open_error(e, &data_dir))?;
        let bar = super::progress::events(engine.store.head_position(), json);
        bar.set_message("replay");
        let started = Instant::now();
        engine.models.clear()?;
        let applied = catch_up(&engine.store, &engine.models, |n| bar.set_position(n))?;
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        // The rebuilt projections become the checkpoints the next start loads.
        engine.checkpoint()?;
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

fn as_of(data_dir: &Path, t: &str, json: bool) -> anyhow::Result<()> {
    let at = crate::service::parse_time(t)?;
    let engine = Engine::open_with(data_dir, Duration::from_secs(5), &super::store())
        .map_err(|e| explain_open_error(e, data_dir))?;
    let bar = super::progress::events(engine.store.head_position(), json);
    bar.set_message("view");
    let started = Instant::now();
    let view = crate::timetravel::open_or_build(&engine, at, |n| bar.set_position(n))?;
    bar.finish_and_clear();
    let info = &view.info;
    if json {
        crate::say!("{}", serde_json::to_string_pretty(info)?);
    } else {
        crate::say!(
            "the view as of {} holds {} events (up to position {}), built in {:.2} s: {}",
            crate::service::rfc3339(info.as_of),
            info.events,
            info.position,
            started.elapsed().as_secs_f64(),
            info.path.display()
        );
    }
    Ok(())
}

fn verify(data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let engine = Engine::open_with(data_dir, Duration::from_secs(5), &super::store())
        .map_err(|e| explain_open_error(e, data_dir))?;
    // The fresh build lives in memory only.
    let fresh = projections::ReadModels::open(&projections::NoCheckpoints)?;
    let bar = super::progress::events(engine.store.head_position(), json);
    bar.set_message("rebuild");
    let started = Instant::now();
    let (events, position) = rebuild_into(&engine.store, &fresh, None, |n| bar.set_position(n))?;
    bar.finish_and_clear();
    let report = engine.models.compare(&fresh, 100)?;
    let secs = started.elapsed().as_secs_f64();
    if json {
        crate::say!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "events": events,
                "position": position,
                "seconds": secs,
                "rows": report.rows,
                "differing": report.differing,
                "differences": report.differences,
            }))?
        );
    } else if report.differing == 0 {
        crate::say!(
            "no difference: {} rows of 5 projections match a fresh build from {events} events \
             ({secs:.2} s)",
            report.rows
        );
    } else {
        let rows = report
            .differences
            .iter()
            .map(|d| {
                let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "(missing)".into());
                vec![
                    d.projection.to_owned(),
                    d.key.clone(),
                    side(&d.live),
                    side(&d.rebuilt),
                ]
            })
            .collect();
        crate::say!("{}", table(&["projection", "key", "live", "rebuilt"], rows));
    }
    if report.differing > 0 {
        return Err(anyhow!(
            "{} of {} projection rows differ from a fresh build; run `authledger replay` (with \
             the server stopped) to rebuild the live projections from the log",
            report.differing,
            report.rows
        ));
    }
    Ok(())
}
