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
    /// Write a signed checkpoint: the log's head position and hash, signed as a JWS with the
    /// active signing key. Publish it where the data directory's owner cannot rewrite it;
    /// `audit verify --checkpoint` then catches a log cut short or rewritten since.
    Checkpoint(CheckpointArgs),
    /// Print the latest events, or every event from a position; with --follow, keep printing
    /// each new one as it is recorded (through the server's event stream).
    Tail(TailArgs),
    /// Write every matching event to a file, oldest first, as JSON Lines (the events as
    /// recorded, the hashes of secrets included) or CSV (one row per event with its details,
    /// no hashes, cells made safe for spreadsheets), with a progress bar.
    Export(ExportArgs),
}

/// Output format of `audit export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line: the event with its metadata and hash chain fields.
    Jsonl,
    /// A header, then one row per event.
    Csv,
}

/// Options of `audit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Recorded at or after (RFC 3339 or Unix seconds).
    #[arg(long)]
    pub since: Option<String>,
    /// Recorded at or before (RFC 3339 or Unix seconds).
    #[arg(long)]
    pub until: Option<String>,
    /// Only events after this position (resume an export from its last position).
    #[arg(long)]
    pub after: Option<u64>,
    /// The file to write (replaced once the export is complete); `-` writes to stdout.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// jsonl or csv.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: ExportFormat,
}

/// Options of `audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Output format (table: one sentence; json: the full report).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also check the log against this signed checkpoint (written by `audit checkpoint`).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// The JWKS to check the checkpoint's signature with (default: the server's own keys;
    /// give the JWKS published with the checkpoint once its key has retired).
    #[arg(long, requires = "checkpoint")]
    pub jwks: Option<PathBuf>,
}

/// Options of `audit checkpoint`.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Write the checkpoint to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Which events: the filters `audit query` and `audit tail` share.
#[derive(Debug, Args, Clone)]
pub struct FilterArgs {
    /// Only events of this client.
    #[arg(long)]
    pub client: Option<String>,
    /// Only events about this subject (a user id, or the subject of a token).
    #[arg(long)]
    pub subject: Option<String>,
    /// Only events of this type (repeatable), e.g. AccessTokenIssued.
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Only events caused by the request with this id (its X-Request-Id).
    #[arg(long)]
    pub request_id: Option<String>,
    /// Only events with this correlation id.
    #[arg(long)]
    pub correlation_id: Option<String>,
}

impl FilterArgs {
    fn params(&self) -> AuditParams {
        AuditParams {
            client: self.client.clone(),
            subject: self.subject.clone(),
            types: self.types.clone(),
            request_id: self.request_id.clone(),
            correlation_id: self.correlation_id.clone(),
            ..AuditParams::default()
        }
    }
}

