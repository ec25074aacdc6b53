//! Fuzz targets, run on every `cargo test` for a bounded number of cases: the parsers that
//! take what an attacker sends (request bodies, redirect URIs, bearer requests, JWS/JWTs and
//! JWK sets) or what a disk returns (log records, stored events), and the sanitizer every
//! error description passes through. The properties, target by target:
//!
//! - form bodies: no panic; every error description keeps to the RFC 6749 §5.2 charset.
//! - redirect URIs: no panic; a registered URI matches itself, nothing with a fragment, and
//!   an exact match is the registered string or its loopback IP literal on another port.
//! - bearer requests: no panic; a token is taken from exactly one place and is what that
//!   place sent; every refusal's description keeps to the charset, its challenge is a header.
//! - JWS/JWTs: no panic; nothing verifies that a key of the set did not sign: arbitrary text,
//!   near-valid forgeries (`none`, HMAC keyed with a public key, an unknown `kid`, huge
//!   numbers…) and every edit of a signed token.
//! - JWK sets: no panic; what is not a JWKS is refused; a token verifies against a set only
//!   if the set holds its signer's public key; HMAC never verifies.
//! - events: no panic; every event that decodes (every golden one first) encodes and decodes
//!   to itself, an old schema version through its upcasters.
//! - log records: no panic; the stream index and the chain walk read what the decoder
//!   reads; decode ∘ encode is the identity, and encoding it again gives the same bytes.
//! - error descriptions: the sanitizer keeps to the charset and to 300 characters.
//! - DPoP proofs: no panic; a refusal's description keeps to the charset; every one-byte
//!   edit of a good proof is refused or says what the proof said (key, jti, iat).
//! - SAML assertions: no panic (libxmlsec1 included); refusals keep to the charset; every
//!   one-byte edit of a signed assertion is refused or reads the subject, ID and issuer that
//!   were signed.
//!
//! Each target first replays its seed corpus in `fixtures/fuzz/<target>/`, then
//! `FUZZ_CASES` generated inputs (default 2000; CI runs the default, a longer hunt sets
//! more). A failure prints the shrunk input; add it to the corpus with the fix.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::test::TestRequest;
use actix_web::HttpRequest;
use authledger::bearer::{self, BearerError};
use authledger::http::assertion;
use authledger::http::form::Form;
use authledger::jose::KeySet;
use authledger::keys::{material, AccessTokenClaims, Keyring};
use authledger::signed_checkpoint::{self, Statement};
use authledger::store::record;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use domain::values::{RedirectMatching, RedirectUri, Scope, SigningAlgorithm};
use domain::{Cause, Event, Metadata, RecordedEvent};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;

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
        // Exact matching is on the registered string (RFC 9700 §4.1.3); only the port of a
        // loopback IP literal may differ (RFC 8252 §7.3).
        if uri.matches(presented, RedirectMatching::Exact) {
            assert!(
                presented == registered || differs_only_by_port(registered, presented),
                "{registered:?} matched {presented:?}"
            );
        }
    }
    let _ = RedirectUri::parse(presented);
}

/// Whether `registered` is `http://` on a loopback IP literal in its usual form (127.x.y.z
/// in dotted decimal without leading zeros, or `[::1]`) and `presented` is the same string
/// but for the port (present, absent or another one).
fn differs_only_by_port(registered: &str, presented: &str) -> bool {
    // The host as written, and what follows the port.
    fn split(s: &str) -> Option<(&str, &str)> {
        let after = s.strip_prefix("http://")?;
        let host_len = if after.starts_with("[::1]") {
            5
        } else {
            after
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(after.len())
        };
        let (host, rest) = after.split_at(host_len);
        let rest = match rest.strip_prefix(':') {
            Some(port) => {
                let digits = port.bytes().take_while(u8::is_ascii_digit).count();
                if digits == 0 {
                    return None;
                }
                &port[digits..]
            }
            None => rest,
        };
        (rest.is_empty() || rest.starts_with(['/', '?'])).then_some((host, rest))
    }
    let usual_v4_loopback = |host: &str| {
        let parts: Vec<&str> = host.split('.').collect();
        parts.len() == 4
            && parts[0] == "127"
            && parts.iter().all(|p| {
                (1..=3).contains(&p.len())
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (*p == "0" || !p.starts_with('0'))
                    && p.parse::<u16>().is_ok_and(|n| n <= 255)
            })
    };
    match (split(registered), split(presented)) {
        (Some((rh, rr)), Some((ph, pr))) => {
            rh == ph && rr == pr && (rh == "[::1]" || usual_v4_loopback(rh))
        }
        _ => false,
    }
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
        "127.1.2.3",
        "127.000.000.001",
        "127.0.0.01",
        "127.0.0.1.",
        "0x7f.0.0.1",
        "2130706433",
        "0177.0.0.1",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::ffff:127.0.0.1]",
        "localhost",
        "LOCALHOST",
        "app.example",
        "app.example.",
        "",
    ]);
    let port = prop::option::of(0u32..70_000);
    let path = "(/[a-z%0-9.]{0,6}){0,3}";
    let query = prop::option::of("[a-z=&%#?]{0,12}");
    (scheme, host, port, path, query).prop_map(|(s, h, p, path, q)| uri(s, h, p, &path, q))
}

fn uri(scheme: &str, host: &str, port: Option<u32>, path: &str, query: Option<String>) -> String {
    let mut u = format!("{scheme}://{host}");
    if let Some(p) = port {
        u.push_str(&format!(":{p}"));
    }
    u.push_str(path);
    if let Some(q) = query {
        u.push('?');
        u.push_str(&q);
    }
    u
}

/// `http` URIs on a loopback IP literal in its usual form: those whose port may differ.
fn loopback_uri() -> impl Strategy<Value = String> {
    let host = prop::sample::select(vec!["127.0.0.1", "127.1.2.3", "127.255.255.254", "[::1]"]);
    let port = prop::option::of(0u32..70_000);
    let path = "(/[a-z%0-9.]{0,6}){0,3}";
    let query = prop::option::of("[a-z=&%?]{0,12}");
    (host, port, path, query).prop_map(|(h, p, path, q)| uri("http", h, p, &path, q))
}

/// One edit of a URI: its port set (to digits or to something else) or dropped, or one
/// character inserted, replaced or removed, or the whole in capitals.
#[derive(Debug, Clone)]
enum UriEdit {
    Port(Option<String>),
    Insert(Index, char),
    Replace(Index, char),
    Delete(Index),
    Upper,
}

fn uri_edit() -> impl Strategy<Value = UriEdit> {
    let port = prop_oneof![
        "[0-9]{1,6}",
        prop::sample::select(vec!["", "+80", "080", "0x50", "80a", "65536", " 80", "80@"])
            .prop_map(String::from),
    ];
    let c = prop::sample::select(vec![
        ':', '@', '.', '/', '\\', '%', '?', '#', '[', ']', '\t', '\n', ' ', 'A', '0', 'é',
    ]);
    prop_oneof![
        3 => prop::option::of(port).prop_map(UriEdit::Port),
        2 => (any::<Index>(), c.clone()).prop_map(|(i, c)| UriEdit::Insert(i, c)),
        1 => (any::<Index>(), c).prop_map(|(i, c)| UriEdit::Replace(i, c)),
        1 => any::<Index>().prop_map(UriEdit::Delete),
        1 => Just(UriEdit::Upper),
    ]
}

