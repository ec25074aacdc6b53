//! A graceful stop under load: SIGTERM while token requests are in flight. Every request the
//! server took is answered in full (each token it recorded reached its client), and every
//! acknowledged token is still there after a restart.

use crate::helpers::{agent, send_signal, spawn_app_with, wait_at_most};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[test]
fn sigterm_under_load_cuts_off_no_request_and_loses_no_acknowledged_event() {
    let mut app = spawn_app_with(&["--rate-limit-token", "0"]);
    let (id, secret) = app.create_client(&[
        "--grant-type",
        "client_credentials",
        "--scope",
        "read",
        "--token-format",
        "opaque",
    ]);
    let url = format!("{}/token", app.base);
    let basic = {
        use base64::Engine as _;
        let cred = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        format!("Basic {cred}")
    };
    let tokens = Mutex::new(Vec::<String>::new());
    let other_answers = Mutex::new(Vec::<u16>::new());
    let transport_errors = AtomicUsize::new(0);
    let stopped = AtomicBool::new(false);
    // Each token answered is announced, so the test waits on the load itself, not on time.
    let (issued, answered) = std::sync::mpsc::channel::<()>();
    let status = std::thread::scope(|s| {
        for _ in 0..6 {
            let issued = issued.clone();
            let (url, basic, tokens, other_answers) = (&url, &basic, &tokens, &other_answers);
            let (transport_errors, stopped) = (&transport_errors, &stopped);
            s.spawn(move || {
                let a = agent();
                // Until the server is gone: a request that finds no listener ends the thread.
                while !stopped.load(Ordering::SeqCst) {
                    match a
                        .post(url)
                        .header("Authorization", basic)
                        .send_form([("grant_type", "client_credentials")])
                    {
                        Ok(mut res) => {
                            let code = res.status().as_u16();
                            let body: Value =
                                serde_json::from_str(&res.body_mut().read_to_string().unwrap())
                                    .unwrap();
                            if code == 200 {
                                let t = body["access_token"].as_str().unwrap().to_owned();
                                tokens.lock().unwrap().push(t);
                                let _ = issued.send(());
                            } else {
                                other_answers.lock().unwrap().push(code);
                            }
                        }
                        Err(_) => {
                            transport_errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
        // Stop once the load is well under way: 60 tokens answered.
        let deadline = Instant::now() + Duration::from_secs(30);
        for _ in 0..60 {
            let left = deadline.saturating_duration_since(Instant::now());
            answered
                .recv_timeout(left)
                .expect("the load never got going");
        }
        let mut child = app.child.take().unwrap();
        send_signal(child.id() as i32, "TERM");
        let status = wait_at_most(&mut child, Duration::from_secs(30));
        stopped.store(true, Ordering::SeqCst);
        status
    });
    let status = status.expect("the server stopped within 30 s of SIGTERM");
    assert!(status.success(), "a graceful stop exits 0: {status:?}");
    let tokens = tokens.into_inner().unwrap();
    assert_eq!(
        other_answers.into_inner().unwrap(),
        Vec::<u16>::new(),
        "every answered request succeeded"
    );
    assert!(
        transport_errors.load(Ordering::SeqCst) >= 1,
        "the load ran until the server was gone"
    );

    app.start();
    // No request was cut off after its token was recorded: as many tokens in the log as
    // answers that carried one.
    let recorded = app.cli_json(&[
        "audit",
        "query",
        "--client",
        &id,
        "--type",
        "AccessTokenIssued",
        "--format",
        "json",
        "--limit",
        "100000",
    ]);
    assert_eq!(recorded.as_array().unwrap().len(), tokens.len());
    // No acknowledged event was lost: every token answered is active after the restart.
    for t in &tokens {
        assert_eq!(app.introspect(&id, &secret, t)["active"], true, "{t}");
    }
}
