//! What the embedded log promises on disk: a changed byte is named, never dropped; a torn
//! last record is cut off with a warning; damaged checkpoints are rebuilt; a full disk is a
//! 503 and passes without a restart; a data directory of the sled release is imported whole;
//! signed checkpoints catch a cut or rewritten log.

use crate::helpers::*;
use crate::logfile;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Two clients, tokens of each, one revoked: answers (client, secret, token, active).
fn history(app: &TestApp) -> Vec<(String, String, String, bool)> {
    let mut out = Vec::new();
    for _ in 0..2 {
        let (id, secret) = app.create_client(&["--token-format", "opaque"]);
        for i in 0..3 {
            let t = app.token(&id, &secret, None);
            let token = t["access_token"].as_str().unwrap().to_owned();
            let revoked = i == 1;
            if revoked {
                let (status, _) =
                    app.post_form("/revoke", Some((&id, &secret)), &[("token", &token)]);
                assert_eq!(status, 200);
            }
            out.push((id.clone(), secret.clone(), token, !revoked));
        }
    }
    out
}

fn assert_answers(app: &TestApp, tokens: &[(String, String, String, bool)]) {
    for (id, secret, token, active) in tokens {
        assert_eq!(
            app.introspect(id, secret, token)["active"],
            *active,
            "token of {id}"
        );
    }
}

/// A log file's text without the terminal colour codes tracing writes.
fn plain_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn stderr_of(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_changed_byte_is_named_by_event_file_and_offset_and_nothing_is_dropped() {
    let mut app = spawn_app();
    let tokens = history(&app);
    app.stop();
    let records = logfile::records(app.data_dir());
    let head = records.last().unwrap().position;
    for victim in [&records[records.len() / 2], records.last().unwrap()] {
        // A bit flipped inside the payload, checksum left as it was (a bad disk).
        let at = victim.offset + 16 + 20;
        logfile::flip(&victim.file, at);
        let err = failed_start(app.data_dir(), &[], &[]);
        let file = victim
            .file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for needle in [
            format!("damaged at event {}", victim.position),
            file.clone(),
            format!("offset {}", victim.offset),
            "Restore the data directory from a backup".into(),
        ] {
            assert!(err.contains(&needle), "{needle:?} not in {err}");
        }
        let out = app.cli(&["audit", "verify"]);
        assert!(!out.status.success());
        let text = stderr_of(&out);
        assert!(
            text.contains(&format!("damaged at event {}", victim.position)) && text.contains(&file),
            "{text}"
        );
        // Nothing was cut off or rewritten: putting the byte back heals it.
        logfile::flip(&victim.file, at);
        assert_eq!(logfile::records(app.data_dir()).len(), records.len());
    }
    let report = app.cli_json(&["audit", "verify", "--format", "json"]);
    assert_eq!(report["head_position"].as_u64(), Some(head), "{report}");
    app.start();
    assert_answers(&app, &tokens);
}

#[test]
fn a_torn_last_record_is_cut_off_with_a_warning_and_acknowledged_events_stay() {
    let mut app = spawn_app();
    let tokens = history(&app);
    app.stop();
    let records = logfile::records(app.data_dir());
    let last = records.last().unwrap();
    let end = last.offset + 16 + last.payload.len() as u64;
    // A frame that claims 400 bytes of which 120 reached the disk before the crash.
    let mut torn = Vec::new();
    torn.extend_from_slice(&400u32.to_le_bytes());
    torn.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    torn.extend_from_slice(&(last.position + 1).to_le_bytes());
    torn.extend_from_slice(&[b'{'; 120]);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&last.file)
            .unwrap();
        f.write_all_at(&torn, end).unwrap();
    }
    let log = app.data_dir().join("serve.log");
    app.log = Some(log.clone());
    app.start();
    let text = plain_log(&log);
    assert!(
        text.contains("never completely written") && text.contains(&format!("offset={end}")),
        "{text}"
    );
    assert!(text.contains(&format!("bytes={}", torn.len())), "{text}");
    assert_answers(&app, &tokens);
    app.stop();
    // Every record stays; the server's background walk appended its own after them.
    let after = logfile::records(app.data_dir());
    assert!(after.len() >= records.len());
    for (a, b) in records.iter().zip(&after) {
        assert_eq!((a.position, &a.payload), (b.position, &b.payload));
    }
    let report = app.cli_json(&["audit", "verify", "--format", "json"]);
    assert_eq!(report["status"], "verified", "{report}");
}

