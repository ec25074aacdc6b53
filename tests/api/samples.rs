//! The sample clients of `examples/clients/` (Authlib and requests-oauth2client, in the
//! virtual environment scripts/test.sh makes) against a server started here, each flow to
//! its end: the user's part (sign-in, consent, the device code) by the browser stand-in.

use crate::clients::python;
use crate::helpers::{agent, spawn_app_with, TestApp};
use crate::web::Browser;
use serde_json::Value;
use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

const PASSWORD: &str = "correct horse battery";

/// A running sample: its JSON lines, one per step.
struct Sample {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    name: String,
}

impl Sample {
    /// Starts `script` with `args`, flag and value pairs.
    fn start(app: &TestApp, script: &str, args: &[&str]) -> Self {
        let dir = format!("{}/examples/clients", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(python())
            .current_dir(&dir)
            .arg(script)
            .arg(format!("--issuer={}", app.base))
            // `--flag=value`: a secret or token may begin with `-`, which argparse would
            // take for an option of its own.
            .args(args.chunks(2).map(|p| format!("{}={}", p[0], p[1])))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            lines,
            name: script.into(),
        }
    }

    /// The next step it prints; panics with its stderr if it stopped instead.
    fn next(&mut self) -> Value {
        match self.lines.next() {
            Some(Ok(line)) => {
                let v: Value =
                    serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
                assert_ne!(v["step"], "error", "{}: {v}", self.name);
                v
            }
            _ => {
                let out = self.child.wait_with_output_ref();
                panic!("{} stopped early: {out}", self.name)
            }
        }
    }

    /// Its last step, after which it must exit 0.
    fn done(mut self) -> Value {
        let v = self.next();
        assert_eq!(v["step"], "done", "{}: {v}", self.name);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{} exited {status:?}", self.name);
        v
    }
}

trait StderrOf {
    fn wait_with_output_ref(&mut self) -> String;
}

