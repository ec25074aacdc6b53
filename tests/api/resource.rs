//! The resource side: `/api/whoami` and `/tokeninfo` per RFC 6750, and the extractor of
//! `authledger::resource` in `examples/resource_server.rs`, in both of its modes.

use crate::helpers::{agent, spawn_app_with, TestApp};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};

/// Status, JSON body and `WWW-Authenticate` of a GET with optional headers.
fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Value, Option<String>) {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.call().unwrap())
}

fn read(mut res: ureq::http::Response<ureq::Body>) -> (u16, Value, Option<String>) {
    let status = res.status().as_u16();
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        www,
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn token_of(app: &TestApp, id: &str, secret: &str, scope: Option<&str>) -> String {
    app.token(id, secret, scope)["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A JWT signed with HS256, keyed with the bytes of a published public key, and one with
/// `alg: none`: both must be refused everywhere.
fn forgeries(app: &TestApp, client_id: &str) -> Vec<String> {
    let (_, jwks) = app.get("/jwks");
    let key = &jwks["keys"][0];
    let kid = key["kid"].as_str().unwrap();
    let claims = serde_json::json!({
        "iss": app.base, "aud": app.base, "sub": "mallory", "client_id": client_id,
        "scope": "read write", "exp": 4_000_000_000i64, "iat": 1, "jti": uuid::Uuid::now_v7().to_string(),
    });
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some(kid.into());
    h.typ = Some("at+jwt".into());
    let hmac = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.to_string().as_bytes()),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#)),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    vec![hmac, none]
}

#[test]
fn whoami_takes_the_token_every_rfc_6750_way_and_answers_every_error_as_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut app = spawn_app_with(&["--whoami-scope", "profile"]);
    app.log = Some(log.clone());
    app.stop();
    app.start();
    let (id, secret) = app.create_client(&["--scope", "profile read"]);
    let token = token_of(&app, &id, &secret, None);
    let url = format!("{}/api/whoami", app.base);

    let (status, body, _) = get(&url, &[("Authorization", &bearer(&token))]);
    assert_eq!(
        (status, body["client_id"].as_str()),
        (200, Some(id.as_str())),
        "{body}"
    );
    assert_eq!(body["sub"], id.as_str());
    assert_eq!(body["scope"], "profile read");
    let (status, body, _) = get(&format!("{url}?access_token={token}"), &[]);
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.post_form("/api/whoami", None, &[("access_token", &token)]);
    assert_eq!(status, 200, "{body}");

    // §3.1: no token at all: 401 and a bare challenge.
    let (status, body, www) = get(&url, &[]);
    assert_eq!(status, 401, "{body}");
    assert_eq!(www.as_deref(), Some(r#"Bearer realm="authledger""#));
    // Another scheme is no bearer token either.
    let (status, _, www) = get(&url, &[("Authorization", "Basic Zm9vOmJhcg==")]);
    assert_eq!(
        (status, www.as_deref()),
        (401, Some(r#"Bearer realm="authledger""#))
    );
    // Two ways at once, or a malformed header: 400 invalid_request.
    let (status, body, www) = get(
        &format!("{url}?access_token={token}"),
        &[("Authorization", &bearer(&token))],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(www.unwrap().contains(r#"error="invalid_request""#));
    let (status, body, _) = get(&url, &[("Authorization", "Bearer two words")]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Unknown, forged, revoked: 401 invalid_token.
    let mut bad = vec!["not-a-token".to_owned()];
    bad.extend(forgeries(&app, &id));
    for t in &bad {
        assert_eq!(app.introspect(&id, &secret, t)["active"], false, "{t}");
        let (status, body, www) = get(&url, &[("Authorization", &bearer(t))]);
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token")),
            "{t}"
        );
        assert!(www.unwrap().contains(r#"error="invalid_token""#));
    }
    let revoked = token_of(&app, &id, &secret, None);
    app.post_form("/revoke", Some((&id, &secret)), &[("token", &revoked)]);
    let (status, _, _) = get(&url, &[("Authorization", &bearer(&revoked))]);
    assert_eq!(status, 401);
    // A valid token without the scope: 403 naming it.
    let narrow = token_of(&app, &id, &secret, Some("read"));
    let (status, body, www) = get(&url, &[("Authorization", &bearer(&narrow))]);
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    assert!(www.unwrap().ends_with(r#"scope="profile""#));

    // /tokeninfo answers the token holder.
    let (status, info, _) = get(&format!("{}/tokeninfo?access_token={token}", app.base), &[]);
    assert_eq!(status, 200);
    assert_eq!(
        (info["client_id"].as_str(), info["sub"].as_str()),
        (Some(id.as_str()), Some(id.as_str()))
    );
    assert_eq!(info["scope"], "profile read");
    let left = info["expires_in"].as_i64().unwrap();
    assert!((3590..=3600).contains(&left), "{info}");
    for t in bad.iter().chain([&revoked]) {
        let (status, info, _) = get(&format!("{}/tokeninfo?access_token={t}", app.base), &[]);
        assert_eq!(
            (status, info["error"].as_str()),
            (400, Some("invalid_token"))
        );
    }
    let (status, info, _) = get(&format!("{}/tokeninfo", app.base), &[]);
    assert_eq!(
        (status, info["error"].as_str()),
        (400, Some("invalid_token"))
    );

    // No request log holds a token sent in the query.
    app.stop();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("/api/whoami"),
        "the requests were not logged: {logged}"
    );
    assert!(logged.contains("/tokeninfo"));
    for t in [&token, &revoked] {
        assert!(!logged.contains(t.as_str()), "a token reached the log");
    }
}

/// The example API, started against a server; killed on drop.
pub struct Example {
    child: Child,
    pub base: String,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn example(args: &[&str]) -> Example {
    // Integration tests run from target/<profile>/deps; cargo builds examples beside it.
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join("resource_server");
    assert!(bin.exists(), "{} was not built", bin.display());
    let mut child = Command::new(bin)
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    Example {
        child,
        base: format!("http://{addr}"),
    }
}

fn call(
    api: &Example,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, Value, Option<String>) {
    let url = format!("{}{path}", api.base);
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    if method == "GET" {
        return get(&url, &headers);
    }
    let mut req = agent().post(&url);
    for (k, v) in &headers {
        req = req.header(*k, *v);
    }
    read(req.send_empty().unwrap())
}

#[test]
fn the_extractor_verifies_jwts_against_the_jwks_and_follows_key_rotation() {
    let app = spawn_app_with(&[]);
    let (id, secret) = app.create_client(&["--scope", "read write"]);
    let api = example(&[
        "--issuer",
        &app.base,
        "--mode",
        "jwks",
        "--refetch-interval",
        "0",
    ]);
    let both = token_of(&app, &id, &secret, None);
    let (status, body, _) = call(&api, "GET", "/hello", Some(&both));
    assert_eq!(
        (status, body["sub"].as_str()),
        (200, Some(id.as_str())),
        "{body}"
    );
    assert_eq!(call(&api, "GET", "/notes", Some(&both)).0, 200);
    assert_eq!(call(&api, "POST", "/notes", Some(&both)).0, 201);
    let read = token_of(&app, &id, &secret, Some("read"));
    assert_eq!(call(&api, "GET", "/notes", Some(&read)).0, 200);
    let (status, body, www) = call(&api, "POST", "/notes", Some(&read));
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let www = www.unwrap();
    assert!(
        www.starts_with(r#"Bearer realm="notes""#) && www.ends_with(r#"scope="write""#),
        "{www}"
    );
    let (status, _, www) = call(&api, "GET", "/hello", None);
    assert_eq!(
        (status, www.as_deref()),
        (401, Some(r#"Bearer realm="notes""#))
    );
    for forged in forgeries(&app, &id).iter().chain([&"garbage".to_owned()]) {
        let (status, body, _) = call(&api, "GET", "/hello", Some(forged));
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token")),
            "{forged}"
        );
    }
    // An opaque token cannot be verified locally.
    let (oid, osecret) = app.create_client(&["--scope", "read", "--token-format", "opaque"]);
    let opaque = token_of(&app, &oid, &osecret, None);
    assert_eq!(call(&api, "GET", "/hello", Some(&opaque)).0, 401);
    // A key rotated in after the extractor cached the JWKS: the unknown kid makes it refetch.
    let out = app.cli(&["keys", "rotate", "--algorithm", "ES256", "--lead-time", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated = token_of(&app, &id, &secret, None);
    assert_ne!(
        jsonwebtoken::decode_header(&rotated).unwrap().kid,
        jsonwebtoken::decode_header(&both).unwrap().kid
    );
    assert_eq!(call(&api, "GET", "/hello", Some(&rotated)).0, 200);
    assert_eq!(
        call(&api, "GET", "/hello", Some(&both)).0,
        200,
        "the old key still verifies"
    );
    // The trade-off of local verification: a JWT revoked a moment ago verifies until it
    // expires. The introspection mode below refuses it at once.
    app.post_form("/revoke", Some((&id, &secret)), &[("token", &rotated)]);
    assert_eq!(call(&api, "GET", "/hello", Some(&rotated)).0, 200);
}

#[test]
fn the_extractor_in_introspection_mode_refuses_a_token_revoked_a_moment_ago() {
    let app = spawn_app_with(&[]);
    let (rs_id, rs_secret) = app.create_client(&["--scope", "introspect", "--can-introspect"]);
    let api = example(&[
        "--issuer",
        &app.base,
        "--mode",
        "introspection",
        "--client-id",
        &rs_id,
        "--client-secret",
        &rs_secret,
    ]);
    for format in ["opaque", "jwt"] {
        let (id, secret) = app.create_client(&["--scope", "read write", "--token-format", format]);
        let token = token_of(&app, &id, &secret, None);
        let (status, body, _) = call(&api, "GET", "/hello", Some(&token));
        assert_eq!(
            (status, body["client_id"].as_str()),
            (200, Some(id.as_str())),
            "{format}: {body}"
        );
        assert_eq!(call(&api, "POST", "/notes", Some(&token)).0, 201);
        let read = token_of(&app, &id, &secret, Some("read"));
        assert_eq!(call(&api, "POST", "/notes", Some(&read)).0, 403);
        let (status, _) = app.post_form("/revoke", Some((&id, &secret)), &[("token", &token)]);
        assert_eq!(status, 200);
        let (status, body, www) = call(&api, "GET", "/hello", Some(&token));
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token")),
            "{format}"
        );
        assert!(www.unwrap().contains(r#"error="invalid_token""#));
        for forged in forgeries(&app, &id) {
            assert_eq!(call(&api, "GET", "/hello", Some(&forged)).0, 401);
        }
    }
    // A refresh token is not an access token.
    let (status, _, _) = call(&api, "GET", "/hello", Some("x.y.z"));
    assert_eq!(status, 401);
    // With wrong credentials the API says the issuer cannot be asked, not that the token is bad.
    let broken = example(&[
        "--issuer",
        &app.base,
        "--mode",
        "introspection",
        "--client-id",
        &rs_id,
        "--client-secret",
        "wrong-secret-wrong-secret-wrong-secret",
    ]);
    let (id, secret) = app.create_client(&["--scope", "read"]);
    let token = token_of(&app, &id, &secret, None);
    assert_eq!(call(&broken, "GET", "/hello", Some(&token)).0, 503);
}