#[test]
fn a_damaged_or_half_written_checkpoint_is_rebuilt_from_the_log_and_named() {
    let mut app = spawn_app();
    let tokens = history(&app);
    app.stop();
    let checkpoints = app.data_dir().join("projections");
    let tokens_ckpt = checkpoints.join("tokens.ckpt");
    let size = std::fs::metadata(&tokens_ckpt).unwrap().len();
    logfile::flip(&tokens_ckpt, size - 3);
    // A checkpoint write killed half-way leaves its temporary file, never the real one.
    std::fs::write(checkpoints.join("clients.tmp"), b"ALPROJ01 half").unwrap();
    let log = app.data_dir().join("serve.log");
    app.log = Some(log.clone());
    app.start();
    let text = plain_log(&log);
    assert!(
        text.contains("projection checkpoint is damaged")
            && text.contains("tokens.ckpt")
            && text.contains("offset="),
        "{text}"
    );
    assert_answers(&app, &tokens);
    app.stop();
    // A file cut short in place (not through a rename) is caught the same way.
    let clients_ckpt = checkpoints.join("clients.ckpt");
    let bytes = std::fs::read(&clients_ckpt).unwrap();
    std::fs::write(&clients_ckpt, &bytes[..bytes.len() / 2]).unwrap();
    app.start();
    assert_answers(&app, &tokens);
    let listed = app.cli_json(&["client", "list", "--format", "json"]);
    assert!(listed.as_array().unwrap().len() >= 3, "{listed}");
}

/// A tmpfs of `mb` MiB mounted on a fresh directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mb: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "the disk-full test mounts a small tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a file until no byte is left.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", filler.display()))
            .output()
            .unwrap();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).output();
    }
}

#[test]
fn a_full_disk_answers_503_loses_no_acknowledged_token_and_passes_without_a_restart() {
    let disk = SmallDisk::mount(48);
    let data = tempfile::tempdir_in(disk.path()).unwrap();
    let mut app = TestApp::on(data, &[], &[("AUTHLEDGER_SEGMENT_MB", "1")]);
    app.start();
    let (id, secret) = app.create_client(&["--token-format", "opaque"]);
    let filler = disk.fill();
    let mut acknowledged = Vec::new();
    let mut refused = None;
    // A 1 MiB segment holds about a thousand tokens; the next one cannot be made.
    for _ in 0..20_000 {
        let (status, body) = app.post_form(
            "/token",
            Some((&id, &secret)),
            &[("grant_type", "client_credentials")],
        );
        match status {
            200 => acknowledged.push(body["access_token"].as_str().unwrap().to_owned()),
            503 => {
                refused = Some(body);
                break;
            }
            other => panic!("status {other}: {body}"),
        }
    }
    let body = refused.expect("the disk never filled");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(acknowledged.len() > 100, "{}", acknowledged.len());
    // Still full: still refused, still no answer other than 503.
    let (status, _) = app.post_form(
        "/token",
        Some((&id, &secret)),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 503);
    // Reads go on meanwhile.
    assert_eq!(
        app.introspect(&id, &secret, &acknowledged[0])["active"],
        true
    );
    std::fs::remove_file(filler).unwrap();
    let t = app.token(&id, &secret, None);
    acknowledged.push(t["access_token"].as_str().unwrap().to_owned());
    app.stop();
    app.start();
    for token in acknowledged.iter().step_by(50).chain(acknowledged.last()) {
        assert_eq!(app.introspect(&id, &secret, token)["active"], true);
    }
    app.stop();
    let report = app.cli_json(&["audit", "verify", "--format", "json"]);
    assert_eq!(report["status"], "verified", "{report}");
    assert!(report["events"].as_u64().unwrap() > acknowledged.len() as u64);
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/sled-v1/expected")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A client as this version shows it, compared with what the sled release answered: every
/// field it showed is the same, and the fields added since hold their defaults.
fn as_the_sled_release_showed(now: Value) -> Value {
    let added = [
        ("id_token_signed_response_alg", Value::from("RS256")),
        ("subject_type", Value::from("public")),
    ];
    let mut now = now;
    for (field, default) in added {
        assert_eq!(
            now[field], default,
            "{field} of a client from before it existed"
        );
        now.as_object_mut().unwrap().remove(field);
    }
    now
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the sled release's data directory, its keys 0600 as the release wrote them.
fn sled_fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // The import opens the sled files, which sled rewrites even to read them: use a copy.
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sled-v1/data"),
        dir.path(),
    );
    // Git keeps no file modes but the executable bit: the release wrote its keys 0600, and
    // the server refuses a key others can read.
    for key in ["encryption.key", "session.key"] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path().join(key), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    dir
}

