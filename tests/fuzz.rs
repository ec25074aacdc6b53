//! Fuzz targets, run on every `cargo test` for a bounded number of cases: the parsers that
//! take what an attacker sends (request bodies, redirect URIs) or what a disk returns (log
//! records), and the sanitizer every error description passes through.
//!
//! Each target first replays its seed corpus in `fixtures/fuzz/<target>/`, then
//! `FUZZ_CASES` generated inputs (default 2000; CI runs the default, a longer hunt sets
//! more). A failure prints the shrunk input; add it to the corpus with the fix.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use authledger::http::form::Form;
use authledger::store::record;
use domain::values::{RedirectMatching, RedirectUri, Scope};
use proptest::prelude::*;
use std::path::Path;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/fuzz")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no seed", dir.display());
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// RFC 6749 §5.2: `error_description` is %x20-21 / %x23-5B / %x5D-7E.
fn rfc6749_charset(s: &str) -> bool {
    s.bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

fn check_form(body: &[u8]) {
    match Form::parse(body) {
        Ok(form) => {
            // A parsed form answers any lookup; a missing parameter's error is clean too.
            if let Err(e) = form.require("grant_type") {
                assert!(rfc6749_charset(&e.description), "{:?}", e.description);
            }
            if let Some(scope) = form.get("scope") {
                if let Err(e) = Scope::parse_list(scope) {
                    let described = domain::oauth::error_description(&e.0);
                    assert!(rfc6749_charset(&described), "{described:?}");
                }
            }
        }
        Err(e) => assert!(rfc6749_charset(&e.description), "{:?}", e.description),
    }
}

fn check_redirect(registered: &str, presented: &str) {
    if let Ok(uri) = RedirectUri::parse(registered) {
        for mode in [RedirectMatching::Exact, RedirectMatching::Extended] {
            // The registered string itself always matches; nothing else may panic.
            assert!(uri.matches(registered, mode), "{registered:?} {mode:?}");
            let _ = uri.matches(presented, mode);
        }
        // A presented URI with a fragment never matches (RFC 6749 §3.1.2).
        if presented != registered {
            let with_fragment = format!("{presented}#x");
            assert!(!uri.matches(&with_fragment, RedirectMatching::Exact));
        }
    }
    let _ = RedirectUri::parse(presented);
}

fn check_record(bytes: &[u8]) {
    // Never a panic: damage is an error the log reports with its position.
    let _ = record::decode(bytes);
}

fn check_description(text: &str) {
    let out = domain::oauth::error_description(text);
    assert!(rfc6749_charset(&out), "{out:?}");
    assert!(out.chars().count() <= 300);
}

fn two_lines(seed: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(seed);
    let mut lines = text.lines();
    (
        lines.next().unwrap_or_default().to_owned(),
        lines.next().unwrap_or_default().to_owned(),
    )
}

/// URIs near the interesting forms: loopback in every notation, ports, queries, fragments.
fn uri_like() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "http",
        "https",
        "HTTP",
        "com.example.app",
        "javascript",
    ]);
    let host = prop::sample::select(vec![
        "127.0.0.1",
        "127.000.000.001",
        "0x7f.0.0.1",
        "2130706433",
        "0177.0.0.1",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "localhost",
        "LOCALHOST",
        "app.example",
        "app.example.",
        "",
    ]);
    let port = prop::option::of(0u32..70_000);
    let path = "(/[a-z%0-9.]{0,6}){0,3}";
    let query = prop::option::of("[a-z=&%#?]{0,12}");
    (scheme, host, port, path, query).prop_map(|(s, h, p, path, q)| {
        let mut u = format!("{s}://{h}");
        if let Some(p) = p {
            u.push_str(&format!(":{p}"));
        }
        u.push_str(&path);
        if let Some(q) = q {
            u.push('?');
            u.push_str(&q);
        }
        u
    })
}

#[test]
fn fuzz_form_bodies() {
    for seed in corpus("form") {
        check_form(&seed);
    }
    let config = ProptestConfig::with_cases(cases());
    proptest!(config, |(body in prop::collection::vec(any::<u8>(), 0..512))| check_form(&body));
    proptest!(config, |(body in "([a-z_]{0,12}=[^&]{0,24}&?){0,8}")| check_form(body.as_bytes()));
}

#[test]
fn fuzz_redirect_uris() {
    for seed in corpus("redirect_uri") {
        let (registered, presented) = two_lines(&seed);
        check_redirect(&registered, &presented);
    }
    let config = ProptestConfig::with_cases(cases());
    proptest!(config, |(r in uri_like(), p in uri_like())| check_redirect(&r, &p));
    proptest!(config, |(r in "\\PC{0,64}", p in "\\PC{0,64}")| check_redirect(&r, &p));
}

#[test]
fn loopback_in_other_notations_never_matches_a_registered_literal() {
    let registered = RedirectUri::parse("http://127.0.0.1/cb").unwrap();
    let config = ProptestConfig::with_cases(cases());
    proptest!(config, |(
        host in prop::sample::select(vec!["127.000.000.001", "0x7f.0.0.1", "2130706433",
            "0177.0.0.1", "127.1", "127.0.1", "0x7f000001", "localhost"]),
        port in prop::option::of(1u32..65_536),
    )| {
        let presented = match port {
            Some(p) => format!("http://{host}:{p}/cb"),
            None => format!("http://{host}/cb"),
        };
        prop_assert!(!registered.matches(&presented, RedirectMatching::Exact), "{}", presented);
    });
    proptest!(config, |(port in 1u32..65_536)| {
        let presented = format!("http://127.0.0.1:{port}/cb");
        prop_assert!(registered.matches(&presented, RedirectMatching::Exact));
    });
}

#[test]
fn fuzz_log_records() {
    for seed in corpus("record") {
        check_record(&seed);
    }
    let config = ProptestConfig::with_cases(cases());
    proptest!(config, |(bytes in prop::collection::vec(any::<u8>(), 0..1024))| check_record(&bytes));
}

#[test]
fn fuzz_error_descriptions() {
    for seed in corpus("error_description") {
        check_description(&String::from_utf8_lossy(&seed));
    }
    let config = ProptestConfig::with_cases(cases());
    proptest!(config, |(text in "\\PC{0,400}")| check_description(&text));
    proptest!(config, |(text in any::<String>())| check_description(&text));
}

#[test]
fn explore_tmp() {
    use base64::Engine as _;
    let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let arr = serde_json::json!([[]]);
    println!(
        "array jwks: {:?}",
        authledger::jose::KeySet::parse(&arr).map(|k| k.len())
    );
    let arr2 = serde_json::json!([[{"kty":"EC","crv":"P-256","x":"x","y":"y"}]]);
    println!(
        "array jwks2: {:?}",
        authledger::jose::KeySet::parse(&arr2).map(|k| k.len())
    );
    let ks = authledger::jose::KeySet::parse(&serde_json::json!({"keys":[]})).unwrap();
    for h in [
        r#"{"alg":"ZQXJ<b>\"x"}"#,
        r#"{"alg":"ES256","kid":5}"#,
        r#"{"alg":"ES256","zip":"ZQXJ"}"#,
    ] {
        let t = format!("{}.{}.sig", b(h), b(r#"{"sub":"a"}"#));
        println!(
            "{h}: {:?}",
            ks.verify::<serde_json::Value>(&t, |_| {}).map(|_| ())
        );
        println!(
            "  assertion: {:?}",
            authledger::http::assertion::verify(&t, Some(&serde_json::json!({"keys":[]})))
        );
    }
}
