//! `authledger import` against a running server: the Hydra, Keycloak and League fixtures of
//! `fixtures/import/` (written from each project's documented export format) register with
//! the expected mapping, imported secrets authenticate (bcrypt kept from Hydra and League,
//! plaintext from Keycloak), and each client's `ClientRegistered` names its origin.

use crate::helpers::{spawn_app, TestApp};
use serde_json::Value;

fn fixture(name: &str) -> String {
    format!("{}/fixtures/import/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs an import; answers the exit status's success and the report.
fn import(app: &TestApp, from: &str, file: &str, extra: &[&str]) -> (bool, Vec<Value>) {
    let path = fixture(file);
    let mut args = vec!["import", "--from", from, &path, "--format", "json"];
    args.extend_from_slice(extra);
    let out = app.cli(&args);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON report: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report.as_array().unwrap().clone())
}

fn line<'a>(report: &'a [Value], source_id: &str) -> &'a Value {
    report
        .iter()
        .find(|r| r["source_id"] == source_id)
        .unwrap_or_else(|| panic!("{source_id} not in the report"))
}

/// Whether `id` authenticates with `secret` (an introspection of nothing: 200 when the
/// client is who it says, 401 otherwise).
fn authenticates(app: &TestApp, id: &str, secret: &str) -> bool {
    let (status, body) = app.post_form("/introspect", Some((id, secret)), &[("token", "none")]);
    assert!(matches!(status, 200 | 401), "{status} {body}");
    status == 200
}

fn registered(app: &TestApp, id: &str) -> Value {
    let events = app.cli_json(&[
        "audit",
        "query",
        "--client",
        id,
        "--type",
        "ClientRegistered",
        "--format",
        "json",
    ]);
    events
        .as_array()
        .unwrap()
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("{id} has no ClientRegistered"))
}

#[test]
fn hydra_clients_import_with_their_bcrypt_secrets_and_origin() {
    let app = spawn_app();
    // --dry-run registers nothing.
    let (ok, plan) = import(&app, "hydra", "hydra-clients.json", &["--dry-run"]);
    assert!(ok);
    assert!(
        plan.iter().all(|r| r["action"] == "would import"),
        "{plan:?}"
    );
    assert!(
        app.cli(&["client", "show", "billing-service"])
            .status
            .code()
            != Some(0)
    );

    let (ok, report) = import(&app, "hydra", "hydra-clients.json", &[]);
    assert!(ok, "{report:?}");
    assert!(
        report.iter().all(|r| r["action"] == "imported"),
        "{report:?}"
    );
    let web = "6f1c9a7e-3b1d-4e0a-9a57-2c4f0d8b1e63";
    // Hydra's bcrypt hash ($2a$10$) is kept: the client's secret works as it did.
    assert_eq!(line(&report, web)["secret"], "bcrypt");
    assert!(authenticates(&app, web, "hydra-web-secret"));
    assert!(!authenticates(&app, web, "hydra-web-secreT"));
    // pbkdf2 cannot be verified: a new secret, shown once, and it works.
    let partner = line(&report, "partner-portal-eu");
    assert_eq!(partner["secret"], "rotated");
    let new_secret = partner["new_secret"].as_str().unwrap();
    // It keeps Hydra's client_secret_post: the secret in the body, not Basic.
    let post = |secret: &str| {
        app.post_form(
            "/introspect",
            None,
            &[
                ("token", "none"),
                ("client_id", "partner-portal-eu"),
                ("client_secret", secret),
            ],
        )
        .0
    };
    assert_eq!(post(new_secret), 200);
    assert_eq!(post("hydra-partner-secret"), 401);
    assert!(!authenticates(&app, "partner-portal-eu", new_secret));
    let unmapped: Vec<&str> = partner["unmapped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    for name in [
        "allowed_cors_origins",
        "frontchannel_logout_uri",
        "metadata",
        "client_secret",
    ] {
        assert!(
            unmapped.iter().any(|u| u.starts_with(name)),
            "{name}: {unmapped:?}"
        );
    }
    // The mapping, as the client now shows.
    let shown = app.cli_json(&["client", "show", web, "--format", "json"]);
    assert_eq!(shown["token_format"], "opaque", "{shown}");
    assert_eq!(shown["access_token_ttl"], 900, "{shown}");
    let billing = app.cli_json(&["client", "show", "billing-service", "--format", "json"]);
    assert_eq!(
        billing["token_endpoint_auth_method"], "private_key_jwt",
        "{billing}"
    );
    // The event names its origin; one import is one correlation.
    let event = registered(&app, web);
    let origin = &event["data"]["imported"];
    assert_eq!(origin["source"], "hydra");
    assert_eq!(origin["source_id"], web);
    assert_eq!(origin["secret"], "bcrypt");
    // The trail shows that the hash is a bcrypt one, never the hash (unkeyed, attackable).
    let shown_hash = event["data"]["secret_hash"].as_str().unwrap();
    assert!(
        shown_hash.starts_with("bcrypt:") && shown_hash.contains("redacted"),
        "{shown_hash}"
    );
    assert!(
        !event.to_string().contains("H28/Q55uirREdkyhwkP0Ne"),
        "{event}"
    );
    let correlation = event["metadata"]["correlation_id"].as_str().unwrap();
    assert!(correlation.starts_with("import-"), "{event}");
    assert_eq!(
        registered(&app, "billing-service")["metadata"]["correlation_id"],
        correlation
    );
    assert_eq!(event["metadata"]["caused_by"]["kind"], "admin");

    // Importing again refuses the taken ids and says so.
    let (ok, again) = import(&app, "hydra", "hydra-clients.json", &[]);
    assert!(!ok);
    assert!(
        again
            .iter()
            .all(|r| r["action"].as_str().unwrap().starts_with("failed")),
        "{again:?}"
    );
}

