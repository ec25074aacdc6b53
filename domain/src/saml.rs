//! The SAML 2.0 bearer assertion grant (RFC 7522): the XML signature and the assertion's
//! conditions are checked before a command is built (`authledger::saml`); what remains here is
//! that the client trusts the assertion's issuer, that its `ID` was not accepted before, and
//! the records: the assertion's acceptance (which bars its `ID` until it expires) and the
//! token for its subject.

use crate::client::Client;
use crate::event::{Event, SamlAssertionAccepted};
use crate::grant::{access_token_issued, allowed, granted_scopes, token_terms, NewAccessToken};
use crate::token::{GrantRejected, Refusal, TokenError};
use crate::values::{GrantType, Scope};

/// What a verified assertion says that the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlAssertion {
    /// `Issuer`.
    pub issuer: String,
    /// `ID`.
    pub id: String,
    /// `Subject/NameID`.
    pub subject: String,
    /// Until when its `ID` must be remembered (Unix seconds).
    pub expires_at: i64,
}

/// The grant (RFC 7522 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlBearerGrant {
    /// The verified assertion.
    pub assertion: SamlAssertion,
    /// Whether its `ID` was accepted before and is still remembered; filled by the actor.
    pub seen: bool,
    /// Scopes asked for; `None`: the client's defaults.
    pub scopes: Option<Vec<Scope>>,
    /// The new access token.
    pub token: NewAccessToken,
    /// Now (Unix seconds).
    pub now: i64,
}

/// The assertion-issuer name under which the token index keeps SAML assertion `ID`s (they
/// share the rows and the retention class of JWT assertion `jti`s).
pub fn issuer_key(issuer: &str) -> String {
    format!("saml:{issuer}")
}

impl SamlAssertionAccepted {
    /// Whether this record still bars `id` of `issuer` for `client` at `now`.
    pub fn bars(&self, client: &str, issuer: &str, id: &str, now: i64) -> bool {
        self.client_id.as_str() == client
            && self.issuer == issuer
            && self.assertion_id == id
            && self.expires_at >= now
    }
}

/// Decides [`SamlBearerGrant`].
pub fn grant(client: &Client, cmd: &SamlBearerGrant) -> Result<Vec<Event>, Refusal> {
    allowed(client, GrantType::Saml2Bearer)?;
    let a = &cmd.assertion;
    if client
        .extensions
        .saml_idp
        .as_ref()
        .is_none_or(|idp| idp.issuer != a.issuer)
    {
        return Err(TokenError::InvalidGrant(GrantRejected::SamlUntrustedIssuer).into());
    }
    if cmd.seen {
        return Err(TokenError::InvalidGrant(GrantRejected::SamlReplayed).into());
    }
    let scopes = granted_scopes(client, &cmd.scopes)?;
    let terms = token_terms(client, &cmd.token, None)?;
    Ok(vec![
        Event::SamlAssertionAccepted(SamlAssertionAccepted {
            client_id: client.client_id.clone(),
            issuer: a.issuer.clone(),
            assertion_id: a.id.clone(),
            subject: a.subject.clone(),
            expires_at: a.expires_at,
        }),
        Event::AccessTokenIssued(access_token_issued(
            client,
            &cmd.token,
            a.subject.clone(),
            scopes,
            GrantType::Saml2Bearer,
            terms,
            cmd.now,
        )),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::{id, registration};
    use crate::client::{self, ClientCommand, ClientState};
    use crate::event::SamlIdp;
    use crate::testing::Scenario;
    use crate::token::{decide, TokenCommand};
    use crate::values::{HashKey, TokenFormat};
    use uuid::Uuid;

    const IDP: &str = "https://idp.example.com/saml";

    fn registered() -> Event {
        let mut r = registration();
        r.grant_types = vec![GrantType::Saml2Bearer];
        r.token_format = TokenFormat::Opaque;
        r.extensions.saml_idp = Some(SamlIdp {
            issuer: IDP.into(),
            certificate_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
                .into(),
            audience: "https://as.example.com/".into(),
        });
        client::decide(&ClientState::Unregistered, &ClientCommand::Register(r))
            .unwrap()
            .remove(0)
    }

    fn cmd(issuer: &str, seen: bool) -> TokenCommand {
        TokenCommand::Saml2Bearer(SamlBearerGrant {
            assertion: SamlAssertion {
                issuer: issuer.into(),
                id: "_a1".into(),
                subject: "alice@example.com".into(),
                expires_at: 1_800_000_300,
            },
            seen,
            scopes: None,
            token: NewAccessToken {
                jti: Uuid::from_u128(5),
                opaque_token_hash: HashKey::for_tests().hash("t"),
                kid: None,
                resources: Vec::new(),
                dpop: None,
            },
            now: 1_800_000_000,
        })
    }

    #[test]
    fn an_assertion_of_the_trusted_idp_is_accepted_once() {
        let events = decide(
            &{
                let mut s = ClientState::Unregistered;
                client::evolve(&mut s, &registered());
                s
            },
            &cmd(IDP, false),
        )
        .unwrap();
        let Event::SamlAssertionAccepted(a) = &events[0] else {
            panic!("the assertion is recorded first");
        };
        assert_eq!(a.client_id, id());
        assert!(a.bars(id().as_str(), IDP, "_a1", 1_800_000_300));
        assert!(!a.bars(id().as_str(), IDP, "_a1", 1_800_000_301));
        let Event::AccessTokenIssued(t) = &events[1] else {
            panic!("then the token");
        };
        assert_eq!(t.subject, "alice@example.com");
        assert_eq!(t.grant_type, GrantType::Saml2Bearer);
        Scenario::new(decide, client::evolve)
            .given(vec![registered()])
            .when(cmd(IDP, true))
            .then_err(TokenError::InvalidGrant(GrantRejected::SamlReplayed).into());
        Scenario::new(decide, client::evolve)
            .given(vec![registered()])
            .when(cmd("https://other-idp.example.com/", false))
            .then_err(TokenError::InvalidGrant(GrantRejected::SamlUntrustedIssuer).into());
    }
}