fn edit_uri(s: &str, edit: &UriEdit) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    match edit {
        UriEdit::Port(port) => {
            let Some(start) = s.find("://").map(|i| i + 3) else {
                return s.to_owned();
            };
            let host_end = if s[start..].starts_with('[') {
                s[start..].find(']').map_or(s.len(), |i| start + i + 1)
            } else {
                s[start..]
                    .find([':', '/', '?', '#'])
                    .map_or(s.len(), |i| start + i)
            };
            let rest = &s[host_end..];
            let rest = rest
                .strip_prefix(':')
                .map_or(rest, |r| &r[r.find(['/', '?', '#']).unwrap_or(r.len())..]);
            match port {
                Some(p) => format!("{}:{p}{rest}", &s[..host_end]),
                None => format!("{}{rest}", &s[..host_end]),
            }
        }
        UriEdit::Insert(i, c) => {
            chars.insert(i.index(chars.len() + 1), *c);
            chars.into_iter().collect()
        }
        UriEdit::Replace(i, c) if !chars.is_empty() => {
            let i = i.index(chars.len());
            chars[i] = *c;
            chars.into_iter().collect()
        }
        UriEdit::Delete(i) if !chars.is_empty() => {
            chars.remove(i.index(chars.len()));
            chars.into_iter().collect()
        }
        UriEdit::Replace(..) | UriEdit::Delete(_) => s.to_owned(),
        UriEdit::Upper => s.to_uppercase(),
    }
}

// ---- Bearer requests -------------------------------------------------------------------

/// A request to a protected resource, as a bearer seed file writes it: `METHOD target`, the
/// header lines (`Name: value`, any bytes a header value may hold), an empty line, the body.
#[derive(Debug, Clone)]
struct BearerRequest {
    method: Method,
    target: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
}

fn parse_request(seed: &[u8]) -> BearerRequest {
    let (head, body) = match seed.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&seed[..i], seed[i + 2..].to_vec()),
        None => (seed.strip_suffix(b"\n").unwrap_or(seed), Vec::new()),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let first = std::str::from_utf8(lines.next().unwrap()).unwrap();
    let (method, target) = first.split_once(' ').expect("METHOD target");
    let headers = lines
        .map(|line| {
            let colon = line.iter().position(|&b| b == b':').expect("Name: value");
            let value = &line[colon + 1..];
            let value = value.strip_prefix(b" ").unwrap_or(value);
            (
                HeaderName::from_bytes(&line[..colon]).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            )
        })
        .collect();
    BearerRequest {
        method: Method::from_bytes(method.as_bytes()).unwrap(),
        target: target.to_owned(),
        headers,
        body,
    }
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn check_bearer(r: &BearerRequest) {
    let mut t = TestRequest::default()
        .method(r.method.clone())
        .uri(&r.target);
    for h in &r.headers {
        t = t.append_header(h.clone());
    }
    let req = t.to_http_request();
    let _ = bearer::body_may_carry_token(&req);
    check_bearer_answer(&req, None);
    check_bearer_answer(&req, Some(&r.body));
}

fn check_bearer_answer(req: &HttpRequest, body: Option<&[u8]>) {
    match bearer::presented(req, body) {
        Ok((token, scheme_seen)) => {
            assert!(!token.is_empty() && token.len() <= 8192, "{token:?}");
            // Sent exactly one way (RFC 6750 §2), and the token is what that way carried (of
            // two Authorization headers, the first: see the seed two-authorization-headers).
            let mut sent = Vec::new();
            if let Some(value) = req.headers().get(header::AUTHORIZATION) {
                let (scheme, rest) = value.to_str().unwrap().split_once(' ').unwrap();
                // RFC 6750 §2.1's Bearer, or RFC 9449 §7.1's DPoP: said as it was sent.
                let said = if scheme.eq_ignore_ascii_case("dpop") {
                    bearer::Scheme::Dpop
                } else {
                    assert!(scheme.eq_ignore_ascii_case("bearer"), "{value:?}");
                    bearer::Scheme::Bearer
                };
                assert_eq!(said, scheme_seen, "{value:?}");
                assert!(is_b64token(rest.trim()), "{value:?}");
                sent.push(rest.trim().to_owned());
            }
            let named = |encoded: &[u8]| -> Vec<String> {
                form_urlencoded::parse(encoded)
                    .filter(|(k, _)| k == "access_token")
                    .map(|(_, v)| v.into_owned())
                    .collect()
            };
            sent.extend(named(req.query_string().as_bytes()));
            sent.extend(body.map(named).unwrap_or_default());
            assert_eq!(sent, [token]);
        }
        Err(e) => {
            let description = e.to_string();
            assert!(rfc6749_charset(&description), "{description:?}");
            assert!(
                matches!(e, BearerError::Missing | BearerError::InvalidRequest(_)),
                "{e:?}"
            );
            // The answer carries its challenge, with the description as it is.
            let res = e.response("api");
            assert_eq!(res.status(), actix_web::ResponseError::status_code(&e));
            let challenge = res
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .unwrap_or_else(|| panic!("{e:?} answers without a challenge"))
                .to_str()
                .unwrap();
            match e {
                BearerError::Missing => assert_eq!(challenge, r#"Bearer realm="api""#),
                _ => assert!(
                    challenge.ends_with(&format!(r#"error_description="{description}""#)),
                    "{challenge}"
                ),
            }
        }
    }
}

/// `access_token=…` pairs, the name written in other ways too, as a query or a form body.
fn token_pairs() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("access_token"),
        prop::sample::select(vec![
            "ACCESS_TOKEN",
            "access%5Ftoken",
            "access_token%00",
            "access_token[]",
            "x",
            "",
        ]),
    ];
    let value = prop_oneof![
        "[A-Za-z0-9._~+/=-]{0,16}",
        any::<String>(),
        Just("a".repeat(8192)),
        Just("a".repeat(8193)),
    ];
    let pair = (name, value).prop_map(|(name, value)| {
        let value: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
        format!("{name}={value}")
    });
    prop::collection::vec(pair, 0..3).prop_map(|pairs| pairs.join("&"))
}

/// Authorization header values: the bearer scheme in any case and others, separators,
/// tokens in and out of the `b64token` alphabet, and any bytes a header may hold.
fn authorization() -> impl Strategy<Value = HeaderValue> {
    let scheme = prop::sample::select(vec![
        "Bearer", "bearer", "BEARER", "Basic", "Bearer:", "", "Bearerx", "DPoP",
    ]);
    let separator = prop::sample::select(vec![" ", "  ", "\t", "", " \t"]);
    let token = prop_oneof![
        "[A-Za-z0-9._~+/-]{0,24}={0,3}",
        "[ -~]{0,24}",
        Just("a".repeat(8192)),
        Just("a".repeat(8193)),
    ];
    let end = prop::sample::select(vec!["", " ", "\t", ","]);
    let bytes = prop_oneof![
        4 => (scheme, separator, token, end)
            .prop_map(|(s, sep, t, end)| format!("{s}{sep}{t}{end}").into_bytes()),
        1 => prop::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..64),
    ];
    bytes.prop_map(|b| HeaderValue::from_bytes(&b).unwrap())
}

fn bearer_request() -> impl Strategy<Value = BearerRequest> {
    let method = prop::sample::select(vec![
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ]);
    let query = prop_oneof![
        3 => token_pairs(),
        1 => "[A-Za-z0-9._~!$&'()*+,;=:@/?%-]{0,48}",
    ];
    let content_type = prop::sample::select(vec![
        "application/x-www-form-urlencoded",
        "Application/X-WWW-Form-Urlencoded; charset=utf-8",
        " application/x-www-form-urlencoded ;",
        "application/x-www-form-urlencoded-not",
        "application/json",
        "multipart/form-data; boundary=x",
        "",
    ]);
    let body = prop_oneof![
        3 => token_pairs().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..128),
    ];
    (
        method,
        prop::option::of(query),
        prop::collection::vec(authorization(), 0..3),
        prop::option::of(content_type),
        body,
    )
        .prop_map(|(method, query, authorizations, content_type, body)| {
            let mut headers: Vec<(HeaderName, HeaderValue)> = authorizations
                .into_iter()
                .map(|v| (header::AUTHORIZATION, v))
                .collect();
            headers
                .extend(content_type.map(|c| (header::CONTENT_TYPE, HeaderValue::from_static(c))));
            BearerRequest {
                method,
                target: match query {
                    Some(q) => format!("/api/whoami?{q}"),
                    None => "/api/whoami".into(),
                },
                headers,
                body,
            }
        })
}

