//! JWT assertions (RFC 7523): the claim rules for the `jwt-bearer` grant (§3) and for
//! `private_key_jwt` client authentication (§3, RFC 7521 §5.2), and the one-time use of each
//! assertion's `jti`. The signature is checked before a command is built; what remains here
//! is what the claims say and whether the `jti` was seen.

use crate::client::Client;
use crate::event::{AssertionUse, Event, JwtAssertionAccepted};
use crate::grant::NewAccessToken;
use crate::token::{Refusal, TokenError};
use crate::values::{GrantType, Scope};

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: i64 = 30;

/// Longest an assertion may live from now: it bounds how long a `jti` must be remembered.
pub const MAX_LIFETIME_SECS: i64 = 3600;

/// Longest `jti` kept.
pub const MAX_JTI_LEN: usize = 256;

/// The claims of an assertion whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `aud`, one or several.
    pub audience: Vec<String>,
    /// `jti`.
    pub jti: String,
    /// `exp`.
    pub expires_at: i64,
    /// `nbf`, if present.
    pub not_before: Option<i64>,
    /// `iat`, if present.
    pub issued_at: Option<i64>,
}

/// Accept an assertion once: the claim checks, then the record of its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptAssertion {
    /// The verified claims.
    pub assertion: Assertion,
    /// What it is presented for.
    pub used_for: AssertionUse,
    /// The identifiers of this server an assertion may name as audience (issuer and
    /// token endpoint URL).
    pub audiences: Vec<String>,
    /// Whether its `jti` was accepted before and has not expired; filled by the actor from
    /// the token index and its own events in flight.
    pub seen: bool,
    /// Now.
    pub now: i64,
}

/// The `jwt-bearer` grant (RFC 7523 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtBearerGrant {
    /// The assertion.
    pub accept: AcceptAssertion,
    /// Scopes asked for; `None`: the client's default.
    pub scopes: Option<Vec<Scope>>,
    /// The new access token.
    pub token: NewAccessToken,
}

/// Whether an assertion accepted with expiry `expires_at` is still remembered at `now` (until
/// it expires, plus the clock leeway).
pub fn remembered(expires_at: i64, now: i64) -> bool {
    expires_at.saturating_add(LEEWAY_SECS) >= now
}

impl JwtAssertionAccepted {
    /// Whether this record still bars `jti` of `issuer` for `client` at `now`.
    pub fn bars(&self, client: &str, issuer: &str, jti: &str, now: i64) -> bool {
        self.client_id.as_str() == client
            && self.issuer == issuer
            && self.jti == jti
            && remembered(self.expires_at, now)
    }
}

/// Why an assertion was refused; its text is the `error_description` the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionRejected {
    /// A client assertion must name the client as both `iss` and `sub`.
    #[error("a client assertion's iss and sub must both be the client_id")]
    NotTheClient,
    /// The grant's issuer is not one the client trusts.
    #[error("issuer {0:?} is not trusted by this client")]
    UntrustedIssuer(String),
    /// `sub` is empty or too long.
    #[error("the assertion needs a sub of 1 to 256 characters")]
    BadSubject,
    /// `aud` names neither the issuer nor the token endpoint.
    #[error("the assertion's aud names neither this issuer nor its token endpoint")]
    WrongAudience,
    /// `exp` has passed (beyond the leeway).
    #[error("the assertion has expired")]
    Expired,
    /// `exp` is further away than an assertion may live.
    #[error("the assertion expires more than {MAX_LIFETIME_SECS} seconds from now")]
    LivesTooLong,
    /// `nbf` lies ahead.
    #[error("the assertion is not valid yet (nbf)")]
    NotYetValid,
    /// `iat` lies ahead.
    #[error("the assertion was issued in the future (iat)")]
    IssuedInTheFuture,
    /// `jti` is empty or too long.
    #[error("the assertion needs a jti of 1 to {MAX_JTI_LEN} characters")]
    BadJti,
    /// The `jti` was accepted before and is still remembered.
    #[error("the assertion's jti was used before")]
    Replayed,
}