#[test]
fn without_migrate_the_first_command_on_a_sled_data_directory_imports_it() {
    let dir = sled_fixture_copy();
    let out = cli(dir.path(), &["audit", "verify", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report, fixture("audit-verify.json"));
    assert!(dir.path().join("log").is_dir() && dir.path().join("store").exists());
    assert_eq!(
        as_the_sled_release_showed(
            serde_json::from_slice::<Value>(
                &cli(
                    dir.path(),
                    &["client", "show", "billing", "--format", "json"]
                )
                .stdout
            )
            .unwrap()
        ),
        fixture("client-show-billing.json")
    );
}

#[test]
fn a_data_directory_of_the_sled_release_is_imported_whole_with_the_same_answers() {
    let dir = sled_fixture_copy();
    let out = cli(dir.path(), &["migrate", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = fixture("audit-verify.json");
    assert_eq!(report["events"], expected["events"], "{report}");
    assert_eq!(report["head_hash"], expected["head_hash"], "{report}");
    assert!(
        dir.path().join("store").exists(),
        "the old store is left in place"
    );
    let again = cli(dir.path(), &["migrate"]);
    assert!(!again.status.success() && stderr_of(&again).contains("already holds the new log"));
    let json = |args: &[&str]| -> Value {
        let out = cli(dir.path(), args);
        assert!(out.status.success(), "{}", stderr_of(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(json(&["audit", "verify", "--format", "json"]), expected);
    assert_eq!(
        as_the_sled_release_showed(json(&["client", "show", "billing", "--format", "json"])),
        fixture("client-show-billing.json")
    );
    assert_eq!(
        as_the_sled_release_showed(json(&["client", "show", "reports", "--format", "json"])),
        fixture("client-show-reports.json")
    );
    assert_eq!(
        json(&["audit", "query", "--format", "json", "--limit", "10000"]),
        fixture("audit-query.json")
    );
    // Introspection: the revoked tokens are inactive; the others are active while they have
    // not expired (the fixture's tokens were issued for a day on 2026-12-02).
    let events = fixture("audit-query.json");
    let expiry = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["type"] == "AccessTokenIssued" && e["data"]["client_id"] != "authledger-admin"
        })
        .map(|e| e["data"]["expires_at"].as_i64().unwrap())
        .min()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // The JWTs name the issuer of the server that signed them.
    let jwt = fixture("tokens.json")
        .as_array()
        .unwrap()
        .iter()
        .find_map(|t| {
            t["token"]
                .as_str()
                .filter(|s| s.starts_with("ey"))
                .map(str::to_owned)
        })
        .unwrap();
    let issuer = {
        use base64::Engine as _;
        let payload = jwt.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["iss"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut app = TestApp::on(dir, &["--issuer", &issuer], &[]);
    app.start();
    for t in fixture("tokens.json").as_array().unwrap() {
        let answer = app.introspect(
            t["client_id"].as_str().unwrap(),
            t["client_secret"].as_str().unwrap(),
            t["token"].as_str().unwrap(),
        );
        let expected = t["active"].as_bool().unwrap() && now < expiry;
        assert_eq!(answer["active"], expected, "{t}");
    }
    app.stop();
}

/// A data directory of the release before keyed hashes: its tokens, refresh tokens and client
/// secrets are recorded as bare SHA-256 (`fixtures/unkeyed-v1/README.md`).
#[test]
fn a_log_of_bare_hashes_keeps_working_and_new_events_hold_keyed_hashes_only() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/unkeyed-v1");
    copy_dir(&fixture.join("data"), dir.path());
    for key in ["encryption.key", "session.key", "admin.json"] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path().join(key), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    let known: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("tokens.json")).unwrap())
            .unwrap();
    let secret = |id: &str| known["clients"][id].as_str().unwrap().to_owned();
    let hashes_before = |app: &TestApp| -> Vec<String> {
        let all = app.cli_json(&["audit", "query", "--format", "json", "--limit", "10000"]);
        let mut found = Vec::new();
        collect_hashes(&all, &mut found);
        found
    };
    let mut app = TestApp::on(
        dir,
        &[
            "--refresh-token-ttl-secs",
            "2000000000",
            "--refresh-family-ttl-secs",
            "2000000000",
        ],
        &[],
    );
    let old = hashes_before(&app);
    assert!(
        !old.is_empty() && old.iter().all(|h| h.starts_with("sha256:")),
        "the fixture holds bare hashes only: {old:?}"
    );
    app.start();
    // Secrets recorded as bare hashes still authenticate; wrong ones still do not.
    let (svc, app_secret) = (secret("svc"), secret("app"));
    app.token("svc", &svc, None);
    let (status, _) = app.post_form(
        "/token",
        Some(("svc", "svc-secret-0123456789abcdef012345678X")),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 401);
    // An old refresh token introspects as active, and rotates once.
    let kept = known["refresh_to_introspect"].as_str().unwrap();
    let answer = app.introspect("app", &app_secret, kept);
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["username"], "alice", "{answer}");
    let rotate = known["refresh_to_rotate"].as_str().unwrap();
    let (status, rotated) = app.post_form(
        "/token",
        Some(("app", &app_secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", rotate)],
    );
    assert_eq!(status, 200, "{rotated}");
    let new_access = rotated["access_token"].as_str().unwrap();
    assert_eq!(
        app.introspect("app", &app_secret, new_access)["active"],
        true
    );
    // The old token is now used: presenting it again is a replay, which revokes the family.
    let (status, replay) = app.post_form(
        "/token",
        Some(("app", &app_secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", rotate)],
    );
    assert_eq!(
        (status, replay["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        app.introspect("app", &app_secret, new_access)["active"],
        false
    );
    // Revoking an old refresh token by its value finds it.
    let (status, _) = app.post_form("/revoke", Some(("app", &app_secret)), &[("token", kept)]);
    assert_eq!(status, 200);
    assert_eq!(app.introspect("app", &app_secret, kept)["active"], false);
    // New tokens and a new secret are recorded under keyed hashes only.
    let fresh = app.token("svc", &svc, None);
    let fresh = fresh["access_token"].as_str().unwrap();
    assert_eq!(app.introspect("svc", &svc, fresh)["active"], true);
    let rotated_secret = app.cli_json(&["client", "rotate-secret", "svc", "--format", "json"]);
    let new_secret = rotated_secret["client_secret"].as_str().unwrap();
    app.token("svc", new_secret, None);
    app.stop();
    let all = hashes_before(&app);
    let added: Vec<&String> = all.iter().filter(|h| !old.contains(h)).collect();
    assert!(
        added.len() >= 4 && added.iter().all(|h| h.starts_with("hmac-sha256:")),
        "new events hold keyed hashes only: {added:?}"
    );
    // Replay rebuilds the same answers from the mixed log.
    let out = app.cli(&["replay", "--verify"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
}

/// Every `*_hash` string in a JSON document.
fn collect_hashes(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v.as_str() {
                    Some(s) if k.ends_with("_hash") && s.contains(':') => out.push(s.to_owned()),
                    _ => collect_hashes(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_hashes(v, out)),
        _ => {}
    }
}

/// The walk `docs/log-format.md` gives, as it stands there.
fn documented_script() -> PathBuf {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/log-format.md"))
            .unwrap();
    let start = doc
        .find("```python\n")
        .expect("the script in docs/log-format.md")
        + 10;
    let len = doc[start..].find("```").unwrap();
    let path = std::env::temp_dir().join(format!("verify_log-{}.py", std::process::id()));
    std::fs::write(&path, &doc[start..start + len]).unwrap();
    path
}

fn run_documented_script(script: &Path, data_dir: &Path) -> (bool, String) {
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(data_dir)
        .output()
        .expect("python3 runs the script of docs/log-format.md (scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr_of(&out)
    );
    (out.status.success(), text)
}

#[test]
fn the_script_of_the_format_page_walks_a_log_of_both_envelopes_and_finds_a_changed_byte() {
    // The sled release's events keep their JSON envelope; this build appends binary ones.
    let dir = sled_fixture_copy();
    let out = cli(dir.path(), &["migrate"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let mut app = TestApp::on(dir, &[], &[]);
    app.start();
    let (id, secret) = app.create_client(&[]);
    app.token(&id, &secret, None);
    app.stop();
    let found = logfile::records(app.data_dir());
    let first = |tag: u8| found.iter().position(|r| r.payload[0] == tag);
    let (json, binary) = (first(b'{').unwrap(), first(2).unwrap());
    assert!(json < binary, "JSON records first, then binary ones");

    let report = app.cli_json(&["audit", "verify", "--format", "json"]);
    let script = documented_script();
    let (ok, text) = run_documented_script(&script, app.data_dir());
    assert!(ok, "{text}");
    let head = report["head_hash"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "up to position {}, head hash {head}",
            report["head_position"]
        )),
        "the script and audit verify agree: {text} / {report}"
    );

    // One byte of a binary event's id changed, its record's CRC made right again: the event
    // still reads, but no longer hashes to what its successor recorded.
    let mut changed = logfile::as_pairs(&found);
    let victim = binary + (found.len() - binary) / 2;
    changed[victim].1[20] ^= 0x01;
    logfile::rewrite(app.data_dir(), &changed);
    let (ok, text) = run_documented_script(&script, app.data_dir());
    let _ = std::fs::remove_file(&script);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("broken: ({},)", found[victim + 1].position)),
        "the event after the changed one no longer links: {text}"
    );
}

#[test]
fn a_signed_checkpoint_verifies_and_catches_a_cut_tail_and_a_rewritten_history() {
    let mut app = spawn_app();
    history(&app);
    let file = app.data_dir().join("checkpoint.jws");
    let out = app.cli(&["audit", "checkpoint", "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let jwks = app.data_dir().join("jwks.json");
    let (status, keys) = app.get("/jwks");
    assert_eq!(status, 200);
    std::fs::write(&jwks, keys.to_string()).unwrap();
    let check = |app: &TestApp| {
        app.cli(&[
            "audit",
            "verify",
            "--checkpoint",
            file.to_str().unwrap(),
            "--jwks",
            jwks.to_str().unwrap(),
        ])
    };
    let out = check(&app);
    assert!(out.status.success(), "{}", stderr_of(&out));
    // The log goes on growing; the checkpoint still holds.
    history(&app);
    let out = check(&app);
    assert!(out.status.success(), "{}", stderr_of(&out));
    app.stop();
    let out = check(&app);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stated: u64 = {
        let claims = file_claims(&file);
        claims["position"].as_u64().unwrap()
    };
    let records = logfile::as_pairs(&logfile::records(app.data_dir()));
    let meta = |name: &str| app.data_dir().join("log").join(name);

    // The tail cut off before the stated position, the log's own markers removed with it.
    let cut: Vec<_> = records
        .iter()
        .filter(|(p, _)| *p < stated)
        .cloned()
        .collect();
    logfile::rewrite(app.data_dir(), &cut);
    for m in ["index.meta", "verified.meta"] {
        let _ = std::fs::remove_file(meta(m));
    }
    let plain = app.cli(&["audit", "verify"]);
    assert!(plain.status.success(), "{}", stderr_of(&plain));
    let out = check(&app);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("events were removed from its end"),
        "{}",
        stderr_of(&out)
    );

    // History rewritten before the stated position, the chain recomputed after it.
    let mut forged = records.clone();
    let victim = (stated / 2) as usize;
    let mut prev = String::new();
    for (i, (_, payload)) in forged.iter_mut().enumerate() {
        if i >= victim {
            use authledger::store::record;
            let mut e = record::decode(payload).unwrap();
            if i == victim {
                e.metadata.user_agent = Some("forged".into());
            } else {
                e.prev_hash = prev.clone();
            }
            *payload = record::encode(&e).unwrap();
        }
        prev = authledger::store::log::chain_hash(payload);
    }
    logfile::rewrite(app.data_dir(), &forged);
    for m in ["index.meta", "verified.meta"] {
        let _ = std::fs::remove_file(meta(m));
    }
    let plain = app.cli(&["audit", "verify"]);
    assert!(
        plain.status.success(),
        "a forger who re-chains passes the plain walk: {}",
        stderr_of(&plain)
    );
    let out = check(&app);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("was rewritten"),
        "{}",
        stderr_of(&out)
    );

    // And a statement whose signature does not verify is refused.
    logfile::rewrite(app.data_dir(), &records);
    let mut jws = std::fs::read_to_string(&file).unwrap();
    jws = jws.trim().to_owned();
    // A character inside the signature (the last one may only carry padding bits).
    let at = jws.len() - 10;
    let c = jws.as_bytes()[at];
    jws.replace_range(at..=at, if c == b'A' { "B" } else { "A" });
    std::fs::write(&file, jws).unwrap();
    let out = check(&app);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("signature does not verify"),
        "{}",
        stderr_of(&out)
    );
}

fn file_claims(file: &Path) -> Value {
    use base64::Engine as _;
    let jws = std::fs::read_to_string(file).unwrap();
    let payload = jws.trim().split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn allowed_past_damage_the_server_serves_read_only_what_precedes_it_and_changes_nothing() {
    let mut app = spawn_app();
    let _dump = DumpLogOnPanic(app.data_dir().join("serve.log"));
    let tokens = history(&app);
    app.stop();
    let records = logfile::records(app.data_dir());
    let last = records.last().unwrap();
    let before = std::fs::read(&last.file).unwrap();
    logfile::flip(&last.file, last.offset + 16 + 20);
    let damaged = std::fs::read(&last.file).unwrap();
    let files_before = every_file(app.data_dir());
    app.log = Some(app.data_dir().join("serve.log"));
    app.flags = vec!["--allow-unverified".into()];
    app.start();
    // The damaged record is the last token's issuance: every other token precedes it.
    assert_answers(&app, &tokens[..tokens.len() - 1]);
    let (id, secret, _, _) = &tokens[0];
    let (status, body) = app.post_form(
        "/token",
        Some((id, secret)),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    app.stop();
    assert_eq!(
        std::fs::read(&last.file).unwrap(),
        damaged,
        "nothing was cut or repaired"
    );
    assert_eq!(
        every_file(app.data_dir()),
        files_before,
        "no checkpoint or marker was written"
    );
    std::fs::write(&last.file, before).unwrap();
    app.flags.clear();
    app.start();
    assert_answers(&app, &tokens);
}

/// Prints a server log if the test fails, for the CI output.
struct DumpLogOnPanic(PathBuf);

impl Drop for DumpLogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(text) = std::fs::read_to_string(&self.0) {
                eprintln!("--- {} ---\n{text}", self.0.display());
            }
        }
    }
}

/// The contents of the log's and the projections' files.
fn every_file(data_dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["log", "projections"] {
        if let Ok(entries) = std::fs::read_dir(data_dir.join(sub)) {
            for e in entries {
                let p = e.unwrap().path();
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}
