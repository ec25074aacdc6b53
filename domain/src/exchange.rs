//! Token exchange (RFC 8693): a client presents a token it holds (the subject token) and,
//! for delegation, a token of the party acting for the subject (the actor token), and gets a
//! new access token for another audience. What it may exchange is the client's policy: whose
//! tokens, for which audiences, with which scopes at most; the new token never holds a scope
//! its subject token did not. A delegation records who acts in an `act` claim, the subject
//! token's own `act` nested inside it, so a chain of delegations stays visible (§4.1).
//!
//! The tokens are checked (signature, activity) before a command is built; here is the
//! policy, and the record that names both tokens.

use crate::client::Client;
use crate::event::{Event, ExchangedToken, TokenExchanged};
use crate::grant::{access_token_issued, allowed, token_terms, NewAccessToken};
use crate::token::{ClientRefused, Refusal, RequestRejected, TokenError};
use crate::values::{GrantType, Scope};

/// A token presented for exchange, as the server found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// What the record says of it.
    pub token: ExchangedToken,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Its own `act`, if it came from a delegation.
    pub act: Option<serde_json::Value>,
    /// When it expires (Unix seconds): an exchanged token expires no later.
    pub expires_at: i64,
}

/// Exchange a token (RFC 8693 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeToken {
    /// The subject token.
    pub subject: Presented,
    /// The actor token, for a delegation.
    pub actor: Option<Presented>,
    /// The `audience` and `resource` values asked for.
    pub audiences: Vec<String>,
    /// Scopes asked for; `None`: all the subject token's that the policy allows.
    pub scopes: Option<Vec<Scope>>,
    /// The new access token.
    pub token: NewAccessToken,
    /// Now (Unix seconds).
    pub now: i64,
}

/// Most actors one token may name, nested (a chain of delegations).
pub const MAX_ACTORS: usize = 8;

/// How many actors an `act` claim names.
fn depth(act: &serde_json::Value) -> usize {
    1 + act.get("act").map_or(0, depth)
}

