//! Signatures and verifications per second for each algorithm, as the server does them
//! (`Keyring::sign` / `Keyring::verify`: header, claims, JOSE encoding included), on 1 and on
//! every core.
//!
//! ```text
//! cargo run --release --example signing [-- SECONDS_PER_CASE [ALGORITHM ...]]
//! ```
//!
//! `bench/compare.sh` runs it for RS256 alone: the limit that `client_credentials` with RS256
//! tokens cannot pass on this machine.
#![allow(clippy::expect_used, reason = "a benchmark: a failure ends the run")]

use authledger::keys::{AccessTokenClaims, Keyring};
use domain::values::SigningAlgorithm;
use std::time::{Duration, Instant};

fn claims(n: u64) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: "http://127.0.0.1:8080".into(),
        sub: "bench-client".into(),
        aud: "http://127.0.0.1:8080".into(),
        client_id: "bench-client".into(),
        scope: "read write".into(),
        iat: 1_800_000_000,
        exp: 1_800_003_600,
        jti: format!("01900000-0000-7000-8000-{n:012}"),
        act: None,
        cnf: None,
    }
}

/// Runs `f` on `threads` threads for `secs`; answers operations per second.
fn rate(threads: usize, secs: f64, f: impl Fn(u64) + Sync) -> f64 {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                s.spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < until {
                        f(t as u64 * 1_000_000_000 + n);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let only = &args[args.len().min(1)..];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ring = Keyring::generated(SigningAlgorithm::ES256).expect("key generation");
    println!("algorithm  threads  signs_per_s  verifies_per_s");
    for alg in SigningAlgorithm::ALL {
        if !only.is_empty() && !only.iter().any(|a| a.eq_ignore_ascii_case(alg.as_str())) {
            continue;
        }
        let kid = ring.signing_kid(alg, 1).expect("a key per algorithm");
        let token = ring.sign(&kid, &claims(0)).expect("sign");
        for threads in [1, cores] {
            let signs = rate(threads, secs, |n| {
                ring.sign(&kid, &claims(n)).expect("sign");
            });
            let verifies = rate(threads, secs, |_| {
                ring.verify(&token, "http://127.0.0.1:8080")
                    .expect("verify");
            });
            println!(
                "{:<10} {threads:>7} {signs:>12.0} {verifies:>15.0}",
                alg.as_str()
            );
        }
    }
}
