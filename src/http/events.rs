//! `GET /admin/api/events/stream`: the log as Server-Sent Events, for shipping the trail to a
//! SIEM or following it from the CLI (`audit tail --follow`).
//!
//! Each event is sent as `id: <position>`, `event: <type>`, `data: <the recorded event as
//! JSON>`. The stream reads the log in chunks from its own cursor and sleeps on the store's
//! head watch when it has caught up, so a slow reader holds no buffer of its own and a resumed
//! reader (`from=`, or the `Last-Event-ID` header a browser's `EventSource` sends) gets every
//! event after that position exactly once, in order.

use super::admin::{audit_params, authorize};
use super::error::OAuthError;
use super::AppState;
use crate::store::EventStore;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::stream;
use projections::AuditFilter;
use std::time::Duration;
use tokio::sync::watch;

/// Events read per chunk.
const CHUNK: usize = 256;
/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

struct Cursor {
    state: web::Data<AppState>,
    filter: AuditFilter,
    next: u64,
    head: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    pending: std::vec::IntoIter<Bytes>,
    last_sent: std::time::Instant,
    /// Whether the `: caught up` comment went out: what follows it is live.
    caught_up: bool,
}

/// `GET /admin/api/events/stream?from=POSITION&client=&subject=&type=&request_id=
/// &correlation_id=`: every event from `from` on (default: only new ones), then each new one.
#[utoipa::path(
    get,
    path = "/admin/api/events/stream",
    tag = "admin",
    operation_id = "admin_events_stream",
    params(("from" = Option<u64>, Query, description = "Replay from this position first"), ("client" = Option<String>, Query, description = "Only this client's events"), ("subject" = Option<String>, Query, description = "Only this subject's events"), ("type" = Option<String>, Query, description = "Only these event types (comma-separated)")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Server-sent events: each event recorded from now on (or from `from`) that matches the filters", body = String, content_type = "text/event-stream"),
        crate::http::openapi::AdminErrors,
    )
)]
pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    authorize(&req, &state)?;
    let params = audit_params(req.query_string(), &["from"])?;
    if params.since.is_some()
        || params.until.is_some()
        || params.order.is_some()
        || params.after.is_some()
        || params.before.is_some()
        || params.limit.is_some()
        || params.as_of.is_some()
    {
        return Err(OAuthError::invalid_request(
            "the stream takes from= and the filters (client, subject, type, request_id, \
             correlation_id); time bounds, order, cursors and as_of belong to /admin/api/audit",
        ));
    }
    let filter = params.filter()?;
    let from_query = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "from")
        .map(|(_, v)| {
            v.parse::<u64>()
                .map_err(|_| OAuthError::invalid_request("from must be a position (a number)"))
        })
        .transpose()?;
    // A reconnecting EventSource names the last event it got; that wins over `from`.
    let last_seen = req
        .headers()
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| OAuthError::invalid_request("Last-Event-ID must be a position"))
        })
        .transpose()?;
    let next = match (last_seen, from_query) {
        (Some(seen), _) => seen.saturating_add(1),
        (None, Some(from)) => from.max(1),
        (None, None) => state.engine.store.head_position() + 1,
    };
    let cursor = Cursor {
        head: state.engine.store.watch_head(),
        shutdown: state.shutdown.clone(),
        state,
        filter,
        next,
        pending: Vec::new().into_iter(),
        last_sent: std::time::Instant::now(),
        caught_up: false,
    };
    let body = stream::unfold(cursor, |mut c| async move {
        let chunk = c.next_chunk().await?;
        Some((Ok::<_, actix_web::Error>(chunk), c))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Tells nginx not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

impl Cursor {
    /// The next piece of the body; `None` ends the stream (the server is stopping).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.next() {
                self.last_sent = std::time::Instant::now();
                return Some(b);
            }
            // A filter may pass nothing for long on a busy log: keep the stream visibly alive.
            if self.last_sent.elapsed() >= KEEP_ALIVE {
                self.last_sent = std::time::Instant::now();
                return Some(Bytes::from_static(b": keep-alive\n\n"));
            }
            if *self.shutdown.borrow() {
                return None;
            }
            let events = match self.state.engine.store.read_all(self.next, CHUNK) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "reading the log for the event stream failed");
                    return None;
                }
            };
            if let Some(last) = events.last() {
                self.next = last.position + 1;
                let frames: Vec<Bytes> = events
                    .iter()
                    .filter(|e| self.filter.matches(e))
                    .filter_map(|e| {
                        let data =
                            serde_json::to_string(&crate::service::redact(e.clone())).ok()?;
                        Some(Bytes::from(format!(
                            "id: {}\nevent: {}\ndata: {data}\n\n",
                            e.position,
                            e.event.type_name()
                        )))
                    })
                    .collect();
                self.pending = frames.into_iter();
                continue;
            }
            // Caught up: wait for the head to move, the server to stop, or the keep-alive.
            self.head.mark_unchanged();
            if self.state.engine.store.head_position() >= self.next {
                continue;
            }
            if !self.caught_up {
                // Once, as an SSE comment (EventSource ignores it): a reader that wants to
                // tell the backlog from live events knows that every event after this is new.
                self.caught_up = true;
                self.last_sent = std::time::Instant::now();
                return Some(Bytes::from(format!(
                    ": caught up at position {}\n\n",
                    self.next.saturating_sub(1)
                )));
            }
            tokio::select! {
                changed = self.head.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = self.shutdown.changed() => {}
                _ = actix_web::rt::time::sleep(KEEP_ALIVE.saturating_sub(self.last_sent.elapsed())) => {}
            }
        }
    }
}