/// Options of `audit query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Recorded at or after (RFC 3339 or Unix seconds).
    #[arg(long)]
    pub since: Option<String>,
    /// Recorded at or before (RFC 3339 or Unix seconds).
    #[arg(long)]
    pub until: Option<String>,
    /// Newest first (the cursor then pages backwards: pass it as --before).
    #[arg(long)]
    pub newest_first: bool,
    /// Only events after this position (the cursor a previous oldest-first page printed).
    #[arg(long, conflicts_with = "before")]
    pub after: Option<u64>,
    /// Only events before this position (the cursor a previous newest-first page printed).
    #[arg(long)]
    pub before: Option<u64>,
    /// At most this many events.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Answer from the view of this moment (RFC 3339 or Unix seconds): the trail as it stood
    /// then (see `replay --as-of`).
    #[arg(long)]
    pub as_of: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Options of `audit tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Keep printing new events as they are recorded (needs a running server).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Start at this position instead of the last --lines events (resume a shipper from the
    /// position after the last one it stored).
    #[arg(long)]
    pub from: Option<u64>,
    /// How many of the latest matching events to print first.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub lines: usize,
    /// Output format: table (one line per event), jsonl or csv (json means jsonl here).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Runs an audit command.
pub fn run(cmd: AuditCommand, data_dir: PathBuf) -> anyhow::Result<()> {
    let a = match cmd {
        AuditCommand::Query(a) => a,
        AuditCommand::Verify(v) => return verify(v, &data_dir),
        AuditCommand::Checkpoint(c) => return checkpoint(c, &data_dir),
        AuditCommand::Tail(t) => return tail(t, &data_dir),
        AuditCommand::Export(x) => return export(x, &data_dir),
    };
    actix_rt::System::new().block_on(async move {
        let backend = Backend::open(&data_dir)?;
        let page = backend.audit(&AuditParams {
            since: a.since,
            until: a.until,
            after: a.after,
            before: a.before,
            order: a.newest_first.then(|| "desc".to_owned()),
            limit: Some(a.limit),
            as_of: a.as_of,
            ..a.filter.params()
        })?;
        output::events(a.format, &page.events)?;
        if let Some(c) = page.next_cursor {
            let flag = if a.newest_first {
                "--before"
            } else {
                "--after"
            };
            eprintln!("more events may follow: {flag} {c}");
        }
        Ok(())
    })
}

fn checkpoint(args: CheckpointArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    actix_rt::System::new().block_on(async move {
        let backend = Backend::open(data_dir)?;
        let jws = backend.checkpoint().await?;
        match &args.output {
            Some(path) => {
                std::fs::write(path, format!("{jws}\n"))?;
                eprintln!("wrote a signed checkpoint to {}", path.display());
            }
            None => crate::say!("{jws}"),
        }
        Ok(())
    })
}

fn verify_against_checkpoint(
    backend: &Backend,
    file: &std::path::Path,
    jwks: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<()> {
    let jws = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("reading the checkpoint {}: {e}", file.display()))?;
    let jwks = match jwks {
        Some(p) => Some(serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("reading the JWKS {}: {e}", p.display()))?,
        )?),
        None => None,
    };
    let report = actix_rt::System::new().block_on(backend.verify_checkpoint(jws.trim(), jwks))?;
    if json {
        crate::say!("{}", serde_json::to_string_pretty(&report)?);
    }
    if report["status"] == "verified" {
        if !json {
            crate::say!(
                "the log holds the checkpoint of position {} (head hash {}, signed by key {})",
                report["position"],
                report["head_hash"].as_str().unwrap_or_default(),
                report["kid"].as_str().unwrap_or_default()
            );
        }
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{}",
            report["reason"]
                .as_str()
                .unwrap_or("the checkpoint does not match the log")
        ))
    }
}

/// Walks the chain of a stopped server's log without loading its projections (the walk needs
/// only the log). `None` when the server runs or the directory holds no new-format log yet:
/// the caller then goes through the server or the whole engine.
fn walk_log_alone(
    data_dir: &std::path::Path,
    quiet: bool,
) -> anyhow::Result<Option<crate::store::verify::Verification>> {
    use crate::store::{segments, Log, StoreError};
    let log_dir = data_dir.join(segments::LOG_DIR);
    if super::backend::running_server(data_dir).is_some() || !log_dir.exists() {
        return Ok(None);
    }
    let log = match Log::of_data_dir(data_dir) {
        Ok(l) => l,
        Err(StoreError::Locked) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bar = super::progress::events(crate::store::EventStore::head_position(&log), quiet);
    bar.set_message("verify");
    let outcome = log.verify(|n| bar.set_position(n))?;
    bar.finish_and_clear();
    Ok(Some(outcome))
}

fn verify(args: VerifyArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    use crate::store::verify::Verification;
    let json = args.format != Format::Table;
    let outcome = match (&args.checkpoint, walk_log_alone(data_dir, json)?) {
        (None, Some(outcome)) => outcome,
        (checkpoint, _) => {
            let backend = actix_rt::System::new().block_on(async { Backend::open(data_dir) })?;
            if let Some(file) = checkpoint {
                return verify_against_checkpoint(&backend, file, args.jwks.as_deref(), json);
            }
            backend.verify(json)?
        }
    };
    // On a shared log, the database's own chains too: the copy above is this node's.
    let shared = match super::store() {
        crate::engine::StoreChoice::Postgres(settings) => {
            let bar = super::progress::events(0, json);
            bar.set_message("database");
            let walked = crate::store::postgres::verify_shared(&settings, |n| bar.set_position(n))?;
            bar.finish_and_clear();
            Some(walked)
        }
        crate::engine::StoreChoice::Embedded => None,
    };
    if json {
        let mut report = serde_json::to_value(&outcome)?;
        if let (Some(walked), Some(map)) = (&shared, report.as_object_mut()) {
            map.insert("shared_log".into(), serde_json::to_value(walked)?);
        }
        crate::say!("{}", serde_json::to_string_pretty(&report)?);
    }
    match &shared {
        Some(Verification::Verified {
            events, head_hash, ..
        }) if !json => crate::say!(
            "the shared log in PostgreSQL: verified {events} events, every stream's chain and \
             the order's chain (head {head_hash})"
        ),
        Some(Verification::Broken {
            position, reason, ..
        }) => {
            return Err(anyhow::anyhow!(
                "the shared log in PostgreSQL breaks at position {position}: {reason}; the \
                 nodes' copies may still hold the events as they were"
            ))
        }
        _ => {}
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

fn tail(args: TailArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let mut printer = output::EventLines::new(args.format);
    let backend = actix_rt::System::new().block_on(async { Backend::open(data_dir) })?;
    if args.follow && matches!(backend, Backend::Local(_)) {
        return Err(anyhow::anyhow!(
            "--follow needs a running server: nothing else writes to {} while none runs. \
             Start `authledger serve` on it, or drop --follow to print what is there",
            data_dir.display()
        ));
    }
    let base = args.filter.params();
    // Print what is already there, and find where following begins.
    let resume_at = match args.from {
        Some(from) => {
            let mut after = from.saturating_sub(1);
            loop {
                let page = backend.audit(&AuditParams {
                    after: Some(after),
                    limit: Some(1000),
                    ..base.clone()
                })?;
                for e in &page.events {
                    printer.print(e)?;
                }
                after = page.events.last().map_or(after, |e| e.position);
                if page.next_cursor.is_none() {
                    break page.head_position.max(after) + 1;
                }
            }
        }
        None => {
            let page = backend.audit(&AuditParams {
                order: Some("desc".into()),
                limit: Some(args.lines.max(1)),
                ..base.clone()
            })?;
            if args.lines > 0 {
                for e in page.events.iter().rev() {
                    printer.print(e)?;
                }
            }
            page.head_position + 1
        }
    };
    if !args.follow {
        return Ok(());
    }
    let Backend::Remote(remote) = backend else {
        return Ok(());
    };
    remote.follow(&base, resume_at, |e| printer.print(&e))
}

/// Events per page of an export.
const EXPORT_PAGE: usize = 1000;

fn export(args: ExportArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    // The trail holds keyed hashes and sealed keys: the file is its owner's alone.
    use std::os::unix::fs::OpenOptionsExt as _;
    let backend = actix_rt::System::new().block_on(async { Backend::open(data_dir) })?;
    let to_stdout = args.output.as_os_str() == "-";
    // Written beside the target and renamed at the end: an interrupted export leaves no file
    // that looks complete.
    let partial = {
        let mut name = args.output.clone().into_os_string();
        name.push(".partial");
        PathBuf::from(name)
    };
    let file: Box<dyn std::io::Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&partial)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "creating {}: {e}; is the directory there and writable?",
                        partial.display()
                    )
                })?,
        )
    };
    let mut out = std::io::BufWriter::new(file);
    let params = AuditParams {
        since: args.since.clone(),
        until: args.until.clone(),
        limit: Some(EXPORT_PAGE),
        ..args.filter.params()
    };
    let mut csv = (args.format == ExportFormat::Csv).then(|| output::SafeCsv::new(Vec::new()));
    if let Some(w) = csv.as_mut() {
        w.header(output::event_header())?;
    }
    let mut after = args.after.unwrap_or(0);
    let mut written = 0u64;
    let mut bar = None;
    loop {
        let page = backend.audit(&AuditParams {
            after: Some(after),
            ..params.clone()
        })?;
        let bar = bar.get_or_insert_with(|| {
            let b = super::progress::events(page.head_position, to_stdout);
            b.set_message("export");
            b.set_position(after.min(page.head_position));
            b
        });
        for e in &page.events {
            match csv.as_mut() {
                Some(w) => w.write(output::event_cells(e))?,
                None => {
                    serde_json::to_writer(&mut out, e)?;
                    out.write_all(b"\n")?;
                }
            }
            written += 1;
        }
        if let Some(w) = csv.take() {
            out.write_all(&w.finish()?)?;
            csv = Some(output::SafeCsv::new(Vec::new()));
        }
        after = page.events.last().map_or(after, |e| e.position);
        bar.set_position(after.min(page.head_position));
        if page.next_cursor.is_none() {
            bar.finish_and_clear();
            break;
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing the export: {e}"))?;
    drop(file);
    if !to_stdout {
        // Durable before it is named as done.
        std::fs::File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, &args.output).map_err(|e| {
            anyhow::anyhow!(
                "renaming {} to {}: {e}",
                partial.display(),
                args.output.display()
            )
        })?;
        eprintln!(
            "wrote {written} events to {} (up to position {after}; resume with --after {after})",
            args.output.display()
        );
    }
    Ok(())
}
