//! Pushed authorization requests (RFC 9126) against the real server: a request pushed, used
//! once through the pages and redeemed; its request_uri reused, used by another client and
//! after expiry; a client (or a server) that requires PAR sending a plain request; and the
//! resource indicators it carries into the token's audience.

use crate::helpers::{spawn_app_with, TestApp};
use crate::web::{Browser, CHALLENGE, VERIFIER};
use serde_json::Value;

const CB: &str = "https://app.example.com/cb";

fn web_client(app: &TestApp, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "--redirect-uri",
        CB,
        "--grant-type",
        "authorization_code",
        "--scope",
        "read",
    ];
    args.extend_from_slice(extra);
    app.create_client(&args)
}

fn push(app: &TestApp, id: &str, secret: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![
        ("response_type", "code"),
        ("client_id", id),
        ("redirect_uri", CB),
        ("scope", "read"),
        ("state", "s1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    form.extend_from_slice(extra);
    app.post_form("/par", Some((id, secret)), &form)
}

fn signed_in(app: &TestApp) -> Browser {
    let mut b = Browser::new(app);
    b.sign_in("alice", "correct horse battery");
    b
}

#[test]
fn a_pushed_request_is_used_once_and_only_by_its_client_before_it_expires() {
    let app = spawn_app_with(&["--test-clock"]);
    app.create_user("alice", "correct horse battery");
    let (id, secret) = web_client(&app, &["--resource", "https://api.example.com/"]);
    let (other, _) = web_client(&app, &[]);
    let (status, pushed) = push(
        &app,
        &id,
        &secret,
        &[("resource", "https://api.example.com/")],
    );
    assert_eq!(status, 201, "{pushed}");
    let uri = pushed["request_uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    assert_eq!(pushed["expires_in"], 300);

    // Another client cannot use it, whoever the browser is.
    let mut b = signed_in(&app);
    let r = b.authorize(&[("client_id", &other), ("request_uri", &uri)]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("invalid_request_uri"), "{}", r.body);

    // Its client can; the query's own parameters are ignored.
    let r = b.approve(&[
        ("client_id", &id),
        ("request_uri", &uri),
        ("scope", "write"),
    ]);
    // 303 after the consent form's POST.
    assert_eq!(r.status, 303, "{r:?}");
    assert!(r.location.as_deref().unwrap().starts_with(CB), "{r:?}");
    assert_eq!(r.param("state").as_deref(), Some("s1"));
    let code = r.param("code").expect("a code");
    let (status, tokens) = app.post_form(
        "/token",
        Some((&id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", VERIFIER),
        ],
    );
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let i = app.introspect(&id, &secret, access);
    assert_eq!(i["scope"], "read");
    assert_eq!(i["aud"], "https://api.example.com/");

    // Used once.
    let r = b.authorize(&[("client_id", &id), ("request_uri", &uri)]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("used already"), "{}", r.body);

    // Expired.
    let (_, pushed) = push(&app, &id, &secret, &[]);
    let late = pushed["request_uri"].as_str().unwrap().to_owned();
    app.advance_clock(301_000);
    let r = b.authorize(&[("client_id", &id), ("request_uri", &late)]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("expired"), "{}", r.body);

    // Unknown.
    let r = b.authorize(&[
        ("client_id", &id),
        ("request_uri", "urn:ietf:params:oauth:request_uri:made-up"),
    ]);
    assert_eq!(r.status, 400);

    // The push is authenticated and checked like /authorize.
    let (status, body) = push(&app, &id, "wrong-secret-wrong-secret", &[]);
    assert_eq!(status, 401, "{body}");
    let (status, body) = push(&app, &id, &secret, &[("resource", "https://evil.example/")]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    let (status, body) = app.post_form(
        "/par",
        Some((&id, &secret)),
        &[
            ("response_type", "code"),
            ("client_id", &other),
            ("redirect_uri", CB),
        ],
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = push(&app, &id, &secret, &[("request_uri", &uri)]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request_uri")),
        "{body}"
    );
    assert_eq!(app.events("AuthorizationRequestPushed").len(), 2);
    assert_eq!(app.events("PushedAuthorizationRequestUsed").len(), 1);
}

#[test]
fn a_client_that_requires_par_cannot_send_a_plain_request() {
    let app = spawn_app_with(&[]);
    app.create_user("alice", "correct horse battery");
    let (id, secret) = web_client(&app, &["--require-par"]);
    let mut b = signed_in(&app);
    let plain = [
        ("response_type", "code"),
        ("client_id", id.as_str()),
        ("redirect_uri", CB),
        ("scope", "read"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let r = b.authorize(&plain);
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(r.param("error").as_deref(), Some("invalid_request"));
    assert!(r.param("code").is_none());
    let (_, pushed) = push(&app, &id, &secret, &[]);
    let uri = pushed["request_uri"].as_str().unwrap();
    let r = b.approve(&[("client_id", &id), ("request_uri", uri)]);
    assert!(r.param("code").is_some(), "{r:?}");
    let (_, meta) = app.get("/.well-known/oauth-authorization-server");
    assert_eq!(
        meta["pushed_authorization_request_endpoint"],
        format!("{}/par", app.base)
    );
    assert_eq!(meta["require_pushed_authorization_requests"], false);
}

#[test]
fn a_server_that_requires_par_refuses_every_plain_request() {
    let app = spawn_app_with(&["--require-pushed-authorization-requests"]);
    app.create_user("alice", "correct horse battery");
    let (id, _) = web_client(&app, &[]);
    let mut b = signed_in(&app);
    let r = b.authorize(&[
        ("response_type", "code"),
        ("client_id", &id),
        ("redirect_uri", CB),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]);
    assert_eq!(
        r.param("error").as_deref(),
        Some("invalid_request"),
        "{r:?}"
    );
    let (_, meta) = app.get("/.well-known/oauth-authorization-server");
    assert_eq!(meta["require_pushed_authorization_requests"], true);
}

#[test]
fn a_proof_sent_with_the_push_binds_the_code_to_its_key() {
    use crate::dpop::{post, DpopKey};
    let app = spawn_app_with(&[]);
    app.create_user("alice", "correct horse battery");
    let (id, secret) = web_client(&app, &[]);
    let key = DpopKey::new();
    let pushed = post(
        &app,
        "/par",
        Some((&id, &secret)),
        &[("DPoP", &key.proof("POST", &format!("{}/par", app.base)))],
        &[
            ("response_type", "code"),
            ("client_id", &id),
            ("redirect_uri", CB),
            ("scope", "read"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ],
    );
    assert_eq!(pushed.status, 201, "{}", pushed.body);
    let mut b = signed_in(&app);
    let r = b.approve(&[
        ("client_id", &id),
        ("request_uri", pushed.body["request_uri"].as_str().unwrap()),
    ]);
    let code = r.param("code").expect("a code");
    let redeem = |proof: Option<String>| {
        let headers: Vec<(&str, &str)> = proof.iter().map(|p| ("DPoP", p.as_str())).collect();
        post(
            &app,
            "/token",
            Some((&id, &secret)),
            &headers,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("code_verifier", VERIFIER),
            ],
        )
    };
    let htu = format!("{}/token", app.base);
    let other = redeem(Some(DpopKey::new().proof("POST", &htu)));
    assert_eq!(
        (other.status, other.body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let bound = redeem(Some(key.proof("POST", &htu)));
    assert_eq!(bound.status, 200, "{}", bound.body);
    assert_eq!(bound.body["token_type"], "DPoP");
}