#[test]
fn keycloak_and_league_clients_import_with_the_expected_mapping() {
    let app = spawn_app();
    let (ok, report) = import(&app, "keycloak", "keycloak-realm.json", &[]);
    assert!(ok, "{report:?}");
    for built_in in ["account", "admin-cli", "broker", "realm-management"] {
        assert_eq!(
            line(&report, built_in)["action"],
            "skipped: one of Keycloak's own clients"
        );
    }
    // Keycloak exports secrets in plain text: hashed on import, and they keep working (a
    // short one with a note to rotate it).
    assert_eq!(line(&report, "reporting-service")["action"], "imported");
    let (status, body) = app.post_form(
        "/token",
        Some(("reporting-service", "TuVx8UG6UJDb2tMvlj7uTtuEIA4zr3ps")),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 200, "{body}");
    let portal = line(&report, "web-portal");
    assert_eq!(portal["action"], "imported");
    assert!(authenticates(&app, "web-portal", "kc-web-secret"));
    let notes = portal["unmapped"].to_string();
    assert!(
        notes.contains("wildcard") && notes.contains("rotate it"),
        "{notes}"
    );
    let shown = app.cli_json(&["client", "show", "web-portal", "--format", "json"]);
    assert_eq!(
        shown["redirect_uris"],
        serde_json::json!(["https://app.example.com/callback"])
    );
    let spa = app.cli_json(&["client", "show", "spa-dashboard", "--format", "json"]);
    assert_eq!(spa["public"], true, "{spa}");
    assert_eq!(
        registered(&app, "spa-dashboard")["data"]["imported"]["source"],
        "keycloak"
    );

    let (ok, report) = import(&app, "league", "league-oauth2-client.csv", &[]);
    assert!(ok, "{report:?}");
    assert_eq!(
        line(&report, "legacy-reporting")["action"],
        "skipped: inactive in the source"
    );
    // A $2y$ hash (PHP's password_hash) authenticates with its secret.
    assert_eq!(line(&report, "crm-sync")["secret"], "bcrypt");
    let (status, body) = app.post_form(
        "/token",
        Some(("crm-sync", "league-secret")),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "contacts:read"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(!authenticates(&app, "crm-sync", "league-secreT"));
    let mobile = app.cli_json(&[
        "client",
        "show",
        "9f3b2c1d4e5f60718293a4b5c6d7e8f9",
        "--format",
        "json",
    ]);
    assert_eq!(mobile["public"], true, "{mobile}");
    assert_eq!(mobile["allow_plain_pkce"], true, "{mobile}");
    let shop = app.cli_json(&["client", "show", "shop-backend", "--format", "json"]);
    assert_eq!(
        shop["scopes"].as_array().unwrap().len(),
        3,
        "profile email orders:read: {shop}"
    );
}