impl StderrOf for Child {
    fn wait_with_output_ref(&mut self) -> String {
        use std::io::Read;
        let _ = self.wait();
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

/// Signs alice in, follows the authorization URL through consent, and delivers the redirect
/// to the sample's loopback receiver.
fn user_approves(app: &TestApp, url: &str) {
    let mut b = Browser::new(app);
    let signed_in = b.sign_in("alice", PASSWORD);
    assert_eq!(signed_in.status, 303, "{signed_in:?}");
    let r = b.get(url);
    assert_eq!(r.status, 302, "{r:?}");
    let mut loc = r.location.clone().unwrap();
    if loc.contains("/consent?") {
        let decided = b.decide(&loc, "approve");
        loc = decided.location.clone().unwrap();
    }
    assert!(
        loc.starts_with("http://127.0.0.1:") && loc.contains("code="),
        "{loc}"
    );
    let res = agent().get(&loc).call().unwrap();
    assert_eq!(res.status(), 200);
}

fn create(app: &TestApp, args: &[&str]) -> (String, String) {
    let mut all = vec!["client", "create", "--format", "json"];
    all.extend_from_slice(args);
    let v = app.cli_json(&all);
    (
        v["client_id"].as_str().unwrap().to_owned(),
        v["client_secret"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn every_sample_client_runs_its_flow_to_the_end() {
    let app = spawn_app_with(&["--device-poll-interval-secs", "1"]);
    app.create_user("alice", PASSWORD);

    // client_credentials, then the demo resource with the token.
    let (svc, secret) = create(
        &app,
        &[
            "--name",
            "svc",
            "--grant-type",
            "client_credentials",
            "--scope",
            "read",
        ],
    );
    let done = Sample::start(
        &app,
        "client_credentials.py",
        &[
            "--client-id",
            &svc,
            "--client-secret",
            &secret,
            "--scope",
            "read",
        ],
    )
    .done();
    assert_eq!(done["scope"], "read");
    assert_eq!(done["whoami"]["client_id"], svc.as_str(), "{done}");

    // A web app: code + PKCE, confidential, then /userinfo.
    let (web, secret) = create(
        &app,
        &[
            "--name",
            "web",
            "--redirect-uri",
            "http://127.0.0.1/callback",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--scope",
            "openid profile offline_access",
        ],
    );
    let mut s = Sample::start(
        &app,
        "code_pkce_web.py",
        &["--client-id", &web, "--client-secret", &secret],
    );
    let authorize = s.next();
    let url = authorize["url"].as_str().unwrap();
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    user_approves(&app, url);
    let done = s.done();
    assert_eq!(
        done["userinfo"]["preferred_username"]
            .as_str()
            .or(done["userinfo"]["username"].as_str()),
        Some("alice"),
        "{done}"
    );
    let web_refresh = done["refresh_token"].as_str().unwrap().to_owned();

    // A native app: public, PKCE, a loopback port of its own choosing.
    let (desktop, _) = create(
        &app,
        &[
            "--name",
            "desktop",
            "--public",
            "--redirect-uri",
            "http://127.0.0.1/callback",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--scope",
            "openid offline_access",
        ],
    );
    let mut s = Sample::start(&app, "code_pkce_native.py", &["--client-id", &desktop]);
    let url = s.next()["url"].as_str().unwrap().to_owned();
    user_approves(&app, &url);
    let done = s.done();
    let native_refresh = done["refresh_token"].as_str().unwrap().to_owned();

    // Refresh: a confidential and a public client; each rotation hands out a new token.
    let done = Sample::start(
        &app,
        "refresh.py",
        &[
            "--client-id",
            &web,
            "--client-secret",
            &secret,
            "--refresh-token",
            &web_refresh,
        ],
    )
    .done();
    assert_eq!(done["rotated"], true, "{done}");
    let done = Sample::start(
        &app,
        "refresh.py",
        &["--client-id", &desktop, "--refresh-token", &native_refresh],
    )
    .done();
    assert_eq!(done["rotated"], true, "{done}");

    // The device flow: the user enters the code on the /device page meanwhile.
    let (tv, _) = create(
        &app,
        &[
            "--name",
            "Living-room TV",
            "--public",
            "--grant-type",
            "urn:ietf:params:oauth:grant-type:device_code",
            "--scope",
            "openid read",
        ],
    );
    let mut s = Sample::start(&app, "device_flow.py", &["--client-id", &tv]);
    let device = s.next();
    let user_code = device["user_code"].as_str().unwrap();
    let mut b = Browser::new(&app);
    b.sign_in("alice", PASSWORD);
    let decided = crate::device::answer(&mut b, user_code, "approve");
    assert_eq!(decided.status, 200, "{}", decided.body);
    let done = s.done();
    assert_eq!(done["has_id_token"], true, "{done}");

    // The JWT bearer grant: the partner's IdP key made by keygen.py.
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("partner.pem");
    let out = Command::new(python())
        .current_dir(format!("{}/examples/clients", env!("CARGO_MANIFEST_DIR")))
        .args(["keygen.py", pem.to_str().unwrap(), "partner-1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, &out.stdout).unwrap();
    let jwks_arg = format!("@{}", jwks.display());
    let (partner, secret) = create(
        &app,
        &[
            "--name",
            "partner",
            "--scope",
            "read",
            "--grant-type",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "--jwks",
            &jwks_arg,
            "--trusted-issuer",
            "https://idp.partner.example",
        ],
    );
    let done = Sample::start(
        &app,
        "jwt_bearer.py",
        &[
            "--client-id",
            &partner,
            "--client-secret",
            &secret,
            "--key",
            pem.to_str().unwrap(),
            "--kid",
            "partner-1",
            "--assertion-issuer",
            "https://idp.partner.example",
            "--subject",
            "alice@partner.example",
        ],
    )
    .done();
    assert_eq!(done["scope"], "read", "{done}");
    let accepted = app.events("JwtAssertionAccepted");
    assert_eq!(accepted.len(), 1, "{accepted:?}");
}