/// Decides [`ExchangeToken`].
pub fn exchange(client: &Client, cmd: &ExchangeToken) -> Result<Vec<Event>, Refusal> {
    allowed(client, GrantType::TokenExchange)?;
    let Some(policy) = &client.extensions.token_exchange else {
        return Err(
            TokenError::UnauthorizedClient(ClientRefused::GrantNotAllowed(
                GrantType::TokenExchange,
            ))
            .into(),
        );
    };
    let subject = &cmd.subject;
    if !subject
        .token
        .client_id
        .as_ref()
        .is_some_and(|c| policy.subject_clients.contains(c))
    {
        return Err(TokenError::InvalidRequest(RequestRejected::NotExchangeable).into());
    }
    if cmd.audiences.iter().any(|a| !policy.audiences.contains(a)) {
        return Err(TokenError::InvalidTarget(
            "an audience asked for is not one this client's exchange policy allows".into(),
        )
        .into());
    }
    // Without one asked for, the token is for the policy's audiences: never for this server,
    // whose own resources an exchanged token must not reach unless the policy names it.
    let audiences = if cmd.audiences.is_empty() {
        policy.audiences.clone()
    } else {
        cmd.audiences.clone()
    };
    let allowed_scope = |s: &Scope| {
        subject.scopes.contains(s) && (policy.scopes.is_empty() || policy.scopes.contains(s))
    };
    let scopes = match &cmd.scopes {
        Some(asked) => {
            if let Some(s) = asked.iter().find(|s| !allowed_scope(s)) {
                return Err(TokenError::InvalidScope(format!(
                    "{s}: an exchanged token holds only scopes of its subject token that this client's policy allows"
                ))
                .into());
            }
            asked.clone()
        }
        None => subject
            .scopes
            .iter()
            .filter(|s| allowed_scope(s))
            .cloned()
            .collect(),
    };
    // §4.1: the current actor at the top, the ones before it nested.
    let act = match &cmd.actor {
        None => subject.act.clone(),
        Some(actor) => {
            let mut act = serde_json::json!({ "sub": actor.token.subject });
            if let Some(c) = &actor.token.client_id {
                act["client_id"] = c.as_str().into();
            }
            if let Some(before) = &subject.act {
                if depth(before) >= MAX_ACTORS {
                    return Err(
                        TokenError::InvalidRequest(RequestRejected::ActorChainTooLong).into(),
                    );
                }
                act["act"] = before.clone();
            }
            Some(act)
        }
    };
    let mut terms = token_terms(client, &cmd.token, None)?;
    terms.audience = audiences.clone();
    terms.act = act;
    let mut issued = access_token_issued(
        client,
        &cmd.token,
        subject.token.subject.clone(),
        scopes.clone(),
        GrantType::TokenExchange,
        terms,
        cmd.now,
    );
    // An exchanged token never outlives the token it was exchanged for.
    issued.expires_at = issued.expires_at.min(subject.expires_at);
    Ok(vec![
        Event::TokenExchanged(TokenExchanged {
            client_id: client.client_id.clone(),
            jti: issued.jti,
            subject_token: subject.token.clone(),
            actor_token: cmd.actor.as_ref().map(|a| a.token.clone()),
            audience: audiences,
            scopes,
        }),
        Event::AccessTokenIssued(issued),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::{id, registration};
    use crate::client::{self, ClientCommand, ClientState};
    use crate::event::ExchangePolicy;
    use crate::testing::Scenario;
    use crate::token::{decide, TokenCommand};
    use crate::values::{ClientId, HashKey, TokenFormat};
    use uuid::Uuid;

    const NOW: i64 = 1_800_000_000;
    const FILES: &str = "https://files.example.com/";

    fn scopes(s: &str) -> Vec<Scope> {
        Scope::parse_list(s).unwrap()
    }

    fn webapp() -> ClientId {
        ClientId::parse("webapp").unwrap()
    }

    fn registered() -> Event {
        let mut r = registration();
        r.grant_types = vec![GrantType::TokenExchange];
        r.token_format = TokenFormat::Opaque;
        r.extensions.token_exchange = Some(ExchangePolicy {
            subject_clients: vec![webapp()],
            audiences: vec![FILES.into()],
            scopes: scopes("read write"),
        });
        client::decide(&ClientState::Unregistered, &ClientCommand::Register(r))
            .unwrap()
            .remove(0)
    }

    fn presented(
        client: ClientId,
        subject: &str,
        scope: &str,
        act: Option<serde_json::Value>,
    ) -> Presented {
        Presented {
            token: ExchangedToken {
                token_type: "access_token".into(),
                id: "t-1".into(),
                client_id: Some(client),
                subject: subject.into(),
            },
            scopes: scopes(scope),
            act,
            expires_at: NOW + 600,
        }
    }

    fn cmd(subject: Presented, actor: Option<Presented>, scope: Option<&str>) -> TokenCommand {
        TokenCommand::ExchangeToken(ExchangeToken {
            subject,
            actor,
            audiences: vec![FILES.into()],
            scopes: scope.map(scopes),
            token: NewAccessToken {
                jti: Uuid::from_u128(9),
                opaque_token_hash: HashKey::for_tests().hash("new"),
                kid: None,
                resources: Vec::new(),
                dpop: None,
            },
            now: NOW,
        })
    }

    fn scenario() -> Scenario<ClientState, TokenCommand, Refusal> {
        Scenario::new(decide, client::evolve)
    }

    fn issued(events: &[Event]) -> &crate::event::AccessTokenIssued {
        events
            .iter()
            .find_map(|e| match e {
                Event::AccessTokenIssued(i) => Some(i),
                _ => None,
            })
            .unwrap()
    }

    fn state() -> ClientState {
        let mut s = ClientState::Unregistered;
        client::evolve(&mut s, &registered());
        s
    }

    #[test]
    fn impersonation_speaks_for_the_subject_with_at_most_its_scopes() {
        let events = decide(
            &state(),
            &cmd(
                presented(webapp(), "alice", "read profile", None),
                None,
                None,
            ),
        )
        .unwrap();
        let t = issued(&events);
        assert_eq!(t.subject, "alice");
        assert_eq!(t.scopes, scopes("read"), "profile is beyond the policy");
        assert_eq!(t.terms.audience, vec![FILES.to_owned()]);
        assert_eq!(t.terms.act, None);
        let Event::TokenExchanged(record) = &events[0] else {
            panic!("the exchange is recorded first");
        };
        assert_eq!(record.subject_token.id, "t-1");
        assert_eq!(record.actor_token, None);
        assert_eq!(record.client_id, id());
    }

    #[test]
    fn delegation_names_the_actor_with_the_earlier_chain_nested() {
        let earlier = serde_json::json!({ "sub": "batch-job" });
        let events = decide(
            &state(),
            &cmd(
                presented(webapp(), "alice", "read", Some(earlier.clone())),
                Some(presented(id(), "svc-billing", "", None)),
                Some("read"),
            ),
        )
        .unwrap();
        assert_eq!(
            issued(&events).terms.act,
            Some(serde_json::json!({
                "sub": "svc-billing", "client_id": "svc-billing", "act": earlier
            }))
        );
    }

    #[test]
    fn widening_scopes_other_audiences_and_other_clients_tokens_are_refused() {
        scenario()
            .given(vec![registered()])
            .when(cmd(presented(webapp(), "alice", "read", None), None, Some("read write")))
            .then_err(
                TokenError::InvalidScope(
                    "write: an exchanged token holds only scopes of its subject token that this client's policy allows".into(),
                )
                .into(),
            );
        let mut other_audience = cmd(presented(webapp(), "alice", "read", None), None, None);
        if let TokenCommand::ExchangeToken(c) = &mut other_audience {
            c.audiences = vec!["https://evil.example/".into()];
        }
        scenario()
            .given(vec![registered()])
            .when(other_audience)
            .then_err(
                TokenError::InvalidTarget(
                    "an audience asked for is not one this client's exchange policy allows".into(),
                )
                .into(),
            );
        scenario()
            .given(vec![registered()])
            .when(cmd(
                presented(ClientId::parse("stranger").unwrap(), "alice", "read", None),
                None,
                None,
            ))
            .then_err(TokenError::InvalidRequest(RequestRejected::NotExchangeable).into());
    }
}
