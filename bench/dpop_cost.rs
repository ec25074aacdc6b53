//! What DPoP costs the server, per request, against plain bearer tokens (RFC 9449): tokens
//! issued per second (client_credentials, with and without a proof), introspections per
//! second of a bound and an unbound token, and protected-resource calls per second
//! (`/api/whoami` with a Bearer token, and with a DPoP token and a fresh proof, whose `jti`
//! is recorded). Proofs are signed before the clock starts, so the load generator's ES256
//! signing is not counted against the server.
//!
//! `cargo run --release --example dpop_cost -- BASE CLIENT_ID SECRET [THREADS=16] [SECONDS=5]`
//! (a confidential client allowed client_credentials). Prints one line per scenario, bearer
//! and DPoP alternating twice (A B A B).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark tool")]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

#[path = "../tests/support/dpop_key.rs"]
#[allow(
    dead_code,
    reason = "the bench signs proofs; thumbprints are for the tests"
)]
mod dpop_key;
use dpop_key::{ath, DpopKey};

/// A proof of `htm` `htu` now by `key`, presenting `token` when given.
fn proof(key: &DpopKey, htm: &str, htu: &str, token: Option<&str>) -> String {
    #[allow(
        clippy::disallowed_methods,
        reason = "the proof's iat is the wall clock's"
    )]
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = serde_json::json!({
        "jti": uuid::Uuid::new_v4().to_string(), "htm": htm, "htu": htu, "iat": iat,
    });
    if let Some(t) = token {
        claims["ath"] = ath(t).into();
    }
    key.sign("dpop+jwt", &claims)
}

/// One request of a run, the `usize`-th: whether it succeeded.
type Request = Arc<dyn Fn(&ureq::Agent, usize) -> bool + Send + Sync>;

/// Runs `threads` workers for `seconds`, each request built by `request(i)`; answers the
/// requests per second and the errors.
fn run(threads: usize, seconds: u64, request: Request) -> (f64, usize) {
    let counter = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (counter, errors, request) = (counter.clone(), errors.clone(), request.clone());
            std::thread::spawn(move || {
                let a = agent();
                while Instant::now() < deadline {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    if !request(&a, i) {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let done = counter.load(Ordering::Relaxed);
    (
        done as f64 / start.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, id, secret] = &args[..3] else {
        panic!("usage: dpop_cost BASE CLIENT_ID SECRET [THREADS] [SECONDS]")
    };
    let threads: usize = args.get(3).map_or(16, |t| t.parse().unwrap());
    let seconds: u64 = args.get(4).map_or(5, |s| s.parse().unwrap());
    let basic = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    let token_url = format!("{base}/token");
    let whoami_url = format!("{base}/api/whoami");
    let key = Arc::new(DpopKey::new());
    // Enough proofs for any rate this machine reaches, signed just before each DPoP run so
    // that none is older than the server's 60 s window.
    let budget = 6_000 * seconds as usize;
    let proofs = |htm: &str, url: &str, token: Option<&str>| -> Arc<Vec<String>> {
        Arc::new((0..budget).map(|_| proof(&key, htm, url, token)).collect())
    };
    let get_token = |dpop: Option<&str>| -> String {
        let mut req = agent().post(&token_url).header("Authorization", &basic);
        if let Some(p) = dpop {
            req = req.header("DPoP", p);
        }
        let mut res = req
            .send_form([("grant_type", "client_credentials")])
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap();
        v["access_token"].as_str().expect("a token").to_owned()
    };
    let bearer_token = Arc::new(get_token(None));
    let bound_token = Arc::new(get_token(Some(&proof(&key, "POST", &token_url, None))));
    let report = |scenario: &str, (rps, errors): (f64, usize)| {
        println!(
            "scenario={scenario} rps={rps:.0} errors={errors} threads={threads} seconds={seconds}"
        );
    };
    for _ in 0..2 {
        for dpop in [false, true] {
            let proofs = if dpop {
                proofs("POST", &token_url, None)
            } else {
                Arc::new(Vec::new())
            };
            let (basic, url) = (basic.clone(), token_url.clone());
            let issue: Request = Arc::new(move |a, i| {
                let mut req = a.post(&url).header("Authorization", &basic);
                if dpop {
                    req = req.header("DPoP", &proofs[i % budget]);
                }
                req.send_form([("grant_type", "client_credentials")])
                    .is_ok_and(|r| r.status() == 200)
            });
            report(
                if dpop { "issue_dpop" } else { "issue_bearer" },
                run(threads, seconds, issue),
            );
        }
        for dpop in [false, true] {
            let (basic, url) = (basic.clone(), format!("{base}/introspect"));
            let token = if dpop {
                bound_token.clone()
            } else {
                bearer_token.clone()
            };
            let introspect: Request = Arc::new(move |a, _| {
                a.post(&url)
                    .header("Authorization", &basic)
                    .send_form([("token", token.as_str())])
                    .is_ok_and(|r| r.status() == 200)
            });
            let name = if dpop {
                "introspect_dpop"
            } else {
                "introspect_bearer"
            };
            report(name, run(threads, seconds, introspect));
        }
        for dpop in [false, true] {
            let url = whoami_url.clone();
            let (token, proofs) = if dpop {
                (
                    bound_token.clone(),
                    proofs("GET", &whoami_url, Some(&bound_token)),
                )
            } else {
                (bearer_token.clone(), Arc::new(Vec::new()))
            };
            let call: Request = Arc::new(move |a, i| {
                let req = a.get(&url);
                let req = if dpop {
                    req.header("Authorization", &format!("DPoP {token}"))
                        .header("DPoP", &proofs[i % budget])
                } else {
                    req.header("Authorization", &format!("Bearer {token}"))
                };
                req.call().is_ok_and(|r| r.status() == 200)
            });
            report(
                if dpop { "whoami_dpop" } else { "whoami_bearer" },
                run(threads, seconds, call),
            );
        }
    }
}
