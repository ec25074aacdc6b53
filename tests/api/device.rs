//! The device authorization grant (RFC 8628) against the real server: the device's requests,
//! the user's pages (with the browser stand-in; tests/api/browser.rs drives Chromium), and
//! every answer a polling device can get.

use crate::helpers::{spawn_app_with, TestApp};
use crate::web::Browser;
use serde_json::Value;

pub const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

pub fn tv_client(app: &TestApp) -> String {
    let v = app.cli_json(&[
        "client",
        "create",
        "--name",
        "Living-room TV",
        "--public",
        "--grant-type",
        GRANT,
        "--grant-type",
        "refresh_token",
        "--scope",
        "openid read",
        "--format",
        "json",
    ]);
    v["client_id"].as_str().unwrap().to_owned()
}

pub fn start(app: &TestApp, client: &str) -> Value {
    let (status, body) = app.post_form(
        "/device_authorization",
        None,
        &[("client_id", client), ("scope", "openid read")],
    );
    assert_eq!(status, 200, "{body}");
    body
}

pub fn poll(app: &TestApp, client: &str, device_code: &str) -> (u16, Value) {
    app.post_form(
        "/token",
        None,
        &[
            ("grant_type", GRANT),
            ("client_id", client),
            ("device_code", device_code),
        ],
    )
}

/// Enters the user code and answers; answers the final page.
pub fn answer(b: &mut Browser, user_code: &str, decision: &str) -> crate::web::Reply {
    let page = b.get("/device");
    assert_eq!(page.status, 200, "{page:?}");
    let csrf = page.field("csrf_token").unwrap();
    let consent = b.post(
        "/device",
        &[("csrf_token", &csrf), ("user_code", user_code)],
    );
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains("Living-room TV"));
    let request = consent.field("request").unwrap();
    let csrf = consent.field("csrf_token").unwrap();
    b.post(
        "/device/decide",
        &[
            ("csrf_token", &csrf),
            ("request", &request),
            ("decision", decision),
        ],
    )
}

#[test]
fn a_device_is_approved_and_polls_through_every_answer() {
    let app = spawn_app_with(&["--test-clock"]);
    app.create_user("alice", "correct horse battery");
    let client = tv_client(&app);
    let started = start(&app, &client);
    let device_code = started["device_code"].as_str().unwrap().to_owned();
    let user_code = started["user_code"].as_str().unwrap().to_owned();
    assert_eq!(user_code.len(), 9, "XXXX-XXXX: {user_code}");
    assert!(user_code
        .chars()
        .all(|c| c == '-' || "BCDFGHJKLMNPQRSTVWXZ".contains(c)));
    assert_eq!(started["verification_uri"], format!("{}/device", app.base));
    assert!(started["verification_uri_complete"]
        .as_str()
        .unwrap()
        .contains(&user_code));
    assert_eq!(started["interval"], 5);
    assert_eq!(started["expires_in"], 600);

    // Pending; too fast; pending again once the (grown) interval passed.
    let (status, body) = poll(&app, &client, &device_code);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let (_, body) = poll(&app, &client, &device_code);
    assert_eq!(body["error"], "slow_down");
    app.advance_clock(6_000);
    let (_, body) = poll(&app, &client, &device_code);
    assert_eq!(body["error"], "slow_down", "the interval grew to 10 s");
    // ... and to 15 s with that second slow_down.
    app.advance_clock(14_000);
    let (_, body) = poll(&app, &client, &device_code);
    assert_eq!(body["error"], "slow_down", "the interval grew to 15 s");
    app.advance_clock(20_000);
    let (_, body) = poll(&app, &client, &device_code);
    assert_eq!(body["error"], "authorization_pending");

    // The user: sign-in is asked first, then the code, then the consent.
    let mut b = Browser::new(&app);
    let r = b.get(started["verification_uri_complete"].as_str().unwrap());
    assert_eq!(r.status, 302);
    assert!(r.location.unwrap().contains("/login"));
    b.sign_in("alice", "correct horse battery");
    let wrong = {
        let page = b.get("/device");
        let csrf = page.field("csrf_token").unwrap();
        b.post(
            "/device",
            &[("csrf_token", &csrf), ("user_code", "BCDF-BCDF")],
        )
    };
    assert_eq!(wrong.status, 400);
    let done = answer(&mut b, &user_code.to_lowercase(), "approve");
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Device connected"));

    app.advance_clock(25_000);
    let (status, tokens) = poll(&app, &client, &device_code);
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["refresh_token"].is_string());
    assert!(
        tokens["id_token"].is_string(),
        "openid was approved: {tokens}"
    );
    let (_, who) = {
        let token = tokens["access_token"].as_str().unwrap();
        let res = crate::helpers::agent()
            .get(&format!("{}/api/whoami", app.base))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        crate::helpers::answer(Ok(res))
    };
    assert_eq!(who["username"], "alice", "{who}");
    // Single use.
    app.advance_clock(25_000);
    let (status, body) = poll(&app, &client, &device_code);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // The same user code cannot be answered again.
    let page = b.get("/device");
    let csrf = page.field("csrf_token").unwrap();
    let again = b.post(
        "/device",
        &[("csrf_token", &csrf), ("user_code", &user_code)],
    );
    assert_eq!(again.status, 400);

    // Neither code is in the log: only their keyed hashes.
    let trail = app.cli(&["audit", "query", "--format", "jsonl", "--limit", "1000"]);
    let trail = String::from_utf8_lossy(&trail.stdout);
    assert!(!trail.contains(&device_code));
    assert!(!trail.contains(&user_code.replace('-', "")));
    assert!(trail.contains("DeviceAuthorizationApproved"));
    assert!(trail.contains("DeviceCodeRedeemed"));
}

