//! OpenID Connect, driven by a real relying party: the `openidconnect` crate discovers the
//! server, runs the code flow with PKCE and a nonce through the login and consent pages,
//! verifies the id_token against the JWKS, asks `/userinfo` and refreshes; and the
//! authorization endpoint's OpenID parameters (`prompt`, `max_age`, `id_token_hint`, `nonce`,
//! `claims`) and the implicit `id_token` responses, each with its refusals.

use crate::helpers::{agent, spawn_app, spawn_app_with, TestApp};
use crate::web::Browser;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;
use std::time::Duration;

const CB: &str = "http://127.0.0.1:8912/cb";

/// The relying party's transport: the tests' ureq, never following a redirect.
pub fn http(
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, std::io::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let mut res = agent.run(req).map_err(std::io::Error::other)?;
    let mut out = openidconnect::http::Response::builder().status(res.status());
    for (k, v) in res.headers() {
        out = out.header(k, v);
    }
    let body = res
        .body_mut()
        .read_to_vec()
        .map_err(std::io::Error::other)?;
    out.body(body).map_err(std::io::Error::other)
}

/// alice, with a profile, and a confidential web client allowed OpenID Connect.
pub(crate) fn setup(app: &TestApp, extra: &[&str]) -> (String, String, String) {
    let user = app.create_user("alice", "wonderland42");
    let out = app.cli(&[
        "user",
        "update",
        "alice",
        "--name",
        "Alice Liddell",
        "--given-name",
        "Alice",
        "--email",
        "alice@example.test",
        "--email-verified",
        "--locale",
        "en-GB",
    ]);
    assert!(
        out.status.success(),
        "user update: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut args = vec![
        "--redirect-uri",
        CB,
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--scope",
        "openid profile email read",
    ];
    args.extend_from_slice(extra);
    let (id, secret) = app.create_client(&args);
    (user, id, secret)
}

/// Follows an authorization URL as a signed-in browser would, approving the consent page;
/// answers the redirect to the client.
fn follow(browser: &mut Browser, url: &str) -> crate::web::Reply {
    let r = browser.get(url);
    assert_eq!(r.status, 302, "authorize: {r:?}");
    let loc = r.location.clone().unwrap();
    if loc.contains("/consent?") {
        browser.decide(&loc, "approve")
    } else {
        r
    }
}

#[test]
fn a_relying_party_signs_in_verifies_the_id_token_reads_userinfo_and_refreshes() {
    let app = spawn_app();
    let (user, id, secret) = setup(&app, &[]);
    let issuer = IssuerUrl::new(app.base.clone()).unwrap();
    let metadata = CoreProviderMetadata::discover(&issuer, &http).unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(id.clone()),
        Some(ClientSecret::new(secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(CB.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();

    // Not signed in: the login page, then back to the request, then consent.
    let mut browser = Browser::new(&app);
    let r = browser.get(url.as_str());
    assert_eq!(r.status, 302);
    let login = r.location.clone().unwrap();
    assert!(login.contains("/login?"), "{login}");
    browser.sign_in("alice", "wonderland42");
    let back = url::Url::parse(&login)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let done = follow(&mut browser, &back);
    assert_eq!(done.param("state").as_deref(), Some(csrf.secret().as_str()));
    let code = done.param("code").expect("a code");

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request(&http)
        .unwrap();
    let id_token = tokens.id_token().expect("an id_token");
    let verifier = client.id_token_verifier();
    let claims = id_token.claims(&verifier, &nonce).unwrap();
    assert_eq!(claims.subject().as_str(), user);
    assert_eq!(claims.issuer().as_str(), app.base);
    assert!(claims.auth_time().is_some());
    // at_hash binds the access token to the id_token.
    let expected = claims.access_token_hash().expect("at_hash");
    let actual = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(actual, *expected);
    assert_eq!(
        *id_token.signing_alg().unwrap(),
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
    );
    // The raw claims: sid, amr, acr, azp are there too.
    let raw = jwt_claims(&id_token.to_string());
    assert_eq!(raw["azp"], id.as_str());
    assert_eq!(raw["amr"], serde_json::json!(["pwd"]));
    assert!(raw["sid"].as_str().is_some_and(|s| s.len() >= 20));
    assert_eq!(raw["acr"], "1");

    // /userinfo answers the profile and email scopes.
    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().to_owned(), None)
        .unwrap()
        .request(&http)
        .unwrap();
    assert_eq!(info.subject().as_str(), user);
    assert_eq!(info.email().map(|e| e.as_str()), Some("alice@example.test"));
    assert_eq!(info.email_verified(), Some(true));
    assert_eq!(
        info.name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned()),
        Some("Alice Liddell".into())
    );
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("alice"));

    // A refresh: a new id_token, the same sub and auth_time, no nonce.
    let refreshed = client
        .exchange_refresh_token(tokens.refresh_token().expect("a refresh token"))
        .unwrap()
        .request(&http)
        .unwrap();
    let again = refreshed.id_token().expect("a refreshed id_token");
    let again_claims = again
        .claims(&client.id_token_verifier(), |n: Option<&Nonce>| match n {
            None => Ok(()),
            Some(_) => Err("a refreshed id_token carries no nonce".to_owned()),
        })
        .unwrap();
    assert_eq!(again_claims.subject(), claims.subject());
    assert_eq!(again_claims.auth_time(), claims.auth_time());
    assert_ne!(again.to_string(), id_token.to_string());

    // A nonce the relying party did not send is refused by it.
    let err = id_token
        .claims(&client.id_token_verifier(), &Nonce::new("another".into()))
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("nonce"), "{err}");

    // Each id_token is an event of the trail.
    let issued = app.events("IdTokenIssued");
    assert_eq!(issued.len(), 2, "{issued:?}");
    assert_eq!(issued[0]["data"]["nonce"], nonce.secret().as_str());
    assert_eq!(issued[1]["data"]["grant_type"], "refresh_token");
}

