//! The OAuth endpoints: tokens, introspection, revocation, discovery, and every error case.

use crate::helpers::{spawn_app, TestApp};
use serde_json::Value;

fn err(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("<none>")
}

#[test]
fn a_token_from_basic_or_post_authentication_introspects_active_until_revoked() {
    let app = spawn_app();
    let (id, secret) = app.create_client(&["--scope", "read write"]);

    let (status, body, _, cache) = app.post_form_full(
        "/token",
        Some((&id, &secret)),
        &[("grant_type", "client_credentials"), ("scope", "read")],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "read");
    let basic_token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(basic_token.split('.').count(), 3, "JWT by default");

    let (status, body) = app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["scope"], "read write",
        "no scope asked: the client's defaults"
    );
    let post_token = body["access_token"].as_str().unwrap().to_owned();

    let info = app.introspect(&id, &secret, &basic_token);
    assert_eq!(info["active"], true);
    assert_eq!(info["scope"], "read");
    assert_eq!(info["client_id"], id.as_str());
    assert_eq!(info["sub"], id.as_str());
    assert_eq!(info["token_type"], "Bearer");
    assert_eq!(info["iss"], app.base.as_str());
    assert!(info["jti"].as_str().is_some());
    let (exp, iat) = (info["exp"].as_i64().unwrap(), info["iat"].as_i64().unwrap());
    assert_eq!(exp - iat, 3600);

    let (status, _) = app.post_form("/revoke", Some((&id, &secret)), &[("token", &basic_token)]);
    assert_eq!(status, 200);
    assert_eq!(app.introspect(&id, &secret, &basic_token)["active"], false);
    assert_eq!(app.introspect(&id, &secret, &post_token)["active"], true);
}

#[test]
fn opaque_tokens_are_random_and_introspect_like_jwts() {
    let app = spawn_app();
    let (id, secret) = app.create_client(&["--scope", "read", "--token-format", "opaque"]);
    let t = app.token(&id, &secret, None);
    let token = t["access_token"].as_str().unwrap();
    assert!(!token.contains('.'));
    assert_eq!(token.len(), 43, "256 bits, base64url");
    assert_eq!(app.introspect(&id, &secret, token)["active"], true);
    let (status, _) = app.post_form("/revoke", Some((&id, &secret)), &[("token", token)]);
    assert_eq!(status, 200);
    assert_eq!(app.introspect(&id, &secret, token)["active"], false);
    // The log holds only the hash of the token.
    let events = app.cli_json(&["audit", "query", "--client", &id, "--format", "json"]);
    let log = events.to_string();
    assert!(!log.contains(token), "a raw token reached the log");
    assert!(!log.contains(&secret), "a raw secret reached the log");
}