// ---- JWS/JWTs and JWK sets ---------------------------------------------------------------

/// The issuer of the fixture's tokens.
const ISSUER: &str = "https://as.example";

/// A key of every algorithm, the JWKS that publishes them, and what they signed.
struct Jose {
    ring: Keyring,
    jwks: Value,
    jwks_text: String,
    keys: KeySet,
    /// An access token signed by each key, with the key's public JWK.
    signed: Vec<(String, Value)>,
    /// A checkpoint signed by the ES256 key, with its public JWK.
    checkpoint: (String, Value),
}

fn jose() -> &'static Jose {
    static JOSE: OnceLock<Jose> = OnceLock::new();
    JOSE.get_or_init(|| {
        let ring = Keyring::generated(SigningAlgorithm::ES256).unwrap();
        let jwks_text = ring.jwks().to_string();
        let jwks: Value = serde_json::from_str(&jwks_text).unwrap();
        let keys = KeySet::parse(&jwks).unwrap();
        assert_eq!(keys.len(), SigningAlgorithm::ALL.len());
        let public = |kid: &str| {
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kid"] == kid)
                .unwrap()
                .clone()
        };
        let signed = SigningAlgorithm::ALL
            .iter()
            .map(|alg| {
                let kid = ring.signing_kid(*alg, 1).unwrap();
                let claims = AccessTokenClaims {
                    iss: ISSUER.into(),
                    sub: "alice".into(),
                    aud: ISSUER.into(),
                    client_id: "svc".into(),
                    scope: "read".into(),
                    iat: 1,
                    exp: 4_000_000_000,
                    jti: "signed-by-the-fixture".into(),
                    act: None,
                    cnf: None,
                };
                (ring.sign(&kid, &claims).unwrap(), public(&kid))
            })
            .collect();
        let kid = ring.signing_kid(SigningAlgorithm::ES256, 1).unwrap();
        let checkpoint_signer = public(&kid);
        let statement = Statement {
            iss: ISSUER.into(),
            iat: 1,
            position: 7,
            head_hash: "ab".repeat(32),
        };
        let checkpoint = ring
            .sign_typed(&kid, signed_checkpoint::TYP, &statement)
            .unwrap();
        Jose {
            ring,
            jwks,
            jwks_text,
            keys,
            signed,
            checkpoint: (checkpoint, checkpoint_signer),
        }
    })
}

/// Every token the fixture signed verifies wherever it is checked: the properties below
/// are about what is refused, and a verifier that refused everything would pass them.
fn check_signed_tokens_verify() {
    let j = jose();
    for (token, _) in &j.signed {
        j.keys.verify::<Value>(token, |_| {}).unwrap();
        assert!(j.ring.verify(token, ISSUER).is_some(), "{token}");
        assert_eq!(
            assertion::verify(token, Some(&j.jwks)).unwrap().subject,
            "alice"
        );
        assert_eq!(
            assertion::unverified_subject(token).as_deref(),
            Some("alice")
        );
    }
    let (statement, _) = signed_checkpoint::read(&j.checkpoint.0, &j.jwks_text).unwrap();
    assert_eq!(statement.position, 7);
}

/// A token that no key of the fixture signed: refused by every verifier, without a panic.
fn check_jws(token: &str) {
    let j = jose();
    let verified = j.keys.verify::<Value>(token, |_| {});
    assert!(verified.is_err(), "{token:?} verified");
    assert!(j.ring.verify(token, ISSUER).is_none(), "{token:?} verified");
    assert!(
        assertion::verify(token, Some(&j.jwks)).is_err(),
        "{token:?} verified"
    );
    assert!(assertion::verify(token, None).is_err());
    // `audit checkpoint` reads a checkpoint from a file: the whitespace around it is not its.
    assert!(
        signed_checkpoint::read(token, &j.jwks_text).is_err() || token.trim() == j.checkpoint.0,
        "{token:?} verified"
    );
    let _ = assertion::unverified_subject(token);
}

/// An edit of a signed token: the token itself verifies, anything else is refused.
fn check_edited_jws(original: &str, edited: &str) {
    if edited == original {
        assert!(jose().keys.verify::<Value>(edited, |_| {}).is_ok());
    } else {
        check_jws(edited);
    }
}

/// A JWS signature with HMAC (`HS256`, `HS384`, `HS512`) over `input`.
fn hmac(alg: &str, secret: &[u8], input: &str) -> Vec<u8> {
    use aws_lc_rs::hmac;
    let algorithm = match alg {
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    };
    hmac::sign(&hmac::Key::new(algorithm, secret), input.as_bytes())
        .as_ref()
        .to_vec()
}

/// What a careless verifier would key HMAC with: a JWK's JSON, the whole JWKS, the key's
/// `k`, `x` or `n` as text and as bytes.
fn secrets_of(jwk: &Value, jwks_text: &str) -> Vec<Vec<u8>> {
    let mut out = vec![jwk.to_string().into_bytes(), jwks_text.as_bytes().to_vec()];
    for member in ["k", "x", "n"] {
        if let Some(text) = jwk.get(member).and_then(Value::as_str) {
            out.push(text.as_bytes().to_vec());
            if let Ok(bytes) = URL_SAFE_NO_PAD.decode(text) {
                out.push(bytes);
            }
        }
    }
    out
}

