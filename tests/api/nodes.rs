//! Several `authledger serve --store postgres` nodes on one database, on loopback ports.

use crate::helpers::{agent, TestApp};
use authledger::store::{EventStore, Log};
use std::time::{Duration, Instant};

/// One key-encryption key for every node: each decrypts the signing keys another generated.
const KEK: &str = "4f1c2d3e4a5b6c7d8e9f00112233445566778899aabbccddeeff001122334455";

/// The issuer every node names: behind a load balancer they are one server.
const ISSUER: &str = "http://authledger.nodes.test";

/// A node on `url` with a data directory of its own.
pub fn node(url: &str) -> TestApp {
    let mut app = TestApp {
        child: None,
        dir: tempfile::tempdir().unwrap(),
        base: String::new(),
        agent: agent(),
        flags: vec![
            "--store".into(),
            "postgres".into(),
            "--database-url".into(),
            url.into(),
            "--issuer".into(),
            ISSUER.into(),
        ],
        env: vec![("AUTHLEDGER_ENCRYPTION_KEY".into(), KEK.into())],
        log: None,
    };
    app.start();
    app
}

/// Introspects on `node` until `active` is as expected; answers how long that took, or
/// fails after 10 s (a wait for a condition: followers copy within milliseconds).
fn until_active(node: &TestApp, id: &str, secret: &str, token: &str, active: bool) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = node.post_form("/introspect", Some((id, secret)), &[("token", token)]);
        if status == 200 && body["active"] == active {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} never read active={active}: {status} {body}",
            node.base
        );
        std::thread::yield_now();
    }
}

#[test]
fn a_token_issued_on_one_node_is_active_on_the_others_and_a_revocation_on_one_reaches_them_all() {
    let url = crate::pg::database();
    let a = node(&url);
    let b = node(&url);
    let c = node(&url);
    let (id, secret) = a.create_client(&[]);
    let token = a.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in [&a, &b, &c] {
        until_active(n, &id, &secret, &token, true);
    }
    // The client's registration reached B: it issues tokens there too.
    let on_b = b.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    until_active(&c, &id, &secret, &on_b, true);
    let (status, _) = b.post_form("/revoke", Some((&id, &secret)), &[("token", &token)]);
    assert_eq!(status, 200);
    // On B itself at once: a node reads its own writes.
    assert_eq!(b.introspect(&id, &secret, &token)["active"], false);
    for n in [&a, &c] {
        let lag = until_active(n, &id, &secret, &token, false);
        assert!(lag < Duration::from_secs(5), "{lag:?}");
    }
    assert_eq!(a.introspect(&id, &secret, &on_b)["active"], true);
}

#[test]
fn a_node_restarted_on_its_data_directory_catches_up_with_what_the_others_wrote_meanwhile() {
    let url = crate::pg::database();
    let a = node(&url);
    let mut b = node(&url);
    let (id, secret) = a.create_client(&[]);
    until_active(
        &b,
        &id,
        &secret,
        a.token(&id, &secret, None)["access_token"]
            .as_str()
            .unwrap(),
        true,
    );
    b.stop();
    let tokens: Vec<String> = (0..20)
        .map(|_| {
            a.token(&id, &secret, None)["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    b.start();
    // A start copies what the database holds before it serves.
    for t in &tokens {
        assert_eq!(b.introspect(&id, &secret, t)["active"], true);
    }
    // Both copies hold the same events, hash chain included, as far as both reach (each
    // node also records its own walk of the chain after a start, so they end apart by a few).
    let mut a = a;
    a.stop();
    b.stop();
    let copy = |n: &TestApp| {
        let log = Log::embedded(&n.data_dir().join("log")).unwrap();
        assert!(log.verify(|_| {}).unwrap().is_verified());
        log.read_all(1, 100_000).unwrap()
    };
    let (ca, cb) = (copy(&a), copy(&b));
    let both = ca.len().min(cb.len());
    assert!(both > 20, "{both}");
    for (x, y) in ca.iter().zip(&cb) {
        assert_eq!(
            (x.position, &x.stream, x.version, x.id, &x.prev_hash),
            (y.position, &y.stream, y.version, y.id, &y.prev_hash)
        );
    }
}
