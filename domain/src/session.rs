//! The browser session aggregate (stream `session-<sid>`): a sign-in on the login page starts
//! one, a logout ends it, and the back-channel logout notices its end sends to relying parties
//! (OpenID Connect Back-Channel Logout 1.0) are recorded in it, each attempt with its outcome.
//!
//! Each session is a stream of its own, a few events long, so no decision ever folds more than
//! one sign-in.

use crate::event::{
    BackchannelLogoutAttempted, Event, LogoutNotice, SessionEndReason, SessionEnded, SessionStarted,
};
use crate::values::{ClientId, UserId};

/// Attempts at delivering one logout notice before it is given up.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 6;

/// How long after a failed attempt `n` (from 1) the next one is due: 2, 4, 8, 16 and 32
/// seconds, `None` once the attempts are spent.
pub fn retry_delay_secs(attempt: u32) -> Option<i64> {
    (attempt < MAX_DELIVERY_ATTEMPTS).then(|| 1i64 << attempt.min(20))
}

/// A session as its events leave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SessionState {
    /// Nothing recorded.
    #[default]
    Unknown,
    /// Signed in.
    Active {
        /// The user.
        user_id: UserId,
    },
    /// Ended: the notices it owes, by client.
    Ended {
        /// The user.
        user_id: UserId,
        /// Clients still owed a notice, with the attempts made so far.
        owed: Vec<(ClientId, u32)>,
    },
}

/// Commands on a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    /// A sign-in on the login page.
    Start {
        /// The new session's id.
        sid: String,
        /// The user.
        user_id: UserId,
        /// Now (Unix seconds): the id_tokens' `auth_time`.
        auth_time: i64,
        /// When the cookie expires.
        expires_at: i64,
    },
    /// End the session (a logout), owing a notice to each client given.
    End {
        /// Why.
        reason: SessionEndReason,
        /// The clients that got id_tokens of this session and registered a back-channel
        /// logout URI.
        notify: Vec<LogoutNotice>,
        /// Now (Unix seconds).
        now: i64,
    },
    /// Record an attempt at delivering the notice owed to a client.
    RecordDelivery {
        /// The client.
        client_id: ClientId,
        /// The HTTP status it answered, or `None` when it could not be reached.
        status: Option<u16>,
        /// Now (Unix seconds).
        now: i64,
    },
}

/// Why a session command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The session id is taken.
    #[error("the session exists already")]
    AlreadyExists,
    /// No such session.
    #[error("no such session")]
    NotFound,
    /// No notice is owed to that client.
    #[error("no logout notice is owed to that client")]
    NothingOwed,
}

/// Decides a session command.
pub fn decide(
    sid: &str,
    state: &SessionState,
    command: &SessionCommand,
) -> Result<Vec<Event>, SessionError> {
    match (state, command) {
        (
            SessionState::Unknown,
            SessionCommand::Start {
                sid,
                user_id,
                auth_time,
                expires_at,
            },
        ) => Ok(vec![Event::SessionStarted(SessionStarted {
            sid: sid.clone(),
            user_id: *user_id,
            auth_time: *auth_time,
            expires_at: *expires_at,
        })]),
        (_, SessionCommand::Start { .. }) => Err(SessionError::AlreadyExists),
        (
            SessionState::Active { user_id },
            SessionCommand::End {
                reason,
                notify,
                now,
            },
        ) => Ok(vec![Event::SessionEnded(SessionEnded {
            sid: sid.to_owned(),
            user_id: *user_id,
            reason: *reason,
            notify: notify.clone(),
            ended_at: *now,
        })]),
        // Ending an ended session (a second logout tab) changes nothing.
        (SessionState::Ended { .. }, SessionCommand::End { .. }) => Ok(Vec::new()),
        (SessionState::Unknown, _) => Err(SessionError::NotFound),
        (
            SessionState::Ended { user_id, owed },
            SessionCommand::RecordDelivery {
                client_id,
                status,
                now,
            },
        ) => {
            let Some((_, before)) = owed.iter().find(|(c, _)| c == client_id) else {
                return Err(SessionError::NothingOwed);
            };
            let attempt = before + 1;
            // Back-Channel Logout §2.8: 200 (or 204) is success; anything else is retried.
            let delivered = matches!(status, Some(200 | 204));
            let retry_at = if delivered {
                None
            } else {
                retry_delay_secs(attempt).map(|d| now + d)
            };
            Ok(vec![Event::BackchannelLogoutAttempted(
                BackchannelLogoutAttempted {
                    sid: sid.to_owned(),
                    user_id: *user_id,
                    client_id: client_id.clone(),
                    attempt,
                    status: *status,
                    delivered,
                    retry_at,
                    at: *now,
                },
            )])
        }
        (SessionState::Active { .. }, SessionCommand::RecordDelivery { .. }) => {
            Err(SessionError::NothingOwed)
        }
    }
}

