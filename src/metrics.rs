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
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
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

// Each thread keeps the handles of the series it has touched: the registry's lookup builds a
// key (its labels allocated) and hashes it, which on the hot path and on the log's writer
// thread costs more than the atomic add itself (bench/metrics.sh). A handle is found by a hash
// of the name and label values, then compared, so nothing is allocated once a series exists.
thread_local! {
    static COUNTERS: RefCell<Series<metrics::Counter>> = RefCell::new(Series::default());
    static HISTOGRAMS: RefCell<Series<metrics::Histogram>> = RefCell::new(Series::default());
}

/// A series' name and label values, as kept beside its handle.
type Values = Box<[Box<str>]>;

/// Handles by series: the hash of name and label values, then the values themselves.
struct Series<H> {
    by_hash: HashMap<u64, Vec<(Values, H)>>,
}

impl<H> Default for Series<H> {
    fn default() -> Self {
        Self {
            by_hash: HashMap::new(),
        }
    }
}

impl<H: Clone> Series<H> {
    /// The handle of `name` with `labels`, registered by `make` the first time.
    fn get(
        &mut self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        make: impl FnOnce(Vec<metrics::Label>) -> H,
    ) -> H {
        let mut hasher = std::hash::DefaultHasher::new();
        name.hash(&mut hasher);
        for (k, v) in labels {
            k.hash(&mut hasher);
            v.hash(&mut hasher);
        }
        let bucket = self.by_hash.entry(hasher.finish()).or_default();
        let same = |values: &[Box<str>]| {
            values.len() == labels.len() + 1
                && *values[0] == *name
                && values[1..].iter().zip(labels).all(|(a, (_, b))| **a == **b)
        };
        if let Some((_, h)) = bucket.iter().find(|(values, _)| same(values)) {
            return h.clone();
        }
        let values: Values = std::iter::once(name)
            .chain(labels.iter().map(|(_, v)| *v))
            .map(Box::from)
            .collect();
        let made = make(
            labels
                .iter()
                .map(|(k, v)| metrics::Label::new(*k, (*v).to_owned()))
                .collect(),
        );
        bucket.push((values, made.clone()));
        made
    }
}

/// Adds `n` to the counter `name` with `labels`.
fn count(name: &'static str, labels: &[(&'static str, &str)], n: u64) {
    COUNTERS.with(|c| {
        c.borrow_mut()
            .get(name, labels, |l| metrics::counter!(name, l))
            .increment(n)
    });
}

/// Records `value` in the histogram `name` with `labels`.
fn observe(name: &'static str, labels: &[(&'static str, &str)], value: f64) {
    HISTOGRAMS.with(|h| {
        h.borrow_mut()
            .get(name, labels, |l| metrics::histogram!(name, l))
            .record(value)
    });
}

/// Counts the events this node made durable: called once per append, after it is durable.
pub fn appended(events: &[Arc<RecordedEvent>]) {
    if !enabled() {
        return;
    }
    for e in events {
        count(EVENTS_APPENDED, &[("type", e.event.type_name())], 1);
        let token = |token, grant, client: &domain::values::ClientId| {
            count(
                TOKENS_ISSUED,
                &[
                    ("token", token),
                    ("grant_type", grant),
                    ("client_id", client.as_str()),
                ],
                1,
            )
        };
        match &e.event {
            Event::AccessTokenIssued(t) => {
                token("access_token", t.grant_type.as_str(), &t.client_id)
            }
            Event::RefreshTokenIssued(t) => {
                let grant = if t.generation == 0 {
                    "initial"
                } else {
                    "refresh_token"
                };
                token("refresh_token", grant, &t.client_id)
            }
            Event::IdTokenIssued(t) => token("id_token", "openid", &t.client_id),
            Event::TokenRevoked(r) => {
                let what = if r.family_id.is_some() {
                    "refresh_family"
                } else {
                    "access_token"
                };
                count(REVOCATIONS, &[("revoked", what)], 1);
            }
            Event::AuthorizationRevoked(_) => {
                count(REVOCATIONS, &[("revoked", "authorization")], 1)
            }
            Event::RefreshTokenReuseDetected(_) => {
                count(REVOCATIONS, &[("revoked", "reused_refresh_family")], 1)
            }
            Event::UserLoginFailed(f) => {
                let reason = match f.reason {
                    domain::event::LoginFailure::UnknownUser => "unknown_user",
                    domain::event::LoginFailure::WrongPassword => "wrong_password",
                    domain::event::LoginFailure::Throttled => "throttled",
                    domain::event::LoginFailure::AccountLocked => "account_locked",
                };
                count(FAILED_LOGINS, &[("reason", reason)], 1);
            }
            _ => {}
        }
    }
}

