//! Several `authledger serve --store postgres` nodes on one database, on loopback ports.

use crate::helpers::TestApp;
use authledger::store::{EventStore, Log};
use std::time::{Duration, Instant};

/// One key-encryption key for every node: each decrypts the signing keys another generated.
const KEK: &str = "4f1c2d3e4a5b6c7d8e9f00112233445566778899aabbccddeeff001122334455";

/// The issuer every node names: behind a load balancer they are one server.
const ISSUER: &str = "http://authledger.nodes.test";

/// A node on `url` with a data directory of its own.
pub fn node(url: &str) -> TestApp {
    node_with(url, &[])
}

/// A client_credentials token of `id`, issued on `node`.
fn issued(node: &TestApp, id: &str, secret: &str) -> String {
    node.token(id, secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Introspects on `node` until `active` is as expected; answers how long that took, or
/// fails after 10 s (a wait for a condition: followers copy within milliseconds).
fn until_active(node: &TestApp, id: &str, secret: &str, token: &str, active: bool) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = node.post_form("/introspect", Some((id, secret)), &[("token", token)]);
        if status == 200 && body["active"] == active {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} never read active={active}: {status} {body}",
            node.base
        );
        std::thread::yield_now();
    }
}

#[test]
fn a_token_issued_on_one_node_is_active_on_the_others_and_a_revocation_on_one_reaches_them_all() {
    let url = crate::pg::database();
    let a = node(&url);
    let b = node(&url);
    let c = node(&url);
    let (id, secret) = a.create_client(&[]);
    let token = issued(&a, &id, &secret);
    for n in [&a, &b, &c] {
        until_active(n, &id, &secret, &token, true);
    }
    // The client's registration reached B: it issues tokens there too.
    let on_b = issued(&b, &id, &secret);
    until_active(&c, &id, &secret, &on_b, true);
    let (status, _) = b.post_form("/revoke", Some((&id, &secret)), &[("token", &token)]);
    assert_eq!(status, 200);
    // On B itself at once: a node reads its own writes.
    assert_eq!(b.introspect(&id, &secret, &token)["active"], false);
    for n in [&a, &c] {
        let lag = until_active(n, &id, &secret, &token, false);
        assert!(lag < Duration::from_secs(5), "{lag:?}");
    }
    assert_eq!(a.introspect(&id, &secret, &on_b)["active"], true);
}

#[test]
fn a_node_restarted_on_its_data_directory_catches_up_with_what_the_others_wrote_meanwhile() {
    let url = crate::pg::database();
    let a = node(&url);
    let mut b = node(&url);
    let (id, secret) = a.create_client(&[]);
    until_active(&b, &id, &secret, &issued(&a, &id, &secret), true);
    b.stop();
    let tokens: Vec<String> = (0..20).map(|_| issued(&a, &id, &secret)).collect();
    b.start();
    // A start copies what the database holds before it serves.
    for t in &tokens {
        assert_eq!(b.introspect(&id, &secret, t)["active"], true);
    }
    // Both copies hold the same events, hash chain included, as far as both reach (each
    // node also records its own walk of the chain after a start, so they end apart by a few).
    let mut a = a;
    a.stop();
    b.stop();
    let copy = |n: &TestApp| {
        let log = Log::embedded(&n.data_dir().join("log")).unwrap();
        assert!(log.verify(|_| {}).unwrap().is_verified());
        log.read_all(1, 100_000).unwrap()
    };
    let (ca, cb) = (copy(&a), copy(&b));
    let both = ca.len().min(cb.len());
    assert!(both > 20, "{both}");
    for (x, y) in ca.iter().zip(&cb) {
        assert_eq!(
            (x.position, &x.stream, x.version, x.id, &x.prev_hash),
            (y.position, &y.stream, y.version, y.id, &y.prev_hash)
        );
    }
}

