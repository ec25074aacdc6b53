//! JWT assertions (RFC 7523): the jwt-bearer grant and private_key_jwt client authentication.

use crate::helpers::{spawn_app_with, TestApp};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const CLIENT_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A P-256 key pair of an assertion issuer: its signing key and its JWKS.
struct Signer {
    key: jsonwebtoken::EncodingKey,
    jwks: Value,
}

fn signer(kid: &str) -> Signer {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let p = pair.public_key().as_ref().to_vec();
    let der = pair.to_pkcs8v1().unwrap();
    Signer {
        key: jsonwebtoken::EncodingKey::from_ec_der(der.as_ref()),
        jwks: serde_json::json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..]),
        }]}),
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn sign(s: &Signer, claims: &Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(s.jwks["keys"][0]["kid"].as_str().unwrap().into());
    jsonwebtoken::encode(&h, claims, &s.key).unwrap()
}

fn claims(app: &TestApp, iss: &str, sub: &str) -> Value {
    serde_json::json!({
        "iss": iss, "sub": sub, "aud": format!("{}/token", app.base),
        "exp": now() + 120, "iat": now(), "jti": uuid::Uuid::now_v7().to_string(),
    })
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

fn write_jwks(app: &TestApp, s: &Signer) -> String {
    let path = app
        .data_dir()
        .join(format!("jwks-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&path, s.jwks.to_string()).unwrap();
    format!("@{}", path.display())
}

/// `alg: none` and HS256 keyed with the registered public key.
fn forged(s: &Signer, c: &Value) -> Vec<String> {
    let kid = s.jwks["keys"][0]["kid"].as_str().unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some(kid.into());
    let hmac = jsonwebtoken::encode(
        &h,
        c,
        &jsonwebtoken::EncodingKey::from_secret(s.jwks["keys"][0].to_string().as_bytes()),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#)),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    vec![hmac, none]
}

#[test]
fn the_jwt_bearer_grant_issues_for_trusted_assertions_and_refuses_every_bad_one() {
    let app = spawn_app_with(&[]);
    let idp = signer("idp-1");
    let jwks = write_jwks(&app, &idp);
    let (id, secret) = app.create_client(&[
        "--grant-type",
        GRANT,
        "--scope",
        "read",
        "--token-format",
        "opaque",
        "--jwks",
        &jwks,
        "--trusted-issuer",
        "https://idp.example",
    ]);
    let grant = |assertion: &str| {
        app.post_form(
            "/token",
            Some((&id, &secret)),
            &[("grant_type", GRANT), ("assertion", assertion)],
        )
    };
    let good = claims(&app, "https://idp.example", "alice@idp");
    let assertion = sign(&idp, &good);
    let (status, body) = grant(&assertion);
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let seen = app.introspect(&id, &secret, token);
    assert_eq!(
        (seen["active"].as_bool(), seen["sub"].as_str()),
        (Some(true), Some("alice@idp"))
    );
    assert!(body.get("refresh_token").is_none());
    // Its jti is spent.
    let (status, body) = grant(&assertion);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("used before"));
    // The issuer's own audience is accepted too.
    let at_issuer = with(
        claims(&app, "https://idp.example", "bob"),
        "aud",
        app.base.clone().into(),
    );
    assert_eq!(grant(&sign(&idp, &at_issuer)).0, 200);

    let stranger = signer("idp-1");
    let fresh = || claims(&app, "https://idp.example", "alice@idp");
    let mut refused: Vec<(&str, String)> = vec![
        (
            "expired",
            sign(&idp, &with(fresh(), "exp", (now() - 120).into())),
        ),
        (
            "not yet valid",
            sign(&idp, &with(fresh(), "nbf", (now() + 600).into())),
        ),
        (
            "wrong audience",
            sign(
                &idp,
                &with(fresh(), "aud", "https://elsewhere.example".into()),
            ),
        ),
        (
            "unknown issuer",
            sign(&idp, &claims(&app, "https://evil.example", "alice")),
        ),
        ("bad signature", sign(&stranger, &fresh())),
        (
            "no jti",
            sign(&idp, &{
                let mut c = fresh();
                c.as_object_mut().unwrap().remove("jti");
                c
            }),
        ),
        (
            "too long-lived",
            sign(&idp, &with(fresh(), "exp", (now() + 86_400).into())),
        ),
        ("garbage", "not.a.jwt".into()),
    ];
    for f in forged(&idp, &fresh()) {
        refused.push(("forged", f));
    }
    for (why, assertion) in &refused {
        let (status, body) = grant(assertion);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{why}: {body}"
        );
    }
    // A client not allowed the grant.
    let (other, other_secret) = app.create_client(&["--scope", "read"]);
    let (status, body) = app.post_form(
        "/token",
        Some((&other, &other_secret)),
        &[("grant_type", GRANT), ("assertion", &sign(&idp, &fresh()))],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    // Every acceptance is in the trail, with who and what it named.
    let trail = app.events("JwtAssertionAccepted");
    assert_eq!(trail.len(), 2);
    assert_eq!(trail[0]["data"]["issuer"], "https://idp.example");

    // A subject that looks like a user id of this server does not borrow that user's name.
    let user = app.create_user("carol", "a long enough password 1");
    let (status, body) = grant(&sign(&idp, &claims(&app, "https://idp.example", &user)));
    assert_eq!(status, 200, "{body}");
    let seen = app.introspect(&id, &secret, body["access_token"].as_str().unwrap());
    assert_eq!(seen["sub"], user.as_str());
    assert!(seen.get("username").is_none(), "{seen}");

    // The same assertion presented 16 times at once is accepted once.
    let once = sign(&idp, &fresh());
    let oks = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16).map(|_| s.spawn(|| grant(&once).0)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|st| *st == 200)
            .count()
    });
    assert_eq!(oks, 1);

    // The issuer rotates its key: the client's registered keys are replaced.
    let next = signer("idp-2");
    let next_jwks = write_jwks(&app, &next);
    let updated = app.cli_json(&[
        "client", "update", &id, "--jwks", &next_jwks, "--format", "json",
    ]);
    assert_eq!(updated["jwks"]["keys"][0]["kid"], "idp-2");
    let (status, _) = grant(&sign(&idp, &fresh()));
    assert_eq!(status, 400, "the replaced key still signs");
    let (status, body) = grant(&sign(&next, &fresh()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.events("ClientKeysChanged").len(), 1);
}

#[test]
fn private_key_jwt_authenticates_at_every_endpoint_once_per_assertion() {
    let app = spawn_app_with(&[]);
    let key = signer("client-key");
    let jwks = write_jwks(&app, &key);
    let v = app.cli_json(&[
        "client",
        "create",
        "--name",
        "signed",
        "--scope",
        "read",
        "--can-introspect",
        "--token-endpoint-auth-method",
        "private_key_jwt",
        "--jwks",
        &jwks,
        "--format",
        "json",
    ]);
    assert!(v.get("client_secret").is_none(), "{v}");
    assert_eq!(v["token_endpoint_auth_method"], "private_key_jwt");
    let id = v["client_id"].as_str().unwrap().to_owned();
    let assertion = |aud: &str| {
        sign(
            &key,
            &with(
                claims(&app, &id, &id),
                "aud",
                format!("{}{aud}", app.base).into(),
            ),
        )
    };
    let with_assertion = |path: &str, a: &str, extra: &[(&str, &str)]| {
        let mut form = vec![
            ("client_assertion_type", CLIENT_ASSERTION),
            ("client_assertion", a),
        ];
        form.extend_from_slice(extra);
        app.post_form(path, None, &form)
    };
    let first = assertion("/token");
    let (status, body) = with_assertion("/token", &first, &[("grant_type", "client_credentials")]);
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    // Replayed: refused.
    let (status, body) = with_assertion("/token", &first, &[("grant_type", "client_credentials")]);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // At the introspection and revocation endpoints, with their own URL as audience.
    let (status, body) = with_assertion(
        "/introspect",
        &assertion("/introspect"),
        &[("token", &token)],
    );
    assert_eq!(
        (status, body["active"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let (status, _) = with_assertion("/revoke", &assertion("/revoke"), &[("token", &token)]);
    assert_eq!(status, 200);
    let (status, body) = with_assertion("/introspect", &assertion(""), &[("token", &token)]);
    assert_eq!((status, body["active"].as_bool()), (200, Some(false)));
    // Every bad assertion: 401 invalid_client.
    let base = || {
        with(
            claims(&app, &id, &id),
            "aud",
            format!("{}/token", app.base).into(),
        )
    };
    let mut bad: Vec<(&str, String)> = vec![
        (
            "expired",
            sign(&key, &with(base(), "exp", (now() - 120).into())),
        ),
        (
            "wrong audience",
            sign(&key, &with(base(), "aud", "https://elsewhere".into())),
        ),
        (
            "iss is not the client",
            sign(&key, &with(base(), "iss", "someone-else".into())),
        ),
        ("other key", sign(&signer("client-key"), &base())),
    ];
    for f in forged(&key, &base()) {
        bad.push(("forged", f));
    }
    for (why, a) in &bad {
        let (status, body) = with_assertion("/token", a, &[("grant_type", "client_credentials")]);
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{why}: {body}"
        );
    }
    let (status, body) = app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:wrong"),
            ("client_assertion", &assertion("/token")),
        ],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // A secret client cannot switch to assertions, nor the signed client to a secret.
    let (sid, ssecret) = app.create_client(&["--scope", "read"]);
    let (status, _) = app.post_form(
        "/token",
        Some((&sid, &ssecret)),
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", CLIENT_ASSERTION),
            ("client_assertion", &assertion("/token")),
        ],
    );
    assert_eq!(status, 400, "two methods at once");
    let (status, body) = app.post_form(
        "/token",
        Some((&id, "a-secret-it-never-had-a-secret-it-never-had")),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (_, meta) = app.get("/.well-known/oauth-authorization-server");
    let methods = meta["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("private_key_jwt"), "{meta}");
    assert!(meta["grant_types_supported"].to_string().contains(GRANT));
    assert!(!meta["token_endpoint_auth_signing_alg_values_supported"]
        .to_string()
        .contains("HS256"));
}

#[test]
fn a_registered_client_secret_method_is_enforced_and_keys_must_be_public() {
    let app = spawn_app_with(&[]);
    let (id, secret) = app.create_client(&[
        "--scope",
        "read",
        "--token-endpoint-auth-method",
        "client_secret_basic",
    ]);
    let (status, _) = app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    );
    assert_eq!(status, 401, "client_secret_post refused for a basic client");
    app.token(&id, &secret, None);
    let private = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "secret"}]});
    let path = app.data_dir().join("private.json");
    std::fs::write(&path, private.to_string()).unwrap();
    let out = app.cli(&[
        "client",
        "create",
        "--name",
        "x",
        "--token-endpoint-auth-method",
        "private_key_jwt",
        "--jwks",
        &format!("@{}", path.display()),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("private member"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 key whose `x` lost its leading zero byte (Authlib exports one key in about 128 so)
/// would name another point, and every assertion signed with it would fail to verify; it is
/// refused at registration, by name.
#[test]
fn a_key_with_a_short_ec_coordinate_is_refused_at_registration() {
    let app = spawn_app_with(&[]);
    let mut jwks = signer("short").jwks;
    let x = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    jwks["keys"][0]["x"] = URL_SAFE_NO_PAD.encode(&x[1..]).into();
    let path = app.data_dir().join("short.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let out = app.cli(&[
        "client",
        "create",
        "--name",
        "partner",
        "--grant-type",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "--jwks",
        &format!("@{}", path.display()),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("key short: its x is 31 bytes"), "{err}");
}
