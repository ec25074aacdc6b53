//! `GET /metrics` against the real server: scraped during load, every scrape parses with the
//! Prometheus project's own parser (tests/clients/parse_metrics.py), and afterwards the
//! counters equal the requests made; a separate metrics address; metrics off.

use crate::clients::python;
use crate::helpers::{agent, spawn_app_with, TestApp};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

/// One sample of a scrape.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: serde_json::Map<String, Value>,
    value: f64,
    kind: String,
    family: String,
}

/// Scrapes `url`: the status, the Content-Type and the samples (the parse must succeed).
fn scrape(url: &str) -> (u16, String, Vec<Sample>) {
    let mut res = agent().get(url).call().unwrap();
    let status = res.status().as_u16();
    let kind = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = res.body_mut().read_to_string().unwrap();
    if status != 200 {
        return (status, kind, Vec::new());
    }
    (status, kind, parse(&text))
}

/// Parses Prometheus text with prometheus_client's parser; panics with its message if the
/// text is not valid.
fn parse(text: &str) -> Vec<Sample> {
    let script = format!(
        "{}/tests/clients/parse_metrics.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the scrape is not valid Prometheus text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Sample {
                name: v["name"].as_str().unwrap().to_owned(),
                labels: v["labels"].as_object().unwrap().clone(),
                value: v["value"].as_f64().unwrap(),
                kind: v["type"].as_str().unwrap().to_owned(),
                family: v["family"].as_str().unwrap().to_owned(),
            }
        })
        .collect()
}

/// The value of the one sample named `name` whose labels include `labels` (0 when none).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .collect();
    assert!(
        found.len() <= 1,
        "several samples match {name} {labels:?}: {found:?}"
    );
    found.first().map_or(0.0, |s| s.value)
}

/// The declared type of the metric `name` (a counter's family is named without `_total`).
fn kind_of<'a>(samples: &'a [Sample], name: &str) -> &'a str {
    samples
        .iter()
        .find(|s| s.name == name || s.family == name)
        .map_or("", |s| s.kind.as_str())
}