/// Protected headers near the real ones: every algorithm name and `none`, the fixture's key
/// ids and unknown or ill-typed ones, types, and members a verifier must not act upon.
fn header_json() -> impl Strategy<Value = String> {
    let mut kids: Vec<String> = jose()
        .signed
        .iter()
        .map(|(_, jwk)| jwk["kid"].to_string())
        .collect();
    kids.extend(
        [
            r#""unknown""#,
            r#""""#,
            r#""ZQXJ-not-a-kid""#,
            "0",
            "1e400",
            "-1",
            "null",
            "[]",
            "{}",
            r#""..\/..\/etc\/passwd""#,
            r#""\u0000""#,
        ]
        .map(String::from),
    );
    kids.push(format!("\"{}\"", "k".repeat(5000)));
    let alg = prop::sample::select(vec![
        r#""none""#,
        r#""None""#,
        r#""NONE""#,
        r#""HS256""#,
        r#""HS384""#,
        r#""HS512""#,
        r#""RS256""#,
        r#""RS384""#,
        r#""PS256""#,
        r#""ES256""#,
        r#""ES384""#,
        r#""ES512""#,
        r#""EdDSA""#,
        r#""ES256K""#,
        r#""Ed25519""#,
        r#""""#,
        "null",
        "1e400",
        r#"["ES256"]"#,
        r#""ZQXJ\"<b>""#,
    ]);
    let typ = prop::sample::select(vec![
        r#""at+jwt""#,
        r#""application/at+jwt""#,
        r#""AT+JWT""#,
        r#""JWT""#,
        r#""authledger-checkpoint+jwt""#,
        r#""""#,
        "7",
    ]);
    let extra = prop::sample::select(vec![
        r#""crit":["exp"]"#,
        r#""b64":false"#,
        r#""jku":"https://evil.example/jwks""#,
        r#""x5u":"https://evil.example/cert""#,
        r#""jwk":{"kty":"oct","k":"c2VjcmV0"}"#,
        r#""zip":"DEF""#,
        r#""alg":"none""#,
        r#""kid":"dup""#,
        r#""cty":"JWT""#,
    ]);
    (
        alg,
        prop::option::of(typ),
        prop::option::of(prop::sample::select(kids)),
        prop::collection::vec(extra, 0..3),
    )
        .prop_map(|(alg, typ, kid, extra)| {
            let mut members = vec![format!(r#""alg":{alg}"#)];
            members.extend(typ.map(|t| format!(r#""typ":{t}"#)));
            members.extend(kid.map(|k| format!(r#""kid":{k}"#)));
            members.extend(extra.into_iter().map(String::from));
            format!("{{{}}}", members.join(","))
        })
}

/// Claims near the real ones: every claim the verifiers read, with values of the wrong
/// type, beyond i64 and u64, and out of any float's range.
fn payload_json() -> impl Strategy<Value = String> {
    let claim = prop::sample::select(vec![
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "client_id",
        "scope",
        "position",
        "head_hash",
    ]);
    let value = prop::sample::select(vec![
        r#""https://as.example""#,
        r#""alice""#,
        r#""svc""#,
        r#""read""#,
        r#""""#,
        r#""ZQXJ\u0000""#,
        r#"["https://as.example",7]"#,
        "0",
        "-1",
        "1",
        "4000000000",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "1e400",
        "-1e400",
        "1.5",
        "-0",
        "1E3",
        "null",
        "true",
        "[]",
        "{}",
    ]);
    prop_oneof![
        8 => prop::collection::vec((claim, value), 0..8).prop_map(|members| {
            let members: Vec<String> =
                members.iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect();
            format!("{{{}}}", members.join(","))
        }),
        1 => prop::sample::select(vec!["", "[]", "null", r#""x""#, "{", r#"{"sub":"alice""#, "1e400"])
            .prop_map(String::from),
    ]
}

/// How a forged token writes a segment.
#[derive(Debug, Clone, Copy)]
enum Segment {
    UrlNoPad,
    UrlPadded,
    Standard,
    Raw,
}

fn segment(how: Segment, bytes: &[u8]) -> String {
    match how {
        Segment::UrlNoPad => URL_SAFE_NO_PAD.encode(bytes),
        Segment::UrlPadded => URL_SAFE.encode(bytes),
        Segment::Standard => STANDARD.encode(bytes),
        Segment::Raw => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The signature of a forged token: none, random bytes, HMAC keyed with a fixture key's
/// public JWK, or a real signature of another token (the fixture's tokens name a `jti` and
/// a `head_hash` no generated payload has, so it never signs what it is attached to).
#[derive(Debug, Clone)]
enum Forged {
    Empty,
    Bytes(Vec<u8>),
    Hmac(Index),
    Donor(Index),
}

/// Compact JWSs near the real ones, none of them signed by a key of the fixture.
fn forged_jws() -> impl Strategy<Value = String> {
    let how = || {
        prop_oneof![
            6 => Just(Segment::UrlNoPad),
            1 => Just(Segment::UrlPadded),
            1 => Just(Segment::Standard),
            1 => Just(Segment::Raw),
        ]
    };
    let signature = prop_oneof![
        1 => Just(Forged::Empty),
        2 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Forged::Bytes),
        2 => any::<Index>().prop_map(Forged::Hmac),
        1 => any::<Index>().prop_map(Forged::Donor),
    ];
    let parts = prop_oneof![8 => Just(3usize), 1 => Just(2), 1 => Just(4), 1 => Just(5)];
    (
        header_json(),
        payload_json(),
        how(),
        how(),
        signature,
        parts,
    )
        .prop_map(|(header, payload, h, p, signature, parts)| {
            let j = jose();
            let input = format!(
                "{}.{}",
                segment(h, header.as_bytes()),
                segment(p, payload.as_bytes())
            );
            let alg = serde_json::from_str::<Value>(&header)
                .ok()
                .and_then(|v| v["alg"].as_str().map(String::from))
                .unwrap_or_default();
            let signature = match signature {
                Forged::Empty => String::new(),
                Forged::Bytes(b) => URL_SAFE_NO_PAD.encode(b),
                Forged::Hmac(i) => {
                    let (_, jwk) = &j.signed[i.index(j.signed.len())];
                    URL_SAFE_NO_PAD.encode(hmac(&alg, jwk.to_string().as_bytes(), &input))
                }
                Forged::Donor(i) => {
                    let (token, _) = &j.signed[i.index(j.signed.len())];
                    token.rsplit('.').next().unwrap().to_owned()
                }
            };
            match parts {
                2 => input,
                3 => format!("{input}.{signature}"),
                4 => format!("{input}.{signature}.{signature}"),
                // The five parts of a JWE.
                _ => format!("{input}.{}.{signature}", URL_SAFE_NO_PAD.encode(b"iv")),
            }
        })
}

/// One edit of a signed token.
#[derive(Debug, Clone)]
enum JwsEdit {
    Replace(Index, char),
    Insert(Index, char),
    Delete(Index),
    Truncate(Index),
    Header(String),
    Payload(String),
    Signature(Vec<u8>),
    /// Signed again with HMAC under the header `alg`, keyed with what a public key gives
    /// (the algorithm confusion attack).
    Hmac(&'static str, Index, Index),
    /// The signature of another token.
    Swap(Index),
}

fn jws_edit() -> impl Strategy<Value = JwsEdit> {
    let c = prop::sample::select(vec![
        'A', 'a', '0', '-', '_', '+', '/', '=', '.', ' ', '\t', 'é', '\0',
    ]);
    prop_oneof![
        3 => (any::<Index>(), c.clone()).prop_map(|(i, c)| JwsEdit::Replace(i, c)),
        2 => (any::<Index>(), c).prop_map(|(i, c)| JwsEdit::Insert(i, c)),
        2 => any::<Index>().prop_map(JwsEdit::Delete),
        1 => any::<Index>().prop_map(JwsEdit::Truncate),
        2 => header_json().prop_map(JwsEdit::Header),
        2 => payload_json().prop_map(JwsEdit::Payload),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(JwsEdit::Signature),
        2 => (
            prop::sample::select(vec!["HS256", "HS384", "HS512"]),
            any::<Index>(),
            any::<Index>()
        )
            .prop_map(|(alg, key, secret)| JwsEdit::Hmac(alg, key, secret)),
        1 => any::<Index>().prop_map(JwsEdit::Swap),
    ]
}

fn edit_jws(token: &str, edit: &JwsEdit) -> String {
    let j = jose();
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut chars: Vec<char> = token.chars().collect();
    match edit {
        JwsEdit::Replace(i, c) => {
            let i = i.index(chars.len());
            chars[i] = *c;
            chars.into_iter().collect()
        }
        JwsEdit::Insert(i, c) => {
            chars.insert(i.index(chars.len() + 1), *c);
            chars.into_iter().collect()
        }
        JwsEdit::Delete(i) => {
            chars.remove(i.index(chars.len()));
            chars.into_iter().collect()
        }
        JwsEdit::Truncate(i) => chars[..i.index(chars.len())].iter().collect(),
        JwsEdit::Header(json) => {
            parts[0] = URL_SAFE_NO_PAD.encode(json);
            parts.join(".")
        }
        JwsEdit::Payload(json) => {
            parts[1] = URL_SAFE_NO_PAD.encode(json);
            parts.join(".")
        }
        JwsEdit::Signature(bytes) => {
            parts[2] = URL_SAFE_NO_PAD.encode(bytes);
            parts.join(".")
        }
        JwsEdit::Hmac(alg, key, secret) => {
            let (_, jwk) = &j.signed[key.index(j.signed.len())];
            let header = format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":{}}}"#, jwk["kid"]);
            parts[0] = URL_SAFE_NO_PAD.encode(header);
            let input = format!("{}.{}", parts[0], parts[1]);
            let secrets = secrets_of(jwk, &j.jwks_text);
            let secret = &secrets[secret.index(secrets.len())];
            parts[2] = URL_SAFE_NO_PAD.encode(hmac(alg, secret, &input));
            parts.join(".")
        }
        JwsEdit::Swap(i) => {
            let (other, _) = &j.signed[i.index(j.signed.len())];
            parts[2] = other.rsplit('.').next().unwrap().to_owned();
            parts.join(".")
        }
    }
}

/// Whether `doc` holds, anywhere in it, a key of `jwk`'s type with its public numbers
/// (however many leading zeros an RSA one is written with; whatever curve an EC or OKP key
/// names, which the numbers' length and the algorithm decide).
fn holds_key(doc: &Value, jwk: &Value) -> bool {
    let bytes = |k: &Value, m: &str| {
        k.get(m)
            .and_then(Value::as_str)
            .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
    };
    let number = |k: &Value, m: &str| {
        bytes(k, m).map(|b| b.into_iter().skip_while(|&x| x == 0).collect::<Vec<u8>>())
    };
    let same = |k: &Value| {
        k.get("kty") == jwk.get("kty")
            && match jwk["kty"].as_str() {
                Some("RSA") => {
                    number(k, "n").is_some()
                        && number(k, "n") == number(jwk, "n")
                        && number(k, "e") == number(jwk, "e")
                }
                Some("EC") => {
                    bytes(k, "x").is_some()
                        && bytes(k, "x") == bytes(jwk, "x")
                        && bytes(k, "y") == bytes(jwk, "y")
                }
                Some("OKP") => bytes(k, "x").is_some() && bytes(k, "x") == bytes(jwk, "x"),
                _ => false,
            }
    };
    match doc {
        Value::Object(m) => same(doc) || m.values().any(|v| holds_key(v, jwk)),
        Value::Array(a) => a.iter().any(|v| holds_key(v, jwk)),
        _ => false,
    }
}

/// A JWKS document, as a client registers it, a resource server fetches it or `audit
/// checkpoint` reads it.
fn check_jwks(bytes: &[u8]) {
    let j = jose();
    let text = String::from_utf8_lossy(bytes);
    let doc = serde_json::from_str::<Value>(&text);
    // The checkpoint reader takes the document as text.
    let (checkpoint, signer) = &j.checkpoint;
    if signed_checkpoint::read(checkpoint, &text).is_ok() {
        let doc = doc.as_ref().expect("a JWKS that was read is JSON");
        assert!(
            holds_key(doc, signer),
            "the checkpoint verified against {text}"
        );
    }
    let Ok(doc) = doc else {
        return;
    };
    let parsed = KeySet::parse(&doc);
    let keys = doc.get("keys").and_then(Value::as_array);
    // What is not a JWKS is refused: a scalar, an array, an object without a "keys" array of
    // objects.
    let object_without_keys =
        doc.is_object() && !keys.is_some_and(|k| k.iter().all(Value::is_object));
    if object_without_keys || !doc.is_object() {
        assert!(parsed.is_err(), "{text} read as a JWKS");
    }
    let _ = domain::client::check_jwks(&doc);
    for key in keys.into_iter().flatten() {
        for alg in SigningAlgorithm::ALL {
            let _ = material::public_only(alg, key.clone());
        }
    }
    // A token verifies only against a document that holds its signer's public key.
    for (token, signer) in &j.signed {
        if let Ok(set) = &parsed {
            if set.verify::<Value>(token, |_| {}).is_ok() {
                assert!(holds_key(&doc, signer), "{token} verified against {text}");
            }
        }
        if assertion::verify(token, Some(&doc)).is_ok() {
            assert!(holds_key(&doc, signer), "{token} verified against {text}");
        }
    }
    // HMAC never verifies, keyed with anything the document holds.
    if let Ok(set) = &parsed {
        let payload = URL_SAFE_NO_PAD.encode(r#"{"iss":"x","sub":"x","aud":"x","exp":1}"#);
        for key in keys.into_iter().flatten() {
            let header = serde_json::json!({ "alg": "HS256", "kid": key.get("kid") });
            let input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header.to_string()));
            for secret in secrets_of(key, &text) {
                let token = format!(
                    "{input}.{}",
                    URL_SAFE_NO_PAD.encode(hmac("HS256", &secret, &input))
                );
                assert!(set.verify::<Value>(&token, |_| {}).is_err(), "{token}");
            }
        }
    }
}

/// One edit of the fixture's JWKS: a member of a key set, removed or its number replaced,
/// a key repeated or dropped, the document in another shape.
#[derive(Debug, Clone)]
enum JwkEdit {
    Set(Index, &'static str, Value),
    Remove(Index, &'static str),
    Component(Index, &'static str, Vec<u8>),
    /// The same number with a zero byte in front.
    LeadingZero(Index, &'static str),
    /// The same bytes, base64 with padding.
    Padded(Index, &'static str),
    Repeat(Index),
    Drop(Index),
    Shape(u8),
}

fn jwk_edit() -> impl Strategy<Value = JwkEdit> {
    let member = prop::sample::select(vec![
        "kid", "alg", "kty", "crv", "use", "key_ops", "x", "y", "n", "e", "d", "k", "x5c",
    ]);
    let component = || prop::sample::select(vec!["x", "y", "n", "e"]);
    let kids: Vec<Value> = jose()
        .signed
        .iter()
        .map(|(_, jwk)| jwk["kid"].clone())
        .collect();
    let value = prop_oneof![
        prop::sample::select(vec![
            "RS256",
            "ES256",
            "EdDSA",
            "HS256",
            "none",
            "ES384",
            "PS256",
            "RSA",
            "EC",
            "OKP",
            "oct",
            "XYZ",
            "P-256",
            "P-384",
            "secp256k1",
            "Ed25519",
            "X25519",
            "enc",
            "sig",
            "",
            "c2VjcmV0",
            "AQAB",
        ])
        .prop_map(Value::from),
        prop::sample::select(vec![
            Value::Null,
            Value::from(1),
            Value::from(1e300),
            serde_json::json!([]),
            serde_json::json!({}),
            serde_json::json!(["encrypt"]),
        ]),
        prop::sample::select(kids),
        "[A-Za-z0-9_-]{0,64}".prop_map(Value::from),
    ];
    prop_oneof![
        4 => (any::<Index>(), member.clone(), value).prop_map(|(i, m, v)| JwkEdit::Set(i, m, v)),
        1 => (any::<Index>(), member).prop_map(|(i, m)| JwkEdit::Remove(i, m)),
        2 => (any::<Index>(), component(), prop::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(i, m, b)| JwkEdit::Component(i, m, b)),
        1 => (any::<Index>(), component()).prop_map(|(i, m)| JwkEdit::LeadingZero(i, m)),
        1 => (any::<Index>(), component()).prop_map(|(i, m)| JwkEdit::Padded(i, m)),
        1 => any::<Index>().prop_map(JwkEdit::Repeat),
        1 => any::<Index>().prop_map(JwkEdit::Drop),
        1 => (0u8..5).prop_map(JwkEdit::Shape),
    ]
}

fn edit_jwks(doc: &mut Value, edit: &JwkEdit) {
    if let JwkEdit::Shape(shape) = edit {
        let keys = doc.get("keys").cloned().unwrap_or(Value::Null);
        *doc = match shape {
            // What serde reads as a struct too: its fields in a sequence.
            0 => Value::Array(vec![keys]),
            1 => keys,
            2 => serde_json::json!({ "keys": { "0": keys[0] } }),
            3 => serde_json::json!({ "keys": null }),
            _ => serde_json::json!({ "keys": keys, "more": keys }),
        };
        return;
    }
    let Some(keys) = doc.get_mut("keys").and_then(Value::as_array_mut) else {
        return;
    };
    if keys.is_empty() {
        return;
    }
    let n = keys.len();
    let at = |i: &Index| i.index(n);
    let decode = |v: &Value| {
        v.as_str()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .unwrap_or_default()
    };
    match edit {
        JwkEdit::Set(i, m, v) => keys[at(i)][*m] = v.clone(),
        JwkEdit::Remove(i, m) => {
            if let Some(key) = keys[at(i)].as_object_mut() {
                key.remove(*m);
            }
        }
        JwkEdit::Component(i, m, bytes) => {
            keys[at(i)][*m] = URL_SAFE_NO_PAD.encode(bytes).into();
        }
        JwkEdit::LeadingZero(i, m) => {
            let key = &mut keys[at(i)];
            let mut bytes = vec![0];
            bytes.extend(decode(&key[*m]));
            key[*m] = URL_SAFE_NO_PAD.encode(bytes).into();
        }
        JwkEdit::Padded(i, m) => {
            let key = &mut keys[at(i)];
            let bytes = decode(&key[*m]);
            key[*m] = URL_SAFE.encode(bytes).into();
        }
        JwkEdit::Repeat(i) => {
            let key = keys[at(i)].clone();
            keys.push(key);
        }
        JwkEdit::Drop(i) => {
            keys.remove(at(i));
        }
        JwkEdit::Shape(_) => unreachable!("handled above"),
    }
}

// ---- Log records and events --------------------------------------------------------------

/// Bytes before a binary envelope's stream name (`src/store/record.rs`).
const FIXED: usize = 79;

/// Every golden event (`fixtures/events/<type>/v<N>.json`), as stored: the JSON envelope.
fn golden_events() -> &'static [(String, Vec<u8>)] {
    static GOLDEN: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    GOLDEN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/events");
        let mut out = Vec::new();
        for ty in std::fs::read_dir(root).unwrap() {
            for file in std::fs::read_dir(ty.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
        out.sort();
        assert!(out.len() >= 30, "the golden events are missing");
        out
    })
}

/// The golden events, decoded.
fn golden_decoded() -> Vec<RecordedEvent> {
    golden_events()
        .iter()
        .map(|(name, json)| serde_json::from_slice(json).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

fn check_record(bytes: &[u8]) {
    // Never a panic: damage is an error the log reports with its position.
    let decoded = record::decode(bytes);
    let placement = record::placement(bytes);
    let link = record::link(bytes);
    if let Ok(e) = decoded {
        // The stream index and the chain walk read the same event as the decoder.
        let p = placement.unwrap_or_else(|err| panic!("decodes, but no placement: {err}"));
        assert_eq!(
            (p.position, p.stream.as_ref(), p.version),
            (e.position, e.stream.as_str(), e.version)
        );
        let l = link.unwrap_or_else(|err| panic!("decodes, but no link: {err}"));
        assert_eq!(
            (l.position, l.prev_hash.as_ref()),
            (e.position, e.prev_hash.as_str())
        );
        if bytes.first() == Some(&record::BINARY) {
            // Written again, it reads the same.
            let again = record::encode(&e).unwrap();
            assert_eq!(record::decode(&again).unwrap(), e);
        }
    }
}

/// decode ∘ encode is the identity, in the binary envelope and in the JSON one, and the
/// same event encodes to the same bytes (the chain can be recomputed).
fn check_record_round_trip(event: &RecordedEvent) {
    let bytes = record::encode(event).unwrap_or_else(|e| panic!("{e}: {event:?}"));
    assert_eq!(bytes[0], record::BINARY);
    // The segment files' torn-write detection relies on it.
    assert_ne!(bytes.last(), Some(&0));
    let back = record::decode(&bytes).unwrap_or_else(|e| panic!("{e}: {event:?}"));
    assert_eq!(&back, event);
    assert_eq!(record::encode(&back).unwrap(), bytes);
    check_record(&bytes);
    // The JSON envelope writes RFC 3339 times, of years 0 to 9999 only.
    match serde_json::to_vec(event) {
        Ok(json) => assert_eq!(&record::decode(&json).unwrap(), event),
        Err(e) => assert!(!(0..=9999).contains(&event.recorded_at.year()), "{e}"),
    }
}

/// A hash the chain writes: SHA-256 as lowercase hex.
fn is_chain_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Stored events of every golden payload in generated envelopes: any position, version, id,
/// time the log can hold, stream name, metadata and link.
fn recorded_events() -> impl Strategy<Value = RecordedEvent> {
    let text = || prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter);
    let cause = prop_oneof![
        text().prop_map(Cause::Client),
        text().prop_map(Cause::User),
        text().prop_map(Cause::Admin),
        Just(Cause::System),
    ];
    let metadata = (
        cause,
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(
            |(caused_by, request_id, correlation_id, source_ip, user_agent)| Metadata {
                caused_by,
                request_id,
                correlation_id,
                source_ip,
                user_agent,
            },
        );
    let first = time::OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT);
    let last = time::OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT);
    let at = (
        first.unix_timestamp()..=last.unix_timestamp(),
        0u32..1_000_000_000,
    )
        .prop_map(|(s, n)| {
            time::OffsetDateTime::from_unix_timestamp(s)
                .unwrap()
                .replace_nanosecond(n)
                .unwrap()
        });
    let envelope = (
        any::<u64>(),
        any::<u64>(),
        any::<u128>(),
        at,
        prop_oneof![text(), "[a-z]{1,8}-[a-z0-9-]{0,30}"],
        metadata,
        any::<[u8; 32]>(),
    );
    (prop::sample::select(golden_decoded()), envelope).prop_map(
        |(golden, (position, version, id, recorded_at, stream, metadata, prev))| RecordedEvent {
            position,
            stream,
            version,
            id: uuid::Uuid::from_u128(id),
            recorded_at,
            schema_version: golden.event.schema_version(),
            event: golden.event,
            metadata,
            prev_hash: hex::encode(prev),
        },
    )
}

/// One edit of a binary envelope: a byte changed, its length fields set, cut short or
/// extended.
#[derive(Debug, Clone)]
enum RecordEdit {
    Byte(Index, u8),
    StreamLen(u16),
    TypeLen(u16),
    MetadataLen(u32),
    Truncate(Index),
    Append(Vec<u8>),
}

fn record_edit() -> impl Strategy<Value = RecordEdit> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| RecordEdit::Byte(i, b)),
        1 => any::<u16>().prop_map(RecordEdit::StreamLen),
        1 => any::<u16>().prop_map(RecordEdit::TypeLen),
        1 => prop_oneof![any::<u32>(), 0u32..64].prop_map(RecordEdit::MetadataLen),
        1 => any::<Index>().prop_map(RecordEdit::Truncate),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(RecordEdit::Append),
    ]
}

fn edit_record(bytes: &mut Vec<u8>, edit: &RecordEdit) {
    let len16 = |b: &[u8], at: usize| {
        b.get(at..at + 2)
            .map_or(0, |p| u16::from_le_bytes([p[0], p[1]]) as usize)
    };
    let type_at = FIXED + 2 + len16(bytes, FIXED);
    match edit {
        RecordEdit::Byte(_, _) | RecordEdit::Truncate(_) if bytes.is_empty() => {}
        RecordEdit::Byte(i, b) => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        RecordEdit::StreamLen(n) => {
            if let Some(field) = bytes.get_mut(FIXED..FIXED + 2) {
                field.copy_from_slice(&n.to_le_bytes());
            }
        }
        RecordEdit::TypeLen(n) => {
            if let Some(field) = bytes.get_mut(type_at..type_at + 2) {
                field.copy_from_slice(&n.to_le_bytes());
            }
        }
        RecordEdit::MetadataLen(n) => {
            let at = type_at + 2 + len16(bytes, type_at);
            if let Some(field) = bytes.get_mut(at..at + 4) {
                field.copy_from_slice(&n.to_le_bytes());
            }
        }
        RecordEdit::Truncate(i) => {
            let i = i.index(bytes.len());
            bytes.truncate(i);
        }
        RecordEdit::Append(more) => bytes.extend_from_slice(more),
    }
}

/// Decoding a payload, then encoding and decoding it again, gives the same event.
fn check_payload_round_trip(event: &Event) {
    let mut payload = Vec::new();
    event.encode_payload(&mut payload).unwrap();
    let data = std::str::from_utf8(&payload).unwrap();
    let again = Event::decode(event.type_name(), event.schema_version(), data)
        .unwrap_or_else(|e| panic!("{e}: {event:?} encoded as {data}"));
    assert_eq!(&again, event, "{data}");
}

/// A stored payload: whatever it holds, no panic; what decodes is today's type and
/// version, and round-trips.
fn check_payload(type_name: &str, schema_version: u16, data: &str) {
    if let Ok(event) = Event::decode(type_name, schema_version, data) {
        assert_eq!(event.type_name(), type_name);
        check_payload_round_trip(&event);
    }
}

/// A stored event in the JSON envelope (the form of the golden events and the sled
/// release).
fn check_event(bytes: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        if let (Some(ty), Some(v), Some(data)) = (
            value.get("type").and_then(Value::as_str),
            value.get("schema_version").and_then(Value::as_u64),
            value.get("data"),
        ) {
            check_payload(ty, v.try_into().unwrap_or(u16::MAX), &data.to_string());
        }
    }
    let Ok(event) = serde_json::from_slice::<RecordedEvent>(bytes) else {
        return;
    };
    // Decoding brought it up to today's schema.
    assert_eq!(event.schema_version, event.event.schema_version());
    let json = serde_json::to_vec(&event).unwrap();
    let again: RecordedEvent = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json)));
    assert_eq!(again, event);
    check_payload_round_trip(&event.event);
    // What the log writes: its records hold the links the chain makes.
    if is_chain_hash(&event.prev_hash) {
        check_record_round_trip(&event);
    }
}

/// The member names and the strings of the golden events, and strings near theirs.
fn golden_words() -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut strings: Vec<String> = [
        "login",
        "login_page",
        "password_grant",
        "not a client id",
        "",
        "sha256:",
        "2026-11-23T15:00:10Z",
        "+275760-09-13T00:00:00Z",
    ]
    .map(String::from)
    .to_vec();
    let mut values: Vec<Value> = golden_events()
        .iter()
        .map(|(_, json)| serde_json::from_slice(json).unwrap())
        .collect();
    while let Some(v) = values.pop() {
        match v {
            Value::String(s) => strings.push(s),
            Value::Array(a) => values.extend(a),
            Value::Object(m) => {
                names.extend(m.keys().cloned());
                values.extend(m.into_iter().map(|(_, v)| v));
            }
            _ => {}
        }
    }
    names.sort();
    names.dedup();
    strings.sort();
    strings.dedup();
    (names, strings)
}

/// Any finite float: with serde_json's `float_roundtrip` feature (on in the workspace since
/// this target found floats that came back a unit in the last place off), every one reads
/// back as written.
fn exact_float() -> impl Strategy<Value = Value> {
    any::<f64>().prop_filter_map("a finite float", |f| {
        serde_json::Number::from_f64(f).map(Value::Number)
    })
}

/// JSON values near the events': the golden events' member names and typical strings, huge
/// and negative numbers, nesting.
fn json_value() -> impl Strategy<Value = Value> {
    let (names, strings) = golden_words();
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        exact_float(),
        "\\PC{0,16}".prop_map(Value::from),
        prop::sample::select(strings).prop_map(Value::from),
    ];
    let names = prop_oneof![prop::sample::select(names), "\\PC{0,8}"];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One edit of a stored event: a value (anywhere in it) replaced or removed, a member added,
/// another schema version or type name.
#[derive(Debug, Clone)]
enum EventEdit {
    Replace(Index, Value),
    /// A string, number or boolean replaced by another of its kind (one of these three).
    Similar(Index, String, Value, bool),
    Remove(Index),
    Add(Index, String, Value),
    SchemaVersion(u64),
    TypeName(String),
}

fn event_edit() -> impl Strategy<Value = EventEdit> {
    let similar_string = prop_oneof![prop::sample::select(golden_words().1), "\\PC{0,16}"];
    let similar_number = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u32..4).prop_map(Value::from),
        exact_float(),
    ];
    let type_name = prop_oneof![
        prop::sample::select(Event::TYPE_NAMES.to_vec()).prop_map(String::from),
        prop::sample::select(vec!["", "ClientExploded", "clientregistered", "Event"])
            .prop_map(String::from),
    ];
    prop_oneof![
        4 => (any::<Index>(), json_value()).prop_map(|(i, v)| EventEdit::Replace(i, v)),
        6 => (any::<Index>(), similar_string, similar_number, any::<bool>())
            .prop_map(|(i, s, n, b)| EventEdit::Similar(i, s, n, b)),
        2 => any::<Index>().prop_map(EventEdit::Remove),
        1 => (any::<Index>(), "[a-z_]{1,12}", json_value())
            .prop_map(|(i, k, v)| EventEdit::Add(i, k, v)),
        1 => prop_oneof![0u64..4, Just(65_535), Just(65_536)].prop_map(EventEdit::SchemaVersion),
        1 => type_name.prop_map(EventEdit::TypeName),
    ]
}

/// The JSON pointers of every value in `v` but the root.
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))
            .collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Vec::new(),
    };
    for (key, child) in children {
        let p = format!("{at}/{key}");
        out.push(p.clone());
        pointers(child, &p, out);
    }
}

fn edit_event(v: &mut Value, edit: &EventEdit) {
    let mut all = Vec::new();
    pointers(v, "", &mut all);
    let pick = |i: &Index| all[i.index(all.len())].clone();
    match edit {
        EventEdit::Replace(i, new) => *v.pointer_mut(&pick(i)).unwrap() = new.clone(),
        EventEdit::Similar(i, string, number, boolean) => {
            let at = v.pointer_mut(&pick(i)).unwrap();
            match at {
                Value::String(_) => *at = string.clone().into(),
                Value::Number(_) => *at = number.clone(),
                Value::Bool(_) => *at = (*boolean).into(),
                _ => {}
            }
        }
        EventEdit::Remove(i) => {
            let p = pick(i);
            let (parent, key) = p.rsplit_once('/').unwrap();
            let key = key.replace("~1", "/").replace("~0", "~");
            match v.pointer_mut(parent).unwrap() {
                Value::Object(m) => {
                    m.remove(&key);
                }
                Value::Array(a) => {
                    a.remove(key.parse::<usize>().unwrap());
                }
                _ => unreachable!("a parent holds its children"),
            }
        }
        EventEdit::Add(i, key, new) => {
            if let Value::Object(m) = v.pointer_mut(&pick(i)).unwrap() {
                m.insert(key.clone(), new.clone());
            } else if let Some(Value::Object(m)) = v.get_mut("data") {
                m.insert(key.clone(), new.clone());
            }
        }
        EventEdit::SchemaVersion(n) => v["schema_version"] = (*n).into(),
        EventEdit::TypeName(t) => v["type"] = t.clone().into(),
    }
}

/// The golden events, each with a few edits.
fn edited_events() -> impl Strategy<Value = Vec<u8>> {
    let golden: Vec<Value> = golden_events()
        .iter()
        .map(|(_, json)| serde_json::from_slice(json).unwrap())
        .collect();
    (
        prop::sample::select(golden),
        prop::collection::vec(event_edit(), 1..4),
    )
        .prop_map(|(mut v, edits)| {
            for edit in &edits {
                edit_event(&mut v, edit);
            }
            serde_json::to_vec(&v).unwrap()
        })
}

// ---- The targets -------------------------------------------------------------------------

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
    // Near the registered URI: another port, a character more, less or changed.
    let registered = prop_oneof![uri_like(), loopback_uri()];
    proptest!(config, |(r in registered, edits in prop::collection::vec(uri_edit(), 1..3))| {
        let p = edits.iter().fold(r.clone(), |u, edit| edit_uri(&u, edit));
        check_redirect(&r, &p);
    });
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
fn fuzz_bearer_requests() {
    for seed in corpus("bearer") {
        check_bearer(&parse_request(&seed));
    }
    let config = ProptestConfig::with_cases(cases());
    proptest!(config, |(r in bearer_request())| check_bearer(&r));
}

#[test]
fn fuzz_jws() {
    check_signed_tokens_verify();
    for seed in corpus("jws") {
        check_jws(&String::from_utf8_lossy(&seed));
    }
    let config = ProptestConfig::with_cases(cases());
    proptest!(config, |(token in "\\PC{0,200}")| check_jws(&token));
    proptest!(config, |(token in forged_jws())| check_jws(&token));
    let j = jose();
    let mut signed: Vec<String> = j.signed.iter().map(|(t, _)| t.clone()).collect();
    signed.push(j.checkpoint.0.clone());
    proptest!(config, |(token in prop::sample::select(signed), edit in jws_edit())| {
        check_edited_jws(&token, &edit_jws(&token, &edit));
    });
}

#[test]
fn fuzz_jwks() {
    check_signed_tokens_verify();
    check_jwks(jose().jwks_text.as_bytes());
    for seed in corpus("jwks") {
        check_jwks(&seed);
    }
    let config = ProptestConfig::with_cases(cases());
    proptest!(config, |(bytes in prop::collection::vec(any::<u8>(), 0..256))| check_jwks(&bytes));
    proptest!(config, |(doc in json_value())| check_jwks(doc.to_string().as_bytes()));
    proptest!(config, |(edits in prop::collection::vec(jwk_edit(), 1..4))| {
        let mut doc = jose().jwks.clone();
        for edit in &edits {
            edit_jwks(&mut doc, edit);
        }
        check_jwks(doc.to_string().as_bytes());
    });
}

#[test]
fn fuzz_events() {
    // Every golden event decodes, and round-trips.
    assert_eq!(golden_decoded().len(), golden_events().len());
    for (_, json) in golden_events() {
        check_event(json);
    }
    for seed in corpus("event") {
        check_event(&seed);
    }
    let config = ProptestConfig::with_cases(cases());
    proptest!(config, |(bytes in prop::collection::vec(any::<u8>(), 0..512))| check_event(&bytes));
    proptest!(config, |(bytes in edited_events())| check_event(&bytes));
    let type_name = prop_oneof![
        prop::sample::select(Event::TYPE_NAMES.to_vec()).prop_map(String::from),
        "\\PC{0,20}",
    ];
    let data = prop_oneof![json_value().prop_map(|v| v.to_string()), "\\PC{0,64}"];
    proptest!(config, |(ty in type_name, v in 0u16..4, data in data)| check_payload(&ty, v, &data));
}

#[test]
fn fuzz_log_records() {
    for seed in corpus("record") {
        check_record(&seed);
    }
    let config = ProptestConfig::with_cases(cases());
    proptest!(config, |(bytes in prop::collection::vec(any::<u8>(), 0..1024))| check_record(&bytes));
    // Damaged binary envelopes of real events.
    let binary: Vec<Vec<u8>> = golden_decoded()
        .iter()
        .map(|e| record::encode(e).unwrap())
        .collect();
    proptest!(config, |(
        bytes in prop::sample::select(binary),
        edits in prop::collection::vec(record_edit(), 1..4),
    )| {
        let mut bytes = bytes;
        for edit in &edits {
            edit_record(&mut bytes, edit);
        }
        check_record(&bytes);
    });
}

#[test]
fn log_records_round_trip() {
    for event in golden_decoded() {
        check_record_round_trip(&event);
    }
    let config = ProptestConfig::with_cases(cases());
    proptest!(config, |(event in recorded_events())| check_record_round_trip(&event));
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

#[path = "support/dpop_key.rs"]
#[allow(
    dead_code,
    reason = "the fuzz targets sign proofs; thumbprints are for the API tests"
)]
mod dpop_key;

