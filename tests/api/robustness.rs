//! No input makes the server answer 5xx: a few hundred malformed requests, from a fixed seed.

use crate::helpers::spawn_app;
use base64::Engine;

/// xorshift64*: deterministic, so a failure replays the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, max: u64) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn text(&mut self, max: u64) -> String {
        const PIECES: [&str; 16] = [
            "grant_type",
            "client_credentials",
            "token",
            "scope",
            "client_id",
            "client_secret",
            "=",
            "&",
            "%",
            "%ZZ",
            "%FF%FE",
            "+",
            " ",
            "\"",
            "read",
            "eyJhbGciOiJub25lIn0.e30.",
        ];
        const MORE: [&str; 10] = [
            "response_type=code",
            "client_id=web",
            "redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb",
            "code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method=S256",
            "request=",
            "csrf_token=",
            "decision=approve",
            "grant_type=refresh_token&refresh_token=",
            "grant_type=authorization_code&code=",
        ];
        if self.below(2) == 0 {
            let n = self.below(max + 1);
            return (0..n).map(|_| format!("{}&", self.pick(&MORE))).collect();
        }
        let n = self.below(max + 1);
        (0..n).map(|_| self.pick(&PIECES)).collect()
    }
}

#[test]
fn no_malformed_request_gets_a_server_error() {
    let app = spawn_app();
    let (id, secret) = app.create_client(&["--scope", "read", "--token-format", "opaque"]);
    let token = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = app.admin_token();
    app.cli_json(&[
        "client",
        "create",
        "--name",
        "web",
        "--id",
        "web",
        "--public",
        "--redirect-uri",
        "http://127.0.0.1/cb",
        "--grant-type",
        "authorization_code",
        "--format",
        "json",
    ]);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut answered = 0;
    for i in 0..600 {
        let path = rng.pick(&[
            "/token",
            "/introspect",
            "/revoke",
            "/admin/api/clients",
            "/admin/api/audit",
            "/admin/api/clients/x%FF",
            "/admin/api/users",
            "/authorize",
            "/consent",
            "/login",
            "/logout",
            "/account",
            "/account/revoke",
            "/tokeninfo",
            "/api/whoami",
            "/admin/api/keys",
            "/admin/api/keys/rotate",
        ]);
        let auth = match rng.below(6) {
            0 => None,
            1 => Some(format!("Basic {}", b64.encode(rng.bytes(40)))),
            2 => Some(format!("Basic {}", b64.encode(format!("{id}:{secret}")))),
            3 => Some(format!("Bearer {admin}")),
            4 => Some(format!("Bearer {token}")),
            _ => Some(format!(
                "{} {}",
                rng.pick(&["Basic", "Bearer", "Digest", ""]),
                rng.text(6)
            )),
        };
        let content_type = rng.pick(&[
            "application/x-www-form-urlencoded",
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded; charset=utf-8",
        ]);
        let body: Vec<u8> = match rng.below(6) {
            4 => format!(
                "grant_type=client_credentials&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer&client_assertion={}.{}.{}&access_token={}",
                b64.encode(rng.text(4)),
                b64.encode(rng.text(4)),
                rng.text(2),
                rng.text(2)
            )
            .into_bytes(),
            5 => format!(
                "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion={}.{}.{}",
                b64.encode(r#"{"alg":"ES256","kid":"x"}"#),
                b64.encode(rng.text(4)),
                rng.text(2)
            )
            .into_bytes(),
            0 => rng.bytes(300),
            1 => rng.text(12).into_bytes(),
            2 => format!(
                r#"{{"name":"{}","redirect_uris":["{}"]}}"#,
                rng.text(3),
                rng.text(3)
            )
            .into_bytes(),
            _ => format!(
                "grant_type=client_credentials&scope={}&token={}",
                rng.text(3),
                rng.text(3)
            )
            .into_bytes(),
        };
        let query = rng.text(8);
        let url = format!("{}{path}?{query}", app.base);
        let method = rng.pick(&["GET", "POST", "PATCH", "DELETE"]);
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(url.replace(' ', "%20").replace('"', "%22"))
            .header("Content-Type", content_type);
        if let Some(a) = &auth {
            req = req.header("Authorization", a.as_str());
        }
        let req = match req.body(body.clone()) {
            Ok(r) => r,
            Err(_) => continue,
        };
        let res = app.agent.run(req);
        let Ok(res) = res else { continue };
        let status = res.status().as_u16();
        answered += 1;
        assert!(
            status < 500,
            "case {i}: {method} {path}?{query} auth={auth:?} type={content_type} body={:?} -> {status}",
            String::from_utf8_lossy(&body)
        );
    }
    assert!(
        answered > 500,
        "only {answered} of 600 requests were answered"
    );
    // The server is still healthy, and the token still works.
    assert_eq!(app.get("/healthz").0, 200);
    assert_eq!(app.introspect(&id, &secret, &token)["active"], true);
}

/// Whether a description keeps to RFC 6749 §5.2: %x20-21 / %x23-5B / %x5D-7E.
fn in_rfc_charset(d: &str) -> bool {
    d.bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

#[test]
fn every_error_description_keeps_to_the_rfc_6749_character_set_whatever_the_input() {
    let app = spawn_app();
    let (id, secret) = app.create_client(&[
        "--redirect-uri",
        "http://127.0.0.1/cb",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "client_credentials",
        "--grant-type",
        "refresh_token",
    ]);
    let hostile = [
        "\"\\\r\n<script>",
        "\u{1}\u{7f}\u{e9}\u{202e}",
        "x\", error=\"injected",
        "%0d%0aSet-Cookie: a=b",
    ];
    let checked = std::cell::Cell::new(0);
    let check = |what: &str, status: u16, body: &serde_json::Value| {
        assert!(status < 500, "{what}: {status} {body}");
        if let Some(d) = body.get("error_description").and_then(|d| d.as_str()) {
            assert!(in_rfc_charset(d), "{what}: {d:?}");
            checked.set(checked.get() + 1);
        }
    };
    let token_params = [
        "grant_type",
        "scope",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
        "username",
        "password",
        "assertion",
        "client_assertion",
        "client_assertion_type",
        "client_id",
    ];
    for h in hostile {
        for p in token_params {
            for grant in ["client_credentials", "authorization_code", "refresh_token"] {
                let mut form = vec![("grant_type", grant)];
                form.retain(|(k, _)| *k != p);
                form.push((p, h));
                let (status, body) = app.post_form("/token", Some((&id, &secret)), &form);
                check(&format!("/token {grant} {p}"), status, &body);
            }
        }
        for path in ["/introspect", "/revoke"] {
            for p in ["token", "token_type_hint"] {
                let form = [("token", "t"), (p, h)];
                let (status, body) = app.post_form(path, Some((&id, &secret)), &form);
                check(&format!("{path} {p}"), status, &body);
            }
            // And as the client's own id and secret.
            let (status, body) = app.post_form(path, Some((h, h)), &[("token", "t")]);
            check(&format!("{path} credentials"), status, &body);
        }
        let encoded: String = form_urlencoded::byte_serialize(h.as_bytes()).collect();
        let (status, body) = app.get(&format!("/no/{encoded}"));
        check("unknown path", status, &body);
        // The authorization endpoint's errors travel in the redirect.
        let no_redirects: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        for p in ["scope", "response_type", "code_challenge_method", "prompt"] {
            let mut query = vec![
                ("response_type", "code"),
                ("client_id", id.as_str()),
                ("redirect_uri", "http://127.0.0.1/cb"),
                ("state", h),
            ];
            query.retain(|(k, _)| *k != p);
            query.push((p, h));
            let q: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish();
            let res = no_redirects
                .get(&format!("{}/authorize?{q}", app.base))
                .call()
                .unwrap();
            assert!(res.status().as_u16() < 500, "/authorize {p}");
            if let Some(location) = res.headers().get("location") {
                let url = url::Url::parse(&app.base)
                    .unwrap()
                    .join(location.to_str().unwrap())
                    .unwrap();
                if let Some((_, d)) = url.query_pairs().find(|(k, _)| k == "error_description") {
                    assert!(in_rfc_charset(&d), "/authorize {p}: {d:?}");
                    checked.set(checked.get() + 1);
                }
            }
        }
        // Bearer tokens at the resource endpoints.
        let (status, body) = app.get(&format!("/tokeninfo?access_token={encoded}"));
        check("/tokeninfo", status, &body);
        let (status, body) = get_bearer(&app, "/api/whoami", &encoded);
        check("/api/whoami", status, &body);
        // Every field of the admin API's client registration, and a path id.
        let admin = app.admin_token();
        for field in [
            "name",
            "client_id",
            "client_secret",
            "redirect_uris",
            "grant_types",
            "scopes",
            "token_format",
            "token_endpoint_auth_method",
            "signing_alg",
            "redirect_uri_matching",
        ] {
            let value = if field.ends_with('s') && field != "redirect_uri_matching" {
                serde_json::json!([h])
            } else {
                serde_json::json!(h)
            };
            let mut doc =
                serde_json::json!({ "name": "x", "redirect_uris": ["http://127.0.0.1/cb"] });
            doc[field] = value;
            let res = app
                .agent
                .post(&format!("{}/admin/api/clients", app.base))
                .header("Authorization", &format!("Bearer {admin}"))
                .send_json(&doc)
                .unwrap();
            let status = res.status().as_u16();
            let body: serde_json::Value = res.into_body().read_json().unwrap_or_default();
            check(&format!("POST /admin/api/clients {field}"), status, &body);
        }
        let (status, body) = get_bearer(&app, &format!("/admin/api/clients/{encoded}"), &admin);
        check("GET /admin/api/clients/{id}", status, &body);
        // The admin API's bearer challenge quotes its description in a header.
        let res = app
            .agent
            .get(&format!("{}/admin/api/clients", app.base))
            .header("Authorization", &format!("Bearer {}", encoded))
            .call()
            .unwrap();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(
            !challenge.contains("injected") && in_rfc_charset(&challenge.replace('"', "")),
            "{challenge}"
        );
    }
    assert!(
        checked.get() > 100,
        "only {} descriptions were seen",
        checked.get()
    );
}

/// GETs `path` with a bearer token; answers the status and the JSON body (null if none).
fn get_bearer(app: &crate::helpers::TestApp, path: &str, token: &str) -> (u16, serde_json::Value) {
    let res = app
        .agent
        .get(&format!("{}{path}", app.base))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    let status = res.status().as_u16();
    (status, res.into_body().read_json().unwrap_or_default())
}

#[test]
fn every_answer_carries_the_security_headers_and_token_and_form_answers_are_not_stored() {
    let app = spawn_app();
    let (id, secret) = app.create_client(&[]);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let no_redirects: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    /// Method, path, form, and whether the answer must not be stored.
    type Answer<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], bool);
    let answers: [Answer; 16] = [
        (
            "POST",
            "/token",
            &[("grant_type", "client_credentials")],
            true,
        ),
        ("POST", "/token", &[("grant_type", "nope")], true),
        ("POST", "/introspect", &[("token", "x")], true),
        ("POST", "/revoke", &[("token", "x")], true),
        ("GET", "/login", &[], true),
        ("GET", "/account", &[], true),
        ("GET", "/consent", &[], true),
        (
            "GET",
            "/authorize?client_id=nobody&response_type=code",
            &[],
            true,
        ),
        ("GET", "/admin", &[], true),
        ("GET", "/admin/login", &[], true),
        ("GET", "/tokeninfo?access_token=x", &[], true),
        ("GET", "/jwks", &[], false),
        ("GET", "/.well-known/oauth-authorization-server", &[], false),
        ("GET", "/healthz", &[], false),
        ("GET", "/admin/api/clients", &[], false),
        ("GET", "/no/such/page", &[], false),
    ];
    for (method, path, form, no_store) in answers {
        let url = format!("{}{path}", app.base);
        let res = if method == "POST" {
            no_redirects
                .post(&url)
                .header("Authorization", &basic)
                .send_form(form.iter().copied())
        } else {
            no_redirects.get(&url).call()
        }
        .unwrap();
        let h = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let what = format!("{method} {path} ({})", res.status());
        assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(h("referrer-policy"), "no-referrer", "{what}");
        assert!(
            h("content-security-policy").contains("frame-ancestors 'none'"),
            "{what}"
        );
        assert_eq!(h("x-frame-options"), "DENY", "{what}");
        if no_store {
            assert!(
                h("cache-control").contains("no-store"),
                "{what}: {}",
                h("cache-control")
            );
        }
    }
}

