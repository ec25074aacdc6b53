//! Golden events: every recorded event type and schema version in `fixtures/events/` must still
//! decode, so a change that breaks stored events fails here.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use domain::{Event, RecordedEvent};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/events")
}

#[test]
fn every_golden_event_decodes_into_todays_types() {
    let mut seen = Vec::new();
    for dir in std::fs::read_dir(fixtures()).unwrap() {
        let dir = dir.unwrap().path();
        let type_name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let version: u16 = file
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .trim_start_matches('v')
                .parse()
                .unwrap();
            let text = std::fs::read_to_string(&file).unwrap();
            let event: RecordedEvent = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} no longer decodes: {e}", file.display()));
            assert_eq!(event.event.type_name(), type_name, "{}", file.display());
            // An older version comes out upcast to today's.
            let current = Event::current_version(&type_name);
            assert!(version <= current, "{}", file.display());
            assert_eq!(event.schema_version, current, "{}", file.display());
            let again: RecordedEvent =
                serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
            assert_eq!(again, event);
            seen.push(format!("{type_name}/v{version}"));
        }
    }
    for name in Event::TYPE_NAMES {
        for v in 1..=Event::current_version(name) {
            let want = format!("{name}/v{v}");
            assert!(seen.contains(&want), "no golden event {want}");
        }
    }
}

#[test]
fn an_old_version_golden_event_decodes_into_todays_type() {
    use domain::event::{SignInVia, UserLoginFailed};
    let text = std::fs::read_to_string(fixtures().join("UserLoginFailed/v1.json")).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stored["schema_version"], 1);
    assert_eq!(
        stored["data"]["via"], "login",
        "the fixture keeps the old form"
    );
    let event: RecordedEvent = serde_json::from_str(&text).unwrap();
    match &event.event {
        Event::UserLoginFailed(UserLoginFailed { via, username, .. }) => {
            assert_eq!(*via, SignInVia::LoginPage);
            assert_eq!(username, "alice");
        }
        other => panic!("{other:?}"),
    }
    // Written again, it is today's version.
    let again: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
    assert_eq!(again["schema_version"], 2);
    assert_eq!(again["data"]["via"]["kind"], "login_page");
}

#[test]
fn golden_events_hold_hashes_never_raw_secrets() {
    for name in [
        "ClientRegistered",
        "ClientSecretRotated",
        "AccessTokenIssued",
        "AuthorizationCodeIssued",
        "RefreshTokenIssued",
        "UserRegistered",
        "UserProfileChanged",
    ] {
        let text = std::fs::read_to_string(fixtures().join(name).join("v1.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for field in ["secret_hash", "token_hash", "code_hash"] {
            if let Some(h) = v["data"].get(field).and_then(|h| h.as_str()) {
                assert!(h.starts_with("sha256:") && h.len() == 71, "{name}.{field}");
            }
        }
        assert!(v["data"].get("client_secret").is_none());
        assert!(v["data"].get("access_token").is_none());
        assert!(v["data"].get("code").is_none());
        assert!(v["data"].get("refresh_token").is_none());
        assert!(v["data"].get("password").is_none());
        if let Some(p) = v["data"].get("password_hash").and_then(|h| h.as_str()) {
            assert!(p.starts_with("$argon2id$"), "{name}.password_hash");
        }
        if name == "UserProfileChanged" {
            assert!(
                !text.contains("password"),
                "a profile never holds a password"
            );
        }
    }
}

#[test]
fn golden_signing_keys_hold_sealed_private_keys_only() {
    let text =
        std::fs::read_to_string(fixtures().join("SigningKeyGenerated").join("v1.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let data = &v["data"];
    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(
            data["public_jwk"].get(private).is_none(),
            "public_jwk.{private}"
        );
    }
    assert!(data["private_key"]["ciphertext"].is_string());
    assert_eq!(data["private_key"]["kek_id"].as_str().unwrap().len(), 16);
    assert!(!text.contains("PRIVATE KEY"));
}