/// The payload of a compact JWS, unverified (the relying party verified it).
pub(crate) fn jwt_claims(token: &str) -> Value {
    jwt_part(token, 1)
}

/// A part of a compact JWS (0 the header, 1 the payload), decoded, unverified.
fn jwt_part(token: &str, part: usize) -> Value {
    use base64::Engine as _;
    let encoded = token.split('.').nth(part).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

/// A code-flow request's parameters; `extra` adds or replaces some.
fn code_request<'a>(id: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("response_type", "code"),
        ("client_id", id),
        ("redirect_uri", CB),
        ("scope", "openid profile"),
        ("state", "s1"),
        ("nonce", "n1"),
        ("code_challenge", crate::web::CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        p.retain(|(name, _)| name != k);
        p.push((k, v));
    }
    p
}

/// Redeems a code; answers the token response.
fn redeem(app: &TestApp, id: &str, secret: &str, code: &str) -> Value {
    let (status, body) = app.post_form(
        "/token",
        Some((id, secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CB),
            ("code_verifier", crate::web::VERIFIER),
        ],
    );
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn prompt_max_age_and_id_token_hint_are_obeyed_and_refused_with_the_openid_codes() {
    let app = spawn_app_with(&["--test-clock"]);
    let (_, id, secret) = setup(&app, &[]);
    let mut browser = Browser::new(&app);

    // prompt=none without a session: login_required, through the redirect.
    let r = browser.authorize(&code_request(&id, &[("prompt", "none")]));
    assert_eq!(r.status, 302);
    assert!(r.location.as_deref().unwrap().starts_with(CB));
    assert_eq!(r.param("error").as_deref(), Some("login_required"));
    assert_eq!(r.param("state").as_deref(), Some("s1"));

    // Signed in, but never asked: consent_required.
    browser.sign_in("alice", "wonderland42");
    let r = browser.authorize(&code_request(&id, &[("prompt", "none")]));
    assert_eq!(r.param("error").as_deref(), Some("consent_required"));

    // Approve once; then prompt=none answers at once, with the nonce in the id_token.
    let first = browser.approve(&code_request(&id, &[]));
    let body = redeem(&app, &id, &secret, &first.param("code").unwrap());
    let first_id_token = body["id_token"].as_str().unwrap().to_owned();
    let first_claims = jwt_claims(&first_id_token);
    assert_eq!(first_claims["nonce"], "n1");
    let r = browser.authorize(&code_request(&id, &[("prompt", "none")]));
    assert!(r.param("code").is_some(), "{r:?}");

    // prompt=consent asks again though consent is remembered.
    let r = browser.authorize(&code_request(&id, &[("prompt", "consent")]));
    assert!(
        r.location.as_deref().unwrap().contains("/consent?"),
        "{r:?}"
    );

    // max_age=0 forces a new sign-in: the login page, and the code's id_token has a new
    // auth_time once the user signed in again.
    app.advance_clock(5_000);
    let r = browser.authorize(&code_request(&id, &[("max_age", "0")]));
    let login = r.location.clone().unwrap();
    assert!(login.contains("/login?"), "{r:?}");
    let return_to = url::Url::parse(&login)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let page = browser.get(&login);
    let csrf = page.field("csrf_token").unwrap();
    let signed = browser.post(
        "/login",
        &[
            ("csrf_token", &csrf),
            ("username", "alice"),
            ("password", "wonderland42"),
            ("return_to", &return_to),
        ],
    );
    assert_eq!(signed.status, 303);
    let r = browser.get(signed.location.as_deref().unwrap());
    let code = r.param("code").unwrap_or_else(|| panic!("{r:?}"));
    let fresh = jwt_claims(
        redeem(&app, &id, &secret, &code)["id_token"]
            .as_str()
            .unwrap(),
    );
    assert!(
        fresh["auth_time"].as_i64().unwrap() >= first_claims["auth_time"].as_i64().unwrap() + 5,
        "{fresh} after {first_claims}"
    );
    assert_ne!(
        fresh["sid"], first_claims["sid"],
        "a new sign-in, a new session"
    );
    // max_age=0 with prompt=none cannot sign in: login_required once the session has aged.
    app.advance_clock(2_000);
    let r = browser.authorize(&code_request(&id, &[("max_age", "0"), ("prompt", "none")]));
    assert_eq!(r.param("error").as_deref(), Some("login_required"), "{r:?}");

    // login_hint fills in the login page.
    let mut other = Browser::new(&app);
    let r = other.authorize(&code_request(&id, &[("login_hint", "alice")]));
    let page = other.get(r.location.as_deref().unwrap());
    assert!(page.body.contains("value=\"alice\""), "{}", page.body);

    // An id_token_hint of another user than the signed-in one: sign in again (with
    // prompt=none, login_required).
    app.create_user("bob", "looking-glass7");
    let mut bob = Browser::new(&app);
    bob.sign_in("bob", "looking-glass7");
    let r = bob.approve(&code_request(&id, &[]));
    let bobs = redeem(&app, &id, &secret, &r.param("code").unwrap())["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = browser.authorize(&code_request(&id, &[("id_token_hint", &bobs)]));
    assert!(r.location.as_deref().unwrap().contains("/login?"), "{r:?}");
    let r = browser.authorize(&code_request(
        &id,
        &[("id_token_hint", &bobs), ("prompt", "none")],
    ));
    assert_eq!(r.param("error").as_deref(), Some("login_required"));
    // An id_token_hint issued to this client is taken; one of another client is refused.
    let r = browser.authorize(&code_request(&id, &[("id_token_hint", &first_id_token)]));
    assert!(r.param("code").is_some(), "{r:?}");
    let (other_id, _) = app.create_client(&[
        "--redirect-uri",
        CB,
        "--grant-type",
        "authorization_code",
        "--scope",
        "openid profile",
    ]);
    let r = browser.authorize(&code_request(
        &other_id,
        &[("id_token_hint", &first_id_token)],
    ));
    assert_eq!(
        r.param("error").as_deref(),
        Some("invalid_request"),
        "{r:?}"
    );
    let forged = format!("{}x", &first_id_token[..first_id_token.len() - 1]);
    let r = browser.authorize(&code_request(&id, &[("id_token_hint", &forged)]));
    assert_eq!(r.param("error").as_deref(), Some("invalid_request"));

    // An OpenID request must name its redirect_uri (Core 3.1.2.1): a page, no redirect.
    let no_redirect: Vec<(&str, &str)> = code_request(&id, &[])
        .into_iter()
        .filter(|(k, _)| *k != "redirect_uri")
        .collect();
    let r = browser.authorize(&no_redirect);
    assert_eq!((r.status, r.location.is_none()), (400, true), "{r:?}");
    // Unsupported and malformed values get their codes.
    for (extra, code) in [
        (
            ("request", "eyJhbGciOiJub25lIn0.e30."),
            "request_not_supported",
        ),
        (
            ("request_uri", "https://rp.example/r"),
            "request_uri_not_supported",
        ),
        (("registration", "{}"), "registration_not_supported"),
        (("prompt", "none login"), "invalid_request"),
        (("prompt", "sometimes"), "invalid_request"),
        (("max_age", "-1"), "invalid_request"),
        (("claims", "not json"), "invalid_request"),
    ] {
        let r = browser.authorize(&code_request(&id, &[extra]));
        assert_eq!(r.param("error").as_deref(), Some(code), "{extra:?}: {r:?}");
    }
}

#[test]
fn claims_asked_by_name_reach_the_id_token_and_userinfo() {
    let app = spawn_app();
    let (_, id, secret) = setup(&app, &[]);
    let mut browser = Browser::new(&app);
    browser.sign_in("alice", "wonderland42");
    let claims = r#"{"id_token":{"email":{"essential":true}},"userinfo":{"locale":null}}"#;
    // Asked by name, but not covered by the scopes granted: nothing is released.
    let r = browser.approve(&code_request(
        &id,
        &[("scope", "openid"), ("claims", claims)],
    ));
    let body = redeem(&app, &id, &secret, &r.param("code").unwrap());
    let id_claims = jwt_claims(body["id_token"].as_str().unwrap());
    assert!(
        id_claims.get("email").is_none(),
        "email without the email scope"
    );
    // Under the scopes that cover them, the claims asked for go where they were asked for.
    let r = browser.approve(&code_request(
        &id,
        &[("scope", "openid email profile"), ("claims", claims)],
    ));
    let body = redeem(&app, &id, &secret, &r.param("code").unwrap());
    let id_claims = jwt_claims(body["id_token"].as_str().unwrap());
    assert_eq!(id_claims["email"], "alice@example.test");
    assert!(
        id_claims.get("name").is_none(),
        "name was not asked for the id_token"
    );
    let res = agent()
        .get(&format!("{}/userinfo", app.base))
        .header(
            "Authorization",
            &format!("Bearer {}", body["access_token"].as_str().unwrap()),
        )
        .call()
        .unwrap();
    let (status, info) = crate::helpers::answer(Ok(res));
    assert_eq!(status, 200);
    assert_eq!(info["locale"], "en-GB");
}

#[test]
fn userinfo_takes_the_token_every_rfc_6750_way_and_refuses_the_rest() {
    let app = spawn_app();
    let (user, id, secret) = setup(&app, &[]);
    let mut browser = Browser::new(&app);
    browser.sign_in("alice", "wonderland42");
    let r = browser.approve(&code_request(&id, &[("scope", "openid email")]));
    let body = redeem(&app, &id, &secret, &r.param("code").unwrap());
    let token = body["access_token"].as_str().unwrap().to_owned();
    let userinfo = format!("{}/userinfo", app.base);
    // Header (GET), form body (POST).
    let (status, info) = crate::helpers::answer(
        agent()
            .get(&userinfo)
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
    );
    assert_eq!((status, info["sub"].as_str()), (200, Some(user.as_str())));
    let (status, info) = crate::helpers::answer(
        agent()
            .post(&userinfo)
            .send_form([("access_token", &*token)]),
    );
    assert_eq!(
        (status, info["email"].as_str()),
        (200, Some("alice@example.test"))
    );
    // No token: 401 with a bare challenge.
    let res = agent().get(&userinfo).call().unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(
        res.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some(r#"Bearer realm="userinfo""#)
    );
    // A client_credentials token without openid: 403 insufficient_scope.
    let (cc_id, cc_secret) = app.create_client(&["--scope", "read"]);
    let cc = app.token(&cc_id, &cc_secret, None);
    let (status, err) = crate::helpers::answer(
        agent()
            .get(&userinfo)
            .header(
                "Authorization",
                &format!("Bearer {}", cc["access_token"].as_str().unwrap()),
            )
            .call(),
    );
    assert_eq!(
        (status, err["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    // Revoked: 401 invalid_token at once.
    let (status, _) = app.post_form("/revoke", Some((&id, &secret)), &[("token", &token)]);
    assert_eq!(status, 200);
    let (status, err) = crate::helpers::answer(
        agent()
            .get(&userinfo)
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
    );
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_token"))
    );
}

#[test]
fn the_implicit_id_token_responses_need_a_nonce_and_carry_the_claims() {
    let app = spawn_app();
    let (user, id, _) = setup(
        &app,
        &["--grant-type", "implicit", "--id-token-alg", "ES256"],
    );
    let mut browser = Browser::new(&app);
    browser.sign_in("alice", "wonderland42");
    let implicit = |rt: &'static str, nonce: Option<&'static str>| {
        let mut p = vec![
            ("response_type", rt),
            ("client_id", id.as_str()),
            ("redirect_uri", CB),
            ("scope", "openid profile email"),
            ("state", "s2"),
        ];
        if let Some(n) = nonce {
            p.push(("nonce", n));
        }
        p
    };
    // No nonce: refused in the fragment.
    let r = browser.authorize(&implicit("id_token", None));
    assert_eq!(r.param("error").as_deref(), Some("invalid_request"));
    assert!(r.location.as_deref().unwrap().contains('#'));
    // id_token alone: the profile goes in the id_token, signed ES256 as registered.
    let r = browser.approve(&implicit("id_token", Some("n2")));
    let location = r.location.clone().unwrap();
    assert!(location.contains("#id_token="), "{location}");
    assert!(r.param("access_token").is_none());
    let token = r.param("id_token").unwrap();
    let header = jwt_part(token.as_str(), 0);
    assert_eq!(header["alg"], "ES256");
    let claims = jwt_claims(&token);
    assert_eq!(claims["sub"], user.as_str());
    assert_eq!(claims["nonce"], "n2");
    assert_eq!(claims["email"], "alice@example.test");
    assert_eq!(claims["name"], "Alice Liddell");
    // id_token token: both, and at_hash.
    let r = browser.authorize(&implicit("id_token token", Some("n3")));
    let claims = jwt_claims(&r.param("id_token").unwrap());
    assert!(claims["at_hash"].as_str().is_some());
    assert!(r.param("access_token").is_some());
    assert!(
        claims.get("email").is_none(),
        "with an access token: userinfo"
    );
    // Not registered for implicit: unauthorized_client.
    let (code_only, _) = app.create_client(&[
        "--redirect-uri",
        CB,
        "--grant-type",
        "authorization_code",
        "--scope",
        "openid",
    ]);
    let r = browser.authorize(&[
        ("response_type", "id_token"),
        ("client_id", &code_only),
        ("redirect_uri", CB),
        ("scope", "openid"),
        ("nonce", "n4"),
    ]);
    assert_eq!(
        r.param("error").as_deref(),
        Some("unauthorized_client"),
        "{r:?}"
    );
}

#[test]
fn discovery_describes_what_the_server_does() {
    let app = spawn_app();
    let (status, doc) = app.get("/.well-known/openid-configuration");
    assert_eq!(status, 200);
    assert_eq!(doc["issuer"], app.base.as_str());
    for field in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
        "scopes_supported",
        "claims_supported",
        "grant_types_supported",
    ] {
        assert!(!doc[field].is_null(), "{field} missing: {doc}");
    }
    assert!(doc["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "RS256"));
    // The OAuth metadata agrees where they overlap.
    let (_, oauth) = app.get("/.well-known/oauth-authorization-server");
    for field in [
        "token_endpoint",
        "jwks_uri",
        "grant_types_supported",
        "response_types_supported",
    ] {
        assert_eq!(doc[field], oauth[field], "{field}");
    }
    let types: Vec<&str> = doc["response_types_supported"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in ["code", "id_token", "id_token token"] {
        assert!(types.contains(&t), "{t} not advertised: {types:?}");
    }
}

/// A relying party's back-channel logout endpoint on 127.0.0.1: answers each POST with the
/// next status of `statuses` (then 200), and hands the `logout_token` of each to the test.
pub struct LogoutListener {
    pub uri: String,
    pub tokens: std::sync::mpsc::Receiver<String>,
}

impl LogoutListener {
    pub fn start(statuses: Vec<u16>) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!(
            "http://{}/backchannel-logout",
            listener.local_addr().unwrap()
        );
        let (tx, tokens) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut statuses = statuses.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let status = statuses.next().unwrap_or(200);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let token = form_urlencoded::parse(&body)
                    .find(|(k, _)| k == "logout_token")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                if tx.send(token).is_err() {
                    return;
                }
            }
        });
        Self { uri, tokens }
    }
}

/// Signs alice in and runs the code flow for `id`; answers the id_token.
fn sign_in_with_code(app: &TestApp, browser: &mut Browser, id: &str, secret: &str) -> String {
    browser.sign_in("alice", "wonderland42");
    let r = browser.approve(&code_request(id, &[("scope", "openid")]));
    redeem(app, id, secret, &r.param("code").unwrap())["id_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_logout_ends_the_session_everywhere_and_notifies_the_relying_party_until_it_answers() {
    let app = spawn_app_with(&["--test-clock"]);
    // The relying party is down once, then takes the notice.
    let rp = LogoutListener::start(vec![503]);
    let (user, id, secret) = setup(
        &app,
        &[
            "--post-logout-redirect-uri",
            "http://127.0.0.1:8912/signed-out",
            "--backchannel-logout-uri",
            &rp.uri,
        ],
    );
    let mut browser = Browser::new(&app);
    browser.sign_in("alice", "wonderland42");
    let r = browser.approve(&code_request(&id, &[("scope", "openid")]));
    let tokens = redeem(&app, &id, &secret, &r.param("code").unwrap());
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let sid = jwt_claims(&id_token)["sid"].as_str().unwrap().to_owned();
    let stolen = browser.cookies.clone();
    // A code of this session, not yet redeemed when the user signs out.
    let pending_code = browser
        .approve(&code_request(&id, &[("scope", "openid")]))
        .param("code")
        .unwrap();

    // An unregistered post_logout_redirect_uri: refused on a page, never redirected, and the
    // session goes on.
    let q = |uri: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("id_token_hint", &id_token)
            .append_pair("post_logout_redirect_uri", uri)
            .append_pair("state", "st8")
            .finish()
    };
    let r = browser.get(&format!("/end_session?{}", q("https://evil.example/")));
    assert_eq!(r.status, 400);
    assert!(r.location.is_none());
    assert_eq!(browser.get("/account").status, 200);

    // The relying party's logout: at once (the hint names this session), back to it with
    // its state.
    let r = browser.get(&format!(
        "/end_session?{}",
        q("http://127.0.0.1:8912/signed-out")
    ));
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(
        r.location.as_deref(),
        Some("http://127.0.0.1:8912/signed-out?state=st8")
    );
    // Signed out here, and a copy of the old cookie is refused too.
    assert_eq!(browser.get("/account").status, 302);
    let mut thief = Browser::new(&app);
    thief.cookies = stolen;
    let r = thief.get("/account");
    assert_eq!(r.status, 302, "an ended session's cookie still worked");
    // No new id_token names the ended session: its refresh token and its last code are refused.
    for form in [
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
        vec![
            ("grant_type", "authorization_code"),
            ("code", pending_code.as_str()),
            ("redirect_uri", CB),
            ("code_verifier", crate::web::VERIFIER),
        ],
    ] {
        let (status, body) = app.post_form("/token", Some((&id, &secret)), &form);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{form:?}"
        );
    }

    // The notice: a logout token for that session, which the relying party first refused.
    let first = rp
        .tokens
        .recv_timeout(Duration::from_secs(30))
        .expect("a logout notice");
    let claims = jwt_claims(&first);
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(claims["sub"], user.as_str());
    assert_eq!(claims["aud"], id.as_str());
    assert_eq!(claims["iss"], app.base.as_str());
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none());
    let header = jwt_part(first.as_str(), 0);
    assert_eq!(header["typ"], "logout+jwt");
    // The failure is recorded with its retry time; moving the clock past it sends it again,
    // before the clock's answer.
    let attempts = || app.events("BackchannelLogoutAttempted");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while attempts().is_empty() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    let a = attempts();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["data"]["status"], 503);
    assert_eq!(a[0]["data"]["delivered"], false);
    assert!(a[0]["data"]["retry_at"].as_i64().is_some());
    app.advance_clock(3_000);
    let second = rp
        .tokens
        .recv_timeout(Duration::from_secs(30))
        .expect("the notice again");
    assert_eq!(jwt_claims(&second)["sid"], sid.as_str());
    let a = attempts();
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[1]["data"]["delivered"], true);
    assert_eq!(a[1]["data"]["attempt"], 2);
    // The session's end is in the trail.
    let ended = app.events("SessionEnded");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["data"]["sid"], sid.as_str());
    assert_eq!(ended[0]["data"]["notify"][0]["client_id"], id.as_str());
    assert_eq!(app.events("SessionStarted").len(), 1);
}

