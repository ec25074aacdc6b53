//! Initial access tokens for dynamic client registration (RFC 7591 §3): an admin issues one
//! with an expiry and a number of uses; each registration made with it uses it once. A token
//! is a stream of its own (`registration-token-<id>`), so two registrations racing for its
//! last use are told apart by the stream's version: one wins, one is refused.

use crate::event::{Event, InitialAccessTokenIssued, InitialAccessTokenUsed};
use crate::values::{ClientId, SecretHash};
use uuid::Uuid;

/// Most uses one token may have.
pub const MAX_USES: u32 = 10_000;

/// An initial access token as its events leave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TokenState {
    /// Nothing recorded.
    #[default]
    Unknown,
    /// Issued; `used` of `max_uses` taken.
    Issued {
        /// Its id.
        id: Uuid,
        /// Expires at (Unix seconds).
        expires_at: i64,
        /// Uses allowed.
        max_uses: u32,
        /// Uses taken.
        used: u32,
    },
}

/// Commands on an initial access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationTokenCommand {
    /// Issue it.
    Issue {
        /// Its id.
        id: Uuid,
        /// Keyed hash of its value.
        token_hash: SecretHash,
        /// Lifetime in seconds.
        ttl_secs: u32,
        /// Uses allowed.
        max_uses: u32,
        /// Now (Unix seconds).
        now: i64,
    },
    /// Use it for a registration.
    Use {
        /// The client being registered.
        client_id: ClientId,
        /// Now (Unix seconds).
        now: i64,
    },
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationTokenError {
    /// Unknown token.
    #[error("the initial access token is not known")]
    Unknown,
    /// Past its expiry.
    #[error("the initial access token expired")]
    Expired,
    /// Every use taken.
    #[error("the initial access token has been used as often as it may be")]
    UsedUp,
    /// Issued already.
    #[error("the initial access token exists already")]
    Exists,
    /// Zero or too many uses, or no lifetime.
    #[error("an initial access token needs 1 to 10000 uses and a lifetime of at least a second")]
    InvalidLimits,
}

/// Decides a command on a token.
pub fn decide(
    state: &TokenState,
    command: &RegistrationTokenCommand,
) -> Result<Vec<Event>, RegistrationTokenError> {
    match (state, command) {
        (
            TokenState::Unknown,
            RegistrationTokenCommand::Issue {
                id,
                token_hash,
                ttl_secs,
                max_uses,
                now,
            },
        ) => {
            if *max_uses == 0 || *max_uses > MAX_USES || *ttl_secs == 0 {
                return Err(RegistrationTokenError::InvalidLimits);
            }
            Ok(vec![Event::InitialAccessTokenIssued(
                InitialAccessTokenIssued {
                    id: *id,
                    token_hash: token_hash.clone(),
                    max_uses: *max_uses,
                    issued_at: *now,
                    expires_at: now + i64::from(*ttl_secs),
                },
            )])
        }
        (TokenState::Issued { .. }, RegistrationTokenCommand::Issue { .. }) => {
            Err(RegistrationTokenError::Exists)
        }
        (TokenState::Unknown, RegistrationTokenCommand::Use { .. }) => {
            Err(RegistrationTokenError::Unknown)
        }
        (
            TokenState::Issued {
                id,
                expires_at,
                max_uses,
                used,
            },
            RegistrationTokenCommand::Use { client_id, now },
        ) => {
            if *now >= *expires_at {
                return Err(RegistrationTokenError::Expired);
            }
            if used >= max_uses {
                return Err(RegistrationTokenError::UsedUp);
            }
            Ok(vec![Event::InitialAccessTokenUsed(
                InitialAccessTokenUsed {
                    id: *id,
                    client_id: client_id.clone(),
                    use_number: used + 1,
                },
            )])
        }
    }
}

/// Folds one event of a token's stream.
pub fn evolve(state: &mut TokenState, event: &Event) {
    match event {
        Event::InitialAccessTokenIssued(e) => {
            *state = TokenState::Issued {
                id: e.id,
                expires_at: e.expires_at,
                max_uses: e.max_uses,
                used: 0,
            }
        }
        Event::InitialAccessTokenUsed(e) => {
            if let TokenState::Issued { used, .. } = state {
                *used = (*used).max(e.use_number);
            }
        }
        _ => {}
    }
}

/// The stream of an initial access token.
pub fn token_stream(id: &Uuid) -> String {
    format!("registration-token-{id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Scenario;
    use crate::values::HashKey;

    fn id() -> Uuid {
        Uuid::from_u128(11)
    }

    fn issued(max_uses: u32) -> Event {
        Event::InitialAccessTokenIssued(InitialAccessTokenIssued {
            id: id(),
            token_hash: HashKey::for_tests().hash("iat"),
            max_uses,
            issued_at: 100,
            expires_at: 400,
        })
    }

    fn used(n: u32) -> Event {
        Event::InitialAccessTokenUsed(InitialAccessTokenUsed {
            id: id(),
            client_id: ClientId::parse("rp").unwrap(),
            use_number: n,
        })
    }

    fn use_at(now: i64) -> RegistrationTokenCommand {
        RegistrationTokenCommand::Use {
            client_id: ClientId::parse("rp").unwrap(),
            now,
        }
    }

    fn scenario() -> Scenario<TokenState, RegistrationTokenCommand, RegistrationTokenError> {
        Scenario::new(decide, evolve)
    }

    #[test]
    fn a_token_is_issued_with_limits_and_used_until_they_are_reached() {
        scenario()
            .when(RegistrationTokenCommand::Issue {
                id: id(),
                token_hash: HashKey::for_tests().hash("iat"),
                ttl_secs: 300,
                max_uses: 2,
                now: 100,
            })
            .then(vec![issued(2)]);
        scenario()
            .given(vec![issued(2)])
            .when(use_at(200))
            .then(vec![used(1)]);
        scenario()
            .given(vec![issued(2), used(1)])
            .when(use_at(200))
            .then(vec![used(2)]);
        scenario()
            .given(vec![issued(2), used(1), used(2)])
            .when(use_at(200))
            .then_err(RegistrationTokenError::UsedUp);
    }

    #[test]
    fn an_expired_or_unknown_token_registers_nothing() {
        scenario()
            .given(vec![issued(5)])
            .when(use_at(400))
            .then_err(RegistrationTokenError::Expired);
        scenario()
            .when(use_at(200))
            .then_err(RegistrationTokenError::Unknown);
        scenario()
            .when(RegistrationTokenCommand::Issue {
                id: id(),
                token_hash: HashKey::for_tests().hash("iat"),
                ttl_secs: 300,
                max_uses: 0,
                now: 100,
            })
            .then_err(RegistrationTokenError::InvalidLimits);
    }
}
