//! Token exchange (RFC 8693) against the real server: impersonation, delegation with `act`
//! (and a chain of two), and the refusals: an audience or scope beyond the policy, a subject
//! token of a client the policy does not name, a revoked one.

use crate::helpers::{spawn_app, TestApp};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const FILES: &str = "https://files.example.com/";

fn claims(jwt: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

struct Setup {
    webapp: (String, String),
    gateway: (String, String),
    alice_token: String,
    alice_refresh: String,
}

fn setup(app: &TestApp) -> Setup {
    app.create_user("alice", "correct horse battery");
    let webapp = app.create_client(&[
        "--id",
        "webapp",
        "--grant-type",
        "password",
        "--grant-type",
        "refresh_token",
        "--scope",
        "read write profile",
    ]);
    let gateway = app.create_client(&[
        "--id",
        "gateway",
        "--grant-type",
        GRANT,
        "--grant-type",
        "client_credentials",
        "--scope",
        "read",
        "--exchange-subject-client",
        "webapp",
        "--exchange-subject-client",
        "gateway",
        "--exchange-audience",
        FILES,
        "--exchange-scope",
        "read",
        "--exchange-scope",
        "write",
    ]);
    let (status, t) = app.post_form(
        "/token",
        Some((&webapp.0, &webapp.1)),
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "correct horse battery"),
            ("scope", "read write profile"),
        ],
    );
    assert_eq!(status, 200, "{t}");
    Setup {
        webapp,
        gateway,
        alice_token: t["access_token"].as_str().unwrap().to_owned(),
        alice_refresh: t["refresh_token"].as_str().unwrap().to_owned(),
    }
}

fn exchange(app: &TestApp, s: &Setup, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![("grant_type", GRANT), ("audience", FILES)];
    form.extend_from_slice(extra);
    app.post_form("/token", Some((&s.gateway.0, &s.gateway.1)), &form)
}

#[test]
fn impersonation_and_delegation_issue_tokens_for_the_audience_naming_both_tokens() {
    let app = spawn_app();
    let s = setup(&app);
    // Impersonation: a token for alice, for the file service, with the scopes asked.
    let (status, t) = exchange(
        &app,
        &s,
        &[
            ("subject_token", &s.alice_token),
            ("subject_token_type", ACCESS),
            ("scope", "read"),
        ],
    );
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["issued_token_type"], ACCESS);
    assert_eq!(t["scope"], "read");
    let c = claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], FILES);
    assert_eq!(c["sub"], claims(&s.alice_token)["sub"]);
    assert!(c.get("act").is_none(), "impersonation names no actor: {c}");

    // Delegation: the gateway acts for alice.
    let gateway_token = app.token(&s.gateway.0, &s.gateway.1, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, d) = exchange(
        &app,
        &s,
        &[
            ("subject_token", &s.alice_token),
            ("subject_token_type", ACCESS),
            ("actor_token", &gateway_token),
            ("actor_token_type", ACCESS),
        ],
    );
    assert_eq!(status, 200, "{d}");
    let delegated = d["access_token"].as_str().unwrap().to_owned();
    let c = claims(&delegated);
    assert_eq!(c["act"]["sub"], "gateway");
    assert_eq!(
        d["scope"], "read write",
        "the subject's scopes the policy allows"
    );
    let i = app.introspect(&s.gateway.0, &s.gateway.1, &delegated);
    assert_eq!(i["act"]["sub"], "gateway");
    assert_eq!(i["aud"], FILES);

    // A chain: the delegated token exchanged again, with another actor; the first nests.
    let (status, chained) = exchange(
        &app,
        &s,
        &[
            ("subject_token", &delegated),
            ("subject_token_type", ACCESS),
            ("actor_token", &gateway_token),
            ("actor_token_type", ACCESS),
        ],
    );
    assert_eq!(status, 200, "{chained}");
    let c = claims(chained["access_token"].as_str().unwrap());
    assert_eq!(c["act"]["act"]["sub"], "gateway", "{c}");

    // Without an audience asked for, the token is for the policy's audiences, never for
    // this server: /userinfo and /api/whoami refuse it.
    let (status, bare) = app.post_form(
        "/token",
        Some((&s.gateway.0, &s.gateway.1)),
        &[
            ("grant_type", GRANT),
            ("subject_token", &s.alice_token),
            ("subject_token_type", ACCESS),
        ],
    );
    assert_eq!(status, 200, "{bare}");
    let bare = bare["access_token"].as_str().unwrap();
    assert_eq!(claims(bare)["aud"], FILES);
    let (status, _) = crate::helpers::answer(
        crate::helpers::agent()
            .get(&format!("{}/api/whoami", app.base))
            .header("Authorization", &format!("Bearer {bare}"))
            .call(),
    );
    assert_eq!(
        status, 401,
        "a token for the file service is not for this server"
    );

    // A refresh token is a subject token too.
    let (status, r) = exchange(
        &app,
        &s,
        &[
            ("subject_token", &s.alice_refresh),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            ),
            ("scope", "read"),
        ],
    );
    assert_eq!(status, 200, "{r}");

    // Every exchange is an event naming both tokens, never their values.
    let events = app.events("TokenExchanged");
    assert_eq!(events.len(), 5);
    let second = &events[1]["data"];
    assert_eq!(second["subject_token"]["client_id"], "webapp");
    assert_eq!(second["actor_token"]["subject"], "gateway");
    assert_eq!(
        second["subject_token"]["id"],
        claims(&s.alice_token)["jti"],
        "{second}"
    );
    let trail = String::from_utf8_lossy(
        &app.cli(&["audit", "query", "--format", "jsonl", "--limit", "1000"])
            .stdout,
    )
    .into_owned();
    assert!(!trail.contains(&s.alice_token));
}

