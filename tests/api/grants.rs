//! The browser grants end to end: /authorize, login, consent, codes with PKCE, implicit,
//! password and refresh rotation, and every error path of RFC 6749 §4.1.2.1 and §5.2.

use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use crate::web::{Browser, CHALLENGE, VERIFIER};
use serde_json::Value;

const PW: &str = "wonderland42";
const CB: &str = "http://127.0.0.1/cb";
const CB_PORT: &str = "http://127.0.0.1:53122/cb";

/// A public client allowed code + refresh, scopes `read profile`, opaque tokens.
fn public_client(app: &TestApp, id: &str) {
    app.cli_json(&[
        "client",
        "create",
        "--name",
        "Public <App>",
        "--id",
        id,
        "--public",
        "--redirect-uri",
        CB,
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--scope",
        "read profile",
        "--token-format",
        "opaque",
        "--format",
        "json",
    ]);
}

/// A confidential client allowed code + refresh + password; answers its secret.
fn confidential_client(app: &TestApp, id: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "client",
        "create",
        "--name",
        "Confidential App",
        "--id",
        id,
        "--redirect-uri",
        "https://app.example/cb",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--grant-type",
        "password",
        "--scope",
        "read profile",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    app.cli_json(&args)["client_secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A public client allowed the implicit grant only.
fn implicit_client(app: &TestApp) {
    app.cli_json(&[
        "client",
        "create",
        "--name",
        "Implicit",
        "--id",
        "imp",
        "--public",
        "--redirect-uri",
        CB,
        "--grant-type",
        "implicit",
        "--scope",
        "read",
        "--format",
        "json",
    ]);
}

/// A resource server that may introspect every token.
fn introspector(app: &TestApp) -> (String, String) {
    app.create_client(&["--can-introspect"])
}

fn code_params<'a>(client: &'a str, redirect: &'a str, state: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect),
        ("scope", "read"),
        ("state", state),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

/// Asserts a 400 `invalid_grant` whose description says `word`.
fn refused_with(answer: &(u16, Value), word: &str) {
    let (status, body) = answer;
    assert_eq!(
        (*status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains(word), "{description} lacks {word}");
}

fn redeem(app: &TestApp, client: &str, code: &str, redirect: &str) -> (u16, Value) {
    app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", client),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ],
    )
}

/// Signs alice in and runs a code flow for the public client; answers the token response.
fn tokens_for_public(app: &TestApp, browser: &mut Browser) -> Value {
    let done = browser.approve(&code_params("web", CB_PORT, "s1"));
    assert_eq!(done.status, 303, "{done:?}");
    let code = done.param("code").unwrap();
    let (status, body) = redeem(app, "web", &code, CB_PORT);
    assert_eq!(status, 200, "{body}");
    body
}

fn setup() -> (TestApp, Browser) {
    let app = spawn_app();
    app.create_user("alice", PW);
    public_client(&app, "web");
    let mut browser = Browser::new(&app);
    assert_eq!(browser.sign_in("alice", PW).status, 303);
    (app, browser)
}

#[test]
fn the_code_flow_with_pkce_signs_in_asks_consent_and_issues_introspectable_tokens() {
    let app = spawn_app();
    let user_id = app.create_user("alice", PW);
    public_client(&app, "web");
    let mut b = Browser::new(&app);
    let state = "x y&z=<1>\u{e9}";
    // No session: to the login page, which comes back to the same request.
    let r = b.authorize(&code_params("web", CB_PORT, state));
    assert_eq!(r.status, 302);
    let login = r.location.clone().unwrap();
    assert!(login.contains("/login?return_to=%2Fauthorize"), "{login}");
    let page = b.get(&login);
    assert_eq!(page.status, 200);
    let csrf = page.field("csrf_token").unwrap();
    let return_to = page.field("return_to").unwrap();
    let signed_in = b.post(
        "/login",
        &[
            ("csrf_token", &csrf),
            ("username", "alice"),
            ("password", PW),
            ("return_to", &return_to),
        ],
    );
    assert_eq!(signed_in.status, 303);
    let cookie = signed_in.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let again = b.get(signed_in.location.as_deref().unwrap());
    let consent_url = again.location.clone().unwrap();
    assert!(consent_url.contains("/consent?request="), "{consent_url}");
    let page = b.get(&consent_url);
    assert!(
        page.body.contains("Public &lt;App&gt;"),
        "client name escaped"
    );
    assert!(page.body.contains("Read your data"));
    let done = b.decide(&consent_url, "approve");
    assert_eq!(done.status, 303);
    let loc = done.location.clone().unwrap();
    // A loopback redirect matches on any port (RFC 8252 §7.3); state comes back unchanged.
    assert!(loc.starts_with(CB_PORT), "{loc}");
    assert_eq!(done.param("state").as_deref(), Some(state));
    assert_eq!(done.param("iss").as_deref(), Some(app.base.as_str()));
    let code = done.param("code").unwrap();
    assert_eq!(code.len(), 43, "256 bits, base64url");

    let (status, body) = redeem(&app, "web", &code, CB_PORT);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "read");
    assert!(body["refresh_token"].is_string());
    let (rs, rs_secret) = introspector(&app);
    let info = app.introspect(&rs, &rs_secret, body["access_token"].as_str().unwrap());
    assert_eq!(info["active"], true);
    assert_eq!(info["sub"], user_id.as_str());
    assert_eq!(info["username"], "alice");
    assert_eq!(info["client_id"], "web");
    // The code itself is stored only as a hash.
    let issued = app.events("AuthorizationCodeIssued");
    assert_eq!(issued.len(), 1);
    assert!(!issued[0].to_string().contains(&code));
}

#[test]
fn a_reused_code_is_refused_and_revokes_every_token_issued_from_it() {
    let (app, mut b) = setup();
    let done = b.approve(&code_params("web", CB_PORT, "s"));
    let code = done.param("code").unwrap();
    let (_, first) = redeem(&app, "web", &code, CB_PORT);
    let (rs, rs_secret) = introspector(&app);
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(&rs, &rs_secret, access)["active"], true);
    let (status, body) = redeem(&app, "web", &code, CB_PORT);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(app.introspect(&rs, &rs_secret, access)["active"], false);
    let refresh = first["refresh_token"].as_str().unwrap();
    let (status, body) = app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", "web"),
        ],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let replayed = app.events("AuthorizationCodeReplayed");
    assert_eq!(replayed.len(), 1, "the log says why");
}

