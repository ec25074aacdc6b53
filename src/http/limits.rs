//! Rate limits: per client at `/token` and `/introspect`, per source address at the pages
//! (sign-in, consent, authorize, account, the audit viewer), answered with 429 and
//! `Retry-After`.
//!
//! Each limit is a GCRA (governor) keyed by what it limits, on the server's clock
//! ([`crate::clock::Clock`], which never goes back and which the test clock moves). A limit of 0
//! turns it off. The counts live in memory, per node. The client limits count requests after
//! the client authenticated, so nobody can use up another client's allowance by naming it.
//!
//! The source address is the peer's, unless the peer is a trusted proxy
//! (`--trusted-proxy`): then it is the last address in `X-Forwarded-For` that is not itself a
//! trusted proxy (the one the nearest untrusted hop connected from).

use super::error::OAuthError;
use actix_web::http::StatusCode;
use domain::oauth::ErrorCode;
use domain::values::ClientId;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The configured limits (0 turns one off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// Token requests per second per client (bursts of twice as many).
    pub token_per_sec: u32,
    /// Introspection requests per second per client (bursts of twice as many).
    pub introspect_per_sec: u32,
    /// Page requests per minute per source address (bursts of half as many).
    pub pages_per_min: u32,
    /// Dynamic registrations per minute per source address (bursts of half as many).
    pub register_per_min: u32,
    /// Proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            token_per_sec: 1000,
            introspect_per_sec: 5000,
            pages_per_min: 600,
            register_per_min: 20,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The server's clock, for governor.
#[derive(Debug, Clone)]
pub struct ServerClock(crate::clock::Clock);

impl Clock for ServerClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        let ns = self.0.now().unix_timestamp_nanos();
        Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
    }
}

type Keyed<K> = RateLimiter<K, DashMapStateStore<K>, ServerClock, NoOpMiddleware<Duration>>;

/// How many checks between sweeps of keys whose allowance is full again.
const SWEEP_EVERY: u64 = 1 << 16;