#[test]
fn rate_limits_answer_429_with_retry_after_per_client_and_per_address() {
    let app = crate::helpers::spawn_app_with(&[
        "--rate-limit-token",
        "2",
        "--rate-limit-introspect",
        "3",
        "--rate-limit-pages",
        "4",
        "--test-clock",
    ]);
    let (id, secret) = app.create_client(&["--can-introspect"]);
    let (other, other_secret) = app.create_client(&[]);
    let form = [("grant_type", "client_credentials")];
    // A burst of twice the rate, then 429 with Retry-After and an RFC 6749 error body.
    for _ in 0..4 {
        let (status, body) = app.post_form("/token", Some((&id, &secret)), &form);
        assert_eq!(status, 200, "{body}");
    }
    let (status, body, _, _) = app.post_form_full("/token", Some((&id, &secret)), &form);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "invalid_request");
    let retry = raw_post_retry_after(&app, &id, &secret);
    assert!(retry.is_some_and(|s| s >= 1), "Retry-After: {retry:?}");
    // Another client has its own allowance.
    assert_eq!(
        app.post_form("/token", Some((&other, &other_secret)), &form)
            .0,
        200
    );
    // Time passes: the client may ask again.
    app.advance_clock(1000);
    let (status, body) = app.post_form("/token", Some((&id, &secret)), &form);
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    // Introspection: its own limit per client.
    let statuses: Vec<u16> = (0..8)
        .map(|_| {
            app.post_form("/introspect", Some((&id, &secret)), &[("token", &token)])
                .0
        })
        .collect();
    assert_eq!(statuses[..6], [200; 6], "{statuses:?}");
    assert_eq!(statuses[7], 429, "{statuses:?}");
    // Pages, per source address: a burst of half the per-minute rate.
    let agent = crate::helpers::agent();
    let page = |xff: Option<&str>| {
        let mut req = agent.get(&format!("{}/login", app.base));
        if let Some(x) = xff {
            req = req.header("X-Forwarded-For", x);
        }
        let res = req.call().unwrap();
        (
            res.status().as_u16(),
            res.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned()),
        )
    };
    assert_eq!(page(None).0, 200);
    assert_eq!(page(None).0, 200);
    let (status, retry) = page(None);
    assert_eq!(status, 429);
    assert!(retry.is_some());
    // X-Forwarded-For from a peer that is not a trusted proxy changes nothing.
    assert_eq!(page(Some("203.0.113.5")).0, 429);
}