#[test]
fn thirty_two_concurrent_redemptions_of_one_code_give_exactly_one_success() {
    let (app, mut b) = setup();
    let code = b
        .approve(&code_params("web", CB_PORT, "s"))
        .param("code")
        .unwrap();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|_| s.spawn(|| redeem(&app, "web", &code, CB_PORT).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        31,
        "{statuses:?}"
    );
    assert_eq!(app.events("AuthorizationCodeRedeemed").len(), 1);
}

#[test]
fn pkce_is_enforced_at_authorize_and_at_token() {
    let (app, mut b) = setup();
    let secret = confidential_client(&app, "conf", &[]);
    // Wrong and missing verifiers.
    let code = b
        .approve(&code_params("web", CB_PORT, "s"))
        .param("code")
        .unwrap();
    for verifier in [None, Some(&VERIFIER.replace('d', "D")[..])] {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", "web"),
            ("redirect_uri", CB_PORT),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        let (status, body) = app.post_form("/token", None, &form);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
    }
    // A verifier for a code issued without a challenge: a downgrade, refused.
    let done = b.approve(&[
        ("response_type", "code"),
        ("client_id", "conf"),
        ("scope", "read"),
    ]);
    let code = done.param("code").unwrap();
    refused_with(
        &app.post_form(
            "/token",
            Some(("conf", &secret)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", VERIFIER),
            ],
        ),
        "without a code_challenge",
    );
    // A public client without a challenge, and plain for a client not allowed it.
    let r = b.authorize(&[
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", CB),
        ("state", "q"),
    ]);
    assert_eq!(r.param("error").as_deref(), Some("invalid_request"));
    assert_eq!(r.param("state").as_deref(), Some("q"));
    let r = b.authorize(&[
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", CB),
        ("code_challenge", VERIFIER),
        ("code_challenge_method", "plain"),
    ]);
    assert_eq!(r.param("error").as_deref(), Some("invalid_request"));
    assert!(r.param("error_description").unwrap().contains("plain"));
}

