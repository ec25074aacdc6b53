//! `UserActor`: one for all users. User commands are rare (registration, password and
//! profile changes, failed sign-ins), and a username must be unique across every user
//! stream, so a single actor that handles one command at a time, from decision to durable
//! append, is both simple and correct. Each user still has a stream of its own (`user-<id>`).

use super::client::{CommandError, CommandResult};
use crate::store::{EventStore, NewEvent};
use actix::prelude::*;
use domain::event::{user_stream, UNKNOWN_LOGINS_STREAM};
use domain::user::{self, UserCommand, UserState};
use domain::values::UserId;
use domain::Metadata;
use projections::ReadModels;
use std::sync::Arc;

/// A command on one user.
#[derive(Debug, Clone, Message)]
#[rtype(result = "CommandResult")]
pub struct ExecuteUserCommand {
    /// The user (for `Register`, the fresh id).
    pub user_id: UserId,
    /// The command.
    pub command: UserCommand,
    /// Request context.
    pub metadata: Metadata,
}

/// Changes a user's profile claims: the changes are merged into the profile the user has when
/// the actor takes the message, so two changes of different claims never undo each other.
#[derive(Debug, Clone, Message)]
#[rtype(result = "CommandResult")]
pub struct ChangeUserProfile {
    /// The user.
    pub user_id: UserId,
    /// The claims to set or (given empty) clear.
    pub changes: user::ProfileChanges,
    /// Now on the server's clock (Unix seconds): the `updated_at` claim.
    pub now: i64,
    /// Request context.
    pub metadata: Metadata,
}

/// Records a failed sign-in under a name that belongs to no user.
#[derive(Debug, Clone, Message)]
#[rtype(result = "CommandResult")]
pub struct RecordUnknownLogin {
    /// The name as typed.
    pub typed: String,
    /// The login page or a client's password grant.
    pub via: domain::event::SignInVia,
    /// Request context.
    pub metadata: Metadata,
}

/// The actor of every user.
pub struct UserActor {
    store: Arc<dyn EventStore>,
    models: Arc<ReadModels>,
}

impl UserActor {
    /// An actor over the store and the read models that hold the user directory.
    pub fn new(store: Arc<dyn EventStore>, models: Arc<ReadModels>) -> Self {
        Self { store, models }
    }

    /// A user's state and stream version, folded from its stream.
    fn load(&self, stream: &str) -> Result<(UserState, u64), CommandError> {
        self.fold(stream, user::evolve)
    }

    /// The state of a small aggregate and its stream's version, folded from the whole stream
    /// (users, sessions and initial access tokens are a few events each).
    fn fold<S: Default>(
        &self,
        stream: &str,
        evolve: fn(&mut S, &domain::Event),
    ) -> Result<(S, u64), CommandError> {
        let events = self.store.read_stream(stream, 1)?;
        let mut state = S::default();
        let mut version = 0;
        for e in &events {
            evolve(&mut state, &e.event);
            version = e.version;
        }
        Ok((state, version))
    }

    fn append(
        &self,
        stream: String,
        expected: u64,
        events: Vec<domain::Event>,
        metadata: Metadata,
    ) -> AtomicResponse<Self, CommandResult> {
        let new = NewEvent::all(events, &metadata);
        let pending = self.store.append(&stream, expected, new);
        // Atomic: the next command is decided only once this one is durable and in the
        // directory, so two registrations of one name cannot both pass.
        AtomicResponse::new(Box::pin(
            fut::wrap_future::<_, Self>(pending).map(|r, _, _| r.map_err(CommandError::Store)),
        ))
    }
}

impl Actor for UserActor {
    type Context = Context<Self>;
}

fn refused(e: CommandError) -> AtomicResponse<UserActor, CommandResult> {
    AtomicResponse::new(Box::pin(fut::ready(Err(e))))
}

impl Handler<ExecuteUserCommand> for UserActor {
    type Result = AtomicResponse<Self, CommandResult>;

