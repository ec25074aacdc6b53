//! Dynamic client registration (RFC 7591, RFC 7592): initial access tokens and their limits,
//! the registration policy and its refusals, the configuration endpoint with its own token,
//! and a client that registered itself signing a user in through a real relying party.

use crate::helpers::{agent, answer, spawn_app, spawn_app_with, TestApp};
use crate::web::Browser;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientRegistrationRequest, CoreProviderMetadata,
};
use openidconnect::{
    AccessToken, AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    RedirectUrl, RegistrationUrl, Scope,
};
use serde_json::{json, Value};

const CB: &str = "https://rp.example/cb";

/// An initial access token from the CLI.
fn initial_token(app: &TestApp, args: &[&str]) -> Value {
    let mut all = vec!["registration-token", "create", "--format", "json"];
    all.extend_from_slice(args);
    app.cli_json(&all)
}

/// POSTs client metadata to /register, with a bearer token when given.
fn register(app: &TestApp, token: Option<&str>, metadata: &Value) -> (u16, Value, Option<String>) {
    let mut r = agent().post(&format!("{}/register", app.base));
    if let Some(t) = token {
        r = r.header("Authorization", &format!("Bearer {t}"));
    }
    let res = r.send_json(metadata).unwrap();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body) = answer(Ok(res));
    (status, body, challenge)
}

fn web_client() -> Value {
    json!({
        "client_name": "Self-registered web app",
        "redirect_uris": [CB],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": "openid profile",
    })
}