/// The Retry-After of a refused token request.
fn raw_post_retry_after(app: &crate::helpers::TestApp, id: &str, secret: &str) -> Option<u64> {
    let cred = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let res = crate::helpers::agent()
        .post(&format!("{}/token", app.base))
        .header("Authorization", &format!("Basic {cred}"))
        .send_form([("grant_type", "client_credentials")])
        .unwrap();
    assert_eq!(res.status(), 429);
    res.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

#[test]
fn a_trusted_proxy_is_believed_about_the_client_address_and_no_one_else_is() {
    let app = crate::helpers::spawn_app_with(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--rate-limit-pages",
        "4",
    ]);
    let agent = crate::helpers::agent();
    let page = |xff: &str| {
        agent
            .get(&format!("{}/login", app.base))
            .header("X-Forwarded-For", xff)
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    // Each forwarded address has its own allowance behind the proxy.
    assert_eq!(
        [
            page("203.0.113.5"),
            page("203.0.113.5"),
            page("203.0.113.5")
        ],
        [200, 200, 429]
    );
    assert_eq!(page("198.51.100.7, 127.0.0.1"), 200);
    // The audit trail records the forwarded address.
    let (id, secret) = app.create_client(&[]);
    let cred = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let res = agent
        .post(&format!("{}/token", app.base))
        .header("Authorization", &format!("Basic {cred}"))
        .header("X-Forwarded-For", "192.0.2.44")
        .send_form([("grant_type", "client_credentials")])
        .unwrap();
    assert_eq!(res.status(), 200);
    let issued = app.events("AccessTokenIssued");
    let ours = issued
        .iter()
        .find(|e| e["data"]["client_id"] == id.as_str())
        .unwrap();
    assert_eq!(ours["metadata"]["source_ip"], "192.0.2.44", "{ours}");
}

#[test]
fn pages_name_what_is_wrong_and_never_repeat_what_a_link_put_in_them() {
    let app = spawn_app();
    app.create_user("alice", "correct horse battery staple");
    let mut b = crate::web::Browser::new(&app);
    let marker = "ZQXJ-injected-words";
    let evil: String =
        form_urlencoded::byte_serialize(format!("{marker} <b>call +1-555</b>").as_bytes())
            .collect();
    // An unknown client: the page says so without repeating the client_id it was given.
    let r = b.get(&format!("/authorize?response_type=code&client_id={evil}"));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("client_id") && !r.body.contains(marker),
        "{}",
        r.body
    );
    // The account page's notice names a client only as registered.
    assert_eq!(
        b.sign_in("alice", "correct horse battery staple").status,
        303
    );
    let r = b.get(&format!("/account?revoked={evil}"));
    assert_eq!(r.status, 200);
    assert!(!r.body.contains(marker), "{}", r.body);
    // The token endpoint names a bad scope parameter, and does not echo it.
    let (id, secret) = app.create_client(&[]);
    let (status, body) = app.post_form(
        "/token",
        Some((&id, &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("scope", &format!("{marker}\"x")),
        ],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let d = body["error_description"].as_str().unwrap();
    assert!(d.contains("scope") && !d.contains(marker), "{d}");
}