#[test]
fn metrics_scraped_under_load_parse_and_count_the_requests_made() {
    let app = spawn_app_with(&["--test-clock"]);
    app.create_user("alice", "correct horse battery");
    let (svc, secret) = app.create_client(&[
        "--grant-type",
        "client_credentials",
        "--grant-type",
        "password",
        "--scope",
        "read",
        "--can-introspect",
    ]);
    let url = format!("{}/metrics", app.base);
    let before = scrape(&url).2;
    assert_eq!(
        value(
            &before,
            "authledger_tokens_issued_total",
            &[("client_id", &svc)]
        ),
        0.0
    );

    // Load: 4 threads x 25 token requests, scraped all the while.
    const THREADS: usize = 4;
    const EACH: usize = 25;
    let done = std::sync::atomic::AtomicBool::new(false);
    let (tokens, scrapes) = std::thread::scope(|s| {
        let load: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    (0..EACH)
                        .map(|_| {
                            app.token(&svc, &secret, None)["access_token"]
                                .as_str()
                                .unwrap()
                                .to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let scraper = s.spawn(|| {
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || n == 0 {
                let (status, kind, samples) = scrape(&url);
                assert_eq!(status, 200);
                assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
                assert!(!samples.is_empty());
                n += 1;
            }
            n
        });
        let tokens: Vec<String> = load.into_iter().flat_map(|h| h.join().unwrap()).collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (tokens, scraper.join().unwrap())
    });
    assert!(scrapes >= 1);
    assert_eq!(tokens.len(), THREADS * EACH);

    // Refusals and the other counted requests.
    for _ in 0..3 {
        let (status, _) = app.post_form(
            "/token",
            Some((&svc, "not the secret")),
            &[("grant_type", "client_credentials")],
        );
        assert_eq!(status, 401);
    }
    assert_eq!(app.introspect(&svc, &secret, &tokens[0])["active"], true);
    assert_eq!(app.introspect(&svc, &secret, &tokens[1])["active"], true);
    assert_eq!(
        app.introspect(&svc, &secret, "not-a-token")["active"],
        false
    );
    let (status, _) = app.post_form(
        "/introspect",
        Some((&svc, "wrong")),
        &[("token", &tokens[0])],
    );
    assert_eq!(status, 401);
    let (status, _) = app.post_form("/revoke", Some((&svc, &secret)), &[("token", &tokens[2])]);
    assert_eq!(status, 200);
    for _ in 0..2 {
        let (status, body) = app.post_form(
            "/token",
            Some((&svc, &secret)),
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "wrong password"),
            ],
        );
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }

    // The live-token gauge is counted at most every 10 s of the server's clock. Moving it
    // takes an admin token: one more POST /token answered 200.
    app.advance_clock(10_500);
    let after = scrape(&url).2;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let n = (THREADS * EACH) as f64;
    assert_eq!(kind_of(&after, "authledger_tokens_issued_total"), "counter");
    assert_eq!(
        value(
            &after,
            "authledger_tokens_issued_total",
            &[
                ("token", "access_token"),
                ("grant_type", "client_credentials"),
                ("client_id", &svc)
            ]
        ),
        n
    );
    assert_eq!(
        delta(
            "authledger_http_requests_total",
            &[
                ("endpoint", "/token"),
                ("method", "POST"),
                ("status", "200")
            ]
        ),
        n + 1.0
    );
    assert_eq!(
        delta(
            "authledger_http_requests_total",
            &[
                ("endpoint", "/token"),
                ("method", "POST"),
                ("status", "401")
            ]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "authledger_http_requests_total",
            &[
                ("endpoint", "/token"),
                ("method", "POST"),
                ("status", "400")
            ]
        ),
        2.0
    );
    // The latency histogram saw every one of them, within its buckets.
    assert_eq!(
        kind_of(&after, "authledger_http_request_duration_seconds"),
        "histogram"
    );
    assert_eq!(
        delta(
            "authledger_http_request_duration_seconds_count",
            &[("endpoint", "/token"), ("method", "POST")]
        ),
        n + 6.0
    );
    assert_eq!(
        delta(
            "authledger_http_request_duration_seconds_bucket",
            &[("endpoint", "/token"), ("method", "POST"), ("le", "+Inf")]
        ),
        n + 6.0
    );
    assert_eq!(
        value(
            &after,
            "authledger_introspections_total",
            &[("result", "active")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &after,
            "authledger_introspections_total",
            &[("result", "inactive")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "authledger_introspections_total",
            &[("result", "refused")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "authledger_revocations_total",
            &[("revoked", "access_token")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "authledger_failed_logins_total",
            &[("reason", "wrong_password")]
        ),
        2.0
    );
    assert_eq!(
        delta(
            "authledger_events_appended_total",
            &[("type", "AccessTokenIssued")]
        ),
        n + 1.0
    );
    // Every event this node appended went through a group commit, and each was synced.
    let appended: f64 = after
        .iter()
        .filter(|s| s.name == "authledger_events_appended_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(
        value(&after, "authledger_log_group_commit_events_sum", &[]),
        appended
    );
    let groups = value(&after, "authledger_log_group_commit_events_count", &[]);
    assert!(
        groups >= 1.0 && groups <= appended,
        "{groups} groups for {appended} events"
    );
    assert_eq!(
        value(&after, "authledger_log_sync_seconds_count", &[]),
        groups
    );
    // State read when scraped: every access token issued since the start (these and the
    // admin client's, which the CLI used), less the one revoked, is live.
    let issued: f64 = after
        .iter()
        .filter(|s| s.name == "authledger_tokens_issued_total")
        .filter(|s| s.labels.get("token").and_then(Value::as_str) == Some("access_token"))
        .map(|s| s.value)
        .sum();
    assert!(issued > n, "{issued}");
    assert_eq!(
        value(&after, "authledger_live_access_tokens", &[]),
        issued - 1.0
    );
    assert!(value(&after, "authledger_live_actors", &[]) >= 1.0);
    assert_eq!(kind_of(&after, "authledger_projection_lag_events"), "gauge");
    assert!(value(&after, "authledger_log_head_position", &[]) >= appended);
}

#[test]
fn metrics_move_to_their_own_address_or_go_away() {
    let app = spawn_app_with(&["--metrics-bind", "127.0.0.1:0"]);
    let (status, body) = app.get("/metrics");
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(app.data_dir().join("server.json")).unwrap())
            .unwrap();
    let addr = info["metrics_addr"]
        .as_str()
        .expect("server.json names the metrics address");
    let (status, _, samples) = scrape(&format!("http://{addr}/metrics"));
    assert_eq!(status, 200);
    assert_eq!(kind_of(&samples, "authledger_live_actors"), "gauge");
    // The metrics address serves nothing else.
    let (status, _, _) = scrape(&format!("http://{addr}/token"));
    assert_eq!(status, 404);
    // Methods a client makes up are one label, `other`: they mint no series.
    for i in 0..5 {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(app.base.trim_start_matches("http://")).unwrap();
        write!(
            s,
            "MADEUP{i} /token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    }
    let samples = scrape(&format!("http://{addr}/metrics")).2;
    let methods: std::collections::BTreeSet<&str> = samples
        .iter()
        .filter_map(|s| s.labels.get("method").and_then(Value::as_str))
        .collect();
    assert!(
        methods.iter().all(|m| ["GET", "POST", "other"].contains(m)),
        "{methods:?}"
    );
    assert_eq!(
        value(
            &samples,
            "authledger_http_requests_total",
            &[
                ("endpoint", "unmatched"),
                ("method", "other"),
                ("status", "405")
            ]
        ),
        5.0
    );
    // A request on the main listener is counted there.
    assert_eq!(app.get("/readyz").0, 200);
    let samples = scrape(&format!("http://{addr}/metrics")).2;
    assert!(
        value(
            &samples,
            "authledger_http_requests_total",
            &[("endpoint", "/readyz"), ("status", "200")]
        ) >= 1.0
    );

    let off = spawn_app_with(&["--metrics", "false"]);
    assert_eq!(off.get("/metrics").0, 404);
    assert_eq!(off.get("/readyz").0, 200);
    drop::<TestApp>(off);
}

#[test]
fn a_setting_comes_from_the_flag_else_the_environment_else_the_config_file() {
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("authledger.toml");
    std::fs::write(
        &conf,
        "metrics = false\nlog_json = true\nverify_on_start = \"full\"\nkey_retire_leeway_secs = 5\n",
    )
    .unwrap();
    let conf_env = ("AUTHLEDGER_CONFIG", conf.to_str().unwrap());
    // The file alone: metrics off.
    let mut app = TestApp::on(tempfile::tempdir().unwrap(), &[], &[conf_env]);
    app.start();
    assert_eq!(app.get("/metrics").0, 404);
    app.stop();
    // The environment beats the file.
    app.env.push(("AUTHLEDGER_METRICS".into(), "true".into()));
    app.start();
    assert_eq!(app.get("/metrics").0, 200);
    app.stop();
    // The flag beats the environment.
    app.flags = vec!["--metrics".into(), "false".into()];
    app.start();
    assert_eq!(app.get("/metrics").0, 404);
    app.stop();
    // A value the file may not hold stops the start and says which.
    std::fs::write(&conf, "verify_on_start = \"sometimes\"\n").unwrap();
    let err = crate::helpers::failed_start(app.data_dir(), &[], &[conf_env]);
    assert!(
        err.contains("verify_on_start") && err.contains("full or since-last"),
        "{err}"
    );
}
