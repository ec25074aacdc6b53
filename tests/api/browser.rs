//! The pages in a real browser: headless Chromium driven over WebDriver (chromedriver). A user
//! signs in, approves, this test's own callback server on 127.0.0.1 receives the code, the test
//! redeems it with PKCE, introspects the token, then revokes the application from /account.
//! Another signs in to an OpenID Connect client, gets an id_token and logs out through the
//! end-session endpoint; the client's back-channel listener on 127.0.0.1 gets the logout token.
//! A TV (the `oauth2` crate's device flow) gets tokens once its user approved it in the
//! browser at /device (RFC 8628).
//!
//! Chromium and chromedriver come from Debian (`scripts/test.sh` installs them). Without them
//! this test fails with instructions; it never skips.
//!
//! Screenshots of the three pages go to `target/screenshots/`, and to `docs/img/` as well when
//! `AUTHLEDGER_SCREENSHOTS=docs/img` is set.

use crate::helpers::{spawn_app, TestApp};
use crate::oidc::{jwt_claims, setup, LogoutListener};
use crate::web::{CHALLENGE, VERIFIER};
use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn chromedriver() -> PathBuf {
    let candidates = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "chromedriver not found: install Debian's chromium and chromium-driver \
                 (`sudo apt-get install -y chromium chromium-driver`, or run scripts/test.sh, \
                 which does it)"
            )
        })
}

/// chromedriver as a child, killed (with its browsers) on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // chromedriver says on stdout when it listens; the rest of its output is drained so
        // that it never blocks on a full pipe.
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("started successfully") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        let driver = Self { child, port };
        ready
            .recv_timeout(Duration::from_secs(20))
            .expect("chromedriver did not start within 20 s");
        let agent = crate::helpers::agent();
        let mut res = agent
            .get(&format!("http://127.0.0.1:{port}/status"))
            .call()
            .expect("chromedriver answers /status once started");
        let status = res.body_mut().read_to_string().unwrap();
        assert!(status.contains("\"ready\":true"), "chromedriver: {status}");
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client's callback: answers a small page and hands over the request target.
fn callback_server() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let body =
                "<!doctype html><title>Demo App</title><p>Signed in; you can close this tab.</p>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            if target.starts_with("/callback") && tx.send(target).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../screenshots")];
    if let Ok(d) = std::env::var("AUTHLEDGER_SCREENSHOTS") {
        dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(d));
    }
    for d in dirs {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("{name}.png")), &png).unwrap();
    }
}

async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
}

async fn headless(driver: &Driver, size: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            format!("--window-size={size}"), "--force-device-scale-factor=1"
        ] }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .unwrap()
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Clicks something that loads a new page and waits until the new page has
/// replaced the old one: waiting for an element alone would find it on the
/// old page when both pages have it.
async fn navigate(c: &Client, css: &str) {
    c.execute("document.documentElement.dataset.leaving = '1'", vec![])
        .await
        .unwrap();
    click(c, css).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match c
            .wait()
            .at_most(left)
            .for_element(Locator::Css("html:not([data-leaving])"))
            .await
        {
            Ok(_) => return,
            // chromedriver aborts a lookup that a navigation overtakes; the next one sees the
            // page that navigation loaded.
            Err(e) if e.to_string().contains("aborted by navigation") && !left.is_zero() => {}
            Err(e) => panic!("clicking {css} loaded no new page: {e}"),
        }
    }
}