#[test]
fn registration_needs_an_initial_access_token_that_is_unexpired_and_not_used_up() {
    let app = spawn_app_with(&["--test-clock"]);
    // Closed by default: no token, no registration.
    let (status, body, challenge) = register(&app, None, &web_client());
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    assert!(challenge.is_some_and(|c| c.starts_with("Bearer")));
    let (status, _, _) = register(&app, Some("made-up"), &web_client());
    assert_eq!(status, 401);

    let iat = initial_token(&app, &["--uses", "1", "--expires-in", "600"]);
    let token = iat["initial_access_token"].as_str().unwrap();
    let (status, client, _) = register(&app, Some(token), &web_client());
    assert_eq!(status, 201, "{client}");
    for field in [
        "client_id",
        "client_secret",
        "registration_access_token",
        "registration_client_uri",
        "client_id_issued_at",
    ] {
        assert!(!client[field].is_null(), "{field} missing: {client}");
    }
    assert_eq!(client["client_secret_expires_at"], 0);
    assert_eq!(client["redirect_uris"], json!([CB]));
    assert_eq!(client["token_endpoint_auth_method"], "client_secret_basic");
    // Used up.
    let (status, body, _) = register(&app, Some(token), &web_client());
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );

    // The registration is a ClientRegistered that says DCR made it; no raw token is kept.
    let id = client["client_id"].as_str().unwrap();
    let registered: Vec<Value> = app
        .events("ClientRegistered")
        .into_iter()
        .filter(|e| e["data"]["client_id"] == id)
        .collect();
    assert_eq!(registered.len(), 1);
    let dynamic = &registered[0]["data"]["dynamic"];
    assert_eq!(dynamic["initial_access_token"], iat["id"]);
    assert!(dynamic["registration_token_hash"]
        .as_str()
        .unwrap()
        .starts_with("hmac-sha256:"));
    let log = app.cli(&["audit", "query", "--format", "json", "--limit", "10000"]);
    let text = String::from_utf8_lossy(&log.stdout);
    for secret in [
        token,
        client["registration_access_token"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap(),
    ] {
        assert!(!text.contains(secret), "a raw token is in the trail");
    }
    assert_eq!(app.events("InitialAccessTokenUsed").len(), 1);

    // An expired token registers nothing.
    let short = initial_token(&app, &["--uses", "5", "--expires-in", "60"]);
    app.advance_clock(61_000);
    let (status, body, _) = register(
        &app,
        Some(short["initial_access_token"].as_str().unwrap()),
        &web_client(),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[test]
fn registration_refuses_what_the_policy_does_not_allow() {
    // Many registrations from one address: the limit, tested on its own, is off here.
    let app = spawn_app_with(&["--open-registration", "--rate-limit-register", "0"]);
    let refused = |metadata: Value, code: &str| {
        let (status, body, _) = register(&app, None, &metadata);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{metadata}: {body}"
        );
        let d = body["error_description"].as_str().unwrap();
        assert!(
            d.bytes()
                .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
            "{d:?}"
        );
    };
    let with = |k: &str, v: Value| {
        let mut m = web_client();
        m[k] = v;
        m
    };
    refused(
        with("redirect_uris", json!(["https://rp.example/cb#frag"])),
        "invalid_redirect_uri",
    );
    refused(
        with("redirect_uris", json!(["http://rp.example/cb"])),
        "invalid_redirect_uri",
    );
    refused(
        with("redirect_uris", json!(["com.example.app:/cb"])),
        "invalid_redirect_uri",
    );
    refused(with("redirect_uris", json!([])), "invalid_redirect_uri");
    refused(
        with("grant_types", json!(["client_credentials"])),
        "invalid_client_metadata",
    );
    refused(
        with("grant_types", json!(["implicit"])),
        "invalid_client_metadata",
    );
    refused(
        with("scope", json!("openid admin")),
        "invalid_client_metadata",
    );
    refused(
        with("response_types", json!(["token"])),
        "invalid_client_metadata",
    );
    refused(
        with("jwks_uri", json!("https://rp.example/jwks")),
        "invalid_client_metadata",
    );
    refused(
        with("token_endpoint_auth_method", json!("private_key_jwt")),
        "invalid_client_metadata",
    );
    refused(with("client_name", json!(17)), "invalid_client_metadata");
    refused(
        with("backchannel_logout_uri", json!("http://rp.example/bcl")),
        "invalid_client_metadata",
    );
    // The server POSTs there itself: no address of its own or of a private network.
    for internal in [
        "https://127.0.0.1/bcl",
        "https://10.0.0.5/bcl",
        "https://localhost/bcl",
        "https://[::1]/bcl",
    ] {
        refused(
            with("backchannel_logout_uri", json!(internal)),
            "invalid_client_metadata",
        );
    }

    refused(
        with("software_statement", json!("eyJ.e30.x")),
        "invalid_software_statement",
    );
    refused(
        with("subject_type", json!("pairwise"))
            .as_object()
            .map(|m| {
                let mut m = m.clone();
                m["redirect_uris"] = json!(["https://a.example/cb", "https://b.example/cb"]);
                Value::Object(m)
            })
            .unwrap(),
        "invalid_client_metadata",
    );
    // A native app: a loopback or private-use redirect, no secret.
    let (status, body, _) = register(
        &app,
        None,
        &json!({
            "application_type": "native",
            "redirect_uris": ["http://127.0.0.1/cb", "com.example.app:/cb"],
            "token_endpoint_auth_method": "none",
            "scope": "openid",
        }),
    );
    assert_eq!(status, 201, "{body}");
    assert!(body.get("client_secret").is_none());
    assert_eq!(body["token_endpoint_auth_method"], "none");
    // Never an admin, never an introspector, whatever it asks.
    let (status, body, _) = register(&app, None, &with("admin", json!(true)));
    assert_eq!(status, 201);
    let show = app.cli_json(&[
        "client",
        "show",
        body["client_id"].as_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(show.get("admin").is_none() && show["can_introspect"] == false);
}

#[test]
fn registrations_are_limited_per_source_address() {
    let app = spawn_app_with(&["--open-registration", "--rate-limit-register", "2"]);
    let (first, _, _) = register(&app, None, &web_client());
    assert_eq!(first, 201);
    let res = agent()
        .post(&format!("{}/register", app.base))
        .send_json(web_client())
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().get("retry-after").is_some());
}

#[test]
fn the_configuration_endpoint_answers_only_its_own_registration_access_token() {
    let app = spawn_app_with(&["--open-registration"]);
    let (_, a, _) = register(&app, None, &web_client());
    let (_, b, _) = register(&app, None, &web_client());
    let uri = a["registration_client_uri"].as_str().unwrap().to_owned();
    let bearer = |token: &Value| format!("Bearer {}", token.as_str().unwrap());
    let status_of =
        |res: Result<ureq::http::Response<ureq::Body>, ureq::Error>| res.unwrap().status().as_u16();
    let first = a["registration_access_token"].clone();
    let (status, read) = answer(
        agent()
            .get(&uri)
            .header("Authorization", &bearer(&first))
            .call(),
    );
    assert_eq!(status, 200);
    assert_eq!(read["client_id"], a["client_id"]);
    assert!(
        read.get("client_secret").is_none(),
        "the secret is kept as a hash only"
    );
    // RFC 7592 §3: the answer carries a registration access token, a new one; the one
    // presented stops working.
    let second = read["registration_access_token"].clone();
    assert!(second.as_str().is_some_and(|t| t.len() == 43) && second != first);
    assert_eq!(
        status_of(
            agent()
                .get(&uri)
                .header("Authorization", &bearer(&first))
                .call()
        ),
        401
    );
    // Another client's registration access token: 401.
    assert_eq!(
        status_of(
            agent()
                .get(&uri)
                .header("Authorization", &bearer(&b["registration_access_token"]))
                .call()
        ),
        401
    );
    // PUT replaces the metadata, and answers the next token.
    let mut changed = web_client();
    changed["client_id"] = a["client_id"].clone();
    changed["redirect_uris"] = json!(["https://rp.example/other"]);
    let (status, put) = answer(
        agent()
            .put(&uri)
            .header("Authorization", &bearer(&second))
            .send_json(&changed),
    );
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["redirect_uris"], json!(["https://rp.example/other"]));
    let third = put["registration_access_token"].clone();
    // A client_id that is not the client's is refused.
    changed["client_id"] = b["client_id"].clone();
    let (status, _) = answer(
        agent()
            .put(&uri)
            .header("Authorization", &bearer(&third))
            .send_json(&changed),
    );
    assert_eq!(status, 400);
    // DELETE: 204, and then the token is no longer anyone's.
    assert_eq!(
        status_of(
            agent()
                .delete(&uri)
                .header("Authorization", &bearer(&third))
                .call()
        ),
        204
    );
    assert_eq!(
        status_of(
            agent()
                .get(&uri)
                .header("Authorization", &bearer(&third))
                .call()
        ),
        401
    );
    assert_eq!(app.events("ClientRegistrationTokenRotated").len(), 2);
}

#[test]
fn a_client_that_registered_itself_signs_a_user_in() {
    let app = spawn_app();
    app.create_user("alice", "wonderland42");
    let iat = initial_token(&app, &[]);
    let http = crate::oidc::http;
    let issuer = IssuerUrl::new(app.base.clone()).unwrap();
    let metadata = CoreProviderMetadata::discover(&issuer, &http).unwrap();
    let redirect = "http://127.0.0.1:8913/cb";
    let registered = CoreClientRegistrationRequest::new(
        vec![RedirectUrl::new(redirect.into()).unwrap()],
        Default::default(),
    )
    .set_initial_access_token(Some(AccessToken::new(
        iat["initial_access_token"].as_str().unwrap().to_owned(),
    )))
    .register(
        &RegistrationUrl::new(format!("{}/register", app.base)).unwrap(),
        &http,
    )
    .unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(registered.client_id().as_str().to_owned()),
        registered.client_secret().cloned(),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("openid".into()))
        .set_pkce_challenge(challenge)
        .url();
    let mut browser = Browser::new(&app);
    browser.sign_in("alice", "wonderland42");
    let r = browser.get(url.as_str());
    let loc = r.location.clone().unwrap();
    let done = if loc.contains("/consent?") {
        browser.decide(&loc, "approve")
    } else {
        r
    };
    let code = done.param("code").unwrap_or_else(|| panic!("{done:?}"));
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request(&http)
        .unwrap();
    use openidconnect::TokenResponse as _;
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&client.id_token_verifier(), &nonce)
        .unwrap();
    assert_eq!(
        claims.audiences()[0].as_str(),
        registered.client_id().as_str()
    );
}