struct Limit<K: std::hash::Hash + Eq + Clone> {
    limiter: Keyed<K>,
    clock: ServerClock,
    checks: AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> Limit<K> {
    fn new(quota: Option<Quota>, clock: &crate::clock::Clock) -> Option<Self> {
        let clock = ServerClock(clock.clone());
        quota.map(|q| Self {
            limiter: RateLimiter::dashmap_with_clock(q, clock.clone()),
            clock,
            checks: AtomicU64::new(0),
        })
    }

    /// `Err(seconds to wait)` when `key` is over its limit.
    fn check(&self, key: &K) -> Result<(), u64> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Keys at their full allowance hold nothing worth keeping: the map stays as
            // large as the set of recently busy keys, not of every address ever seen.
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            // Retry-After has whole seconds; rounding up never invites an early retry.
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// The server's rate limits.
pub struct Limits {
    token: Option<Limit<ClientId>>,
    introspect: Option<Limit<ClientId>>,
    pages: Option<Limit<IpAddr>>,
    register: Option<Limit<IpAddr>>,
    trusted: Vec<IpNet>,
}

fn per_second(n: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(n)?;
    let burst = NonZeroU32::new(n.saturating_mul(2))?;
    Some(Quota::per_second(rate).allow_burst(burst))
}

fn per_minute(n: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(n)?;
    let burst = NonZeroU32::new((n / 2).max(1))?;
    Some(Quota::per_minute(rate).allow_burst(burst))
}

fn too_many(what: &'static str, wait: u64) -> OAuthError {
    crate::metrics::throttled(what);
    // RFC 6749 has no error code for this; 429 with Retry-After is RFC 6585 §4.
    OAuthError::new(
        ErrorCode::InvalidRequest,
        format!("too many {what} requests from this client; retry after {wait} seconds"),
    )
    .with_status(StatusCode::TOO_MANY_REQUESTS)
    .with_retry_after(i64::try_from(wait).unwrap_or(i64::MAX))
}

impl Limits {
    /// Limits as configured, on the server's clock.
    pub fn new(settings: &LimitSettings, clock: &crate::clock::Clock) -> Self {
        Self {
            token: Limit::new(per_second(settings.token_per_sec), clock),
            introspect: Limit::new(per_second(settings.introspect_per_sec), clock),
            pages: Limit::new(per_minute(settings.pages_per_min), clock),
            register: Limit::new(per_minute(settings.register_per_min), clock),
            trusted: settings.trusted_proxies.clone(),
        }
    }

    /// Counts a token request of an authenticated client.
    pub fn token(&self, client: &ClientId) -> Result<(), OAuthError> {
        match &self.token {
            Some(l) => l.check(client).map_err(|w| too_many("token", w)),
            None => Ok(()),
        }
    }

    /// Counts an introspection request of an authenticated client.
    pub fn introspect(&self, client: &ClientId) -> Result<(), OAuthError> {
        match &self.introspect {
            Some(l) => l.check(client).map_err(|w| too_many("introspection", w)),
            None => Ok(()),
        }
    }

    /// Counts a registration from `source` (`POST /register`).
    pub fn register(&self, source: Option<IpAddr>) -> Result<(), OAuthError> {
        match (&self.register, source) {
            (Some(l), Some(ip)) => l.check(&ip).map_err(|w| too_many("registration", w)),
            _ => Ok(()),
        }
    }

    /// Counts a page request from `source`; `Err(seconds to wait)` when over the limit.
    pub fn page(&self, source: IpAddr) -> Result<(), u64> {
        match &self.pages {
            Some(l) => l
                .check(&source)
                .inspect_err(|_| crate::metrics::throttled("pages")),
            None => Ok(()),
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, or what a trusted proxy says it forwarded.
    pub fn source(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusted(peer) {
            return Some(peer);
        }
        let Some(list) = forwarded_for else {
            return Some(peer);
        };
        // From the nearest hop outwards: the first address no trusted proxy owns. An entry
        // that does not parse ends the walk there (everything before it is the client's say).
        let mut source = peer;
        for hop in list.rsplit(',').map(str::trim) {
            match hop.parse::<IpAddr>() {
                Ok(ip) => {
                    source = ip;
                    if !self.trusted(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Some(source)
    }

    /// Whether the request came over HTTPS: its own connection, or a trusted proxy's
    /// `X-Forwarded-Proto`.
    pub fn forwarded_https(&self, peer: Option<IpAddr>, forwarded_proto: Option<&str>) -> bool {
        peer.is_some_and(|p| self.trusted(p))
            && forwarded_proto.is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let limits = Limits::new(
            &LimitSettings {
                trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
                ..LimitSettings::default()
            },
            &crate::clock::Clock::system(),
        );
        let xff = Some("203.0.113.9, 198.51.100.7, 10.1.2.3");
        assert_eq!(
            limits.source(Some(ip("192.0.2.1")), xff),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(
            limits.source(Some(ip("10.0.0.1")), xff),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            limits.source(Some(ip("10.0.0.1")), None),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            limits.source(Some(ip("10.0.0.1")), Some("junk, 10.9.9.9")),
            Some(ip("10.9.9.9"))
        );
        assert!(limits.forwarded_https(Some(ip("10.0.0.1")), Some("https")));
        assert!(!limits.forwarded_https(Some(ip("192.0.2.1")), Some("https")));
    }

    #[test]
    fn a_client_past_its_burst_waits_and_others_do_not() {
        let clock = crate::clock::Clock::movable();
        let limits = Limits::new(
            &LimitSettings {
                token_per_sec: 2,
                ..LimitSettings::default()
            },
            &clock,
        );
        let a = ClientId::parse("a").unwrap();
        let b = ClientId::parse("b").unwrap();
        let outcomes: Vec<bool> = (0..5).map(|_| limits.token(&a).is_ok()).collect();
        // A burst of 4 at 2 per second: the fifth, in the same instant, is refused.
        assert_eq!(outcomes[..4], [true; 4]);
        let refused = limits.token(&a).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.retry_after.is_some_and(|s| s >= 1));
        assert!(limits.token(&b).is_ok());
        // Half a second on the test clock gives the client one request back.
        clock.advance(500);
        assert!(limits.token(&a).is_ok());
        assert!(limits.token(&a).is_err());
        let off = Limits::new(
            &LimitSettings {
                token_per_sec: 0,
                ..LimitSettings::default()
            },
            &clock,
        );
        assert!((0..10_000).all(|_| off.token(&a).is_ok()));
    }
}