/// Issues client_credentials tokens on `node` until `stop` is set; answers every token that
/// was answered 200 and how many requests were refused with 503 (any other answer fails).
fn issue_until(
    node: &TestApp,
    id: &str,
    secret: &str,
    stop: &std::sync::atomic::AtomicBool,
) -> (Vec<String>, usize) {
    let (mut tokens, mut refused) = (Vec::new(), 0);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let Ok(mut res) = node
            .agent
            .post(&format!("{}/token", node.base))
            .header(
                "Authorization",
                &format!(
                    "Basic {}",
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        format!("{id}:{secret}")
                    )
                ),
            )
            .send_form([("grant_type", "client_credentials")])
        else {
            // The node itself is gone (the SIGKILL test): what it answered before counts.
            break;
        };
        let status = res.status().as_u16();
        let retry_after = res.headers().get("retry-after").is_some();
        let body: serde_json::Value =
            serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap();
        match status {
            200 => tokens.push(body["access_token"].as_str().unwrap().to_owned()),
            503 => {
                assert_eq!(body["error"], "temporarily_unavailable", "{body}");
                assert!(retry_after, "a 503 without Retry-After: {body}");
                refused += 1;
            }
            other => panic!("{other} {body}"),
        }
    }
    (tokens, refused)
}

#[test]
fn postgres_restarted_under_load_gets_503_then_the_nodes_serve_again_without_a_restart() {
    let (cluster, url) = crate::pg::Cluster::private();
    let a = node(&url);
    let (id, secret) = a.create_client(&[]);
    let first = issued(&a, &id, &secret);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let refused = std::sync::atomic::AtomicUsize::new(0);
    let tokens: Vec<String> = std::thread::scope(|s| {
        let load: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let (tokens, n) = issue_until(&a, &id, &secret, &stop);
                    refused.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                    tokens
                })
            })
            .collect();
        cluster.stop();
        // Not ready while the database is unreachable; still alive.
        let started = Instant::now();
        loop {
            let (status, body) = a.get("/readyz");
            if status == 503 {
                assert_eq!(body["status"], "not_ready", "{body}");
                // Live all the while: a supervisor must not restart it for this.
                let (live, body) = a.get("/healthz");
                assert_eq!(
                    (live, body["status"].as_str()),
                    (200, Some("alive")),
                    "{body}"
                );
                assert_eq!(body["ready"], false, "{body}");
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "{body}");
        }
        // The load meets the stopped database: 503 with Retry-After (checked in issue_until).
        let (probe, body) = a.post_form(
            "/token",
            Some((&id, &secret)),
            &[("grant_type", "client_credentials")],
        );
        assert_eq!(
            (probe, body["error"].as_str()),
            (503, Some("temporarily_unavailable"))
        );
        cluster.start();
        // Back without a restart of the node: ready, and tokens are issued again.
        let started = Instant::now();
        while a.get("/readyz").0 != 200 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never ready again"
            );
        }
        let after = issued(&a, &id, &secret);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut tokens: Vec<String> = load.into_iter().flat_map(|l| l.join().unwrap()).collect();
        tokens.push(after);
        tokens.push(first);
        tokens
    });
    // Every token answered 200 is durable: active on a node started afterwards.
    let b = node(&url);
    for t in &tokens {
        assert_eq!(b.introspect(&id, &secret, t)["active"], true, "{t}");
    }
}

#[test]
fn a_node_killed_under_load_loses_no_acknowledged_token_and_the_others_keep_serving() {
    let url = crate::pg::database();
    let mut a = node(&url);
    let b = node(&url);
    let (id, secret) = a.create_client(&[]);
    until_active(&b, &id, &secret, &issued(&a, &id, &secret), true);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acked = std::thread::scope(|s| {
        let on_a = s.spawn(|| issue_until(&a, &id, &secret, &stop).0);
        let on_b = s.spawn(|| issue_until(&b, &id, &secret, &stop).0);
        // Kill A once it has answered some tokens under load.
        until_active(&b, &id, &secret, &issued(&b, &id, &secret), true);
        let pid = a.child.as_ref().unwrap().id() as i32;
        crate::helpers::send_signal(pid, "KILL");
        let killed = on_a.join().unwrap();
        // B goes on serving on its own.
        let still = issued(&b, &id, &secret);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut acked = on_b.join().unwrap();
        acked.extend(killed);
        acked.push(still);
        acked
    });
    a.kill();
    assert!(acked.len() > 3);
    for t in &acked {
        until_active(&b, &id, &secret, t, true);
    }
}