/// Checks an assertion's claims for `client`.
pub fn check(client: &Client, cmd: &AcceptAssertion) -> Result<(), AssertionRejected> {
    use AssertionRejected as R;
    let a = &cmd.assertion;
    let now = cmd.now;
    match cmd.used_for {
        AssertionUse::ClientAuthentication => {
            if a.issuer != client.client_id.as_str() || a.subject != client.client_id.as_str() {
                return Err(R::NotTheClient);
            }
        }
        AssertionUse::AuthorizationGrant => {
            if !client.trusts_issuer(&a.issuer) {
                return Err(R::UntrustedIssuer(truncated(&a.issuer)));
            }
            if a.subject.is_empty() || a.subject.len() > 256 {
                return Err(R::BadSubject);
            }
        }
    }
    if !a.audience.iter().any(|aud| cmd.audiences.contains(aud)) {
        return Err(R::WrongAudience);
    }
    if a.expires_at.saturating_add(LEEWAY_SECS) < now {
        return Err(R::Expired);
    }
    if a.expires_at.saturating_sub(now) > MAX_LIFETIME_SECS {
        return Err(R::LivesTooLong);
    }
    if a.not_before
        .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
    {
        return Err(R::NotYetValid);
    }
    if a.issued_at
        .is_some_and(|iat| iat > now.saturating_add(LEEWAY_SECS))
    {
        return Err(R::IssuedInTheFuture);
    }
    if a.jti.is_empty() || a.jti.len() > MAX_JTI_LEN {
        return Err(R::BadJti);
    }
    if cmd.seen {
        return Err(R::Replayed);
    }
    Ok(())
}

fn truncated(s: &str) -> String {
    s.chars().take(80).collect()
}

fn accepted(client: &Client, cmd: &AcceptAssertion) -> Event {
    Event::JwtAssertionAccepted(JwtAssertionAccepted {
        client_id: client.client_id.clone(),
        issuer: cmd.assertion.issuer.clone(),
        subject: cmd.assertion.subject.clone(),
        jti: cmd.assertion.jti.clone(),
        used_for: cmd.used_for,
        expires_at: cmd.assertion.expires_at,
    })
}

/// Client authentication by assertion: recorded so that it cannot be replayed.
pub fn authenticate(client: &Client, cmd: &AcceptAssertion) -> Result<Vec<Event>, TokenError> {
    check(client, cmd).map_err(TokenError::InvalidClient)?;
    Ok(vec![accepted(client, cmd)])
}

