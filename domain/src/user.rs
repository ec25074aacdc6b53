//! The user aggregate: a resource owner's registration, password and failed sign-ins
//! (stream `user-<id>`).

use crate::event::{
    Event, LoginFailure, SignInVia, UserLocked, UserLoginFailed, UserPasswordChanged,
    UserRegistered,
};
use crate::values::{PasswordHash, UserId, Username};

/// A registered user, as its events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub user_id: UserId,
    /// Its username.
    pub username: Username,
    /// argon2id hash of its password.
    pub password_hash: PasswordHash,
    /// How often the password changed: sessions carry it, so a change ends older sessions.
    pub password_version: u32,
}

/// The fold of a user stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UserState {
    /// No event yet.
    #[default]
    Unregistered,
    /// Registered.
    Active(User),
}

/// Commands on a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Register a user under a fresh id.
    Register {
        /// The fresh id.
        user_id: UserId,
        /// Its username.
        username: Username,
        /// argon2id hash of the password.
        password_hash: PasswordHash,
        /// The directory already holds this username (the caller looked it up).
        username_taken: bool,
    },
    /// Replace the password.
    ChangePassword(PasswordHash),
    /// Record a failed sign-in; `lock` (failures, until) when it starts a throttle.
    RecordLoginFailure {
        /// Why it failed.
        reason: LoginFailure,
        /// The login page or a client's password grant.
        via: SignInVia,
        /// Failures in the window and the time before which nothing is checked.
        lock: Option<(u32, i64)>,
    },
}

/// Why a user command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The username is taken.
    #[error("username {0} is taken")]
    UsernameTaken(Username),
    /// The user id is taken.
    #[error("user {0} already exists")]
    AlreadyExists(UserId),
    /// No such user.
    #[error("user not found")]
    NotFound,
}

/// Decides a user command.
pub fn decide(state: &UserState, command: &UserCommand) -> Result<Vec<Event>, UserError> {
    match (state, command) {
        (
            UserState::Unregistered,
            UserCommand::Register {
                user_id,
                username,
                password_hash,
                username_taken,
            },
        ) => {
            if *username_taken {
                return Err(UserError::UsernameTaken(username.clone()));
            }
            Ok(vec![Event::UserRegistered(UserRegistered {
                user_id: *user_id,
                username: username.clone(),
                password_hash: password_hash.clone(),
            })])
        }
        (UserState::Active(u), UserCommand::Register { .. }) => {
            Err(UserError::AlreadyExists(u.user_id))
        }
        (UserState::Unregistered, _) => Err(UserError::NotFound),
        (UserState::Active(u), UserCommand::ChangePassword(hash)) => {
            Ok(vec![Event::UserPasswordChanged(UserPasswordChanged {
                user_id: u.user_id,
                password_hash: hash.clone(),
            })])
        }
        (UserState::Active(u), UserCommand::RecordLoginFailure { reason, via, lock }) => {
            let mut events = vec![Event::UserLoginFailed(UserLoginFailed {
                user_id: Some(u.user_id),
                username: u.username.to_string(),
                reason: *reason,
                via: via.clone(),
            })];
            if let Some((failures, until)) = lock {
                events.push(Event::UserLocked(UserLocked {
                    user_id: u.user_id,
                    failures: *failures,
                    until: *until,
                }));
            }
            Ok(events)
        }
    }
}

/// The event recording a failed sign-in under a name no user has.
pub fn unknown_login_failure(typed: &str, via: &SignInVia) -> Event {
    Event::UserLoginFailed(UserLoginFailed {
        user_id: None,
        username: typed.chars().take(64).collect(),
        reason: LoginFailure::UnknownUser,
        via: via.clone(),
    })
}

/// Folds one event of a user stream.
pub fn evolve(state: &mut UserState, event: &Event) {
    match (state, event) {
        (s @ UserState::Unregistered, Event::UserRegistered(e)) => {
            *s = UserState::Active(User {
                user_id: e.user_id,
                username: e.username.clone(),
                password_hash: e.password_hash.clone(),
                password_version: 0,
            })
        }
        (UserState::Active(u), Event::UserPasswordChanged(e)) => {
            u.password_hash = e.password_hash.clone();
            u.password_version += 1;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Scenario;

    fn id() -> UserId {
        UserId(uuid::Uuid::from_u128(7))
    }

    fn hash(n: u8) -> PasswordHash {
        PasswordHash::parse(&format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$h{n}")).unwrap()
    }

    fn register(taken: bool) -> UserCommand {
        UserCommand::Register {
            user_id: id(),
            username: Username::parse("alice").unwrap(),
            password_hash: hash(1),
            username_taken: taken,
        }
    }

    fn registered() -> Event {
        decide(&UserState::Unregistered, &register(false))
            .unwrap()
            .remove(0)
    }

    fn scenario() -> Scenario<UserState, UserCommand, UserError> {
        Scenario::new(decide, evolve)
    }

    #[test]
    fn registering_records_only_the_hash() {
        scenario()
            .when(register(false))
            .then(vec![Event::UserRegistered(UserRegistered {
                user_id: id(),
                username: Username::parse("alice").unwrap(),
                password_hash: hash(1),
            })]);
    }

    #[test]
    fn a_taken_username_or_id_is_refused() {
        scenario()
            .when(register(true))
            .then_err(UserError::UsernameTaken(Username::parse("alice").unwrap()));
        scenario()
            .given(vec![registered()])
            .when(register(false))
            .then_err(UserError::AlreadyExists(id()));
    }

    #[test]
    fn a_failure_that_starts_a_throttle_records_the_lock() {
        scenario()
            .given(vec![registered()])
            .when(UserCommand::RecordLoginFailure {
                reason: LoginFailure::WrongPassword,
                via: SignInVia::LoginPage,
                lock: Some((5, 1_700_000_001)),
            })
            .then(vec![
                Event::UserLoginFailed(UserLoginFailed {
                    user_id: Some(id()),
                    username: "alice".into(),
                    reason: LoginFailure::WrongPassword,
                    via: SignInVia::LoginPage,
                }),
                Event::UserLocked(UserLocked {
                    user_id: id(),
                    failures: 5,
                    until: 1_700_000_001,
                }),
            ]);
    }

    #[test]
    fn changing_the_password_bumps_its_version() {
        let mut state = UserState::default();
        evolve(&mut state, &registered());
        let changed = decide(&state, &UserCommand::ChangePassword(hash(2))).unwrap();
        evolve(&mut state, &changed[0]);
        let UserState::Active(u) = state else {
            panic!("not active")
        };
        assert_eq!((u.password_version, u.password_hash), (1, hash(2)));
        scenario()
            .when(UserCommand::ChangePassword(hash(2)))
            .then_err(UserError::NotFound);
    }
}
