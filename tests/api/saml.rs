//! The SAML 2.0 bearer assertion grant (RFC 7522) against the real server, with assertions
//! signed now by the test IdP key in fixtures/saml/: a valid one, and the attacks — a
//! wrapped signature, a tampered NameID, a comment in the NameID, an unsigned, expired,
//! replayed or foreign-signed assertion, an XXE payload — each refused without a 5xx.

use crate::helpers::{spawn_app, TestApp};
use authledger::saml::{assertion_template, sign_assertion, AssertionFields};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:saml2-bearer";
const IDP: &str = "https://idp.example.com/saml";
const AUDIENCE: &str = "https://as.example.com/";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/fixtures/saml/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Idp {
    token_url: String,
}

impl Idp {
    fn fields<'a>(
        &'a self,
        id: &'a str,
        name_id: &'a str,
        issued: i64,
        expires: i64,
    ) -> AssertionFields<'a> {
        AssertionFields {
            id,
            issuer: IDP,
            name_id_xml: name_id,
            audience: AUDIENCE,
            recipient: &self.token_url,
            issued_at: issued,
            expires_at: expires,
        }
    }

    /// Signed by the trusted key (or `key`/`cert`).
    fn signed_by(&self, f: &AssertionFields<'_>, key: &str, cert: &str) -> String {
        sign_assertion(&assertion_template(f), &fixture(key), &fixture(cert)).unwrap()
    }

    fn signed(&self, id: &str, name_id: &str) -> String {
        let t = now();
        self.signed_by(
            &self.fields(id, name_id, t - 5, t + 300),
            "idp-key.pem",
            "idp-cert.pem",
        )
    }
}

fn setup(app: &TestApp) -> (String, String, Idp) {
    let cert = format!("{}/fixtures/saml/idp-cert.pem", env!("CARGO_MANIFEST_DIR"));
    let (id, secret) = app.create_client(&[
        "--grant-type",
        GRANT,
        "--scope",
        "read",
        "--saml-issuer",
        IDP,
        "--saml-certificate",
        &format!("@{cert}"),
        "--saml-audience",
        AUDIENCE,
    ]);
    let idp = Idp {
        token_url: format!("{}/token", app.base),
    };
    (id, secret, idp)
}

fn present(app: &TestApp, id: &str, secret: &str, assertion: &str) -> (u16, Value) {
    app.post_form(
        "/token",
        Some((id, secret)),
        &[("grant_type", GRANT), ("assertion", assertion)],
    )
}

fn b64(xml: &str) -> String {
    URL_SAFE_NO_PAD.encode(xml)
}

#[test]
fn a_signed_assertion_of_the_trusted_idp_gets_a_token_once() {
    let app = spawn_app();
    let (id, secret, idp) = setup(&app);
    let assertion = b64(&idp.signed("_a1", "alice@example.com"));
    let (status, t) = present(&app, &id, &secret, &assertion);
    assert_eq!(status, 200, "{t}");
    let token = t["access_token"].as_str().unwrap();
    let i = app.introspect(&id, &secret, token);
    assert_eq!(i["sub"], "alice@example.com");
    assert_eq!(i["scope"], "read");
    let (status, body) = present(&app, &id, &secret, &assertion);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "replayed: {body}"
    );
    assert_eq!(app.events("SamlAssertionAccepted").len(), 1);
    let (_, meta) = app.get("/.well-known/oauth-authorization-server");
    assert!(meta["grant_types_supported"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g == GRANT));
}