/// The `jwt-bearer` grant: an access token for the assertion's subject.
pub fn grant(client: &Client, cmd: &JwtBearerGrant) -> Result<Vec<Event>, Refusal> {
    crate::grant::allowed(client, GrantType::JwtBearer)?;
    check(client, &cmd.accept).map_err(|e| TokenError::InvalidGrant(e.into()))?;
    let scopes = crate::grant::granted_scopes(client, &cmd.scopes)?;
    let terms = crate::grant::token_terms(client, &cmd.token, None)?;
    let issued = crate::grant::access_token_issued(
        client,
        &cmd.token,
        cmd.accept.assertion.subject.clone(),
        scopes,
        GrantType::JwtBearer,
        terms,
        cmd.accept.now,
    );
    Ok(vec![
        accepted(client, &cmd.accept),
        Event::AccessTokenIssued(issued),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::{id, registration};
    use crate::client::{self, ClientCommand, ClientError, ClientState};
    use crate::testing::Scenario;
    use crate::token::GrantRejected;
    use crate::token::{decide, TokenCommand};
    use crate::values::HashKey;
    use crate::values::{AuthMethod, TokenFormat};
    use uuid::Uuid;

    const NOW: i64 = 1_800_000_000;
    const AUD: &str = "https://as.example";

    fn jwks() -> serde_json::Value {
        serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]})
    }

    fn registered(trusted: &[&str]) -> Event {
        let mut r = registration();
        r.grant_types.push(GrantType::JwtBearer);
        r.jwks = Some(jwks());
        r.trusted_issuers = trusted.iter().map(|s| s.to_string()).collect();
        r.token_format = TokenFormat::Opaque;
        client::decide(&ClientState::Unregistered, &ClientCommand::Register(r))
            .unwrap()
            .remove(0)
    }

    fn assertion() -> Assertion {
        Assertion {
            issuer: "idp.example".into(),
            subject: "alice".into(),
            audience: vec![AUD.into()],
            jti: "a-1".into(),
            expires_at: NOW + 300,
            not_before: None,
            issued_at: Some(NOW),
        }
    }

    fn bearer(a: Assertion, seen: bool) -> TokenCommand {
        TokenCommand::JwtBearer(JwtBearerGrant {
            accept: AcceptAssertion {
                assertion: a,
                used_for: AssertionUse::AuthorizationGrant,
                audiences: vec![AUD.into(), format!("{AUD}/token")],
                seen,
                now: NOW,
            },
            scopes: None,
            token: NewAccessToken {
                jti: Uuid::from_u128(7),
                opaque_token_hash: HashKey::for_tests().hash("at"),
                kid: None,
                dpop: None,
                resources: Vec::new(),
            },
        })
    }

    fn scenario() -> Scenario<ClientState, TokenCommand, Refusal> {
        Scenario::new(decide, client::evolve)
    }

    fn refused(a: Assertion, seen: bool, why: AssertionRejected) {
        let err = decide(
            &ClientState::default().tap(&registered(&["idp.example"])),
            &bearer(a, seen),
        )
        .unwrap_err();
        match err.error {
            TokenError::InvalidGrant(m) => assert_eq!(m, GrantRejected::Assertion(why)),
            other => panic!("expected invalid_grant, got {other:?}"),
        }
        assert!(err.record.is_empty());
    }

    trait Tap {
        fn tap(self, e: &Event) -> Self;
    }
    impl Tap for ClientState {
        fn tap(mut self, e: &Event) -> Self {
            client::evolve(&mut self, e);
            self
        }
    }

    #[test]
    fn check_names_each_refusal_by_its_kind() {
        let state = ClientState::default().tap(&registered(&["idp.example"]));
        let ClientState::Active(client) = &state else {
            panic!("registered");
        };
        let accept = |a: Assertion, seen: bool| match bearer(a, seen) {
            TokenCommand::JwtBearer(g) => g.accept,
            _ => unreachable!(),
        };
        use AssertionRejected as R;
        assert_eq!(check(client, &accept(assertion(), false)), Ok(()));
        assert_eq!(check(client, &accept(assertion(), true)), Err(R::Replayed));
        let mut a = assertion();
        a.expires_at = NOW - 3600;
        assert_eq!(check(client, &accept(a, false)), Err(R::Expired));
        let mut a = assertion();
        a.issuer = "evil.example".into();
        assert_eq!(
            check(client, &accept(a, false)),
            Err(R::UntrustedIssuer("evil.example".into()))
        );
        let mut a = assertion();
        a.audience = vec!["https://elsewhere".into()];
        assert_eq!(check(client, &accept(a, false)), Err(R::WrongAudience));
    }

    #[test]
    fn a_valid_assertion_records_its_jti_and_issues_a_token_for_its_subject() {
        let events = decide(
            &ClientState::default().tap(&registered(&["idp.example"])),
            &bearer(assertion(), false),
        )
        .unwrap();
        assert!(matches!(&events[0], Event::JwtAssertionAccepted(a)
            if a.jti == "a-1" && a.issuer == "idp.example" && a.expires_at == NOW + 300));
        assert!(matches!(&events[1], Event::AccessTokenIssued(t)
            if t.subject == "alice" && t.grant_type == GrantType::JwtBearer && t.client_id == id()));
    }

    #[test]
    fn every_bad_claim_is_refused_with_invalid_grant() {
        let with = |f: fn(&mut Assertion)| {
            let mut a = assertion();
            f(&mut a);
            a
        };
        refused(
            with(|a| a.expires_at = NOW - 31),
            false,
            AssertionRejected::Expired,
        );
        refused(
            with(|a| a.expires_at = i64::MAX),
            false,
            AssertionRejected::LivesTooLong,
        );
        refused(
            with(|a| a.expires_at = i64::MIN),
            false,
            AssertionRejected::Expired,
        );
        refused(
            with(|a| a.expires_at = NOW + 3601),
            false,
            AssertionRejected::LivesTooLong,
        );
        refused(
            with(|a| a.not_before = Some(NOW + 31)),
            false,
            AssertionRejected::NotYetValid,
        );
        refused(
            with(|a| a.issued_at = Some(NOW + 31)),
            false,
            AssertionRejected::IssuedInTheFuture,
        );
        refused(
            with(|a| a.audience = vec!["https://other".into()]),
            false,
            AssertionRejected::WrongAudience,
        );
        refused(
            with(|a| a.issuer = "evil.example".into()),
            false,
            AssertionRejected::UntrustedIssuer("evil.example".into()),
        );
        refused(
            with(|a| a.jti = String::new()),
            false,
            AssertionRejected::BadJti,
        );
        refused(
            with(|a| a.subject = String::new()),
            false,
            AssertionRejected::BadSubject,
        );
        refused(assertion(), true, AssertionRejected::Replayed);
    }

    #[test]
    fn without_trusted_issuers_only_the_client_itself_may_issue() {
        let mut a = assertion();
        a.issuer = id().as_str().into();
        let state = ClientState::default().tap(&registered(&[]));
        assert!(decide(&state, &bearer(a, false)).is_ok());
        let err = decide(&state, &bearer(assertion(), false)).unwrap_err();
        assert_eq!(
            err.error,
            TokenError::InvalidGrant(GrantRejected::Assertion(
                AssertionRejected::UntrustedIssuer("idp.example".into())
            ))
        );
    }

    #[test]
    fn a_client_assertion_must_name_the_client_as_issuer_and_subject() {
        let cmd = |iss: &str, sub: &str| {
            TokenCommand::AuthenticateByAssertion(AcceptAssertion {
                assertion: Assertion {
                    issuer: iss.into(),
                    subject: sub.into(),
                    ..assertion()
                },
                used_for: AssertionUse::ClientAuthentication,
                audiences: vec![AUD.into()],
                seen: false,
                now: NOW,
            })
        };
        scenario()
            .given(vec![registered(&[])])
            .when(cmd("svc-billing", "alice"))
            .then_err(TokenError::InvalidClient(AssertionRejected::NotTheClient).into());
        let ok = decide(
            &ClientState::default().tap(&registered(&[])),
            &cmd("svc-billing", "svc-billing"),
        )
        .unwrap();
        assert!(matches!(&ok[0], Event::JwtAssertionAccepted(a)
            if a.used_for == AssertionUse::ClientAuthentication));
    }

    #[test]
    fn keys_must_be_public_and_present_for_key_based_methods() {
        let mut r = registration();
        r.auth_method = Some(AuthMethod::PrivateKeyJwt);
        r.secret_hash = None;
        assert!(matches!(
            client::decide(
                &ClientState::Unregistered,
                &ClientCommand::Register(r.clone())
            ),
            Err(ClientError::InvalidJwks(_))
        ));
        r.jwks = Some(
            serde_json::json!({"keys": [{"kty": "RSA", "n": "n", "e": "AQAB", "d": "secret"}]}),
        );
        assert!(matches!(
            client::decide(&ClientState::Unregistered, &ClientCommand::Register(r.clone())),
            Err(ClientError::InvalidJwks(m)) if m.contains("\"d\"")
        ));
        r.jwks = Some(serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}));
        assert!(client::decide(
            &ClientState::Unregistered,
            &ClientCommand::Register(r.clone())
        )
        .is_err());
        r.jwks = Some(jwks());
        assert!(client::decide(&ClientState::Unregistered, &ClientCommand::Register(r)).is_ok());
    }
}
