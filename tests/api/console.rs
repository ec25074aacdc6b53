//! The admin console's user pages, with the browser stand-in: an admin creates a user, edits
//! the profile, ends the user's sessions, locks and unlocks the account, resets the password
//! and withdraws an authorized app. Each change is the user's own event, caused by the admin.

use crate::helpers::{spawn_app_with, TestApp};
use crate::web::{Browser, CHALLENGE};
use serde_json::Value;

/// A browser signed in to the console with the admin credential.
pub fn admin(app: &TestApp) -> (Browser, String) {
    let cred: Value =
        serde_json::from_str(&std::fs::read_to_string(app.data_dir().join("admin.json")).unwrap())
            .unwrap();
    let id = cred["client_id"].as_str().unwrap().to_owned();
    let mut b = Browser::new(app);
    let page = b.get("/admin/login");
    let csrf = page.field("csrf_token").unwrap();
    let r = b.post(
        "/admin/login",
        &[
            ("csrf_token", &csrf),
            ("client_id", &id),
            ("client_secret", cred["client_secret"].as_str().unwrap()),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    (b, id)
}

/// Posts one of the user page's forms and follows to the page again.
fn act(b: &mut Browser, user: &str, action: &str, form: &[(&str, &str)]) -> crate::web::Reply {
    let page = b.get(&format!("/admin/users/{user}"));
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.field("csrf_token").unwrap();
    let mut all = vec![("csrf_token", csrf.as_str())];
    all.extend_from_slice(form);
    let r = b.post(&format!("/admin/users/{user}/{action}"), &all);
    assert_eq!(r.status, 303, "{action}: {}", r.body);
    b.get(r.location.as_deref().unwrap())
}

fn signed_in(b: &mut Browser) -> bool {
    b.get("/account").status == 200
}

#[test]
fn an_admin_manages_a_user_in_the_console() {
    let app = spawn_app_with(&["--test-clock"]);
    let (mut console, admin_id) = admin(&app);

    // Create a user with a profile.
    let page = console.get("/admin/users/new");
    let csrf = page.field("csrf_token").unwrap();
    let r = console.post(
        "/admin/users/new",
        &[
            ("csrf_token", &csrf),
            ("username", "bob"),
            ("password", "first password of bob"),
            ("name", "Bob Builder"),
            ("email", "bob@example.test"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let list = console.get("/admin/users?q=builder");
    assert!(list.body.contains("Bob Builder"), "{}", list.body);

    // Edit the profile.
    let page = act(
        &mut console,
        "bob",
        "profile",
        &[
            ("name", "Robert Builder"),
            ("email", "rob@example.test"),
            ("email_verified", "true"),
        ],
    );
    assert!(page.body.contains("Profile saved"));
    let shown = app.cli_json(&["user", "show", "bob", "--format", "json"]);
    assert_eq!(shown["name"], "Robert Builder");
    assert_eq!(shown["email_verified"], true);

    // Ending the sessions signs bob out everywhere.
    let mut bob = Browser::new(&app);
    assert_eq!(bob.sign_in("bob", "first password of bob").status, 303);
    assert!(signed_in(&mut bob));
    act(&mut console, "bob", "end-sessions", &[]);
    assert!(!signed_in(&mut bob), "the session ended");

    let secret = app.cli_json(&[
        "client",
        "create",
        "--name",
        "app",
        "--id",
        "app",
        "--redirect-uri",
        "https://app.example/cb",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "password",
        "--grant-type",
        "refresh_token",
        "--scope",
        "read",
        "--format",
        "json",
    ])["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // A refresh token bob got before the lock.
    let (status, before) = app.post_form(
        "/token",
        Some(("app", &secret)),
        &[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "first password of bob"),
        ],
    );
    assert_eq!(status, 200, "{before}");
    let refresh = before["refresh_token"].as_str().unwrap().to_owned();
    let access = before["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.introspect("app", &secret, &access)["active"], true);
    let whoami = |token: &str| {
        app.agent
            .get(&format!("{}/api/whoami", app.base))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(whoami(&access), 200);
    // Locked: the session ends, sign-in and the password grant are refused.
    assert_eq!(bob.sign_in("bob", "first password of bob").status, 303);
    let page = act(&mut console, "bob", "lock", &[("lock", "true")]);
    assert!(page.body.contains("(locked)"));
    assert!(!signed_in(&mut bob));
    // The right password to a locked account is answered as a wrong one (a stolen password
    // is not confirmed); the trail says which it was.
    let refused = bob.sign_in("bob", "first password of bob");
    assert_eq!(refused.status, 401);
    assert!(
        refused.body.contains("Wrong username or password"),
        "{}",
        refused.body
    );
    let failures = app.events("UserLoginFailed");
    assert_eq!(failures.last().unwrap()["data"]["reason"], "account_locked");
    // Its grants get nothing more: the refresh token from before the lock is refused.
    let (status, body) = app.post_form(
        "/token",
        Some(("app", &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("locked"),
        "{body}"
    );
    let (status, body) = app.post_form(
        "/token",
        Some(("app", &secret)),
        &[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "first password of bob"),
        ],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // Its access tokens are not active while it is locked: at introspection and at a
    // resource that asks the server.
    assert_eq!(app.introspect("app", &secret, &access)["active"], false);
    assert_eq!(whoami(&access), 401);
    // A wrong password to a locked account says nothing of the lock.
    let wrong = bob.sign_in("bob", "not bob's password");
    assert_eq!(wrong.status, 401);
    assert!(!wrong.body.contains("locked"));

    // Unlocked: the session the lock ended stays ended; bob signs in again.
    let mut before_lock = Browser::new(&app);
    before_lock.cookies = bob.cookies.clone();
    act(&mut console, "bob", "lock", &[("lock", "false")]);
    assert!(!signed_in(&mut before_lock));
    // The refused attempts started the failure throttle; its wait passes on the server's clock.
    app.advance_clock(600_000);
    assert_eq!(bob.sign_in("bob", "first password of bob").status, 303);
    assert!(signed_in(&mut bob));
    // Unlocked, its unexpired tokens are active again, as its refresh tokens are.
    assert_eq!(app.introspect("app", &secret, &access)["active"], true);

    // A new password: the old one no longer works, the session ended.
    act(
        &mut console,
        "bob",
        "password",
        &[("password", "second password of bob")],
    );
    assert!(!signed_in(&mut bob));
    assert_eq!(bob.sign_in("bob", "first password of bob").status, 401);
    assert_eq!(bob.sign_in("bob", "second password of bob").status, 303);

    // An authorized app, withdrawn from the console.
    let approved = bob.approve(&[
        ("response_type", "code"),
        ("client_id", "app"),
        ("redirect_uri", "https://app.example/cb"),
        ("scope", "read"),
        ("state", "s"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]);
    assert!(
        approved.location.as_deref().unwrap().contains("code="),
        "{approved:?}"
    );
    let page = console.get("/admin/users/bob");
    assert!(
        page.body.contains("/admin/clients/app"),
        "the app is listed"
    );
    let page = act(&mut console, "bob", "revoke", &[("client_id", "app")]);
    assert!(page.body.contains("Authorization withdrawn"));
    assert!(
        !page.body.contains("/admin/clients/app"),
        "no longer listed"
    );

    // The CLI (through the admin API) does the same.
    assert_eq!(
        app.cli_json(&["user", "lock", "bob", "--format", "json"])["locked"],
        true
    );
    assert_eq!(bob.sign_in("bob", "second password of bob").status, 401);
    assert_eq!(
        app.cli_json(&["user", "unlock", "bob", "--format", "json"])["locked"],
        false
    );
    let out = app.cli_stdin(
        &["user", "set-password", "bob", "--format", "json"],
        "third password of bob\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.advance_clock(600_000);
    assert_eq!(bob.sign_in("bob", "third password of bob").status, 303);
    assert!(app.cli(&["user", "end-sessions", "bob"]).status.success());
    assert!(!signed_in(&mut bob));

    // The trail: each change is bob's, caused by the admin.
    let user_id = shown["user_id"].as_str().unwrap();
    let events = app.cli_json(&[
        "audit",
        "query",
        "--subject",
        user_id,
        "--format",
        "json",
        "--limit",
        "200",
    ]);
    let by_admin = crate::helpers::types_caused_by_admin(&events, &admin_id);
    for kind in [
        "UserRegistered",
        "UserProfileChanged",
        "UserSessionsEnded",
        "UserDisabled",
        "UserEnabled",
        "UserPasswordChanged",
        "AuthorizationRevoked",
    ] {
        assert!(
            by_admin.contains(&kind),
            "{kind} caused by the admin: {by_admin:?}"
        );
    }
}