#[test]
fn exchanges_beyond_the_policy_or_the_subject_token_are_refused() {
    let app = spawn_app();
    let s = setup(&app);
    let subject = [
        ("subject_token", s.alice_token.as_str()),
        ("subject_token_type", ACCESS),
    ];
    let refused = |extra: &[(&str, &str)], audience: &str, error: &str| {
        let mut form = vec![("grant_type", GRANT), ("audience", audience)];
        form.extend_from_slice(extra);
        let (status, body) = app.post_form("/token", Some((&s.gateway.0, &s.gateway.1)), &form);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(error)),
            "{body}"
        );
    };
    refused(&subject, "https://evil.example.com/", "invalid_target");
    let mut wider = subject.to_vec();
    wider.push(("scope", "read profile"));
    refused(&wider, FILES, "invalid_scope");
    // The webapp may not exchange at all; an unknown token; a bad type.
    let (status, body) = app.post_form(
        "/token",
        Some((&s.webapp.0, &s.webapp.1)),
        &[
            ("grant_type", GRANT),
            ("subject_token", &s.alice_token),
            ("subject_token_type", ACCESS),
        ],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    // RFC 8693 §2.2.2: a subject token that is invalid or refused by policy is
    // invalid_request.
    refused(
        &[("subject_token", "made-up"), ("subject_token_type", ACCESS)],
        FILES,
        "invalid_request",
    );
    refused(
        &[
            ("subject_token", &s.alice_token),
            ("subject_token_type", "urn:x:saml"),
        ],
        FILES,
        "invalid_request",
    );
    // A token of a client the policy does not name.
    let (other, other_secret) = app.create_client(&["--scope", "read"]);
    let foreign = app.token(&other, &other_secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    refused(
        &[("subject_token", &foreign), ("subject_token_type", ACCESS)],
        FILES,
        "invalid_request",
    );
    // A revoked subject token.
    let (status, _) = app.post_form(
        "/revoke",
        Some((&s.webapp.0, &s.webapp.1)),
        &[("token", &s.alice_token)],
    );
    assert_eq!(status, 200);
    refused(&subject, FILES, "invalid_request");
    assert!(app.events("TokenExchanged").is_empty());
}
