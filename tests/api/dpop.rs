//! DPoP (RFC 9449) and resource indicators (RFC 8707) against the real server: bound tokens,
//! every way a proof can be wrong, replay across a restart, server nonces, bound refresh
//! tokens of public clients, and `aud` from the `resource` parameter.

use crate::helpers::{agent, spawn_app, spawn_app_with, TestApp};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::dpop_key::ath;
pub use crate::dpop_key::DpopKey;

impl DpopKey {
    /// A proof of `htm` `htu` now, with extra claims.
    pub fn proof_with(&self, htm: &str, htu: &str, extra: Value) -> String {
        let mut claims = json!({
            "jti": uuid::Uuid::now_v7().to_string(), "htm": htm, "htu": htu, "iat": now(),
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        self.sign("dpop+jwt", &claims)
    }

    pub fn proof(&self, htm: &str, htu: &str) -> String {
        self.proof_with(htm, htu, json!({}))
    }

    /// A proof for presenting `token` at `htu`.
    pub fn proof_for(&self, htm: &str, htu: &str, token: &str) -> String {
        self.proof_with(htm, htu, json!({ "ath": ath(token) }))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An answer: status, JSON body and headers by lower-case name.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn read(mut res: ureq::http::Response<ureq::Body>) -> Answer {
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let status = res.status().as_u16();
    let text = res.body_mut().read_to_string().unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    }
}

/// POSTs a form with Basic credentials (when given) and extra headers.
pub fn post(
    app: &TestApp,
    path: &str,
    basic: Option<(&str, &str)>,
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
) -> Answer {
    let mut req = agent().post(&format!("{}{path}", app.base));
    if let Some((id, secret)) = basic {
        let cred = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        req = req.header("Authorization", &format!("Basic {cred}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.send_form(form.iter().copied()).unwrap())
}

/// GETs with headers.
pub fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = agent().get(&format!("{}{path}", app.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.call().unwrap())
}

fn bound_token(app: &TestApp, id: &str, secret: &str, key: &DpopKey) -> String {
    let htu = format!("{}/token", app.base);
    let a = post(
        app,
        "/token",
        Some((id, secret)),
        &[("DPoP", &key.proof("POST", &htu))],
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["token_type"], "DPoP");
    a.body["access_token"].as_str().unwrap().to_owned()
}

fn whoami(app: &TestApp, token: &str, proof: Option<&str>, scheme: &str) -> Answer {
    let auth = format!("{scheme} {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(p) = proof {
        headers.push(("DPoP", p));
    }
    get(app, "/api/whoami", &headers)
}

#[test]
fn a_dpop_bound_token_works_only_with_a_fresh_proof_by_its_key() {
    let app = spawn_app();
    for format in ["jwt", "opaque"] {
        let (id, secret) = app.create_client(&["--scope", "read", "--token-format", format]);
        let key = DpopKey::new();
        let token = bound_token(&app, &id, &secret, &key);
        let at = format!("{}/api/whoami", app.base);

        // Bound: introspection and the JWT name the key.
        let i = app.introspect(&id, &secret, &token);
        assert_eq!(i["active"], true);
        assert_eq!(i["token_type"], "DPoP");
        assert_eq!(i["cnf"]["jkt"], key.thumbprint());
        if format == "jwt" {
            let claims: Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(token.split('.').nth(1).unwrap())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(claims["cnf"]["jkt"], key.thumbprint());
        }

        let good = key.proof_for("GET", &at, &token);
        let a = whoami(&app, &token, Some(&good), "DPoP");
        assert_eq!(a.status, 200, "{}", a.body);

        // The same proof again: its jti was recorded.
        let a = whoami(&app, &token, Some(&good), "DPoP");
        assert_eq!(a.status, 401);
        assert_eq!(a.body["error"], "invalid_dpop_proof", "{}", a.body);
        assert!(a.header("www-authenticate").unwrap().starts_with("DPoP "));

        let refused = |proof: Option<String>, scheme: &str, what: &str| {
            let a = whoami(&app, &token, proof.as_deref(), scheme);
            assert_eq!(a.status, 401, "{what}: {}", a.body);
            assert!(
                a.body["error"] == "invalid_dpop_proof" || a.body["error"] == "invalid_token",
                "{what}: {}",
                a.body
            );
        };
        refused(None, "Bearer", "as a bearer token");
        refused(None, "DPoP", "without a proof");
        refused(
            Some(DpopKey::new().proof_for("GET", &at, &token)),
            "DPoP",
            "another key",
        );
        refused(
            Some(key.proof_for("POST", &at, &token)),
            "DPoP",
            "wrong htm",
        );
        refused(
            Some(key.proof_for("GET", &format!("{}/userinfo", app.base), &token)),
            "DPoP",
            "wrong htu",
        );
        refused(
            Some(key.proof_with("GET", &at, json!({"ath": ath(&token), "iat": now() - 120}))),
            "DPoP",
            "stale iat",
        );
        refused(Some(key.proof("GET", &at)), "DPoP", "no ath");
        refused(
            Some(key.proof_with("GET", &at, json!({"ath": ath("another")}))),
            "DPoP",
            "wrong ath",
        );
    }
    // A bearer token presented with the DPoP scheme is refused too.
    let (id, secret) = app.create_client(&["--scope", "read"]);
    let plain = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = format!("{}/api/whoami", app.base);
    let a = whoami(
        &app,
        &plain,
        Some(&DpopKey::new().proof_for("GET", &at, &plain)),
        "DPoP",
    );
    assert_eq!(a.status, 401);
    assert_eq!(whoami(&app, &plain, None, "Bearer").status, 200);
}

#[test]
fn a_proof_used_before_a_restart_is_still_refused_after_it() {
    let mut app = spawn_app();
    let (id, secret) = app.create_client(&["--scope", "read"]);
    let key = DpopKey::new();
    let htu = format!("{}/token", app.base);
    let proof = key.proof("POST", &htu);
    let form = [("grant_type", "client_credentials")];
    let a = post(
        &app,
        "/token",
        Some((&id, &secret)),
        &[("DPoP", &proof)],
        &form,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    app.stop();
    app.start();
    // A restart keeps the address, so only the jti's record can refuse it.
    let a = post(
        &app,
        "/token",
        Some((&id, &secret)),
        &[("DPoP", &proof)],
        &form,
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"], "invalid_dpop_proof");
    assert_eq!(app.events("DpopProofAccepted").len(), 1);
}

#[test]
fn bad_proofs_at_the_token_endpoint_are_refused_with_invalid_dpop_proof() {
    let app = spawn_app();
    let (id, secret) = app.create_client(&["--scope", "read"]);
    let key = DpopKey::new();
    let htu = format!("{}/token", app.base);
    let form = [("grant_type", "client_credentials")];
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.typ = Some("dpop+jwt".into());
    let symmetric = jsonwebtoken::encode(
        &hs,
        &json!({"jti": "x", "htm": "POST", "htu": htu, "iat": now()}),
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    for (proof, what) in [
        (key.proof("GET", &htu), "wrong htm"),
        (
            key.proof("POST", &format!("{}/revoke", app.base)),
            "wrong htu",
        ),
        (
            key.proof_with("POST", &htu, json!({"iat": now() - 300})),
            "stale",
        ),
        (
            key.proof_with("POST", &htu, json!({"iat": now() + 300})),
            "future",
        ),
        (symmetric, "HS256"),
        ("not-a-jwt".to_owned(), "garbage"),
    ] {
        let a = post(
            &app,
            "/token",
            Some((&id, &secret)),
            &[("DPoP", &proof)],
            &form,
        );
        assert_eq!(a.status, 400, "{what}: {}", a.body);
        assert_eq!(a.body["error"], "invalid_dpop_proof", "{what}");
    }
    // A client that must bind its tokens gets none without a proof.
    let (strict, strict_secret) = app.create_client(&["--dpop-bound"]);
    let a = post(&app, "/token", Some((&strict, &strict_secret)), &[], &form);
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"], "invalid_dpop_proof");
    bound_token(&app, &strict, &strict_secret, &key);
}

#[test]
fn a_server_nonce_makes_the_client_retry_with_it() {
    let app = spawn_app_with(&["--dpop-nonce"]);
    let (id, secret) = app.create_client(&["--scope", "read"]);
    let key = DpopKey::new();
    let htu = format!("{}/token", app.base);
    let form = [("grant_type", "client_credentials")];
    let a = post(
        &app,
        "/token",
        Some((&id, &secret)),
        &[("DPoP", &key.proof("POST", &htu))],
        &form,
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"], "use_dpop_nonce");
    let nonce = a
        .header("dpop-nonce")
        .expect("a DPoP-Nonce header")
        .to_owned();
    let wrong = key.proof_with("POST", &htu, json!({"nonce": "not-the-nonce"}));
    let a = post(
        &app,
        "/token",
        Some((&id, &secret)),
        &[("DPoP", &wrong)],
        &form,
    );
    assert_eq!(a.body["error"], "use_dpop_nonce");
    let with = key.proof_with("POST", &htu, json!({ "nonce": nonce }));
    let a = post(
        &app,
        "/token",
        Some((&id, &secret)),
        &[("DPoP", &with)],
        &form,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("dpop-nonce").is_some());
    // The resource asks for the nonce too.
    let token = a.body["access_token"].as_str().unwrap().to_owned();
    let at = format!("{}/api/whoami", app.base);
    let r = whoami(
        &app,
        &token,
        Some(&key.proof_for("GET", &at, &token)),
        "DPoP",
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"], "use_dpop_nonce");
    let nonce = r.header("dpop-nonce").unwrap().to_owned();
    let proof = key.proof_with("GET", &at, json!({"ath": ath(&token), "nonce": nonce}));
    assert_eq!(whoami(&app, &token, Some(&proof), "DPoP").status, 200);
}

#[test]
fn a_public_clients_refresh_tokens_are_bound_to_its_dpop_key() {
    let app = spawn_app();
    app.create_user("alice", "correct horse battery");
    let v = app.cli_json(&[
        "client",
        "create",
        "--name",
        "cli app",
        "--public",
        "--grant-type",
        "password",
        "--grant-type",
        "refresh_token",
        "--scope",
        "read",
        "--format",
        "json",
    ]);
    let id = v["client_id"].as_str().unwrap();
    let key = DpopKey::new();
    let htu = format!("{}/token", app.base);
    let a = post(
        &app,
        "/token",
        None,
        &[("DPoP", &key.proof("POST", &htu))],
        &[
            ("grant_type", "password"),
            ("client_id", id),
            ("username", "alice"),
            ("password", "correct horse battery"),
        ],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let refresh = a.body["refresh_token"].as_str().unwrap().to_owned();
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", id),
        ("refresh_token", refresh.as_str()),
    ];
    for (proof, what) in [
        (None, "without a proof"),
        (Some(DpopKey::new().proof("POST", &htu)), "another key"),
    ] {
        let headers: Vec<(&str, &str)> = proof.iter().map(|p| ("DPoP", p.as_str())).collect();
        let a = post(&app, "/token", None, &headers, &form);
        assert_eq!(a.status, 400, "{what}: {}", a.body);
        assert_eq!(a.body["error"], "invalid_grant", "{what}");
    }
    let a = post(
        &app,
        "/token",
        None,
        &[("DPoP", &key.proof("POST", &htu))],
        &form,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["token_type"], "DPoP");
}

#[test]
fn the_resource_parameter_sets_the_audience_and_others_are_invalid_target() {
    let app = spawn_app();
    let (id, secret) = app.create_client(&[
        "--scope",
        "read",
        "--resource",
        "https://api.example.com/",
        "--resource",
        "https://files.example.com/",
    ]);
    let token = |resources: &[&str]| {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(resources.iter().map(|r| ("resource", *r)));
        app.post_form("/token", Some((&id, &secret)), &form)
    };
    let (status, body) = token(&["https://api.example.com/"]);
    assert_eq!(status, 200, "{body}");
    let jwt = body["access_token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], "https://api.example.com/");
    assert_eq!(
        app.introspect(&id, &secret, jwt)["aud"],
        "https://api.example.com/"
    );
    let (status, body) = token(&["https://api.example.com/", "https://files.example.com/"]);
    assert_eq!(status, 200, "{body}");
    let jwt = body["access_token"].as_str().unwrap();
    assert_eq!(
        app.introspect(&id, &secret, jwt)["aud"],
        json!(["https://api.example.com/", "https://files.example.com/"])
    );
    for bad in [
        "https://evil.example.com/",
        "not a uri",
        "https://api.example.com/#x",
    ] {
        let (status, body) = token(&[bad]);
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_target", "{bad}");
    }
    // Without a resource, the token is for this server.
    let (_, body) = token(&[]);
    let jwt = body["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(&id, &secret, jwt)["aud"], app.base.as_str());
}

#[test]
fn the_extractor_refuses_bound_tokens_without_a_good_proof_in_both_modes() {
    let app = spawn_app();
    let (rs_id, rs_secret) = app.create_client(&["--can-introspect"]);
    let (id, secret) = app.create_client(&["--scope", "read"]);
    let jwks = crate::resource::example(&["--issuer", &app.base, "--mode", "jwks"]);
    let introspection = crate::resource::example(&[
        "--issuer",
        &app.base,
        "--mode",
        "introspection",
        "--client-id",
        &rs_id,
        "--client-secret",
        &rs_secret,
    ]);
    for api in [&jwks, &introspection] {
        let key = DpopKey::new();
        let token = bound_token(&app, &id, &secret, &key);
        let url = format!("{}/notes", api.base);
        let call = |scheme: &str, proof: Option<&str>| {
            let auth = format!("{scheme} {token}");
            let mut req = agent().get(&url).header("Authorization", &auth);
            if let Some(p) = proof {
                req = req.header("DPoP", p);
            }
            read(req.call().unwrap())
        };
        let good = key.proof_for("GET", &url, &token);
        let a = call("DPoP", Some(&good));
        assert_eq!(a.status, 200, "{}", a.body);
        let replay = call("DPoP", Some(&good));
        assert_eq!(replay.status, 401, "replayed: {}", replay.body);
        assert_eq!(replay.body["error"], "invalid_dpop_proof");
        for (scheme, proof, what) in [
            ("Bearer", None, "as a bearer token"),
            ("DPoP", None, "without a proof"),
            (
                "DPoP",
                Some(DpopKey::new().proof_for("GET", &url, &token)),
                "another key",
            ),
            (
                "DPoP",
                Some(key.proof_for("POST", &url, &token)),
                "wrong htm",
            ),
            (
                "DPoP",
                Some(key.proof_for("GET", &format!("{}/hello", api.base), &token)),
                "wrong htu",
            ),
            (
                "DPoP",
                Some(key.proof_with("GET", &url, json!({"ath": ath(&token), "iat": now() - 120}))),
                "stale iat",
            ),
        ] {
            let a = call(scheme, proof.as_deref());
            assert_eq!(a.status, 401, "{what}: {}", a.body);
        }
    }
}

#[test]
fn one_proof_sent_many_times_at_once_is_accepted_once() {
    let app = spawn_app();
    let (id, secret) = app.create_client(&["--scope", "read"]);
    let key = DpopKey::new();
    let proof = key.proof("POST", &format!("{}/token", app.base));
    let answers: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    post(
                        &app,
                        "/token",
                        Some((&id, &secret)),
                        &[("DPoP", &proof)],
                        &[("grant_type", "client_credentials")],
                    )
                    .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        answers.iter().filter(|s| **s == 200).count(),
        1,
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|s| *s == 200 || *s == 400),
        "{answers:?}"
    );
    assert_eq!(app.events("DpopProofAccepted").len(), 1);
}