#[test]
fn a_logout_without_a_hint_is_confirmed_by_the_user_first() {
    let app = spawn_app();
    let (_, id, secret) = setup(
        &app,
        &["--post-logout-redirect-uri", "http://127.0.0.1:8912/bye"],
    );
    let mut browser = Browser::new(&app);
    sign_in_with_code(&app, &mut browser, &id, &secret);
    // A relying party's form POST comes back as a GET, which carries the session cookie.
    let r = browser.post(
        "/end_session",
        &[
            ("client_id", id.as_str()),
            ("post_logout_redirect_uri", "http://127.0.0.1:8912/bye"),
        ],
    );
    assert_eq!(r.status, 303);
    let r = browser.get(r.location.as_deref().unwrap());
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Sign out?"), "{}", r.body);
    // Still signed in until the user says so.
    assert_eq!(browser.get("/account").status, 200);
    let request = r.field("request").unwrap();
    let csrf = r.field("csrf_token").unwrap();
    let r = browser.post(
        "/end_session/confirm",
        &[
            ("csrf_token", &csrf),
            ("request", &request),
            ("decision", "logout"),
        ],
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.location.as_deref(), Some("http://127.0.0.1:8912/bye"));
    assert_eq!(browser.get("/account").status, 302);
    // A logout for a client whose hint names another client is refused.
    let (other, other_secret) = app.create_client(&[
        "--redirect-uri",
        CB,
        "--grant-type",
        "authorization_code",
        "--scope",
        "openid",
    ]);
    let token = sign_in_with_code(&app, &mut browser, &other, &other_secret);
    let r = browser.get(&format!(
        "/end_session?client_id={id}&id_token_hint={token}"
    ));
    assert_eq!(r.status, 400);
}