#[test]
fn unknown_malformed_forged_and_foreign_tokens_are_inactive() {
    let app = spawn_app();
    let (a, a_secret) = app.create_client(&["--scope", "read"]);
    let (b, b_secret) = app.create_client(&["--scope", "read"]);
    let (auditor, auditor_secret) = app.create_client(&["--can-introspect"]);
    let a_token = app.token(&a, &a_secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    for bogus in ["nope", "a.b.c", "", "eyJhbGciOiJub25lIn0.eyJqdGkiOiJ4In0."] {
        let (status, body) =
            app.post_form("/introspect", Some((&a, &a_secret)), &[("token", bogus)]);
        if bogus.is_empty() {
            assert_eq!((status, err(&body)), (400, "invalid_request"));
        } else {
            assert_eq!(
                (status, body.clone()),
                (200, serde_json::json!({"active": false})),
                "{bogus}"
            );
        }
    }
    // A token whose signature was tampered with.
    let mut forged = a_token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(app.introspect(&a, &a_secret, &forged)["active"], false);

    // Another client may not see A's token; a client with --can-introspect may.
    assert_eq!(app.introspect(&b, &b_secret, &a_token)["active"], false);
    assert_eq!(
        app.introspect(&auditor, &auditor_secret, &a_token)["active"],
        true
    );

    // B revoking A's token changes nothing and reveals nothing.
    let (status, _) = app.post_form("/revoke", Some((&b, &b_secret)), &[("token", &a_token)]);
    assert_eq!(status, 200);
    assert_eq!(app.introspect(&a, &a_secret, &a_token)["active"], true);
    let (status, _) = app.post_form(
        "/revoke",
        Some((&a, &a_secret)),
        &[("token", "unknown-token")],
    );
    assert_eq!(status, 200);
}

fn assert_error(
    app: &TestApp,
    path: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
    status: u16,
    code: &str,
) {
    let (got, body, www, _) = app.post_form_full(path, basic, form);
    assert_eq!((got, err(&body)), (status, code), "{path} {form:?}: {body}");
    assert!(body["error_description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
    if status == 401 {
        assert!(
            www.is_some_and(|w| w.starts_with("Basic")),
            "401 without WWW-Authenticate"
        );
    }
}

#[test]
fn every_bad_token_request_gets_its_rfc_6749_error() {
    let app = spawn_app();
    let (id, secret) = app.create_client(&["--scope", "read"]);
    let creds = Some((id.as_str(), secret.as_str()));
    let cc = ("grant_type", "client_credentials");

    type Case<'a> = (
        Option<(&'a str, &'a str)>,
        Vec<(&'a str, &'a str)>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (creds, vec![], 400, "invalid_request"),
        (creds, vec![cc, cc], 400, "invalid_request"),
        (
            creds,
            vec![("grant_type", "magic")],
            400,
            "unsupported_grant_type",
        ),
        (
            creds,
            vec![("grant_type", "password")],
            400,
            "unauthorized_client",
        ),
        (
            creds,
            vec![("grant_type", "authorization_code"), ("code", "x")],
            400,
            "unauthorized_client",
        ),
        (creds, vec![cc, ("scope", "admin")], 400, "invalid_scope"),
        (
            creds,
            vec![cc, ("scope", "bad\"scope")],
            400,
            "invalid_scope",
        ),
        (None, vec![cc], 401, "invalid_client"),
        (Some((&id, "wrong")), vec![cc], 401, "invalid_client"),
        (Some(("nobody", "wrong")), vec![cc], 401, "invalid_client"),
        (
            None,
            vec![cc, ("client_id", &id), ("client_secret", "wrong")],
            401,
            "invalid_client",
        ),
        // Two authentication methods in one request.
        (
            creds,
            vec![cc, ("client_id", &id), ("client_secret", &secret)],
            400,
            "invalid_request",
        ),
        (
            None,
            vec![cc, ("client_secret", &secret)],
            400,
            "invalid_request",
        ),
    ];
    for (basic, form, status, code) in cases {
        assert_error(&app, "/token", basic, &form, status, code);
    }

    // A client without the client_credentials grant.
    let v = app.cli_json(&[
        "client",
        "create",
        "--name",
        "web",
        "--grant-type",
        "authorization_code",
        "--redirect-uri",
        "https://app.example/cb",
        "--format",
        "json",
    ]);
    let (web, web_secret) = (
        v["client_id"].as_str().unwrap(),
        v["client_secret"].as_str().unwrap(),
    );
    assert_error(
        &app,
        "/token",
        Some((web, web_secret)),
        &[cc],
        400,
        "unauthorized_client",
    );

    // Wrong content type.
    let mut res = app
        .agent
        .post(&format!("{}/token", app.base))
        .header("Content-Type", "application/json")
        .send(r#"{"grant_type":"client_credentials"}"#)
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.body_mut().read_json().unwrap();
    assert_eq!(err(&body), "invalid_request");

    // An oversized body.
    let big = "x".repeat(64 * 1024);
    let (status, body) = app.post_form("/token", creds, &[cc, ("pad", &big)]);
    assert_eq!((status, err(&body)), (413, "invalid_request"));

    // Introspection and revocation authenticate too.
    assert_error(
        &app,
        "/introspect",
        None,
        &[("token", "x")],
        401,
        "invalid_client",
    );
    assert_error(
        &app,
        "/revoke",
        Some((&id, "wrong")),
        &[("token", "x")],
        401,
        "invalid_client",
    );
    assert_error(&app, "/revoke", creds, &[], 400, "invalid_request");
}

#[test]
fn rotating_a_secret_stops_the_old_one_and_deleting_a_client_deactivates_its_tokens() {
    let app = spawn_app();
    let (id, secret) = app.create_client(&["--scope", "read"]);
    let token = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotated = app.cli_json(&["client", "rotate-secret", &id, "--format", "json"]);
    let new_secret = rotated["client_secret"].as_str().unwrap();
    let (status, _) = app.post_form(
        "/token",
        Some((&id, &secret)),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 401);
    app.token(&id, new_secret, None);
    assert_eq!(app.introspect(&id, new_secret, &token)["active"], true);

    let (auditor, auditor_secret) = app.create_client(&["--can-introspect"]);
    let out = app.cli(&["client", "delete", &id]);
    assert!(out.status.success());
    assert_eq!(
        app.introspect(&auditor, &auditor_secret, &token)["active"],
        false
    );
    let (status, _) = app.post_form(
        "/token",
        Some((&id, new_secret)),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 401);
}

#[test]
fn discovery_documents_list_the_endpoints_and_the_signing_key() {
    let app = spawn_app();
    let (status, meta) = app.get("/.well-known/oauth-authorization-server");
    assert_eq!(status, 200);
    assert_eq!(meta["issuer"], app.base.as_str());
    for ep in [
        "token_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
        "jwks_uri",
    ] {
        assert!(meta[ep].as_str().unwrap().starts_with(&app.base), "{ep}");
    }
    let (status, jwks) = app.get("/jwks");
    assert_eq!(status, 200);
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert!(key.get("d").is_none(), "private key material in JWKS");
    assert_eq!(app.get("/authorize/jwks").1, jwks);
    let (id, secret) = app.create_client(&[]);
    let token = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    use base64::Engine;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], key["kid"]);
    assert_eq!(app.get("/healthz").0, 200);
    for path in ["/token", "/introspect", "/revoke"] {
        let mut res = app
            .agent
            .get(&format!("{}{path}", app.base))
            .call()
            .unwrap();
        assert_eq!(res.status().as_u16(), 405, "{path}");
        assert_eq!(res.headers().get("allow").unwrap(), "POST");
        let body: Value = res.body_mut().read_json().unwrap();
        assert_eq!(err(&body), "invalid_request");
    }
}

#[test]
fn concurrent_revocations_of_one_token_record_one_event() {
    let app = spawn_app();
    let (id, secret) = app.create_client(&["--scope", "read", "--token-format", "opaque"]);
    let token = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let (status, _) =
                    app.post_form("/revoke", Some((&id, &secret)), &[("token", &token)]);
                assert_eq!(status, 200);
            });
        }
    });
    assert_eq!(app.events("TokenRevoked").len(), 1);
    assert_eq!(app.introspect(&id, &secret, &token)["active"], false);
}
