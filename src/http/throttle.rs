//! Sign-in throttling, for the login page and the password grant alike.
//!
//! Failures are counted over a sliding 15-minute window under three keys. Past a key's
//! threshold, each further attempt must wait 2^(failures − threshold) seconds after the last
//! failure, up to the key's cap; attempts refused while waiting are not counted, so waiting
//! always ends. The per-user key has a low cap (60 s): someone guessing elsewhere can slow a
//! user down but never lock them out. The per-address and per-user-and-address keys, which
//! only an attacker's own address feeds, go up to 15 minutes.
//!
//! Times are kept in milliseconds: a wait of one second measured in whole seconds could end
//! the moment it began, when the failure and the next attempt fall either side of a second's
//! boundary. Waits are answered in whole seconds, rounded up (`Retry-After` has no fractions).
//!
//! The counts live in memory: a restart forgets them (the failures stay in the audit trail).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The sliding window.
pub const WINDOW_SECS: i64 = 15 * 60;
const WINDOW_MS: i64 = WINDOW_SECS * 1000;

#[derive(Debug, Clone, Copy)]
struct Rule {
    threshold: usize,
    cap_secs: i64,
}

const PER_USER: Rule = Rule {
    threshold: 5,
    cap_secs: 60,
};
const PER_ADDRESS: Rule = Rule {
    threshold: 20,
    cap_secs: WINDOW_SECS,
};
const PER_USER_AND_ADDRESS: Rule = Rule {
    threshold: 5,
    cap_secs: WINDOW_SECS,
};

/// Most failures remembered per key (enough to reach every cap).
const MAX_REMEMBERED: usize = 64;
/// Above this many keys, stale ones are swept on the next failure.
const SWEEP_ABOVE: usize = 100_000;

/// A user's throttle started: failures in the window and the end of the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    /// Failures counted.
    pub failures: u32,
    /// No attempt is checked before this (Unix seconds, rounded up).
    pub until: i64,
}

/// The failure counts.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

fn keys(user: Option<&str>, address: &str) -> Vec<(String, Rule)> {
    let mut k = vec![(format!("a|{address}"), PER_ADDRESS)];
    if let Some(u) = user {
        k.push((format!("u|{u}"), PER_USER));
        k.push((format!("ua|{u}|{address}"), PER_USER_AND_ADDRESS));
    }
    k
}

/// Milliseconds as whole seconds, rounded up.
fn ceil_secs(ms: i64) -> i64 {
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) > 0)
}

/// The end of the wait (Unix milliseconds), if one is running at `now_ms`.
fn wait_until(times: &VecDeque<i64>, rule: Rule, now_ms: i64) -> Option<i64> {
    let recent = times.iter().filter(|t| now_ms - **t < WINDOW_MS).count();
    if recent < rule.threshold {
        return None;
    }
    let last = *times.back()?;
    let exponent = (recent - rule.threshold).min(20) as u32;
    let delay_ms = 2i64.pow(exponent).min(rule.cap_secs) * 1000;
    Some(last + delay_ms).filter(|until| *until > now_ms)
}

impl Throttle {
    /// Whole seconds (rounded up) to wait before an attempt for `user` from `address` is
    /// checked, if any; `now_ms` is Unix milliseconds.
    pub fn retry_after(&self, user: Option<&str>, address: &str, now_ms: i64) -> Option<i64> {
        let map = self.failures.lock().ok()?;
        keys(user, address)
            .into_iter()
            .filter_map(|(k, rule)| wait_until(map.get(&k)?, rule, now_ms))
            .max()
            .map(|until| {
                crate::metrics::throttled("failed_attempts");
                ceil_secs(until - now_ms)
            })
    }

    /// Counts a failure at `now_ms` (Unix milliseconds); answers the user's lock when this
    /// failure starts or extends one.
    pub fn failed(&self, user: Option<&str>, address: &str, now_ms: i64) -> Option<Lock> {
        let mut map = self.failures.lock().ok()?;
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, times| times.back().is_some_and(|t| now_ms - t < WINDOW_MS));
        }
        let mut lock = None;
        for (key, rule) in keys(user, address) {
            let times = map.entry(key.clone()).or_default();
            while times.front().is_some_and(|t| now_ms - t >= WINDOW_MS) {
                times.pop_front();
            }
            times.push_back(now_ms);
            if times.len() > MAX_REMEMBERED {
                times.pop_front();
            }
            if key.starts_with("u|") {
                lock = wait_until(times, rule, now_ms).map(|until| Lock {
                    failures: times.len() as u32,
                    until: ceil_secs(until),
                });
            }
        }
        lock
    }

    /// Forgets the failures of this user from this address after a successful sign-in.
    pub fn succeeded(&self, user: &str, address: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&format!("ua|{user}|{address}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_start_a_growing_wait_that_always_ends() {
        let t = Throttle::default();
        let now = 1_000_000_000;
        for i in 0..4 {
            assert_eq!(t.failed(Some("alice"), "10.0.0.1", now + i * 1000), None);
        }
        let lock = t.failed(Some("alice"), "10.0.0.1", now + 4000).unwrap();
        assert_eq!((lock.failures, lock.until), (5, now / 1000 + 5));
        assert_eq!(
            t.retry_after(Some("alice"), "10.0.0.1", now + 4000),
            Some(1)
        );
        assert_eq!(t.retry_after(Some("alice"), "10.0.0.1", now + 5000), None);
        // The sixth failure doubles the wait.
        t.failed(Some("alice"), "10.0.0.1", now + 5000);
        assert_eq!(
            t.retry_after(Some("alice"), "10.0.0.1", now + 5000),
            Some(2)
        );
    }

    #[test]
    fn a_wait_lasts_its_full_length_across_a_second_boundary() {
        let t = Throttle::default();
        // Five failures late in one second; the next attempt early in the next second.
        let late = 3_000_000_999;
        for _ in 0..5 {
            t.failed(Some("dave"), "10.0.0.2", late);
        }
        assert_eq!(t.retry_after(Some("dave"), "10.0.0.2", late + 2), Some(1));
        assert_eq!(t.retry_after(Some("dave"), "10.0.0.2", late + 999), Some(1));
        assert_eq!(t.retry_after(Some("dave"), "10.0.0.2", late + 1000), None);
    }

    #[test]
    fn failures_from_elsewhere_slow_a_user_down_by_at_most_a_minute() {
        let t = Throttle::default();
        let now = 2_000_000_000;
        for i in 0..40 {
            t.failed(Some("bob"), &format!("192.0.2.{i}"), now);
        }
        let wait = t.retry_after(Some("bob"), "198.51.100.7", now).unwrap();
        assert!(wait <= 60, "{wait}");
        assert_eq!(
            t.retry_after(Some("bob"), "198.51.100.7", now + 60_000),
            None
        );
        // Others are not slowed at all.
        assert_eq!(t.retry_after(Some("carol"), "198.51.100.7", now), None);
        // And the window forgets.
        assert_eq!(
            t.retry_after(Some("bob"), "192.0.2.1", now + WINDOW_MS),
            None
        );
    }
}
