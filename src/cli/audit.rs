//! `authledger audit query | verify`.

use super::backend::Backend;
use super::{output, Format};
use crate::service::AuditParams;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Audit commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Events of the trail, filtered, in global order.
    Query(QueryArgs),
    /// Walk the hash chain of the whole log: "verified N events, head hash H", or the first
    /// position where the chain breaks and why (exit status 1).
    Verify(VerifyArgs),
}

/// Options of `audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Output format (table: one sentence; json: the full report).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Options of `audit query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Only events of this client.
    #[arg(long)]
    pub client: Option<String>,
    /// Only events about this subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Only events of this type (repeatable), e.g. AccessTokenIssued.
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Recorded at or after (RFC 3339 or Unix seconds).
    #[arg(long)]
    pub since: Option<String>,
    /// Recorded at or before (RFC 3339 or Unix seconds).
    #[arg(long)]
    pub until: Option<String>,
    /// Only events after this position (the cursor a previous page printed).
    #[arg(long)]
    pub after: Option<u64>,
    /// At most this many events.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Runs an audit command.
pub fn run(cmd: AuditCommand, data_dir: PathBuf) -> anyhow::Result<()> {
    let a = match cmd {
        AuditCommand::Query(a) => a,
        AuditCommand::Verify(v) => return verify(v, &data_dir),
    };
    actix_rt::System::new().block_on(async move {
        let backend = Backend::open(&data_dir)?;
        let page = backend.audit(&AuditParams {
            client: a.client,
            subject: a.subject,
            types: a.types,
            since: a.since,
            until: a.until,
            after: a.after,
            limit: Some(a.limit),
        })?;
        output::events(a.format, &page.events)?;
        if let Some(c) = page.next_cursor {
            eprintln!("more events may follow: --after {c}");
        }
        Ok(())
    })
}

fn verify(args: VerifyArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    use crate::store::verify::Verification;
    let json = args.format != Format::Table;
    let backend = Backend::open(data_dir)?;
    let outcome = backend.verify(json)?;
    if json {
        crate::say!("{}", serde_json::to_string_pretty(&outcome)?);
    }
    match outcome {
        Verification::Verified {
            events,
            head_hash,
            checkpoints,
            ..
        } => {
            if !json {
                crate::say!("verified {events} events, head hash {head_hash}");
                for c in &checkpoints {
                    crate::say!(
                        "crossed compaction checkpoint: positions {}–{} (compacted by event {})",
                        c.first,
                        c.last,
                        c.compacted_by
                    );
                }
            }
            Ok(())
        }
        Verification::Broken {
            position,
            reason,
            verified,
        } => Err(anyhow::anyhow!(
            "the hash chain breaks at position {position}: {reason} ({verified} events \
             verified before it)"
        )),
    }
}
