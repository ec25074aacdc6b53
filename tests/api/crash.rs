//! A server killed with SIGKILL while clients get tokens loses none it acknowledged.

use crate::helpers::{agent, spawn_app};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

#[test]
fn every_token_received_before_a_sigkill_is_active_after_restart() {
    let mut app = spawn_app();
    let (id, secret) = app.create_client(&["--scope", "read", "--token-format", "opaque"]);
    let (jid, jsecret) = app.create_client(&["--scope", "read"]);
    let (sent, tokens) = mpsc::channel::<(String, String, String)>();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for n in 0..8 {
        let (cid, csecret) = if n % 2 == 0 {
            (id.clone(), secret.clone())
        } else {
            (jid.clone(), jsecret.clone())
        };
        let base = app.base.clone();
        let sent = sent.clone();
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let agent = agent();
            let mut count = 0;
            // Bounded: at most 2,000 requests per worker, and it stops at the kill.
            while !stop.load(Ordering::SeqCst) && count < 2000 {
                count += 1;
                let res = agent.post(&format!("{base}/token")).send_form([
                    ("grant_type", "client_credentials"),
                    ("client_id", cid.as_str()),
                    ("client_secret", csecret.as_str()),
                ]);
                let Ok(mut res) = res else { break };
                if res.status() != 200 {
                    break;
                }
                let Ok(body) = res.body_mut().read_json::<serde_json::Value>() else {
                    break;
                };
                if let Some(t) = body["access_token"].as_str() {
                    let _ = sent.send((cid.clone(), csecret.clone(), t.to_owned()));
                }
            }
        }));
    }
    drop(sent);
    // Kill under load: once 200 tokens have been acknowledged, while the workers go on.
    let mut received = Vec::new();
    while received.len() < 200 {
        match tokens.recv_timeout(Duration::from_secs(60)) {
            Ok(t) => received.push(t),
            Err(e) => panic!("the load stopped after {} tokens: {e}", received.len()),
        }
    }
    app.kill();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    received.extend(tokens.try_iter());
    assert!(
        received.len() > 50,
        "too few tokens before the kill: {}",
        received.len()
    );
    app.start();
    for (cid, csecret, token) in &received {
        let info = app.introspect(cid, csecret, token);
        assert_eq!(
            info["active"], true,
            "token acknowledged before SIGKILL is not active"
        );
    }
}
