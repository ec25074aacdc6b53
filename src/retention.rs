//! Retention: compacting history that stopped mattering, in bounded batches, while the
//! server serves.
//!
//! A class names events that may go once they are older than a cutoff:
//! - `access-tokens`: `AccessTokenIssued` of tokens that expired before the cutoff, and the
//!   `TokenRevoked` of such tokens (a revocation of a whole refresh family stays);
//! - `assertions`: `JwtAssertionAccepted` whose `jti` stopped mattering (expiry + 30 s) before
//!   the cutoff.
//!
//! Each batch first appends a `HistoryCompacted` event (stream `retention`) that lists the runs
//! of positions it removes with the hashes the chain needs across them, waits for it to be
//! durable, then removes the events and their stream rows and records the runs in one atomic
//! batch, and finally deletes the projection rows those events wrote. The live projections then
//! hold what a replay of the compacted log builds. The default keeps everything: nothing
//! compacts until an operator asks (`authledger compact`, `POST /admin/api/compact`).

use crate::engine::{Engine, EngineError};
use crate::store::log::chain_hash;
use crate::store::verify::CompactedRun;
use crate::store::{EventStore, NewEvent, StoreError};
use domain::event::{CompactedRange, HistoryCompacted, RETENTION_STREAM};
use domain::{Event, Metadata, RecordedEvent};
use serde::{Deserialize, Serialize};

/// What may be compacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Access tokens that expired before the cutoff, and their revocations.
    AccessTokens,
    /// Accepted JWT assertions whose `jti` stopped mattering before the cutoff.
    Assertions,
}

impl Class {
    /// Parses `access-tokens` or `assertions`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "access-tokens" => Ok(Class::AccessTokens),
            "assertions" => Ok(Class::Assertions),
            other => Err(format!(
                "unknown retention class {other:?}; use access-tokens or assertions"
            )),
        }
    }

    /// The name, as events record it.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::AccessTokens => "access-tokens",
            Class::Assertions => "assertions",
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompactionReport {
    /// The class.
    pub class: String,
    /// The cutoff (Unix seconds).
    pub cutoff: i64,
    /// Batches run (each one `HistoryCompacted` event).
    pub batches: u64,
    /// Events removed.
    pub removed: u64,
    /// Runs of positions removed.
    pub runs: u64,
}

fn eligible(engine: &Engine, class: Class, cutoff: i64, e: &RecordedEvent) -> bool {
    match (class, &e.event) {
        (Class::AccessTokens, Event::AccessTokenIssued(t)) => t.expires_at < cutoff,
        // A revocation is recorded only for a known token, so one whose token is no longer in
        // the index outlived a compacted token.
        (Class::AccessTokens, Event::TokenRevoked(r)) if r.family_id.is_none() => {
            match engine.models.tokens.by_jti(&r.jti) {
                Ok(Some(t)) => t.record.expires_at < cutoff,
                Ok(None) => e.recorded_at.unix_timestamp() < cutoff,
                Err(_) => false,
            }
        }
        (Class::Assertions, Event::JwtAssertionAccepted(a)) => {
            a.expires_at.saturating_add(30) < cutoff
        }
        (Class::Assertions, Event::DpopProofAccepted(p)) => p.expires_at < cutoff,
        (Class::Assertions, Event::SamlAssertionAccepted(a)) => {
            a.expires_at.saturating_add(30) < cutoff
        }
        _ => false,
    }
}