#[test]
fn wrapped_tampered_unsigned_expired_foreign_and_xxe_assertions_are_refused() {
    let app = spawn_app();
    let (id, secret, idp) = setup(&app);
    let t = now();
    let genuine = idp.signed("_genuine", "alice@example.com");
    let body_of = |xml: &str| {
        xml.trim_start_matches(|c| c != '>')
            .trim_start_matches('>')
            .to_owned()
    };
    let genuine_element = if genuine.starts_with("<?xml") {
        body_of(&genuine)
    } else {
        genuine.clone()
    };

    // Signature wrapping: an unsigned assertion for admin carries the signed one inside.
    let wrapped = format!(
        concat!(
            r#"<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_evil" IssueInstant="{issued}" Version="2.0">"#,
            r#"<saml2:Issuer>{idp}</saml2:Issuer>"#,
            r#"<saml2:Subject><saml2:NameID>admin@example.com</saml2:NameID>"#,
            r#"<saml2:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">"#,
            r#"<saml2:SubjectConfirmationData NotOnOrAfter="{expires}" Recipient="{recipient}"/>"#,
            r#"</saml2:SubjectConfirmation></saml2:Subject>"#,
            r#"<saml2:Conditions><saml2:AudienceRestriction><saml2:Audience>{aud}</saml2:Audience></saml2:AudienceRestriction></saml2:Conditions>"#,
            r#"<saml2:Advice>{genuine}</saml2:Advice></saml2:Assertion>"#
        ),
        issued = "2026-01-01T00:00:00Z",
        idp = IDP,
        expires = "2100-01-01T00:00:00Z",
        recipient = idp.token_url,
        aud = AUDIENCE,
        genuine = genuine_element,
    );
    let tampered = genuine.replacen("alice@example.com", "admin@example.com", 1);
    let unsigned = {
        let start = genuine.find("<ds:Signature").unwrap();
        let end = genuine.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        format!("{}{}", &genuine[..start], &genuine[end..])
    };
    let expired = idp.signed_by(
        &idp.fields("_old", "alice@example.com", t - 7200, t - 3600),
        "idp-key.pem",
        "idp-cert.pem",
    );
    let foreign = idp.signed_by(
        &idp.fields("_foreign", "alice@example.com", t - 5, t + 300),
        "other-key.pem",
        "other-cert.pem",
    );
    let xxe = format!(
        concat!(
            r#"<?xml version="1.0"?><!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>"#,
            r#"<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_x" Version="2.0">"#,
            r#"<saml2:Issuer>{}</saml2:Issuer><saml2:Subject><saml2:NameID>&xxe;</saml2:NameID></saml2:Subject></saml2:Assertion>"#
        ),
        IDP
    );
    let wrong_audience = {
        let f = AssertionFields {
            audience: "https://someone-else.example.com/",
            ..idp.fields("_aud", "alice@example.com", t - 5, t + 300)
        };
        idp.signed_by(&f, "idp-key.pem", "idp-cert.pem")
    };
    for (xml, what) in [
        (wrapped, "a wrapped signature"),
        (tampered, "a tampered NameID"),
        (unsigned, "an unsigned assertion"),
        (expired, "an expired assertion"),
        (foreign, "another IdP's signature"),
        (xxe, "an XXE payload"),
        (wrong_audience, "another audience"),
    ] {
        let (status, body) = present(&app, &id, &secret, &b64(&xml));
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{what}: {body}");
        assert!(!body.to_string().contains("root:"), "{what}: {body}");
    }
    for junk in ["%%%", "PGE+", &b64("not xml at all")] {
        let (status, body) = present(&app, &id, &secret, junk);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
    }
    // Past the token endpoint's 16 KiB body: refused before it is read.
    let (status, body) = present(&app, &id, &secret, &"A".repeat(100_000));
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("invalid_request")),
        "{body}"
    );
    assert!(app.events("SamlAssertionAccepted").is_empty());

    // A comment inside the NameID does not cut the subject short: the token is for the
    // whole name the IdP signed, never for the part before the comment.
    let signed = idp.signed("_c", "admin@example.com.evil.test");
    let commented = signed.replacen(
        "admin@example.com.evil.test",
        "admin@example.com<!---->.evil.test",
        1,
    );
    let (status, t) = present(&app, &id, &secret, &b64(&commented));
    assert_eq!(status, 200, "{t}");
    let i = app.introspect(&id, &secret, t["access_token"].as_str().unwrap());
    assert_eq!(i["sub"], "admin@example.com.evil.test");
}
