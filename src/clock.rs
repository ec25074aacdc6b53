//! The server's one clock: every reading of wall time in the server (`unix_now`, the log's
//! `recorded_at`) comes from [`now`].
//!
//! It is the system clock plus an offset that starts at zero and moves only on a server started
//! with the hidden `serve --test-clock`, through `POST /admin/api/clock`: black-box tests then
//! make time pass (a code expiring, a sign-in wait ending) without sleeping, or set it back.
//!
//! **It never goes backwards.** If the system clock steps back (NTP, an operator, a VM
//! restored from a snapshot), an expired code, token or session must not become valid again.
//! [`now`] answers the latest time it has answered before, or the time of the last recorded
//! event ([`not_before`], set when the log opens), whichever is later, until the system clock
//! catches up; the step is logged once per step.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

static OFFSET_NS: AtomicI64 = AtomicI64::new(0);
static MOVABLE: AtomicBool = AtomicBool::new(false);
/// The latest time answered, in Unix nanoseconds.
static HIGH_WATER_NS: AtomicI64 = AtomicI64::new(i64::MIN);
/// Whether the current step back has been logged.
static STEP_LOGGED: AtomicBool = AtomicBool::new(false);

/// Steps back of less than this are the jitter of reading the clock from several threads.
const LOG_STEP_NS: i64 = 1_000_000_000;

fn to_ns(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn from_ns(ns: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Wall time now, as the server sees it: never earlier than any time it answered before.
pub fn now() -> time::OffsetDateTime {
    #[allow(
        clippy::disallowed_methods,
        reason = "the one reading of the system clock"
    )]
    let system = time::OffsetDateTime::now_utc();
    let raw = to_ns(system).saturating_add(OFFSET_NS.load(Ordering::Relaxed));
    let before = HIGH_WATER_NS.fetch_max(raw, Ordering::AcqRel);
    if raw >= before {
        if STEP_LOGGED.load(Ordering::Relaxed) {
            STEP_LOGGED.store(false, Ordering::Relaxed);
            tracing::info!("the system clock has caught up with the server's time again");
        }
        return from_ns(raw);
    }
    if before - raw >= LOG_STEP_NS && !STEP_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            step_back_ms = (before - raw) / 1_000_000,
            kept_at = %from_ns(before),
            "the system clock stepped back; the server's time stands still until it catches up, \
             so that nothing expired becomes valid again"
        );
    }
    from_ns(before)
}

/// Makes [`now`] answer no earlier than `t` (the time of the last recorded event).
pub fn not_before(t: time::OffsetDateTime) {
    HIGH_WATER_NS.fetch_max(to_ns(t), Ordering::AcqRel);
}

/// Lets [`advance`] and [`set_back`] move the clock (`serve --test-clock`).
pub fn allow_moving() {
    MOVABLE.store(true, Ordering::SeqCst);
}

/// Moves the clock `ms` milliseconds forward; answers whether it was allowed to.
pub fn advance(ms: u32) -> bool {
    if !MOVABLE.load(Ordering::SeqCst) {
        return false;
    }
    OFFSET_NS.fetch_add(i64::from(ms) * 1_000_000, Ordering::SeqCst);
    true
}

/// Sets the underlying clock `ms` milliseconds back, as an NTP step would; [`now`] then stands
/// still until it catches up. Answers whether it was allowed to.
pub fn set_back(ms: u32) -> bool {
    if !MOVABLE.load(Ordering::SeqCst) {
        return false;
    }
    OFFSET_NS.fetch_sub(i64::from(ms) * 1_000_000, Ordering::SeqCst);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_never_goes_back_and_the_floor_holds() {
        let a = now();
        let b = now();
        assert!(b >= a);
        let later = a + time::Duration::hours(1);
        not_before(later);
        assert!(now() >= later, "the last recorded time is a floor");
    }
}