/// A DPoP proof of a fresh P-256 key for `POST https://as.example/token` at `iat`.
fn dpop_proof(iat: i64) -> String {
    let claims = serde_json::json!({
        "jti": "j1", "htm": "POST", "htu": "https://as.example/token", "iat": iat,
    });
    dpop_key::DpopKey::new().sign("dpop+jwt", &claims)
}

const DPOP_NOW: i64 = 1_800_000_000;

/// A proof never panics the checks; a refusal's description keeps to the charset; an edited
/// proof either fails or says what the original said.
fn check_dpop(proof: &str, original: Option<&authledger::dpop::Verified>) {
    let expected = authledger::dpop::Expected {
        method: "POST",
        url: "https://as.example/token",
        access_token: None,
        now: DPOP_NOW,
    };
    match authledger::dpop::verify(proof, &expected) {
        Ok(v) => {
            if let Some(o) = original {
                assert_eq!(
                    (&v.jkt, &v.jti, v.iat),
                    (&o.jkt, &o.jti, o.iat),
                    "{proof:?}"
                );
            }
        }
        Err(e) => assert!(rfc6749_charset(&e.to_string()), "{e}"),
    }
}

#[test]
fn fuzz_dpop_proofs() {
    for seed in corpus("dpop") {
        check_dpop(&String::from_utf8_lossy(&seed), None);
    }
    let proof = dpop_proof(DPOP_NOW);
    let expected = authledger::dpop::Expected {
        method: "POST",
        url: "https://as.example/token",
        access_token: None,
        now: DPOP_NOW,
    };
    let original = authledger::dpop::verify(&proof, &expected).unwrap();
    let config = ProptestConfig::with_cases(cases());
    proptest!(config, |(text in "\\PC{0,300}")| check_dpop(&text, None));
    proptest!(config, |(at in any::<Index>(), byte in 0x21u8..0x7f)| {
        let mut edited = proof.clone().into_bytes();
        let i = at.index(edited.len());
        edited[i] = byte;
        if let Ok(text) = String::from_utf8(edited) {
            check_dpop(&text, Some(&original));
        }
    });
}

