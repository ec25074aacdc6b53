//! The server's one clock: every reading of wall time in the server (`unix_now`, the log's
//! `recorded_at`) comes from [`now`]. It is the system clock plus an offset that starts at zero
//! and moves only on a server started with the hidden `serve --test-clock`, through
//! `POST /admin/api/clock`: black-box tests then make time pass (a code expiring, a sign-in
//! wait ending) without sleeping. It only ever moves forward, so recorded times stay ordered.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

static OFFSET_MS: AtomicI64 = AtomicI64::new(0);
static MOVABLE: AtomicBool = AtomicBool::new(false);

/// Wall time now, as the server sees it.
pub fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
        + time::Duration::milliseconds(OFFSET_MS.load(Ordering::Relaxed))
}

/// Lets [`advance`] move the clock (`serve --test-clock`).
pub fn allow_moving() {
    MOVABLE.store(true, Ordering::SeqCst);
}

/// Moves the clock `ms` milliseconds forward; answers whether it was allowed to.
pub fn advance(ms: u32) -> bool {
    if !MOVABLE.load(Ordering::SeqCst) {
        return false;
    }
    OFFSET_MS.fetch_add(i64::from(ms), Ordering::SeqCst);
    true
}
