//! A real client library against the real server: Python's requests-oauth2client pushes an
//! authorization request (PAR) and redeems the code, gets a DPoP-bound token and calls a
//! resource with proofs, and exchanges a token (tests/clients/requests_oauth2client_flows.py).
//! The browser's part of the code flow is the test's browser stand-in.
//!
//! scripts/test.sh makes the virtual environment (target/pyenv, requests-oauth2client from
//! PyPI); without it this test fails with that instruction, it never skips.

use crate::helpers::spawn_app;
use crate::web::Browser;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const CB: &str = "https://app.example.com/cb";
const FILES: &str = "https://files.example.com/";

/// The virtual environment's Python (scripts/test.sh makes it from
/// tests/clients/requirements.txt).
pub fn python() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/pyenv
    let target = exe
        .parent()
        .and_then(|d| d.parent())
        .and_then(|p| p.parent())
        .unwrap();
    let python = target.join("pyenv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh, which makes it (python3 -m venv target/pyenv && \
         target/pyenv/bin/pip install -r tests/clients/requirements.txt)",
        python.display()
    );
    python
}

#[test]
fn requests_oauth2client_pushes_binds_and_exchanges() {
    let app = spawn_app();
    app.create_user("alice", "correct horse battery");
    let (web, web_secret) = app.create_client(&[
        "--redirect-uri",
        CB,
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "client_credentials",
        "--scope",
        "read",
    ]);
    let (gateway, gateway_secret) = app.create_client(&[
        "--grant-type",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "--exchange-subject-client",
        &web,
        "--exchange-audience",
        FILES,
    ]);
    let script = format!(
        "{}/tests/clients/requests_oauth2client_flows.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = Command::new(python())
        .arg(script)
        .args([
            &app.base,
            &web,
            &web_secret,
            &gateway,
            &gateway_secret,
            FILES,
            CB,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || -> Value {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the client stopped early"))
            .unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    };
    let authorize = next();
    assert_eq!(authorize["step"], "authorize");
    let url = authorize["url"].as_str().unwrap();
    assert!(url.contains("request_uri=urn"), "{url}");
    let mut b = Browser::new(&app);
    b.sign_in("alice", "correct horse battery");
    let r = b.get(url);
    let r = match r.location.as_deref() {
        Some(l) if l.contains("/consent?") => b.decide(l, "approve"),
        _ => r,
    };
    let callback = r.location.expect("a redirect to the client");
    assert!(callback.starts_with(CB), "{callback}");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{callback}").unwrap();
    drop(stdin);

    let par = next();
    assert_eq!(par["step"], "par");
    assert_eq!(par["token_type"], "Bearer");
    assert_eq!(par["scope"], "read");
    let dpop = next();
    assert_eq!(dpop["step"], "dpop");
    assert_eq!(dpop["token_type"], "DPoP");
    assert_eq!(dpop["status"], 200, "{dpop}");
    assert_eq!(dpop["body"]["client_id"], web.as_str());
    let exchange = next();
    assert_eq!(exchange["step"], "exchange");
    let exchanged = exchange["access_token"].as_str().unwrap();
    let i = app.introspect(&gateway, &gateway_secret, exchanged);
    assert_eq!(i["aud"], FILES);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.events("PushedAuthorizationRequestUsed").len(), 1);
    assert_eq!(app.events("TokenExchanged").len(), 1);
    assert_eq!(
        app.events("DpopProofAccepted").len(),
        2,
        "the token request's and whoami's"
    );
}
