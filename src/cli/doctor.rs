//! `authledger doctor`: checks a data directory (or the database of a shared log), its keys,
//! its key-encryption key, its files' permissions and the log's hash chain, and says what to
//! fix. Works with the server running (through its admin API where the log is in its hands)
//! or stopped (reading the files itself); exits 1 when any check fails.

use super::backend::{running_server, Backend};
use super::Format;
use crate::keys::kek::{Kek, KEK_ENV, KEK_FILE};
use crate::store::verify::Verification;
use clap::Args;
use serde::Serialize;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Options of `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

/// One check: what was looked at, how it came out, and what to do.
#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    fix: String,
}

fn ok(check: &'static str, detail: impl Into<String>) -> Check {
    Check {
        check,
        status: Status::Ok,
        detail: detail.into(),
        fix: String::new(),
    }
}

fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check,
        status: Status::Warn,
        detail: detail.into(),
        fix: fix.into(),
    }
}

fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check,
        status: Status::Fail,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// Free space below which writes are near refusal (a segment is 64 MiB by default).
const FREE_FAIL: u64 = 256 << 20;
/// Free space below which to plan for more.
const FREE_WARN: u64 = 1 << 30;
/// An active signing key older than this is worth rotating.
const KEY_AGE_WARN_SECS: i64 = 180 * 86_400;

/// Runs `doctor`.
pub fn run(args: DoctorArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    let mut checks = vec![data_directory(&data_dir)];
    if !data_dir.is_dir() {
        return report(args.format, checks);
    }
    let server = running_server(&data_dir);
    checks.push(match server {
        Some(addr) => ok(
            "server",
            format!("running at {addr}: the log and the keys are checked through it"),
        ),
        None => ok("server", "stopped: the files are read directly"),
    });
    checks.push(secret_files(&data_dir));
    let kek = kek(&data_dir, &mut checks);
    match server {
        Some(_) => {
            let backend = actix_rt::System::new().block_on(async { Backend::open(&data_dir) });
            match backend {
                Ok(b) => {
                    checks.push(keys_through_server(&b));
                    checks.push(chain(b.verify(true)));
                }
                Err(e) => checks.push(fail(
                    "server",
                    format!("the running server does not answer its admin API: {e:#}"),
                    "check admin.json and that the server at server.json's address is this data directory's",
                )),
            }
        }
        None => match crate::store::Log::of_data_dir(&data_dir) {
            Ok(log) => {
                checks.push(keys_in_log(&log, kek.as_ref()));
                let bar = super::progress::events(crate::store::EventStore::head_position(&log), args.format != Format::Table);
                bar.set_message("verify");
                checks.push(chain(log.verify(|n| bar.set_position(n)).map_err(anyhow::Error::from)));
                bar.finish_and_clear();
            }
            Err(e) => checks.push(fail(
                "log chain",
                format!("the log does not open: {e}"),
                "restore the data directory from a backup, or see docs/operations.md, \"The log is damaged\"",
            )),
        },
    }
    checks.push(disk_space(&data_dir));
    if let crate::engine::StoreChoice::Postgres(settings) = super::store() {
        checks.push(match crate::store::postgres::verify_shared(&settings, |_| {}) {
            Ok(v) if v.is_verified() => ok("database", "the shared log's chains verify"),
            Ok(Verification::Broken { position, reason, .. }) => fail(
                "database",
                format!("the shared log breaks at position {position}: {reason}"),
                "the nodes' copies may still hold the events as they were: see docs/operations.md, \"Several nodes on PostgreSQL\"",
            ),
            Ok(_) => ok("database", "reachable"),
            Err(e) => fail(
                "database",
                format!("{e:#}"),
                "start PostgreSQL, or check --database-url (AUTHLEDGER_DATABASE_URL) and the network",
            ),
        });
    }
    report(args.format, checks)
}

fn report(format: Format, checks: Vec<Check>) -> anyhow::Result<()> {
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    match format {
        Format::Json | Format::Jsonl => crate::say!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "ok": failed == 0, "checks": checks })
            )?
        ),
        Format::Table | Format::Csv => {
            let rows = checks
                .iter()
                .map(|c| {
                    let status = match c.status {
                        Status::Ok => "ok",
                        Status::Warn => "warn",
                        Status::Fail => "FAIL",
                    };
                    vec![
                        c.check.to_owned(),
                        status.to_owned(),
                        c.detail.clone(),
                        c.fix.clone(),
                    ]
                })
                .collect();
            super::output::rows(format, &["check", "status", "detail", "fix"], rows)?;
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} check(s) failed: do what each one's fix says, then run doctor again"
        );
    }
    Ok(())
}

fn mode(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

fn data_directory(dir: &Path) -> Check {
    const NAME: &str = "data directory";
    if !dir.exists() {
        return fail(NAME, format!("{} does not exist", dir.display()), "give --data-dir (or AUTHLEDGER_DATA_DIR) of a directory `authledger serve` or `init` made");
    }
    if !dir.is_dir() {
        return fail(
            NAME,
            format!("{} is not a directory", dir.display()),
            "give --data-dir a directory",
        );
    }
    match mode(dir) {
        Some(m) if m & 0o027 != 0 => warn(
            NAME,
            format!(
                "{} has mode {m:o}: other users may list or change it",
                dir.display()
            ),
            format!("chmod 700 {}", dir.display()),
        ),
        _ => ok(NAME, dir.display().to_string()),
    }
}

fn secret_files(dir: &Path) -> Check {
    const NAME: &str = "secret files";
    let mut files: Vec<PathBuf> = [
        KEK_FILE,
        crate::http::session::SESSION_KEY_FILE,
        super::init::ADMIN_FILE,
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    if let Ok(pem) = std::env::var("AUTHLEDGER_PRIVATE_KEY_PATH") {
        files.push(PathBuf::from(pem));
    }
    let open: Vec<String> = files
        .iter()
        .filter_map(|f| {
            mode(f)
                .filter(|m| m & 0o077 != 0)
                .map(|m| format!("{} ({m:o})", f.display()))
        })
        .collect();
    if open.is_empty() {
        ok(
            NAME,
            "the key files and admin.json are readable by their owner only",
        )
    } else {
        let paths: Vec<String> = open
            .iter()
            .map(|o| o.split(' ').next().unwrap_or_default().to_owned())
            .collect();
        fail(
            NAME,
            format!("readable by others: {}", open.join(", ")),
            format!(
                "chmod 600 {}, and find out who could have read them",
                paths.join(" ")
            ),
        )
    }
}

fn kek(dir: &Path, checks: &mut Vec<Check>) -> Option<Kek> {
    const NAME: &str = "key-encryption key";
    let env = std::env::var(KEK_ENV).ok();
    match Kek::load(dir, env.as_deref()) {
        Ok(Some(k)) => {
            let from = if env.is_some() {
                KEK_ENV.to_owned()
            } else {
                dir.join(KEK_FILE).display().to_string()
            };
            checks.push(ok(NAME, format!("loaded from {from}")));
            Some(k)
        }
        Ok(None) => {
            checks.push(fail(
                NAME,
                format!("neither {KEK_ENV} nor {} is there", dir.join(KEK_FILE).display()),
                format!("set {KEK_ENV} to the key the server runs with, or restore {KEK_FILE} from your backup"),
            ));
            None
        }
        Err(e) => {
            checks.push(fail(
                NAME,
                e.to_string(),
                format!("fix {KEK_ENV} or {KEK_FILE} as the message says"),
            ));
            None
        }
    }
}

fn keys_in_log(log: &crate::store::Log, kek: Option<&Kek>) -> Check {
    use crate::store::EventStore;
    use domain::keys::{KeyRing, KeyStatus};
    const NAME: &str = "signing keys";
    let events = match log.read_stream(domain::event::KEYS_STREAM, 1) {
        Ok(e) => e,
        Err(e) => {
            return fail(
                NAME,
                format!("reading the keys stream: {e}"),
                "see the log chain check",
            )
        }
    };
    let ring = KeyRing::from_events(events.iter().map(|e| &e.event));
    if ring.keys.is_empty() {
        return fail(
            NAME,
            "no signing key was ever recorded",
            "start the server once (`authledger serve`) or run `authledger init`",
        );
    }
    let Some(kek) = kek else {
        return fail(
            NAME,
            "not checked: no key-encryption key",
            format!("see the key-encryption key check ({KEK_ENV})"),
        );
    };
    let now = crate::clock::Clock::system().unix_now();
    let published: Vec<_> = ring
        .keys
        .iter()
        .filter(|k| ring.status(k, now) != KeyStatus::Retired)
        .collect();
    let unopened: Vec<String> = published
        .iter()
        .filter_map(|k| {
            let sealed = k.private_key.as_ref()?;
            kek.open(&k.kid, sealed)
                .err()
                .map(|e| format!("{}: {e}", k.kid))
        })
        .collect();
    if !unopened.is_empty() {
        return fail(
            NAME,
            format!("the key-encryption key does not open {}", unopened.join("; ")),
            format!("run with the {KEK_ENV} (or {KEK_FILE}) the keys were sealed with: restore it from your backup"),
        );
    }
    let active: Vec<_> = published
        .iter()
        .filter(|k| ring.status(k, now) == KeyStatus::Active)
        .collect();
    let old: Vec<String> = active
        .iter()
        .filter(|k| now - k.created_at > KEY_AGE_WARN_SECS)
        .map(|k| format!("{} ({})", k.kid, k.algorithm))
        .collect();
    let summary = format!(
        "{} active ({}), {} published in all; the key-encryption key opens each",
        active.len(),
        active
            .iter()
            .map(|k| k.algorithm.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        published.len()
    );
    if active.is_empty() {
        fail(
            NAME,
            "no active signing key",
            "start the server: it generates one per algorithm",
        )
    } else if !old.is_empty() {
        warn(
            NAME,
            format!("{summary}; signing for over 180 days: {}", old.join(", ")),
            "authledger keys rotate",
        )
    } else {
        ok(NAME, summary)
    }
}

fn keys_through_server(backend: &Backend) -> Check {
    const NAME: &str = "signing keys";
    match backend.list_keys() {
        Ok(keys) => {
            let active: Vec<String> = keys
                .iter()
                .filter(|k| k.status == "active")
                .map(|k| format!("{} ({})", k.kid, k.algorithm))
                .collect();
            if active.is_empty() {
                fail(
                    NAME,
                    "the server reports no active signing key",
                    "authledger keys rotate",
                )
            } else {
                ok(
                    NAME,
                    format!(
                        "active: {}; the server opened them at its start",
                        active.join(", ")
                    ),
                )
            }
        }
        Err(e) => fail(
            NAME,
            format!("listing the keys: {e:#}"),
            "check that the server answers its admin API",
        ),
    }
}

fn chain(outcome: anyhow::Result<Verification>) -> Check {
    const NAME: &str = "log chain";
    const FIX: &str = "restore the data directory from a backup, or see docs/operations.md, \"The log is damaged\", before serving from it";
    match outcome {
        Ok(Verification::Verified { events, head_position, head_hash, .. }) => ok(
            NAME,
            format!("{events} events verified, head position {head_position}, head hash {head_hash}"),
        ),
        Ok(Verification::Broken { position, reason, verified }) => fail(
            NAME,
            format!("the hash chain breaks at position {position}: {reason} ({verified} events verified before it)"),
            FIX,
        ),
        Err(e) => fail(NAME, format!("{e:#}"), FIX),
    }
}

fn disk_space(dir: &Path) -> Check {
    const NAME: &str = "disk space";
    match rustix::fs::statvfs(dir) {
        Ok(s) => {
            let free = s.f_bavail.saturating_mul(s.f_frsize);
            let mib = free >> 20;
            if free < FREE_FAIL {
                fail(NAME, format!("{mib} MiB free"), "free space on this filesystem: the log refuses writes (503) when it cannot make its next segment")
            } else if free < FREE_WARN {
                warn(
                    NAME,
                    format!("{mib} MiB free"),
                    "plan for more space, or compact (`authledger compact`)",
                )
            } else {
                ok(NAME, format!("{mib} MiB free"))
            }
        }
        Err(e) => warn(NAME, format!("not measured: {e}"), ""),
    }
}
