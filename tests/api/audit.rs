//! The audit trail: the hash chain, queries, the live stream, time travel, replay checks and
//! retention.

use crate::helpers::*;
use serde_json::Value;
use std::path::Path;

/// Opens the stopped server's log tree directly, as someone with access to the disk could.
fn with_log<T>(data_dir: &Path, f: impl FnOnce(&sled::Tree) -> T) -> T {
    let db = sled::open(data_dir.join("store")).unwrap();
    let log = db.open_tree("log").unwrap();
    let out = f(&log);
    db.flush().unwrap();
    out
}

fn event_key(position: u64) -> Vec<u8> {
    let mut k = vec![b'e'];
    k.extend_from_slice(&position.to_be_bytes());
    k
}

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

    // One byte of one event, inside a string so that it stays readable JSON.
    let original = with_log(app.data_dir(), |log| {
        let key = event_key(target);
        let original = log.get(&key).unwrap().unwrap().to_vec();
        let mut changed = original.clone();
        let at = String::from_utf8_lossy(&original).find("\"stream\":\"").unwrap() + 10;
        changed[at] ^= 0x01;
        log.insert(&key, changed).unwrap();
        original
    });
    let (ok, text) = verify(&app);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("breaks at position {target}:")),
        "{text}"
    );
    // The server refuses to start on it, and says what to do.
    let err = failed_start(app.data_dir(), &[], &[]);
    assert!(err.contains(&format!("breaks at position {target}")), "{err}");
    assert!(err.contains("--allow-unverified"), "{err}");
    // Told to, it serves anyway.
    app.flags = vec!["--allow-unverified".into()];
    app.start();
    assert_eq!(app.get("/healthz").0, 200);
    app.stop();
    app.flags.clear();

    // Put it back: the chain holds again. Then remove one event.
    with_log(app.data_dir(), |log| {
        log.insert(event_key(target), original.clone()).unwrap();
    });
    let (ok, text) = verify(&app);
    assert!(ok, "{text}");
    let removed_at = target + 1;
    let removed = with_log(app.data_dir(), |log| {
        log.remove(event_key(removed_at)).unwrap().unwrap()
    });
    let (ok, text) = verify(&app);
    assert!(!ok);
    assert!(
        text.contains(&format!("breaks at position {removed_at}:")) && text.contains("missing"),
        "{text}"
    );
    with_log(app.data_dir(), |log| {
        log.insert(event_key(removed_at), removed).unwrap();
    });

    // Swap two neighbours.
    with_log(app.data_dir(), |log| {
        let a = log.get(event_key(target)).unwrap().unwrap();
        let b = log.get(event_key(target + 1)).unwrap().unwrap();
        log.insert(event_key(target), b).unwrap();
        log.insert(event_key(target + 1), a).unwrap();
    });
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