/// Compacts `class` before `cutoff` in batches of at most `batch` events, until none is left;
/// `progress` gets the number removed so far.
pub fn compact(
    engine: &Engine,
    class: Class,
    cutoff: i64,
    batch: usize,
    metadata: &Metadata,
    mut progress: impl FnMut(u64),
) -> Result<CompactionReport, EngineError> {
    let batch = batch.clamp(1, 100_000);
    let mut report = CompactionReport {
        class: class.as_str().to_owned(),
        cutoff,
        ..CompactionReport::default()
    };
    let mut from = 1u64;
    loop {
        // Nothing near the head is touched: the commit hook is still writing the postings
        // block of recent events, and the writer chains the next event to the head.
        let head = engine.store.head_position();
        let block = projections::audit_log::BLOCK;
        let limit = (head / block).saturating_sub(1) * block;
        let mut picked: Vec<(RecordedEvent, Vec<u8>)> = Vec::new();
        let mut scanned_to = from;
        for stored in engine.store.raw_events(from) {
            let (position, bytes) = stored?;
            scanned_to = position + 1;
            if position >= limit {
                break;
            }
            let e = crate::store::log::decode(&bytes)?;
            if eligible(engine, class, cutoff, &e) {
                picked.push((e, bytes));
                if picked.len() == batch {
                    break;
                }
            }
        }
        if picked.is_empty() {
            if report.batches > 0 {
                // Once per compaction, not per batch (a checkpoint copies every projection):
                // the saved projections must not bring the removed events' rows back.
                engine.checkpoint()?;
            }
            return Ok(report);
        }
        let mut ranges: Vec<CompactedRange> = Vec::new();
        for (e, bytes) in &picked {
            let hash = chain_hash(bytes);
            match ranges.last_mut() {
                Some(r) if r.last + 1 == e.position => {
                    r.last = e.position;
                    r.last_hash = hash;
                }
                _ => ranges.push(CompactedRange {
                    first: e.position,
                    last: e.position,
                    prev_hash: e.prev_hash.clone(),
                    last_hash: hash,
                }),
            }
        }
        let record = Event::HistoryCompacted(HistoryCompacted {
            class: class.as_str().to_owned(),
            cutoff,
            removed: picked.len() as u64,
            runs: ranges.clone(),
        });
        let version = engine.writes.stream_version(RETENTION_STREAM)?;
        let recorded = engine
            .writes
            .append(
                RETENTION_STREAM,
                version,
                vec![NewEvent {
                    event: record,
                    metadata: metadata.clone(),
                }],
            )
            .wait()?;
        let compacted_by = recorded
            .first()
            .map(|e| e.position)
            .ok_or_else(|| StoreError::failed("the compaction record was not written"))?;
        let runs = runs_of(&ranges, compacted_by);
        match &engine.shared {
            // Every node's follower (this one's before the append above was answered) takes
            // the listed runs out of its copy when it copies the record; the database keeps
            // the rows' hashes only.
            Some(pg) => {
                let positions: Vec<u64> = picked.iter().map(|(e, _)| e.position).collect();
                let hashes: Vec<String> = picked.iter().map(|(_, b)| chain_hash(b)).collect();
                pg.tombstone(&positions, &hashes, compacted_by)?;
            }
            None => {
                let events: Vec<RecordedEvent> = picked.iter().map(|(e, _)| e.clone()).collect();
                remove_events(&engine.store, &engine.models, &engine.audit, &events, &runs)?;
            }
        }
        report.batches += 1;
        report.removed += picked.len() as u64;
        report.runs += runs.len() as u64;
        progress(report.removed);
        tracing::info!(
            class = class.as_str(),
            removed = picked.len(),
            runs = runs.len(),
            compacted_by,
            "compacted a batch of history"
        );
        from = scanned_to;
    }
}

/// Takes compacted events out of a log and the projections: the runs are recorded first,
/// then the events removed, then their rows forgotten by the token index and the audit
/// postings.
fn remove_events(
    store: &crate::store::Log,
    models: &projections::ReadModels,
    audit: &crate::engine::AuditFollower,
    events: &[RecordedEvent],
    runs: &[CompactedRun],
) -> Result<(), EngineError> {
    let removed: Vec<(u64, String, u64)> = events
        .iter()
        .map(|e| (e.position, e.stream.clone(), e.version))
        .collect();
    store.remove_compacted(&removed, runs)?;
    let refs: Vec<&RecordedEvent> = events.iter().collect();
    models.tokens.forget(&refs)?;
    // The postings of the removed events must be there to be taken out.
    audit
        .wait_for_writes(std::time::Duration::from_secs(60))
        .map_err(StoreError::Unavailable)?;
    models.audit.forget(&refs, store)?;
    Ok(())
}

/// What a node of a shared log does with a copied `HistoryCompacted` at `compacted_by`: the
/// events of the runs it lists leave this node's copy and projections, as they left the
/// compacting node's. Events the copy never held (a run stepped over while copying) are
/// skipped; the runs are recorded either way.
pub fn apply_copied(
    store: &crate::store::Log,
    models: &projections::ReadModels,
    audit: &crate::engine::AuditFollower,
    record: &HistoryCompacted,
    compacted_by: u64,
) -> Result<(), EngineError> {
    let runs = runs_of(&record.runs, compacted_by);
    let mut events = Vec::new();
    for run in &runs {
        for p in run.first..=run.last {
            if let Some(bytes) = store.raw_event(p)? {
                events.push(crate::store::log::decode(&bytes)?);
            }
        }
    }
    remove_events(store, models, audit, &events, &runs)
}

/// The runs a `HistoryCompacted` at `compacted_by` lists, as the log records them.
fn runs_of(ranges: &[CompactedRange], compacted_by: u64) -> Vec<CompactedRun> {
    ranges
        .iter()
        .map(|r| CompactedRun {
            first: r.first,
            last: r.last,
            prev_hash: r.prev_hash.clone(),
            last_hash: r.last_hash.clone(),
            compacted_by,
        })
        .collect()
}
