//! Full authorization-code round trips per second against a running server: GET /authorize
//! (signed-in user, remembered consent, so the server answers with a code at once, after the
//! code's event is durable) then POST /token (redemption: three events, durable, projected).
//!
//! `cargo run --release --example code_roundtrip -- BASE CLIENT_ID SECRET USER PASSWORD
//! [THREADS=32] [SECONDS=10] [SCOPE=read]`. The client must be confidential, allowed
//! `authorization_code` and `refresh_token`, with the redirect URI `https://bench.example/cb`.
//! A SCOPE with `openid` makes each round trip an OpenID Connect sign-in: a nonce is sent and
//! the token response must carry an id_token (signed per redemption).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark tool")]

use std::time::{Duration, Instant};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn cookies(res: &ureq::http::Response<ureq::Body>, jar: &mut Vec<String>) {
    for c in res.headers().get_all("set-cookie") {
        let pair = c.to_str().unwrap().split(';').next().unwrap().to_owned();
        let name = pair.split('=').next().unwrap().to_owned();
        jar.retain(|p| !p.starts_with(&format!("{name}=")));
        jar.push(pair);
    }
}

fn field(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker).unwrap() + marker.len();
    body[start..start + body[start..].find('"').unwrap()].replace("&amp;", "&")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, client, secret, user, password] = &args[..5] else {
        panic!("usage: code_roundtrip BASE CLIENT_ID SECRET USER PASSWORD [THREADS] [SECONDS]")
    };
    let threads: usize = args.get(5).map_or(32, |t| t.parse().unwrap());
    let seconds: u64 = args.get(6).map_or(10, |s| s.parse().unwrap());
    let scope = args.get(7).cloned().unwrap_or_else(|| "read".into());
    let openid = scope.split(' ').any(|s| s == "openid");
    let a = agent();
    let mut jar = Vec::new();
    let mut res = a.get(&format!("{base}/login")).call().unwrap();
    cookies(&res, &mut jar);
    let csrf = field(&res.body_mut().read_to_string().unwrap(), "csrf_token");
    let res = a
        .post(&format!("{base}/login"))
        .header("Cookie", &jar.join("; "))
        .send_form([
            ("csrf_token", csrf.as_str()),
            ("username", user),
            ("password", password),
        ])
        .unwrap();
    cookies(&res, &mut jar);
    let authorize = format!(
        "{base}/authorize?response_type=code&client_id={client}&redirect_uri=https%3A%2F%2Fbench.example%2Fcb&scope={}{}",
        form_urlencoded::byte_serialize(scope.as_bytes()).collect::<String>(),
        if openid { "&nonce=n-0S6_WzA2Mj" } else { "" }
    );
    // Approve once; afterwards the consent is remembered.
    let res = a
        .get(&authorize)
        .header("Cookie", &jar.join("; "))
        .call()
        .unwrap();
    let loc = res
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    if loc.starts_with("/consent") {
        let mut page = a
            .get(&format!("{base}{loc}"))
            .header("Cookie", &jar.join("; "))
            .call()
            .unwrap();
        let body = page.body_mut().read_to_string().unwrap();
        a.post(&format!("{base}/consent"))
            .header("Cookie", &jar.join("; "))
            .send_form([
                ("csrf_token", field(&body, "csrf_token").as_str()),
                ("request", field(&body, "request").as_str()),
                ("decision", "approve"),
            ])
            .unwrap();
    }
    let cookie = jar.join("; ");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (a, cookie, authorize) = (agent(), &cookie, &authorize);
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut errors = 0;
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let res = a.get(authorize).header("Cookie", cookie).call().unwrap();
                        let loc = res
                            .headers()
                            .get("location")
                            .map(|l| l.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let Some(code) = url::Url::parse(&loc).ok().and_then(|u| {
                            u.query_pairs()
                                .find(|(k, _)| k == "code")
                                .map(|(_, v)| v.into_owned())
                        }) else {
                            errors += 1;
                            continue;
                        };
                        let mut tok = a
                            .post(&format!("{base}/token"))
                            .send_form([
                                ("grant_type", "authorization_code"),
                                ("code", code.as_str()),
                                ("redirect_uri", "https://bench.example/cb"),
                                ("client_id", client.as_str()),
                                ("client_secret", secret.as_str()),
                            ])
                            .unwrap();
                        let body = tok.body_mut().read_to_string().unwrap();
                        if tok.status() == 200
                            && body.contains("refresh_token")
                            && (!openid || body.contains("id_token"))
                        {
                            lat.push(t.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut all: Vec<Duration> = results
        .iter()
        .flat_map(|(l, _)| l.iter().copied())
        .collect();
    let errors: usize = results.iter().map(|(_, e)| e).sum();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    // The line format of bench/load/lib.lua, so bench/compare.sh reads both alike.
    println!(
        "scenario=code_roundtrip requests={} seconds={elapsed:.2} rps={:.1} p50_ms={:.3} p99_ms={:.3} errors={errors} first_error=- threads={threads}",
        all.len() + errors,
        (all.len() + errors) as f64 / elapsed,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
}
