//! The user aggregate: a resource owner's registration, password and failed sign-ins
//! (stream `user-<id>`).

use crate::event::{
    Event, LoginFailure, SignInVia, UserDisabled, UserEnabled, UserLocked, UserLoginFailed,
    UserPasswordChanged, UserProfile, UserProfileChanged, UserRegistered, UserSessionsEnded,
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
    /// Profile claims (OpenID Connect Core §5.1).
    pub profile: UserProfile,
    /// When the profile last changed (Unix seconds); 0: never set.
    pub profile_updated_at: i64,
    /// Locked by an administrator: no sign-in, no password grant, no session (a lock also
    /// ends the sessions it had, for good).
    pub disabled: bool,
    /// How often an administrator ended its sessions: sessions carry it, so each time ends
    /// the older ones.
    pub sessions_epoch: u32,
}

/// The fold of a user stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a short-lived fold of one stream, nearly always Active"
)]
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
    /// Set the profile claims; nothing is recorded when they are already these.
    ChangeProfile {
        /// The profile from now on.
        profile: UserProfile,
        /// Now (Unix seconds): the `updated_at` claim.
        now: i64,
    },
    /// Lock (true) or unlock (false) the account, as an administrator; nothing is recorded
    /// when it already is so.
    SetDisabled(bool),
    /// End every session the user has now, as an administrator.
    EndSessions,
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
    /// A profile claim is malformed.
    #[error(transparent)]
    InvalidProfile(#[from] ProfileError),
}

/// Why a profile was refused. The messages name the claim, never the value given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// `email` is not an address.
    #[error("email must be an address of at most 254 characters, with one @ and no spaces")]
    Email,
    /// `locale` is not a language tag.
    #[error("locale must be a BCP 47 language tag such as en or en-GB")]
    Locale,
    /// A name (`name`, `given_name`, `family_name`, `preferred_username`) is too long or holds
    /// control characters.
    #[error("{0} must be 1 to 256 characters, without control characters")]
    Name(&'static str),
}

/// Longest name claim, in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// Longest e-mail address (RFC 5321 §4.5.3.1.3 less the angle brackets), in bytes.
pub const MAX_EMAIL_LEN: usize = 254;

/// Checks every claim of a profile: names of at most 256 characters without control
/// characters, an e-mail address that looks like one, a BCP 47-shaped locale.
pub fn check_profile(profile: &UserProfile) -> Result<(), ProfileError> {
    let names = [
        ("name", &profile.name),
        ("given_name", &profile.given_name),
        ("family_name", &profile.family_name),
        ("preferred_username", &profile.preferred_username),
    ];
    for (claim, value) in names {
        if let Some(v) = value {
            if v.is_empty() || v.chars().count() > MAX_NAME_CHARS || v.chars().any(char::is_control)
            {
                return Err(ProfileError::Name(claim));
            }
        }
    }
    if let Some(email) = &profile.email {
        if !is_email(email) {
            return Err(ProfileError::Email);
        }
    }
    if let Some(locale) = &profile.locale {
        if !is_language_tag(locale) {
            return Err(ProfileError::Locale);
        }
    }
    Ok(())
}

