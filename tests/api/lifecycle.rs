//! Restart and replay: the log is the truth; the server answers the same after either.

use crate::helpers::spawn_app;

#[test]
fn tokens_keep_their_state_across_restart_and_replay() {
    let mut app = spawn_app();
    let (id, secret) = app.create_client(&["--scope", "read write"]);
    let (oid, osecret) = app.create_client(&["--scope", "read", "--token-format", "opaque"]);
    let kept = app.token(&id, &secret, Some("read"))["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let opaque = app.token(&oid, &osecret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = app.post_form("/revoke", Some((&id, &secret)), &[("token", &revoked)]);
    assert_eq!(status, 200);
    let before_kept = app.introspect(&id, &secret, &kept);
    let before_opaque = app.introspect(&oid, &osecret, &opaque);

    app.stop();
    app.start();
    assert_eq!(app.introspect(&id, &secret, &kept), before_kept);
    assert_eq!(app.introspect(&id, &secret, &revoked)["active"], false);
    assert_eq!(app.introspect(&oid, &osecret, &opaque), before_opaque);
    // Restarted actors keep deciding against the right stream versions.
    app.token(&id, &secret, None);
    app.stop();

    let audit_before = app.cli(&["audit", "query", "--limit", "1000", "--format", "jsonl"]);
    assert!(audit_before.status.success());
    let replay = app.cli(&["replay"]);
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let summary = String::from_utf8_lossy(&replay.stdout).to_string();
    assert!(
        summary.contains("replayed") && summary.contains("events/s"),
        "{summary}"
    );
    let audit_after = app.cli(&["audit", "query", "--limit", "1000", "--format", "jsonl"]);
    assert_eq!(audit_after.stdout, audit_before.stdout);
    for t in ["ClientRegistered", "AccessTokenIssued", "TokenRevoked"] {
        let filtered = app.cli(&["audit", "query", "--type", t, "--format", "jsonl"]);
        let text = String::from_utf8(filtered.stdout).unwrap();
        assert!(
            text.lines().count() >= 1 && text.lines().all(|l| l.contains(t)),
            "{t}"
        );
    }

    app.start();
    assert_eq!(app.introspect(&id, &secret, &kept), before_kept);
    assert_eq!(app.introspect(&id, &secret, &revoked)["active"], false);
    assert_eq!(app.introspect(&oid, &osecret, &opaque), before_opaque);
}

#[test]
fn replay_refuses_to_run_under_a_running_server() {
    let app = spawn_app();
    let out = app.cli(&["replay"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop it first"), "{err}");
}

#[test]
fn audit_queries_filter_by_client_subject_type_and_time() {
    let app = spawn_app();
    let (a, a_secret) = app.create_client(&["--scope", "read"]);
    let (b, b_secret) = app.create_client(&["--scope", "read"]);
    app.token(&a, &a_secret, None);
    app.token(&b, &b_secret, None);
    app.token(&a, &a_secret, None);
    let q = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["audit", "query", "--format", "jsonl"];
        all.extend_from_slice(args);
        let out = app.cli(&all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let by_client = q(&["--client", &a]);
    assert_eq!(by_client.len(), 3);
    assert!(by_client
        .windows(2)
        .all(|w| w[0]["position"].as_u64() < w[1]["position"].as_u64()));
    assert_eq!(q(&["--subject", &b]).len(), 1);
    assert_eq!(q(&["--client", &a, "--type", "AccessTokenIssued"]).len(), 2);
    assert_eq!(
        q(&[
            "--type",
            "ClientRegistered",
            "--type",
            "TokenRevoked",
            "--limit",
            "1000"
        ])
        .len(),
        3
    );
    assert_eq!(q(&["--client", &a, "--limit", "1"]).len(), 1);
    let first = by_client[0]["position"].as_u64().unwrap().to_string();
    assert_eq!(q(&["--client", &a, "--after", &first]).len(), 2);
    assert_eq!(q(&["--since", "2100-01-01T00:00:00Z"]).len(), 0);
    assert_eq!(q(&["--until", "2000-01-01T00:00:00Z"]).len(), 0);
    assert_eq!(
        q(&["--client", &a, "--since", "2000-01-01T00:00:00Z"]).len(),
        3
    );
    let out = app.cli(&["audit", "query", "--type", "NoSuchEvent"]);
    assert!(!out.status.success());
    let csv = app.cli(&["audit", "query", "--client", &a, "--format", "csv"]);
    assert_eq!(String::from_utf8(csv.stdout).unwrap().lines().count(), 4);
}