/// Folds one event of a session's stream.
pub fn evolve(state: &mut SessionState, event: &Event) {
    match event {
        Event::SessionStarted(e) => *state = SessionState::Active { user_id: e.user_id },
        Event::SessionEnded(e) => {
            *state = SessionState::Ended {
                user_id: e.user_id,
                owed: e.notify.iter().map(|n| (n.client_id.clone(), 0)).collect(),
            }
        }
        Event::BackchannelLogoutAttempted(e) => {
            if let SessionState::Ended { owed, .. } = state {
                if e.delivered || e.retry_at.is_none() {
                    owed.retain(|(c, _)| *c != e.client_id);
                } else if let Some(o) = owed.iter_mut().find(|(c, _)| *c == e.client_id) {
                    o.1 = e.attempt;
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Scenario;

    const SID: &str = "c2lkLW9uZQ";

    fn user() -> UserId {
        UserId(uuid::Uuid::from_u128(5))
    }

    fn rp() -> ClientId {
        ClientId::parse("rp").unwrap()
    }

    fn scenario() -> Scenario<SessionState, SessionCommand, SessionError> {
        Scenario::new(|s, c| decide(SID, s, c), evolve)
    }

    fn started() -> Event {
        Event::SessionStarted(SessionStarted {
            sid: SID.into(),
            user_id: user(),
            auth_time: 100,
            expires_at: 200,
        })
    }

    fn ended() -> Event {
        Event::SessionEnded(SessionEnded {
            sid: SID.into(),
            user_id: user(),
            reason: SessionEndReason::Logout,
            notify: vec![LogoutNotice {
                client_id: rp(),
                uri: "https://rp.example/bcl".into(),
            }],
            ended_at: 150,
        })
    }

    fn delivery(status: Option<u16>, now: i64) -> SessionCommand {
        SessionCommand::RecordDelivery {
            client_id: rp(),
            status,
            now,
        }
    }

    fn attempted(attempt: u32, status: Option<u16>, retry_at: Option<i64>, at: i64) -> Event {
        Event::BackchannelLogoutAttempted(BackchannelLogoutAttempted {
            sid: SID.into(),
            user_id: user(),
            client_id: rp(),
            attempt,
            status,
            delivered: matches!(status, Some(200 | 204)),
            retry_at,
            at,
        })
    }

    #[test]
    fn a_session_starts_once_and_ends_once() {
        scenario()
            .when(SessionCommand::Start {
                sid: SID.into(),
                user_id: user(),
                auth_time: 100,
                expires_at: 200,
            })
            .then(vec![started()]);
        let end = SessionCommand::End {
            reason: SessionEndReason::Logout,
            notify: vec![LogoutNotice {
                client_id: rp(),
                uri: "https://rp.example/bcl".into(),
            }],
            now: 150,
        };
        scenario()
            .given(vec![started()])
            .when(end.clone())
            .then(vec![ended()]);
        scenario()
            .given(vec![started(), ended()])
            .when(end.clone())
            .then(vec![]);
        scenario().when(end).then_err(SessionError::NotFound);
    }

    #[test]
    fn a_failed_notice_is_retried_with_growing_delays_until_the_attempts_are_spent() {
        scenario()
            .given(vec![started(), ended()])
            .when(delivery(Some(503), 150))
            .then(vec![attempted(1, Some(503), Some(152), 150)]);
        scenario()
            .given(vec![started(), ended(), attempted(1, None, Some(152), 150)])
            .when(delivery(None, 152))
            .then(vec![attempted(2, None, Some(156), 152)]);
        let mut history = vec![started(), ended()];
        for n in 1..MAX_DELIVERY_ATTEMPTS {
            history.push(attempted(n, None, Some(1), 1));
        }
        scenario()
            .given(history)
            .when(delivery(None, 300))
            .then(vec![attempted(MAX_DELIVERY_ATTEMPTS, None, None, 300)]);
    }

    #[test]
    fn a_delivered_notice_is_owed_no_more() {
        scenario()
            .given(vec![started(), ended()])
            .when(delivery(Some(200), 151))
            .then(vec![attempted(1, Some(200), None, 151)]);
        scenario()
            .given(vec![started(), ended(), attempted(1, Some(200), None, 151)])
            .when(delivery(Some(200), 152))
            .then_err(SessionError::NothingOwed);
    }
}