/// One `@` between a non-empty local part and domain, no whitespace or control character,
/// at most 254 bytes. (Deliverability is the operator's affair: `email_verified`.)
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= MAX_EMAIL_LEN
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*`: the shape of a BCP 47 tag (RFC 5646), such as `en`,
/// `en-GB` or `zh-Hant-TW`.
fn is_language_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=8).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Changes to a profile: each claim given replaces the current one, an empty string clears
/// it, an absent one is kept (the admin API's `PATCH` body, built from CLI flags too).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileChanges {
    /// Full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Preferred username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the address was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// BCP 47 language tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

impl ProfileChanges {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `current` with these changes made, checked. A changed address is unverified unless
    /// `email_verified` is given.
    pub fn apply(&self, current: &UserProfile) -> Result<UserProfile, ProfileError> {
        let merge = |given: &Option<String>, now: &Option<String>| match given {
            Some(v) if v.is_empty() => None,
            Some(v) => Some(v.clone()),
            None => now.clone(),
        };
        let profile = UserProfile {
            name: merge(&self.name, &current.name),
            given_name: merge(&self.given_name, &current.given_name),
            family_name: merge(&self.family_name, &current.family_name),
            preferred_username: merge(&self.preferred_username, &current.preferred_username),
            email: merge(&self.email, &current.email),
            // A new address is unverified unless said otherwise.
            email_verified: self.email_verified.unwrap_or(
                current.email_verified && merge(&self.email, &current.email) == current.email,
            ),
            locale: merge(&self.locale, &current.locale),
        };
        check_profile(&profile)?;
        Ok(profile)
    }
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
        (UserState::Active(u), UserCommand::ChangeProfile { profile, now }) => {
            check_profile(profile)?;
            if *profile == u.profile {
                return Ok(Vec::new());
            }
            Ok(vec![Event::UserProfileChanged(UserProfileChanged {
                user_id: u.user_id,
                profile: profile.clone(),
                updated_at: *now,
            })])
        }
        (UserState::Active(u), UserCommand::SetDisabled(disabled)) => {
            Ok(match (*disabled, u.disabled) {
                (true, false) => vec![Event::UserDisabled(UserDisabled { user_id: u.user_id })],
                (false, true) => vec![Event::UserEnabled(UserEnabled { user_id: u.user_id })],
                _ => Vec::new(),
            })
        }
        (UserState::Active(u), UserCommand::EndSessions) => {
            Ok(vec![Event::UserSessionsEnded(UserSessionsEnded {
                user_id: u.user_id,
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
                profile: UserProfile::default(),
                profile_updated_at: 0,
                disabled: false,
                sessions_epoch: 0,
            })
        }
        // A lock ends the sessions for good: unlocking does not bring them back.
        (UserState::Active(u), Event::UserDisabled(_)) => {
            u.disabled = true;
            u.sessions_epoch += 1;
        }
        (UserState::Active(u), Event::UserEnabled(_)) => u.disabled = false,
        (UserState::Active(u), Event::UserSessionsEnded(_)) => u.sessions_epoch += 1,
        (UserState::Active(u), Event::UserProfileChanged(e)) => {
            u.profile = e.profile.clone();
            u.profile_updated_at = e.updated_at;
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
    fn an_admin_locks_and_unlocks_once_each_and_ends_sessions_every_time() {
        let disabled = Event::UserDisabled(UserDisabled { user_id: id() });
        let enabled = Event::UserEnabled(UserEnabled { user_id: id() });
        scenario()
            .given(vec![registered()])
            .when(UserCommand::SetDisabled(true))
            .then(vec![disabled.clone()]);
        // Locking a locked account, or unlocking an open one, records nothing.
        scenario()
            .given(vec![registered(), disabled.clone()])
            .when(UserCommand::SetDisabled(true))
            .then(vec![]);
        scenario()
            .given(vec![registered()])
            .when(UserCommand::SetDisabled(false))
            .then(vec![]);
        scenario()
            .given(vec![registered(), disabled.clone()])
            .when(UserCommand::SetDisabled(false))
            .then(vec![enabled.clone()]);
        let ended = Event::UserSessionsEnded(UserSessionsEnded { user_id: id() });
        scenario()
            .given(vec![registered(), ended.clone()])
            .when(UserCommand::EndSessions)
            .then(vec![ended.clone()]);
        scenario()
            .when(UserCommand::EndSessions)
            .then_err(UserError::NotFound);
        // The fold: locked, then open again; the lock and each end of sessions bump the epoch.
        let mut state = UserState::Unregistered;
        for e in [registered(), disabled, ended.clone(), ended, enabled] {
            evolve(&mut state, &e);
        }
        let UserState::Active(u) = state else {
            panic!("registered")
        };
        assert!(!u.disabled);
        assert_eq!(u.sessions_epoch, 3);
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
    fn a_profile_change_is_recorded_once_and_never_holds_a_password() {
        let profile = UserProfile {
            name: Some("Alice Liddell".into()),
            email: Some("alice@example.test".into()),
            email_verified: true,
            ..UserProfile::default()
        };
        let change = |now| UserCommand::ChangeProfile {
            profile: profile.clone(),
            now,
        };
        let changed = Event::UserProfileChanged(UserProfileChanged {
            user_id: id(),
            profile: profile.clone(),
            updated_at: 1_700_000_000,
        });
        scenario()
            .given(vec![registered()])
            .when(change(1_700_000_000))
            .then(vec![changed.clone()]);
        // The same profile again changes nothing.
        scenario()
            .given(vec![registered(), changed])
            .when(change(1_700_000_500))
            .then(vec![]);
        scenario().when(change(1)).then_err(UserError::NotFound);
    }

    #[test]
    fn profile_claims_are_checked_and_refusals_do_not_echo_them() {
        let with = |f: fn(&mut UserProfile, String), v: &str| {
            let mut p = UserProfile::default();
            f(&mut p, v.to_owned());
            check_profile(&p)
        };
        let email = |p: &mut UserProfile, v| p.email = Some(v);
        let locale = |p: &mut UserProfile, v| p.locale = Some(v);
        let name = |p: &mut UserProfile, v| p.name = Some(v);
        let family = |p: &mut UserProfile, v| p.family_name = Some(v);
        for ok in ["alice@example.test", "a.b+c@d", "\"odd\"@host.example"] {
            assert_eq!(with(email, ok), Ok(()), "{ok}");
        }
        let long_email = format!("{}@example.test", "a".repeat(250));
        for bad in [
            "alice",
            "@example.test",
            "alice@",
            "a@b@c",
            "al ice@example.test",
            "alice@exa\nmple.test",
            long_email.as_str(),
        ] {
            assert_eq!(with(email, bad), Err(ProfileError::Email), "{bad:?}");
        }
        for ok in ["en", "en-GB", "zh-Hant-TW", "de-CH-1996", "tlh-x-klingon"] {
            assert_eq!(with(locale, ok), Ok(()), "{ok}");
        }
        for bad in [
            "e",
            "englishlanguage",
            "en_GB",
            "en-",
            "-en",
            "en--GB",
            "en-GB-abcdefghi",
            "fr CA",
        ] {
            assert_eq!(with(locale, bad), Err(ProfileError::Locale), "{bad:?}");
        }
        assert_eq!(with(name, "Zoë d'Arc-Łukasz 李"), Ok(()));
        assert_eq!(with(name, &"é".repeat(256)), Ok(()));
        assert_eq!(
            with(name, &"é".repeat(257)),
            Err(ProfileError::Name("name"))
        );
        assert_eq!(
            with(family, "Liddell\u{7}"),
            Err(ProfileError::Name("family_name"))
        );
        let secret = "<script>hunter2</script>\u{0}";
        for refusal in [
            with(email, secret),
            with(locale, secret),
            with(name, secret),
        ] {
            let text = refusal.unwrap_err().to_string();
            assert!(!text.contains("hunter2") && !text.contains('<'), "{text}");
        }
    }

    #[test]
    fn profile_changes_merge_into_the_current_profile() {
        let current = UserProfile {
            name: Some("Alice".into()),
            email: Some("alice@example.test".into()),
            email_verified: true,
            locale: Some("en".into()),
            ..UserProfile::default()
        };
        // Given fields replace, empty ones clear, absent ones stay.
        let changes = ProfileChanges {
            family_name: Some("Liddell".into()),
            locale: Some(String::new()),
            ..ProfileChanges::default()
        };
        assert_eq!(
            changes.apply(&current),
            Ok(UserProfile {
                family_name: Some("Liddell".into()),
                locale: None,
                ..current.clone()
            })
        );
        assert!(ProfileChanges::default().is_empty());
        assert_eq!(
            ProfileChanges::default().apply(&current),
            Ok(current.clone())
        );
        // A new address is unverified unless the change says it is verified.
        let moved = ProfileChanges {
            email: Some("alice@elsewhere.test".into()),
            ..ProfileChanges::default()
        };
        assert!(!moved.apply(&current).unwrap().email_verified);
        let verified = ProfileChanges {
            email_verified: Some(true),
            ..moved.clone()
        };
        assert!(verified.apply(&current).unwrap().email_verified);
        let unverified = ProfileChanges {
            email_verified: Some(false),
            ..ProfileChanges::default()
        };
        assert!(!unverified.apply(&current).unwrap().email_verified);
        let bad = ProfileChanges {
            locale: Some("en_GB".into()),
            ..ProfileChanges::default()
        };
        assert_eq!(bad.apply(&current), Err(ProfileError::Locale));
    }

    #[test]
    fn an_invalid_profile_is_refused() {
        let profile = UserProfile {
            email: Some("not an address".into()),
            ..UserProfile::default()
        };
        scenario()
            .given(vec![registered()])
            .when(UserCommand::ChangeProfile { profile, now: 1 })
            .then_err(UserError::InvalidProfile(ProfileError::Email));
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
