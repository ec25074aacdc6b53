//! Signing keys: algorithms per client, rotation under load, retirement, restarts, PEM files.

use crate::helpers::{failed_start, spawn_app_with, TestApp};
use authledger::jose::KeySet;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn header(token: &str) -> jsonwebtoken::Header {
    jsonwebtoken::decode_header(token).unwrap()
}

fn jwks(app: &TestApp) -> Value {
    let (status, body) = app.get("/jwks");
    assert_eq!(status, 200);
    body
}

fn kids(doc: &Value) -> Vec<String> {
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn keys_list(app: &TestApp) -> Vec<Value> {
    app.cli_json(&["keys", "list", "--format", "json"])
        .as_array()
        .unwrap()
        .clone()
}

/// Verifies a JWT as a resource server that caches the JWKS would: with the cached set, then,
/// for an unknown kid, with a freshly fetched one.
fn verify_like_a_resource_server(app: &TestApp, cache: &Mutex<KeySet>, token: &str) -> bool {
    let check = |set: &KeySet| {
        set.verify::<Value>(token, |v| {
            v.set_issuer(&[&app.base]);
        })
    };
    let first = check(&cache.lock().unwrap());
    match first {
        Ok(_) => true,
        Err(authledger::jose::JoseError::UnknownKey(_)) => {
            let fresh = KeySet::parse(&jwks(app)).unwrap();
            let ok = check(&fresh).is_ok();
            *cache.lock().unwrap() = fresh;
            ok
        }
        Err(_) => false,
    }
}

#[test]
fn each_client_signs_with_its_algorithm_and_every_format_introspects_alike() {
    let app = spawn_app_with(&[]);
    let doc = jwks(&app);
    assert_eq!(doc["keys"].as_array().unwrap().len(), 3, "{doc}");
    let set = KeySet::parse(&doc).unwrap();
    for (alg, expected) in [
        (None, jsonwebtoken::Algorithm::ES256),
        (Some("RS256"), jsonwebtoken::Algorithm::RS256),
        (Some("ES256"), jsonwebtoken::Algorithm::ES256),
        (Some("EdDSA"), jsonwebtoken::Algorithm::EdDSA),
    ] {
        let mut args = vec!["--scope", "read"];
        if let Some(a) = alg {
            args.extend(["--signing-alg", a]);
        }
        let (id, secret) = app.create_client(&args);
        let token = app.token(&id, &secret, None)["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let h = header(&token);
        assert_eq!(h.alg, expected);
        assert_eq!(h.typ.as_deref(), Some("at+jwt"));
        assert!(kids(&doc).contains(h.kid.as_ref().unwrap()));
        let (_, claims): (_, Value) = set.verify(&token, |_| {}).unwrap();
        assert_eq!(claims["client_id"], id.as_str());
        let seen = app.introspect(&id, &secret, &token);
        assert_eq!(seen["active"], true, "{seen}");
        // The audit trail names the key that signed it.
        let trail = app.cli_json(&[
            "audit",
            "query",
            "--client",
            &id,
            "--type",
            "AccessTokenIssued",
            "--format",
            "json",
        ]);
        assert_eq!(trail[0]["data"]["kid"], h.kid.clone().unwrap().as_str());
    }
    let (id, secret) = app.create_client(&["--scope", "read", "--token-format", "opaque"]);
    let token = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        jsonwebtoken::decode_header(&token).is_err(),
        "opaque tokens are not JWTs"
    );
    assert_eq!(app.introspect(&id, &secret, &token)["active"], true);
    let (status, info) = app.get(&format!("/tokeninfo?access_token={token}"));
    assert_eq!(
        (status, info["client_id"].as_str()),
        (200, Some(id.as_str()))
    );
    let (status, _) = app.post_form("/revoke", Some((&id, &secret)), &[("token", &token)]);
    assert_eq!(status, 200);
    assert_eq!(app.introspect(&id, &secret, &token)["active"], false);
    let (status, info) = app.get(&format!("/tokeninfo?access_token={token}"));
    assert_eq!(
        (status, info["error"].as_str()),
        (400, Some("invalid_token"))
    );
}

#[test]
fn no_token_is_rejected_while_keys_rotate_under_load() {
    let app = Arc::new(spawn_app_with(&["--key-check-secs", "1", "--test-clock"]));
    let (id, secret) = app.create_client(&["--scope", "read", "--access-token-ttl", "600"]);
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    // The kids the workers have seen sign, and a signal each time one is added.
    let seen_kids = Arc::new((
        Mutex::new(std::collections::BTreeSet::<String>::new()),
        std::sync::Condvar::new(),
    ));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (app, id, secret) = (app.clone(), id.clone(), secret.clone());
            let (stop, issued, failures, seen_kids) = (
                stop.clone(),
                issued.clone(),
                failures.clone(),
                seen_kids.clone(),
            );
            std::thread::spawn(move || {
                let cache = Mutex::new(KeySet::parse(&jwks(&app)).unwrap());
                let mut mine: Vec<String> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = app.post_form(
                        "/token",
                        Some((&id, &secret)),
                        &[("grant_type", "client_credentials")],
                    );
                    if status != 200 {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("token: {status} {body}"));
                        continue;
                    }
                    issued.fetch_add(1, Ordering::Relaxed);
                    let token = body["access_token"].as_str().unwrap().to_owned();
                    let (kids, added) = &*seen_kids;
                    if kids.lock().unwrap().insert(header(&token).kid.unwrap()) {
                        added.notify_all();
                    }
                    if !verify_like_a_resource_server(&app, &cache, &token) {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("local verification: {token}"));
                    }
                    mine.push(token);
                }
                // Every token issued during the rotations still verifies and introspects.
                let cache = Mutex::new(KeySet::parse(&jwks(&app)).unwrap());
                for token in mine.iter().step_by(7) {
                    if !verify_like_a_resource_server(&app, &cache, token) {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("later verification: {token}"));
                    }
                    if app.introspect(&id, &secret, token)["active"] != true {
                        failures.lock().unwrap().push(format!("inactive: {token}"));
                    }
                }
            })
        })
        .collect();
    // Activation times are whole seconds: moving the server's clock 2.1 s past each rotation
    // activates its key and gives it a signing window of its own; the workers then sign with it.
    for rotation in 0..3 {
        let out = app.cli(&["keys", "rotate", "--algorithm", "ES256", "--lead-time", "1"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        app.advance_clock(2100);
        let (kids, added) = &*seen_kids;
        let (seen, waited) = added
            .wait_timeout_while(kids.lock().unwrap(), Duration::from_secs(20), |k| {
                k.len() < rotation + 2
            })
            .unwrap();
        assert!(
            !waited.timed_out(),
            "no token was signed with the key of rotation {rotation}"
        );
        drop(seen);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        issued.load(Ordering::Relaxed) > 50,
        "too few tokens to prove anything"
    );
    // Four ES256 keys signed: the first and one per rotation, each after its lead time.
    assert_eq!(
        seen_kids.0.lock().unwrap().len(),
        4,
        "{:?}",
        seen_kids.0.lock().unwrap()
    );
    let es: Vec<Value> = keys_list(&app)
        .into_iter()
        .filter(|k| k["algorithm"] == "ES256")
        .collect();
    assert_eq!(es.len(), 4);
    assert_eq!(es.iter().filter(|k| k["status"] == "active").count(), 1);
    assert_eq!(es.iter().filter(|k| k["status"] == "superseded").count(), 3);
    // Their tokens live 600 s: every superseded key stays published.
    assert_eq!(jwks(&app)["keys"].as_array().unwrap().len(), 6);
}

#[test]
fn a_new_key_is_published_before_it_signs_and_the_old_one_retires_after_its_tokens() {
    let app = spawn_app_with(&[
        "--key-check-secs",
        "1",
        "--key-retire-leeway-secs",
        "0",
        "--test-clock",
    ]);
    let (id, secret) = app.create_client(&["--scope", "read", "--access-token-ttl", "8"]);
    let old = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_kid = header(&old).kid.unwrap();
    let out = app.cli(&[
        "keys",
        "rotate",
        "--algorithm",
        "ES256",
        "--lead-time",
        "2",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let pending = listed.iter().find(|k| k["status"] == "pending").unwrap();
    let new_kid = pending["kid"].as_str().unwrap().to_owned();
    // Published at once, not yet signing.
    assert!(kids(&jwks(&app)).contains(&new_kid));
    let during = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(header(&during).kid.unwrap(), old_kid);
    app.advance_clock(2200);
    let after = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(header(&after).kid.unwrap(), new_kid);
    assert!(
        kids(&jwks(&app)).contains(&old_kid),
        "retired while its tokens live"
    );
    // The old key's last token expires 8 s after it was signed; moving the clock past it runs
    // the key check, which retires the key before the move is answered.
    app.advance_clock(9000);
    assert!(
        !kids(&jwks(&app)).contains(&old_kid),
        "the superseded key was not retired"
    );
    let row = keys_list(&app)
        .into_iter()
        .find(|k| k["kid"] == old_kid.as_str())
        .unwrap();
    assert_eq!(row["status"], "retired", "{row}");
    assert!(row["last_token_expires_at"].is_string());
    let trail = app.events("SigningKeyRetired");
    assert_eq!(trail[0]["data"]["kid"], old_kid.as_str());
    // A token of a retired key no longer verifies anywhere.
    assert_eq!(app.introspect(&id, &secret, &old)["active"], false);
}

#[test]
fn keys_survive_a_restart_and_their_tokens_stay_valid() {
    let mut app = spawn_app_with(&[]);
    let (id, secret) = app.create_client(&["--scope", "read", "--signing-alg", "RS256"]);
    let token = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = jwks(&app);
    app.stop();
    app.start();
    assert_eq!(jwks(&app), before);
    assert_eq!(app.introspect(&id, &secret, &token)["active"], true);
    let again = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(header(&again).kid, header(&token).kid);
    // Nothing private left the log: the events hold sealed keys only.
    for e in app.events("SigningKeyGenerated") {
        let d = &e["data"];
        assert!(d["public_jwk"].get("d").is_none(), "{d}");
        assert!(d["private_key"]["ciphertext"].is_string());
        assert_eq!(d["private_key"]["kek_id"].as_str().unwrap().len(), 16);
    }
}

fn p256_pem(passphrase: Option<&str>) -> (String, String) {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let der = pair.to_pkcs8v1().unwrap();
    let material = authledger::keys::material::from_pkcs8(
        domain::values::SigningAlgorithm::ES256,
        der.as_ref(),
    )
    .unwrap();
    let pem = match passphrase {
        None => {
            pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, der.as_ref())
                .unwrap()
        }
        Some(pass) => {
            let info = pkcs8::PrivateKeyInfo::try_from(der.as_ref()).unwrap();
            let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(
                2048,
                b"0123456789abcdef",
                &[7u8; 16],
            )
            .unwrap();
            let encrypted = info.encrypt_with_params(params, pass.as_bytes()).unwrap();
            pem_rfc7468::encode_string(
                "ENCRYPTED PRIVATE KEY",
                pem_rfc7468::LineEnding::LF,
                encrypted.as_bytes(),
            )
            .unwrap()
        }
    };
    (pem, material.kid)
}

#[test]
fn a_pem_file_key_signs_and_stays_published_after_the_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.pem");
    let (pem, first_kid) = p256_pem(Some("correct horse"));
    std::fs::write(&first, pem).unwrap();
    let path = first.to_str().unwrap().to_owned();
    let mut app = spawn_app_with(&[
        "--private-key-path",
        &path,
        "--private-key-passphrase",
        "correct horse",
    ]);
    let (id, secret) = app.create_client(&["--scope", "read"]);
    let token = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(header(&token).kid.unwrap(), first_kid);
    let row = keys_list(&app)
        .into_iter()
        .find(|k| k["kid"] == first_kid.as_str())
        .unwrap();
    assert_eq!(
        (row["origin"].as_str(), row["status"].as_str()),
        (Some("pem_file"), Some("active"))
    );
    let out = app.cli(&["keys", "rotate", "--algorithm", "ES256"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--private-key-path"));
    app.stop();

    let err = failed_start(
        app.data_dir(),
        &[
            "--private-key-path",
            &path,
            "--private-key-passphrase",
            "wrong",
        ],
        &[],
    );
    assert!(err.contains("passphrase does not decrypt"), "{err}");

    let second = dir.path().join("second.pem");
    let (pem, second_kid) = p256_pem(None);
    std::fs::write(&second, pem).unwrap();
    app.flags = vec!["--private-key-path".into(), second.to_str().unwrap().into()];
    app.start();
    let fresh = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(header(&fresh).kid.unwrap(), second_kid);
    // The first file's key can no longer sign, but its tokens still verify.
    assert!(kids(&jwks(&app)).contains(&first_kid));
    assert_eq!(app.introspect(&id, &secret, &token)["active"], true);
    app.stop();

    // Without the file, a generated key takes over at once; the file keys keep verifying.
    app.flags.clear();
    app.start();
    let generated = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let kid = header(&generated).kid.unwrap();
    assert!(kid != first_kid && kid != second_kid);
    assert_eq!(app.introspect(&id, &secret, &fresh)["active"], true);
    assert_eq!(app.introspect(&id, &secret, &generated)["active"], true);
}

#[test]
fn a_log_of_an_earlier_version_without_its_key_file_stops_the_start() {
    use authledger::store::{EventStore, NewEvent};
    let dir = tempfile::tempdir().unwrap();
    {
        let store = authledger::store::Log::embedded(&dir.path().join("log")).unwrap();
        let id = domain::values::ClientId::parse("old").unwrap();
        let event = domain::Event::ClientDeleted(domain::event::ClientDeleted {
            client_id: id.clone(),
        });
        store
            .append(
                &domain::event::client_stream(&id),
                0,
                vec![NewEvent {
                    event,
                    metadata: domain::Metadata::system(),
                }],
            )
            .wait()
            .unwrap();
    }
    let err = failed_start(dir.path(), &[], &[]);
    assert!(
        err.contains("signing-key.pem") && err.contains("restore it"),
        "{err}"
    );
}

#[test]
fn the_signing_key_file_of_an_earlier_version_is_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, kid) = p256_pem(None);
    std::fs::write(dir.path().join("signing-key.pem"), pem).unwrap();
    let mut app = TestApp::on(dir, &[], &[]);
    app.start();
    let keys = keys_list(&app);
    let es: Vec<&Value> = keys.iter().filter(|k| k["algorithm"] == "ES256").collect();
    assert_eq!(es.len(), 1, "{keys:?}");
    assert_eq!(
        (es[0]["kid"].as_str(), es[0]["origin"].as_str()),
        (Some(kid.as_str()), Some("imported"))
    );
    let (id, secret) = app.create_client(&["--scope", "read"]);
    let token = app.token(&id, &secret, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(header(&token).kid.unwrap(), kid);
    app.stop();
    app.start();
    assert_eq!(keys_list(&app).len(), 3, "imported again");
}
