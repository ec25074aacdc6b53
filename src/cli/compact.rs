//! `authledger compact`: remove history of a retention class older than a cutoff, in bounded
//! batches, keeping the hash chain verifiable (see `crate::retention`).

use super::backend::Backend;
use crate::retention::{Class, CompactionReport};
use clap::Args;
use std::path::PathBuf;

/// Options of `compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// What to compact: `access-tokens` (tokens expired before the cutoff, and their
    /// revocations) or `assertions` (accepted JWT assertions whose jti no longer matters).
    #[arg(long)]
    pub class: String,
    /// Keep what stopped mattering less than this long ago: seconds, or with a unit
    /// (`90d`, `12h`, `30m`, `0s`).
    #[arg(long)]
    pub older_than: String,
    /// Events removed per batch (each batch is one `HistoryCompacted` event).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: super::Format,
}

/// Parses `90d`, `12h`, `30m`, `45s` or plain seconds.
pub fn parse_age(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("{s:?} is not an age like 90d, 12h, 30m or 45s"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => anyhow::bail!("unknown unit {other:?} in {s:?}; use s, m, h or d"),
    };
    Ok(n.saturating_mul(unit))
}

/// Runs `compact`.
pub fn run(args: CompactArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    let class = Class::parse(&args.class).map_err(anyhow::Error::msg)?;
    let age = parse_age(&args.older_than)?;
    let json = args.format != super::Format::Table;
    let report: CompactionReport = actix_rt::System::new().block_on(async move {
        let backend = Backend::open(&data_dir)?;
        backend.compact(class, age, args.batch, json)
    })?;
    if json {
        crate::say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        crate::say!(
            "compacted {} {} events in {} runs ({} batches); the chain stays verifiable",
            report.removed,
            report.class,
            report.runs,
            report.batches
        );
    }
    Ok(())
}