/// One group commit: how many events it held and how long making it durable took.
pub fn group_commit(events: usize, took: Duration) {
    if !enabled() {
        return;
    }
    observe(GROUP_EVENTS, &[], events as f64);
    observe(SYNC_SECONDS, &[], took.as_secs_f64());
}

/// Static routes by path, then by method.
type Endpoints = HashMap<Box<str>, Vec<(actix_web::http::Method, Endpoint)>>;

/// The series of one route and method: its latency histogram and a counter per status.
struct Endpoint {
    latency: metrics::Histogram,
    by_status: Vec<(u16, metrics::Counter)>,
}

thread_local! {
    /// Static routes by method and path: found without the router's pattern lookup and
    /// without hashing labels. Paths that hold ids (`/admin/api/clients/{id}`) and unmatched
    /// ones are never kept, so what a client sends cannot grow this.
    static ENDPOINTS: RefCell<Endpoints> = RefCell::new(HashMap::new());
}

/// One answered request (called only when [`enabled`]): `pattern` gives the route's
/// pattern when the path is not a static route seen before.
pub fn request(
    method: &actix_web::http::Method,
    path: &str,
    pattern: impl FnOnce() -> Option<String>,
    status: u16,
    took: Duration,
) {
    // Any token is a method to actix: only the standard ones become labels, or a client could
    // mint series (and cache entries) at will.
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    let Some(label) = KNOWN.iter().find(|m| **m == method.as_str()) else {
        observe(
            HTTP_DURATION,
            &[("endpoint", "unmatched"), ("method", "other")],
            took.as_secs_f64(),
        );
        status_counter("unmatched", "other", status).increment(1);
        return;
    };
    let method_label: &str = label;
    ENDPOINTS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let known = cache
            .get_mut(path)
            .and_then(|by_method| by_method.iter_mut().find(|(m, _)| m == method))
            .map(|(_, e)| e);
        if let Some(e) = known {
            e.latency.record(took.as_secs_f64());
            let counter = match e.by_status.iter().find(|(s, _)| *s == status) {
                Some((_, c)) => c.clone(),
                None => {
                    let c = status_counter(path, method_label, status);
                    e.by_status.push((status, c.clone()));
                    c
                }
            };
            counter.increment(1);
            return;
        }
        let pattern = pattern();
        let endpoint = pattern.as_deref().unwrap_or("unmatched");
        observe(
            HTTP_DURATION,
            &[("endpoint", endpoint), ("method", method_label)],
            took.as_secs_f64(),
        );
        let counter = status_counter(endpoint, method_label, status);
        counter.increment(1);
        if pattern.as_deref() == Some(path) {
            let latency = HISTOGRAMS.with(|h| {
                h.borrow_mut().get(
                    HTTP_DURATION,
                    &[("endpoint", endpoint), ("method", method_label)],
                    |l| metrics::histogram!(HTTP_DURATION, l),
                )
            });
            cache.entry(Box::from(path)).or_default().push((
                method.clone(),
                Endpoint {
                    latency,
                    by_status: vec![(status, counter)],
                },
            ));
        }
    });
}

/// The request counter of one route, method and status.
fn status_counter(endpoint: &str, method: &str, status: u16) -> metrics::Counter {
    let digits = status_digits(status);
    let status = std::str::from_utf8(&digits).unwrap_or("000");
    COUNTERS.with(|c| {
        c.borrow_mut().get(
            HTTP_REQUESTS,
            &[
                ("endpoint", endpoint),
                ("method", method),
                ("status", status),
            ],
            |l| metrics::counter!(HTTP_REQUESTS, l),
        )
    })
}

/// An HTTP status's three digits, without allocating.
fn status_digits(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

/// One introspection answer.
pub fn introspection(result: &'static str) {
    static BY_RESULT: OnceLock<[metrics::Counter; 3]> = OnceLock::new();
    if !enabled() {
        return;
    }
    let counters = BY_RESULT.get_or_init(|| {
        ["active", "inactive", "refused"].map(|r| metrics::counter!(INTROSPECTIONS, "result" => r))
    });
    let i = match result {
        "active" => 0,
        "inactive" => 1,
        _ => 2,
    };
    counters[i].increment(1);
}

/// One request refused by `limit` (a rate limit or a sign-in throttle).
pub fn throttled(limit: &'static str) {
    if enabled() {
        count(THROTTLED, &[("limit", limit)], 1);
    }
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