fn saml_fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/saml")
            .join(name),
    )
    .unwrap()
}

/// An assertion never panics the checks; a refusal's description keeps to the charset; an
/// edited signed assertion either fails or reads the subject and id that were signed.
fn check_saml(encoded: &str, cert: &str, original: Option<&authledger::saml::VerifiedAssertion>) {
    match authledger::saml::verify_assertion(encoded, cert) {
        Ok(a) => {
            if let Some(o) = original {
                assert_eq!(
                    (&a.subject, &a.id, &a.issuer),
                    (&o.subject, &o.id, &o.issuer)
                );
            }
        }
        Err(e) => assert!(rfc6749_charset(&e.to_string()), "{e}"),
    }
}

#[test]
fn fuzz_saml_assertions() {
    let cert = saml_fixture("idp-cert.pem");
    for seed in corpus("saml") {
        check_saml(&URL_SAFE_NO_PAD.encode(&seed), &cert, None);
    }
    let fields = authledger::saml::AssertionFields {
        id: "_fuzz",
        issuer: "https://idp.example.com/saml",
        name_id_xml: "alice@example.com",
        audience: "https://as.example.com/",
        recipient: "https://as.example.com/token",
        issued_at: DPOP_NOW,
        expires_at: DPOP_NOW + 300,
    };
    let signed = authledger::saml::sign_assertion(
        &authledger::saml::assertion_template(&fields),
        &saml_fixture("idp-key.pem"),
        &cert,
    )
    .unwrap();
    let original =
        authledger::saml::verify_assertion(&URL_SAFE_NO_PAD.encode(&signed), &cert).unwrap();
    // Each signature check runs libxmlsec1: a tenth of the cases keeps this target quick.
    let config = ProptestConfig::with_cases(cases() / 10);
    proptest!(config, |(bytes in prop::collection::vec(any::<u8>(), 0..400))| {
        check_saml(&URL_SAFE_NO_PAD.encode(&bytes), &cert, None);
    });
    proptest!(config, |(at in any::<Index>(), byte in 0x20u8..0x7f)| {
        let mut edited = signed.clone().into_bytes();
        let i = at.index(edited.len());
        edited[i] = byte;
        check_saml(&URL_SAFE_NO_PAD.encode(&edited), &cert, Some(&original));
    });
}