#[test]
fn a_bad_client_or_redirect_uri_shows_an_error_page_and_never_redirects() {
    let (app, mut b) = setup();
    app.cli_json(&[
        "client",
        "create",
        "--name",
        "Two",
        "--id",
        "two",
        "--public",
        "--redirect-uri",
        "https://two.example/a",
        "--redirect-uri",
        "https://two.example/b",
        "--grant-type",
        "authorization_code",
        "--format",
        "json",
    ]);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("response_type", "code"), ("client_id", "nobody")],
        vec![("response_type", "code")],
        vec![
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", "http://127.0.0.1/cc"),
        ],
        vec![
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", "http://127.0.0.1/cb/"),
        ],
        vec![
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", "https://evil.example/cb"),
        ],
        vec![
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", "http://127.0.0.1/cb#x"),
        ],
        vec![
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", "not a uri"),
        ],
        // The loopback address in notations a URL parser reads as 127.0.0.1.
        vec![
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", "http://127.000.000.001:1/cb"),
        ],
        vec![
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", "http://0x7f000001:1/cb"),
        ],
        vec![
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", "http://2130706433:1/cb"),
        ],
        vec![
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", "http://127.0.0.1:1/x/../cb"),
        ],
        vec![("response_type", "code"), ("client_id", "two")],
        vec![
            ("response_type", "code"),
            ("client_id", "web"),
            ("client_id", "web"),
        ],
    ];
    for params in cases {
        let r = b.authorize(&params);
        assert_eq!(r.status, 400, "{params:?}: {r:?}");
        assert!(r.location.is_none(), "{params:?} redirected");
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
    // A script in client_id does not come back at all, not even as text.
    let r = b.authorize(&[
        ("response_type", "code"),
        ("client_id", "<script>alert(1)</script>"),
    ]);
    assert!(!r.body.contains("alert(1)"), "{}", r.body);
    assert!(r.body.contains("client_id"), "the page names the parameter");
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // At /token, a redirect_uri differing by one character is invalid_grant.
    let code = b
        .approve(&code_params("web", CB_PORT, "s"))
        .param("code")
        .unwrap();
    let (status, body) = redeem(&app, "web", &code, "http://127.0.0.1:53122/cc");
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[test]
fn other_errors_go_back_to_the_client_with_state() {
    let (app, mut b) = setup();
    let base = |extra: &[(&'static str, &'static str)]| {
        let mut p = vec![
            ("client_id", "web"),
            ("redirect_uri", CB),
            ("state", "<script>s</script>"),
        ];
        p.extend_from_slice(extra);
        p
    };
    let cases = [
        (
            base(&[("response_type", "magic")]),
            "unsupported_response_type",
        ),
        (base(&[]), "invalid_request"),
        (
            base(&[
                ("response_type", "code"),
                ("scope", "admin"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ]),
            "invalid_scope",
        ),
        (base(&[("response_type", "token")]), "unauthorized_client"),
        (
            base(&[
                ("response_type", "code"),
                ("code_challenge", "short"),
                ("code_challenge_method", "S256"),
            ]),
            "invalid_request",
        ),
    ];
    for (params, error) in cases {
        let r = b.authorize(&params);
        assert_eq!(r.status, 302, "{params:?}");
        assert!(r.location.as_deref().unwrap().starts_with(CB), "{r:?}");
        assert_eq!(r.param("error").as_deref(), Some(error), "{params:?}");
        assert!(r.param("error_description").is_some());
        assert_eq!(r.param("state").as_deref(), Some("<script>s</script>"));
    }
    // The implicit grant's errors go in the fragment.
    implicit_client(&app);
    let r = b.authorize(&[
        ("response_type", "token"),
        ("client_id", "imp"),
        ("scope", "write"),
        ("state", "f"),
    ]);
    let loc = r.location.unwrap();
    assert!(
        loc.contains("#error=invalid_scope") && loc.contains("state=f"),
        "{loc}"
    );
    // Deny.
    let r = b.authorize(&code_params("web", CB, "d"));
    let denied = b.decide(r.location.as_deref().unwrap(), "deny");
    assert_eq!(denied.param("error").as_deref(), Some("access_denied"));
    assert_eq!(denied.param("state").as_deref(), Some("d"));
}

#[test]
fn the_implicit_grant_puts_the_token_in_the_fragment_without_a_refresh_token() {
    let (app, mut b) = setup();
    implicit_client(&app);
    let done = b.approve(&[
        ("response_type", "token"),
        ("client_id", "imp"),
        ("state", "st"),
    ]);
    let loc = done.location.clone().unwrap();
    let fragment = url::Url::parse(&loc)
        .unwrap()
        .fragment()
        .unwrap()
        .to_owned();
    assert!(fragment.contains("access_token=") && fragment.contains("token_type=Bearer"));
    assert!(!fragment.contains("refresh_token") && !loc.contains("?access_token"));
    assert_eq!(done.param("state").as_deref(), Some("st"));
    let (rs, rs_secret) = introspector(&app);
    let info = app.introspect(&rs, &rs_secret, &done.param("access_token").unwrap());
    assert_eq!(
        (info["active"].as_bool(), info["username"].as_str()),
        (Some(true), Some("alice"))
    );
}

#[test]
fn consent_is_remembered_for_confidential_clients_and_revoked_from_the_account_page() {
    let (app, mut b) = setup();
    let secret = confidential_client(&app, "conf", &[]);
    let params = [
        ("response_type", "code"),
        ("client_id", "conf"),
        ("scope", "read"),
    ];
    let first = b.approve(&params);
    let code = first.param("code").unwrap();
    let (_, tokens) = app.post_form(
        "/token",
        Some(("conf", &secret)),
        &[("grant_type", "authorization_code"), ("code", &code)],
    );
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    // Second time: straight back with a code, no consent page.
    let second = b.authorize(&params);
    assert!(second.param("code").is_some(), "{second:?}");
    // A public client always asks (RFC 8252 §8.6).
    b.approve(&code_params("web", CB, "a"));
    let again = b.authorize(&code_params("web", CB, "b"));
    assert!(again.location.unwrap().contains("/consent?"));
    // The account page lists both; revoking one ends its tokens and its remembered consent.
    let page = b.get("/account");
    assert!(page.body.contains("Confidential App") && page.body.contains("Public &lt;App&gt;"));
    let csrf = page.field("csrf_token").unwrap();
    let forged = b.post(
        "/account/revoke",
        &[("csrf_token", "forged"), ("client_id", "conf")],
    );
    assert_eq!(forged.status, 403);
    let revoked = b.post(
        "/account/revoke",
        &[("csrf_token", &csrf), ("client_id", "conf")],
    );
    assert_eq!(revoked.status, 303);
    let (rs, rs_secret) = introspector(&app);
    assert_eq!(app.introspect(&rs, &rs_secret, &access)["active"], false);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, _) = app.post_form(
        "/token",
        Some(("conf", &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    );
    assert_eq!(status, 400);
    let third = b.authorize(&params);
    assert!(
        third.location.unwrap().contains("/consent?"),
        "consent asked again"
    );
    assert!(!b.get("/account").body.contains("Confidential App"));
    assert_eq!(app.events("AuthorizationRevoked").len(), 1);
}

fn refresh(app: &TestApp, token: &str, scope: Option<&str>) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", "web"),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    app.post_form("/token", None, &form)
}

#[test]
fn refresh_tokens_rotate_and_a_reused_one_revokes_the_whole_family() {
    let (app, mut b) = setup();
    let (rs, rs_secret) = introspector(&app);
    let first = tokens_for_public(&app, &mut b);
    let r1 = first["refresh_token"].as_str().unwrap();
    let (status, second) = refresh(&app, r1, None);
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2, "rotated");
    assert_eq!(app.introspect(&rs, &rs_secret, r1)["active"], false);
    assert_eq!(app.introspect(&rs, &rs_secret, r2)["active"], true);
    // Narrowing is fine; widening is not.
    let (status, body) = refresh(&app, r2, Some("profile"));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    // Reuse of r1: refused, and every token of the family dies.
    let (status, body) = refresh(&app, r1, None);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    for t in [
        first["access_token"].as_str().unwrap(),
        second["access_token"].as_str().unwrap(),
        r2,
    ] {
        assert_eq!(app.introspect(&rs, &rs_secret, t)["active"], false, "{t}");
    }
    assert_eq!(refresh(&app, r2, None).0, 400);
    assert_eq!(app.events("RefreshTokenReuseDetected").len(), 1);
    // A public client revokes its refresh token with its client_id alone; the grant goes too.
    let other = tokens_for_public(&app, &mut b);
    let (status, _) = app.post_form(
        "/revoke",
        None,
        &[
            ("token", other["refresh_token"].as_str().unwrap()),
            ("client_id", "web"),
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(
        app.introspect(&rs, &rs_secret, other["access_token"].as_str().unwrap())["active"],
        false
    );
    // Another client's refresh token.
    let fresh = tokens_for_public(&app, &mut b);
    let secret = confidential_client(&app, "conf", &[]);
    let (status, body) = app.post_form(
        "/token",
        Some(("conf", &secret)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", fresh["refresh_token"].as_str().unwrap()),
        ],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, narrowed) = refresh(&app, fresh["refresh_token"].as_str().unwrap(), Some("read"));
    assert_eq!((status, narrowed["scope"].as_str()), (200, Some("read")));
}

#[test]
fn concurrent_refreshes_with_one_token_never_leave_two_live_successors() {
    let (app, mut b) = setup();
    let first = tokens_for_public(&app, &mut b);
    let r1 = first["refresh_token"].as_str().unwrap();
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| refresh(&app, r1, None)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (rs, rs_secret) = introspector(&app);
    let live = answers
        .iter()
        .filter_map(|(_, body)| body["refresh_token"].as_str())
        .filter(|t| app.introspect(&rs, &rs_secret, t)["active"] == true)
        .count();
    assert!(live <= 1, "{answers:?}");
    assert_eq!(
        answers.iter().filter(|(s, _)| *s == 200).count(),
        1,
        "strict: one rotation wins"
    );
}

#[test]
fn within_the_grace_window_a_lost_response_may_be_retried_until_the_successor_is_used() {
    let app = spawn_app_with(&["--refresh-grace-secs", "30"]);
    app.create_user("alice", PW);
    public_client(&app, "web");
    let mut b = Browser::new(&app);
    b.sign_in("alice", PW);
    let first = tokens_for_public(&app, &mut b);
    let r1 = first["refresh_token"].as_str().unwrap();
    let (_, lost) = refresh(&app, r1, None);
    let (status, retried) = refresh(&app, r1, None);
    assert_eq!(status, 200, "retry within grace: {retried}");
    let r2b = retried["refresh_token"].as_str().unwrap();
    // The lost successor is retired; presenting it now is reuse.
    let (status, _) = refresh(&app, r2b, None);
    assert_eq!(status, 200, "the retried successor works");
    let (status, body) = refresh(&app, r1, None);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "successor used: reuse"
    );
    let _ = lost;
    assert_eq!(app.events("RefreshTokenReuseDetected").len(), 1);
}

#[test]
fn the_password_grant_issues_tokens_and_is_throttled() {
    let app = spawn_app();
    app.create_user("alice", PW);
    let secret = confidential_client(&app, "conf", &[]);
    let (other, other_secret) = app.create_client(&[]);
    let grant = |user: &str, pw: &str, id: &str, s: &str| {
        app.post_form(
            "/token",
            Some((id, s)),
            &[
                ("grant_type", "password"),
                ("username", user),
                ("password", pw),
            ],
        )
    };
    let (status, body) = grant("alice", PW, "conf", &secret);
    assert_eq!(status, 200, "{body}");
    assert!(body["refresh_token"].is_string());
    let (status, body) = grant("alice", PW, &other, &other_secret);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    for _ in 0..5 {
        let (status, body) = grant("alice", "wrong-password", "conf", &secret);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
    let (status, body) = grant("alice", PW, "conf", &secret);
    assert_eq!(
        status, 429,
        "throttled even with the right password: {body}"
    );
    let (status, _) = grant("nobody", "whatever-pw", "conf", &secret);
    assert_eq!(status, 400);
    let failed = app.events("UserLoginFailed");
    assert_eq!(failed.len(), 6);
    assert!(
        failed
            .iter()
            .all(|e| !e.to_string().contains("wrong-password")),
        "never the password"
    );
    assert_eq!(app.events("UserLocked").len(), 1);
}

#[test]
fn login_is_throttled_and_audited_and_its_form_needs_the_csrf_token() {
    let app = spawn_app_with(&["--test-clock"]);
    app.create_user("alice", PW);
    let mut b = Browser::new(&app);
    let page = b.get("/login?return_to=https://evil.example/");
    assert_eq!(
        page.field("return_to").as_deref(),
        Some("/account"),
        "no open redirect"
    );
    let csrf = page.field("csrf_token").unwrap();
    let forged = b.post(
        "/login",
        &[("csrf_token", "x"), ("username", "alice"), ("password", PW)],
    );
    assert_eq!(forged.status, 403);
    for _ in 0..5 {
        let r = b.post(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("username", "alice"),
                ("password", "nope-nope"),
            ],
        );
        assert_eq!(r.status, 401);
        assert!(r.body.contains("Wrong username or password"));
    }
    let r = b.post(
        "/login",
        &[
            ("csrf_token", &csrf),
            ("username", "alice"),
            ("password", PW),
        ],
    );
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert!(!b.cookies.contains_key("authledger_session"));
    // The wait ends: after it, the right password works.
    app.advance_clock(1100);
    let r = b.post(
        "/login",
        &[
            ("csrf_token", &csrf),
            ("username", "alice"),
            ("password", PW),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(app.events("UserLoginFailed").len(), 5);
}

#[test]
fn users_are_managed_by_the_cli_and_the_admin_api() {
    let app = spawn_app();
    app.create_user("alice", PW);
    let out = app.cli_stdin(
        &["user", "create", "--username", "alice", "--password-stdin"],
        "another-pw1\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken"));
    let out = app.cli_stdin(
        &["user", "create", "--username", "bob", "--password-stdin"],
        "short\n",
    );
    assert!(!out.status.success(), "a too-short password is refused");
    let token = app.admin_token();
    let mut res = app
        .agent
        .post(&format!("{}/admin/api/users", app.base))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(serde_json::json!({"username": "carol", "password": "carol-password"}))
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let created: Value = res.body_mut().read_json().unwrap();
    assert_eq!(created["username"], "carol");
    assert!(created.get("password").is_none() && created.get("password_hash").is_none());
    let list = app.cli_json(&["user", "list", "--format", "json"]);
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "carol"]);
    let registered = app.events("UserRegistered");
    assert!(registered
        .iter()
        .all(|e| !e.to_string().contains("carol-password")));
}

#[test]
fn token_requests_by_get_are_refused_unless_switched_on() {
    let app = spawn_app();
    let (id, secret) = app.create_client(&[]);
    let q = format!("/token?grant_type=client_credentials&client_id={id}&client_secret={secret}");
    assert_eq!(app.get(&q).0, 405);
    let compat = spawn_app_with(&["--allow-get-token-requests"]);
    let (id, secret) = compat.create_client(&[]);
    let q = format!("/token?grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let (status, body) = compat.get(&q);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn extended_matching_allows_extra_parameters_but_never_response_parameters() {
    let (app, mut b) = setup();
    app.cli_json(&[
        "client",
        "create",
        "--name",
        "Phorge-style",
        "--id",
        "ph",
        "--redirect-uri",
        "https://ph.example/cb?tenant=a",
        "--redirect-uri-matching",
        "extended",
        "--grant-type",
        "authorization_code",
        "--scope",
        "read",
        "--format",
        "json",
    ]);
    let ok = b.authorize(&[
        ("response_type", "code"),
        ("client_id", "ph"),
        (
            "redirect_uri",
            "https://ph.example/cb?tenant=a&next=%2Fhome",
        ),
    ]);
    assert_eq!(ok.status, 302);
    assert!(ok.location.unwrap().contains("/consent?"));
    let planted = b.authorize(&[
        ("response_type", "code"),
        ("client_id", "ph"),
        ("redirect_uri", "https://ph.example/cb?tenant=a&code=evil"),
    ]);
    assert_eq!(planted.status, 400);
    assert!(planted.location.is_none());
    // Registration refuses fragments and plain http off loopback.
    for uri in ["https://x.example/cb#f", "http://x.example/cb"] {
        let out = app.cli(&[
            "client",
            "create",
            "--name",
            "bad",
            "--public",
            "--redirect-uri",
            uri,
            "--grant-type",
            "authorization_code",
        ]);
        assert!(!out.status.success(), "{uri}");
    }
}

#[test]
fn metadata_lists_the_authorization_endpoint_and_pkce_methods() {
    let app = spawn_app();
    let (_, m) = app.get("/.well-known/oauth-authorization-server");
    assert_eq!(
        m["authorization_endpoint"],
        format!("{}/authorize", app.base)
    );
    assert_eq!(
        m["code_challenge_methods_supported"],
        serde_json::json!(["S256", "plain"])
    );
    assert_eq!(
        m["response_types_supported"],
        serde_json::json!(["code", "token", "id_token", "id_token token"])
    );
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
}

#[test]
fn authorize_by_post_works_like_get_and_a_script_in_state_stays_text_on_the_login_page() {
    let app = spawn_app();
    app.create_user("alice", PW);
    public_client(&app, "web");
    let mut b = Browser::new(&app);
    let evil = "<script>alert(1)</script>";
    let r = b.authorize(&code_params("web", CB, evil));
    let login = b.get(r.location.as_deref().unwrap());
    assert_eq!(login.status, 200);
    assert!(!login.body.contains("<script>alert"), "{}", login.body);
    b.sign_in("alice", PW);
    let r = b.post("/authorize", &code_params("web", CB, evil));
    assert_eq!(r.status, 302, "{r:?}");
    let consent = r.location.unwrap();
    assert!(consent.contains("/consent?"));
    let page = b.get(&consent);
    assert!(!page.body.contains("<script>alert"));
    let done = b.decide(&consent, "approve");
    assert_eq!(done.param("state").as_deref(), Some(evil));
}

#[test]
fn codes_and_refresh_tokens_expire() {
    let app = spawn_app_with(&[
        // Lifetimes well above a slow machine's round trip: only the test clock ends them.
        "--code-ttl-secs",
        "30",
        "--refresh-token-ttl-secs",
        "60",
        "--test-clock",
    ]);
    app.create_user("alice", PW);
    public_client(&app, "web");
    let mut b = Browser::new(&app);
    b.sign_in("alice", PW);
    let code = b
        .approve(&code_params("web", CB, "s"))
        .param("code")
        .unwrap();
    app.advance_clock(31_000);
    refused_with(&redeem(&app, "web", &code, CB), "expired");
    let fresh = tokens_for_public(&app, &mut b);
    app.advance_clock(61_000);
    refused_with(
        &refresh(&app, fresh["refresh_token"].as_str().unwrap(), None),
        "expired",
    );
}

#[test]
fn a_clock_set_back_revives_no_code_token_or_session() {
    let app = spawn_app_with(&[
        "--code-ttl-secs",
        "30",
        "--refresh-token-ttl-secs",
        "60",
        "--session-ttl-secs",
        "90",
        "--test-clock",
    ]);
    app.create_user("alice", PW);
    public_client(&app, "web");
    let (id, secret) = app.create_client(&["--access-token-ttl", "60", "--can-introspect"]);
    let access = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut b = Browser::new(&app);
    b.sign_in("alice", PW);
    let code = b
        .approve(&code_params("web", CB, "s"))
        .param("code")
        .unwrap();
    let fresh = tokens_for_public(&app, &mut b);
    let refresh_token = fresh["refresh_token"].as_str().unwrap();
    // Everything expires; then an NTP step puts the clock ten minutes back.
    app.advance_clock(91_000);
    app.set_back_clock(600_000);
    assert_eq!(app.introspect(&id, &secret, &access)["active"], false);
    let (status, body) = redeem(&app, "web", &code, CB);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    refused_with(&refresh(&app, refresh_token, None), "expired");
    // The session ended too: authorizing sends the browser to sign in again.
    let r = b.authorize(&code_params("web", CB, "s2"));
    assert_eq!(r.status, 302, "{r:?}");
    assert!(
        r.location.unwrap().contains("/login"),
        "the session is over"
    );
    // Time stood still rather than going back: tokens issued now carry no earlier time.
    let later = app.token(&id, &secret, None);
    let issued = app.events("AccessTokenIssued");
    let times: Vec<i64> = issued
        .iter()
        .map(|e| e["data"]["issued_at"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(
        app.introspect(&id, &secret, later["access_token"].as_str().unwrap())["active"],
        true
    );
}