    fn handle(&mut self, mut msg: ExecuteUserCommand, _ctx: &mut Self::Context) -> Self::Result {
        let stream = user_stream(&msg.user_id);
        let (state, version) = match self.load(&stream) {
            Ok(loaded) => loaded,
            Err(e) => return refused(e),
        };
        if let UserCommand::Register {
            username,
            username_taken,
            ..
        } = &mut msg.command
        {
            *username_taken = self.models.users.by_username(username.as_str()).is_some();
        }
        match user::decide(&state, &msg.command) {
            Ok(events) => self.append(stream, version, events, msg.metadata),
            Err(e) => refused(CommandError::User(e)),
        }
    }
}

impl Handler<ChangeUserProfile> for UserActor {
    type Result = AtomicResponse<Self, CommandResult>;

    fn handle(&mut self, msg: ChangeUserProfile, _ctx: &mut Self::Context) -> Self::Result {
        let stream = user_stream(&msg.user_id);
        let (state, version) = match self.load(&stream) {
            Ok(loaded) => loaded,
            Err(e) => return refused(e),
        };
        let UserState::Active(current) = &state else {
            return refused(CommandError::User(user::UserError::NotFound));
        };
        let profile = match msg.changes.apply(&current.profile) {
            Ok(p) => p,
            Err(e) => return refused(CommandError::User(e.into())),
        };
        let command = UserCommand::ChangeProfile {
            profile,
            now: msg.now,
        };
        match user::decide(&state, &command) {
            Ok(events) => self.append(stream, version, events, msg.metadata),
            Err(e) => refused(CommandError::User(e)),
        }
    }
}

/// A command on a browser session (stream `session-<sid>`).
#[derive(Debug, Clone, Message)]
#[rtype(result = "CommandResult")]
pub struct ExecuteSessionCommand {
    /// The session.
    pub sid: String,
    /// What to do.
    pub command: domain::session::SessionCommand,
    /// Request context.
    pub metadata: Metadata,
}

impl Handler<ExecuteSessionCommand> for UserActor {
    type Result = AtomicResponse<Self, CommandResult>;

    fn handle(&mut self, msg: ExecuteSessionCommand, _ctx: &mut Self::Context) -> Self::Result {
        use domain::session;
        let stream = domain::event::session_stream(&msg.sid);
        let (state, version) = match self.fold(&stream, session::evolve) {
            Ok(folded) => folded,
            Err(e) => return refused(e),
        };
        match session::decide(&msg.sid, &state, &msg.command) {
            Ok(events) if events.is_empty() => {
                AtomicResponse::new(Box::pin(fut::ready(Ok(Vec::new()))))
            }
            Ok(events) => self.append(stream, version, events, msg.metadata),
            Err(e) => refused(CommandError::Session(e)),
        }
    }
}

/// A command on an initial access token (stream `registration-token-<id>`).
#[derive(Debug, Clone, Message)]
#[rtype(result = "CommandResult")]
pub struct ExecuteRegistrationTokenCommand {
    /// The token.
    pub id: uuid::Uuid,
    /// What to do.
    pub command: domain::registration::RegistrationTokenCommand,
    /// Request context.
    pub metadata: Metadata,
}

impl Handler<ExecuteRegistrationTokenCommand> for UserActor {
    type Result = AtomicResponse<Self, CommandResult>;

    fn handle(
        &mut self,
        msg: ExecuteRegistrationTokenCommand,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        use domain::registration;
        let stream = registration::token_stream(&msg.id);
        let (state, version) = match self.fold(&stream, registration::evolve) {
            Ok(folded) => folded,
            Err(e) => return refused(e),
        };
        match registration::decide(&state, &msg.command) {
            Ok(events) => self.append(stream, version, events, msg.metadata),
            Err(e) => refused(CommandError::Registration(e)),
        }
    }
}

impl Handler<RecordUnknownLogin> for UserActor {
    type Result = AtomicResponse<Self, CommandResult>;

    fn handle(&mut self, msg: RecordUnknownLogin, _ctx: &mut Self::Context) -> Self::Result {
        let version = match self.store.stream_version(UNKNOWN_LOGINS_STREAM) {
            Ok(v) => v,
            Err(e) => return refused(e.into()),
        };
        let event = user::unknown_login_failure(&msg.typed, &msg.via);
        self.append(
            UNKNOWN_LOGINS_STREAM.to_owned(),
            version,
            vec![event],
            msg.metadata,
        )
    }
}
