//! How long a revocation on one node takes to read inactive on another (issue 13): for each
//! sample, a token issued on A, seen active on B, revoked on B; the time from B's answer to
//! the first introspection on A that reads it inactive. Prints p50, p99 and max in ms.
//!
//! Usage: nodes_lag BASE_A BASE_B CLIENT_ID SECRET SAMPLES

use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, a, b, id, secret, samples] = args.as_slice() else {
        anyhow::bail!("usage: nodes_lag BASE_A BASE_B CLIENT_ID SECRET SAMPLES");
    };
    let samples: usize = samples.parse()?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let post =
        |base: &str, path: &str, form: &[(&str, &str)]| -> anyhow::Result<serde_json::Value> {
            use base64::Engine as _;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            let mut res = agent
                .post(&format!("{base}{path}"))
                .header("Authorization", &format!("Basic {basic}"))
                .send_form(form.iter().copied())?;
            let text = res.body_mut().read_to_string()?;
            Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
        };
    let active = |base: &str, token: &str| -> anyhow::Result<bool> {
        Ok(post(base, "/introspect", &[("token", token)])?["active"] == true)
    };
    let mut lags = Vec::with_capacity(samples);
    for _ in 0..samples {
        let token = post(a, "/token", &[("grant_type", "client_credentials")])?["access_token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no token from {a}"))?
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !active(b, &token)? {
            anyhow::ensure!(Instant::now() < deadline, "{b} never saw the token");
        }
        post(b, "/revoke", &[("token", &token)])?;
        let revoked = Instant::now();
        while active(a, &token)? {
            anyhow::ensure!(
                revoked.elapsed() < Duration::from_secs(10),
                "{a} never saw the revocation"
            );
        }
        lags.push(revoked.elapsed());
    }
    lags.sort();
    let pick = |q: f64| lags[((lags.len() as f64 * q) as usize).min(lags.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "revocation_lag samples={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        lags.len(),
        ms(pick(0.50)),
        ms(pick(0.99)),
        ms(*lags.last().unwrap_or(&Duration::ZERO))
    );
    Ok(())
}
