//! Pushed authorization requests (RFC 9126): a client posts its authorization request to
//! `/par`, authenticated, and gets a `request_uri` to send the browser to `/authorize` with.
//! The request is recorded with the keyed hash of that URI; the code or token it leads to is
//! issued once, and spends it in the same decision, so a second use cannot slip in between.

use crate::client::Client;
use crate::event::{AuthorizationRequestPushed, Event, PushedAuthorizationRequestUsed};
use crate::token::{Refusal, TokenError};
use crate::values::{GrantType, SecretHash};

/// What a `request_uri` of this server starts with (RFC 9126 §2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// How long a pushed request may wait for its use, in seconds (§2.2 suggests 5 to 600). It
/// covers the sign-in and the consent too: the code it leads to is issued only if it has not
/// expired by then.
pub const LIFETIME_SECS: i64 = 300;

/// Record a pushed request the server validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRequest {
    /// Keyed hash of the fresh `request_uri`.
    pub request_uri_hash: SecretHash,
    /// The authorization request's parameters (without client credentials).
    pub parameters: Vec<(String, String)>,
    /// Now (Unix seconds).
    pub now: i64,
}

/// What the read model knows of a pushed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedView {
    /// The request as pushed.
    pub pushed: AuthorizationRequestPushed,
    /// It led to a code or token already.
    pub used: bool,
}

impl PushedView {
    /// Brings the view up to date with an event not yet in the read model.
    pub fn observe(&mut self, event: &Event) {
        if let Event::PushedAuthorizationRequestUsed(e) = event {
            if e.request_uri_hash == self.pushed.request_uri_hash {
                self.used = true;
            }
        }
    }

    /// Whether it can be used by `client` at `now`.
    pub fn check(&self, client: &Client, now: i64) -> Result<(), PushRejected> {
        if self.pushed.client_id != client.client_id {
            return Err(PushRejected::Unknown);
        }
        if self.used {
            return Err(PushRejected::Used);
        }
        if now >= self.pushed.expires_at {
            return Err(PushRejected::Expired);
        }
        Ok(())
    }
}

/// The pushed request an authorization request names, as the actor found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedUse {
    /// Keyed hash of the presented `request_uri`.
    pub request_uri_hash: SecretHash,
    /// Its view, if the read model knows it.
    pub view: Option<PushedView>,
}

/// Why a `request_uri` was refused (`invalid_request_uri`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushRejected {
    /// Unknown, or pushed by another client.
    #[error("the request_uri is unknown or was pushed by another client")]
    Unknown,
    /// Used before.
    #[error("the request_uri was used already; push the request again")]
    Used,
    /// Its lifetime is over.
    #[error("the request_uri expired; push the request again")]
    Expired,
}

/// Decides [`PushRequest`]: the client must be one that sends authorization requests.
pub fn push(client: &Client, cmd: &PushRequest) -> Result<Vec<Event>, Refusal> {
    if !client
        .grant_types
        .iter()
        .any(|g| matches!(g, GrantType::AuthorizationCode | GrantType::Implicit))
    {
        return Err(crate::grant::allowed(client, GrantType::AuthorizationCode)
            .err()
            .unwrap_or(TokenError::UnknownClient)
            .into());
    }
    Ok(vec![Event::AuthorizationRequestPushed(
        AuthorizationRequestPushed {
            client_id: client.client_id.clone(),
            request_uri_hash: cmd.request_uri_hash.clone(),
            parameters: cmd.parameters.clone(),
            pushed_at: cmd.now,
            expires_at: cmd.now + LIFETIME_SECS,
        },
    )])
}

/// Spends a pushed request for the code or token it leads to.
pub fn spend(client: &Client, pushed: &PushedUse, now: i64) -> Result<Event, TokenError> {
    let view = pushed
        .view
        .as_ref()
        .ok_or(TokenError::InvalidRequestUri(PushRejected::Unknown))?;
    view.check(client, now)
        .map_err(TokenError::InvalidRequestUri)?;
    Ok(Event::PushedAuthorizationRequestUsed(
        PushedAuthorizationRequestUsed {
            client_id: client.client_id.clone(),
            request_uri_hash: pushed.request_uri_hash.clone(),
        },
    ))
}
