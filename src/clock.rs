//! The server's one clock. Every reading of wall time in the server (expiries, sign-in waits,
//! rate limits, the log's `recorded_at`) goes through a [`Clock`]: `serve` makes one, the
//! engine stamps the log with it and the HTTP layer reads it from `AppState`. The server crate
//! bans direct wall-clock reads (`clippy.toml`); this module holds the only one.
//!
//! A clock is the system clock plus an offset that starts at zero. The offset moves only on a
//! movable clock (`serve --test-clock`), through `POST /admin/api/clock`: black-box tests then
//! make time pass (a code expiring, a sign-in wait ending) without sleeping, or set it back.
//!
//! **It never goes backwards.** If the system clock steps back (NTP, an operator, a VM
//! restored from a snapshot), an expired code, token or session must not become valid again.
//! [`Clock::now`] answers the latest time it has answered before, or the time of the last
//! recorded event ([`Clock::not_before`], set when the log opens), whichever is later, until
//! the system clock catches up; the step is logged once per step.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

/// Steps back of less than this are the jitter of reading the clock from several threads.
const LOG_STEP_NS: i64 = 1_000_000_000;

#[derive(Debug)]
struct Inner {
    movable: bool,
    offset_ns: AtomicI64,
    /// The latest time answered, in Unix nanoseconds.
    high_water_ns: AtomicI64,
    /// Whether the current step back has been logged.
    step_logged: AtomicBool,
}

/// A clock of the server's (cheap to clone: clones share their time).
#[derive(Debug, Clone)]
pub struct Clock(Arc<Inner>);

fn to_ns(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn from_ns(ns: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

impl Clock {
    fn new(movable: bool) -> Self {
        Self(Arc::new(Inner {
            movable,
            offset_ns: AtomicI64::new(0),
            high_water_ns: AtomicI64::new(i64::MIN),
            step_logged: AtomicBool::new(false),
        }))
    }

    /// The system clock, kept monotonic.
    pub fn system() -> Self {
        Self::new(false)
    }

    /// A clock that [`Clock::advance`] and [`Clock::set_back`] move (`serve --test-clock`,
    /// and tests).
    pub fn movable() -> Self {
        Self::new(true)
    }

    /// Wall time now: never earlier than any time this clock answered before.
    pub fn now(&self) -> time::OffsetDateTime {
        #[allow(
            clippy::disallowed_methods,
            reason = "the one reading of the system clock"
        )]
        let system = time::OffsetDateTime::now_utc();
        let inner = &self.0;
        let raw = to_ns(system).saturating_add(inner.offset_ns.load(Ordering::Relaxed));
        let before = inner.high_water_ns.fetch_max(raw, Ordering::AcqRel);
        if raw >= before {
            if inner.step_logged.load(Ordering::Relaxed) {
                inner.step_logged.store(false, Ordering::Relaxed);
                tracing::info!("the system clock has caught up with the server's time again");
            }
            return from_ns(raw);
        }
        if before - raw >= LOG_STEP_NS && !inner.step_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                step_back_ms = (before - raw) / 1_000_000,
                kept_at = %from_ns(before),
                "the system clock stepped back; the server's time stands still until it \
                 catches up, so that nothing expired becomes valid again"
            );
        }
        from_ns(before)
    }

    /// Unix seconds now.
    pub fn unix_now(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// Unix milliseconds now.
    pub fn unix_now_ms(&self) -> i64 {
        i64::try_from(self.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// Makes [`Clock::now`] answer no earlier than `t` (the time of the last recorded event).
    pub fn not_before(&self, t: time::OffsetDateTime) {
        self.0.high_water_ns.fetch_max(to_ns(t), Ordering::AcqRel);
    }

    /// Moves a movable clock `ms` milliseconds forward; answers whether it may move.
    pub fn advance(&self, ms: u32) -> bool {
        if !self.0.movable {
            return false;
        }
        self.0
            .offset_ns
            .fetch_add(i64::from(ms) * 1_000_000, Ordering::SeqCst);
        true
    }

    /// Sets the system clock under a movable clock `ms` milliseconds back, as an NTP step
    /// would; [`Clock::now`] then stands still until it catches up. Answers whether it may.
    pub fn set_back(&self, ms: u32) -> bool {
        if !self.0.movable {
            return false;
        }
        self.0
            .offset_ns
            .fetch_sub(i64::from(ms) * 1_000_000, Ordering::SeqCst);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_never_goes_back_and_the_floor_holds() {
        let clock = Clock::movable();
        let a = clock.now();
        assert!(clock.advance(60_000));
        let b = clock.now();
        assert!(b - a >= time::Duration::seconds(60));
        assert!(clock.set_back(3_600_000));
        let c = clock.now();
        assert!(c >= b, "an hour set back: time stands at {b}, not {c}");
        let later = c + time::Duration::hours(2);
        clock.not_before(later);
        assert!(clock.now() >= later, "the last recorded time is a floor");
        let fixed = Clock::system();
        assert!(!fixed.advance(1) && !fixed.set_back(1));
    }
}
