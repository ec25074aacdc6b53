//! Prometheus metrics: what `GET /metrics` shows (ADR 0025).
//!
//! The `metrics` facade records; `metrics-exporter-prometheus` aggregates and renders the text
//! format. Nothing is recorded until [`install`] sets the process's recorder, so a server
//! started with metrics off pays only for the facade's no-op calls.
//!
//! Counters that follow the log (events, tokens, revocations, failed sign-ins) are taken from
//! the events this node made durable, once each, by [`appended`]: the same facts the audit
//! trail shows, whichever endpoint, CLI command or admin page caused them. Gauges that
//! describe state (projection lag, live actors, live tokens) are read when scraped
//! ([`Gauges`]).

use domain::{Event, RecordedEvent};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// HTTP requests, by route pattern, method and status.
pub const HTTP_REQUESTS: &str = "authledger_http_requests_total";
/// Request latency, by route pattern and method.
pub const HTTP_DURATION: &str = "authledger_http_request_duration_seconds";
/// Access, refresh and id tokens issued, by token, grant type and client.
pub const TOKENS_ISSUED: &str = "authledger_tokens_issued_total";
/// Introspections, by result: active, inactive, refused.
pub const INTROSPECTIONS: &str = "authledger_introspections_total";
/// Revocations recorded, by what was revoked.
pub const REVOCATIONS: &str = "authledger_revocations_total";
/// Events this node appended, by type.
pub const EVENTS_APPENDED: &str = "authledger_events_appended_total";
/// Events per group commit.
pub const GROUP_EVENTS: &str = "authledger_log_group_commit_events";
/// Time to make one group durable: the write and its fsync (or the PostgreSQL commit).
pub const SYNC_SECONDS: &str = "authledger_log_sync_seconds";
/// Failed sign-ins, by reason.
pub const FAILED_LOGINS: &str = "authledger_failed_logins_total";
/// Requests refused by a rate limit or a sign-in throttle, by which.
pub const THROTTLED: &str = "authledger_throttled_requests_total";
/// Events the audit trail has still to apply.
pub const PROJECTION_LAG_EVENTS: &str = "authledger_projection_lag_events";
/// How long the oldest event the audit trail has still to apply has waited.
pub const PROJECTION_LAG_SECONDS: &str = "authledger_projection_lag_seconds";
/// Client actors in memory.
pub const LIVE_ACTORS: &str = "authledger_live_actors";
/// Unexpired, unrevoked access tokens in the token index's compact table.
pub const LIVE_TOKENS: &str = "authledger_live_access_tokens";
/// The log's head position.
pub const HEAD_POSITION: &str = "authledger_log_head_position";

/// Latency buckets in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Group sizes: 1 to the log's largest group (1024).
const GROUP_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Whether this process records metrics: callers skip building labels when it does not.
pub fn enabled() -> bool {
    matches!(HANDLE.get(), Some(Some(_)))
}

/// Sets this process's recorder once and answers its handle; later calls answer the same.
/// `None` when another recorder was set first (a test harness), and metrics stay off.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(GROUP_EVENTS.into()), GROUP_BUCKETS)
                .and_then(|b| b.set_buckets(LATENCY_BUCKETS))
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

/// Drains the histograms' samples into their buckets every few seconds, so that memory stays
/// bounded between scrapes. Runs on a thread of its own until the process ends.
pub fn start_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "starting the metrics upkeep thread failed; histograms drain at each scrape only");
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route, method and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer a request, by route and method"
    );
    describe_counter!(
        TOKENS_ISSUED,
        "Tokens issued (recorded as events), by token, grant type and client"
    );
    describe_counter!(
        INTROSPECTIONS,
        "Introspection answers, by result: active, inactive, refused"
    );
    describe_counter!(REVOCATIONS, "Revocations recorded, by what was revoked");
    describe_counter!(
        EVENTS_APPENDED,
        "Events this node appended to the log, by type"
    );
    describe_histogram!(
        GROUP_EVENTS,
        Unit::Count,
        "Events made durable together in one group commit"
    );
    describe_histogram!(
        SYNC_SECONDS,
        Unit::Seconds,
        "Time to make one group durable (write and fsync, or the database commit)"
    );
    describe_counter!(FAILED_LOGINS, "Failed sign-ins, by reason");
    describe_counter!(
        THROTTLED,
        "Requests refused by a rate limit or sign-in throttle, by which"
    );
    describe_gauge!(
        PROJECTION_LAG_EVENTS,
        Unit::Count,
        "Events the audit trail has not applied yet"
    );
    describe_gauge!(
        PROJECTION_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest event the audit trail has not applied yet"
    );
    describe_gauge!(LIVE_ACTORS, Unit::Count, "Client actors in memory");
    describe_gauge!(
        LIVE_TOKENS,
        Unit::Count,
        "Unexpired, unrevoked access tokens in the token index's compact table"
    );
    describe_gauge!(
        HEAD_POSITION,
        Unit::Count,
        "Position of the last durable event"
    );
}