#[test]
fn a_pairwise_client_sees_a_sub_of_its_own_sector_everywhere() {
    let app = spawn_app();
    let (user, public, public_secret) = setup(&app, &[]);
    let pairwise = |sector: Option<&str>| {
        let mut args = vec![
            "--redirect-uri",
            CB,
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--scope",
            "openid profile",
            "--subject-type",
            "pairwise",
        ];
        if let Some(s) = sector {
            args.extend(["--sector-identifier", s]);
        }
        app.create_client(&args)
    };
    let (a, a_secret) = pairwise(None);
    let (b, b_secret) = pairwise(None);
    let (c, c_secret) = pairwise(Some("other.example"));
    let mut browser = Browser::new(&app);
    let sub_of = |browser: &mut Browser, id: &str, secret: &str| {
        let r = browser.approve(&code_request(id, &[("scope", "openid")]));
        let body = redeem(&app, id, secret, &r.param("code").unwrap());
        let sub = jwt_claims(body["id_token"].as_str().unwrap())["sub"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, info) = crate::helpers::answer(
            agent()
                .get(&format!("{}/userinfo", app.base))
                .header(
                    "Authorization",
                    &format!("Bearer {}", body["access_token"].as_str().unwrap()),
                )
                .call(),
        );
        assert_eq!(status, 200);
        assert_eq!(info["sub"], sub.as_str(), "userinfo and id_token agree");
        // The access token and its introspection show the same sub, and no username.
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(jwt_claims(access)["sub"], sub.as_str());
        let seen = app.introspect(id, secret, access);
        assert_eq!(seen["sub"], sub.as_str());
        assert_eq!(
            seen.get("username").is_some(),
            sub == user,
            "a pairwise client does not learn the username: {seen}"
        );
        // A refreshed id_token keeps it too.
        let (_, refreshed) = app.post_form(
            "/token",
            Some((id, secret)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", body["refresh_token"].as_str().unwrap()),
            ],
        );
        assert_eq!(
            jwt_claims(refreshed["id_token"].as_str().unwrap())["sub"],
            sub.as_str()
        );
        sub
    };
    browser.sign_in("alice", "wonderland42");
    let public_sub = sub_of(&mut browser, &public, &public_secret);
    let sa = sub_of(&mut browser, &a, &a_secret);
    let sb = sub_of(&mut browser, &b, &b_secret);
    let sc = sub_of(&mut browser, &c, &c_secret);
    assert_eq!(public_sub, user, "a public client sees the user's id");
    assert_ne!(sa, user, "a pairwise client does not");
    assert_eq!(sa, sb, "one sector (the redirect URIs' host), one sub");
    assert_ne!(sa, sc, "another sector, another sub");
    assert_eq!(sa.len(), 64);
}