#[test]
fn a_denied_or_expired_device_code_gets_access_denied_or_expired_token() {
    let app = spawn_app_with(&["--test-clock"]);
    app.create_user("alice", "correct horse battery");
    let client = tv_client(&app);
    let mut b = Browser::new(&app);
    b.sign_in("alice", "correct horse battery");

    let denied = start(&app, &client);
    let done = answer(&mut b, denied["user_code"].as_str().unwrap(), "deny");
    assert!(done.body.contains("Request denied"));
    let (status, body) = poll(&app, &client, denied["device_code"].as_str().unwrap());
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("access_denied")),
        "{body}"
    );

    let late = start(&app, &client);
    app.advance_clock(601_000);
    let (status, body) = poll(&app, &client, late["device_code"].as_str().unwrap());
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("expired_token")),
        "{body}"
    );
    // An expired code is not offered to the user either.
    let page = b.get("/device");
    let csrf = page.field("csrf_token").unwrap();
    let r = b.post(
        "/device",
        &[
            ("csrf_token", &csrf),
            ("user_code", late["user_code"].as_str().unwrap()),
        ],
    );
    assert_eq!(r.status, 400);

    // Unknown codes, and clients not registered for the grant.
    let (status, body) = poll(&app, &client, "made-up");
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (other, secret) = app.create_client(&[]);
    let (status, body) = app.post_form("/device_authorization", Some((&other, &secret)), &[]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
}

#[test]
fn guessing_user_codes_is_throttled() {
    let app = spawn_app_with(&["--test-clock"]);
    app.create_user("alice", "correct horse battery");
    let mut b = Browser::new(&app);
    b.sign_in("alice", "correct horse battery");
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let page = b.get("/device");
        let csrf = page.field("csrf_token").unwrap();
        statuses.push(
            b.post(
                "/device",
                &[("csrf_token", &csrf), ("user_code", "BCDF-GHJK")],
            )
            .status,
        );
    }
    assert_eq!(&statuses[..5], &[400; 5]);
    assert_eq!(statuses[6], 429, "{statuses:?}");
}
