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

#[test]
fn a_lost_admin_credential_is_replaced_and_a_missing_or_wrong_encryption_key_stops_the_start() {
    let mut app = spawn_app();
    let (id, secret) = app.create_client(&[]);
    app.stop();
    std::fs::remove_file(app.data_dir().join("admin.json")).unwrap();
    app.start();
    assert!(
        app.data_dir().join("admin.json").exists(),
        "admin.json was not rewritten"
    );
    let out = app.cli(&["client", "show", &id, "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.token(&id, &secret, None);
    app.stop();

    // The signing keys are in the log, sealed: without their key-encryption key the server
    // says what is missing instead of minting new keys.
    let kek = app.data_dir().join("encryption.key");
    let saved = std::fs::read(&kek).unwrap();
    std::fs::remove_file(&kek).unwrap();
    let err = crate::helpers::failed_start(app.data_dir(), &[], &[]);
    assert!(
        err.contains("no key-encryption key") && err.contains("AUTHLEDGER_ENCRYPTION_KEY"),
        "{err}"
    );
    assert!(
        !kek.exists(),
        "a fresh key-encryption key was made over sealed keys"
    );
    let wrong = "ab".repeat(32);
    let err = crate::helpers::failed_start(
        app.data_dir(),
        &[],
        &[("AUTHLEDGER_ENCRYPTION_KEY", wrong.as_str())],
    );
    assert!(
        err.contains("was encrypted under key-encryption key"),
        "{err}"
    );
    let err = crate::helpers::failed_start(
        app.data_dir(),
        &[],
        &[("AUTHLEDGER_ENCRYPTION_KEY", "not a key")],
    );
    assert!(err.contains("must be 32 bytes"), "{err}");
    std::fs::write(&kek, saved).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = crate::helpers::failed_start(app.data_dir(), &[], &[]);
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    app.start();
    app.token(&id, &secret, None);
}