async fn fill(c: &Client, css: &str, text: &str) {
    let field = c.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn viewer_tour(app: &TestApp, driver: &Driver, client_id: &str) {
    let c = headless(driver, "1280,900").await;
    // Not signed in: sent to the sign-in page.
    c.goto(&format!("{}/admin", app.base)).await.unwrap();
    wait_for(&c, "input[name=client_secret]").await;
    assert!(c
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/admin/login"));
    // A wrong secret is refused.
    let cred: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(app.data_dir().join("admin.json")).unwrap())
            .unwrap();
    let admin_id = cred["client_id"].as_str().unwrap();
    fill(&c, "input[name=client_id]", admin_id).await;
    fill(&c, "input[name=client_secret]", "not-the-secret").await;
    navigate(&c, "button[type=submit]").await;
    wait_for(&c, "p.error").await;
    assert!(c
        .source()
        .await
        .unwrap()
        .contains("Wrong client id or secret"));
    // The admin credential signs in.
    fill(
        &c,
        "input[name=client_secret]",
        cred["client_secret"].as_str().unwrap(),
    )
    .await;
    navigate(&c, "button[type=submit]").await;
    wait_for(&c, "form.filters").await;
    let first = c.find(Locator::Css("details.event")).await.unwrap();
    let newest: u64 = first
        .attr("data-position")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    let positions = c.find_all(Locator::Css("details.event")).await.unwrap();
    assert_eq!(positions.len(), 50, "a full page");
    let last: u64 = positions[49]
        .attr("data-position")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(newest - last, 49, "newest first, consecutive");
    // Expanding an event shows its full JSON.
    let pre = first.find(Locator::Css("pre")).await.unwrap();
    assert!(!pre.is_displayed().await.unwrap());
    first
        .find(Locator::Css("summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(pre.is_displayed().await.unwrap());
    let json: serde_json::Value = serde_json::from_str(&pre.text().await.unwrap()).unwrap();
    assert_eq!(json["position"].as_u64(), Some(newest));
    screenshot(&c, "admin-events").await;
    // The next page continues where this one ended.
    navigate(&c, "a[rel=next]").await;
    wait_for(&c, "details.event").await;
    let next: u64 = c
        .find(Locator::Css("details.event"))
        .await
        .unwrap()
        .attr("data-position")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(next, last - 1);
    // Filters: one client's revocations.
    c.goto(&format!("{}/admin", app.base)).await.unwrap();
    wait_for(&c, "form.filters").await;
    fill(&c, "input[name=client]", client_id).await;
    fill(&c, "input[name=type]", "TokenRevoked").await;
    navigate(&c, "form.filters button").await;
    wait_for(&c, "details.event").await;
    let rows = c
        .find_all(Locator::Css("details.event summary b"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert_eq!(r.text().await.unwrap(), "TokenRevoked");
    }
    // The client's page: configuration and history.
    navigate(&c, "details.event summary a").await;
    wait_for(&c, "h2").await;
    let page = c.source().await.unwrap();
    assert!(page.contains("test client"), "the client name");
    screenshot(&c, "admin-client").await;
    let mut kinds = Vec::new();
    loop {
        for h in c
            .find_all(Locator::Css("details.event summary b"))
            .await
            .unwrap()
        {
            kinds.push(h.text().await.unwrap());
        }
        if c.find(Locator::Css("a[rel=next]")).await.is_err() {
            break;
        }
        navigate(&c, "a[rel=next]").await;
    }
    assert_eq!(kinds.len(), 64, "registration, 60 tokens, 3 revocations");
    assert_eq!(kinds.last().map(String::as_str), Some("ClientRegistered"));
    // Signing out ends the session.
    navigate(&c, "form.signout button").await;
    wait_for(&c, "input[name=client_secret]").await;
    c.goto(&format!("{}/admin", app.base)).await.unwrap();
    wait_for(&c, "input[name=client_secret]").await;
    c.close().await.unwrap();
}

async fn journey(
    app: &TestApp,
    driver: &Driver,
    callback_port: u16,
    codes: &mpsc::Receiver<String>,
) {
    let c = headless(driver, "900,760").await;
    let redirect = format!("http://127.0.0.1:{callback_port}/callback");
    let state = "state-<script>alert(1)</script>";
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", "demo")
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", "read profile")
        .append_pair("state", state)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .finish();
    c.goto(&format!("{}/authorize?{query}", app.base))
        .await
        .unwrap();

    // Login.
    wait_for(&c, "input[name=username]").await;
    assert!(c.current_url().await.unwrap().path().ends_with("/login"));
    c.find(Locator::Css("input[name=username]"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    c.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys("wonderland42")
        .await
        .unwrap();
    screenshot(&c, "login").await;
    click(&c, "button[type=submit]").await;

    // Consent.
    let approve = wait_for(&c, "button[value=approve]").await;
    let page = c.source().await.unwrap();
    assert!(page.contains("Demo App wants access"), "{page}");
    assert!(page.contains("Read your basic profile"));
    screenshot(&c, "consent").await;
    approve.click().await.unwrap();

    // The callback got the code and the state, unchanged.
    let target = codes
        .recv_timeout(Duration::from_secs(10))
        .expect("no callback");
    let url = url::Url::parse(&format!("http://127.0.0.1{target}")).unwrap();
    let param = |n: &str| {
        url.query_pairs()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("state").as_deref(), Some(state));
    assert_eq!(param("iss").as_deref(), Some(app.base.as_str()));
    let code = param("code").unwrap();
    let (status, tokens) = app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", "demo"),
            ("redirect_uri", &redirect),
            ("code_verifier", VERIFIER),
        ],
    );
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let (rs, rs_secret) = app.create_client(&["--can-introspect"]);
    let info = app.introspect(&rs, &rs_secret, access);
    assert_eq!(
        (info["active"].as_bool(), info["username"].as_str()),
        (Some(true), Some("alice"))
    );

    // The account page lists the app; revoking it ends the token.
    c.goto(&format!("{}/account", app.base)).await.unwrap();
    wait_for(&c, "button.danger").await;
    assert!(c.source().await.unwrap().contains("Demo App"));
    screenshot(&c, "account").await;
    click(&c, "button.danger").await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_url(&url::Url::parse(&format!("{}/account?revoked=demo", app.base)).unwrap())
        .await
        .unwrap();
    assert!(c
        .source()
        .await
        .unwrap()
        .contains("You have not authorized any application"));
    assert_eq!(app.introspect(&rs, &rs_secret, access)["active"], false);
    c.close().await.unwrap();
}

#[test]
fn a_user_signs_in_approves_and_revokes_in_a_real_browser() {
    let driver = Driver::start();
    let app = spawn_app();
    app.create_user("alice", "wonderland42");
    app.cli_json(&[
        "client",
        "create",
        "--name",
        "Demo App",
        "--id",
        "demo",
        "--public",
        "--redirect-uri",
        "http://127.0.0.1/callback",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--scope",
        "read profile",
        "--format",
        "json",
    ]);
    let (port, codes) = callback_server();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(journey(&app, &driver, port, &codes));
}

/// alice signs in to an OpenID Connect client, the test redeems the code for an id_token, and
/// the browser logs out through the end-session endpoint with that id_token as its hint.
async fn sign_in_and_out(
    app: &TestApp,
    driver: &Driver,
    callback_port: u16,
    codes: &mpsc::Receiver<String>,
    rp: &LogoutListener,
    (user, id, secret): (&str, &str, &str),
) {
    let c = headless(driver, "900,760").await;
    let redirect = format!("http://127.0.0.1:{callback_port}/callback");
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", "openid profile")
        .append_pair("state", "hello")
        .append_pair("nonce", "n-browser")
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .finish();
    c.goto(&format!("{}/authorize?{query}", app.base))
        .await
        .unwrap();

    // Login, then consent.
    wait_for(&c, "input[name=username]").await;
    assert!(c.current_url().await.unwrap().path().ends_with("/login"));
    fill(&c, "input[name=username]", "alice").await;
    fill(&c, "input[name=password]", "wonderland42").await;
    click(&c, "button[type=submit]").await;
    wait_for(&c, "button[name=decision][value=approve]")
        .await
        .click()
        .await
        .unwrap();

    // The code reaches the client's callback; redeemed, it brings an id_token for this session.
    let target = codes
        .recv_timeout(Duration::from_secs(10))
        .expect("no callback");
    let url = url::Url::parse(&format!("http://127.0.0.1{target}")).unwrap();
    let param = |n: &str| {
        url.query_pairs()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("state").as_deref(), Some("hello"));
    assert_eq!(param("iss").as_deref(), Some(app.base.as_str()));
    let code = param("code").unwrap();
    let (status, tokens) = app.post_form(
        "/token",
        Some((id, secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect),
            ("code_verifier", VERIFIER),
        ],
    );
    assert_eq!(status, 200, "{tokens}");
    let id_token = tokens["id_token"].as_str().expect("an id_token");
    let claims = jwt_claims(id_token);
    assert_eq!(claims["sub"], user);
    assert_eq!(claims["nonce"], "n-browser");
    let sid = claims["sid"].as_str().expect("a sid in the id_token");

    // Signed in: the account page, not the login page.
    c.goto(&format!("{}/account", app.base)).await.unwrap();
    wait_for(&c, "button.danger").await;
    assert!(c.current_url().await.unwrap().path().ends_with("/account"));

    // The logout: the hint names this session, so it ends at once, and the browser goes back
    // to the client with its state.
    let signed_out = format!("http://127.0.0.1:{callback_port}/signed-out");
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", &signed_out)
        .append_pair("state", "bye")
        .finish();
    c.goto(&format!("{}/end_session?{query}", app.base))
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_url(&url::Url::parse(&format!("{signed_out}?state=bye")).unwrap())
        .await
        .unwrap();

    // The client's back-channel listener got a logout token for that session.
    let notice = rp
        .tokens
        .recv_timeout(Duration::from_secs(30))
        .expect("no logout token at the back-channel listener within 30 s");
    let logout = jwt_claims(&notice);
    assert_eq!(logout["sid"], sid, "{logout}");
    assert_eq!(logout["sub"], user, "{logout}");
    assert_eq!(logout["aud"], id, "{logout}");
    assert_eq!(logout["iss"], app.base.as_str(), "{logout}");
    assert!(
        logout["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object(),
        "{logout}"
    );

    // Signed out: the account page sends the browser to the login page.
    c.goto(&format!("{}/account", app.base)).await.unwrap();
    wait_for(&c, "input[name=username]").await;
    assert!(c.current_url().await.unwrap().path().ends_with("/login"));
    c.close().await.unwrap();

    // The trail: the session's end, and the notice delivered.
    let ended = app.events("SessionEnded");
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["data"]["sid"], sid);
    assert_eq!(ended[0]["data"]["notify"][0]["client_id"], id);
    let delivered = || {
        app.events("BackchannelLogoutAttempted")
            .into_iter()
            .find(|e| e["data"]["delivered"] == true)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut attempt = delivered();
    while attempt.is_none() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
        attempt = delivered();
    }
    let attempt = attempt.unwrap_or_else(|| {
        panic!(
            "no delivered BackchannelLogoutAttempted within 30 s: {:?}",
            app.events("BackchannelLogoutAttempted")
        )
    });
    assert_eq!(attempt["data"]["sid"], sid, "{attempt}");
    assert_eq!(attempt["data"]["client_id"], id, "{attempt}");
    assert_eq!(attempt["data"]["attempt"], 1, "{attempt}");
}

#[test]
fn a_user_signs_in_gets_an_id_token_and_logs_out_everywhere_in_a_real_browser() {
    let driver = Driver::start();
    let app = spawn_app();
    let (port, codes) = callback_server();
    let rp = LogoutListener::start(vec![]);
    let (user, id, secret) = setup(
        &app,
        &[
            "--redirect-uri",
            "http://127.0.0.1/callback",
            "--post-logout-redirect-uri",
            &format!("http://127.0.0.1:{port}/signed-out"),
            "--backchannel-logout-uri",
            &rp.uri,
        ],
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(sign_in_and_out(
            &app,
            &driver,
            port,
            &codes,
            &rp,
            (&user, &id, &secret),
        ));
}

#[test]
fn an_operator_browses_filters_and_expands_the_audit_trail_in_a_real_browser() {
    let driver = Driver::start();
    let app = spawn_app();
    let (id, secret) = app.create_client(&["--token-format", "opaque"]);
    for i in 0..60 {
        let t = app.token(&id, &secret, None);
        if i % 20 == 0 {
            let token = t["access_token"].as_str().unwrap();
            let (status, _) = app.post_form("/revoke", Some((&id, &secret)), &[("token", token)]);
            assert_eq!(status, 200);
        }
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(viewer_tour(&app, &driver, &id));
}

/// The user's half of the device flow: the link the device showed, sign-in, the code
/// prefilled, approval.
async fn approve_device(driver: &Driver, link: &str, user_code: &str) {
    let c = headless(driver, "1000,800").await;
    c.goto(link).await.unwrap();
    wait_for(&c, "#username").await;
    fill(&c, "#username", "alice").await;
    fill(&c, "#password", "correct horse battery").await;
    navigate(&c, "button[type=submit]").await;
    let field = wait_for(&c, "#user_code").await;
    assert_eq!(
        field.prop("value").await.unwrap().as_deref(),
        Some(user_code)
    );
    screenshot(&c, "device-code").await;
    navigate(&c, "button[type=submit]").await;
    let page = c.source().await.unwrap();
    assert!(page.contains("Living-room TV"), "{page}");
    assert!(
        page.contains(user_code),
        "the consent page shows the code to compare"
    );
    screenshot(&c, "device-consent").await;
    navigate(&c, "button[value=approve]").await;
    let page = c.source().await.unwrap();
    assert!(page.contains("Device connected"), "{page}");
    c.close().await.unwrap();
}

#[test]
fn a_tv_gets_tokens_once_its_user_approves_it_in_a_real_browser() {
    use oauth2::{AuthType, ClientId, DeviceAuthorizationUrl, Scope, TokenResponse, TokenUrl};
    let driver = Driver::start();
    let app = crate::helpers::spawn_app_with(&["--test-clock"]);
    app.create_user("alice", "correct horse battery");
    let tv = crate::device::tv_client(&app);
    let client = oauth2::basic::BasicClient::new(ClientId::new(tv.clone()))
        .set_auth_type(AuthType::RequestBody)
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(format!("{}/device_authorization", app.base)).unwrap(),
        )
        .set_token_uri(TokenUrl::new(format!("{}/token", app.base)).unwrap());
    let details: oauth2::StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("read".into()))
        .request(&crate::oidc::http)
        .unwrap();
    let user_code = details.user_code().secret().clone();
    let link = details
        .verification_uri_complete()
        .unwrap()
        .secret()
        .clone();
    assert_eq!(
        details.verification_uri().as_str(),
        format!("{}/device", app.base)
    );

    // The TV polls on a thread of its own; between polls it "sleeps" by moving the server's
    // clock by the interval, once the user has answered.
    let (answered_tx, answered) = mpsc::channel::<()>();
    let (base, admin) = (app.base.clone(), app.admin_token());
    let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = polls.clone();
    let tv_thread = std::thread::spawn(move || {
        let waited = std::sync::Mutex::new(false);
        let sleep = |interval: Duration| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut w = waited.lock().unwrap();
            if !*w {
                answered.recv_timeout(Duration::from_secs(60)).unwrap();
                *w = true;
            }
            let res = crate::helpers::agent()
                .post(&format!("{base}/admin/api/clock"))
                .header("Authorization", &format!("Bearer {admin}"))
                .send_json(serde_json::json!({ "advance_ms": interval.as_millis() as u64 }))
                .unwrap();
            assert_eq!(res.status(), 200);
        };
        client
            .exchange_device_access_token(&details)
            .request(&crate::oidc::http, sleep, None)
            .map(|t| t.access_token().secret().clone())
            .map_err(|e| format!("{e:?}"))
    });
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(approve_device(&driver, &link, &user_code));
    answered_tx.send(()).unwrap();
    let token = tv_thread.join().unwrap().expect("the TV got a token");
    assert!(
        polls.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "it polled while pending"
    );
    let (status, who) = crate::helpers::answer(
        crate::helpers::agent()
            .get(&format!("{}/api/whoami", app.base))
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
    );
    assert_eq!(status, 200);
    assert_eq!(who["username"], "alice");
}

/// The admin console in Chromium: create a client, edit its redirect URIs, rotate its
/// secret, inspect one of its tokens and revoke it. Each step is in the trail, caused by the
/// admin who signed in.
async fn console_tour(app: &TestApp, driver: &Driver) {
    let c = headless(driver, "1280,1000").await;
    let cred: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(app.data_dir().join("admin.json")).unwrap())
            .unwrap();
    let admin_id = cred["client_id"].as_str().unwrap();
    c.goto(&format!("{}/admin/login", app.base)).await.unwrap();
    wait_for(&c, "input[name=client_secret]").await;
    fill(&c, "input[name=client_id]", admin_id).await;
    fill(
        &c,
        "input[name=client_secret]",
        cred["client_secret"].as_str().unwrap(),
    )
    .await;
    navigate(&c, "button[type=submit]").await;
    wait_for(&c, "form.filters").await;

    // Create a client with its settings.
    c.goto(&format!("{}/admin/clients/new", app.base))
        .await
        .unwrap();
    wait_for(&c, "textarea[name=redirect_uris]").await;
    fill(&c, "input[name=client_id]", "billing-portal").await;
    fill(&c, "input[name=name]", "Billing portal").await;
    fill(
        &c,
        "textarea[name=redirect_uris]",
        "https://billing.example.com/cb",
    )
    .await;
    click(&c, "input[name='grant:authorization_code']").await;
    click(&c, "input[name='grant:client_credentials']").await;
    fill(&c, "input[name=scopes]", "read write").await;
    c.find(Locator::Css(
        "select[name=token_format] option[value=opaque]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    fill(&c, "input[name=access_token_ttl]", "900").await;
    screenshot(&c, "admin-console-new-client").await;
    navigate(&c, "form[action='/admin/clients/new'] button[type=submit]").await;
    if let Ok(e) = c.find(Locator::Css("p.error")).await {
        panic!("creating the client failed: {}", e.text().await.unwrap());
    }
    let first_secret = wait_for(&c, "pre.secret").await.text().await.unwrap();
    assert!(first_secret.len() >= 32, "{first_secret}");
    let (status, _) = app.post_form(
        "/token",
        Some(("billing-portal", &first_secret)),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 200, "the secret shown works");

    // The registry lists it; its page offers the actions.
    c.goto(&format!("{}/admin/clients?q=billing", app.base))
        .await
        .unwrap();
    wait_for(&c, "table").await;
    assert!(c.source().await.unwrap().contains("Billing portal"));
    screenshot(&c, "admin-console-clients").await;
    navigate(&c, "a[href='/admin/clients/billing-portal']").await;
    wait_for(&c, "div.actions").await;

    // Edit its redirect URIs: one replaced, one added.
    navigate(&c, "a[href='/admin/clients/billing-portal/edit']").await;
    wait_for(&c, "textarea[name=redirect_uris]").await;
    fill(
        &c,
        "textarea[name=redirect_uris]",
        "https://billing.example.com/callback\nhttps://billing.example.com/cb2",
    )
    .await;
    navigate(
        &c,
        "form[action='/admin/clients/billing-portal/edit'] button[type=submit]",
    )
    .await;
    wait_for(&c, "div.actions").await;
    let shown = app.cli_json(&["client", "show", "billing-portal", "--format", "json"]);
    let mut uris: Vec<&str> = shown["redirect_uris"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    uris.sort_unstable();
    assert_eq!(
        uris,
        [
            "https://billing.example.com/callback",
            "https://billing.example.com/cb2"
        ]
    );
    assert_eq!(shown["token_format"], "opaque");
    assert_eq!(shown["access_token_ttl"], 900);

    // Rotate its secret: the new one is shown once and works; the old one no longer does.
    navigate(
        &c,
        "form[action='/admin/clients/billing-portal/rotate-secret'] button",
    )
    .await;
    let secret = wait_for(&c, "pre.secret").await.text().await.unwrap();
    assert_ne!(secret, first_secret);
    let (status, _) = app.post_form(
        "/token",
        Some(("billing-portal", &first_secret)),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 401, "the old secret is gone");
    let token = app.token("billing-portal", &secret, Some("read"))["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Inspect the token (pasted), then revoke it from the inspector.
    c.goto(&format!("{}/admin/tokens", app.base)).await.unwrap();
    wait_for(&c, "textarea[name=token]").await;
    fill(&c, "textarea[name=token]", &token).await;
    navigate(&c, "form[action='/admin/tokens'] button[type=submit]").await;
    wait_for(&c, "span.active").await;
    let page = c.source().await.unwrap();
    assert!(
        page.contains("billing-portal") && page.contains("client_credentials"),
        "the token's facts"
    );
    assert!(!page.contains(&token), "the token itself is not echoed");
    screenshot(&c, "admin-console-token").await;
    navigate(&c, "form[action$='/revoke'] button").await;
    wait_for(&c, "span.inactive").await;
    assert!(c.source().await.unwrap().contains("revoked"));
    assert_eq!(
        app.introspect("billing-portal", &secret, &token)["active"],
        false
    );

    // The trail has each step, caused by the admin who signed in.
    let events = app.cli_json(&[
        "audit",
        "query",
        "--client",
        "billing-portal",
        "--format",
        "json",
        "--limit",
        "100",
    ]);
    let by_admin = crate::helpers::types_caused_by_admin(&events, admin_id);
    for kind in [
        "ClientRegistered",
        "ClientRedirectUriAdded",
        "ClientRedirectUriRemoved",
        "ClientSecretRotated",
        "TokenRevoked",
    ] {
        assert!(
            by_admin.contains(&kind),
            "{kind} caused by the admin: {by_admin:?}"
        );
    }
    let revoked = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "TokenRevoked")
        .unwrap();
    assert_eq!(revoked["data"]["reason"], "revoked_by_admin", "{revoked}");
    assert!(revoked["metadata"]["request_id"].is_string(), "{revoked}");

    // Signing keys: three active, one rotated from the console (pending until its lead time).
    c.goto(&format!("{}/admin/keys", app.base)).await.unwrap();
    wait_for(&c, "tr[data-status]").await;
    assert_eq!(
        c.find_all(Locator::Css("tr[data-status=active]"))
            .await
            .unwrap()
            .len(),
        3
    );
    click(&c, "input[name='alg:ES256']").await;
    navigate(&c, "form[action='/admin/keys/rotate'] button[type=submit]").await;
    wait_for(&c, "p.notice").await;
    assert_eq!(
        c.find_all(Locator::Css("tr[data-status=pending]"))
            .await
            .unwrap()
            .len(),
        1
    );
    screenshot(&c, "admin-console-keys").await;
    let generated = app.events("SigningKeyGenerated");
    let last = generated.last().unwrap();
    assert_eq!(last["data"]["algorithm"], "ES256", "{last}");
    assert_eq!(
        last["metadata"]["caused_by"],
        serde_json::json!({"kind": "admin", "id": admin_id})
    );
    c.close().await.unwrap();
}

#[test]
fn an_admin_manages_a_client_and_revokes_its_token_in_the_console() {
    let driver = Driver::start();
    let app = spawn_app();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(console_tour(&app, &driver));
}