#[test]
fn eight_clients_on_three_nodes_leave_gap_free_streams_no_lost_or_doubled_token_and_equal_projections(
) {
    let url = crate::pg::database();
    let mut nodes = [node(&url), node(&url), node(&url)];
    let clients: Vec<(String, String)> = (0..8).map(|_| nodes[0].create_client(&[])).collect();
    // Each client's requests go to every node in turn: its actor on each node races the others.
    let tokens: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(n, (id, secret))| {
                let nodes = &nodes;
                s.spawn(move || {
                    (0..24)
                        .map(|i| {
                            nodes[(n + i) % 3].token(id, secret, None)["access_token"]
                                .as_str()
                                .unwrap()
                                .to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let unique: std::collections::HashSet<&String> = tokens.iter().collect();
    assert_eq!(unique.len(), 8 * 24, "a token was issued twice");
    for t in &tokens {
        for n in &nodes {
            let owner = &clients[0];
            // Any client may introspect its own; ask with the token's own client.
            let (id, secret) = clients
                .iter()
                .find(|(id, secret)| n.introspect(id, secret, t)["active"] == true)
                .unwrap_or(owner);
            until_active(n, id, secret, t, true);
        }
    }
    for n in &mut nodes {
        n.stop();
    }
    // Every copy: gap-free positions and per-stream versions, the same events in the same
    // order, and projections equal to a rebuild from that log.
    let flags = ["--store", "postgres", "--database-url", url.as_str()];
    let mut logs = Vec::new();
    for n in &nodes {
        let mut args = vec!["replay", "--verify"];
        args.extend_from_slice(&flags);
        let out = n.cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = Log::embedded(&n.data_dir().join("log")).unwrap();
        let all = log.read_all(1, 1_000_000).unwrap();
        let mut versions: std::collections::HashMap<String, u64> = Default::default();
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.position, i as u64 + 1);
            let v = versions.entry(e.stream.clone()).or_default();
            *v += 1;
            assert_eq!(e.version, *v, "{} skipped a version", e.stream);
        }
        logs.push(
            all.into_iter()
                .map(|e| (e.position, e.id, e.prev_hash))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(logs[0], logs[1]);
    assert_eq!(logs[0], logs[2]);
}

#[test]
fn migrate_moves_an_embedded_log_into_postgres_and_back_with_the_same_chain_and_answers() {
    let mut app = crate::helpers::spawn_app();
    let (id, secret) = app.create_client(&["--token-format", "opaque"]);
    let token = issued(&app, &id, &secret);
    let shown = app.cli_json(&["client", "show", &id, "--format", "json"]);
    app.stop();
    let before = app.cli_json(&["audit", "verify", "--format", "json"]);
    let url = crate::pg::database();
    let dir = app.data_dir().to_str().unwrap().to_owned();
    let moved = app.cli_json(&["migrate", "--from", &dir, "--to", &url, "--format", "json"]);
    assert_eq!(moved["head_hash"], before["head_hash"], "{moved}");
    assert_eq!(moved["events"], before["events"]);
    // A second import into the same database is refused.
    let again = app.cli(&["migrate", "--from", &dir, "--to", &url]);
    assert!(!again.status.success());
    // A node on the database answers as the embedded server did, with its KEK.
    let kek = std::fs::read_to_string(app.data_dir().join("encryption.key")).unwrap();
    let mut n = TestApp::on(
        tempfile::tempdir().unwrap(),
        &["--store", "postgres", "--database-url", &url],
        &[("AUTHLEDGER_ENCRYPTION_KEY", kek.trim())],
    );
    n.start();
    assert_eq!(n.introspect(&id, &secret, &token)["active"], true);
    assert_eq!(
        n.cli_json(&["client", "show", &id, "--format", "json"]),
        shown
    );
    let trail_len = |a: &TestApp| {
        a.cli_json(&[
            "audit", "query", "--client", &id, "--format", "json", "--limit", "100",
        ])
        .as_array()
        .unwrap()
        .len()
    };
    assert_eq!(trail_len(&n), 2, "ClientRegistered and the token");
    n.stop();
    // The node's copy continues the embedded log's chain: same hash at the old head.
    let head = before["head_position"].as_u64().unwrap();
    let copy = Log::embedded(&n.data_dir().join("log")).unwrap();
    let at_head = authledger::store::log::chain_hash(&copy.raw_event(head).unwrap().unwrap());
    assert_eq!(at_head, before["head_hash"].as_str().unwrap());
    let copy_head = copy.head().unwrap();
    drop(copy);
    // And back into a data directory of its own, served by the embedded store.
    let back = tempfile::tempdir().unwrap();
    let target = back.path().join("exported");
    let out = crate::helpers::cli(
        back.path(),
        &[
            "migrate",
            "--from",
            &url,
            "--to",
            target.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["head_hash"], copy_head.hash.as_str());
    let mut served = TestApp::on(
        tempfile::tempdir().unwrap(),
        &[],
        &[("AUTHLEDGER_ENCRYPTION_KEY", kek.trim())],
    );
    std::fs::remove_dir(served.dir.path()).unwrap();
    std::fs::rename(&target, served.dir.path()).unwrap();
    served.start();
    assert_eq!(served.introspect(&id, &secret, &token)["active"], true);
    assert_eq!(
        served.cli_json(&["client", "show", &id, "--format", "json"]),
        shown
    );
}

#[test]
fn a_refresh_token_presented_to_two_nodes_at_once_rotates_once() {
    let url = crate::pg::database();
    let a = node(&url);
    let b = node(&url);
    a.create_user("alice", "wonderland42");
    let (id, secret) = a.create_client(&[
        "--grant-type",
        "password",
        "--grant-type",
        "refresh_token",
        "--token-format",
        "opaque",
    ]);
    let grant =
        |n: &TestApp, form: &[(&str, &str)]| n.post_form("/token", Some((&id, &secret)), form);
    for round in 0..8 {
        let (status, body) = grant(
            &a,
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "wonderland42"),
            ],
        );
        assert_eq!(status, 200, "{body}");
        let refresh = body["refresh_token"].as_str().unwrap().to_owned();
        let access = body["access_token"].as_str().unwrap().to_owned();
        until_active(&b, &id, &secret, &access, true);
        // Both nodes decide on their own copy; their appends race for the client's stream,
        // and the loser decides again on what the winner wrote.
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ];
        let (x, y) = std::thread::scope(|s| {
            let on_a = s.spawn(|| grant(&a, &form));
            let on_b = s.spawn(|| grant(&b, &form));
            (on_a.join().unwrap(), on_b.join().unwrap())
        });
        let won = [&x, &y].iter().filter(|(status, _)| *status == 200).count();
        assert_eq!(won, 1, "round {round}: {x:?} {y:?}");
        let lost = if x.0 == 200 { &y } else { &x };
        assert_eq!(lost.0, 400, "round {round}: {lost:?}");
        assert_eq!(lost.1["error"], "invalid_grant", "round {round}: {lost:?}");
    }
}

#[test]
fn a_checkpoint_signed_on_one_node_verifies_against_another_nodes_copy_and_replay_as_of_works_there(
) {
    let url = crate::pg::database();
    let a = node(&url);
    let b = node(&url);
    let (id, secret) = a.create_client(&["--token-format", "opaque"]);
    let token = issued(&a, &id, &secret);
    until_active(&b, &id, &secret, &token, true);
    let file = a.data_dir().join("checkpoint.jws");
    let out = a.cli(&["audit", "checkpoint", "-o", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwks = a.data_dir().join("jwks.json");
    std::fs::write(&jwks, a.get("/jwks").1.to_string()).unwrap();
    // B's copy holds the same chain: A's statement holds there, once B has copied that far.
    let started = Instant::now();
    loop {
        let out = b.cli(&[
            "audit",
            "verify",
            "--checkpoint",
            file.to_str().unwrap(),
            "--jwks",
            jwks.to_str().unwrap(),
        ]);
        if out.status.success() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Time travel on B: the client as it is now, and unknown before it existed.
    let trail = b.cli_json(&["audit", "query", "--client", &id, "--format", "json"]);
    let now = trail.as_array().unwrap().last().unwrap()["recorded_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = b.cli_json(&["client", "show", &id, "--as-of", &now, "--format", "json"]);
    assert!(shown.to_string().contains(&id), "{shown}");
    let before = b.cli_json(&[
        "client",
        "show",
        &id,
        "--as-of",
        "2000-01-01T00:00:00Z",
        "--format",
        "json",
    ]);
    assert_eq!(before["client"], serde_json::Value::Null, "{before}");
    assert_ne!(shown["client"], serde_json::Value::Null, "{shown}");
}

#[test]
fn audit_verify_walks_the_database_itself_and_names_a_row_changed_there() {
    let url = crate::pg::database();
    let a = node(&url);
    let (id, secret) = a.create_client(&["--token-format", "opaque"]);
    for _ in 0..5 {
        a.token(&id, &secret, None);
    }
    let verify = || {
        a.cli(&[
            "audit",
            "verify",
            "--format",
            "json",
            "--store",
            "postgres",
            "--database-url",
            &url,
        ])
    };
    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["shared_log"]["status"], "verified", "{report}");
    let events = report["shared_log"]["events"].as_u64().unwrap();
    assert!(events >= 6, "{report}");
    // One byte of one token's stored record, changed in the database.
    let db = url.rsplit('/').next().unwrap();
    let changed = crate::pg::psql(
        db,
        "WITH t AS (SELECT o.position + e.idx AS at, e.xid, e.idx FROM authledger_events e \
         JOIN authledger_order o ON o.xid = e.xid WHERE e.stream LIKE 'tokens-%' \
         ORDER BY e.version LIMIT 1 OFFSET 2) \
         UPDATE authledger_events e SET record = set_byte(e.record, 40, (get_byte(e.record, 40) + 1) % 256) \
         FROM t WHERE e.xid = t.xid AND e.idx = t.idx RETURNING t.at",
    );
    let out = verify();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("breaks at position {changed}")) && err.contains("hash"),
        "{err}"
    );
}

/// A node with extra `serve` flags.
fn node_with(url: &str, extra: &[&str]) -> TestApp {
    let mut flags = vec![
        "--store",
        "postgres",
        "--database-url",
        url,
        "--issuer",
        ISSUER,
        // The nodes share a name that is not this machine's, over plain HTTP.
        "--insecure-http",
    ];
    flags.extend_from_slice(extra);
    let mut app = TestApp::on(
        tempfile::tempdir().unwrap(),
        &flags,
        &[("AUTHLEDGER_ENCRYPTION_KEY", KEK)],
    );
    app.start();
    app
}

#[test]
fn compaction_on_one_node_reaches_every_copy_and_a_node_started_afterwards_steps_over_it() {
    let url = crate::pg::database();
    let mut a = node_with(&url, &["--test-clock"]);
    let mut b = node(&url);
    let (short, short_secret) =
        a.create_client(&["--token-format", "opaque", "--access-token-ttl", "1"]);
    let (long, long_secret) = a.create_client(&["--token-format", "opaque"]);
    for _ in 0..300 {
        a.token(&short, &short_secret, None);
    }
    let kept = issued(&a, &long, &long_secret);
    // Recent events are left alone: push the short-lived ones well behind the head.
    for _ in 0..600 {
        a.token(&long, &long_secret, None);
    }
    a.advance_clock(1100);
    let report = a.compact_expired_tokens();
    assert_eq!(report["removed"], 300, "{report}");
    let trail = |n: &TestApp| n.event_types_of(&short);
    assert_eq!(trail(&a), ["ClientRegistered"]);
    // B removed them as it copied the compaction records.
    let started = Instant::now();
    while trail(&b) != ["ClientRegistered"] {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            trail(&b)
        );
    }
    until_active(&b, &long, &long_secret, &kept, true);
    // A node started now copies the log with the compacted rows stepped over.
    let mut c = node(&url);
    assert_eq!(trail(&c), ["ClientRegistered"]);
    assert_eq!(c.introspect(&long, &long_secret, &kept)["active"], true);
    // The database's chains and every copy's chain verify.
    for n in [&a, &b, &c] {
        let out = n.cli(&[
            "audit",
            "verify",
            "--format",
            "json",
            "--store",
            "postgres",
            "--database-url",
            &url,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], "verified", "{v}");
        assert_eq!(v["shared_log"]["status"], "verified", "{v}");
        assert!(!v["checkpoints"].as_array().unwrap().is_empty(), "{v}");
    }
    a.stop();
    b.stop();
    c.stop();
    // The copies agree event for event, compacted positions included.
    let copy = |n: &TestApp| {
        let log = Log::embedded(&n.data_dir().join("log")).unwrap();
        let events: Vec<(u64, uuid::Uuid, String)> = log
            .read_all(1, 100_000)
            .unwrap()
            .into_iter()
            .map(|e| (e.position, e.id, e.prev_hash))
            .collect();
        (events, log.compacted_runs().unwrap().len())
    };
    let (ca, ra) = copy(&a);
    let (cb, rb) = copy(&b);
    let (cc, rc) = copy(&c);
    let both = ca.len().min(cb.len()).min(cc.len());
    assert!(both > 600);
    assert_eq!(ca[..both], cb[..both]);
    assert_eq!(ca[..both], cc[..both]);
    assert_eq!((ra, rb), (rc, rc));
}
