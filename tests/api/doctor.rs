//! `authledger doctor` on a data directory, with the server running and stopped: every check
//! passes on a healthy one, and each fault is named with what to do about it.

use crate::helpers::spawn_app;
use crate::logfile;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;

/// Runs doctor; answers its exit status's success and its checks by name.
fn doctor(app: &crate::helpers::TestApp, env: &[(&str, &str)]) -> (bool, Vec<Value>) {
    let out = std::process::Command::new(crate::helpers::BIN)
        .args(["doctor", "--format", "json", "--data-dir"])
        .arg(app.data_dir())
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON report: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.success(),
        report["checks"].as_array().unwrap().clone(),
    )
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

fn failed(checks: &[Value]) -> Vec<&Value> {
    checks.iter().filter(|c| c["status"] == "fail").collect()
}

#[test]
fn doctor_passes_a_healthy_directory_and_names_each_fault_with_its_fix() {
    let mut app = spawn_app();
    let (id, secret) = app.create_client(&[]);
    app.token(&id, &secret, None);
    // Running: checked through the server where the files are in its hands.
    let (ok, checks) = doctor(&app, &[]);
    assert!(ok, "{checks:?}");
    assert!(failed(&checks).is_empty(), "{checks:?}");
    assert!(check(&checks, "server")["detail"]
        .as_str()
        .unwrap()
        .contains("running"));
    assert_eq!(check(&checks, "log chain")["status"], "ok");

    app.stop();
    // A directory others may list is worth a warning, not a failure.
    std::fs::set_permissions(app.data_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ok, checks) = doctor(&app, &[]);
    assert!(ok, "{checks:?}");
    let dir = check(&checks, "data directory");
    assert_eq!(dir["status"], "warn", "{dir}");
    assert!(
        dir["fix"].as_str().unwrap().starts_with("chmod 700"),
        "{dir}"
    );
    std::fs::set_permissions(app.data_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (ok, checks) = doctor(&app, &[]);
    assert!(ok, "{checks:?}");
    for name in [
        "data directory",
        "secret files",
        "key-encryption key",
        "signing keys",
        "log chain",
        "disk space",
    ] {
        assert_eq!(check(&checks, name)["status"], "ok", "{name}: {checks:?}");
    }
    assert!(check(&checks, "log chain")["detail"]
        .as_str()
        .unwrap()
        .contains("head hash"));

    // A secret file others can read.
    let kek = app.data_dir().join("encryption.key");
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, checks) = doctor(&app, &[]);
    assert!(!ok);
    let files = check(&checks, "secret files");
    assert_eq!(files["status"], "fail");
    assert!(
        files["fix"].as_str().unwrap().contains("chmod 600"),
        "{files}"
    );
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Another key-encryption key than the one the signing keys are sealed with.
    let other = "0000000000000000000000000000000000000000000000000000000000000001";
    let (ok, checks) = doctor(&app, &[("AUTHLEDGER_ENCRYPTION_KEY", other)]);
    assert!(!ok);
    let keys = check(&checks, "signing keys");
    assert_eq!(keys["status"], "fail", "{keys}");
    assert!(
        keys["fix"]
            .as_str()
            .unwrap()
            .contains("AUTHLEDGER_ENCRYPTION_KEY"),
        "{keys}"
    );

    // A changed byte in the log: named by position, with what to do.
    let records = logfile::records(app.data_dir());
    let victim = &records[records.len() / 2];
    let at = victim.offset + 16 + 20;
    logfile::flip(&victim.file, at);
    let (ok, checks) = doctor(&app, &[]);
    assert!(!ok);
    let chain = check(&checks, "log chain");
    assert_eq!(chain["status"], "fail");
    assert!(
        chain["detail"]
            .as_str()
            .unwrap()
            .contains(&victim.position.to_string()),
        "{chain}"
    );
    assert!(chain["fix"].as_str().unwrap().contains("backup"), "{chain}");
    logfile::flip(&victim.file, at);
    let (ok, _) = doctor(&app, &[]);
    assert!(ok);
}