/// Counts the events this node made durable: called once per append, after it is durable.
pub fn appended(events: &[Arc<RecordedEvent>]) {
    for e in events {
        metrics::counter!(EVENTS_APPENDED, "type" => e.event.type_name()).increment(1);
        match &e.event {
            Event::AccessTokenIssued(t) => {
                metrics::counter!(TOKENS_ISSUED,
                    "token" => "access_token",
                    "grant_type" => t.grant_type.as_str().to_owned(),
                    "client_id" => t.client_id.to_string())
                .increment(1);
            }
            Event::RefreshTokenIssued(t) => {
                metrics::counter!(TOKENS_ISSUED,
                    "token" => "refresh_token",
                    "grant_type" => if t.generation == 0 { "initial" } else { "refresh_token" },
                    "client_id" => t.client_id.to_string())
                .increment(1);
            }
            Event::IdTokenIssued(t) => {
                metrics::counter!(TOKENS_ISSUED,
                    "token" => "id_token",
                    "grant_type" => "openid",
                    "client_id" => t.client_id.to_string())
                .increment(1);
            }
            Event::TokenRevoked(r) => {
                let what = if r.family_id.is_some() {
                    "refresh_family"
                } else {
                    "access_token"
                };
                metrics::counter!(REVOCATIONS, "revoked" => what).increment(1);
            }
            Event::AuthorizationRevoked(_) => {
                metrics::counter!(REVOCATIONS, "revoked" => "authorization").increment(1);
            }
            Event::RefreshTokenReuseDetected(_) => {
                metrics::counter!(REVOCATIONS, "revoked" => "reused_refresh_family").increment(1);
            }
            Event::UserLoginFailed(f) => {
                let reason = match f.reason {
                    domain::event::LoginFailure::UnknownUser => "unknown_user",
                    domain::event::LoginFailure::WrongPassword => "wrong_password",
                    domain::event::LoginFailure::Throttled => "throttled",
                };
                metrics::counter!(FAILED_LOGINS, "reason" => reason).increment(1);
            }
            _ => {}
        }
    }
}

/// One group commit: how many events it held and how long making it durable took.
pub fn group_commit(events: usize, took: Duration) {
    metrics::histogram!(GROUP_EVENTS).record(events as f64);
    metrics::histogram!(SYNC_SECONDS).record(took.as_secs_f64());
}

/// One answered request.
pub fn request(endpoint: &str, method: &str, status: u16, took: Duration) {
    let (endpoint, method) = (endpoint.to_owned(), method.to_owned());
    metrics::histogram!(HTTP_DURATION, "endpoint" => endpoint.clone(), "method" => method.clone())
        .record(took.as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "endpoint" => endpoint, "method" => method, "status" => status.to_string())
        .increment(1);
}

/// One introspection answer.
pub fn introspection(result: &'static str) {
    metrics::counter!(INTROSPECTIONS, "result" => result).increment(1);
}

/// One request refused by `limit` (a rate limit or a sign-in throttle).
pub fn throttled(limit: &'static str) {
    metrics::counter!(THROTTLED, "limit" => limit).increment(1);
}

/// What is read from the server's state when scraped.
pub struct Gauges {
    /// Events the audit trail has not applied.
    pub projection_lag_events: u64,
    /// Age in seconds of the oldest of them (0 when none).
    pub projection_lag_seconds: f64,
    /// Client actors in memory.
    pub live_actors: usize,
    /// Live access tokens in the compact table.
    pub live_tokens: usize,
    /// The log's head.
    pub head_position: u64,
}

/// Renders the text format with `gauges` set first.
pub fn render(handle: &PrometheusHandle, gauges: &Gauges) -> String {
    metrics::gauge!(PROJECTION_LAG_EVENTS, "projection" => "audit")
        .set(gauges.projection_lag_events as f64);
    metrics::gauge!(PROJECTION_LAG_SECONDS, "projection" => "audit")
        .set(gauges.projection_lag_seconds);
    metrics::gauge!(LIVE_ACTORS).set(gauges.live_actors as f64);
    metrics::gauge!(LIVE_TOKENS).set(gauges.live_tokens as f64);
    metrics::gauge!(HEAD_POSITION).set(gauges.head_position as f64);
    handle.render()
}
